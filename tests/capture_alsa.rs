//! `alsa:` capture through the real ALSA library, without a sound card: ALSA's `file` plugin
//! reads an `infile` as if a device captured it, and `multi` narrows or widens its channels.
//!
//! The `file` plugin has no clock (it delivers its whole file at once) and returns stale data
//! after the end of the file, so these tests check only the first frames, the file's length.
//! earshot holds such a device to the system clock, and a long `--burst-ms` hands a listener
//! everything from the first chunk.
#![cfg(feature = "alsa")]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// A directory with an ALSA configuration (for `ALSA_CONFIG_PATH`) and its capture files.
struct AlsaRig {
    dir: PathBuf,
    conf: PathBuf,
}

impl AlsaRig {
    /// Defines `pcm.cap`, a capture device that plays back `infile` (raw bytes, in whatever
    /// format the test asks for), and on top of it `pcm.mono` (only one channel) and
    /// `pcm.quad` (only four).
    fn new(name: &str, infile: &[u8]) -> AlsaRig {
        let dir = std::env::temp_dir().join(format!("earshot-alsa-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("in.raw");
        std::fs::write(&raw, infile).unwrap();
        let conf = dir.join("asound.conf");
        std::fs::write(&conf, alsa_conf(&raw)).unwrap();
        AlsaRig { dir, conf }
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("ALSA_CONFIG_PATH", self.conf.to_str().unwrap())]
    }

    /// Starts earshot on `alsa:DEVICE` with a burst long enough to reach the first chunk.
    fn serve(&self, device: &str, args: &[&str]) -> Server {
        let source = format!("alsa:{device}");
        let mut all = vec![
            "--source",
            source.as_str(),
            "--buffer-ms",
            "10000",
            "--burst-ms",
            "10000",
        ];
        all.extend_from_slice(args);
        Server::start_in(&repo_root(), &all, &self.env())
    }
}

impl Drop for AlsaRig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The whole ALSA configuration: no system files, so the tests see only these devices.
///
/// The `file` plugin must be on top: it reads its `infile` only in `readi`, which a `multi`
/// above it would bypass. Below it, `multi` fixes the channel count the device offers.
fn alsa_conf(infile: &Path) -> String {
    let file_over = |name: &str, slave: &str| {
        format!(
            "pcm.{name} {{\n    type file\n    slave.pcm \"{slave}\"\n    file \"/dev/null\"\n    \
             infile \"{}\"\n    format \"raw\"\n}}\n",
            infile.display()
        )
    };
    let only_channels = |name: &str, channels: u32| {
        let bindings: String = (0..channels)
            .map(|c| format!("    bindings.{c} {{ slave a channel {c} }}\n"))
            .collect();
        format!(
            "pcm.{name} {{\n    type multi\n    slaves.a.pcm \"null\"\n    \
             slaves.a.channels {channels}\n{bindings}}}\n"
        )
    };
    [
        "pcm.null { type null }\n".to_string(),
        file_over("cap", "null"),
        only_channels("null_mono", 1),
        file_over("mono", "null_mono"),
        only_channels("null_quad", 4),
        file_over("quad", "null_quad"),
    ]
    .concat()
}

/// After `hello`, the first `len` samples the listener receives.
fn first_samples(server: &Server, len: usize) -> (serde_json::Value, Vec<i16>) {
    let mut ws = connect(server.addr);
    let hello = read_json(&mut ws);
    assert_eq!(hello["type"], "hello");
    let mut samples = Vec::new();
    while samples.len() < len {
        samples.extend(next_audio(&mut ws).samples);
    }
    samples.truncate(len);
    (hello, samples)
}

/// Fails with the first difference rather than thousands of samples.
fn assert_same_samples(got: &[i16], want: &[i16], what: &str) {
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!("{what}: sample {i} is {} instead of {}", got[i], want[i]);
    }
    assert_eq!(got.len(), want.len(), "{what}: sample count");
}

