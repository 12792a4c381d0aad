//! The listener's audio timeline: which received chunk goes where, and how much silence stands
//! in for audio that never came, so that a recording's timeline matches the stream's.
//!
//! On one connection, sequence numbers decide: a jump is a gap (or the skip the server
//! announced), an old number is a duplicate. Across a reconnect they decide only when they agree
//! with the clock: a restarted server counts from zero again, while another instance of the same
//! stream (or the same server after a network blip) continues the count. When they disagree, the
//! production times, each corrected by its own connection's clock offset, measure the hole.

/// Sequence and clock must agree this closely (µs) for a reconnect to be spliced by sequence.
const SPLICE_TOLERANCE_US: f64 = 250_000.0;

/// How a reconnect's hole was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceBy {
    Sequence,
    Clock,
}

impl SpliceBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SpliceBy::Sequence => "sequence",
            SpliceBy::Clock => "clock",
        }
    }
}

/// What to do with a chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Placement {
    /// Append it, after `silence_frames` of silence for what is missing before it.
    Append {
        silence_frames: u64,
        hole: Option<Hole>,
    },
    /// Audio the timeline already has (a duplicate, or the overlap of a reconnect's burst).
    Drop,
}

/// Why there is silence before a chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hole {
    /// Sequence numbers `from..to` never arrived on this connection.
    Gap { from: u64, to: u64 },
    /// The server announced it skipped `from..to` for this listener.
    Skipped { from: u64, to: u64 },
    /// The first chunk after a reconnect; `lost_us` may be 0 (nothing lost) or negative
    /// (overlap, the first chunks were dropped until the timeline was reached).
    Reconnect { lost_us: i64, by: SpliceBy },
}

#[derive(Debug, Clone)]
pub struct Timeline {
    chunk_frames: u64,
    sample_rate: u32,
    chunk_us: f64,
    next_seq: Option<u64>,
    /// Local time at which the audio appended so far ends (last chunk's production + one chunk).
    end_local_us: Option<f64>,
    /// Set by a reconnect until its first chunk is placed.
    splicing: bool,
    /// The last skip the server announced, until the chunk after it arrives.
    announced_skip: Option<(u64, u64)>,
    /// Overlap dropped so far while splicing by clock (µs).
    dropped_overlap_us: f64,
    /// How closely sequence and clock must agree for this splice (µs).
    splice_tolerance_us: f64,
}

impl Timeline {
    pub fn new(chunk_frames: usize, sample_rate: u32) -> Timeline {
        Timeline {
            chunk_frames: chunk_frames as u64,
            sample_rate,
            chunk_us: chunk_frames as f64 * 1e6 / f64::from(sample_rate),
            next_seq: None,
            end_local_us: None,
            splicing: false,
            announced_skip: None,
            dropped_overlap_us: 0.0,
            splice_tolerance_us: SPLICE_TOLERANCE_US,
        }
    }

    /// A new connection begins; its first chunk will be spliced onto what came before.
    /// `offset_error_us` bounds the error of the new connection's clock offset (half its
    /// round trip so far): a hello that took long to come (a server that was frozen while it
    /// accepted the connection) says little about the clock, and must not outvote sequence
    /// numbers that do agree.
    pub fn reconnected(&mut self, offset_error_us: f64) {
        self.splice_tolerance_us = SPLICE_TOLERANCE_US + offset_error_us.max(0.0);
        self.splicing = self.next_seq.is_some();
        self.announced_skip = None;
        self.dropped_overlap_us = 0.0;
    }

    /// The server said it dropped `from..to` for this listener.
    pub fn skipped(&mut self, from: u64, to: u64) {
        self.announced_skip = Some((from, to));
    }

