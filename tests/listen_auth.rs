//! `earshot listen` against a server with a password: a password login (whose token serves the
//! reconnects), a token from `POST /api/login`, and a wrong password refused with its reason.
//! wss:// through a proxy is in tls_proxy.rs.

mod support;

use support::*;

const PASSWORD: &str = "listen test password";

fn start() -> Server {
    Server::start(&["--source", "tone:", "--password", PASSWORD])
}

#[test]
fn listen_with_the_password_plays_the_stream() {
    let server = start();
    let (code, stdout, stderr) = run_earshot(&[
        "listen",
        &server.ws_url(),
        "--password",
        PASSWORD,
        "--duration",
        "1",
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
}

#[test]
fn listen_with_a_token_from_the_login_api_plays_the_stream() {
    let server = start();
    let body = serde_json::json!({ "password": PASSWORD }).to_string();
    let (status, _, reply) = post(server.addr, "/api/login", "application/json", &body, &[]);
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let token = reply["token"].as_str().expect("a token");
    let (code, stdout, stderr) = run_earshot(&[
        "listen",
        &server.ws_url(),
        "--token",
        token,
        "--duration",
        "1",
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
}
