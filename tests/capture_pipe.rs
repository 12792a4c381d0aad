//! `pipe:` sources: raw PCM written to earshot's standard input (or a named pipe) reaches
//! listeners unchanged, no faster than real time, and the end of the pipe ends the stream cleanly
//! or, with `--on-pipe-end wait`, is reported and waited out.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::*;

/// Frames in one 20 ms chunk at 48 kHz.
const CHUNK: usize = 960;

fn s16_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Reads until the server's `bye` (or the connection ends): audio, then control messages.
fn collect_until_bye(ws: &mut Ws) -> (Vec<Audio>, Vec<serde_json::Value>) {
    let (mut audio, mut control) = (Vec::new(), Vec::new());
    loop {
        match next_message(ws) {
            Incoming::Audio(a) => audio.push(a),
            Incoming::Control(c) => {
                let bye = c["type"] == "bye";
                control.push(c);
                if bye {
                    return (audio, control);
                }
            }
            Incoming::Closed => return (audio, control),
        }
    }
}

fn concat(audio: &[Audio]) -> Vec<i16> {
    audio
        .iter()
        .flat_map(|a| a.samples.iter().copied())
        .collect()
}

/// Fails with the first difference rather than thousands of samples.
fn assert_same_samples(got: &[i16], want: &[i16], what: &str) {
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!(
            "{what}: sample {i} is {} instead of {} ({} samples received, {} expected)",
            got[i],
            want[i],
            got.len(),
            want.len()
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: sample count");
}

#[test]
fn pipe_samples_reach_a_listener_unchanged_then_bye_and_a_clean_exit() {
    let (mut server, mut stdin) = Server::start_piped(
        &["--source", "pipe:", "--rate", "48000", "--channels", "2"],
        &[],
    );
    let mut ws = connect(server.addr);
    // 25.5 chunks: the last half chunk must arrive too, padded with silence.
    let input = test_samples(CHUNK * 2 * 51 / 2, 7);
    let (first, rest) = input.split_at(CHUNK * 2);
    stdin.write_all(&s16_bytes(first)).unwrap();
    let hello = read_json(&mut ws);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["sample_rate"], 48000);
    assert_eq!(hello["channels"], 2);
    // Written all at once, as a decoder would; then the writer closes the pipe.
    stdin.write_all(&s16_bytes(rest)).unwrap();
    drop(stdin);

    let (audio, control) = collect_until_bye(&mut ws);
    assert_eq!(audio.first().map(|a| a.seq), hello["seq"].as_u64());
    for pair in audio.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "sequence numbers are contiguous"
        );
    }
    assert_eq!(audio.len(), 26, "25 whole chunks and the padded half chunk");
    let received = concat(&audio);
    assert_same_samples(&received[..input.len()], &input, "samples arrive unchanged");
    assert!(received[input.len()..].iter().all(|&s| s == 0));
    assert_eq!(
        control.last().map(|c| c["reason"].clone()),
        Some("source ended".into())
    );
    // A writer faster than real time is held to it: 26 chunks span about half a second.
    let span_us = audio.last().unwrap().produced_us - audio[0].produced_us;
    assert!(
        span_us >= 400_000,
        "chunks were produced over {span_us} µs, faster than real time"
    );
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(server.stderr().contains("source pipe: ended"));
}

#[test]
fn wide_pipe_samples_are_rounded_to_16_bits_without_wrapping() {
    struct Case {
        format: &'static str,
        encode: fn(f64) -> Vec<u8>,
    }
    // Values as fractions of full scale, and what each must become in 16 bits.
    let values: [(f64, i16); 6] = [
        (1.0, i16::MAX),
        (-1.0, i16::MIN),
        (0.5, 16384),
        (-0.25, -8192),
        (0.0, 0),
        // 1.5 steps of 16 bits rounds up to 2.
        (1.5 / 32768.0, 2),
    ];
    let cases = [
        Case {
            format: "S32_LE",
            encode: |v| {
                ((v * 2_147_483_648.0).clamp(-2_147_483_648.0, 2_147_483_647.0) as i32)
                    .to_le_bytes()
                    .to_vec()
            },
        },
        Case {
            format: "S24_3LE",
            encode: |v| {
                let s = (v * 8_388_608.0).clamp(-8_388_608.0, 8_388_607.0) as i32;
                s.to_le_bytes()[..3].to_vec()
            },
        },
        Case {
            format: "FLOAT_LE",
            encode: |v| (v as f32).to_le_bytes().to_vec(),
        },
    ];
    for case in cases {
        let (mut server, mut stdin) = Server::start_piped(
            &[
                "--source",
                "pipe:",
                "--rate",
                "8000",
                "--channels",
                "1",
                "--sample-format",
                case.format,
            ],
            &[],
        );
        let mut ws = connect(server.addr);
        // One 20 ms chunk at 8 kHz mono: 160 samples, the values repeated.
        let bytes: Vec<u8> = (0..160)
            .flat_map(|i| (case.encode)(values[i % values.len()].0))
            .collect();
        stdin.write_all(&bytes).unwrap();
        let _hello = read_json(&mut ws);
        let (_, status) = get_json(server.addr, "/api/status");
        assert_eq!(status["source"]["input"]["sample_format"], case.format);
        drop(stdin);
        let (audio, _) = collect_until_bye(&mut ws);
        let received = concat(&audio);
        let expected: Vec<i16> = (0..160).map(|i| values[i % values.len()].1).collect();
        assert_eq!(received, expected, "{} converted", case.format);
        assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    }
}

