//! Stream position from the wall clock: with `--align clock`, chunk `n` holds frames
//! `n × chunk_frames …` counted from the Unix epoch, so every instance playing the same source
//! plays the same audio under the same sequence number at the same moment.
//!
//! Instances whose clocks agree (NTP keeps them within a few milliseconds) therefore agree to
//! within a chunk, and a listener moved between them learns from the sequence numbers exactly
//! how much audio it lost or would hear twice.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct StreamClock {
    rate: u64,
    chunk_frames: u64,
}

impl StreamClock {
    pub fn new(sample_rate: u32, chunk_frames: usize) -> StreamClock {
        StreamClock {
            rate: u64::from(sample_rate.max(1)),
            chunk_frames: (chunk_frames as u64).max(1),
        }
    }

    /// The first chunk that starts at or after `t`.
    pub fn next_seq_at(&self, t: SystemTime) -> u64 {
        let ns = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let frames = ns * u128::from(self.rate) / 1_000_000_000;
        frames.div_ceil(u128::from(self.chunk_frames)) as u64
    }

    /// The absolute frame position where chunk `seq` starts.
    pub fn first_frame(&self, seq: u64) -> u64 {
        seq.wrapping_mul(self.chunk_frames)
    }

    /// When chunk `seq` starts, as time since the Unix epoch.
    pub fn start_of(&self, seq: u64) -> Duration {
        let frames = u128::from(seq) * u128::from(self.chunk_frames);
        let ns = frames * 1_000_000_000 / u128::from(self.rate);
        Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
    }
}

/// A moment read from both clocks at once: the monotonic clock paces, the wall clock aligns.
#[derive(Debug, Clone, Copy)]
pub struct Anchor {
    pub instant: Instant,
    pub since_epoch: Duration,
}

/// How many times [`Anchor::now`] reads the pair of clocks, keeping the closest.
const ANCHOR_READS: usize = 3;

impl Anchor {
    /// Reads both clocks as nearly at once as it can: a thread preempted between the two reads
    /// would pair them that far apart (7–15 ms seen on a loaded, emulated Pi Zero), so the pair
    /// is read a few times, each between two monotonic reads, and the one read fastest kept.
    pub fn now() -> Anchor {
        let mut best: Option<(Duration, Anchor)> = None;
        for _ in 0..ANCHOR_READS {
            let before = Instant::now();
            let wall = SystemTime::now();
            let after = Instant::now();
            let spread = after - before;
            if best.is_none_or(|(b, _)| spread < b) {
                let anchor = Anchor {
                    instant: before + spread / 2,
                    since_epoch: wall.duration_since(UNIX_EPOCH).unwrap_or_default(),
                };
                best = Some((spread, anchor));
            }
        }
        best.map(|(_, a)| a).expect("read at least once")
    }

    /// The monotonic instant at which the wall clock reads `since_epoch`.
    pub fn instant_at(&self, since_epoch: Duration) -> Instant {
        match since_epoch.checked_sub(self.since_epoch) {
            Some(ahead) => self.instant + ahead,
            None => self
                .instant
                .checked_sub(self.since_epoch - since_epoch)
                .unwrap_or(self.instant),
        }
    }

    /// What the wall clock reads at monotonic instant `t`: the inverse of
    /// [`Anchor::instant_at`], so that a time taken there comes back to the nanosecond.
    pub fn wall_at(&self, t: Instant) -> SystemTime {
        let since_epoch = match t.checked_duration_since(self.instant) {
            Some(ahead) => self.since_epoch + ahead,
            None => self.since_epoch.saturating_sub(self.instant - t),
        };
        UNIX_EPOCH + since_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_numbered_from_the_unix_epoch() {
        let clock = StreamClock::new(44_100, 882);
        let t = UNIX_EPOCH + Duration::from_millis(1_000_000_000_020);
        // 1e12 ms / 20 ms per chunk = 5e10 chunks, plus one.
        assert_eq!(clock.next_seq_at(t), 50_000_000_001);
        assert_eq!(
            clock.next_seq_at(t + Duration::from_millis(1)),
            50_000_000_002
        );
        assert_eq!(
            clock.start_of(50_000_000_001),
            Duration::from_millis(1_000_000_000_020)
        );
        assert_eq!(clock.first_frame(3), 2646);
    }

    #[test]
    fn a_wall_time_taken_to_an_instant_by_an_anchor_comes_back_exactly() {
        let anchor = Anchor::now();
        for offset_ms in [0i64, 20, 1_234_567, -20, -777] {
            let t = if offset_ms >= 0 {
                anchor.since_epoch + Duration::from_millis(offset_ms as u64)
            } else {
                anchor.since_epoch - Duration::from_millis(offset_ms.unsigned_abs())
            };
            assert_eq!(anchor.wall_at(anchor.instant_at(t)), UNIX_EPOCH + t);
        }
    }

    #[test]
    fn two_instances_started_apart_agree_on_the_sequence_for_a_moment() {
        let clock = StreamClock::new(48_000, 960);
        let t = UNIX_EPOCH + Duration::from_secs(1_795_290_002);
        let a = clock.next_seq_at(t);
        let b = clock.next_seq_at(t + Duration::from_millis(37));
        // 37 ms later is two chunks of 20 ms later, whoever computes it.
        assert_eq!(b - a, 2);
        assert_eq!(
            clock.start_of(a + 2).as_millis() - clock.start_of(a).as_millis(),
            40
        );
    }
}
