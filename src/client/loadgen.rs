//! The load generator behind `earshot bench`: thousands of listeners driven by a few threads.
//!
//! A thread per listener would measure the generator's context switches rather than the server,
//! and std has no `poll`/`epoll`. So each worker thread owns many non-blocking sockets and reads
//! them on a schedule instead: no chunk can arrive before it is produced, so after reading chunk
//! `n` a listener is not read again until chunk `n+1` has been produced (its production time is
//! known from the chunk header and the clock offset), and then every `--poll-ms` until it comes.
//! A worker sleeps until its earliest due socket, so an idle generator costs nothing and a busy
//! one reads each socket about once per chunk it receives. How late a worker got to a due socket
//! is measured too (`lag`): it bounds how much of the measured latency is the generator's.
//!
//! Connecting is separate: a handful of short-lived threads per ladder step connect and do the
//! handshake with blocking sockets, then hand each socket to a worker.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::client::connection::unix_us;
use crate::client::endpoint::{Endpoint, Scheme};
use crate::client::stats::{Histogram, Jitter};
use crate::client::wsframe::{self, FrameReader, Item};
use crate::error::{Error, Result};

/// Read buffer per worker; a read that fills it is followed by another at once.
const SCRATCH: usize = 64 * 1024;
/// HTTP streams carry no timestamps, so they are simply drained this often.
const HTTP_POLL: Duration = Duration::from_millis(25);
/// Data does not arrive sooner than this after production, even on loopback.
const ARRIVAL_LEAD_US: i64 = 1000;
/// A worker looks at its command queue at least this often.
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// Threads that connect listeners at the start of a step.
const CONNECTORS: usize = 8;
/// Largest HTTP response head accepted from the server.
const MAX_HEAD: usize = 16 * 1024;

/// What the generator needs to know about the stream and the measurement.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub endpoint: Endpoint,
    pub addr: SocketAddr,
    pub threads: usize,
    pub poll: Duration,
    pub connect_timeout: Duration,
    /// A chunk is on time when its latency is at most this.
    pub on_time_us: u64,
    /// One chunk's duration (WebSocket streams).
    pub chunk_us: f64,
    /// Server clock minus this machine's clock.
    pub clock_offset_us: i64,
}

/// One listener's numbers for a measurement window.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerReport {
    /// Chunks of the window's sequence range that arrived, and those that arrived on time.
    pub received: u64,
    pub on_time: u64,
    pub bytes: u64,
    pub jitter_ms: f64,
}

/// Everything measured in one window, over all listeners.
#[derive(Debug, Clone, Default)]
pub struct WindowReport {
    pub listeners: Vec<ListenerReport>,
    pub latency: Histogram,
    /// How late a worker got to a socket that was due, µs.
    pub lag: Histogram,
    pub bytes: u64,
    pub gaps: u64,
    pub gap_chunks: u64,
    pub skips: u64,
    pub skipped_chunks: u64,
    /// Listeners whose connection ended during the window.
    pub dropped: u64,
    pub drop_reason: Option<String>,
}

impl WindowReport {
    fn merge(&mut self, other: WindowReport) {
        self.listeners.extend(other.listeners);
        self.latency.merge(&other.latency);
        self.lag.merge(&other.lag);
        self.bytes += other.bytes;
        self.gaps += other.gaps;
        self.gap_chunks += other.gap_chunks;
        self.skips += other.skips;
        self.skipped_chunks += other.skipped_chunks;
        self.dropped += other.dropped;
        if self.drop_reason.is_none() {
            self.drop_reason = other.drop_reason;
        }
    }
}

/// The outcome of connecting a step's new listeners.
#[derive(Debug, Clone, Default)]
pub struct GrowReport {
    pub failures: usize,
    pub first_error: Option<String>,
    pub took: Duration,
}

