//! Shared test support: start the real `earshot` binary on port 0, and talk to it over real TCP
//! and real WebSocket clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::Message;
use tungstenite::protocol::WebSocket;

pub mod cgroup;
pub mod icecast;
pub mod listen;
pub mod proxy;
pub mod vm;

pub type Ws = WebSocket<TcpStream>;

/// A command that runs the earshot binary under test: the one cargo built for this machine, or
/// `EARSHOT_TEST_BINARY` when set (`scripts/pi-emulated.sh` points it at the Pi build run
/// through qemu-arm, so the same tests exercise the ARM binary).
pub fn earshot() -> Command {
    match std::env::var_os("EARSHOT_TEST_BINARY") {
        Some(binary) => Command::new(binary),
        None => Command::new(env!("CARGO_BIN_EXE_earshot")),
    }
}

/// The repository root, where `audio/` and `tests/fixtures/` are.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// A fresh directory under the system's temp dir for one test.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("earshot-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `dir/name`: a mono 16-bit 8 kHz WAV whose sample `i` is `i`, for `frames` frames, so
/// a listener can tell exactly which samples it got.
pub fn write_counting_wav(dir: &Path, name: &str, frames: i16) -> PathBuf {
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..frames {
        w.write_sample(i).unwrap();
    }
    w.finalize().unwrap();
    path
}

/// `earshot listen --json` output, one JSON value per line; panics on a line that is not JSON.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The lines of one `type`.
pub fn of_type<'a>(lines: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

/// A WebSocket client with a 4 KiB receive window, so the server's sends block as soon as the
/// client stops reading (loopback windows are otherwise megabytes).
pub fn connect_small_window(addr: SocketAddr) -> Ws {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    tungstenite::client(format!("ws://{addr}/ws").as_str(), stream)
        .unwrap()
        .0
}

/// Interleaved test samples that hit both ends of the range and everything between.
pub fn test_samples(len: usize, seed: u32) -> Vec<i16> {
    let mut x = seed;
    (0..len)
        .map(|i| match i % 97 {
            0 => i16::MAX,
            1 => i16::MIN,
            _ => {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 16) as i16
            }
        })
        .collect()
}

