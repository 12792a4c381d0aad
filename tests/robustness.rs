//! Hostile and broken clients: thousands of malformed HTTP requests and WebSocket frames from
//! many connections at once while twenty listeners stream. The server must stay up, keep every
//! good listener gap-free, and give its memory back. (Alone in its file, so that no other test
//! shares the machine with it; see tests/limits.rs for the limits one by one.)

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const PASSWORD: &str = "robust";

/// A small seeded generator, so a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Between `min` and `max` (exclusive) random bytes.
    fn some_bytes(&mut self, min: usize, max: usize) -> Vec<u8> {
        let n = min + self.below(max - min);
        self.bytes(n)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A WebSocket frame as a client would send it, with every field under the caller's control.
fn frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
    len: Option<u64>,
) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv & 7) << 4 | (opcode & 0x0F)];
    let len = len.unwrap_or(payload.len() as u64);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const KEY: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

/// Broken or hostile WebSocket frames, sent after a valid, authorised upgrade.
fn bad_frames(rng: &mut Rng) -> Vec<u8> {
    let text = br#"{"type":"ping","id":1}"#;
    match rng.below(14) {
        0 => frame(true, 0, 1, None, text, None), // unmasked
        1 => frame(true, 1 + rng.below(7) as u8, 1, KEY, text, None), // reserved bits
        2 => frame(
            true,
            0,
            *rng.pick(&[3, 4, 5, 6, 7, 0xB, 0xC, 0xF]),
            KEY,
            b"x",
            None,
        ),
        3 => frame(true, 0, 2, KEY, &[], Some(u64::MAX >> 1)), // a huge length
        4 => frame(true, 0, 1, KEY, &[], Some(1 << 40)),
        5 => frame(true, 0, 1, KEY, &rng.bytes(5000), None), // over the 4 KiB limit
        6 => frame(true, 0, 1, KEY, &[0xC3, 0x28, 0xFF, 0xFE], None), // invalid UTF-8
        7 => frame(false, 0, 9, KEY, b"fragmented ping", None), // fragmented control
        8 => frame(true, 0, 0, KEY, b"orphan continuation", None),
        9 => {
            // A text message in fragments that never ends, past the size limit.
            let mut out = Vec::new();
            for i in 0..10 {
                out.extend(frame(
                    false,
                    0,
                    if i == 0 { 1 } else { 0 },
                    KEY,
                    &[b'a'; 600],
                    None,
                ));
            }
            out
        }
        10 => frame(true, 0, 8, KEY, &[0x03], None), // close with a one-byte body
        11 => frame(true, 0, 8, KEY, &[0x03, 0xE7, 0xFF], None), // close 999, bad reason
        12 => frame(true, 0, 9, KEY, &[b'p'; 126], None), // control frame over 125 bytes
        _ => rng.some_bytes(1, 3000),
    }
}

fn valid_requests(token: &str) -> Vec<Vec<u8>> {
    vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        request_bytes(
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            br#"{"password":"nope"}"#,
        ),
        request_bytes(
            "GET",
            "/api/status",
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        ),
        upgrade_bytes(
            &format!("/ws?token={token}"),
            &[("Origin", "http://localhost")],
        ),
    ]
}