enum Command {
    Add(Box<Listener>),
    /// Start measuring; chunks from `from_seq` on count towards the on-time share.
    Start {
        from_seq: u64,
    },
    /// Stop measuring latency and bytes; chunks from `to_seq` on no longer count.
    End {
        to_seq: u64,
    },
    Collect(Sender<WindowReport>),
    CloseAll,
}

struct Shared {
    alive: AtomicUsize,
    /// The newest chunk any listener has seen: (seq, produced_us).
    newest: Mutex<Option<(u64, u64)>>,
}

pub struct LoadGen {
    config: Arc<LoadConfig>,
    shared: Arc<Shared>,
    workers: Vec<Sender<Command>>,
    threads: Vec<JoinHandle<()>>,
    next_worker: AtomicUsize,
}

impl LoadGen {
    pub fn start(config: LoadConfig) -> Result<LoadGen> {
        let config = Arc::new(config);
        let shared = Arc::new(Shared {
            alive: AtomicUsize::new(0),
            newest: Mutex::new(None),
        });
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        for i in 0..config.threads.max(1) {
            let (tx, rx) = mpsc::channel();
            let worker = Worker::new(config.clone(), shared.clone(), rx);
            let handle = thread::Builder::new()
                .name(format!("bench-{i}"))
                .spawn(move || worker.run())
                .map_err(|e| Error::io("start load generator thread", e))?;
            workers.push(tx);
            threads.push(handle);
        }
        Ok(LoadGen {
            config,
            shared,
            workers,
            threads,
            next_worker: AtomicUsize::new(0),
        })
    }

    /// Listeners connected now.
    pub fn alive(&self) -> usize {
        self.shared.alive.load(Ordering::Relaxed)
    }

