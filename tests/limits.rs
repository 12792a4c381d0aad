//! Connection limits one at a time: slowloris cut off by the head timeout while others are
//! served, silent connections closed by the idle timeout, the per-address connection limit, and
//! a machine that will not start another thread.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn slowloris_clients_are_cut_off_while_a_listener_streams_and_others_are_served() {
    let server = Server::start(&["--source", "tone:", "--head-timeout-ms", "3000"]);
    let addr = server.addr;
    let mut ws = connect(addr);
    let hello = read_json(&mut ws);
    let first = hello["seq"].as_u64().unwrap();
    let started = Instant::now();
    let tricklers: Vec<_> = (0..40)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let request =
                    b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
                let begun = Instant::now();
                for b in request.iter().cycle() {
                    if s.write_all(&[*b]).is_err() || begun.elapsed() > Duration::from_secs(6) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let mut answer = String::new();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let _ = s.read_to_string(&mut answer);
                (begun.elapsed(), answer)
            })
        })
        .collect();
    // Meanwhile: every chunk on time and in order, and other clients answered at once.
    for seq in first..first + 100 {
        assert_eq!(next_audio(&mut ws).seq, seq);
        if seq % 20 == 0 {
            let asked = Instant::now();
            assert_eq!(http_get(addr, "/healthz").0, 200);
            // Well under the head timeout: nobody waited behind a trickler.
            let took = asked.elapsed();
            assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
        }
    }
    for t in tricklers {
        let (took, answer) = t.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            (Duration::from_millis(2900)..Duration::from_secs(6)).contains(&took),
            "dropped after {took:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let server = Server::start(&["--source", "tone:", "--idle-timeout-ms", "500"]);
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let opened = Instant::now();
    let mut got = Vec::new();
    let _ = silent.read_to_end(&mut got);
    let took = opened.elapsed();
    assert!(
        got.is_empty(),
        "a silent connection is closed without a reply"
    );
    assert!(
        (Duration::from_millis(400)..Duration::from_secs(2)).contains(&took),
        "closed after {took:?}"
    );
    // The same for a keep-alive connection that goes quiet after one request.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let asked = Instant::now();
    let mut reply = Vec::new();
    let _ = idle.read_to_end(&mut reply);
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
    let took = asked.elapsed();
    assert!(
        (Duration::from_millis(400)..Duration::from_secs(2)).contains(&took),
        "keep-alive connection closed after {took:?}"
    );
}

#[test]
fn one_address_cannot_hold_more_than_max_per_address_connections() {
    let server = Server::start(&["--source", "tone:", "--max-per-address", "3"]);
    let addr = server.addr;
    let mut held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let _listener = connect(addr); // a listener counts too
    let (status, head, body) = raw_http(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 429, "{head}");
    assert_eq!(header(&head, "Retry-After"), Some("5"));
    assert!(
        body.contains("too many connections from 127.0.0.1 (limit 3)"),
        "{body}"
    );
    // Another address is served.
    let mut other = connect_from("127.0.0.2", addr).unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_head(&mut other).0, 200);
    // A closed connection frees its place.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let status = http_get(addr, "/healthz").0;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place was not freed: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_trusted_proxy_is_not_limited_per_address() {
    let server = Server::start(&[
        "--source",
        "tone:",
        "--max-per-address",
        "1",
        "--trusted-proxy",
        "127.0.0.0/8",
    ]);
    let _held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
}

#[test]
fn with_no_thread_to_spare_a_new_connection_is_dropped_and_listeners_keep_streaming() {
    let server = Server::start(&["--source", "tone:"]);
    let mut ws = connect(server.addr);
    read_json(&mut ws);
    let mut seq = next_audio(&mut ws).seq;
    let cap = cgroup::ThreadCap::new(server.pid(), "connect");
    // Each connection needs its own thread: without one it is closed unanswered, and logged.
    let refused = try_connect(server.addr, "/ws");
    assert!(refused.is_err(), "a connection was served without a thread");
    assert!(
        server.wait_log("cannot start a connection thread: ", Duration::from_secs(2)),
        "{}",
        server.stderr()
    );
    // The listener that has its thread streams on without a gap.
    for _ in 0..50 {
        let audio = next_audio(&mut ws);
        assert_eq!(audio.seq, seq + 1, "a gap while threads were short");
        seq = audio.seq;
    }
    // With threads again, connections are served as before.
    drop(cap);
    let mut second = try_connect(server.addr, "/ws").expect("served once threads are back");
    assert_eq!(read_json(&mut second)["type"], "hello");
    assert_eq!(
        get_json(server.addr, "/api/status").1["listeners"]["current"],
        2
    );
}