/// Malformed, truncated, oversized or random HTTP.
fn bad_http(rng: &mut Rng, token: &str) -> Vec<u8> {
    let valid = valid_requests(token);
    match rng.below(12) {
        0 => rng.some_bytes(1, 4096),
        1 => {
            let r = rng.pick(&valid);
            r[..rng.below(r.len())].to_vec()
        }
        2 => format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(8000 + rng.below(12_000)))
            .into_bytes(),
        3 => {
            let n = 49 + rng.below(200);
            let lines: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
            format!("GET / HTTP/1.1\r\n{lines}\r\n").into_bytes()
        }
        4 => rng
            .pick(&[
                &b"GET\r\n\r\n"[..],
                b"GET / HTTP/9.9\r\n\r\n",
                b"G\x00T / HTTP/1.1\r\n\r\n",
                b"GET http://evil/ HTTP/1.1\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
                b" / HTTP/1.1\r\n\r\n",
                b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
                b"\r\n\r\n\r\n\r\n",
                b"GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: \xff\r\n\r\n",
            ])
            .to_vec(),
        5 => {
            let cl = rng.pick(&["-1", "abc", "99999999999999999999", "5, 6", "+3", "20000"]);
            format!("POST /api/login HTTP/1.1\r\nContent-Length: {cl}\r\n\r\nabc").into_bytes()
        }
        6 => b"POST /api/login HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
            .to_vec(),
        7 => b"POST /api/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_vec(),
        8 => {
            // Junk credentials on every transport.
            let junk = String::from_utf8_lossy(&rng.bytes(40)).replace(['\r', '\n'], "");
            let path = *rng.pick(&["/ws", "/api/status", "/api/logout", "/api/session"]);
            let mut r = String::from_utf8(upgrade_bytes(&format!("{path}?token=%zz{}", rng.next()), &[]))
                .unwrap();
            r.insert_str(r.len() - 2, &format!("Cookie: earshot_token={junk}; ;=;\r\nAuthorization: Bearer {junk}\r\n"));
            r.into_bytes()
        }
        9 => {
            let body = match rng.below(4) {
                0 => rng.some_bytes(0, 2000),
                1 => br#"{"password":{"nested":[1,2,{"x":null}]}}"#.to_vec(),
                2 => format!("password=%{}&password", "f".repeat(rng.below(100))).into_bytes(),
                _ => format!(r#"{{"password":"{}"}}"#, "\\u0000".repeat(rng.below(2000))).into_bytes(),
            };
            let ct = *rng.pick(&["application/json", "application/x-www-form-urlencoded", "text/html", ""]);
            request_bytes("POST", "/api/login", &[("Content-Type", ct)], &body)
        }
        10 => {
            // A valid request with random bytes flipped.
            let mut r = rng.pick(&valid).clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(r.len());
                r[i] = rng.next() as u8;
            }
            r
        }
        _ => {
            // A valid request, then garbage pipelined behind it.
            let mut r = rng.pick(&valid[..4]).clone();
            r.extend(rng.some_bytes(0, 3000));
            r
        }
    }
}

/// Reads one HTTP response (or up to the end, or a moment of silence); returns its status, 0
/// when none came.
fn read_response(stream: &mut TcpStream) -> u16 {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&seen);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = header(head, "Content-Length").and_then(|l| l.parse::<usize>().ok());
            if head.starts_with("HTTP/1.1 101") || body.len() >= length.unwrap_or(0) {
                break;
            }
        }
    }
    std::str::from_utf8(&seen[..seen.len().min(12)])
        .ok()
        .and_then(|t| t.strip_prefix("HTTP/1.1 "))
        .and_then(|t| t.get(..3)?.parse().ok())
        .unwrap_or(0)
}

/// Reads the server's frames until its close frame (or the end); returns the close code.
fn read_until_close_frame(stream: &mut TcpStream) -> Option<u16> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut read_exact = |buf: &mut [u8]| stream.read_exact(buf).ok();
    while Instant::now() < deadline {
        let mut head = [0u8; 2];
        read_exact(&mut head)?;
        let mut len = u64::from(head[1] & 0x7F);
        if len == 126 {
            let mut ext = [0u8; 2];
            read_exact(&mut ext)?;
            len = u64::from(u16::from_be_bytes(ext));
        } else if len == 127 {
            let mut ext = [0u8; 8];
            read_exact(&mut ext)?;
            len = u64::from_be_bytes(ext);
        }
        let mut payload = vec![0u8; usize::try_from(len).ok().filter(|l| *l < 1 << 20)?];
        read_exact(&mut payload)?;
        if head[0] & 0x0F == 8 {
            return Some(
                payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])),
            );
        }
    }
    None
}

/// One hostile connection; returns the HTTP status it got (0 for none), or for a WebSocket the
/// close code the server ended it with.
fn attack(addr: SocketAddr, rng: &mut Rng, token: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return 0;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if rng.below(3) == 0 {
        // Upgrade properly, then misbehave at the frame level.
        let upgrade = upgrade_bytes(&format!("/ws?token={token}"), &[]);
        if stream.write_all(&upgrade).is_err() {
            return 0;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let (status, _) = read_head(&mut stream);
        if status != 101 {
            return status;
        }
        let _ = stream.write_all(&bad_frames(rng));
        return read_until_close_frame(&mut stream).unwrap_or(0);
    }
    let bytes = bad_http(rng, token);
    if rng.below(8) == 0 {
        // Slowly, in pieces.
        for piece in bytes.chunks(1 + bytes.len() / 4) {
            if stream.write_all(piece).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20 + rng.below(100) as u64));
        }
    } else if stream.write_all(&bytes).is_err() {
        return read_response(&mut stream);
    }
    if rng.below(2) == 0 {
        let _ = stream.shutdown(Shutdown::Write);
    }
    read_response(&mut stream)
}

