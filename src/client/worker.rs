//! One load-generator thread: many listeners' non-blocking sockets, read on a schedule.
//!
//! Each socket is read when its next data can have arrived ([`ReadSchedule`]: not before the
//! next chunk is produced, or the end of the group when the server sends several at once, then
//! every `--poll-ms`). The thread sleeps until its earliest due socket. For every read that
//! brings new audio, the time it may have waited in the socket (since the later of the previous
//! read and its production) is recorded as `lag`: the part of the measured latency that may be
//! the generator's own.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::clock::{self, unix_us};
use crate::client::loadgen::{ListenerReport, LoadConfig, WindowReport};
use crate::client::schedule::{Pace, ReadSchedule};
use crate::client::stats::Jitter;
use crate::client::wsframe::{self, FrameReader, Item};
use crate::protocol::ServerMessage;

/// Read buffer per worker; a read that fills it is followed by another at once.
const SCRATCH: usize = 64 * 1024;
/// HTTP streams carry no timestamps, so they are simply drained this often.
const HTTP_POLL: Duration = Duration::from_millis(25);
/// Data does not arrive sooner than this after production, even on loopback.
const ARRIVAL_LEAD_US: u64 = 1000;
/// A worker looks at its command queue at least this often.
const MAX_SLEEP: Duration = Duration::from_millis(20);

pub enum Command {
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

pub struct Shared {
    pub alive: AtomicUsize,
    /// The newest chunk any listener has seen: (seq, produced_us).
    pub newest: Mutex<Option<(u64, u64)>>,
}

/// One listener's socket and its state.
pub struct Listener {
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
    /// When this socket was read last, and is read next.
    schedule: ReadSchedule,
    /// The production time (server clock) of the oldest live chunk the current read brought.
    first_new_produced_us: Option<u64>,
    /// Alive when the window started, so its numbers count.
    counted: bool,
    report: ListenerReport,
    jitter: Jitter,
    closed: Option<String>,
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

pub struct Worker {
    config: Arc<LoadConfig>,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    listeners: Vec<Listener>,
    scratch: Vec<u8>,
    window: Window,
    /// The newest chunk this worker last put into `shared.newest`, so the shared lock is only
    /// taken when a newer one arrived.
    published: Option<(u64, u64)>,
    /// The stream's chunk length and `--poll-ms`, as the read schedule takes them.
    pace: Pace,
}

impl Worker {
    pub fn new(
        config: Arc<LoadConfig>,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
    ) -> Worker {
        let pace = Pace {
            chunk_us: config.chunk_us.round() as u64,
            poll_us: config.poll.as_micros() as u64,
            lead_us: ARRIVAL_LEAD_US,
        };
        Worker {
            config,
            shared,
            commands,
            listeners: Vec::new(),
            scratch: vec![0; SCRATCH],
            window: Window::default(),
            published: None,
            pace,
        }
    }

    pub fn run(mut self) {
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
        let read_at = unix_us();
        if self.window.active && self.listeners[i].frames.is_some() {
            self.window.report.reads += 1;
        }
        self.listeners[i].first_new_produced_us = None;
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
        // New audio may have waited in the socket since the later of the previous read and
        // its production: that bounds how much of its measured latency is the generator's.
        if let (Some(first), true) = (l.first_new_produced_us, self.window.active) {
            let produced_local = first as i64 - self.config.clock_offset_us;
            let could_arrive = produced_local.max(l.schedule.last_read_us() as i64);
            let waited = (read_at as i64 - could_arrive).max(0) as u64;
            self.window.report.lag.record(waited);
        }
        let now = Instant::now();
        l.next_poll = match &l.frames {
            None => now + HTTP_POLL,
            // The rest of a message is on its way.
            Some(frames) if !frames.at_boundary() => {
                l.schedule.read_part(read_at);
                now + self.config.poll
            }
            Some(_) => {
                let new_chunks = match (newest_before, l.newest) {
                    (Some((before, _)), Some((after, _))) => after.saturating_sub(before),
                    (None, Some(_)) => 1,
                    _ => 0,
                };
                let offset = self.config.clock_offset_us;
                let newest_due = l
                    .newest
                    .map(|(_, produced)| (produced as i64 - offset).max(0) as u64);
                let next = l
                    .schedule
                    .after_read(read_at, new_chunks, newest_due, self.pace);
                now + Duration::from_micros(next.saturating_sub(unix_us()))
            }
        };
    }