#[test]
fn status_reports_the_pipe_input_format() {
    let (server, mut stdin) = Server::start_piped(
        &[
            "--source",
            "stdin:",
            "--rate",
            "44100",
            "--channels",
            "1",
            "--sample-format",
            "s32le",
        ],
        &[],
    );
    stdin.write_all(&vec![0u8; 882 * 4 * 3]).unwrap();
    let (code, status) = get_json(server.addr, "/api/status");
    assert_eq!(code, 200);
    assert_eq!(status["stream"]["sample_rate"], 44100);
    assert_eq!(status["stream"]["channels"], 1);
    assert_eq!(status["source"]["uri"], "stdin:");
    assert_eq!(status["source"]["input"]["sample_format"], "S32_LE");
    assert_eq!(status["source"]["input"]["channels"], 1);
}

#[test]
fn with_on_pipe_end_wait_the_end_of_stdin_is_reported_and_the_server_stays_up() {
    let (mut server, mut stdin) =
        Server::start_piped(&["--source", "pipe:", "--on-pipe-end", "wait"], &[]);
    let mut ws = connect(server.addr);
    stdin
        .write_all(&s16_bytes(&test_samples(CHUNK * 2, 3)))
        .unwrap();
    let _hello = read_json(&mut ws);
    drop(stdin);
    let down = wait_for_source_state(&mut ws, "down");
    assert!(
        down["reason"].as_str().unwrap().contains("end of input"),
        "{down}"
    );
    let (code, health) = get_json(server.addr, "/healthz");
    assert_eq!(
        (code, health["status"].as_str()),
        (503, Some("source_down"))
    );
    assert_eq!(
        server.wait_exit(Duration::from_millis(800)),
        None,
        "still up"
    );
    assert!(server.stderr().contains("is down"));
}

