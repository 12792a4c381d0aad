//! The ring buffer between the one producer and the many listener sessions.
//!
//! One writer appends fixed-duration chunks; every reader keeps its own cursor (a sequence
//! number). The writer never waits for a reader: it drops the oldest chunk when full, and a reader
//! whose cursor fell off the end learns exactly which chunks it lost. Chunks are immutable and
//! share their bytes, so a reader copies only reference counts under a read lock.
//!
//! A chunk may be staged ahead of its time: the producer of a file or `tone:` reads a stage
//! ahead and sleeps, and each chunk becomes readable when it is due, made so by the first reader
//! that looks then. The producer does not wake per chunk, and readers get chunks exactly on time.
//!
//! Waking is designed for thousands of readers on two cores: instead of one broadcast per chunk
//! (every reader woken, every reader taking the same mutex), a reader sleeps on its own timer until
//! the chunk it wants is due, and only falls back to the condition variable when the producer is
//! late. A reader that asks for several chunks at once (coalescing) wakes that many times less
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
    /// Every chunk with the time it may be read, in nanoseconds after `epoch`: readable chunks
    /// first, then those staged ahead of their time (a file or `tone:` is read ahead).
    chunks: RwLock<VecDeque<Slot>>,
    /// How many readable chunks are kept: staged ones do not count.
    capacity: usize,
    period: Duration,
    /// The sequence number of the first chunk not readable yet: the first staged chunk, else
    /// the one the next push will carry (before the first one: what [`Ring::expect_first`]
    /// said, or 0).
    next_seq: AtomicU64,
    /// Whether `next_seq` means something: a chunk was pushed, or the first one announced.
    next_known: AtomicBool,
    /// Nanoseconds after `epoch` at which the newest readable chunk became readable (0: none
    /// yet), read without a lock by every session on every wake-up to predict the next chunk.
    last_ready_ns: AtomicU64,
    /// Nanoseconds after `epoch` at which the first staged chunk becomes readable (0: none
    /// staged). The first reader to find it past makes it readable ([`Ring::release`]).
    staged_ns: AtomicU64,
    epoch: Instant,
    /// Held while the atomics above change; only sessions that found the producer late wait
    /// on `pushed` under it.
    late: Mutex<()>,
    pushed: Condvar,
}

/// A chunk in the ring and when it may be read.
#[derive(Debug)]
struct Slot {
    ready_ns: u64,
    chunk: Chunk,
}

/// How late a staged chunk may become readable. One not read within this of its time was due
/// while the whole process stood still (a stopped process, a suspended machine: readers
/// release staged chunks on time otherwise); it is dropped, as the producer skips what it did
/// not produce when it wakes this late, and the time shows as a sequence gap instead of as
/// stale audio sent after it.
pub const MAX_LATE: Duration = Duration::from_secs(1);

/// How long after a chunk is due a sleeping reader wakes, to find it already there, when the
/// producer pushes it then (a capture device): a staged chunk is there on time.
const WAKE_SLACK: Duration = Duration::from_micros(1500);

impl Ring {
    /// A ring keeping `capacity` readable chunks (at least 2), each lasting `period`.
    pub fn new(capacity: usize, period: Duration) -> Ring {
        let capacity = capacity.max(2);
        Ring {
            chunks: RwLock::new(VecDeque::with_capacity(capacity)),
            capacity,
            period,
            next_seq: AtomicU64::new(0),
            next_known: AtomicBool::new(false),
            last_ready_ns: AtomicU64::new(0),
            staged_ns: AtomicU64::new(0),
            // A little before now, so that times just before the ring was made keep their order
            // and their distance from now.
            epoch: Instant::now()
                .checked_sub(MAX_LATE * 10)
                .unwrap_or_else(Instant::now),
            late: Mutex::new(()),
            pushed: Condvar::new(),
        }
    }

    /// Appends a chunk, readable at once, dropping the oldest one when full, and returns the
    /// dropped one so its buffer can be reused once no reader holds it. Never blocks on a
    /// reader.
    ///
    /// Sequence numbers must increase by one per chunk; the first one may be any number.
    pub fn push(&self, chunk: Chunk) -> Option<Chunk> {
        let mut dropped = None;
        self.push_all(std::iter::once(chunk), |c| dropped = Some(c));
        dropped
    }

