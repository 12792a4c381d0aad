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
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((hello["server_time_ms"].as_i64().unwrap() - now_ms).abs() < 5000);
    let first = next_audio(&mut ws);
    assert_eq!(
        first.seq,
        hello["seq"].as_u64().unwrap(),
        "hello.seq is the first chunk's seq"
    );
    assert_eq!(first.samples.len(), 960, "one chunk of mono 48 kHz 20 ms");
}
