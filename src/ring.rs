//! The ring buffer between the one producer and the many listener sessions.
//!
//! One writer appends fixed-duration chunks; every reader keeps its own cursor (a sequence
//! number). The writer never waits for a reader: it drops the oldest chunk when full, and a reader
//! whose cursor fell off the end learns exactly which chunks it lost. Chunks are immutable and
//! share their bytes, so a reader copies only reference counts under a read lock.
//!
//! Waking is designed for thousands of readers on two cores: instead of one broadcast per chunk
//! (every reader woken, every reader taking the same mutex), a reader sleeps on its own timer until
//! the chunk it wants is due, and only falls back to the condition variable when the producer is
//! late. A reader that asks for several chunks at once (coalescing) wakes that many times less;
//! with few readers, the producer then pushes a whole batch at once, when they wake for it
//! (`session::Wakes`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use tungstenite::Bytes;

/// One chunk of the stream as it goes on the wire: the binary message's whole payload.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub seq: u64,
    /// When the chunk was produced, in microseconds since the Unix epoch.
    pub produced_us: u64,
    /// The 16-byte header followed by the samples (see PROTOCOL.md).
    pub payload: Bytes,
}

/// What a reader gets back from [`Ring::read_from`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Chunks `from..to` were dropped before this reader got them; it continues at `to`.
    pub skipped: Option<(u64, u64)>,
    /// The cursor to read from next time.
    pub next: u64,
}

pub struct Ring {
    chunks: RwLock<VecDeque<Chunk>>,
    capacity: usize,
    period: Duration,
    /// The sequence number the next pushed chunk will have (before the first one: what
    /// [`Ring::expect_first`] said, or 0).
    next_seq: AtomicU64,
    /// Whether `next_seq` means something: a chunk was pushed, or the first one announced.
    next_known: AtomicBool,
    /// Nanoseconds after `epoch` at which the newest chunk was pushed (0: never), read without a
    /// lock by every session on every wake-up to predict the next chunk.
    last_push_ns: AtomicU64,
    epoch: Instant,
    /// Only sessions that found the producer late wait here.
    late: Mutex<()>,
    pushed: Condvar,
}

/// How long after a chunk is due a sleeping reader wakes, to find it already there.
const WAKE_SLACK: Duration = Duration::from_micros(1500);

impl Ring {
    /// A ring of `capacity` chunks (at least 2), each lasting `period`.
    pub fn new(capacity: usize, period: Duration) -> Ring {
        let capacity = capacity.max(2);
        Ring {
            chunks: RwLock::new(VecDeque::with_capacity(capacity)),
            capacity,
            period,
            next_seq: AtomicU64::new(0),
            next_known: AtomicBool::new(false),
            last_push_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            late: Mutex::new(()),
            pushed: Condvar::new(),
        }
    }

    /// Appends a chunk, dropping the oldest one when full, and returns the dropped one so its
    /// buffer can be reused once no reader holds it. Never blocks on a reader.
    ///
    /// Sequence numbers must increase by one per chunk; the first one may be any number.
    pub fn push(&self, chunk: Chunk) -> Option<Chunk> {
        let mut dropped = None;
        self.push_all(std::iter::once(chunk), |c| dropped = Some(c));
        dropped
    }

    /// [`Ring::push`] for several chunks at once (a producer that wakes once per batch): one
    /// lock and one signal for all of them. Hands each chunk dropped to make room to `dropped`.
    pub fn push_all(&self, new: impl IntoIterator<Item = Chunk>, mut dropped: impl FnMut(Chunk)) {
        let mut next = None;
        {
            let mut chunks = self.chunks.write().unwrap_or_else(|e| e.into_inner());
            for chunk in new {
                next = Some(chunk.seq.wrapping_add(1));
                if chunks.len() == self.capacity {
                    if let Some(old) = chunks.pop_front() {
                        dropped(old);
                    }
                }
                chunks.push_back(chunk);
            }
        }
        let Some(next) = next else {
            return;
        };
        let since_epoch = self.epoch.elapsed().as_nanos().max(1) as u64;
        // Under the lock, so a late reader between its check and its wait cannot miss the wake.
        let guard = self.late.lock().unwrap_or_else(|e| e.into_inner());
        self.last_push_ns.store(since_epoch, Ordering::Release);
        self.next_seq.store(next, Ordering::Release);
        self.next_known.store(true, Ordering::Release);
        drop(guard);
        self.pushed.notify_all();
    }

    /// Says which sequence number the first chunk will carry, before it exists, so a reader that
    /// joins an empty ring starts there: sequence numbers follow the clock, and 0 is decades
    /// back. Ignored once a chunk was pushed.
    pub fn expect_first(&self, seq: u64) {
        let _guard = self.late.lock().unwrap_or_else(|e| e.into_inner());
        if self.last_push_ns.load(Ordering::Acquire) == 0 {
            self.next_seq.store(seq, Ordering::Release);
            self.next_known.store(true, Ordering::Release);
        }
    }