    /// Places a chunk with sequence `seq` produced at `produced_local_us` (client clock).
    pub fn place(&mut self, seq: u64, produced_local_us: f64) -> Placement {
        let (Some(next), Some(end)) = (self.next_seq, self.end_local_us) else {
            return self.append(seq, produced_local_us, 0, None);
        };
        let seq_gap = seq.wrapping_sub(next) as i64;
        if self.splicing {
            let time_gap_us = produced_local_us - end;
            let agrees =
                (seq_gap as f64 * self.chunk_us - time_gap_us).abs() <= self.splice_tolerance_us;
            if agrees {
                if seq_gap < 0 {
                    return Placement::Drop;
                }
                let lost_us = (seq_gap as f64 * self.chunk_us).round() as i64;
                let hole = Hole::Reconnect {
                    lost_us,
                    by: SpliceBy::Sequence,
                };
                return self.append(
                    seq,
                    produced_local_us,
                    seq_gap as u64 * self.chunk_frames,
                    Some(hole),
                );
            }
            // By clock: drop whole chunks that end before the timeline does (with half a chunk
            // of tolerance for the two offsets' error), fill a hole with its exact length.
            if time_gap_us < -self.chunk_us / 2.0 {
                self.dropped_overlap_us += self.chunk_us;
                return Placement::Drop;
            }
            let lost_us = if self.dropped_overlap_us > 0.0 {
                -self.dropped_overlap_us.round() as i64
            } else {
                time_gap_us.max(0.0).round() as i64
            };
            let silence = (time_gap_us.max(0.0) * f64::from(self.sample_rate) / 1e6).round() as u64;
            let hole = Hole::Reconnect {
                lost_us,
                by: SpliceBy::Clock,
            };
            return self.append(seq, produced_local_us, silence, Some(hole));
        }
        if seq_gap < 0 {
            return Placement::Drop;
        }
        if seq_gap == 0 {
            return self.append(seq, produced_local_us, 0, None);
        }
        let hole = match self.announced_skip.take() {
            Some((from, to)) if to == seq => Hole::Skipped { from, to },
            _ => Hole::Gap {
                from: next,
                to: seq,
            },
        };
        // A jump the clock does not confirm (a server that skipped its count ahead) is filled
        // with the time that really passed, not with hours of silence.
        let time_gap_us = produced_local_us - end;
        let silence = if (seq_gap as f64 * self.chunk_us - time_gap_us).abs() <= SPLICE_TOLERANCE_US
        {
            seq_gap as u64 * self.chunk_frames
        } else {
            (time_gap_us.max(0.0) * f64::from(self.sample_rate) / 1e6).round() as u64
        };
        self.append(seq, produced_local_us, silence, Some(hole))
    }

    fn append(
        &mut self,
        seq: u64,
        produced_local_us: f64,
        silence_frames: u64,
        hole: Option<Hole>,
    ) -> Placement {
        self.next_seq = Some(seq.wrapping_add(1));
        self.end_local_us = Some(produced_local_us + self.chunk_us);
        self.splicing = false;
        if matches!(hole, Some(Hole::Skipped { .. } | Hole::Gap { .. })) {
            self.announced_skip = None;
        }
        Placement::Append {
            silence_frames,
            hole,
        }
    }

    /// The sequence number the timeline continues with, once a chunk has been placed.
    pub fn next_seq(&self) -> Option<u64> {
        self.next_seq
    }

