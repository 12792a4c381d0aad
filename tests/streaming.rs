//! Streaming to WebSocket listeners: hello, burst, contiguous paced chunks, payload sizes.

mod support;

use std::time::{Duration, Instant};
use support::*;

#[test]
fn hello_describes_the_source_format() {
    let server = Server::start(&[
        "--source",
        "tone:?rate=48000&channels=1",
        "--instance-id",
        "alpha",
    ]);
    let mut ws = connect(server.addr);
    let hello = read_json(&mut ws);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["version"], 1);
    assert_eq!(hello["codec"], "pcm_s16le");
    assert_eq!(hello["sample_rate"], 48000);
    assert_eq!(hello["channels"], 1);
    assert_eq!(hello["chunk_ms"], 20);
    assert_eq!(hello["chunk_frames"], 960);
    assert_eq!(hello["stream"], "main");
    assert_eq!(hello["instance"], "alpha");
    let now_ms = (unix_micros_now() / 1000) as i64;
    assert!((hello["server_time_ms"].as_i64().unwrap() - now_ms).abs() < 5000);
    let first = next_audio(&mut ws);
    assert_eq!(
        first.seq,
        hello["seq"].as_u64().unwrap(),
        "hello.seq is the first chunk's seq"
    );
    assert_eq!(first.samples.len(), 960, "one chunk of mono 48 kHz 20 ms");
}

/// Chunks of 44.1 kHz stereo 20 ms audio: 882 frames of two 16-bit samples.
const CD_CHUNK_SAMPLES: usize = 882 * 2;

#[test]
fn burst_arrives_at_once_then_chunks_follow_in_real_time() {
    let server = Server::start(&["--source", "tone:", "--burst-ms", "200"]);
    // Let the ring fill past the burst.
    std::thread::sleep(Duration::from_millis(600));
    let mut ws = connect(server.addr);
    let hello = read_json(&mut ws);
    let start = Instant::now();
    let mut seq = hello["seq"].as_u64().unwrap();
    for _ in 0..10 {
        let a = next_audio(&mut ws);
        assert_eq!(a.seq, seq);
        seq += 1;
    }
    let burst_time = start.elapsed();
    assert!(
        burst_time < Duration::from_millis(150),
        "200 ms burst took {burst_time:?}"
    );
    // Then live: 2 s of audio takes about 2 s to arrive.
    let live_start = Instant::now();
    for _ in 0..100 {
        let a = next_audio(&mut ws);
        assert_eq!(a.seq, seq, "live chunks are contiguous");
        assert_eq!(a.samples.len(), CD_CHUNK_SAMPLES);
        seq += 1;
    }
    let live = live_start.elapsed().as_secs_f64();
    assert!(
        (1.7..2.4).contains(&live),
        "100 live chunks of 20 ms took {live:.2} s"
    );
}

#[test]
fn fifty_listeners_receive_contiguous_chunks_at_the_real_time_rate() {
    let server = Server::start(&["--source", "tone:"]);
    let addr = server.addr;
    let listeners: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || {
                let mut ws = connect(addr);
                let hello = read_json(&mut ws);
                let mut expected = hello["seq"].as_u64().unwrap();
                let start = Instant::now();
                let mut live_chunks = 0u64;
                let mut first_live: Option<Instant> = None;
                while start.elapsed() < Duration::from_secs(5) {
                    let a = next_audio(&mut ws);
                    assert_eq!(a.seq, expected, "sequence numbers are contiguous");
                    assert_eq!(
                        a.samples.len(),
                        CD_CHUNK_SAMPLES,
                        "payload matches the format"
                    );
                    expected += 1;
                    // Count only after the burst, which arrives at once.
                    if start.elapsed() > Duration::from_millis(500) {
                        first_live.get_or_insert_with(Instant::now);
                        live_chunks += 1;
                    }
                }
                let secs = first_live.unwrap().elapsed().as_secs_f64();
                live_chunks as f64 / secs
            })
        })
        .collect();
    for l in listeners {
        let rate = l.join().expect("listener thread");
        assert!(
            (45.0..55.0).contains(&rate),
            "chunks per second {rate:.1}, expected 50"
        );
    }
}

#[test]
fn stream_keeps_real_time_over_many_chunks() {
    // Pacing comes from a monotonic start time and frames emitted, so after a few seconds the
    // newest chunk's production time is within a chunk or two of "start + frames/rate".
    let server = Server::start(&["--source", "tone:", "--chunk-ms", "5"]);
    let mut ws = connect(server.addr);
    read_json(&mut ws);
    let first = next_audio(&mut ws);
    let mut last = first.clone();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        last = next_audio(&mut ws);
    }
    let chunks = last.seq - first.seq;
    let audio_us = chunks as f64 * 221.0 / 44_100.0 * 1e6; // 5 ms at 44.1 kHz is 221 frames
    let wall_us = (last.produced_us - first.produced_us) as f64;
    assert!(
        (audio_us - wall_us).abs() < 15_000.0,
        "{chunks} chunks hold {audio_us:.0} µs of audio but were produced over {wall_us:.0} µs"
    );
}

