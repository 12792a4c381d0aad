//! The load generator behind `earshot bench`: thousands of listeners driven by a few threads.
//!
//! A thread per listener would measure the generator's context switches rather than the server,
//! and std has no `poll`/`epoll`. So each [`worker`] thread owns many non-blocking sockets and
//! reads them on a schedule derived from the chunks' production times: an idle generator costs
//! nothing and a busy one reads each socket about once per chunk it receives. How late a worker
//! got to a due socket is measured too (`lag`): it bounds how much of the measured latency is
//! the generator's.
//!
//! [`worker`]: crate::client::worker
//!
//! Connecting is separate: a handful of short-lived threads per ladder step connect and do the
//! handshake with blocking sockets, then hand each socket to a worker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::auth::Secret;
use crate::client::clock::unix_us;
use crate::client::endpoint::{Endpoint, Scheme};
use crate::client::handshake;
use crate::client::stats::Histogram;
use crate::client::worker::{Command, Listener, Shared, Worker};
use crate::error::{Error, Result};

/// Threads that connect listeners at the start of a step.
const CONNECTORS: usize = 8;

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
    /// Sent by every listener as `Authorization: Bearer`, for a server with a password.
    pub token: Option<Secret>,
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
    /// Reads of WebSocket listeners' sockets, those that found nothing included: against the
    /// chunks received, how well the read schedule follows the server's sends.
    pub reads: u64,
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
        self.reads += other.reads;
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
                        let c = &self.config;
                        match handshake::open(
                            &c.endpoint,
                            c.addr,
                            c.connect_timeout,
                            c.token.as_ref(),
                        ) {
                            Ok((stream, leftover)) => {
                                let websocket = c.endpoint.scheme == Scheme::Ws;
                                self.hand_over(Listener::new(stream, leftover, websocket));
                            }
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