    /// The sequence number the next chunk will carry; `None` before the first chunk is pushed
    /// or announced.
    pub fn next_seq(&self) -> Option<u64> {
        self.next_known
            .load(Ordering::Acquire)
            .then(|| self.next_seq.load(Ordering::Acquire))
    }

    /// Where a new reader starts: `burst` chunks back from the live edge (or the oldest chunk).
    pub fn burst_start(&self, burst: usize) -> Option<u64> {
        let chunks = self.chunks.read().unwrap_or_else(|e| e.into_inner());
        let back = chunks.len().min(burst.max(1));
        chunks.get(chunks.len().checked_sub(back)?).map(|c| c.seq)
    }

    /// Appends to `out` up to `max` chunks starting at `cursor`.
    ///
    /// A cursor older than the oldest chunk moves to the live edge (the newest chunk), and the
    /// outcome names the chunks skipped. A cursor ahead of the newest chunk reads nothing.
    pub fn read_from(&self, cursor: u64, max: usize, out: &mut Vec<Chunk>) -> ReadOutcome {
        let chunks = self.chunks.read().unwrap_or_else(|e| e.into_inner());
        let (Some(oldest), Some(newest)) = (chunks.front(), chunks.back()) else {
            return ReadOutcome {
                skipped: None,
                next: cursor,
            };
        };
        let (oldest, newest) = (oldest.seq, newest.seq);
        let mut skipped = None;
        let mut cursor = cursor;
        // Wrap-safe comparison: a cursor "before" the oldest chunk is at most 2^63 behind it.
        if seq_before(cursor, oldest) {
            skipped = Some((cursor, newest));
            cursor = newest;
        }
        if seq_before(newest, cursor) {
            return ReadOutcome {
                skipped,
                next: cursor,
            };
        }
        // Sequence numbers increase but may jump (a producer that resynchronised to the clock
        // after a stall), so find the cursor by search rather than by offset.
        let first = chunks.partition_point(|c| seq_before(c.seq, cursor));
        let end = chunks.len().min(first + max);
        out.extend(chunks.range(first..end).cloned());
        let next = match end.checked_sub(1).filter(|&last| last >= first) {
            Some(last) => chunks[last].seq.wrapping_add(1),
            None => cursor,
        };
        ReadOutcome { skipped, next }
    }

    /// When chunk `seq` is expected, judging by the last push and the chunk period, plus a
    /// little slack so a reader that sleeps until then finds it there. `None` before any push.
    pub fn due(&self, seq: u64) -> Option<Instant> {
        let next = self.next_seq.load(Ordering::Acquire);
        let last = match self.last_push_ns.load(Ordering::Acquire) {
            0 => return None,
            ns => self.epoch + Duration::from_nanos(ns),
        };
        let ahead = seq.wrapping_sub(next);
        if ahead > u64::from(u32::MAX) {
            return Some(last); // already there (or absurdly far ahead)
        }
        Some(last + self.period * (ahead as u32 + 1) + WAKE_SLACK)
    }

    /// Blocks until chunk `seq` exists or `deadline` passes; returns whether it exists.
    ///
    /// Readers call this only when the producer is late: on time, they sleep until [`Ring::due`].
    pub fn wait_for(&self, seq: u64, deadline: Instant) -> bool {
        self.wait_until(deadline, || self.has(seq))
    }

    /// Blocks until the first chunk exists or `deadline` passes; returns whether it exists.
    pub fn wait_first(&self, deadline: Instant) -> bool {
        self.wait_until(deadline, || self.last_push_ns.load(Ordering::Acquire) != 0)
    }

    /// Waits on the push signal until `ready` holds or `deadline` passes.
    fn wait_until(&self, deadline: Instant, ready: impl Fn() -> bool) -> bool {
        let mut guard = self.late.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if ready() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .pushed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether chunk `seq` has been produced (it may since have been dropped).
    pub fn has(&self, seq: u64) -> bool {
        self.last_push_ns.load(Ordering::Acquire) != 0
            && seq_before(seq, self.next_seq.load(Ordering::Acquire))
    }
}

/// `a` comes before `b` in wrap-around sequence order.
pub fn seq_before(a: u64, b: u64) -> bool {
    (b.wrapping_sub(a) as i64) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64) -> Chunk {
        Chunk {
            seq,
            produced_us: 0,
            payload: Bytes::from(seq.to_le_bytes().to_vec()),
        }
    }

    #[test]
    fn an_announced_first_chunk_is_known_before_it_exists_and_then_the_pushes_rule() {
        let ring = Ring::new(4, Duration::from_millis(20));
        assert_eq!(ring.next_seq(), None);
        ring.expect_first(90_000_000_000);
        assert_eq!(ring.next_seq(), Some(90_000_000_000));
        assert!(!ring.has(90_000_000_000));
        ring.push(chunk(90_000_000_000));
        ring.expect_first(5);
        assert_eq!(
            ring.next_seq(),
            Some(90_000_000_001),
            "ignored once a chunk exists"
        );
    }