    /// Connects listeners until `target` are connected (or each new one has had its chance).
    pub fn grow_to(&self, target: usize) -> GrowReport {
        let started = Instant::now();
        let needed = target.saturating_sub(self.alive());
        let next = AtomicUsize::new(0);
        let failures = AtomicUsize::new(0);
        let first_error = Mutex::new(None);
        thread::scope(|scope| {
            for _ in 0..CONNECTORS.min(needed) {
                scope.spawn(|| {
                    while next.fetch_add(1, Ordering::Relaxed) < needed {
                        match open_listener(&self.config) {
                            Ok(listener) => self.hand_over(listener),
                            Err(e) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                                let mut first =
                                    first_error.lock().unwrap_or_else(|p| p.into_inner());
                                first.get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        // Workers count a listener when they take it over; give them a moment.
        let expected = target - failures.load(Ordering::Relaxed).min(target);
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.alive() < expected && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        GrowReport {
            failures: failures.load(Ordering::Relaxed),
            first_error: first_error.into_inner().unwrap_or_else(|p| p.into_inner()),
            took: started.elapsed(),
        }
    }

    fn hand_over(&self, listener: Listener) {
        let i = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let _ = self.workers[i].send(Command::Add(Box::new(listener)));
    }

    /// The sequence number being produced now, from the newest chunk seen and the clock.
    pub fn live_edge(&self) -> Option<u64> {
        let (seq, produced_us) = (*self.shared.newest.lock().ok()?)?;
        let now_server = unix_us() as i64 + self.config.clock_offset_us;
        let behind = ((now_server - produced_us as i64) as f64 / self.config.chunk_us).floor();
        Some(seq.wrapping_add(behind.max(0.0) as u64))
    }

    pub fn start_window(&self, from_seq: u64) {
        self.broadcast(|| Command::Start { from_seq });
    }

    pub fn end_window(&self, to_seq: u64) {
        self.broadcast(|| Command::End { to_seq });
    }

    /// Gathers the window's numbers from every worker.
    pub fn collect(&self) -> WindowReport {
        let mut report = WindowReport::default();
        for worker in &self.workers {
            let (tx, rx) = mpsc::channel();
            if worker.send(Command::Collect(tx)).is_ok() {
                if let Ok(part) = rx.recv_timeout(Duration::from_secs(10)) {
                    report.merge(part);
                }
            }
        }
        report
    }

    /// Closes every listener politely and stops the workers.
    pub fn shutdown(self) {
        self.broadcast(|| Command::CloseAll);
        drop(self.workers);
        for t in self.threads {
            let _ = t.join();
        }
    }

    fn broadcast(&self, command: impl Fn() -> Command) {
        for w in &self.workers {
            let _ = w.send(command());
        }
    }
}

/// One listener's socket and its state.
struct Listener {
    stream: TcpStream,
    /// `None` for an HTTP stream.
    frames: Option<FrameReader>,
    /// Bytes read during the handshake that belong to the stream.
    leftover: Vec<u8>,
    next_poll: Instant,
    /// Chunks produced before this (the server's clock, µs) are the connect burst.
    live_from_us: u64,
    next_seq: Option<u64>,
    announced_skip_to: Option<u64>,
    newest: Option<(u64, u64)>,
    /// Alive when the window started, so its numbers count.
    counted: bool,
    report: ListenerReport,
    jitter: Jitter,
    closed: Option<String>,
}

/// Connects, performs the WebSocket (or HTTP) handshake, and makes the socket non-blocking.
fn open_listener(config: &LoadConfig) -> std::result::Result<Listener, String> {
    let stream = TcpStream::connect_timeout(&config.addr, config.connect_timeout)
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(config.connect_timeout))
        .map_err(|e| e.to_string())?;
    let endpoint = &config.endpoint;
    let key = tungstenite::handshake::client::generate_key();
    let request = match endpoint.scheme {
        Scheme::Ws => format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            endpoint.path,
            endpoint.host_port()
        ),
        Scheme::Http => format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: earshot-bench\r\nConnection: close\r\n\r\n",
            endpoint.path,
            endpoint.host_port()
        ),
    };
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| format!("send request: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let head_len = loop {
        if len == buf.len() {
            if buf.len() >= MAX_HEAD {
                return Err("response head too large".into());
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = (&stream)
            .read(&mut buf[len..])
            .map_err(|e| format!("read response: {e}"))?;
        if n == 0 {
            return Err("connection closed during the handshake".into());
        }
        len += n;
        if let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response
        .parse(&buf[..head_len])
        .map_err(|e| format!("bad response: {e}"))?;
    let code = response.code.unwrap_or(0);
    let expected = if endpoint.scheme == Scheme::Ws {
        101
    } else {
        200
    };
    if code != expected {
        let body = String::from_utf8_lossy(&buf[head_len..len])
            .trim()
            .to_string();
        return Err(format!("server answered {code} {body}").trim().to_string());
    }
    if endpoint.scheme == Scheme::Ws {
        let accept = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Accept"))
            .map(|h| h.value);
        let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
        if accept != Some(want.as_bytes()) {
            return Err("wrong Sec-WebSocket-Accept".into());
        }
    }
    stream
        .set_nonblocking(true)
        .map_err(|e| format!("non-blocking: {e}"))?;
    Ok(Listener {
        stream,
        frames: (endpoint.scheme == Scheme::Ws).then(FrameReader::new),
        leftover: buf[head_len..len].to_vec(),
        next_poll: Instant::now(),
        live_from_us: u64::MAX,
        next_seq: None,
        announced_skip_to: None,
        newest: None,
        counted: false,
        report: ListenerReport::default(),
        jitter: Jitter::default(),
        closed: None,
    })
}

/// A worker's measurement window.
#[derive(Default)]
struct Window {
    /// Latency, bytes, gaps and skips are counted while this is set.
    active: bool,
    /// Chunks in `from_seq..to_seq` count towards the on-time share.
    from_seq: u64,
    to_seq: u64,
    report: WindowReport,
}

struct Worker {
    config: Arc<LoadConfig>,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    listeners: Vec<Listener>,
    scratch: Vec<u8>,
    window: Window,
}

impl Worker {
    fn new(config: Arc<LoadConfig>, shared: Arc<Shared>, commands: Receiver<Command>) -> Worker {
        Worker {
            config,
            shared,
            commands,
            listeners: Vec::new(),
            scratch: vec![0; SCRATCH],
            window: Window::default(),
        }
    }

    fn run(mut self) {
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(command) => {
                        if !self.obey(command) {
                            return;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let next_wake = self.sweep();
            self.publish_newest();
            let now = Instant::now();
            if next_wake > now {
                thread::sleep(next_wake - now);
            }
        }
    }

    /// Carries out a command; false means stop.
    fn obey(&mut self, command: Command) -> bool {
        match command {
            Command::Add(mut listener) => {
                listener.next_poll = Instant::now();
                self.shared.alive.fetch_add(1, Ordering::Relaxed);
                let leftover = std::mem::take(&mut listener.leftover);
                self.listeners.push(*listener);
                let last = self.listeners.len() - 1;
                self.absorb(last, &leftover, unix_us());
            }
            Command::Start { from_seq } => {
                self.window = Window {
                    active: true,
                    from_seq,
                    to_seq: u64::MAX,
                    report: WindowReport::default(),
                };
                for l in &mut self.listeners {
                    l.counted = true;
                    l.report = ListenerReport::default();
                    l.jitter = Jitter::default();
                }
            }
            Command::End { to_seq } => {
                self.window.active = false;
                self.window.to_seq = to_seq;
            }
            Command::Collect(reply) => {
                let mut report = std::mem::take(&mut self.window.report);
                for l in &mut self.listeners {
                    if l.counted {
                        report.listeners.push(l.final_report());
                        l.counted = false;
                    }
                }
                self.window = Window::default();
                let _ = reply.send(report);
            }
            Command::CloseAll => {
                for l in &self.listeners {
                    if l.frames.is_some() {
                        let _ = (&l.stream).write_all(&wsframe::CLIENT_CLOSE);
                    }
                }
                self.shared
                    .alive
                    .fetch_sub(self.listeners.len(), Ordering::Relaxed);
                self.listeners.clear();
                return false;
            }
        }
        true
    }

    /// Reads every socket that is due; returns when the next one will be.
    fn sweep(&mut self) -> Instant {
        let mut now = Instant::now();
        let mut next_wake = now + MAX_SLEEP;
        let mut i = 0;
        while i < self.listeners.len() {
            if self.listeners[i].next_poll <= now {
                if self.window.active {
                    let late = now.saturating_duration_since(self.listeners[i].next_poll);
                    self.window.report.lag.record(late.as_micros() as u64);
                }
                self.service(i);
                now = Instant::now();
            }
            if let Some(reason) = self.listeners[i].closed.take() {
                self.retire(i, reason);
                continue;
            }
            next_wake = next_wake.min(self.listeners[i].next_poll);
            i += 1;
        }
        next_wake
    }

    /// Drains one socket and schedules its next read.
    fn service(&mut self, i: usize) {
        let newest_before = self.listeners[i].newest;
        loop {
            let result = (&self.listeners[i].stream).read(&mut self.scratch);
            match result {
                Ok(0) => {
                    self.listeners[i].closed = Some("closed by the server".into());
                    return;
                }
                Ok(n) => {
                    let data = std::mem::take(&mut self.scratch);
                    self.absorb(i, &data[..n], unix_us());
                    self.scratch = data;
                    if n < SCRATCH || self.listeners[i].closed.is_some() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.listeners[i].closed = Some(format!("connection lost: {e}"));
                    return;
                }
            }
        }
        let l = &mut self.listeners[i];
        let now = Instant::now();
        let earliest = now + self.config.poll;
        l.next_poll = match (&l.frames, l.newest) {
            (None, _) => now + HTTP_POLL,
            (Some(frames), Some((_, produced)))
                if frames.at_boundary() && l.newest != newest_before =>
            {
                // Nothing can arrive before the next chunk is produced.
                let next_produced = produced as i64 - self.config.clock_offset_us
                    + self.config.chunk_us as i64
                    + ARRIVAL_LEAD_US;
                let wait_us = next_produced - unix_us() as i64;
                if wait_us > 0 {
                    earliest.max(now + Duration::from_micros(wait_us as u64))
                } else {
                    earliest
                }
            }
            _ => earliest,
        };
    }

    /// Takes bytes that arrived at `arrival_us` for listener `i`.
    fn absorb(&mut self, i: usize, data: &[u8], arrival_us: u64) {
        let window = &mut self.window;
        let config = &self.config;
        let l = &mut self.listeners[i];
        if l.counted {
            l.report.bytes += data.len() as u64;
        }
        if window.active {
            window.report.bytes += data.len() as u64;
        }
        let Some(mut frames) = l.frames.take() else {
            return;
        };
        frames.feed(data, |item| match item {
            Item::Chunk { seq, produced_us } => {
                l.on_chunk(seq, produced_us, arrival_us, config, window);
            }
            Item::Text(text) => l.on_text(&text, window),
            Item::Close => l.closed = Some("closed by the server".into()),
            Item::Invalid(why) => l.closed = Some(format!("protocol error: {why}")),
        });
        l.frames = Some(frames);
    }

    fn retire(&mut self, i: usize, reason: String) {
        let l = self.listeners.swap_remove(i);
        self.shared.alive.fetch_sub(1, Ordering::Relaxed);
        if l.counted {
            self.window.report.dropped += 1;
            self.window.report.drop_reason.get_or_insert(reason);
            self.window.report.listeners.push(l.final_report());
        }
    }

    fn publish_newest(&self) {
        let newest = self.listeners.iter().filter_map(|l| l.newest).max();
        if let Some(newest) = newest {
            if let Ok(mut shared) = self.shared.newest.lock() {
                if shared.is_none_or(|s| s.0 < newest.0) {
                    *shared = Some(newest);
                }
            }
        }
    }
}

impl Listener {
    fn on_chunk(
        &mut self,
        seq: u64,
        produced_us: u64,
        arrival_us: u64,
        config: &LoadConfig,
        window: &mut Window,
    ) {
        if let Some(next) = self.next_seq {
            let jump = seq.wrapping_sub(next) as i64;
            if jump < 0 {
                return;
            }
            if jump > 0 && self.announced_skip_to != Some(seq) && window.active {
                window.report.gaps += 1;
                window.report.gap_chunks += jump as u64;
            }
        }
        self.announced_skip_to = None;
        self.next_seq = Some(seq.wrapping_add(1));
        if self.newest.is_none_or(|(s, _)| s < seq) {
            self.newest = Some((seq, produced_us));
        }
        let latency =
            (arrival_us as i64 + config.clock_offset_us - produced_us as i64).max(0) as u64;
        let live = produced_us >= self.live_from_us;
        if live && window.active {
            window.report.latency.record(latency);
            self.jitter.update(arrival_us as i64, produced_us as i64);
        }
        if self.counted && (window.from_seq..window.to_seq).contains(&seq) {
            self.report.received += 1;
            if latency <= config.on_time_us {
                self.report.on_time += 1;
            }
        }
    }

    fn on_text(&mut self, text: &str, window: &mut Window) {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        match message["type"].as_str() {
            Some("hello") => {
                self.live_from_us = message["server_time_ms"].as_u64().unwrap_or(0) * 1000;
            }
            Some("skipped") => {
                let from = message["from"].as_u64().unwrap_or(0);
                let to = message["to"].as_u64().unwrap_or(0);
                self.announced_skip_to = Some(to);
                if window.active {
                    window.report.skips += 1;
                    window.report.skipped_chunks += to.wrapping_sub(from);
                }
            }
            _ => {}
        }
    }

    fn final_report(&self) -> ListenerReport {
        ListenerReport {
            jitter_ms: self.jitter.ms(),
            ..self.report
        }
    }
}