/// A named pipe in a directory of its own, and earshot reading it with `--on-pipe-end wait`:
/// the directory (removed when dropped), the pipe, the source's URI and the server.
fn serve_named_pipe(name: &str) -> (TempDir, std::path::PathBuf, String, Server) {
    let dir = TempDir::new(name);
    let fifo = dir.join("audio.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let uri = format!("pipe:{}", fifo.display());
    let server = Server::start(&["--source", &uri, "--on-pipe-end", "wait"]);
    (dir, fifo, uri, server)
}

#[test]
fn a_named_pipe_waits_for_its_next_writer_and_the_stream_resumes() {
    let (_dir, fifo, _, server) = serve_named_pipe("fifo");
    let mut ws = connect(server.addr);

    let first = test_samples(CHUNK * 2 * 3, 11);
    write_to_fifo(&fifo, &first);
    let hello = read_json(&mut ws);
    let (audio, down) = audio_and_source_state(&mut ws, 3, "down");
    assert_eq!(audio.first().map(|a| a.seq), hello["seq"].as_u64());
    assert_same_samples(&concat(&audio), &first, "the first writer's samples");
    assert!(
        down["reason"]
            .as_str()
            .unwrap()
            .contains("waiting for a new writer")
    );
    let (code, _) = get_json(server.addr, "/healthz");
    assert_eq!(code, 503);

    std::thread::sleep(Duration::from_millis(300));
    let second = test_samples(CHUNK * 2 * 2, 12);
    // This writer stays connected until its audio is heard, so the source stays live.
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open fifo for writing");
    writer.write_all(&s16_bytes(&second)).unwrap();
    let (resumed, live) = audio_and_source_state(&mut ws, 2, "live");
    assert_eq!(live["state"], "live");
    assert_same_samples(&concat(&resumed), &second, "the next writer's samples");
    let last_before = audio.last().unwrap().seq;
    assert!(
        resumed[0].seq > last_before + 1,
        "the time down shows as a sequence gap ({last_before} then {})",
        resumed[0].seq
    );
    let (code, status) = get_json(server.addr, "/api/status");
    assert_eq!(code, 200);
    assert_eq!(status["source"]["state"], "live");
    assert_eq!(status["source"]["reconnects"], 1);
    drop(writer);
}

/// A writer slower than real time (`arecord` on a sound card whose crystal runs slow) lags
/// the system clock more with every second. When it goes away and another comes, the sequence
/// gap must be the time the pipe was away, not that plus the lag since the stream began.
#[test]
fn the_sequence_gap_after_a_pipe_comes_back_is_its_time_away_not_its_writers_drift() {
    let (_dir, fifo, uri, server) = serve_named_pipe("fifo-drift");
    let mut ws = connect(server.addr);

    // 150 chunks of 20 ms over 3.75 s: 750 ms behind the system clock by the end.
    let slow = test_samples(CHUNK * 2 * 150, 21);
    let path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open fifo for writing");
        for chunk in slow.chunks(CHUNK * 2) {
            w.write_all(&s16_bytes(chunk)).unwrap();
            std::thread::sleep(Duration::from_millis(25));
        }
    });
    let _hello = read_json(&mut ws);
    let (before, _) = audio_and_source_state(&mut ws, 150, "down");
    writer.join().unwrap();

    std::thread::sleep(Duration::from_millis(500));
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open fifo for writing");
    writer
        .write_all(&s16_bytes(&test_samples(CHUNK * 2 * 5, 22)))
        .unwrap();
    let gap = OutageGap::read(&mut ws, before);
    server.wait_log(
        &format!("source {uri} is live again"),
        Duration::from_secs(2),
    );
    gap.assert_counted(&uri, &server.stderr());
    drop(writer);
}

#[test]
fn a_listener_waiting_long_for_the_first_writer_starts_at_its_first_chunk() {
    // The session waits 5 s for a source's first chunk before it says hello; a writer that comes
    // later still starts at the sequence number hello gave (sequence numbers follow the clock:
    // starting anywhere else, such as 0, would be a skip of decades).
    let (_dir, fifo, _, server) = serve_named_pipe("late-writer");
    let mut ws = connect(server.addr);
    let hello = read_json(&mut ws);
    assert_eq!(hello["type"], "hello");
    assert!(hello["seq"].as_u64().unwrap() > 1_000_000_000, "{hello}");
    std::thread::sleep(Duration::from_millis(1500));
    let samples = test_samples(CHUNK * 2 * 2, 21);
    write_to_fifo(&fifo, &samples);
    // The writer is gone after its two chunks: the source reports down, maybe before them.
    let (audio, _) = audio_and_source_state(&mut ws, 2, "down");
    assert_eq!(audio.first().map(|a| a.seq), hello["seq"].as_u64());
    assert_same_samples(&concat(&audio), &samples, "the late writer's samples");
}

