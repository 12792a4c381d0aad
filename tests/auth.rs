//! Passwords and tokens, end to end through the real binary: login and logout, expiry, every way
//! a token travels, the first-message login, refusals before the upgrade, the brute-force
//! window, the Origin check, and logs that never show a secret.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use earshot::wsclient::{self, ConnectError, Credentials};
use support::*;

const PASSWORD: &str = "correct horse battery staple";

fn start_with_password(extra: &[&str]) -> Server {
    let mut args = vec!["--source", "tone:", "--password", PASSWORD];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Logs in with JSON; returns the token.
fn login(server: &Server) -> String {
    let body = serde_json::json!({ "password": PASSWORD }).to_string();
    let (status, _, body) = post(server.addr, "/api/login", "application/json", &body, &[]);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["token"].as_str().unwrap().to_string()
}

fn error_of(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
    json["error"].as_str().expect("an error field").to_string()
}

/// Reads the hello and one audio chunk: the connection really streams.
fn assert_streams(mut connection: wsclient::Connection) {
    let ws = &mut connection.ws;
    let hello = match ws.read().unwrap() {
        tungstenite::Message::Text(t) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
        other => panic!("expected hello, got {other:?}"),
    };
    assert_eq!(hello["type"], "hello");
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Binary(b) => {
                assert!(b.len() > 16);
                return;
            }
            tungstenite::Message::Text(_) => continue,
            other => panic!("expected audio, got {other:?}"),
        }
    }
}