#[test]
fn s16_capture_reaches_a_listener_bit_exact() {
    let input = test_samples(960 * 2 * 15, 5);
    let bytes: Vec<u8> = input.iter().flat_map(|s| s.to_le_bytes()).collect();
    let rig = AlsaRig::new("s16", &bytes);
    let server = rig.serve("cap", &["--sample-format", "S16_LE"]);
    let (hello, received) = first_samples(&server, input.len());
    assert_eq!(
        (hello["sample_rate"].as_u64(), hello["channels"].as_u64()),
        (Some(48000), Some(2))
    );
    assert_same_samples(&received, &input, "S16_LE capture");
    let (_, status) = get_json(server.addr, "/api/status");
    let source = &status["source"];
    assert_eq!(source["uri"], "alsa:cap");
    assert_eq!(source["state"], "live");
    assert_eq!(source["input"]["sample_format"], "S16_LE");
    assert_eq!(source["input"]["channels"], 2);
    assert_eq!(source["input"]["period_frames"], 480, "10 ms by default");
    assert_eq!(source["xruns"], 0);
    assert!(
        server
            .stderr()
            .contains("alsa:cap: capturing S16_LE, 48000 Hz, 2 channel(s)")
    );
}

#[test]
fn thirty_two_bit_capture_is_rounded_to_16_bits_at_the_right_level() {
    // What a Pi's I2S microphone delivers: S32_LE, the sample in the top bits.
    let cases: [(i32, i16); 8] = [
        (i32::MAX, i16::MAX),
        (i32::MIN, i16::MIN),
        (0x4000_0000, 16384),
        (-0x2000_0000, -8192),
        (0x0001_8000, 2),
        (0x0001_7FFF, 1),
        (0x1234_5600, 0x1234),
        (0, 0),
    ];
    let frames = 960 * 10;
    let input: Vec<i32> = (0..frames * 2).map(|i| cases[i % cases.len()].0).collect();
    let expected: Vec<i16> = (0..frames * 2).map(|i| cases[i % cases.len()].1).collect();
    let bytes: Vec<u8> = input.iter().flat_map(|s| s.to_le_bytes()).collect();
    let rig = AlsaRig::new("s32", &bytes);
    // No --sample-format: the device offers every format and the most precise one is taken.
    let server = rig.serve("cap", &[]);
    let (_, received) = first_samples(&server, expected.len());
    assert_same_samples(&received, &expected, "S32_LE capture");
    let (_, status) = get_json(server.addr, "/api/status");
    assert_eq!(status["source"]["input"]["sample_format"], "S32_LE");
}

#[test]
fn nearest_parameters_are_negotiated_and_reported() {
    // A mono-only device asked for stereo streams mono, at the rate and period asked.
    let input = test_samples(882 * 10, 9);
    let bytes: Vec<u8> = input.iter().flat_map(|s| s.to_le_bytes()).collect();
    let rig = AlsaRig::new("mono", &bytes);
    let server = rig.serve(
        "mono",
        &[
            "--rate",
            "44100",
            "--channels",
            "2",
            "--sample-format",
            "S16_LE",
            "--period-frames",
            "256",
        ],
    );
    let (hello, received) = first_samples(&server, input.len());
    assert_eq!(hello["sample_rate"], 44100);
    assert_eq!(hello["channels"], 1, "the device has one channel");
    assert_same_samples(&received, &input, "mono capture");
    let (_, status) = get_json(server.addr, "/api/status");
    assert_eq!(status["stream"]["channels"], 1);
    assert_eq!(status["stream"]["sample_rate"], 44100);
    assert_eq!(status["source"]["input"]["channels"], 1);
    assert_eq!(status["source"]["input"]["period_frames"], 256);
    assert!(
        server.wait_log(
            "asked for 2 channel(s); streaming 1",
            Duration::from_secs(5)
        ),
        "{}",
        server.stderr()
    );
}

#[test]
fn a_device_with_more_channels_streams_its_first_two() {
    let frames = 960 * 8;
    let input = test_samples(frames * 4, 13);
    let bytes: Vec<u8> = input.iter().flat_map(|s| s.to_le_bytes()).collect();
    let rig = AlsaRig::new("quad", &bytes);
    let server = rig.serve("quad", &["--sample-format", "S16_LE"]);
    let expected: Vec<i16> = input.chunks(4).flat_map(|f| [f[0], f[1]]).collect();
    let (hello, received) = first_samples(&server, expected.len());
    assert_eq!(hello["channels"], 2);
    assert_same_samples(&received, &expected, "first two of four channels");
    let (_, status) = get_json(server.addr, "/api/status");
    assert_eq!(status["source"]["input"]["channels"], 4);
}

