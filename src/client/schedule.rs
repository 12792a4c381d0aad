//! When the load generator reads one listener's socket next.
//!
//! std has no readiness API, so a socket is read when data can have arrived: never before the
//! next chunk's production time (known from the newest chunk's header and the clock offset),
//! then every `--poll-ms`, doubling up to four times while nothing comes.
//!
//! A server that sends several chunks at once (`--batch-ms`, or earshot's default under load)
//! would leave that first read empty every time, and the polls after it too until the group
//! comes. So the schedule learns the group: when chunks came together between two reads less
//! than a chunk apart, that many chunks are what the server sends at once, and the next read
//! is one poll before the group's last chunk is produced, then every poll. That read usually
//! finds nothing, and is kept on purpose: the read that finds the group then follows an empty
//! one by a poll, which bounds how long the audio may have waited in the socket (`lag`). A
//! server that sends each chunk as it is produced is read as before. A group that shrinks is
//! seen at the first read that brings fewer chunks; a read that finds its newest chunk
//! waiting for more than a chunk period was late, and the group is learned again.

/// The largest group learned: the most an earshot session sends at once.
const MAX_GROUP: u64 = crate::session::MAX_CHUNKS_PER_WAKE as u64;
/// A socket that keeps coming up empty is read every `poll << MAX_BACKOFF_SHIFT` at most.
const MAX_BACKOFF_SHIFT: u32 = 2;

/// What the schedule needs to know about the stream and the generator, in µs.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub chunk_us: u64,
    /// How often a socket that is waiting for data is read (`--poll-ms`).
    pub poll_us: u64,
    /// Data does not arrive sooner than this after production, even on loopback.
    pub lead_us: u64,
}

#[derive(Debug, Clone)]
pub struct ReadSchedule {
    /// When the socket was last read (this machine's clock, µs since the epoch).
    last_read_us: u64,
    /// Reads in a row that found nothing.
    empty_reads: u32,
    /// How many chunks the server sends this listener at once, as last seen.
    group: u64,
}

impl ReadSchedule {
    pub fn new(now_us: u64) -> ReadSchedule {
        ReadSchedule {
            last_read_us: now_us,
            empty_reads: 0,
            group: 1,
        }
    }

    /// When the socket was last read.
    pub fn last_read_us(&self) -> u64 {
        self.last_read_us
    }

    /// Chunks the server is taken to send at once.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// Records a read at `read_us` that ended inside a message: the rest is on its way, so
    /// the caller reads again a poll later, and only the time of the last read moves.
    pub fn read_part(&mut self, read_us: u64) {
        self.last_read_us = read_us;
    }