/// A running `earshot serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `earshot serve ARGS --listen 127.0.0.1:0` in the repository root and waits until it
    /// prints its address. Panics with the server's stderr if it does not start.
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(&repo_root(), args, &[])
    }

    pub fn start_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(dir, args, env, Stdio::null())
    }

    /// Like [`Server::start_in`] in the repository root, with standard input a pipe the test
    /// writes to (for `--source pipe:`); dropping the writer closes the pipe.
    pub fn start_piped(args: &[&str], env: &[(&str, &str)]) -> (Server, ChildStdin) {
        let mut server = Server::launch(&repo_root(), args, env, Stdio::piped());
        let stdin = server.child.stdin.take().expect("piped stdin");
        (server, stdin)
    }

    fn launch(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Stdio) -> Server {
        Server::launch_with(earshot(), dir, args, env, stdin)
    }

    /// Like [`Server::start`], always with the binary cargo built for this machine, even when
    /// `EARSHOT_TEST_BINARY` names another (to compare the two).
    pub fn start_native(args: &[&str]) -> Server {
        let cmd = Command::new(env!("CARGO_BIN_EXE_earshot"));
        Server::launch_with(cmd, &repo_root(), args, &[], Stdio::null())
    }

    fn launch_with(
        mut cmd: Command,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Stdio,
    ) -> Server {
        cmd.arg("serve");
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .current_dir(dir)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn earshot");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let stderr = stderr.clone();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stdout.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "earshot did not start: stdout {line:?}, stderr:\n{}",
                stderr.lock().unwrap()
            );
        };
        Server {
            child,
            addr,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `STOP`, ...).
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the server's log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `earshot ARGS` to completion and returns (exit code, stdout, stderr).
pub fn run_earshot(args: &[&str]) -> (i32, String, String) {
    let out = earshot()
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("run earshot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Opens a WebSocket to `/ws` with a real TCP connection and tungstenite's client handshake.
pub fn connect(addr: SocketAddr) -> Ws {
    try_connect(addr, "/ws").expect("websocket handshake")
}

/// How long a test's WebSocket read waits before it fails.
const WS_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub fn try_connect(addr: SocketAddr, path: &str) -> Result<Ws, String> {
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(WS_READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let url = format!("ws://{addr}{path}");
    tungstenite::client(url.as_str(), stream)
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// The next text message as JSON, past any pings (the server pings a listener that waits, and
/// a client answers them by itself); panics on anything else, such as a binary message.
pub fn read_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        match ws.read().expect("read message") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("valid JSON"),
            Message::Ping(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// One audio message, decoded.
#[derive(Debug, Clone)]
pub struct Audio {
    pub seq: u64,
    pub produced_us: u64,
    pub samples: Vec<i16>,
}

/// Either kind of server message.
#[derive(Debug)]
pub enum Incoming {
    Audio(Audio),
    Control(serde_json::Value),
    Closed,
}

pub fn next_message(ws: &mut Ws) -> Incoming {
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => {
                assert!(b.len() >= 16, "audio message shorter than its header");
                let seq = u64::from_le_bytes(b[0..8].try_into().unwrap());
                let produced_us = u64::from_le_bytes(b[8..16].try_into().unwrap());
                assert_eq!((b.len() - 16) % 2, 0, "odd sample byte count");
                let samples = b[16..]
                    .chunks_exact(2)
                    .map(|p| i16::from_le_bytes([p[0], p[1]]))
                    .collect();
                return Incoming::Audio(Audio {
                    seq,
                    produced_us,
                    samples,
                });
            }
            Ok(Message::Text(t)) => {
                return Incoming::Control(serde_json::from_str(t.as_str()).expect("valid JSON"));
            }
            Ok(Message::Close(_)) => continue,
            Ok(_) => continue,
            Err(_) => return Incoming::Closed,
        }
    }
}

/// Sends a close frame and reads to the end: true when the server echoed it and then closed
/// TCP (RFC 6455 §5.5.1); panics on any other end.
pub fn close_and_read_echo(ws: &mut Ws) -> bool {
    ws.close(None).unwrap();
    let mut echoed = false;
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => echoed = true,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return echoed,
            Err(e) => panic!("unclean end: {e}"),
        }
    }
}

/// Every message that arrives over `window` (pings and pongs included), failing if the
/// connection breaks meanwhile.
pub fn messages_within(ws: &mut Ws, window: Duration) -> Vec<Message> {
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let until = Instant::now() + window;
    let mut got = Vec::new();
    while Instant::now() < until {
        match ws.read() {
            Ok(message) => got.push(message),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("connection failed: {e}"),
        }
    }
    ws.get_ref()
        .set_read_timeout(Some(WS_READ_TIMEOUT))
        .unwrap();
    got
}

/// The next audio message, failing on anything else.
pub fn next_audio(ws: &mut Ws) -> Audio {
    match next_message(ws) {
        Incoming::Audio(a) => a,
        other => panic!("expected audio, got {other:?}"),
    }
}

/// A raw HTTP/1.1 exchange: sends `request` verbatim and returns (status, head, body).
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    exchange(&mut stream, request)
}

/// Sends `request` on any stream (TCP, TLS) and reads the answer until the server closes
/// (cleanly or not); returns (status, head, body).
pub fn exchange(stream: &mut (impl Read + Write), request: &[u8]) -> (u16, String, String) {
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Reads one answer on a connection that may stay open: the head, then as many body bytes as
/// its `Content-Length` says. Returns (status, head, body); status 0 if the connection ended
/// (or failed) before a whole answer came.
pub fn read_response(stream: &mut impl Read) -> (u16, String, String) {
    let (status, head) = read_head(stream);
    if !head.ends_with("\r\n\r\n") {
        return (0, head, String::new());
    }
    let length = header(&head, "Content-Length").and_then(|l| l.parse::<usize>().ok());
    let mut body = vec![0u8; length.unwrap_or(0)];
    if stream.read_exact(&mut body).is_err() {
        return (0, head, String::from_utf8_lossy(&body).into_owned());
    }
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// Sends process `pid` the signal `name` (`TERM`, `INT`, `STOP`, ...) with kill(1); panics if
/// kill fails.
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// The wall clock in µs since the Unix epoch, as the stream's `produced_us` stamps count.
pub fn unix_micros_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// `GET path` with `Connection: close`; returns (status, head, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    raw_http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// `GET path` and parse the body as JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = http_get(addr, path);
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// The value of header `name` in a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Every value of header `name` in a response head (`Set-Cookie` may come more than once).
pub fn headers<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// A request with `method`, `path`, extra header lines and a body, closing the connection.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `POST path` with a body of `content_type`; returns (status, head, body).
pub fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut all = vec![("Content-Type", content_type)];
    all.extend_from_slice(headers);
    raw_http(addr, &request_bytes("POST", path, &all, body.as_bytes()))
}

/// A WebSocket upgrade request for `path` with extra header lines.
pub fn upgrade_bytes(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Sends an upgrade request and returns the status and head of the answer (101 or an error),
/// without waiting for the connection to end.
pub fn upgrade_status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&upgrade_bytes(path, headers)).unwrap();
    read_head(&mut stream)
}