#[test]
fn pipe_sources_refuse_what_cannot_work_before_the_port_opens() {
    let (code, out, err) = run_earshot(&["serve", "--source", "pipe:", "--channels", "3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--channels: 3 is out of range"), "{err}");
    assert!(!out.contains("listening"));
    let (code, _, err) = run_earshot(&["serve", "--source", "pipe:/no/such/fifo"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("/no/such/fifo: no such named pipe or file"),
        "{err}"
    );
    let (code, _, err) = run_earshot(&["serve", "--source", "pipe:", "--sample-format", "s24le"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ambiguous"), "{err}");
}

/// Reads messages until a `source` message with `state`, failing on a close.
fn wait_for_source_state(ws: &mut Ws, state: &str) -> serde_json::Value {
    audio_and_source_state(ws, 0, state).1
}

/// Reads until `chunks` audio messages and a `source` message with `state` have both arrived.
/// The session may send the notice just before the last chunks the source pushed before it
/// failed, so the two are not required in order.
fn audio_and_source_state(
    ws: &mut Ws,
    chunks: usize,
    state: &str,
) -> (Vec<Audio>, serde_json::Value) {
    let mut audio = Vec::new();
    let mut notice = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let (true, Some(n)) = (audio.len() >= chunks, &notice) {
            return (audio, serde_json::Value::clone(n));
        }
        match next_message(ws) {
            Incoming::Audio(a) => audio.push(a),
            Incoming::Control(c) if c["type"] == "source" && c["state"] == state => {
                notice = Some(c);
            }
            Incoming::Control(c) => assert_ne!(c["type"], "bye", "unexpected {c}"),
            Incoming::Closed => panic!("connection closed waiting for source {state}"),
        }
    }
    panic!("no source {state} message and {chunks} chunks within 10 s");
}

/// Opens the named pipe as its writer (blocking until earshot reads it), writes, and closes.
fn write_to_fifo(fifo: &std::path::Path, samples: &[i16]) {
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .expect("open fifo for writing");
    writer.write_all(&s16_bytes(samples)).unwrap();
}

/// What arrives over `window`: (audio messages, WebSocket pings).
fn audio_and_pings(ws: &mut Ws, window: Duration) -> (usize, usize) {
    let got = messages_within(ws, window);
    let count = |f: fn(&tungstenite::Message) -> bool| got.iter().filter(|m| f(m)).count();
    (count(|m| m.is_binary()), count(|m| m.is_ping()))
}

#[test]
fn a_listener_is_pinged_every_second_while_no_audio_flows_and_not_while_it_does() {
    // A writer that pauses (or a source that is down) leaves listeners without a message for as
    // long; a proxy with an idle timeout (an F5's TCP profile, nginx's proxy_read_timeout) would
    // end them.
    let (server, mut stdin) = Server::start_piped(
        &["--source", "pipe:", "--rate", "8000", "--channels", "1"],
        &[],
    );
    // Two seconds of audio at once: the writer runs ahead, so it goes out in real time.
    stdin.write_all(&vec![0u8; 8000 * 2 * 2]).unwrap();
    let mut ws = connect(server.addr);
    let _hello = read_json(&mut ws);
    let (audio, pings) = audio_and_pings(&mut ws, Duration::from_millis(1500));
    assert!(
        audio >= 50,
        "{audio} chunks while the writer's audio lasted"
    );
    assert_eq!(pings, 0, "pinged while audio flowed");
    // Then the writer pauses: nothing to send but the pings (once what was sent meanwhile is
    // read).
    std::thread::sleep(Duration::from_millis(700));
    audio_and_pings(&mut ws, Duration::from_millis(300));
    let (audio, pings) = audio_and_pings(&mut ws, Duration::from_millis(3500));
    assert_eq!(audio, 0);
    assert!(
        (3..=4).contains(&pings),
        "{pings} pings in 3.5 s without audio"
    );
    // The listener is still there, and gets audio again when the writer goes on.
    stdin.write_all(&vec![0u8; 8000 * 2]).unwrap();
    let (audio, _) = audio_and_pings(&mut ws, Duration::from_millis(1500));
    assert!(audio >= 40, "{audio} chunks after the pause");
    drop(stdin);
}

#[test]
fn a_listener_waiting_for_a_just_started_sources_first_chunk_is_pinged_until_its_hello() {
    // A pipe whose writer has not written yet: a new listener waits for the first chunks (its
    // burst) before the hello. Behind nginx's 3 s proxy_read_timeout (deploy/nginx.conf) a
    // silent wait would end it.
    let (server, mut stdin) = Server::start_piped(
        &["--source", "pipe:", "--rate", "8000", "--channels", "1"],
        &[],
    );
    let mut ws = connect(server.addr);
    let waiting = messages_within(&mut ws, Duration::from_millis(3500));
    let pings = waiting.iter().filter(|m| m.is_ping()).count();
    assert_eq!(
        pings,
        waiting.len(),
        "only pings before the first chunk: {waiting:?}"
    );
    assert!(
        (3..=4).contains(&pings),
        "{pings} pings in 3.5 s of waiting"
    );
    // The wait ends as before: the hello, and the audio once the writer writes.
    let hello = read_json(&mut ws);
    assert_eq!(hello["type"], "hello", "{hello}");
    stdin.write_all(&vec![0u8; 8000 * 2]).unwrap();
    let (audio, _) = audio_and_pings(&mut ws, Duration::from_millis(1500));
    assert!(audio >= 40, "{audio} chunks once the writer wrote");
    drop(stdin);
}
