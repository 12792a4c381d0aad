//! A stream: its format, its ring buffer, its counters and the state of its source.
//!
//! The producer writes here; listener sessions, `/healthz` and `/api/status` read from here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::audio::Format;
use crate::ring::Ring;
use crate::source::SourceStats;

/// Whether the source is delivering audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    Starting,
    Live,
    /// Failing, being retried; listeners stay connected.
    Down(String),
    /// Finished for good (the end of a pipe); listeners are sent `bye`.
    Ended(String),
}

impl SourceState {
    /// The state's name as in status and control messages, and its reason if it has one.
    pub fn describe(&self) -> (&'static str, Option<&str>) {
        match self {
            SourceState::Starting => ("starting", None),
            SourceState::Live => ("live", None),
            SourceState::Down(r) => ("down", Some(r)),
            SourceState::Ended(r) => ("ended", Some(r)),
        }
    }
}

/// Counters for `/api/status`, updated without locks.
#[derive(Debug, Default)]
pub struct Counters {
    pub chunks_produced: AtomicU64,
    pub listeners_total: AtomicU64,
    pub listener_skips: AtomicU64,
    pub chunks_skipped: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub producer_resyncs: AtomicU64,
    /// Times the source came back after being down (a capture device replugged).
    pub source_reconnects: AtomicU64,
}

pub struct Stream {
    pub name: String,
    pub format: Format,
    pub chunk_ms: u32,
    pub chunk_frames: usize,
    pub source: String,
    /// Whether chunk sequence numbers and source positions follow the wall clock (`--align
    /// clock` on a clock-paced source), until the producer finds the source cannot seek.
    aligned: AtomicBool,
    pub ring: Ring,
    pub counters: Counters,
    state: Mutex<SourceState>,
    /// Bumped on every change of `state`, so sessions notice one without taking the lock.
    state_epoch: AtomicU64,
    ended: AtomicBool,
    source_stats: Mutex<SourceStats>,
}

impl Stream {
    pub fn new(
        name: &str,
        source: String,
        format: Format,
        chunk_ms: u32,
        buffer_ms: u32,
        aligned: bool,
    ) -> Stream {
        let chunk_frames = format.frames_per_chunk(chunk_ms);
        let period = format.duration_of(chunk_frames as u64);
        let capacity = (Duration::from_millis(u64::from(buffer_ms)).as_nanos()
            / period.as_nanos().max(1)) as usize;
        Stream {
            name: name.to_string(),
            format,
            chunk_ms,
            chunk_frames,
            source,
            aligned: AtomicBool::new(aligned),
            ring: Ring::new(capacity, period),
            counters: Counters::default(),
            state: Mutex::new(SourceState::Starting),
            state_epoch: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            source_stats: Mutex::new(SourceStats::default()),
        }
    }

    /// Whether positions follow the wall clock, as `hello` and `/api/status` report it.
    pub fn aligned(&self) -> bool {
        self.aligned.load(Ordering::Relaxed)
    }

    /// The source could not be positioned on the clock: it plays from its start instead.
    pub fn stop_aligning(&self) {
        self.aligned.store(false, Ordering::Relaxed);
    }

    /// How long one chunk lasts, exactly (frames / rate).
    pub fn period(&self) -> Duration {
        self.format.duration_of(self.chunk_frames as u64)
    }

    /// How many chunks make up `ms` milliseconds, rounded up.
    pub fn chunks_in(&self, ms: u32) -> usize {
        let period = self.period().as_micros().max(1);
        (u128::from(ms) * 1000).div_ceil(period) as usize
    }

    pub fn state(&self) -> SourceState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_state(&self, state: SourceState) {
        let mut current = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if *current != state {
            self.ended
                .store(matches!(state, SourceState::Ended(_)), Ordering::Release);
            *current = state;
            self.state_epoch.fetch_add(1, Ordering::Release);
        }
    }

    /// Whether the source has ended for good; a lock-free check for every session wake-up.
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub fn state_epoch(&self) -> u64 {
        self.state_epoch.load(Ordering::Acquire)
    }

    pub fn source_stats(&self) -> SourceStats {
        *self.source_stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_source_stats(&self, stats: SourceStats) {
        *self.source_stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    }

    pub fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
