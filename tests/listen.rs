//! `earshot listen` against a real local server: the WAV it writes, its JSON lines, its exit
//! codes, and how it reports a server restart.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::listen::ListenProcess;
use support::*;

#[test]
fn the_wav_has_the_stream_format_and_exactly_the_requested_duration() {
    let server = Server::start(&["--source", "tone:?rate=48000&channels=1"]);
    let dir = TempDir::new("listen-wav");
    let wav = dir.join("out.wav");
    let (code, stdout, stderr) = run_earshot(&[
        "listen",
        &server.ws_url(),
        "--duration",
        "2.5",
        "--out",
        wav.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("summary:"), "{stdout}");
    let reader = hound::WavReader::open(&wav).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (48_000, 1, 16)
    );
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    assert_eq!(reader.duration(), 120_000, "2.5 s at 48 kHz");
    // The tone is there, not silence: the stream's samples were written.
    let peak = reader
        .into_samples::<i16>()
        .map(|s| s.unwrap().unsigned_abs())
        .max()
        .unwrap();
    assert!(peak > 4000, "peak {peak}");
}

#[test]
fn json_lines_parse_and_end_with_a_summary() {
    let server = Server::start(&["--source", "tone:", "--instance-id", "solo"]);
    let (code, stdout, stderr) =
        run_earshot(&["listen", &server.ws_url(), "--duration", "3.2", "--json"]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let lines = json_lines(&stdout);
    let connected = of_type(&lines, "connected");
    assert_eq!(connected.len(), 1);
    assert_eq!(connected[0]["instance"], "solo");
    assert_eq!(connected[0]["sample_rate"], 44_100);
    let stats = of_type(&lines, "stats");
    assert!(stats.len() >= 2, "one stats line per second: {stdout}");
    for s in &stats {
        assert_eq!(s["connected"], true);
        assert!(s["latency_ms"]["p99"].as_f64().is_some(), "{s}");
        assert!(s["kbps"].as_f64().unwrap() > 0.0);
        assert!(s["jitter_ms"].as_f64().is_some());
        assert_eq!(s["totals"]["gaps"], 0);
    }
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["outcome"], "continuous");
    assert_eq!(summary["exit_code"], 0);
    assert!(summary["totals"]["chunks"].as_u64().unwrap() >= 100);
}

#[test]
fn a_server_restart_with_reconnect_is_one_interruption_of_about_its_length() {
    let first = Server::start(&["--source", "tone:", "--instance-id", "before"]);
    let addr = first.addr.to_string();
    let dir = TempDir::new("listen-restart");
    let wav = dir.join("restart.wav");
    let mut listener = ListenProcess::start(&[
        &first.ws_url(),
        "--reconnect",
        "--json",
        "--duration",
        "6",
        "--out",
        wav.to_str().unwrap(),
    ]);
    // Listen to the first server for a second, then kill it (SIGKILL, like a crash).
    listener.wait_for_stats();
    drop(first);
    let outage = Duration::from_millis(1500);
    let killed = Instant::now();
    std::thread::sleep(outage);
    let _second = Server::start(&[
        "--listen",
        &addr,
        "--source",
        "tone:",
        "--instance-id",
        "after",
    ]);
    let restarted = killed.elapsed();
    let out = listener.finish();
    let (code, lines) = (out.code, out.lines());
    let interruptions = of_type(&lines, "interruption");
    assert_eq!(interruptions.len(), 1, "{lines:#?}");
    let i = interruptions[0];
    assert_eq!(i["instance_before"], "before");
    assert_eq!(i["instance_after"], "after");
    let duration = i["duration_ms"].as_f64().unwrap();
    let down_ms = restarted.as_millis() as f64;
    // The reconnect is retried every 0.5 s at most, and the new server needs a moment.
    assert!(
        duration >= down_ms - 100.0 && duration <= down_ms + 1500.0,
        "interruption {duration} ms for a server down {down_ms} ms"
    );
    let lost = i["lost_ms"].as_f64().unwrap();
    // The new server's burst brings back at most its 200 ms of audio from before we connected.
    assert!(
        lost >= down_ms - 400.0 && lost <= duration + 100.0,
        "lost {lost} ms of a {duration} ms interruption"
    );
    assert_eq!(
        i["splice"], "sequence",
        "sequence numbers follow the wall clock, so a restarted server continues the count"
    );
    assert_eq!(of_type(&lines, "connected").len(), 2);
    let summary = lines.last().unwrap();
    assert_eq!(summary["outcome"], "recovered");
    assert_eq!(code, Some(3), "interrupted but recovered");
    // The silence stands in for the lost audio, so the file is still exactly 6 s long.
    let reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.duration(), 6 * 44_100);
}