    /// Records a read at `read_us` that brought `new_chunks` chunks past the newest one seen
    /// before, and returns when to read next (same clock). `newest_due_us` is the newest chunk's
    /// production time on this machine's clock, if any chunk came yet.
    pub fn after_read(
        &mut self,
        read_us: u64,
        new_chunks: u64,
        newest_due_us: Option<u64>,
        pace: Pace,
    ) -> u64 {
        let previous_read = std::mem::replace(&mut self.last_read_us, read_us);
        let soonest = read_us + pace.poll_us;
        if new_chunks > 0 {
            let late = newest_due_us.is_some_and(|due| due + pace.chunk_us < read_us);
            if self.empty_reads > 0 && read_us.saturating_sub(previous_read) < pace.chunk_us {
                // They came in between two reads less than a chunk apart: sent together.
                self.group = new_chunks.clamp(1, MAX_GROUP);
            } else if late {
                // Read late (a guessed group too long, or a backlog): learn it again.
                self.group = 1;
            } else if new_chunks < self.group {
                self.group = new_chunks;
            }
            self.empty_reads = 0;
            // Nothing can arrive before the next chunk is produced, nor from a server that sends
            // groups before the group's last one is: read a poll before that.
            return newest_due_us.map_or(soonest, |due| {
                let arrives = due + self.group * pace.chunk_us + pace.lead_us;
                let early = if self.group > 1 { pace.poll_us } else { 0 };
                soonest.max(arrives.saturating_sub(early))
            });
        }
        self.empty_reads = self.empty_reads.saturating_add(1);
        let backoff = (self.empty_reads - 1).min(MAX_BACKOFF_SHIFT);
        read_us + (pace.poll_us << backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        chunk_us: 20_000,
        poll_us: 4_000,
        lead_us: 1_000,
    };

    /// What reading a server for a while came to.
    struct Reading {
        reads: u64,
        /// The longest a chunk waited in the socket.
        longest_wait: u64,
        /// The largest `lag` the generator would record once the first two groups are in: from
        /// the later of the previous read and the first new chunk's production to the read that
        /// brought it.
        loosest_lag: u64,
    }

    /// Reads a server that sends chunk `n` (due at `n * 20 ms`) at the due time of the last
    /// chunk of its group of `group`, for `chunks` chunks.
    fn read_server(schedule: &mut ReadSchedule, group: u64, chunks: u64) -> Reading {
        let due = |n: u64| n * PACE.chunk_us;
        let sent_at = |n: u64| due(n / group * group + group - 1);
        let mut newest: Option<u64> = None;
        let mut at = 0;
        let mut reading = Reading {
            reads: 0,
            longest_wait: 0,
            loosest_lag: 0,
        };
        while newest.is_none_or(|n| n + 1 < chunks) {
            reading.reads += 1;
            let first = newest.map_or(0, |n| n + 1);
            let mut brought = 0;
            while first + brought < chunks && sent_at(first + brought) <= at {
                reading.longest_wait = reading.longest_wait.max(at - sent_at(first + brought));
                brought += 1;
            }
            if brought > 0 {
                newest = Some(first + brought - 1);
                if first >= 2 * group {
                    let lag = at - due(first).max(schedule.last_read_us());
                    reading.loosest_lag = reading.loosest_lag.max(lag);
                }
            }
            at = schedule.after_read(at, brought, newest.map(due), PACE);
        }
        reading
    }

    #[test]
    fn a_server_sending_each_chunk_is_read_once_per_chunk() {
        let mut schedule = ReadSchedule::new(0);
        let r = read_server(&mut schedule, 1, 100);
        assert!(r.reads <= 101, "{} reads for 100 chunks", r.reads);
        assert!(
            r.longest_wait <= PACE.lead_us,
            "waited {} µs",
            r.longest_wait
        );
        assert!(r.loosest_lag <= PACE.lead_us, "lag {} µs", r.loosest_lag);
        assert_eq!(schedule.group(), 1);
    }

    #[test]
    fn a_server_sending_groups_is_read_twice_per_group_once_learned() {
        let mut schedule = ReadSchedule::new(0);
        // Learning: the first group is found by polling.
        read_server(&mut schedule, 3, 3);
        assert_eq!(schedule.group(), 3);
        let mut schedule = ReadSchedule::new(0);
        let r = read_server(&mut schedule, 3, 300);
        // One empty read a poll before the group's end, one that finds it; a few more while
        // learning. Polling from the next chunk's time every 4 ms, doubling, took four or five.
        assert!(r.reads <= 2 * 100 + 6, "{} reads for 100 groups", r.reads);
        assert!(
            r.longest_wait <= PACE.lead_us + PACE.poll_us,
            "waited {} µs",
            r.longest_wait
        );
        // Each read that finds a group follows an empty one by a poll, so `lag` stays what it
        // is for a server that sends every chunk: not the 40 ms since the group began.
        assert!(
            r.loosest_lag <= PACE.lead_us + PACE.poll_us,
            "lag {} µs",
            r.loosest_lag
        );
    }

    #[test]
    fn a_group_that_shrinks_is_followed() {
        let mut schedule = ReadSchedule::new(0);
        read_server(&mut schedule, 3, 30);
        assert_eq!(schedule.group(), 3);
        // The server now sends each chunk: the first read brings one, so groups are over.
        let next = schedule.after_read(621_000, 1, Some(620_000), PACE);
        assert_eq!(schedule.group(), 1);
        assert_eq!(next, 641_000, "the next chunk's time, not the group's end");
    }

    #[test]
    fn a_backlog_read_late_is_not_taken_for_a_group() {
        let mut schedule = ReadSchedule::new(0);
        // A read that came long after the previous one finds five chunks: the generator was
        // late, the server need not have sent them together.
        schedule.after_read(10_000, 1, Some(0), PACE);
        schedule.after_read(15_000, 0, Some(0), PACE);
        schedule.after_read(120_000, 5, Some(100_000), PACE);
        assert_eq!(schedule.group(), 1);
    }

    #[test]
    fn a_group_read_late_is_learned_again() {
        let mut schedule = ReadSchedule::new(0);
        read_server(&mut schedule, 3, 30);
        assert_eq!(schedule.group(), 3);
        // The newest chunk the read brought had been waiting for 50 ms.
        schedule.after_read(1_050_000, 3, Some(1_000_000), PACE);
        assert_eq!(schedule.group(), 1);
    }

    #[test]
    fn a_read_inside_a_message_moves_the_last_read_but_not_the_schedule() {
        let mut schedule = ReadSchedule::new(0);
        read_server(&mut schedule, 3, 30);
        schedule.read_part(700_000);
        assert_eq!(
            schedule.last_read_us(),
            700_000,
            "lag counts from the latest read"
        );
        assert_eq!(schedule.group(), 3);
    }

    #[test]
    fn a_late_server_is_polled_ever_less_often_up_to_four_polls() {
        let mut schedule = ReadSchedule::new(0);
        let mut at = schedule.after_read(0, 1, Some(0), PACE);
        assert_eq!(at, 21_000);
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let next = schedule.after_read(at, 0, Some(0), PACE);
            gaps.push(next - at);
            at = next;
        }
        assert_eq!(gaps, [4_000, 8_000, 16_000, 16_000, 16_000]);
    }
}
