//! Slow listeners: one that stops reading delays no other and is dropped after the send timeout,
//! one that falls behind the ring skips to the live edge and is told, and one whose socket fills
//! mid-batch loses nothing unannounced. Apart from tests/websocket.rs so that their timing is not
//! measured beside its thousand simultaneous connects and floods (cargo runs test files one at
//! a time): on a 2-core machine those held the healthy listener's chunks up to 230 ms.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn listener_that_stops_reading_does_not_delay_others_and_is_dropped() {
    let server = Server::start(&["--source", "tone:", "--send-timeout-ms", "1500"]);
    // A listener with a tiny receive window that never reads after the handshake.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stuck: TcpStream = socket.into();
    let (_stuck_ws, _) =
        tungstenite::client(format!("ws://{}/ws", server.addr).as_str(), stuck).unwrap();

    let mut ws = connect(server.addr);
    let hello = read_json(&mut ws);
    let mut seq = hello["seq"].as_u64().unwrap();
    let mut last = Instant::now();
    let mut worst_gap = Duration::ZERO;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let a = next_audio(&mut ws);
        assert_eq!(a.seq, seq, "the healthy listener sees no gap");
        seq += 1;
        if start.elapsed() > Duration::from_millis(300) {
            worst_gap = worst_gap.max(last.elapsed());
        }
        last = Instant::now();
    }
    assert!(
        worst_gap < Duration::from_millis(200),
        "worst gap between chunks {worst_gap:?}"
    );
    assert!(
        server.wait_log("send timeout", Duration::from_secs(5)),
        "{}",
        server.stderr()
    );
    let (_, status) = get_json(server.addr, "/api/status");
    assert_eq!(status["counters"]["slow_disconnects"], 1);
    assert_eq!(status["listeners"]["current"], 1);
}

#[test]
fn listener_that_falls_behind_the_ring_skips_to_the_live_edge_and_is_told() {
    let server = Server::start(&[
        "--source",
        "tone:",
        "--buffer-ms",
        "400",
        "--send-timeout-ms",
        "60000",
    ]);
    let mut ws = connect_small_window(server.addr);
    let hello = read_json(&mut ws);
    let mut expected = hello["seq"].as_u64().unwrap();
    // Stop reading long enough to fall far more than the 400 ms ring behind.
    std::thread::sleep(Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(8);
    let skipped = loop {
        assert!(Instant::now() < deadline, "no skipped message");
        match next_message(&mut ws) {
            Incoming::Audio(a) => {
                assert_eq!(a.seq, expected, "contiguous until the skip");
                expected += 1;
            }
            Incoming::Control(c) if c["type"] == "skipped" => break c,
            Incoming::Control(_) => {}
            Incoming::Closed => panic!("closed: {}", server.stderr()),
        }
    };
    assert_eq!(
        skipped["from"].as_u64().unwrap(),
        expected,
        "skipped starts where audio stopped"
    );
    let to = skipped["to"].as_u64().unwrap();
    assert!(to > expected + 20, "more than the ring was lost: {skipped}");
    assert_eq!(next_audio(&mut ws).seq, to, "audio resumes exactly at 'to'");
}

#[test]
fn a_listener_whose_socket_fills_mid_batch_loses_nothing_unannounced() {
    // A big ring, so nothing is skipped: every chunk must arrive, however the socket fills.
    let server = Server::start(&[
        "--source",
        "tone:",
        "--buffer-ms",
        "8000",
        "--send-timeout-ms",
        "60000",
    ]);
    let mut ws = connect_small_window(server.addr);
    let hello = read_json(&mut ws);
    let mut expected = hello["seq"].as_u64().unwrap();
    // Read in spurts with pauses four times the server's 250 ms write timeout: the socket fills,
    // and the server's catch-up batches (up to 16 chunks) time out part-way through. With 400 ms
    // pauses the kernel's buffers absorbed it and no write timed out; with 1 s, the session
    // that dropped the rest of an interrupted batch failed here within the first seconds.
    let started = Instant::now();
    let mut received = 0;
    while started.elapsed() < Duration::from_secs(6) {
        for _ in 0..10 {
            match next_message(&mut ws) {
                Incoming::Audio(a) => {
                    assert_eq!(
                        a.seq, expected,
                        "no chunk goes missing without a skipped message"
                    );
                    expected += 1;
                    received += 1;
                }
                Incoming::Control(c) => panic!("nothing should be skipped with an 8 s ring: {c}"),
                Incoming::Closed => panic!("closed: {}", server.stderr()),
            }
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    assert!(received >= 50, "{received} chunks");
}