#[test]
fn without_reconnect_a_lost_server_means_a_lost_stream() {
    let server = Server::start(&["--source", "tone:"]);
    let url = server.ws_url();
    let listener = ListenProcess::start(&[&url, "--json"]);
    std::thread::sleep(Duration::from_millis(1200));
    drop(server);
    let out = listener.finish();
    assert_eq!(out.code, Some(4));
    assert!(out.stderr.contains("stream lost"));
    assert_eq!(out.lines().last().unwrap()["outcome"], "lost");
}

#[test]
fn nothing_to_connect_to_is_a_lost_stream_with_the_reason() {
    let url = format!("ws://127.0.0.1:{}/ws", free_port());
    let (code, _, stderr) = run_earshot(&["listen", &url, "--duration", "1"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    let (code, _, stderr) = run_earshot(&["listen", "http://127.0.0.1:1/"]);
    assert_eq!(code, 2, "a usage error: {stderr}");
}

#[test]
fn a_tls_handshake_cut_off_is_retried_with_reconnect() {
    // A proxy restarting drops connections mid-handshake: unlike a certificate TLS refuses,
    // that may pass, so --reconnect keeps trying until its duration is over.
    let dropper = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://{}/ws", dropper.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in dropper.incoming() {
            drop(stream);
        }
    });
    let (code, stdout, stderr) =
        run_earshot(&["listen", &url, "--reconnect", "--duration", "2", "--json"]);
    assert_eq!(
        code, 4,
        "lost, not an error that needs a change\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("\"disconnected\""), "{stdout}");
    assert!(stdout.contains("tls handshake with 127.0.0.1:"), "{stdout}");
}

#[test]
fn connect_timeout_bounds_a_server_that_accepts_but_never_answers() {
    // The kernel completes the TCP handshake for a listening socket nobody accepts from; the
    // upgrade then gets no answer. --connect-timeout-ms, not a built-in 10 s, ends the attempt.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", silent.local_addr().unwrap());
    let started = Instant::now();
    let (code, _, stderr) = run_earshot(&[
        "listen",
        &url,
        "--duration",
        "1",
        "--connect-timeout-ms",
        "300",
    ]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}: {stderr}",
        started.elapsed()
    );
}

