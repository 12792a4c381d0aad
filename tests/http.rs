//! Plain HTTP on the shared port: routes, status codes, content types, limits, keep-alive.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn page_assets_are_served_with_their_content_types() {
    let server = Server::start(&["--source", "tone:"]);
    for (path, ct) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/worklet.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
    ] {
        let (status, head, body) = http_get(server.addr, path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&head, "Content-Type"), Some(ct), "{path}");
        assert_eq!(
            header(&head, "Content-Length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            body.len()
        );
    }
}

#[test]
fn healthz_reports_instance_uptime_listeners_and_source() {
    let server = Server::start(&["--source", "tone:", "--instance-id", "edge-7"]);
    let (status, head, body) = http_get(server.addr, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(header(&head, "Content-Type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["instance"], "edge-7");
    assert_eq!(json["listeners"], 0);
    assert!(json["uptime_s"].is_u64());
    assert!(json["source"].as_str().unwrap().starts_with("tone:"));
}

#[test]
fn status_reports_format_listeners_and_counters() {
    let server = Server::start(&[
        "--source",
        "tone:?rate=22050&channels=1",
        "--chunk-ms",
        "10",
    ]);
    let mut ws = connect(server.addr);
    read_json(&mut ws);
    next_audio(&mut ws);
    let (status, json) = get_json(server.addr, "/api/status");
    assert_eq!(status, 200);
    assert_eq!(json["stream"]["sample_rate"], 22050);
    assert_eq!(json["stream"]["channels"], 1);
    assert_eq!(json["stream"]["chunk_ms"], 10);
    assert_eq!(json["stream"]["chunk_frames"], 221);
    assert_eq!(json["stream"]["codec"], "pcm_s16le");
    assert_eq!(json["listeners"]["current"], 1);
    assert_eq!(json["source"]["state"], "live");
    assert!(json["counters"]["chunks_produced"].as_u64().unwrap() > 0);
    assert!(json["counters"]["bytes_sent"].as_u64().unwrap() > 0);
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_in_json() {
    let server = Server::start(&["--source", "tone:"]);
    let (status, head, body) = http_get(server.addr, "/nothing-here");
    assert_eq!(status, 404);
    assert_eq!(header(&head, "Content-Type"), Some("application/json"));
    assert!(body.contains("no such path"));
    let (status, head, _) = raw_http(
        server.addr,
        b"DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert_eq!(header(&head, "Allow"), Some("GET, HEAD"));
    let (status, _, _) = raw_http(
        server.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!(status, 405);
}

#[test]
fn no_path_reads_outside_the_embedded_assets() {
    let server = Server::start(&["--source", "tone:"]);
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/src/main.rs",
        "//etc/passwd",
        "/./index.html",
    ] {
        let (status, _, _) = http_get(server.addr, path);
        assert_eq!(status, 404, "{path}");
    }
}

#[test]
fn head_requests_get_headers_without_a_body() {
    let server = Server::start(&["--source", "tone:"]);
    let (status, head, body) = raw_http(
        server.addr,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(
        header(&head, "Content-Length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    assert!(body.is_empty());
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&["--source", "tone:"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // One request, answered in full while the connection stays open...
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 200, "connection closed after one request: {head}");
    // An answer on a connection that stays open does not say it closes.
    assert_eq!(header(&head, "Connection"), None, "{head}");
    // ...then three pipelined in one write, the last one closing.
    stream
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert_eq!(rest.matches("HTTP/1.1 200 OK").count(), 3, "{rest}");
    // Only the last answer, after which the connection ends, says so.
    assert_eq!(rest.matches("Connection: close\r\n").count(), 1, "{rest}");
    let last = rest.rsplit("HTTP/1.1 200 OK").next().unwrap();
    assert!(last.contains("Connection: close\r\n"), "{rest}");
}

/// A refused request ends its connection, and every refusal says so with `Connection: close`:
/// a proxy that pools upstream connections (nginx's `keepalive`) would otherwise send its next
/// request down one that is closing, and fail it with 502 (tests/tls_proxy.rs runs that through
/// nginx). tiny_http drops a `Connection` header, so this pins earshot's own line.
#[test]
fn every_answer_after_which_the_connection_closes_says_connection_close() {
    let server = Server::start(&["--source", "tone:"]);
    let upgrade = |extra: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    };
    let cases = [
        ("malformed", "THIS IS NOT HTTP\r\n\r\n".to_string(), 400),
        (
            "foreign origin",
            upgrade("Origin: https://evil.example\r\n"),
            403,
        ),
        (
            "bad upgrade",
            upgrade("").replace("Version: 13", "Version: 8"),
            400,
        ),
        (
            "body too large",
            "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n".to_string(),
            413,
        ),
        ("HTTP/1.0", "GET /healthz HTTP/1.0\r\n\r\n".to_string(), 200),
    ];
    for (what, request, expected) in cases {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        // read_to_string ends only because the server closed: the header must have said so.
        stream.read_to_string(&mut answer).unwrap();
        let (head, _) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(status, expected, "{what}: {head}");
        assert_eq!(header(head, "Connection"), Some("close"), "{what}: {head}");
        // Once, right after the status line.
        assert_eq!(head.matches("Connection").count(), 1, "{what}: {head}");
        assert!(
            head.lines()
                .nth(1)
                .unwrap()
                .starts_with("Connection: close"),
            "{head}"
        );
    }
}

#[test]
fn malformed_and_oversized_requests_get_clear_errors() {
    let server = Server::start(&["--source", "tone:"]);
    let (status, _, body) = raw_http(server.addr, b"THIS IS NOT HTTP\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("malformed request"), "{body}");
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000));
    let (status, _, body) = raw_http(server.addr, big.as_bytes());
    assert_eq!(status, 431, "{body}");
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let (status, _, _) = raw_http(
        server.addr,
        format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(status, 431);
    let (status, _, _) = raw_http(
        server.addr,
        b"POST /api/x HTTP/1.1\r\nContent-Length: 999999\r\n\r\n",
    );
    assert_eq!(status, 413);
    let (status, _, _) = raw_http(
        server.addr,
        b"POST /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(status, 411);
    // And the server still answers normally.
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
}

#[test]
fn bad_websocket_upgrades_get_400_with_a_reason() {
    let server = Server::start(&["--source", "tone:"]);
    let good_key = "dGhlIHNhbXBsZSBub25jZQ==";
    let cases = [
        ("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(), "expected a WebSocket upgrade"),
        (
            format!("POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {good_key}\r\n\r\n"),
            "needs GET",
        ),
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".to_string(),
            "missing Sec-WebSocket-Key",
        ),
        (
            format!("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {good_key}\r\n\r\n"),
            "unsupported Sec-WebSocket-Version",
        ),
        (
            format!("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {good_key}\r\n\r\n"),
            "Connection header",
        ),
    ];
    for (request, reason) in cases {
        let (status, head, body) = raw_http(server.addr, request.as_bytes());
        assert_eq!(status, 400, "{request}");
        assert!(body.contains(reason), "{request} -> {body}");
        assert_eq!(header(&head, "Content-Type"), Some("application/json"));
    }
}

#[test]
fn a_refused_upgrade_reaches_a_client_that_kept_sending() {
    // A client that sends a large first WebSocket frame right behind the upgrade (without
    // waiting for 101) while the server refuses it: the refusal must not be lost to the reset
    // that closing a socket with unread data sends.
    let server = Server::start(&[
        "--source",
        "tone:",
        "--allowed-origin",
        "https://radio.example.org",
    ]);
    let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Origin: https://evil.example\r\n\r\n";
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    // More than the server reads with a request: still unread when it refuses and closes.
    let frame = [0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4];
    let mut pending = frame.to_vec();
    pending.resize(128 * 1024, 0);
    let _ = stream.write_all(&pending);
    std::thread::sleep(Duration::from_millis(300));
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 403"), "{read:?}: {text}");
    assert!(text.contains("origin"), "{text}");
}

#[test]
fn firefox_style_connection_header_upgrades() {
    let server = Server::start(&["--source", "tone:"]);
    let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
}

#[test]
fn a_head_that_arrives_a_byte_at_a_time_is_answered() {
    // Each byte its own segment, so the end of the head is found across reads, including the
    // read that completes the blank line.
    let server = Server::start(&["--source", "tone:"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn a_client_that_trickles_its_request_head_is_cut_off_while_others_are_served() {
    let server = Server::start(&["--source", "tone:"]);
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    // Meanwhile other clients get answers at once.
    for _ in 0..5 {
        assert_eq!(http_get(server.addr, "/healthz").0, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // The trickler is answered 408 within the head timeout (10 s) plus slack.
    let mut rest = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    for _ in 0..3 {
        let _ = slow.write_all(b"X-A: b\r\n");
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = slow.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(13));
}

#[test]
fn www_flag_serves_the_page_from_disk_for_development() {
    let dir = std::env::temp_dir().join(format!("earshot-www-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<p>dev copy</p>").unwrap();
    std::fs::write(dir.join("extra.js"), "// new file").unwrap();
    let server = Server::start(&["--source", "tone:", "--www", dir.to_str().unwrap()]);
    let (status, _, body) = http_get(server.addr, "/");
    assert_eq!((status, body.as_str()), (200, "<p>dev copy</p>"));
    let (status, head, _) = http_get(server.addr, "/extra.js");
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(http_get(server.addr, "/../Cargo.toml").0, 404);
    assert_eq!(http_get(server.addr, "/.hidden").0, 404);
}
