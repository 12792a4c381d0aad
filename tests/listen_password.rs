//! earshot listen against a password-protected server: password, password file, token, wrong
//! credentials, token reuse across reconnects, and Retry-After on a full server.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::listen::ListenProcess;
use support::*;

const PASSWORD: &str = "listen test password";

fn start_with_password(extra: &[&str]) -> Server {
    let mut args = vec!["--source", "tone:", "--password", PASSWORD];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// How many password logins the server has accepted so far.
fn logins(server: &Server) -> usize {
    server.stderr().matches(" earshot: login from ").count()
}

#[test]
fn a_password_protected_stream_plays_with_a_password_a_password_file_or_a_token() {
    let server = start_with_password(&[]);
    let dir = TempDir::new("listen-password");
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let body = serde_json::json!({ "password": PASSWORD }).to_string();
    let (status, _, body) = post(server.addr, "/api/login", "application/json", &body, &[]);
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let url = server.ws_url();
    let file = password_file.to_str().unwrap();
    for credentials in [
        ["--password", PASSWORD],
        ["--password-file", file],
        ["--token", token.as_str()],
    ] {
        let mut args = vec!["listen", &url, "--duration", "1", "--json"];
        args.extend_from_slice(&credentials);
        let (code, stdout, stderr) = run_earshot(&args);
        assert_eq!(
            code, 0,
            "{credentials:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let lines = json_lines(&stdout);
        assert_eq!(of_type(&lines, "connected").len(), 1, "{stdout}");
        for secret in [PASSWORD, token.as_str()] {
            assert!(!stdout.contains(secret) && !stderr.contains(secret));
        }
    }
}

#[test]
fn a_wrong_or_missing_password_is_one_clear_line_and_exit_1_even_with_reconnect() {
    let server = start_with_password(&[]);
    let url = server.ws_url();
    let cases: [(&[&str], &str); 3] = [
        (&["--password", "not it"], "wrong password"),
        (&["--token", "forged"], "invalid"),
        (&[], "give --password"),
    ];
    for (credentials, why) in cases {
        let mut args = vec!["listen", &url, "--duration", "5", "--reconnect"];
        args.extend_from_slice(credentials);
        let started = Instant::now();
        let (code, stdout, stderr) = run_earshot(&args);
        assert_eq!(
            code, 1,
            "{credentials:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a refusal is not retried"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("earshot: {url}: refused by the server (401): ")),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{stderr}");
        assert!(!stderr.contains("not it") && !stderr.contains("forged"));
    }
}

/// A TCP relay in front of a server whose connections the test can cut, as a flaky network
/// would, without restarting the server.
struct Relay {
    addr: std::net::SocketAddr,
    clients: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn start(upstream: std::net::SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = clients.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                kept.lock().unwrap().push(client.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, clients }
    }

    fn cut(&self) {
        for client in self.clients.lock().unwrap().drain(..) {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn a_password_login_is_made_once_and_its_token_used_to_reconnect() {
    let server = start_with_password(&[]);
    let relay = Relay::start(server.addr);
    let url = format!("ws://{}/ws", relay.addr);
    let listener = ListenProcess::start(&[
        &url,
        "--password",
        PASSWORD,
        "--reconnect",
        "--json",
        "--duration",
        "3",
    ]);
    std::thread::sleep(Duration::from_millis(1200));
    relay.cut();
    let out = listener.finish();
    let (stdout, lines) = (&out.stdout, out.lines());
    assert_eq!(of_type(&lines, "connected").len(), 2, "{stdout}");
    assert_eq!(out.code, Some(3), "one interruption: {stdout}");
    assert_eq!(logins(&server), 1, "{}", server.stderr());
}

#[test]
fn after_a_restart_forgets_the_token_the_listener_logs_in_again() {
    let first = start_with_password(&[]);
    let addr = first.addr.to_string();
    let listener = ListenProcess::start(&[
        &first.ws_url(),
        "--password",
        PASSWORD,
        "--reconnect",
        "--json",
        "--duration",
        "4",
    ]);
    std::thread::sleep(Duration::from_millis(1200));
    drop(first);
    let second = start_with_password(&["--listen", &addr]);
    let out = listener.finish();
    let (stdout, lines) = (&out.stdout, out.lines());
    assert_eq!(of_type(&lines, "connected").len(), 2, "{stdout}");
    assert_eq!(out.code, Some(3), "one interruption: {stdout}");
    assert_eq!(logins(&second), 1, "{}", second.stderr());
}

#[test]
fn a_full_server_is_retried_with_reconnect_after_its_retry_after() {
    // The listener limit's 503 says Retry-After: 5; the place frees up long before that.
    let server = Server::start(&["--source", "tone:", "--max-listeners", "1"]);
    let holder = connect(server.addr);
    let listener =
        ListenProcess::start(&[&server.ws_url(), "--reconnect", "--json", "--duration", "4"]);
    std::thread::sleep(Duration::from_millis(500));
    drop(holder);
    let out = listener.finish();
    let (stdout, lines) = (&out.stdout, out.lines());
    let refused = of_type(&lines, "disconnected");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("(503)"),
        "the refusal is reported: {stdout}"
    );
    let connected = of_type(&lines, "connected");
    assert_eq!(connected.len(), 1, "{stdout}");
    let waited_ms = connected[0]["t"].as_u64().unwrap() - refused[0]["t"].as_u64().unwrap();
    assert!(
        waited_ms >= 4500,
        "retried after {waited_ms} ms, not after Retry-After"
    );
    assert_eq!(out.code, Some(0), "{stdout}");
}