#[test]
fn a_url_without_a_path_is_the_stream_and_a_page_url_is_refused_at_once() {
    let server = Server::start(&["--source", "tone:"]);
    let bare = format!("ws://{}", server.addr);
    let (code, stdout, stderr) = run_earshot(&["listen", &bare, "--duration", "1", "--json"]);
    assert_eq!(code, 0, "ws://HOST:PORT means /ws\n{stdout}\n{stderr}");
    // The page is not a stream: waiting would not change that, so --reconnect gives up.
    let page = format!("ws://{}/", server.addr);
    let started = Instant::now();
    let (code, _, stderr) = run_earshot(&["listen", &page, "--duration", "5", "--reconnect"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("(200)"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a refusal that cannot pass is not retried: {stderr}"
    );
}

#[cfg(feature = "alsa")]
#[test]
fn play_goes_through_alsa_when_built_with_it() {
    let server = Server::start(&["--source", "tone:"]);
    let (code, stdout, stderr) = run_earshot(&[
        "listen",
        &server.ws_url(),
        "--duration",
        "1",
        "--play",
        "--play-device",
        "null",
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[test]
fn sigint_ends_the_run_cleanly_with_a_finished_wav() {
    let server = Server::start(&["--source", "tone:"]);
    let dir = TempDir::new("listen-sigint");
    let wav = dir.join("interrupted.wav");
    let listener = ListenProcess::start(&[&server.ws_url(), "--out", wav.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1500));
    listener.interrupt();
    let out = listener.finish();
    let stdout = &out.stdout;
    assert_eq!(out.code, Some(0), "{stdout}");
    assert!(stdout.contains("continuous (exit 0)"), "{stdout}");
    let seconds = wav_seconds(&wav);
    assert!((1.0..3.0).contains(&seconds), "{seconds} s recorded");
}

/// The WAV file's length in seconds.
fn wav_seconds(path: &std::path::Path) -> f64 {
    let reader = hound::WavReader::open(path).unwrap();
    f64::from(reader.duration()) / f64::from(reader.spec().sample_rate)
}

#[test]
fn a_stop_while_the_next_chunks_are_late_is_continuous_and_the_file_ends_at_the_last_audio() {
    let server = Server::start(&["--source", "tone:"]);
    let dir = TempDir::new("listen-late-stop");
    let wav = dir.join("late.wav");
    let mut listener = ListenProcess::start(&[
        &server.ws_url(),
        "--json",
        "--stall-ms",
        "2000",
        "--out",
        wav.to_str().unwrap(),
    ]);
    listener.wait_for_stats();
    // The server holds its next chunks back for 300 ms, well inside the stall threshold, and the
    // run is stopped meanwhile: they are late, not missing (a CI run's listener, stopped while
    // its last chunks came 130 ms late, called the stream "recovered" and exited 3).
    server.signal("STOP");
    std::thread::sleep(Duration::from_millis(300));
    listener.interrupt();
    let out = listener.finish();
    server.signal("CONT");
    let summary = of_type(&out.lines(), "summary")[0].clone();
    assert_eq!(summary["outcome"], "continuous", "{}", out.stdout);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_eq!(summary["totals"]["interruption_lost_ms"], 0.0, "{summary}");
    // The file holds what came, chunk for chunk (882 frames each), and no silence for the
    // 300 ms held back.
    let totals = &summary["totals"];
    let chunks = totals["chunks"].as_u64().unwrap() - totals["duplicates"].as_u64().unwrap();
    let frames = hound::WavReader::open(&wav).unwrap().duration();
    assert!(chunks >= 50, "a second and more came: {summary}");
    assert_eq!(u64::from(frames), chunks * 882, "{summary}");
}

#[test]
fn a_stop_while_the_source_is_down_counts_the_audio_since_as_missing() {
    let (server, mut stdin) = Server::start_piped(
        &[
            "--source",
            "pipe:",
            "--rate",
            "48000",
            "--channels",
            "2",
            "--on-pipe-end",
            "wait",
        ],
        &[],
    );
    let dir = TempDir::new("listen-down-stop");
    let wav = dir.join("down.wav");
    let mut listener =
        ListenProcess::start(&[&server.ws_url(), "--json", "--out", wav.to_str().unwrap()]);
    // A second of a quiet square wave, then the writer goes: the source is down, the server
    // says so, and the connection stays open on its pings.
    let second: Vec<u8> = (0..48_000 * 2)
        .flat_map(|i: i32| (if (i / 100) % 2 == 0 { 1000i16 } else { -1000 }).to_le_bytes())
        .collect();
    stdin.write_all(&second).unwrap();
    drop(stdin);
    listener.wait_for_stats();
    std::thread::sleep(Duration::from_millis(2000));
    listener.interrupt();
    let out = listener.finish();
    let lines = out.lines();
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "source" && l["state"] == "down"),
        "the listener heard the source go down: {}",
        out.stdout
    );
    let summary = of_type(&lines, "summary")[0].clone();
    assert_eq!(summary["outcome"], "recovered", "{}", out.stdout);
    assert_eq!(out.code, Some(3), "{}", out.stdout);
    // The run's last two seconds or so had no audio; the file is padded with them up to the stop.
    let lost = summary["totals"]["interruption_lost_ms"].as_f64().unwrap();
    assert!(lost >= 500.0, "{lost} ms counted missing: {summary}");
    let seconds = wav_seconds(&wav);
    assert!(seconds >= 1.5, "{seconds} s in the file");
}

#[test]
fn a_frozen_server_is_noticed_as_a_stall_within_a_second_not_at_a_tcp_timeout() {
    let server = Server::start(&["--source", "tone:", "--instance-id", "frozen"]);
    let mut listener =
        ListenProcess::start(&[&server.ws_url(), "--reconnect", "--json", "--duration", "4"]);
    listener.wait_for_stats();
    // SIGSTOP: the socket stays open and the kernel even accepts new connections, but nothing
    // is sent, as when a VM is being live-migrated.
    server.signal("STOP");
    std::thread::sleep(Duration::from_millis(1500));
    server.signal("CONT");
    let out = listener.finish();
    let (code, lines) = (out.code, out.lines());
    let gone = of_type(&lines, "disconnected");
    assert!(!gone.is_empty(), "{lines:#?}");
    assert!(
        gone[0]["reason"].as_str().unwrap().starts_with("stalled"),
        "{}",
        gone[0]
    );
    let interruptions = of_type(&lines, "interruption");
    assert_eq!(interruptions.len(), 1, "{lines:#?}");
    let i = interruptions[0];
    // Noticed 20 chunk durations (400 ms) after the last audio; generous for a busy machine.
    let noticed_ms = gone[0]["t"].as_f64().unwrap() - i["started_t"].as_f64().unwrap();
    assert!(noticed_ms < 1500.0, "stall noticed after {noticed_ms} ms");
    // The frozen server resumes where the clock says, so the audio it never produced is lost:
    // a sequence gap (PROTOCOL.md: a gap without `skipped` is audio the server did not
    // produce) or, when the reconnect's burst already jumps, part of the interruption.
    let gap_ms: f64 = of_type(&lines, "gap")
        .iter()
        .map(|g| g["ms"].as_f64().unwrap())
        .sum();
    // Usually 1500 ms by sequence; when the splice falls back to the clock, the hello that
    // waited out the freeze makes the new offset uncertain by half its round trip, so only
    // "some, and not more than the freeze plus the stall" is asserted here.
    let lost_ms = i["lost_ms"].as_f64().unwrap() + gap_ms;
    assert!(
        lost_ms > 0.0 && lost_ms <= 2500.0,
        "a 1.5 s freeze lost {lost_ms} ms: {lines:#?}"
    );
    assert_eq!(code, Some(3), "interrupted but recovered");
}

#[test]
fn a_source_that_has_not_started_is_waited_for_through_the_servers_pings() {
    // A pipe without a writer yet: the server holds the hello up to 5 s and pings every second
    // meanwhile. The listener allows 2 s per message, so only the pings keep it waiting.
    let (server, mut stdin) = Server::start_piped(
        &["--source", "pipe:", "--rate", "8000", "--channels", "1"],
        &[],
    );
    let listen = ListenProcess::start(&[
        &server.ws_url(),
        "--json",
        "--duration",
        "8",
        "--connect-timeout-ms",
        "2000",
    ]);
    // The writer starts late in the server's wait (whose end without audio would be a stall
    // to the listener): two seconds of audio, sent in real time.
    std::thread::sleep(Duration::from_millis(4500));
    use std::io::Write;
    stdin.write_all(&vec![0u8; 8000 * 2 * 2]).unwrap();
    let out = listen.finish();
    let lines = out.lines();
    assert_eq!(of_type(&lines, "connected").len(), 1, "{}", out.stderr);
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary", "{}", out.stdout);
    let chunks = summary["totals"]["chunks"].as_u64().unwrap();
    assert!(chunks >= 50, "{chunks} chunks of the writer's audio");
    drop(stdin);
}