    /// Milliseconds of audio in `chunks` chunks.
    pub fn ms_of(&self, chunks: u64) -> f64 {
        chunks as f64 * self.chunk_us / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK_US: f64 = 20_000.0;

    fn timeline() -> Timeline {
        Timeline::new(882, 44_100)
    }

    fn at(seq: u64) -> f64 {
        1e12 + seq as f64 * CHUNK_US
    }

    #[test]
    fn contiguous_chunks_append_and_duplicates_drop() {
        let mut t = timeline();
        for seq in 10..20 {
            assert_eq!(
                t.place(seq, at(seq)),
                Placement::Append {
                    silence_frames: 0,
                    hole: None
                }
            );
        }
        assert_eq!(t.place(15, at(15)), Placement::Drop);
    }

    #[test]
    fn a_sequence_jump_is_a_gap_and_an_announced_one_a_skip() {
        let mut t = timeline();
        t.place(1, at(1));
        assert_eq!(
            t.place(4, at(4)),
            Placement::Append {
                silence_frames: 2 * 882,
                hole: Some(Hole::Gap { from: 2, to: 4 })
            }
        );
        t.skipped(5, 9);
        assert_eq!(
            t.place(9, at(9)),
            Placement::Append {
                silence_frames: 4 * 882,
                hole: Some(Hole::Skipped { from: 5, to: 9 })
            }
        );
    }

    #[test]
    fn a_sequence_jump_the_clock_does_not_confirm_is_filled_with_the_time_that_passed() {
        let mut t = timeline();
        t.place(1, at(1));
        // The count jumps by a million chunks while only one chunk's time passed.
        assert_eq!(
            t.place(1_000_002, at(2) + CHUNK_US),
            Placement::Append {
                silence_frames: 882,
                hole: Some(Hole::Gap {
                    from: 2,
                    to: 1_000_002
                })
            }
        );
    }

    #[test]
    fn a_reconnect_to_the_same_count_splices_by_sequence_and_drops_the_overlap() {
        let mut t = timeline();
        for seq in 0..50 {
            t.place(seq, at(seq));
        }
        t.reconnected(0.0);
        // The new connection's burst starts 5 chunks back: those are dropped ...
        assert_eq!(t.place(45, at(45) + 300.0), Placement::Drop);
        // ... until the first new chunk, which continues with nothing lost.
        for seq in 46..50 {
            assert_eq!(t.place(seq, at(seq)), Placement::Drop);
        }
        assert_eq!(
            t.place(50, at(50)),
            Placement::Append {
                silence_frames: 0,
                hole: Some(Hole::Reconnect {
                    lost_us: 0,
                    by: SpliceBy::Sequence
                })
            }
        );
    }

    #[test]
    fn a_restarted_server_counting_from_zero_is_spliced_by_clock() {
        let mut t = timeline();
        for seq in 100..200 {
            t.place(seq, at(seq));
        }
        t.reconnected(0.0);
        // 1.5 s after the old stream's end, a new server starts at seq 0.
        let end = at(199) + CHUNK_US;
        match t.place(0, end + 1_500_000.0) {
            Placement::Append {
                silence_frames,
                hole: Some(Hole::Reconnect { lost_us, by }),
            } => {
                assert_eq!(by, SpliceBy::Clock);
                assert_eq!(lost_us, 1_500_000);
                assert_eq!(silence_frames, 66_150);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            t.place(1, end + 1_520_000.0),
            Placement::Append {
                silence_frames: 0,
                hole: None
            }
        );
    }

    #[test]
    fn a_slow_hello_widens_the_tolerance_so_sequence_still_decides() {
        let mut t = timeline();
        for seq in 0..50 {
            t.place(seq, at(seq));
        }
        // The new connection's offset may be 550 ms off (a 1.1 s round trip): the chunks look
        // 550 ms late, yet their sequence numbers continue the count.
        t.reconnected(550_000.0);
        assert_eq!(t.place(45, at(45) + 550_000.0), Placement::Drop);
        assert_eq!(
            t.place(125, at(125) + 550_000.0),
            Placement::Append {
                silence_frames: 75 * 882,
                hole: Some(Hole::Reconnect {
                    lost_us: 1_500_000,
                    by: SpliceBy::Sequence
                })
            }
        );
    }

    #[test]
    fn a_reconnect_that_skipped_ahead_by_sequence_fills_the_missing_chunks() {
        let mut t = timeline();
        t.place(10, at(10));
        t.reconnected(0.0);
        match t.place(60, at(60)) {
            Placement::Append {
                silence_frames,
                hole: Some(Hole::Reconnect { lost_us, by }),
            } => {
                assert_eq!(
                    (silence_frames, lost_us, by),
                    (49 * 882, 980_000, SpliceBy::Sequence)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
