//! Entry points for the fuzz targets in `fuzz/` and for the tests that replay every input a
//! fuzzer ever crashed on (`tests/fuzz_regressions.rs`): one function per parser of client
//! input or of a file, each taking arbitrary bytes and expected never to panic.
//!
//! They live in the library so that a fuzz target and its regression test cannot drift apart.

use std::io::{self, Cursor, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use tungstenite::WebSocket;
use tungstenite::protocol::Role;

use crate::client::wsframe::FrameReader;
use crate::{auth, http, protocol, source, ws};

/// A fuzz entry point: any bytes in, no panic.
pub type EntryPoint = fn(&[u8]);

/// Every target, by the name its fuzz target and regression directory use.
pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("http_request", http_request),
    ("upgrade", upgrade),
    ("credentials", credentials),
    ("login_body", login_body),
    ("client_message", client_message),
    ("ws_frames", ws_frames),
    ("server_frames", server_frames),
    ("source_file", source_file),
];

fn peer() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 40000))
}

/// The request head and body framing, as `read_request` sees a client's bytes arrive: whole,
/// and cut at every point where a read could end.
pub fn http_request(data: &[u8]) {
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        let _ = http::parse_request(&data[..cut], peer());
    }
    let mut rest = data;
    while let Ok(Some((request, used))) = http::parse_request(rest, peer()) {
        assert!(used > 0 && used <= rest.len(), "a request takes some bytes");
        let _ = request.keep_alive();
        let _ = request.header_has_token("Connection", "upgrade");
        rest = &rest[used..];
    }
}

/// The WebSocket upgrade checks and the Origin check on a parsed request.
pub fn upgrade(data: &[u8]) {
    if let Ok(Some((request, _))) = http::parse_request(data, peer()) {
        let _ = ws::check_upgrade(&request);
        let allowed = ["https://radio.example.org".to_string()];
        let _ = ws::check_origin(&request, &allowed);
        let _ = auth::presented_tokens(&request);
    }
}

/// Where tokens and origins come from: cookies, `Authorization`, query strings, `Origin`.
pub fn credentials(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = auth::cookie_values(&text, auth::COOKIE_NAME).count();
    let _ = auth::bearer_token(&text);
    let _ = auth::query_values(&text, "token").count();
    let _ = auth::percent_decode(&text);
    let _ = auth::looks_like_token(&text);
    let _ = ws::normalize_origin(&text);
}

/// `POST /api/login` bodies; the first byte picks the Content-Type.
pub fn login_body(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let content_type = [
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("image/png"),
    ][usize::from(kind) % 6];
    let _ = auth::login_password(content_type, body);
}

/// Text messages from a listener.
pub fn client_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = protocol::parse_client_message(text);
    }
}

/// Frames from a client, read with the session's limits the way the session reads them: until
/// the first error, after which it never reads again.
pub fn ws_frames(data: &[u8]) {
    let pipe = Pipe {
        input: Cursor::new(data),
        written: 0,
    };
    let mut socket = WebSocket::from_raw_socket(pipe, Role::Server, Some(ws::config()));
    for _ in 0..1000 {
        if socket.read().is_err() {
            break;
        }
    }
    let _ = socket.flush();
}

/// What a listener reads from a server with the load generator's `FrameReader`: any bytes give
/// the same frames whether they arrive whole or a byte at a time, as TCP may deliver them.
pub fn server_frames(data: &[u8]) {
    let mut whole = Vec::new();
    FrameReader::new().feed(data, |item| whole.push(item));
    let mut trickled = Vec::new();
    let mut reader = FrameReader::new();
    for byte in data.chunks(1) {
        reader.feed(byte, |item| trickled.push(item));
    }
    assert_eq!(whole, trickled, "frames depend on how the bytes were split");
}

/// MP3 and WAV decoding through `source::open_file`, as `--source` would open the bytes.
pub fn source_file(data: &[u8]) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "earshot-fuzz-{}-{}.mp3",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut source) = source::open_file(&path) {
        let format = source.format();
        assert!(format.channels > 0 && format.sample_rate > 0);
        // About a second of audio: enough to loop a tiny file; a valid file loops for ever.
        let mut samples = vec![0i16; 4096];
        let mut total = 0;
        while total < 50_000 {
            match source.read(&mut samples) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    assert_eq!(n % usize::from(format.channels), 0, "whole frames only");
                    total += n;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// A socket stand-in: reads from the input, then would block; writes are counted and dropped.
struct Pipe<'a> {
    input: Cursor<&'a [u8]>,
    written: usize,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.input.read(buf)? {
            0 if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