    /// [`Ring::push`] for several chunks at once: one lock and one signal for all of them.
    /// Hands each chunk dropped to make room to `dropped`.
    pub fn push_all(&self, new: impl IntoIterator<Item = Chunk>, dropped: impl FnMut(Chunk)) {
        let now = Instant::now();
        self.stage(new.into_iter().map(|chunk| (chunk, now)), dropped);
    }

    /// Appends chunks that readers get only from the time paired with each (a producer that
    /// reads a file ahead and sleeps meanwhile: its chunks appear on time without it waking).
    /// Times before the previous chunk's count as that one's. Readable chunks beyond the
    /// capacity are dropped, oldest first, and handed to `dropped`; staged ones never are.
    pub fn stage(
        &self,
        new: impl IntoIterator<Item = (Chunk, Instant)>,
        mut dropped: impl FnMut(Chunk),
    ) {
        let mut added = false;
        {
            let now_ns = self.ns_at(Instant::now());
            let mut slots = self.chunks.write().unwrap_or_else(|e| e.into_inner());
            // The readable chunks are a prefix: those released, and staged ones whose time has
            // come (ready times never decrease).
            let mut readable = self.readable(&slots);
            while slots.get(readable).is_some_and(|s| s.ready_ns <= now_ns) {
                readable += 1;
            }
            let mut floor = slots.back().map_or(0, |s| s.ready_ns);
            for (chunk, ready) in new {
                floor = floor.max(self.ns_at(ready));
                if floor <= now_ns && readable == slots.len() {
                    readable += 1;
                }
                slots.push_back(Slot {
                    ready_ns: floor,
                    chunk,
                });
                added = true;
                while readable > self.capacity {
                    match slots.pop_front() {
                        Some(old) => dropped(old.chunk),
                        None => break,
                    }
                    readable -= 1;
                }
            }
        }
        if added {
            self.update(true);
        }
    }

    /// Makes the staged chunks whose time has come readable; cheap when none has.
    fn release(&self) {
        let staged = self.staged_ns.load(Ordering::Acquire);
        if staged != 0 && self.ns_at(Instant::now()) >= staged {
            self.update(false);
        }
    }

    /// Recomputes what is readable now and wakes late readers if more is. `pushed`: chunks
    /// were just added (the first staged one may be new).
    fn update(&self, pushed: bool) {
        let now_ns = self.ns_at(Instant::now());
        let guard = self.late.lock().unwrap_or_else(|e| e.into_inner());
        self.drop_overdue(now_ns);
        let slots = self.chunks.read().unwrap_or_else(|e| e.into_inner());
        let next = self.next_seq.load(Ordering::Acquire);
        let known = self.next_known.load(Ordering::Acquire);
        let first = if known {
            slots.partition_point(|s| seq_before(s.chunk.seq, next))
        } else {
            0
        };
        let mut released = None;
        let mut staged = None;
        for slot in slots.range(first..) {
            if slot.ready_ns > now_ns {
                staged = Some(slot);
                break;
            }
            released = Some(slot);
        }
        if released.is_none() && !pushed {
            return; // another reader was first
        }
        if let Some(slot) = released {
            self.last_ready_ns.store(slot.ready_ns, Ordering::Release);
        }
        let next = match (staged, released, slots.back()) {
            (Some(s), _, _) => s.chunk.seq,
            (None, _, Some(newest)) => newest.chunk.seq.wrapping_add(1),
            (None, _, None) => next,
        };
        self.staged_ns
            .store(staged.map_or(0, |s| s.ready_ns), Ordering::Release);
        self.next_seq.store(next, Ordering::Release);
        self.next_known.store(true, Ordering::Release);
        let woke = released.is_some();
        drop(slots);
        drop(guard);
        if woke {
            self.pushed.notify_all();
        }
    }

    /// Drops the staged chunks more than [`MAX_LATE`] past their time. Called with `late` held.
    fn drop_overdue(&self, now_ns: u64) {
        let cutoff = now_ns.saturating_sub(MAX_LATE.as_nanos() as u64);
        let overdue = |slots: &VecDeque<Slot>| {
            let first = self.readable(slots);
            slots.get(first).is_some_and(|s| s.ready_ns < cutoff)
        };
        if !overdue(&self.chunks.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        let mut slots = self.chunks.write().unwrap_or_else(|e| e.into_inner());
        let first = self.readable(&slots);
        let overdue = slots
            .range(first..)
            .take_while(|s| s.ready_ns < cutoff)
            .count();
        slots.drain(first..first + overdue);
    }

    /// `t` in nanoseconds after the ring's epoch (at least 1: 0 means "never").
    fn ns_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos().max(1) as u64
    }

