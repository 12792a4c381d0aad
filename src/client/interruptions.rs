//! The listener's interruption log: a connection lost, the attempts to get it back, and, once
//! audio flows again, how long there was none and how much of the stream went missing.
//!
//! Kept apart from the listen loop so that other ways of moving between servers (a planned
//! move announced by the server) and other ways of reporting the log (a file for a change
//! ticket) add to this file instead of to the loop.

use std::time::Instant;

use crate::client::console::Interruption;

/// A connection was lost and audio has not flowed again yet.
#[derive(Debug, Clone)]
pub struct Pending {
    pub cause: String,
    pub instance_before: Option<String>,
    /// When the last audio before it arrived (client clock, µs since the epoch).
    pub last_audio_us: Option<u64>,
    pub since: Instant,
    pub attempts: u64,
    /// The server asked the client to move (`goaway`) and the old connection was still up.
    pub planned: bool,
}

#[derive(Debug, Default)]
pub struct InterruptionLog {
    pending: Option<Pending>,
    done: Vec<Interruption>,
}

impl InterruptionLog {
    /// A connection ended; starts an interruption unless one is already open.
    pub fn begin(&mut self, cause: &str, instance: Option<String>, last_audio_us: Option<u64>) {
        self.open(cause, instance, last_audio_us, false);
    }

    /// A planned move (make before break): the new connection is up and takes over from the
    /// old one now; the interruption is what the splice finds, usually nothing.
    pub fn begin_move(
        &mut self,
        cause: &str,
        instance: Option<String>,
        last_audio_us: Option<u64>,
    ) {
        self.open(cause, instance, last_audio_us, true);
    }

    fn open(&mut self, cause: &str, instance: Option<String>, last: Option<u64>, planned: bool) {
        self.pending.get_or_insert_with(|| Pending {
            cause: cause.to_string(),
            instance_before: instance,
            last_audio_us: last,
            since: Instant::now(),
            attempts: 0,
            planned,
        });
    }

    /// Counts one attempt to connect again (failed or not).
    pub fn attempt(&mut self) {
        if let Some(p) = self.pending.as_mut() {
            p.attempts += 1;
        }
    }

    /// The open interruption, if any.
    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    /// Audio flows again: the first chunk arrived at `arrival_us`, and the timeline says
    /// `lost_us` of stream went missing (negative: that much was received twice and dropped).
    pub fn complete(
        &mut self,
        arrival_us: u64,
        lost_us: i64,
        splice: &'static str,
        instance_after: Option<String>,
    ) -> Option<&Interruption> {
        let p = self.pending.take()?;
        let duration_ms = match p.last_audio_us {
            Some(last) => arrival_us.saturating_sub(last) as f64 / 1000.0,
            None => p.since.elapsed().as_secs_f64() * 1000.0,
        };
        self.done.push(Interruption {
            n: self.done.len() as u64 + 1,
            started_unix_ms: p.last_audio_us.unwrap_or(arrival_us) / 1000,
            cause: p.cause,
            instance_before: p.instance_before,
            instance_after,
            duration_ms,
            lost_ms: lost_us.max(0) as f64 / 1000.0,
            overlap_ms: (-lost_us).max(0) as f64 / 1000.0,
            splice,
            attempts: p.attempts,
            planned: p.planned,
        });
        self.done.last()
    }

    /// Interruptions that lost audio (a planned move that spliced seamlessly did not).
    pub fn audible(&self) -> usize {
        self.done.iter().filter(|i| i.audible()).count()
    }

    /// Completed interruptions, oldest first.
    pub fn completed(&self) -> &[Interruption] {
        &self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interruption_runs_from_the_last_audio_to_the_first_audio_after() {
        let mut log = InterruptionLog::default();
        log.begin("connection reset", Some("a".into()), Some(10_000_000));
        log.begin("ignored: already open", None, None);
        log.attempt();
        log.attempt();
        assert!(log.pending().is_some());
        let i = log
            .complete(11_500_000, 1_300_000, "clock", Some("b".into()))
            .unwrap()
            .clone();
        assert_eq!(i.cause, "connection reset");
        assert_eq!(
            (i.duration_ms, i.lost_ms, i.overlap_ms),
            (1500.0, 1300.0, 0.0)
        );
        assert_eq!((i.attempts, i.n), (2, 1));
        assert_eq!(i.instance_after.as_deref(), Some("b"));
        assert!(log.pending().is_none());
        assert!(log.complete(12_000_000, 0, "sequence", None).is_none());
        assert_eq!(log.completed().len(), 1);
        assert_eq!(log.audible(), 1);
    }

    #[test]
    fn a_planned_move_that_lost_nothing_is_logged_but_not_audible() {
        let mut log = InterruptionLog::default();
        log.begin_move("goaway: draining", Some("a".into()), Some(10_000_000));
        let i = log
            .complete(10_004_000, 0, "sequence", Some("b".into()))
            .unwrap()
            .clone();
        assert!(i.planned);
        assert_eq!((i.duration_ms, i.lost_ms), (4.0, 0.0));
        assert_eq!(log.audible(), 0);
    }
}