/// Reads a response head (up to the blank line) from any stream; returns (status, head).
pub fn read_head(stream: &mut impl Read) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A port that was free a moment ago, for programs that cannot be told to pick one (haproxy,
/// nginx, qemu, a server a test restarts on the same address).
///
/// Taken below the kernel's ephemeral range (32768 and up by default), which the kernel hands
/// out for every connection and every bind to port 0, and never the same twice in one test
/// binary. A port found by binding port 0 and letting go could be handed on again before its
/// program bound it: a concurrent test's server took one that way and a run failed with
/// "Address already in use". Test binaries run one at a time; the start depends on the
/// process id, so a leftover of an earlier run is stepped over by the bind check.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 32_000 - FIRST;
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(97) % SPAN;
    loop {
        let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free port left between {FIRST} and 32000");
        let port = (FIRST + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A TCP connection to `addr` from another loopback address (127.0.0.2, ...), which the
/// server counts as another client.
pub fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let source: SocketAddr = format!("{source}:0").parse().expect("source address");
    socket.bind(&source.into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// A temporary directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("earshot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads until a `source` message with `state` (within 15 s), returning it and the audio that
/// came before it.
pub fn audio_until_source_state(ws: &mut Ws, state: &str) -> (Vec<Audio>, serde_json::Value) {
    let mut audio = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match next_message(ws) {
            Incoming::Audio(a) => audio.push(a),
            Incoming::Control(c) if c["type"] == "source" && c["state"] == state => {
                return (audio, c);
            }
            Incoming::Control(c) => assert_ne!(c["type"], "bye", "unexpected {c}"),
            Incoming::Closed => panic!("connection closed waiting for source {state}"),
        }
    }
    panic!("no source {state} message within 15 s");
}

/// The gap in sequence numbers that a source's time down left in a listener's stream: the last
/// chunk before it and the first after.
pub struct OutageGap {
    pub last: Audio,
    pub first: Audio,
}

impl OutageGap {
    /// After the source's `down` notice: reads until it is `live` again and the chunk after
    /// that, and finds the gap among `read` (everything read so far, oldest first) and those.
    /// Chunks captured before the source went may arrive after the notice that it did.
    pub fn read(ws: &mut Ws, mut read: Vec<Audio>) -> OutageGap {
        let (resumed, _) = audio_until_source_state(ws, "live");
        read.extend(resumed);
        read.push(next_audio(ws));
        let at = read
            .windows(2)
            .position(|w| w[1].seq != w[0].seq.wrapping_add(1))
            .expect("the time down shows as a gap in sequence numbers");
        let mut pair = read.into_iter().skip(at);
        let (last, first) = (pair.next().unwrap(), pair.next().unwrap());
        OutageGap { last, first }
    }

    pub fn gap_ms(&self) -> i64 {
        self.first.seq.wrapping_sub(self.last.seq).wrapping_sub(1) as i64 * 20
    }

    /// The time between the last chunk's audio and the next one's, by their stamps (a device's
    /// capture times, a pipe's arrival).
    pub fn away_ms(&self) -> i64 {
        (self.first.produced_us as i64 - self.last.produced_us as i64) / 1000 - 20
    }

    /// Asserts that the gap is the time away, to the nearest chunk, and that `log` says when
    /// `source` was back which chunks its time down cost.
    pub fn assert_counted(&self, source: &str, log: &str) {
        let (gap_ms, away_ms) = (self.gap_ms(), self.away_ms());
        assert!(
            (gap_ms - away_ms).abs() <= 30,
            "{source} was away {away_ms} ms and the sequence gap is {gap_ms} ms (chunk {} then {})",
            self.last.seq,
            self.first.seq
        );
        let line = log
            .lines()
            .find(|l| l.contains(&format!("source {source} is live again after")))
            .unwrap_or_else(|| panic!("no log line says {source} is back:\n{log}"));
        let cost = format!(
            "; it cost chunks {} to {} ({gap_ms} ms), skipped in sequence numbers",
            self.last.seq.wrapping_add(1),
            self.first.seq.wrapping_sub(1)
        );
        assert!(line.ends_with(&cost), "{line}\ndoes not end \"{cost}\"");
    }
}

/// The value in column `name` of data row `row` (1 = the first after the header) of `csv`.
pub fn csv_cell(csv: &str, row: usize, name: &str) -> String {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split(',')
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no {name} column in {csv}"));
    let line = lines
        .nth(row - 1)
        .unwrap_or_else(|| panic!("no row {row} in {csv}"));
    line.split(',').nth(column).unwrap().to_string()
}