    /// Says which sequence number the first chunk will carry, before it exists, so a reader that
    /// joins an empty ring starts there: sequence numbers follow the clock, and 0 is decades
    /// back. Ignored once a chunk was pushed.
    pub fn expect_first(&self, seq: u64) {
        let _guard = self.late.lock().unwrap_or_else(|e| e.into_inner());
        if !self.next_known.load(Ordering::Acquire) {
            self.next_seq.store(seq, Ordering::Release);
            self.next_known.store(true, Ordering::Release);
        }
    }

    /// The sequence number the next readable chunk will carry; `None` before the first chunk
    /// is pushed or announced.
    pub fn next_seq(&self) -> Option<u64> {
        self.release();
        self.next_known
            .load(Ordering::Acquire)
            .then(|| self.next_seq.load(Ordering::Acquire))
    }

    /// Where a new reader starts: `burst` chunks back from the live edge (or the oldest chunk).
    pub fn burst_start(&self, burst: usize) -> Option<u64> {
        self.release();
        let slots = self.chunks.read().unwrap_or_else(|e| e.into_inner());
        let readable = self.readable(&slots);
        let back = readable.min(burst.max(1));
        slots.get(readable.checked_sub(back)?).map(|s| s.chunk.seq)
    }

    /// How many chunks at the front of `slots` are readable.
    fn readable(&self, slots: &VecDeque<Slot>) -> usize {
        if self.last_ready_ns.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let next = self.next_seq.load(Ordering::Acquire);
        slots.partition_point(|s| seq_before(s.chunk.seq, next))
    }

    /// Appends to `out` up to `max` readable chunks starting at `cursor`.
    ///
    /// A cursor older than the oldest chunk moves to the live edge (the newest readable chunk),
    /// and the outcome names the chunks skipped. A cursor past it reads nothing.
    pub fn read_from(&self, cursor: u64, max: usize, out: &mut Vec<Chunk>) -> ReadOutcome {
        self.release();
        let slots = self.chunks.read().unwrap_or_else(|e| e.into_inner());
        let readable = self.readable(&slots);
        let (Some(oldest), Some(newest)) = (slots.front(), readable.checked_sub(1)) else {
            return ReadOutcome {
                skipped: None,
                next: cursor,
            };
        };
        let (oldest, newest) = (oldest.chunk.seq, slots[newest].chunk.seq);
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
        let first = slots.partition_point(|s| seq_before(s.chunk.seq, cursor));
        let end = readable.min(first + max);
        out.extend(slots.range(first..end).map(|s| s.chunk.clone()));
        let next = match end.checked_sub(1).filter(|&last| last >= first) {
            Some(last) => slots[last].chunk.seq.wrapping_add(1),
            None => cursor,
        };
        ReadOutcome { skipped, next }
    }

    /// When chunk `seq` is expected: a staged chunk when its time comes, one still to be pushed
    /// judging by the last chunk and the period, plus a little slack so a reader that sleeps
    /// until then finds it there. `None` before any chunk is readable or staged.
    pub fn due(&self, seq: u64) -> Option<Instant> {
        let next = self.next_seq.load(Ordering::Acquire);
        let ahead = seq.wrapping_sub(next);
        let staged = self.staged_ns.load(Ordering::Acquire);
        let last = self.last_ready_ns.load(Ordering::Acquire);
        if ahead > u64::from(u32::MAX) {
            // Already there (or absurdly far ahead).
            return (last != 0).then(|| self.epoch + Duration::from_nanos(last));
        }
        if staged != 0 {
            // `next` is the first staged chunk; the ones after it follow a period apart.
            return Some(self.epoch + Duration::from_nanos(staged) + self.period * ahead as u32);
        }
        if last == 0 {
            return None;
        }
        let last = self.epoch + Duration::from_nanos(last);
        Some(last + self.period * (ahead as u32 + 1) + WAKE_SLACK)
    }

    /// Blocks until chunk `seq` is readable or `deadline` passes; returns whether it is.
    ///
    /// Readers call this only when the producer is late: on time, they sleep until [`Ring::due`].
    pub fn wait_for(&self, seq: u64, deadline: Instant) -> bool {
        self.wait_until(deadline, || self.readable_now(seq))
    }