#[test]
fn listener_gets_file_audio_exactly_as_decoded() {
    // A WAV whose samples count up: what arrives must be the same count, without gaps.
    let path = write_counting_wav(&tempdir("exact"), "ramp.wav", 8000);
    let server = Server::start(&["--source", path.to_str().unwrap()]);
    let mut ws = connect(server.addr);
    let hello = read_json(&mut ws);
    assert_eq!(
        (hello["sample_rate"].as_u64(), hello["channels"].as_u64()),
        (Some(8000), Some(1))
    );
    let mut previous: Option<i16> = None;
    for _ in 0..120 {
        let a = next_audio(&mut ws);
        for s in a.samples {
            if let Some(p) = previous {
                let expected = if p == 7999 { 0 } else { p + 1 };
                assert_eq!(
                    s, expected,
                    "samples continue across chunks and the loop point"
                );
            }
            previous = Some(s);
        }
    }
}

/// A listener's live chunks, as [`live_arrival_groups`] saw them.
struct Arrivals {
    chunks: u64,
    /// Runs of chunks that arrived together.
    groups: u64,
    /// The sequence number of each group's last chunk.
    group_ends: Vec<u64>,
    /// The smallest difference between consecutive chunks' production times, in µs.
    min_produced_apart_us: u64,
}

/// Reads a listener's live chunks for `span` after the burst: how many arrived and in how many
/// separate groups (a chunk arriving more than 8 ms after the one before starts a new group).
/// Fails on a missing or out-of-order chunk.
fn live_arrivals(ws: &mut Ws, span: Duration) -> Arrivals {
    let hello = read_json(ws);
    let mut expected = hello["seq"].as_u64().unwrap();
    let joined = Instant::now();
    let mut seen = Arrivals {
        chunks: 0,
        groups: 0,
        group_ends: Vec::new(),
        min_produced_apart_us: u64::MAX,
    };
    let mut previous: Option<(Instant, Audio)> = None;
    loop {
        let a = next_audio(ws);
        let now = Instant::now();
        assert_eq!(a.seq, expected, "chunks are contiguous");
        expected += 1;
        // The burst arrives at once; count from well after it.
        if now - joined < Duration::from_millis(500) {
            continue;
        }
        if now - joined > Duration::from_millis(500) + span {
            return seen;
        }
        match &previous {
            Some((at, before)) if now - *at <= Duration::from_millis(8) => {
                let apart = a.produced_us.saturating_sub(before.produced_us);
                seen.min_produced_apart_us = seen.min_produced_apart_us.min(apart);
            }
            Some((_, before)) => {
                seen.group_ends.push(before.seq);
                seen.groups += 1;
            }
            None => seen.groups += 1,
        }
        previous = Some((now, a));
        seen.chunks += 1;
    }
}

#[test]
fn a_fixed_batch_sends_chunks_together_in_real_time_and_loses_none() {
    let server = Server::start(&["--source", "tone:", "--batch-ms", "60"]);
    // Three listeners joining 27 ms apart, so that a server whose batches started wherever a
    // listener joined would give at least two of them batches that end at different sequence
    // numbers: one of those is not at a batch end.
    let listeners: Vec<_> = (0..3)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(27));
            }
            let mut ws = connect(server.addr);
            std::thread::spawn(move || live_arrivals(&mut ws, Duration::from_secs(2)))
        })
        .collect();
    for (i, listener) in listeners.into_iter().enumerate() {
        let seen = listener.join().unwrap();
        let (chunks, groups) = (seen.chunks, seen.groups);
        // 2 s of 20 ms chunks in threes: about 100 chunks in about 33 groups.
        assert!(
            (85..=115).contains(&chunks),
            "listener {i}: {chunks} chunks in 2 s"
        );
        assert!(
            groups * 2 <= chunks,
            "listener {i}: {chunks} chunks came in {groups} groups: not batched"
        );
        // Batches follow sequence numbers, so the producer pushes a batch when its listeners
        // wake for it; and each chunk still carries the time its audio was due, not the batch's.
        let aligned = seen.group_ends.iter().filter(|&&s| s % 3 == 2).count();
        assert!(
            aligned * 10 >= seen.group_ends.len() * 9,
            "listener {i}: groups ended at sequence numbers {:?}, not at ends of batches",
            seen.group_ends
        );
        assert!(
            seen.min_produced_apart_us >= 10_000,
            "listener {i}: chunks sent together were stamped {} µs apart, not 20 ms",
            seen.min_produced_apart_us
        );
    }
}

#[test]
fn a_lone_listener_gets_each_chunk_as_it_is_produced() {
    // `--batch-ms auto` batches only from 200 listeners on: a few listeners get low latency.
    let server = Server::start(&["--source", "tone:"]);
    let mut ws = connect(server.addr);
    let seen = live_arrivals(&mut ws, Duration::from_secs(2));
    let (chunks, groups) = (seen.chunks, seen.groups);
    assert!((85..=115).contains(&chunks), "{chunks} chunks in 2 s");
    assert!(
        groups * 10 >= chunks * 6,
        "{chunks} chunks came in only {groups} groups: batched"
    );
}
