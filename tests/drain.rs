//! Planned drain: health checks fail, listeners are told to move, new listeners are refused so a
//! balancer retries elsewhere, and the process exits 0 after the grace period.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Reads until `goaway`; returns the message.
fn wait_goaway(ws: &mut Ws) -> serde_json::Value {
    loop {
        match next_message(ws) {
            Incoming::Control(c) if c["type"] == "goaway" => return c,
            Incoming::Closed => panic!("closed before goaway"),
            _ => {}
        }
    }
}

/// What a listener saw up to the server's close frame.
struct Closing {
    code: Option<CloseCode>,
    bye: Option<String>,
    /// Audio messages before the close, and how long before it the last one came.
    chunks: usize,
    last_chunk_before_close: Option<Duration>,
}

/// Reads to the close frame, counting the audio on the way.
fn wait_close(ws: &mut Ws) -> Closing {
    let mut bye = None;
    let mut chunks = 0;
    let mut last_chunk = None;
    loop {
        match ws.read() {
            Ok(Message::Binary(_)) => {
                chunks += 1;
                last_chunk = Some(Instant::now());
            }
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "bye" {
                    bye = v["reason"].as_str().map(str::to_string);
                }
            }
            Ok(Message::Close(f)) => {
                return Closing {
                    code: f.map(|f| f.code),
                    bye,
                    chunks,
                    last_chunk_before_close: last_chunk.map(|t| t.elapsed()),
                };
            }
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

#[test]
fn sigusr1_drains_then_exits_0_after_the_grace_period() {
    let mut server = Server::start(&["--source", "tone:", "--drain-grace-ms", "1500"]);
    let mut ws = connect(server.addr);
    read_json(&mut ws);
    next_audio(&mut ws);
    assert_eq!(get_json(server.addr, "/healthz").0, 200);
    let started = Instant::now();
    server.signal("USR1");
    let goaway = wait_goaway(&mut ws);
    assert_eq!(goaway["reason"], "draining");
    assert_eq!(goaway["grace_ms"], 1500);
    // Balancers see the drain; new listeners are refused so a balancer retries elsewhere.
    let (status, health) = get_json(server.addr, "/healthz");
    assert_eq!((status, health["status"].as_str()), (503, Some("draining")));
    let (status, head, _) = raw_http(server.addr, UPGRADE.as_bytes());
    assert_eq!(status, 503);
    assert!(head.contains("Retry-After: 0"), "{head}");
    // The listener that stayed keeps getting audio until the grace period ends: about 70 chunks
    // of 20 ms in what is left of the 1.5 s, the last one just before the close.
    let closing = wait_close(&mut ws);
    assert_eq!(closing.code, Some(CloseCode::Away));
    assert_eq!(closing.bye.as_deref(), Some("drained"));
    assert!(
        closing.chunks >= 40,
        "{} chunks during the grace",
        closing.chunks
    );
    let quiet = closing
        .last_chunk_before_close
        .expect("audio during the grace");
    assert!(
        quiet < Duration::from_millis(250),
        "audio stopped {quiet:?} before the close"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "closed before the grace period"
    );
    assert_eq!(
        server.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        server.stderr()
    );
}

#[test]
fn post_api_drain_from_this_machine_starts_a_drain() {
    let mut server = Server::start(&["--source", "tone:", "--drain-grace-ms", "500"]);
    let mut ws = connect(server.addr);
    read_json(&mut ws);
    let (status, _, _) = http_get(server.addr, "/api/drain");
    assert_eq!(status, 405);
    let (status, _, body) = raw_http(
        server.addr,
        b"POST /api/drain HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"grace_ms\":500"), "{body}");
    wait_goaway(&mut ws);
    assert_eq!(server.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn sigterm_drains_instead_of_closing_with_drain_on_sigterm() {
    let mut server = Server::start(&[
        "--source",
        "tone:",
        "--drain-on-sigterm",
        "--drain-grace-ms",
        "800",
    ]);
    let mut ws = connect(server.addr);
    read_json(&mut ws);
    server.signal("TERM");
    wait_goaway(&mut ws);
    let closing = wait_close(&mut ws);
    assert_eq!(
        (closing.code, closing.bye.as_deref()),
        (Some(CloseCode::Away), Some("drained"))
    );
    assert_eq!(server.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn a_drain_that_cannot_start_its_timer_shuts_down_at_once_instead_of_hanging() {
    let mut server = Server::start(&["--source", "tone:", "--drain-grace-ms", "30000"]);
    let mut ws = connect(server.addr);
    read_json(&mut ws);
    next_audio(&mut ws);
    // The machine will not give the server another thread, and the drain's timer is one.
    let _cap = cgroup::ThreadCap::new(server.pid(), "drain");
    let started = Instant::now();
    server.signal("USR1");
    // Without its timer the drain cannot keep its 30 s grace; it must not leave the process
    // draining for ever either: it shuts down, and says why.
    let closing = wait_close(&mut ws);
    assert_eq!(closing.code, Some(CloseCode::Away));
    assert!(
        matches!(
            closing.bye.as_deref(),
            Some("drained" | "server shutting down")
        ),
        "bye {:?}",
        closing.bye
    );
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let log = server.stderr();
    assert!(
        log.contains("shutting down: cannot start the drain timer, so no grace period"),
        "{log}"
    );
}