    /// Blocks until the first chunk is readable or `deadline` passes; returns whether it is.
    pub fn wait_first(&self, deadline: Instant) -> bool {
        self.wait_until(deadline, || self.last_ready_ns.load(Ordering::Acquire) != 0)
    }

    /// Waits on the push signal until `ready` holds or `deadline` passes, waking also when a
    /// staged chunk's time comes.
    fn wait_until(&self, deadline: Instant, ready: impl Fn() -> bool) -> bool {
        loop {
            self.release();
            let guard = self.late.lock().unwrap_or_else(|e| e.into_inner());
            if ready() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wake = match self.staged_ns.load(Ordering::Acquire) {
                0 => deadline,
                ns => deadline.min(self.epoch + Duration::from_nanos(ns)),
            };
            if wake > now {
                drop(
                    self.pushed
                        .wait_timeout(guard, wake - now)
                        .unwrap_or_else(|e| e.into_inner()),
                );
            }
        }
    }

    /// Whether chunk `seq` is readable (it may since have been dropped).
    pub fn has(&self, seq: u64) -> bool {
        self.release();
        self.readable_now(seq)
    }

    fn readable_now(&self, seq: u64) -> bool {
        self.last_ready_ns.load(Ordering::Acquire) != 0
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
    fn a_staged_chunk_is_read_from_its_time_on_without_another_push() {
        let ring = Ring::new(4, Duration::from_millis(20));
        ring.push(chunk(1));
        let now = Instant::now();
        // Far enough ahead that a test thread held up on a busy machine still looks before it.
        let later = now + Duration::from_millis(300);
        ring.stage([(chunk(2), now), (chunk(3), later)], |_| {});
        let mut out = Vec::new();
        let r = ring.read_from(1, 8, &mut out);
        assert_eq!(out.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(r.next, 3, "chunk 3 is not readable before its time");
        assert!(ring.has(2) && !ring.has(3));
        assert_eq!(ring.next_seq(), Some(3));
        assert_eq!(
            ring.burst_start(8),
            Some(1),
            "the live edge is the readable chunk 2"
        );
        assert_eq!(
            ring.due(3),
            Some(later),
            "a staged chunk is due exactly at its time"
        );
        assert_eq!(ring.due(4), Some(later + Duration::from_millis(20)));
        // A late reader waiting for it wakes at its time, though nothing is pushed.
        assert!(ring.wait_for(3, now + Duration::from_secs(5)));
        assert!(Instant::now() >= later);
        out.clear();
        assert_eq!(ring.read_from(3, 8, &mut out).next, 4);
        assert_eq!(out.iter().map(|c| c.seq).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_staged_chunk_not_read_within_a_second_of_its_time_is_dropped_not_sent_late() {
        let ring = Ring::new(8, Duration::from_millis(20));
        ring.push(chunk(1));
        let soon = Instant::now() + Duration::from_millis(20);
        ring.stage([(chunk(2), soon), (chunk(3), soon)], |_| {});
        // Nobody reads for more than a second after they were due, as when the whole process
        // stood still; then the producer, resynchronised, stages the chunk of now.
        std::thread::sleep(MAX_LATE + Duration::from_millis(100));
        ring.stage([(chunk(10), Instant::now())], |_| {});
        let mut out = Vec::new();
        let r = ring.read_from(2, 8, &mut out);
        assert_eq!(
            out.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [10],
            "chunks 2 and 3 were due more than a second ago"
        );
        assert_eq!(r.next, 11);
    }

    #[test]
    fn staged_chunks_do_not_count_against_the_readable_chunks_kept() {
        let ring = Ring::new(2, Duration::from_millis(20));
        ring.push_all([chunk(1), chunk(2)], |_| {});
        let later = Instant::now() + Duration::from_secs(60);
        let mut dropped = Vec::new();
        ring.stage((3..=6).map(|s| (chunk(s), later)), |c| dropped.push(c.seq));
        assert!(
            dropped.is_empty(),
            "dropped {dropped:?} for chunks not readable yet"
        );
        let mut out = Vec::new();
        ring.read_from(1, 8, &mut out);
        assert_eq!(out.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
        // Out-of-order times count as the previous chunk's: chunk 7 waits for 6.
        ring.stage([(chunk(7), Instant::now())], |c| dropped.push(c.seq));
        assert!(!ring.has(7));
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