#[test]
fn login_with_the_password_gives_a_token_and_an_http_only_same_site_cookie() {
    let server = start_with_password(&["--token-ttl", "2h"]);
    for (content_type, body) in [
        (
            "application/json",
            format!(r#"{{"password":"{PASSWORD}"}}"#),
        ),
        (
            "application/x-www-form-urlencoded",
            format!("password={}", PASSWORD.replace(' ', "+")),
        ),
    ] {
        let (status, head, body) = post(server.addr, "/api/login", content_type, &body, &[]);
        assert_eq!(status, 200, "{content_type}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let token = json["token"].as_str().unwrap();
        assert_eq!(token.len(), 43, "32 bytes in URL-safe base64");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(json["expires_in_s"], 7200);
        let cookie = header(&head, "Set-Cookie").unwrap();
        assert_eq!(
            cookie,
            format!("earshot_token={token}; Path=/; Max-Age=7200; HttpOnly; SameSite=Strict")
        );
        assert_eq!(header(&head, "Cache-Control"), Some("no-store"));
    }
    // Behind a TLS proxy the cookie is also Secure.
    let body = format!(r#"{{"password":"{PASSWORD}"}}"#);
    let (_, head, _) = post(
        server.addr,
        "/api/login",
        "application/json",
        &body,
        &[("X-Forwarded-Proto", "https")],
    );
    assert!(header(&head, "Set-Cookie").unwrap().ends_with("; Secure"));
}

#[test]
fn a_wrong_or_missing_password_is_refused_with_a_reason() {
    let server = start_with_password(&[]);
    let (status, head, body) = post(
        server.addr,
        "/api/login",
        "application/json",
        r#"{"password":"guess"}"#,
        &[],
    );
    assert_eq!(status, 401);
    assert_eq!(error_of(&body), "wrong password");
    assert!(header(&head, "Set-Cookie").is_none());
    let (status, _, body) = post(server.addr, "/api/login", "application/json", "{}", &[]);
    assert_eq!(
        (status, error_of(&body).as_str()),
        (400, "the body has no password")
    );
    let (status, _, _) = post(server.addr, "/api/login", "image/png", "x", &[]);
    assert_eq!(status, 415);
    let (status, _, _) = http_get(server.addr, "/api/login");
    assert_eq!(status, 405);
}

#[test]
fn ws_without_a_valid_token_is_refused_with_401_before_the_upgrade() {
    let server = start_with_password(&[]);
    let (status, head, body) = raw_http(server.addr, &upgrade_bytes("/ws", &[]));
    assert_eq!(status, 401, "{head}");
    assert_eq!(header(&head, "Content-Type"), Some("application/json"));
    assert_eq!(
        header(&head, "WWW-Authenticate"),
        Some(r#"Bearer realm="earshot""#)
    );
    assert!(error_of(&body).starts_with("login required"), "{body}");
    let bogus = "A".repeat(43);
    let (status, _, body) = raw_http(
        server.addr,
        &upgrade_bytes("/ws", &[("Authorization", &format!("Bearer {bogus}"))]),
    );
    assert_eq!(status, 401);
    assert!(
        error_of(&body).contains("invalid, expired or logged out"),
        "{body}"
    );
    // The Rust client reports the status and the server's reason.
    match wsclient::connect(&server.ws_url(), None, Credentials::None) {
        Err(ConnectError::Refused { status, reason, .. }) => {
            assert_eq!(status, 401);
            assert!(reason.starts_with("login required"), "{reason}");
        }
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got a connection"),
    }
}

#[test]
fn a_token_is_accepted_from_bearer_cookie_and_query() {
    let server = start_with_password(&[]);
    let token = login(&server);
    let bearer = format!("Bearer {token}");
    let cookie = format!("theme=dark; earshot_token={token}");
    for (path, headers) in [
        ("/ws".to_string(), vec![("Authorization", bearer.as_str())]),
        ("/ws".to_string(), vec![("Cookie", cookie.as_str())]),
        (format!("/ws?token={token}"), vec![]),
    ] {
        let (status, head) = upgrade_status(server.addr, &path, &headers);
        assert_eq!(status, 101, "{path} {headers:?}: {head}");
    }
    // And the stream really flows on a token.
    assert_streams(wsclient::connect(&server.ws_url(), None, Credentials::Token(&token)).unwrap());
}

#[test]
fn healthz_stays_open_and_status_needs_a_token() {
    let server = start_with_password(&[]);
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
    let (status, head, body) = http_get(server.addr, "/api/status");
    assert_eq!(status, 401, "{body}");
    assert!(header(&head, "WWW-Authenticate").is_some());
    let token = login(&server);
    let (status, _, body) = raw_http(
        server.addr,
        &request_bytes(
            "GET",
            "/api/status",
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"counters\""));
    // The page's own files are open: they show the login form.
    assert_eq!(http_get(server.addr, "/").0, 200);
    assert_eq!(http_get(server.addr, "/login.js").0, 200);
}

#[test]
fn the_session_endpoint_tells_the_page_whether_to_show_the_login_form() {
    let open = Server::start(&["--source", "tone:"]);
    let (_, json) = get_json(open.addr, "/api/session");
    assert_eq!(
        json,
        serde_json::json!({"auth_required": false, "authenticated": false})
    );
    let (status, _, body) = post(open.addr, "/api/login", "application/json", "{}", &[]);
    assert_eq!(status, 404);
    assert!(error_of(&body).contains("authentication is off"));
    match wsclient::connect(&open.ws_url(), None, Credentials::Password("x")) {
        Err(ConnectError::Login(reason)) => assert!(reason.contains("no password"), "{reason}"),
        Err(other) => panic!("expected a login error, got {other}"),
        Ok(_) => panic!("a password login to a server without one succeeded"),
    }

    let server = start_with_password(&[]);
    let (_, json) = get_json(server.addr, "/api/session");
    assert_eq!(
        json,
        serde_json::json!({"auth_required": true, "authenticated": false})
    );
    let token = login(&server);
    let (_, _, body) = raw_http(
        server.addr,
        &request_bytes(
            "GET",
            "/api/session",
            &[("Cookie", &format!("earshot_token={token}"))],
            b"",
        ),
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["authenticated"], true);
}

#[test]
fn tokens_expire_after_the_token_ttl() {
    let server = start_with_password(&["--token-ttl", "1s"]);
    let token = login(&server);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        upgrade_status(server.addr, "/ws", &[("Authorization", &bearer)]).0,
        101
    );
    std::thread::sleep(Duration::from_millis(1300));
    let (status, _, body) = raw_http(
        server.addr,
        &upgrade_bytes("/ws", &[("Authorization", &bearer)]),
    );
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("expired"), "{body}");
}

#[test]
fn logout_revokes_the_token_and_clears_the_cookie() {
    let server = start_with_password(&[]);
    let token = login(&server);
    let other = login(&server);
    let cookie = format!("earshot_token={token}");
    let (status, head, body) = post(
        server.addr,
        "/api/logout",
        "application/json",
        "",
        &[("Cookie", &cookie)],
    );
    assert_eq!(status, 200, "{body}");
    let cleared = header(&head, "Set-Cookie").unwrap();
    assert!(cleared.starts_with("earshot_token=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(
        upgrade_status(server.addr, "/ws", &[("Cookie", &cookie)]).0,
        401
    );
    // Other sessions are untouched.
    let bearer = format!("Bearer {other}");
    assert_eq!(
        upgrade_status(server.addr, "/ws", &[("Authorization", &bearer)]).0,
        101
    );
}

#[test]
fn a_password_sent_as_the_first_message_gets_a_token_then_the_stream() {
    let server = start_with_password(&[]);
    let connection =
        wsclient::connect(&server.ws_url(), None, Credentials::Password(PASSWORD)).unwrap();
    let token = connection
        .token
        .clone()
        .expect("a token for the next connection");
    assert_streams(connection);
    // The token works for the next connection, without the password.
    assert_streams(
        wsclient::connect(&server.ws_url(), None, Credentials::Token(token.expose())).unwrap(),
    );
    // A wrong password is closed with 1008 and a reason.
    match wsclient::connect(&server.ws_url(), None, Credentials::Password("nope")) {
        Err(ConnectError::Login(reason)) => assert_eq!(reason, "wrong password"),
        Err(other) => panic!("expected a login refusal, got {other}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    assert!(
        server.wait_log("closed with 1008: wrong password", Duration::from_secs(3)),
        "{}",
        server.stderr()
    );
}

#[test]
fn first_message_login_closes_with_1008_on_anything_but_a_login() {
    let server = start_with_password(&[]);
    let mut ws = try_connect(server.addr, "/ws?auth=message").unwrap();
    ws.send(tungstenite::Message::text(r#"{"type":"ping","id":1}"#))
        .unwrap();
    let frame = match ws.read() {
        Ok(tungstenite::Message::Close(frame)) => frame.unwrap(),
        other => panic!("expected a close frame, got {other:?}"),
    };
    assert_eq!(u16::from(frame.code), 1008);
    assert!(frame.reason.contains("login"), "{}", frame.reason);
}

#[test]
fn a_client_that_closes_instead_of_logging_in_is_answered_and_logged_as_a_clean_close() {
    let server = start_with_password(&[]);
    let mut ws = try_connect(server.addr, "/ws?auth=message").unwrap();
    assert!(
        close_and_read_echo(&mut ws),
        "the server echoed the close frame"
    );
    assert!(
        server.wait_log(": client closed", Duration::from_secs(3)),
        "{}",
        server.stderr()
    );
}

#[test]
fn repeated_failed_logins_from_one_address_get_429_with_retry_after() {
    let server = start_with_password(&[]);
    let wrong = r#"{"password":"wrong"}"#;
    for attempt in 0..5 {
        let (status, _, _) = post(server.addr, "/api/login", "application/json", wrong, &[]);
        assert_eq!(status, 401, "attempt {attempt}");
    }
    // Even the right password is refused now, and the WebSocket login too.
    let right = format!(r#"{{"password":"{PASSWORD}"}}"#);
    let (status, head, body) = post(server.addr, "/api/login", "application/json", &right, &[]);
    assert_eq!(status, 429, "{body}");
    let retry: u64 = header(&head, "Retry-After").unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry), "Retry-After {retry}");
    assert!(error_of(&body).starts_with("too many failed logins"));
    let (status, head) = upgrade_status(server.addr, "/ws?auth=message", &[]);
    assert_eq!(status, 429, "{head}");
    // Another address is not affected.
    let mut other = connect_from("127.0.0.2", server.addr).unwrap();
    other
        .write_all(&request_bytes(
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            right.as_bytes(),
        ))
        .unwrap();
    assert_eq!(read_head(&mut other).0, 200);
}

#[test]
fn behind_a_trusted_proxy_failed_logins_count_per_forwarded_client() {
    let server = start_with_password(&["--trusted-proxy", "127.0.0.1"]);
    let wrong = r#"{"password":"wrong"}"#;
    let attacker = [("X-Forwarded-For", "203.0.113.5")];
    for _ in 0..5 {
        post(
            server.addr,
            "/api/login",
            "application/json",
            wrong,
            &attacker,
        );
    }
    let right = format!(r#"{{"password":"{PASSWORD}"}}"#);
    let status = |xff: &str| {
        post(
            server.addr,
            "/api/login",
            "application/json",
            &right,
            &[("X-Forwarded-For", xff)],
        )
        .0
    };
    assert_eq!(status("203.0.113.5"), 429);
    assert_eq!(
        status("203.0.113.6"),
        200,
        "a different client behind the proxy"
    );
    // Only the address the proxy appended counts: a forged first entry does not help.
    assert_eq!(status("198.51.100.1, 203.0.113.5"), 429);
    assert!(server.stderr().contains("failed login from 203.0.113.5"));
}

#[test]
fn pages_from_other_sites_cannot_open_the_stream_or_log_in() {
    let server = Server::start(&[
        "--source",
        "tone:",
        "--allowed-origin",
        "https://radio.example.org",
    ]);
    let host = server.addr.to_string();
    let own = format!("http://{host}");
    let cases = [
        (own.as_str(), 101),
        ("https://radio.example.org", 101),
        ("https://evil.example", 403),
        ("null", 403),
    ];
    for (origin, expected) in cases {
        let (status, head) = upgrade_status_with_host(&server, &host, origin);
        assert_eq!(status, expected, "{origin}: {head}");
    }
    let (status, _, body) = raw_http(
        server.addr,
        &upgrade_bytes("/ws", &[("Origin", "https://evil.example")]),
    );
    assert_eq!(status, 403);
    assert!(error_of(&body).contains("origin https://evil.example is not allowed"));
    let (status, _, _) = post(
        server.addr,
        "/api/logout",
        "application/json",
        "",
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(status, 403);
}

/// An upgrade with `Host: host` (instead of `localhost`) and `Origin: origin`.
fn upgrade_status_with_host(server: &Server, host: &str, origin: &str) -> (u16, String) {
    let request = String::from_utf8(upgrade_bytes("/ws", &[("Origin", origin)]))
        .unwrap()
        .replace("Host: localhost", &format!("Host: {host}"));
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_head(&mut stream)
}

#[test]
fn passwords_and_tokens_never_appear_in_the_log() {
    let dir = TempDir::new("pw-log");
    let file = dir.join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let server = Server::start(&[
        "--source",
        "tone:",
        "--password-file",
        file.to_str().unwrap(),
    ]);
    let mut secrets = vec![PASSWORD.to_string(), "a wrong guess".to_string()];
    post(
        server.addr,
        "/api/login",
        "application/json",
        r#"{"password":"a wrong guess"}"#,
        &[],
    );
    let token = login(&server);
    let connection =
        wsclient::connect(&server.ws_url(), None, Credentials::Password(PASSWORD)).unwrap();
    secrets.push(connection.token.clone().unwrap().expose().to_string());
    drop(connection);
    let _ = wsclient::connect(
        &server.ws_url(),
        None,
        Credentials::Password("a wrong guess"),
    );
    upgrade_status(server.addr, &format!("/ws?token={token}"), &[]);
    upgrade_status(server.addr, "/ws?token=forged-token-value-0123456789", &[]);
    secrets.push("forged-token-value-0123456789".to_string());
    post(
        server.addr,
        "/api/logout",
        "application/json",
        "",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    secrets.push(token);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !server.stderr().contains("login from") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = server.stderr();
    assert!(log.contains("failed login from 127.0.0.1"), "{log}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret:?} is in the log:\n{log}"
        );
    }
}

#[test]
fn password_flags_are_checked_before_the_port_opens() {
    let (code, _, err) = run_earshot(&["serve", "--password", "a", "--password-file", "b"]);
    assert_eq!(code, 2);
    assert!(err.contains("give only one of them"), "{err}");
    let (code, _, err) = run_earshot(&["serve", "--password-file", "/nonexistent/pw"]);
    assert_eq!(code, 2);
    assert!(err.contains("--password-file /nonexistent/pw"), "{err}");
}

#[test]
fn other_sites_cannot_frame_the_page_and_its_login_form() {
    let server = start_with_password(&[]);
    let (status, head, _) = http_get(server.addr, "/");
    assert_eq!(status, 200);
    assert_eq!(header(&head, "X-Frame-Options"), Some("SAMEORIGIN"));
    assert_eq!(
        header(&head, "Content-Security-Policy"),
        Some("frame-ancestors 'self'")
    );
    assert_eq!(header(&head, "X-Content-Type-Options"), Some("nosniff"));
}

#[test]
fn sigterm_closes_a_client_still_waiting_to_log_in_and_exits_0_within_2_s() {
    let mut server = start_with_password(&[]);
    let mut ws = try_connect(server.addr, "/ws?auth=message").unwrap();
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    server.signal("TERM");
    let code = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, Some(1001));
    assert_eq!(server.wait_exit(Duration::from_secs(3)), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_first_message_login_that_takes_its_time_is_pinged_meanwhile_and_still_accepted() {
    // A proxy's read timeout (deploy/nginx.conf: 3 s) would end a login that is slow to come.
    let server = start_with_password(&[]);
    let mut ws = try_connect(server.addr, "/ws?auth=message").unwrap();
    let waiting = messages_within(&mut ws, Duration::from_millis(3500));
    assert!(
        waiting.iter().all(|m| m.is_ping()),
        "before the login: {waiting:?}"
    );
    assert!(
        (3..=4).contains(&waiting.len()),
        "{} pings in 3.5 s",
        waiting.len()
    );
    ws.send(tungstenite::Message::text(format!(
        r#"{{"type":"login","password":"{PASSWORD}"}}"#
    )))
    .unwrap();
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let token = loop {
        match ws.read().expect("the answer to the login") {
            tungstenite::Message::Text(t) => break t,
            _ => continue,
        }
    };
    assert!(token.contains(r#""type":"token""#), "{token}");
}