    /// Takes bytes that arrived at `arrival_us` for listener `i`.
    fn absorb(&mut self, i: usize, data: &[u8], arrival_us: u64) {
        let window = &mut self.window;
        let config = &self.config;
        let l = &mut self.listeners[i];
        // Bytes count while the window is open; only late chunks count after it closes.
        if l.counted && window.active {
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

    fn publish_newest(&mut self) {
        let newest = self.listeners.iter().filter_map(|l| l.newest).max();
        let Some(newest) = newest.filter(|n| self.published.is_none_or(|p| p.0 < n.0)) else {
            return;
        };
        self.published = Some(newest);
        if let Ok(mut shared) = self.shared.newest.lock() {
            if shared.is_none_or(|s| s.0 < newest.0) {
                *shared = Some(newest);
            }
        }
    }
}

impl Listener {
    /// A freshly connected listener; `leftover` is what the handshake read past the head.
    pub fn new(stream: TcpStream, leftover: Vec<u8>, websocket: bool) -> Listener {
        Listener {
            stream,
            frames: websocket.then(FrameReader::new),
            leftover,
            next_poll: Instant::now(),
            live_from_us: u64::MAX,
            next_seq: None,
            announced_skip_to: None,
            newest: None,
            schedule: ReadSchedule::new(unix_us()),
            first_new_produced_us: None,
            counted: false,
            report: ListenerReport::default(),
            jitter: Jitter::default(),
            closed: None,
        }
    }

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
        let latency = clock::latency_us(arrival_us, produced_us, config.clock_offset_us);
        let live = produced_us >= self.live_from_us;
        if live {
            let first = self.first_new_produced_us.get_or_insert(produced_us);
            *first = (*first).min(produced_us);
        }
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
        // Other messages, and types this build does not know, are not measured.
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(ServerMessage::Hello { server_time_ms, .. }) => {
                self.live_from_us = server_time_ms.saturating_mul(1000);
            }
            Ok(ServerMessage::Skipped { from, to }) => {
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

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn listener() -> Listener {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        Listener::new(stream, Vec::new(), true)
    }

    #[test]
    fn hello_marks_the_burst_and_skips_count_only_while_measuring() {
        let mut l = listener();
        let mut window = Window::default();
        let hello = ServerMessage::Hello {
            version: 1,
            codec: "pcm_s16le".into(),
            sample_rate: 44_100,
            channels: 2,
            chunk_ms: 20,
            chunk_frames: 882,
            align: "clock".into(),
            stream: "main".into(),
            instance: "A".into(),
            seq: 10,
            server_time_ms: 1_700_000_000_123,
        };
        l.on_text(&hello.to_json(), &mut window);
        assert_eq!(l.live_from_us, 1_700_000_000_123_000);

        let skipped = ServerMessage::Skipped { from: 10, to: 15 }.to_json();
        l.on_text(&skipped, &mut window);
        assert_eq!(l.announced_skip_to, Some(15));
        assert_eq!(window.report.skips, 0, "not measuring yet");
        window.active = true;
        l.on_text(&skipped, &mut window);
        assert_eq!((window.report.skips, window.report.skipped_chunks), (1, 5));

        // What this build does not know, or cannot parse, changes nothing.
        l.on_text(r#"{"type":"future","x":1}"#, &mut window);
        l.on_text("not json", &mut window);
        assert_eq!(
            (window.report.skips, l.live_from_us),
            (1, 1_700_000_000_123_000)
        );
    }
}