#[test]
fn thousands_of_broken_requests_and_frames_leave_twenty_listeners_gap_free() {
    let server = Server::start(&["--source", "tone:", "--password", PASSWORD]);
    let addr = server.addr;
    let token = {
        let (status, _, body) = post(
            addr,
            "/api/login",
            "application/json",
            &format!(r#"{{"password":"{PASSWORD}"}}"#),
            &[],
        );
        assert_eq!(status, 200);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // Twenty good listeners, each checking every chunk follows the one before.
    let stop = Arc::new(AtomicBool::new(false));
    let listeners: Vec<_> = (0..20)
        .map(|i| {
            let stop = stop.clone();
            let url = server.ws_url();
            let token = token.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut c = earshot::wsclient::connect(
                    &url,
                    None,
                    earshot::wsclient::Credentials::Token(&token),
                )
                .map_err(|e| format!("listener {i}: {e}"))?;
                let mut expected: Option<u64> = None;
                let mut received = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match c.ws.read() {
                        Ok(tungstenite::Message::Binary(b)) => {
                            let seq = u64::from_le_bytes(b[0..8].try_into().unwrap());
                            if let Some(e) = expected {
                                if seq != e {
                                    return Err(format!("listener {i}: gap, {e} then {seq}"));
                                }
                            }
                            expected = Some(seq + 1);
                            received += 1;
                        }
                        Ok(tungstenite::Message::Text(t)) if !t.as_str().contains("hello") => {
                            return Err(format!("listener {i}: unexpected {t}"));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(format!("listener {i}: {e}")),
                    }
                }
                Ok(received)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let baseline = rss_kib(server.pid());

    let seed = std::env::var("EARSHOT_ROBUSTNESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("robustness seed {seed} (set EARSHOT_ROBUSTNESS_SEED to repeat)");
    let cases = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let peak = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let attackers: Vec<_> = (0..24u64)
        .map(|t| {
            let (cases, statuses, token) = (cases.clone(), statuses.clone(), token.clone());
            let (peak, pid) = (peak.clone(), server.pid());
            std::thread::spawn(move || {
                let mut rng = Rng(seed.wrapping_add(t.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
                while started.elapsed() < Duration::from_secs(10)
                    && cases.load(Ordering::Relaxed) < 6000
                {
                    let status = attack(addr, &mut rng, &token);
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                    if cases.fetch_add(1, Ordering::Relaxed) % 200 == 0 {
                        peak.fetch_max(rss_kib(pid) as usize, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for a in attackers {
        a.join().unwrap();
    }
    let attack_time = started.elapsed();
    let cases = cases.load(Ordering::Relaxed);
    let statuses = statuses.lock().unwrap().clone();
    eprintln!("{cases} hostile connections in {attack_time:?}: statuses {statuses:?}");

    // Still serving, and the listeners never saw a gap.
    assert_eq!(http_get(addr, "/healthz").0, 200, "{}", server.stderr());
    stop.store(true, Ordering::Relaxed);
    for (i, l) in listeners.into_iter().enumerate() {
        let received = l.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        let expected = attack_time.as_millis() as u64 / 20;
        assert!(
            received >= expected * 8 / 10,
            "listener {i}: only {received} chunks"
        );
    }
    assert!(cases >= 2000, "only {cases} hostile connections were made");
    assert!(
        !statuses
            .keys()
            .any(|s| ((500..1000).contains(s) && *s != 503) || *s == 1011),
        "a server error: {statuses:?}"
    );
    let log = server.stderr();
    assert!(!log.contains("panicked"), "a thread panicked:\n{log}");

    // Memory returns near its baseline once the hostile connections are gone.
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut after = rss_kib(server.pid());
    while after > baseline + 8 * 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        after = rss_kib(server.pid());
    }
    let peak = peak.load(Ordering::Relaxed) as u64;
    eprintln!("RSS: baseline {baseline} KiB, peak {peak} KiB, after {after} KiB");
    assert!(
        after <= baseline + 16 * 1024,
        "RSS {after} KiB after the attack, baseline {baseline} KiB (peak {peak} KiB)"
    );
}
