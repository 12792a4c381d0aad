//! `--align clock`: every instance plays the same audio under the same sequence number at the
//! same moment, so a listener moved between instances can tell exactly what it lost.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

/// Collects seq → samples from one listener for `how_long`.
fn collect(server: &Server, how_long: Duration) -> HashMap<u64, Vec<i16>> {
    let mut ws = connect(server.addr);
    read_json(&mut ws);
    let start = Instant::now();
    let mut chunks = HashMap::new();
    while start.elapsed() < how_long {
        let a = next_audio(&mut ws);
        chunks.insert(a.seq, a.samples);
    }
    chunks
}

fn assert_same_audio_for_shared_seqs(a: &HashMap<u64, Vec<i16>>, b: &HashMap<u64, Vec<i16>>) {
    let shared: Vec<_> = a.keys().filter(|k| b.contains_key(k)).collect();
    assert!(
        shared.len() >= 20,
        "the two instances overlap in {} chunks",
        shared.len()
    );
    for seq in shared {
        assert!(a[seq] == b[seq], "chunk {seq} differs between instances");
    }
}

#[test]
fn sequence_numbers_count_chunks_since_the_unix_epoch() {
    let server = Server::start(&["--source", "tone:"]);
    let mut ws = connect(server.addr);
    let hello = read_json(&mut ws);
    assert_eq!(hello["align"], "clock");
    let now_chunks = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        / 20;
    let seq = next_audio(&mut ws).seq;
    assert!(
        now_chunks.abs_diff(seq) < 50,
        "seq {seq} vs {now_chunks} chunks since the epoch"
    );
}

#[test]
fn instances_started_apart_send_identical_audio_under_identical_sequence_numbers() {
    for source in ["tone:", "audio/earshot-sample.mp3"] {
        let first = Server::start(&["--source", source, "--instance-id", "a"]);
        std::thread::sleep(Duration::from_millis(730));
        let second = Server::start(&["--source", source, "--instance-id", "b"]);
        let addr_a = first.addr;
        let a = std::thread::spawn(move || {
            let server = first;
            let chunks = collect(&server, Duration::from_secs(2));
            (server, chunks)
        });
        let b = collect(&second, Duration::from_secs(2));
        let (_first, a) = a.join().unwrap();
        assert_same_audio_for_shared_seqs(&a, &b);
        let _ = addr_a;
    }
}

#[test]
fn align_none_plays_a_file_from_its_start() {
    let path = write_counting_wav(&tempdir("align"), "ramp.wav", 16_000);
    let server = Server::start(&[
        "--source",
        path.to_str().unwrap(),
        "--align",
        "none",
        "--burst-ms",
        "5000",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let mut ws = connect(server.addr);
    assert_eq!(read_json(&mut ws)["align"], "none");
    assert_eq!(
        next_audio(&mut ws).samples[0],
        0,
        "the first chunk is the file's first frame"
    );
}

#[test]
fn a_frozen_instance_resumes_at_the_clock_position_and_the_gap_measures_the_freeze() {
    let steady = Server::start(&["--source", "tone:"]);
    let frozen = Server::start(&["--source", "tone:"]);
    let mut ws = connect(frozen.addr);
    read_json(&mut ws);
    let mut last = next_audio(&mut ws).seq;
    for _ in 0..20 {
        last = next_audio(&mut ws).seq;
    }
    frozen.signal("STOP");
    std::thread::sleep(Duration::from_millis(1500));
    frozen.signal("CONT");
    // The first chunk after the freeze carries the sequence number of "now".
    let mut after = match next_message(&mut ws) {
        Incoming::Audio(a) => a,
        other => panic!("{other:?}: {}", frozen.stderr()),
    };
    while after.seq == last + 1 {
        last = after.seq;
        after = next_audio(&mut ws);
    }
    let gap_ms = (after.seq - last - 1) * 20;
    assert!(
        (1200..=2200).contains(&gap_ms),
        "a 1.5 s freeze shows as {gap_ms} ms of lost audio"
    );
    // And it is the same audio the steady instance sends under that number.
    let reference = collect(&steady, Duration::from_millis(600));
    let mut resumed = HashMap::new();
    let resume_at = after.seq;
    resumed.insert(after.seq, after.samples);
    for expected in resume_at + 1..resume_at + 21 {
        let a = next_audio(&mut ws);
        assert_eq!(a.seq, expected, "contiguous again after the gap");
        resumed.insert(a.seq, a.samples);
    }
    assert_same_audio_for_shared_seqs(&resumed, &reference);
}