    #[test]
    fn a_push_into_a_full_ring_hands_back_the_oldest_chunk() {
        let ring = Ring::new(2, Duration::from_millis(20));
        assert!(ring.push(chunk(1)).is_none());
        assert!(ring.push(chunk(2)).is_none());
        assert_eq!(ring.push(chunk(3)).map(|c| c.seq), Some(1));
        assert_eq!(ring.push(chunk(4)).map(|c| c.seq), Some(2));
    }

    #[test]
    fn a_batch_push_drops_what_it_must_in_order_and_announces_the_chunk_after_its_last() {
        let ring = Ring::new(3, Duration::from_millis(20));
        ring.push(chunk(1));
        let mut dropped = Vec::new();
        ring.push_all((2..=5).map(chunk), |c| dropped.push(c.seq));
        assert_eq!(dropped, [1, 2]);
        assert_eq!(ring.next_seq(), Some(6));
        let mut out = Vec::new();
        ring.read_from(3, 8, &mut out);
        assert_eq!(out.iter().map(|c| c.seq).collect::<Vec<_>>(), [3, 4, 5]);
        // The chunk after the batch is due one period after the push, not three.
        let due = ring.due(6).unwrap();
        assert!(due <= Instant::now() + Duration::from_millis(20) + WAKE_SLACK);
    }

    #[test]
    fn reader_gets_chunks_in_order_up_to_max() {
        let ring = Ring::new(8, Duration::from_millis(20));
        for s in 10..15 {
            ring.push(chunk(s));
        }
        let mut out = Vec::new();
        let r = ring.read_from(11, 3, &mut out);
        assert_eq!(
            out.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![11, 12, 13]
        );
        assert_eq!(
            r,
            ReadOutcome {
                skipped: None,
                next: 14
            }
        );
        out.clear();
        assert_eq!(ring.read_from(15, 3, &mut out).next, 15);
        assert!(out.is_empty());
    }

    #[test]
    fn laggard_moves_to_live_edge_and_learns_what_it_lost() {
        let ring = Ring::new(4, Duration::from_millis(20));
        for s in 0..10 {
            ring.push(chunk(s));
        }
        let mut out = Vec::new();
        let r = ring.read_from(2, 10, &mut out);
        assert_eq!(r.skipped, Some((2, 9)));
        assert_eq!(out.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![9]);
        assert_eq!(r.next, 10);
    }

    #[test]
    fn reader_crosses_a_jump_in_sequence_numbers() {
        let ring = Ring::new(8, Duration::from_millis(20));
        for s in [10, 11, 12, 40, 41] {
            ring.push(chunk(s));
        }
        let mut out = Vec::new();
        let r = ring.read_from(12, 2, &mut out);
        assert_eq!(out.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![12, 40]);
        assert_eq!(r.next, 41);
        out.clear();
        let r = ring.read_from(13, 8, &mut out);
        assert_eq!(out.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![40, 41]);
        assert_eq!((r.skipped, r.next), (None, 42));
        assert_eq!(ring.burst_start(3), Some(12));
    }

    #[test]
    fn burst_starts_at_most_n_chunks_back() {
        let ring = Ring::new(16, Duration::from_millis(20));
        assert_eq!(ring.burst_start(10), None);
        for s in 100..105 {
            ring.push(chunk(s));
        }
        assert_eq!(ring.burst_start(3), Some(102));
        assert_eq!(ring.burst_start(50), Some(100));
        assert_eq!(ring.next_seq(), Some(105));
    }

    #[test]
    fn sequence_comparison_survives_wraparound() {
        assert!(seq_before(u64::MAX, 0));
        assert!(seq_before(5, 6));
        assert!(!seq_before(6, 5));
        let ring = Ring::new(4, Duration::from_millis(20));
        ring.push(chunk(u64::MAX - 1));
        ring.push(chunk(u64::MAX));
        ring.push(chunk(0));
        let mut out = Vec::new();
        ring.read_from(u64::MAX - 1, 8, &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn waiting_reader_wakes_when_the_chunk_arrives() {
        let ring = std::sync::Arc::new(Ring::new(4, Duration::from_millis(5)));
        ring.push(chunk(0));
        let writer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                ring.push(chunk(1));
            })
        };
        let due = ring.due(1).unwrap();
        assert!(due > Instant::now() && due < Instant::now() + Duration::from_millis(10));
        assert!(ring.wait_for(1, Instant::now() + Duration::from_secs(5)));
        assert!(!ring.wait_for(2, Instant::now() + Duration::from_millis(10)));
        writer.join().unwrap();
    }
}