#[test]
fn a_device_that_does_not_exist_is_a_clear_startup_error() {
    let rig = AlsaRig::new("missing", &[0; 64]);
    let out = earshot()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--source",
            "alsa:nosuch",
        ])
        .env("ALSA_CONFIG_PATH", &rig.conf)
        .output()
        .expect("run earshot");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stdout.contains("listening"), "the port never opened");
    assert!(
        stderr.contains("earshot: alsa:nosuch: no such capture device"),
        "{stderr}"
    );
}

/// A private PulseAudio server with a null sink called `mic`: through ALSA's `pulse` plugin its
/// monitor is a capture device with a real clock, which can be unplugged (the sink unloaded)
/// and plugged back while earshot captures from it.
struct PulseMic {
    child: std::process::Child,
    dir: PathBuf,
    server: String,
}

impl PulseMic {
    fn start(name: &str) -> PulseMic {
        let dir = std::env::temp_dir().join(format!("earshot-pulse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("native");
        let child = std::process::Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--use-pid-file=no",
                "--exit-idle-time=-1",
                "--log-target=stderr",
                "-L",
                &format!(
                    "module-native-protocol-unix socket={} auth-anonymous=1",
                    socket.display()
                ),
            ])
            .envs(Self::private_env(&dir))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pulseaudio (make test-deps installs it)");
        let mic = PulseMic {
            child,
            server: format!("unix:{}", socket.display()),
            dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !mic.pactl(&["info"]) {
            assert!(
                std::time::Instant::now() < deadline,
                "pulseaudio did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        mic.plug();
        mic
    }

    /// HOME and runtime directories of its own, so no user's PulseAudio set-up is touched.
    fn private_env(dir: &Path) -> Vec<(&'static str, String)> {
        let d = dir.display();
        vec![
            ("HOME", format!("{d}")),
            ("XDG_RUNTIME_DIR", format!("{d}")),
            ("XDG_CONFIG_HOME", format!("{d}/config")),
            ("PULSE_RUNTIME_PATH", format!("{d}/runtime")),
        ]
    }

    fn pactl(&self, args: &[&str]) -> bool {
        std::process::Command::new("pactl")
            .arg("-s")
            .arg(&self.server)
            .args(args)
            .envs(Self::private_env(&self.dir))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn plug(&self) {
        assert!(self.pactl(&["load-module", "module-null-sink", "sink_name=mic"]));
    }

    fn unplug(&self) {
        assert!(self.pactl(&["unload-module", "module-null-sink"]));
    }

    /// Starts earshot capturing from `alsa:mic`.
    fn serve(&self) -> Server {
        let conf = self.alsa_conf();
        let mut env: Vec<(&str, String)> = PulseMic::private_env(&self.dir);
        env.push(("ALSA_CONFIG_PATH", conf.display().to_string()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Server::start_in(
            &repo_root(),
            &["--source", "alsa:mic", "--sample-format", "S16_LE"],
            &env,
        )
    }

    /// The ALSA configuration that makes the sink's monitor the capture device `pcm.mic`.
    fn alsa_conf(&self) -> PathBuf {
        let conf = self.dir.join("asound.conf");
        std::fs::write(
            &conf,
            format!(
                "pcm.mic {{ type pulse server \"{}\" device \"mic.monitor\" }}\n",
                self.server
            ),
        )
        .unwrap();
        conf
    }
}

impl Drop for PulseMic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn an_unplugged_device_is_reported_down_and_capture_resumes_by_itself() {
    let mic = PulseMic::start("unplug");
    let server = mic.serve();
    let mut ws = connect(server.addr);
    let _hello = read_json(&mut ws);
    // A clocked device: chunks come in real time, stamped with when they were captured.
    let before: Vec<Audio> = (0..25).map(|_| next_audio(&mut ws)).collect();
    let last = before.last().unwrap();
    let age_ms = unix_micros_now().saturating_sub(last.produced_us) / 1000;
    assert!(
        age_ms < 1000,
        "the newest chunk was captured {age_ms} ms ago"
    );
    let span_ms = (last.produced_us - before[5].produced_us) / 1000;
    assert!(
        (300..=500).contains(&span_ms),
        "19 chunks of 20 ms were captured over {span_ms} ms"
    );

    mic.unplug();
    let (going, down) = audio_until_source_state(&mut ws, "down");
    assert!(
        down["reason"]
            .as_str()
            .unwrap()
            .starts_with("alsa:mic: capture failed"),
        "{down}"
    );
    let (code, health) = get_json(server.addr, "/healthz");
    assert_eq!(
        (code, health["status"].as_str()),
        (503, Some("source_down"))
    );
    let (_, status) = get_json(server.addr, "/api/status");
    assert_eq!(status["source"]["state"], "down");
    // Retried while it is away, and still down.
    std::thread::sleep(Duration::from_millis(800));
    assert!(server.stderr().contains("source alsa:mic is down"));

    mic.plug();
    let mut read = before;
    read.extend(going);
    let gap = OutageGap::read(&mut ws, read);
    assert!(
        gap.gap_ms() >= 500,
        "the second or so down is a gap of {} ms",
        gap.gap_ms()
    );
    let (code, status) = get_json(server.addr, "/api/status");
    assert_eq!(code, 200);
    assert_eq!(status["source"]["state"], "live");
    assert_eq!(status["source"]["reconnects"], 1);
    server.wait_log("source alsa:mic is live again", Duration::from_secs(2));
    gap.assert_counted("alsa:mic", &server.stderr());
}

/// How far the newest audio a listener has received lags the wall clock, read over `window`.
fn newest_age_ms(ws: &mut Ws, window: Duration) -> u64 {
    let until = std::time::Instant::now() + window;
    let mut newest = 0;
    while std::time::Instant::now() < until {
        if let Incoming::Audio(a) = next_message(ws) {
            newest = newest.max(a.produced_us);
        }
    }
    unix_micros_now().saturating_sub(newest) / 1000
}

#[test]
fn a_capture_held_up_for_seconds_catches_up_at_once_instead_of_staying_behind() {
    // A sound server's ALSA plugin (PulseAudio's, PipeWire's: the `default` device on a
    // desktop or a current Raspberry Pi OS) keeps what it captured while earshot could not read,
    // many seconds of it, and hands it over at once. That backlog is stale audio to pass on, not
    // a device without a clock to hold back: held back, the stream would stay behind live.
    let mic = PulseMic::start("stall");
    let server = mic.serve();
    let mut ws = connect(server.addr);
    let _hello = read_json(&mut ws);
    let before = newest_age_ms(&mut ws, Duration::from_secs(1));
    assert!(
        before < 300,
        "the newest audio was captured {before} ms ago"
    );
    // Stopped for five times its 500 ms capture buffer (a swapping Pi, a stopped process).
    server.signal("STOP");
    std::thread::sleep(Duration::from_millis(2500));
    server.signal("CONT");
    std::thread::sleep(Duration::from_millis(500));
    let after = newest_age_ms(&mut ws, Duration::from_secs(2));
    assert!(
        after < 300,
        "{after} ms behind live after the stall (before it: {before} ms); {}",
        server.stderr()
    );
    let (_, status) = get_json(server.addr, "/api/status");
    assert_eq!(status["source"]["state"], "live", "{status}");
    assert_eq!(status["source"]["reconnects"], 0, "{status}");
    let log = server.stderr();
    assert!(!log.contains("faster than real time"), "{log}");
    assert!(!log.contains("is down"), "{log}");
}

/// A private JACK server on its dummy backend (a clock and silence, no sound card), whose two
/// capture ports are the ALSA device `pcm.mic` through ALSA's `jack` plugin. Unlike PulseAudio's
/// plugin, this one overruns, as a sound card does, when its reader falls behind by more than
/// its buffer.
struct JackMic {
    child: std::process::Child,
    name: String,
    dir: PathBuf,
}

impl JackMic {
    /// One name for every run: JACK's server registry holds only a few, and a name that a
    /// stopped server left behind is taken over by the next server of that name.
    fn start(name: &str) -> JackMic {
        let name = format!("earshot-test-{name}");
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = std::process::Command::new("jackd")
            .args([
                "--no-realtime",
                "-n",
                &name,
                "-d",
                "dummy",
                "-r",
                "48000",
                "-p",
                "480",
            ])
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start jackd (make test-deps installs jackd2)");
        let mic = JackMic { child, name, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !mic.has_capture_ports() {
            assert!(std::time::Instant::now() < deadline, "jackd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        mic
    }

    fn has_capture_ports(&self) -> bool {
        std::process::Command::new("jack_lsp")
            .env("JACK_DEFAULT_SERVER", &self.name)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("system:capture_2"))
    }

    /// Starts earshot capturing from `alsa:mic`.
    fn serve(&self) -> Server {
        let conf = self.dir.join("asound.conf");
        std::fs::write(
            &conf,
            "pcm.mic {\n    type jack\n    capture_ports {\n        0 system:capture_1\n        \
             1 system:capture_2\n    }\n}\n",
        )
        .unwrap();
        Server::start_in(
            &repo_root(),
            &["--source", "alsa:mic"],
            &[
                ("ALSA_CONFIG_PATH", conf.to_str().unwrap()),
                ("JACK_DEFAULT_SERVER", &self.name),
            ],
        )
    }
}

impl Drop for JackMic {
    /// Ends jackd with SIGTERM, so that it removes its shared memory and its entry in JACK's
    /// server registry: killed, it leaves both in /dev/shm, and after a few runs jackd refuses
    /// to start ("Too many servers already active"). It ends promptly only once earshot's
    /// client has gone cleanly (the test stops earshot with SIGTERM first); after a failed test
    /// it is killed after 5 s, and what the killed client left is removed here.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        // What earshot's JACK client, killed with its server process, leaves: its semaphores.
        let ours = format!("_{}_", self.name);
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if file.starts_with("jack_sem.") && file.contains(&ours) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[test]
fn a_capture_overrun_is_recovered_and_the_audio_it_lost_is_a_sequence_gap() {
    let mic = JackMic::start("overrun");
    let mut server = mic.serve();
    let mut ws = connect(server.addr);
    let _hello = read_json(&mut ws);
    let before: Vec<Audio> = (0..25).map(|_| next_audio(&mut ws)).collect();
    // Only the thread that reads the device stops; the device (JACK's clock, in the plugin's
    // thread) runs on and overruns its 500 ms buffer.
    cgroup::freeze_thread(server.pid(), "producer", Duration::from_secs(2));
    // What was read before the stop comes first, then a jump: none within 3 s of audio is a
    // stream that hides its loss.
    let mut last = before.last().unwrap().seq;
    let mut jump = 0;
    for _ in 0..150 {
        let a = next_audio(&mut ws);
        if a.seq != last.wrapping_add(1) {
            jump = a.seq.wrapping_sub(last) - 1;
            break;
        }
        last = a.seq;
    }
    let lost_ms = jump * 20;
    assert!(
        (1500..=2600).contains(&lost_ms),
        "a gap of {jump} chunks ({lost_ms} ms) for a 2 s stop"
    );
    // Capture goes on from there, chunk after chunk.
    let mut seq = last.wrapping_add(jump + 1);
    for _ in 0..25 {
        let a = next_audio(&mut ws);
        assert_eq!(a.seq, seq.wrapping_add(1), "contiguous after the overrun");
        seq = a.seq;
    }
    let (_, status) = get_json(server.addr, "/api/status");
    assert_eq!(status["source"]["xruns"], 1, "{status}");
    assert_eq!(status["source"]["state"], "live", "{status}");
    assert!(
        server.wait_log("alsa:mic: overrun (xrun 1)", Duration::from_secs(1)),
        "{}",
        server.stderr()
    );
    // The log names the chunks a listener found missing, so the gap can be traced to its cause.
    let (first, end) = (last.wrapping_add(1), last.wrapping_add(jump));
    assert!(
        server.wait_log(
            &format!("alsa:mic: the overrun cost chunks {first} to {end} ({lost_ms} ms)"),
            Duration::from_secs(1)
        ),
        "{}",
        server.stderr()
    );
    // A clean exit closes the device, and with it earshot's JACK client, so that jackd too can
    // end cleanly (see JackMic's drop).
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
}
