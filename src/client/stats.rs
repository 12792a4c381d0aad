//! What a listener experiences, in numbers: latency percentiles and RFC 3550 interarrival jitter.
//!
//! Both are kept in a few kilobytes so that `earshot bench` can afford them for thousands of
//! listeners: latency goes into a log-linear histogram (every value within 1.6 % of the truth)
//! instead of a list of samples, and jitter is the RFC's one-number running estimator.

/// Sub-buckets per power of two: 2^6 = 64, so a bucket is at most 1/64 of its value wide.
const SUB_BITS: u32 = 6;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Values are capped here (about 19 hours in µs); nothing a listener measures comes close.
const MAX_VALUE: u64 = 1 << 36;

/// A histogram of non-negative values (microseconds here) with percentile queries.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u32>,
    total: u64,
    max: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram::default()
    }

    pub fn record(&mut self, value: u64) {
        let value = value.min(MAX_VALUE);
        let i = bucket_of(value);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total += 1;
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The largest value recorded (exact), or `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The value below which a share `p` (0.0 to 1.0) of the recorded values fall: the middle
    /// of the bucket holding that rank, never above the exact maximum.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        if rank >= self.total {
            return Some(self.max);
        }
        let mut seen = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                let (low, width) = bucket_range(i);
                return Some((low + width / 2).min(self.max));
            }
        }
        Some(self.max)
    }

    /// Adds another histogram's values to this one.
    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.max = 0;
    }
}

/// Values below 64 have a bucket each; above, each power of two is split into 64 buckets.
fn bucket_of(value: u64) -> usize {
    if value < SUB_COUNT {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let shift = exponent - SUB_BITS;
    let sub = value >> shift;
    (((shift + 1) as usize) << SUB_BITS) + (sub - SUB_COUNT) as usize
}

/// The lowest value of bucket `i` and the bucket's width.
fn bucket_range(i: usize) -> (u64, u64) {
    if (i as u64) < SUB_COUNT {
        return (i as u64, 1);
    }
    let shift = (i >> SUB_BITS) as u32 - 1;
    let sub = (i as u64 & (SUB_COUNT - 1)) + SUB_COUNT;
    (sub << shift, 1 << shift)
}

/// The interarrival jitter estimator of RFC 3550 §6.4.1, with the chunk's production time in
/// the role of the RTP timestamp.
///
/// "The interarrival jitter J is defined to be the mean deviation (smoothed absolute value) of
/// the difference D in packet spacing at the receiver compared to the sender for a pair of
/// packets": `D(i,j) = (Rj - Ri) - (Sj - Si)`, and `J(i) = J(i-1) + (|D(i-1,i)| - J(i-1))/16`.
/// Because D compares differences, a constant clock offset between client and server cancels.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jitter {
    last_transit_us: Option<i64>,
    jitter_us: f64,
}

impl Jitter {
    /// Takes one chunk: when it arrived and when it was produced (any two clocks, in µs).
    pub fn update(&mut self, arrival_us: i64, produced_us: i64) {
        let transit = arrival_us.saturating_sub(produced_us);
        if let Some(last) = self.last_transit_us {
            let d = transit.saturating_sub(last).unsigned_abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last_transit_us = Some(transit);
    }

    /// Forgets the last transit time, for a new connection (whose clock offset differs); the
    /// estimate itself carries on.
    pub fn restart(&mut self) {
        self.last_transit_us = None;
    }

    pub fn ms(&self) -> f64 {
        self.jitter_us / 1000.0
    }
}

/// Microseconds to milliseconds for display.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_within_one_sixty_fourth() {
        let mut expected_low = 0;
        for i in 0..2000 {
            let (low, width) = bucket_range(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(low + width - 1), i);
            assert!(width == 1 || width * 64 <= low, "bucket {i} too wide");
            expected_low = low + width;
        }
    }

    #[test]
    fn percentiles_of_a_uniform_spread_are_close_to_exact() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 10);
        }
        let p50 = h.percentile(0.5).unwrap() as f64;
        let p99 = h.percentile(0.99).unwrap() as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.016, "p50 {p50}");
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.016, "p99 {p99}");
        assert_eq!(h.max(), Some(100_000));
        assert_eq!(h.percentile(1.0), Some(100_000));
    }

    #[test]
    fn merged_histograms_count_everything_once() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(5);
        b.record(7_000);
        b.record(9);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max(), Some(7_000));
        assert_eq!(a.percentile(0.0), Some(5));
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a.percentile(0.5), None);
    }

    #[test]
    fn jitter_is_zero_for_steady_spacing_and_follows_rfc3550_for_a_late_packet() {
        let mut j = Jitter::default();
        for i in 0..100 {
            j.update(5_000 + i * 20_000, i * 20_000);
        }
        assert_eq!(j.ms(), 0.0);
        // One packet 16 ms late: |D| = 16 ms, so J = 16/16 = 1 ms; then back on time, |D| = 16
        // again: J = 1 + (16 - 1)/16.
        j.update(5_000 + 100 * 20_000 + 16_000, 100 * 20_000);
        assert!((j.ms() - 1.0).abs() < 1e-9);
        j.update(5_000 + 101 * 20_000, 101 * 20_000);
        assert!((j.ms() - (1.0 + 15.0 / 16.0)).abs() < 1e-9);
    }
}
