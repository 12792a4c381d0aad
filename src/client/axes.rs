//! The chart's axes: listener counts on a log scale across, and each panel's values up: linear,
//! log, or by their "nines". Also the round numbers the grid lines sit on.

use crate::client::chart::{LEFT, RIGHT, WIDTH};
use crate::client::results::StepResult;

/// Horizontal position of a listener count on the log axis.
pub struct XAxis {
    lo: f64,
    hi: f64,
}

impl XAxis {
    pub fn new(steps: &[StepResult]) -> XAxis {
        let lo = steps.iter().map(|s| s.target).min().unwrap_or(1).max(1) as f64;
        let hi = steps.iter().map(|s| s.target).max().unwrap_or(1).max(1) as f64;
        // Half a decade of room either side keeps the end points off the frame.
        XAxis {
            lo: lo.log10() - 0.08,
            hi: hi.log10().max(lo.log10() + 0.5) + 0.08,
        }
    }

    pub fn at(&self, n: usize) -> f64 {
        let t = ((n.max(1) as f64).log10() - self.lo) / (self.hi - self.lo);
        LEFT + t * (WIDTH - LEFT - RIGHT)
    }
}

#[derive(Clone, Copy)]
pub enum Scale {
    Linear,
    /// Base-10 logarithm; `lo` must be positive.
    Log,
    /// Percentages by their nines: `-log10(1 - p/100)`, so 90, 99, 99.9 are evenly spaced.
    Nines,
}

/// The "nines" of a percentage, capped at four (99.99 % and above, and anything over 100).
pub fn nines(pct: f64) -> f64 {
    -(1.0 - pct / 100.0).clamp(1e-4, 1.0).log10()
}

/// A vertical scale for one panel.
pub struct YAxis {
    pub lo: f64,
    pub hi: f64,
    pub top: f64,
    pub bottom: f64,
    pub scale: Scale,
}

impl YAxis {
    pub fn at(&self, v: f64) -> f64 {
        let f = |v: f64| match self.scale {
            Scale::Linear => v,
            Scale::Log => v.max(self.lo).log10(),
            Scale::Nines => nines(v),
        };
        let (lo, hi) = (f(self.lo), f(self.hi));
        let t = (f(v.clamp(self.lo, self.hi)) - lo) / (hi - lo);
        self.bottom - t * (self.bottom - self.top)
    }
}

/// 1, 2 or 5 times a power of ten, at or above `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// About five evenly spaced round values from `lo` to `hi`.
pub fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = nice_ceiling((hi - lo) / 5.0);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-9 {
        out.push(v);
        v += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_space_90_99_and_99_9_evenly() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), 4.0);
        assert_eq!(nines(100.4), 4.0);
        assert_eq!(nines(0.0), 0.0);
    }

    #[test]
    fn scales_pick_round_numbers() {
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(0.42), 0.5);
        assert_eq!(ticks(0.0, 200.0), [0.0, 50.0, 100.0, 150.0, 200.0]);
        assert_eq!(ticks(99.0, 100.0).len(), 6);
    }
}
