//! wss:// through the reverse-proxy configs shipped in deploy/, run by Debian's real nginx and
//! HAProxy with a CA and certificate made here by openssl, everything on 127.0.0.1. The audio
//! that arrives through the proxy must be the very audio a direct ws:// listener gets, whether
//! the library client or the `earshot listen` binary receives it. And the proxy's pool of
//! connections to earshot never hands a request a connection that earshot is closing.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use earshot::wsclient::{self, ClientStream, Credentials};
use support::proxy::{ReverseProxy, adapt_shipped, haproxy_log, shipped_haproxy};
use support::*;
use tungstenite::{Message, WebSocket};

const PASSWORD: &str = "proxy test password";
/// Audio chunks each listener reads: two seconds of 20 ms chunks.
const CHUNKS: usize = 100;

struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// Certificate and key in one file, as HAProxy wants them.
    bundle: PathBuf,
}

/// A private CA and a server certificate for 127.0.0.1 signed by it, so the client verifies the
/// proxy exactly as it would a real one (only the trusted root differs).
fn make_certs(dir: &Path) -> Certs {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (scripts/install-test-deps.sh)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=earshot test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend_from_slice(&ec);
    csr.extend_from_slice(&[
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    let bundle = dir.join("bundle.pem");
    let mut both = std::fs::read(dir.join("server.pem")).unwrap();
    both.extend(std::fs::read(dir.join("server.key")).unwrap());
    std::fs::write(&bundle, both).unwrap();
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        bundle,
    }
}

/// A running proxy in front of one earshot, with TLS on `port`.
struct Proxy {
    process: ReverseProxy,
    port: u16,
    /// Where its request log goes.
    log: PathBuf,
}

impl Proxy {
    fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn wss_url(&self) -> String {
        format!("wss://127.0.0.1:{}/ws", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn start_nginx(dir: &Path, certs: &Certs, backend: SocketAddr) -> Proxy {
    let port = free_port();
    let site = adapt_shipped(
        "deploy/nginx.conf",
        &[
            (
                "server 127.0.0.1:8080 max_fails=0;",
                format!("server {backend};"),
            ),
            // One backend here; failover between several is tests/failover_haproxy.rs's.
            ("server 127.0.0.1:8081 max_fails=0;", String::new()),
            ("server 127.0.0.1:8082 max_fails=0;", String::new()),
            ("listen 80;", format!("listen 127.0.0.1:{};", free_port())),
            ("listen 443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
            (
                "/etc/letsencrypt/live/radio.example.org/fullchain.pem",
                certs.cert.display().to_string(),
            ),
            (
                "/etc/letsencrypt/live/radio.example.org/privkey.pem",
                certs.key.display().to_string(),
            ),
            (
                "/var/log/nginx/earshot.access.log",
                dir.join("access.log").display().to_string(),
            ),
        ],
    );
    Proxy {
        process: ReverseProxy::nginx(dir, port, &site),
        port,
        log: dir.join("access.log"),
    }
}

fn start_haproxy(dir: &Path, certs: &Certs, backend: SocketAddr) -> Proxy {
    let port = free_port();
    let config = shipped_haproxy(&[
        ("bind :443", format!("bind 127.0.0.1:{port}")),
        ("bind :80", format!("bind 127.0.0.1:{}", free_port())),
        (
            "/etc/haproxy/certs/earshot.pem",
            certs.bundle.display().to_string(),
        ),
        (
            "server earshot1 127.0.0.1:8080",
            format!("server earshot1 {backend}"),
        ),
        // One backend here; failover between several is tests/failover_haproxy.rs's.
        ("\n    server earshot2 127.0.0.1:8081", String::new()),
        ("\n    server earshot3 127.0.0.1:8082", String::new()),
    ]);
    Proxy {
        process: ReverseProxy::haproxy(dir, port, &config),
        port,
        log: haproxy_log(dir),
    }
}

/// One HTTPS request through the proxy; returns (status, head, body).
fn https_request(proxy: &Proxy, ca: &Path, request: &[u8]) -> (u16, String, String) {
    let uri = proxy.https_url().parse().unwrap();
    let mut stream = wsclient::open_stream(&uri, Some(ca)).expect("TLS to the proxy");
    exchange(&mut stream, request)
}

/// The hello, then `CHUNKS` audio messages as (sequence, sample bytes).
fn collect_audio(ws: &mut WebSocket<ClientStream>) -> Vec<(u64, Vec<u8>)> {
    collect_chunks(ws, CHUNKS)
}

/// The hello, then `count` audio messages as (sequence, sample bytes).
fn collect_chunks(ws: &mut WebSocket<ClientStream>, count: usize) -> Vec<(u64, Vec<u8>)> {
    match ws.read().expect("hello") {
        Message::Text(t) => assert!(t.as_str().contains("\"hello\""), "{t}"),
        other => panic!("expected hello, got {other:?}"),
    }
    let mut chunks = Vec::with_capacity(count);
    while chunks.len() < count {
        match ws.read().expect("audio") {
            Message::Binary(b) => {
                let seq = u64::from_le_bytes(b[0..8].try_into().unwrap());
                chunks.push((seq, b[16..].to_vec()));
            }
            Message::Text(t) => panic!("unexpected control message {t}"),
            _ => {}
        }
    }
    chunks
}

fn assert_contiguous(chunks: &[(u64, Vec<u8>)], who: &str) {
    for pair in chunks.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "{who}: a gap after {}", pair[0].0);
    }
}

/// Streams through `proxy` and directly at once, and compares what arrives.
/// `POST /api/drain` relayed by the proxy is refused: the proxy connects from loopback, but the
/// request comes from wherever the proxy's client is. The server keeps serving.
fn drain_is_refused_through(proxy: &Proxy, server: &Server, ca: &Path) {
    let (status, head, body) =
        https_request(proxy, ca, &request_bytes("POST", "/api/drain", &[], b""));
    assert_eq!(status, 403, "{head}\n{body}");
    assert!(body.contains("not through a proxy"), "{body}");
    let (status, health) = get_json(server.addr, "/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}

/// `POST /api/login` with the test's password.
fn login_request() -> Vec<u8> {
    let body = format!(r#"{{"password":"{PASSWORD}"}}"#);
    request_bytes(
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// An upgrade of `path` from the page at `origin`, with the proxy's own host (and port) as
/// `Host`, through the proxy; returns the status and head of the answer.
fn upgrade_through(proxy: &Proxy, ca: &Path, path: &str, origin: &str) -> (u16, String) {
    let host = format!("127.0.0.1:{}", proxy.port);
    let request = String::from_utf8(upgrade_bytes(path, &[("Origin", origin)]))
        .unwrap()
        .replace("Host: localhost", &format!("Host: {host}"));
    let uri = proxy.https_url().parse().unwrap();
    let mut stream = wsclient::open_stream(&uri, Some(ca)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_head(&mut stream)
}

fn wss_streams_intact_through(proxy: &Proxy, server: &Server, ca: &Path) {
    // Log in over HTTPS: the proxy says it was HTTPS, so the cookie is Secure.
    let (status, head, body) = https_request(proxy, ca, &login_request());
    assert_eq!(status, 200, "{head}\n{body}");
    let cookie = header(&head, "Set-Cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.ends_with("; Secure"),
        "{cookie}"
    );
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // A listener through the proxy logs in with the password as its first message; a direct
    // one uses the token from the HTTPS login.
    let mut proxied =
        wsclient::connect(&proxy.wss_url(), Some(ca), Credentials::Password(PASSWORD))
            .expect("wss:// through the proxy");
    let proxied_token = proxied.token.clone().unwrap();
    let mut direct = wsclient::connect(&server.ws_url(), None, Credentials::Token(&token))
        .expect("direct ws://");
    let reader = std::thread::spawn(move || collect_audio(&mut direct.ws));
    let through_proxy = collect_audio(&mut proxied.ws);
    let direct = reader.join().unwrap();
    assert_contiguous(&through_proxy, "through the proxy");
    assert_contiguous(&direct, "direct");
    let direct: BTreeMap<u64, Vec<u8>> = direct.into_iter().collect();
    let mut compared = 0;
    for (seq, samples) in &through_proxy {
        if let Some(expected) = direct.get(seq) {
            assert_eq!(samples, expected, "chunk {seq} differs through the proxy");
            compared += 1;
        }
    }
    assert!(compared >= CHUNKS / 2, "only {compared} chunks overlapped");

    // The page's own origin passes the proxy (it keeps Host with its port); another is refused.
    let own = format!("https://127.0.0.1:{}", proxy.port);
    for (origin, expected) in [(own.as_str(), 101), ("https://evil.example", 403)] {
        let (status, head) = upgrade_through(proxy, ca, &format!("/ws?token={token}"), origin);
        assert_eq!(status, expected, "{origin}: {head}");
    }

    // No secret in the proxy's request log or in earshot's.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy.log().contains("/ws") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = proxy.log();
    assert!(log.contains("/ws"), "the proxy logged no request: {log}");
    let earshot_log = server.stderr();
    for secret in [PASSWORD, token.as_str(), proxied_token.expose()] {
        assert!(!log.contains(secret), "the proxy logged a secret:\n{log}");
        assert!(!earshot_log.contains(secret), "earshot logged a secret");
    }
    // earshot saw the client's address through X-Forwarded-For.
    assert!(
        earshot_log.contains("login from 127.0.0.1"),
        "{earshot_log}"
    );
}

fn start_earshot(dir: &TempDir) -> Server {
    start_earshot_with(dir, &[])
}

/// [`start_earshot`] with more flags.
fn start_earshot_with(dir: &TempDir, extra: &[&str]) -> Server {
    let password = dir.join("password");
    std::fs::write(&password, PASSWORD).unwrap();
    let password = password.to_str().unwrap();
    let mut args = vec![
        "--source",
        "tone:",
        "--password-file",
        password,
        "--trusted-proxy",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn wss_through_the_shipped_nginx_config_carries_the_same_audio_as_ws_and_no_drain() {
    let dir = TempDir::new("nginx");
    let certs = make_certs(&dir.0);
    let server = start_earshot(&dir);
    let proxy = start_nginx(&dir.0, &certs, server.addr);
    wss_streams_intact_through(&proxy, &server, &certs.ca);
    drain_is_refused_through(&proxy, &server, &certs.ca);
}

#[test]
fn wss_through_the_shipped_haproxy_config_carries_the_same_audio_as_ws_and_no_drain() {
    let dir = TempDir::new("haproxy");
    let certs = make_certs(&dir.0);
    let server = start_earshot(&dir);
    let proxy = start_haproxy(&dir.0, &certs, server.addr);
    wss_streams_intact_through(&proxy, &server, &certs.ca);
    drain_is_refused_through(&proxy, &server, &certs.ca);
}

/// Frames per chunk of the tone at 44.1 kHz, 20 ms chunks (the server's defaults).
const TONE_CHUNK_FRAMES: usize = 882;

#[test]
fn earshot_listen_over_wss_through_nginx_records_the_same_samples_as_a_direct_listener() {
    let dir = TempDir::new("nginx-listen");
    let certs = make_certs(&dir.0);
    let server = start_earshot(&dir);
    let proxy = start_nginx(&dir.0, &certs, server.addr);
    let wav = dir.join("through-nginx.wav");

    // The direct listener starts first, so its chunks cover every one the binary records:
    // 3 s of recording plus connecting, well within 6 s.
    let mut direct = wsclient::connect(&server.ws_url(), None, Credentials::Password(PASSWORD))
        .expect("direct ws://");
    let reader = std::thread::spawn(move || collect_chunks(&mut direct.ws, 300));
    let ca = certs.ca.to_str().unwrap();
    let (code, stdout, stderr) = run_earshot(&[
        "listen",
        &proxy.wss_url(),
        "--ca-file",
        ca,
        "--password",
        PASSWORD,
        "--duration",
        "3",
        "--json",
        "--out",
        wav.to_str().unwrap(),
    ]);
    let direct: BTreeMap<u64, Vec<u8>> = reader.join().unwrap().into_iter().collect();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_type = |kind: &'static str| lines.iter().filter(move |l| l["type"] == kind);
    let connected: Vec<_> = of_type("connected").collect();
    assert_eq!(connected.len(), 1, "{stdout}");
    assert_eq!(connected[0]["url"], proxy.wss_url());
    let first_seq = connected[0]["seq"].as_u64().unwrap();
    assert_eq!(of_type("gap").count(), 0, "{stdout}");
    let summary = of_type("summary").next().expect("a summary line");
    assert_eq!(summary["outcome"], "continuous", "{summary}");
    assert_eq!(summary["totals"]["gaps"], 0);
    assert_eq!(summary["totals"]["skips"], 0);

    let reader = hound::WavReader::open(&wav).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (44_100, 2, 16)
    );
    assert_eq!(reader.duration(), 3 * 44_100, "exactly --duration 3");
    let recorded: Vec<u8> = reader
        .into_samples::<i16>()
        .flat_map(|s| s.unwrap().to_le_bytes())
        .collect();
    // The WAV starts with the connection's first chunk (the hello's seq) and has no hole, so
    // its n-th chunk is chunk first_seq + n; each must equal, byte for byte, what the direct
    // listener received under that sequence number. (The tone repeats every few chunks, so a
    // whole-chunk misalignment by a multiple of its period would go unseen; a lost, repeated
    // or altered sample would not.)
    let chunk_bytes = TONE_CHUNK_FRAMES * 4;
    assert_eq!(recorded.len() % chunk_bytes, 0);
    for (n, samples) in recorded.chunks(chunk_bytes).enumerate() {
        let seq = first_seq + n as u64;
        let expected = direct
            .get(&seq)
            .unwrap_or_else(|| panic!("the direct listener has no chunk {seq}"));
        assert!(samples == expected.as_slice(), "chunk {seq} differs");
    }
    assert!(recorded.iter().any(|&b| b != 0), "the tone, not silence");
}

#[test]
fn a_certificate_from_another_ca_is_refused_and_listen_does_not_retry_it() {
    let dir = TempDir::new("untrusted");
    let certs = make_certs(&dir.0);
    let other = TempDir::new("other-ca");
    let other_ca = make_certs(&other.0).ca;
    let server = start_earshot(&dir);
    let proxy = start_nginx(&dir.0, &certs, server.addr);
    let err = match wsclient::connect(&proxy.wss_url(), Some(&other_ca), Credentials::None) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a certificate from an untrusted CA was accepted"),
    };
    assert!(err.starts_with("tls: 127.0.0.1:"), "{err}");
    assert!(err.contains("certificate"), "{err}");

    let started = Instant::now();
    let (code, stdout, stderr) = run_earshot(&[
        "listen",
        &proxy.wss_url(),
        "--ca-file",
        other_ca.to_str().unwrap(),
        "--reconnect",
        "--duration",
        "20",
        "--json",
    ]);
    // Retrying cannot make the certificate trusted: one attempt, then exit 1 with the reason.
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up after {:?}, not at once",
        started.elapsed()
    );
    let url = proxy.wss_url();
    assert!(
        stderr.contains(&format!("earshot: {url}: tls: 127.0.0.1:"))
            && stderr.contains("certificate"),
        "{stderr}"
    );
    assert!(!stdout.contains("\"disconnected\""), "no retry: {stdout}");
}

#[test]
fn earshot_listen_logs_in_and_plays_wss_through_the_shipped_haproxy_config() {
    let dir = TempDir::new("haproxy-listen");
    let certs = make_certs(&dir.0);
    let server = start_earshot(&dir);
    let proxy = start_haproxy(&dir.0, &certs, server.addr);
    let (code, stdout, stderr) = run_earshot(&[
        "listen",
        &proxy.wss_url(),
        "--ca-file",
        certs.ca.to_str().unwrap(),
        "--password",
        PASSWORD,
        "--duration",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(r#""outcome":"continuous""#), "{stdout}");
    // Without the CA file the proxy's certificate is not trusted, and that is said: an error
    // that needs a change (exit 1, as for a wrong password), not a lost stream (4).
    let (code, _, stderr) = run_earshot(&[
        "listen",
        &proxy.wss_url(),
        "--password",
        PASSWORD,
        "--duration",
        "1",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(": tls: ") && stderr.contains("certificate"),
        "{stderr}"
    );
}

/// earshot closes a connection after refusing a request on it, and says so (`Connection: close`).
/// Without that, a proxy that keeps upstream connections alive (nginx's `keepalive`) puts the
/// connection back in its pool and may send the next request down it as earshot closes it; a
/// POST is not retried, so its client gets 502. Each round refuses an upgrade (a foreign origin)
/// and at once sends a POST through the proxy, which must reach earshot every time.
fn a_refusal_costs_the_next_request_nothing(proxy: &Proxy, server: &Server, ca: &Path) {
    for round in 0..ROUNDS_AFTER_REFUSAL {
        let (status, head) = upgrade_through(proxy, ca, "/ws", "https://evil.example");
        assert_eq!(status, 403, "round {round}: {head}");
        let (status, head, body) =
            https_request(proxy, ca, &request_bytes("POST", "/api/drain", &[], b""));
        assert_eq!(
            status,
            403,
            "round {round}: the POST after a refusal got\n{head}\n{body}\nearshot's log:\n{}",
            server.stderr()
        );
    }
}

/// Rounds of refusal-then-POST. Here nginx mostly sees earshot's FIN before it reuses the
/// connection, so tests/http.rs pins the header itself; under qemu (`make test-pi-zero`), where
/// the race was found, a server without the header lost within rounds 0 to 33 in 8 of 11 runs.
const ROUNDS_AFTER_REFUSAL: usize = 100;

#[test]
fn a_refused_upgrade_through_nginx_costs_the_next_post_nothing() {
    let dir = TempDir::new("nginx-refusal");
    let certs = make_certs(&dir.0);
    let server = start_earshot(&dir);
    let proxy = start_nginx(&dir.0, &certs, server.addr);
    a_refusal_costs_the_next_request_nothing(&proxy, &server, &certs.ca);
}

#[test]
fn a_refused_upgrade_through_haproxy_costs_the_next_post_nothing() {
    let dir = TempDir::new("haproxy-refusal");
    let certs = make_certs(&dir.0);
    let server = start_earshot(&dir);
    let proxy = start_haproxy(&dir.0, &certs, server.addr);
    a_refusal_costs_the_next_request_nothing(&proxy, &server, &certs.ca);
}

/// Established TCP connections whose local port is `port` (earshot's side of each).
fn established_on(port: u16) -> usize {
    let port_hex = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&port_hex) && f[3] == "01"
        })
        .count()
}

/// The shipped config keeps idle connections to earshot for the next request, and lets them go
/// before earshot's idle timeout (10 s) closes them from its side: a request nginx sends down a
/// connection as earshot closes it fails, and a POST is not retried. So after a login through
/// nginx, its connection to earshot must be gone within 8 s, by nginx's hand.
#[test]
fn nginx_lets_go_of_an_idle_connection_to_earshot_before_earshot_closes_it() {
    let dir = TempDir::new("nginx-idle");
    let certs = make_certs(&dir.0);
    let server = start_earshot(&dir);
    let proxy = start_nginx(&dir.0, &certs, server.addr);
    let (status, head, body) = https_request(&proxy, &certs.ca, &login_request());
    assert_eq!(status, 200, "{head}\n{body}");
    let port = server.addr.port();
    assert_eq!(
        established_on(port),
        1,
        "nginx keeps its connection to earshot for the next request"
    );
    let started = Instant::now();
    while established_on(port) > 0 && started.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        established_on(port),
        0,
        "the idle connection to earshot was still open after {:?}",
        started.elapsed()
    );
    // And the next POST, on a new connection, reaches earshot.
    let (status, head, body) = https_request(&proxy, &certs.ca, &login_request());
    assert_eq!(status, 200, "{head}\n{body}");
}

/// HAProxy keeps its connection to earshot after an answer and sends the same client's next
/// request down it. earshot closes a connection that has been idle for `--idle-timeout-ms`; a
/// request that meets that close must still be answered, not with 502. HAProxy is held
/// (SIGSTOP) while earshot closes and the client's next login (a POST, which a proxy cannot
/// simply send twice) reaches it, so that once let go it finds the request and earshot's FIN
/// together. In the runs here it always read the FIN first and opened a new connection; the
/// shipped config's `retry-on conn-failure empty-response` is there for the other order.
#[test]
fn a_login_through_haproxy_that_meets_earshots_idle_close_still_gets_through() {
    const IDLE_MS: u64 = 200;
    const ROUNDS: usize = 20;
    let dir = TempDir::new("haproxy-idle-close");
    let certs = make_certs(&dir.0);
    let idle = IDLE_MS.to_string();
    let server = start_earshot_with(&dir, &["--idle-timeout-ms", &idle]);
    let proxy = start_haproxy(&dir.0, &certs, server.addr);
    let uri = proxy.https_url().parse().unwrap();
    let mut stream = wsclient::open_stream(&uri, Some(&certs.ca)).expect("TLS to HAProxy");
    let request = String::from_utf8(login_request())
        .unwrap()
        .replace("Connection: close\r\n", "");
    for round in 0..ROUNDS {
        if round > 0 {
            proxy.process.signal("STOP");
            // earshot closes after IDLE_MS; a busy machine may take it longer to get round to it.
            let held = Instant::now();
            while established_on(server.addr.port()) > 0 && held.elapsed() < Duration::from_secs(3)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(
                established_on(server.addr.port()),
                0,
                "round {round}: earshot's idle connection from HAProxy still open after {:?}",
                held.elapsed()
            );
            stream.write_all(request.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            proxy.process.signal("CONT");
        } else {
            stream.write_all(request.as_bytes()).unwrap();
        }
        let (status, head, body) = read_response(&mut stream);
        assert_eq!(
            status,
            200,
            "round {round}: the login got\n{head}\n{body}\nHAProxy's log:\n{}\nearshot's log:\n{}",
            proxy.log(),
            server.stderr()
        );
    }
}
