//! The producer thread: reads the source, cuts fixed-duration chunks, and puts them into the
//! ring at the pace of real time.
//!
//! A clock-paced source (file, tone) is read a stage ahead ([`STAGE`]) and each chunk becomes
//! readable when it is due, reckoned from a monotonic start time and the count of frames
//! emitted, never by sleeping one chunk's duration, so the stream cannot drift from real time
//! however long it runs. A capture device blocks in `read` and sets the pace with its own clock;
//! its chunks carry the time their audio was captured, so latency measured from them is honest.
//! A pipe's writer sets the pace too, but is never let run faster than real time.
//!
//! A source that fails is reported down and retried with a backoff while listeners stay
//! connected; sequence numbers keep counting in real time meanwhile, so the time it was down
//! shows as a sequence gap. A source that ends (the end of a pipe) ends the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::audio::{self, Format};
use crate::clock::{Anchor, StreamClock};
use crate::error::Error;
use crate::protocol;
use crate::ring::Chunk;
use crate::session::MAX_CHUNKS_PER_WAKE;
use crate::source::{Pacing, Source};
use crate::stream::{SourceState, Stream};

/// How far behind real time a clock-paced source may fall (a suspended machine, a stopped
/// process) before it stops catching up chunk by chunk and starts again from now: as long as
/// the ring keeps a staged chunk that was not read on time.
const MAX_LAG: Duration = crate::ring::MAX_LATE;
/// How much of a clock-paced source (a file, `tone:`) is read per wake-up of the producer, ahead
/// of real time. Its chunks wait in the ring until they are due and readers take them then, so
/// the producer wakes five times a second instead of once per chunk or batch: on an idle or
/// lightly loaded machine its wake-ups were half the server's CPU (BENCHMARKS.md). A stage ahead
/// also rides out a producer held up for less than that without a gap.
pub const STAGE: Duration = Duration::from_millis(200);
/// The first pause after a source fails; it doubles on each failed attempt up to
/// [`RETRY_MAX`], so a device that is replugged comes back within a second or so, while one
/// that stays away costs a retry every few seconds.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How far ahead of real time a capture device may run before it is held back: one without a
/// clock (ALSA's `null` or `file` plugin). A clocked device runs ahead only to hand over what it
/// kept while the producer was held up, which does not count as ahead (see
/// [`DEVICE_MAX_BACKLOG`]).
const DEVICE_MAX_LEAD: Duration = Duration::from_secs(1);
/// How much of what a device kept while the producer was held up passes at once. A sound card
/// keeps its buffer's worth (500 ms here), a sound server's ALSA plugin (PulseAudio's,
/// PipeWire's) many seconds; more than this is more than a ring holds anyway.
const DEVICE_MAX_BACKLOG: Duration = Duration::from_secs(10);
/// A device may also run ahead by 1/this of the time since it started: real sound cards differ
/// from the system clock by a hundredth of that (100 ppm), so only an unclocked one is held.
const DEVICE_DRIFT_ALLOWANCE: u32 = 100;

/// Starts the producer.
pub fn spawn(
    mut source: Box<dyn Source>,
    stream: Arc<Stream>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    // Live before the port opens, not when the thread first runs: a listener that connected in
    // between would otherwise be told the source came back (`source` `live`) on its first wake.
    stream.set_state(SourceState::Live);
    thread::Builder::new()
        .name("producer".into())
        .spawn(move || run(source.as_mut(), &stream, &stop))
}

fn run(source: &mut dyn Source, stream: &Stream, stop: &AtomicBool) {
    let channels = usize::from(stream.format.channels);
    let mut samples = vec![0i16; stream.chunk_frames * channels];
    let mut outbox = Outbox::default();
    let clock = StreamClock::new(stream.format.sample_rate, stream.chunk_frames);
    let paced_by_clock = source.pacing() == Pacing::Clock;
    // A clock-paced source is read a stage at a time, ahead of real time ([`STAGE`]).
    let stage = stream.chunks_in(STAGE.as_millis() as u32).max(1);
    // The server decided (`--align clock` and a clock-paced source); a failed seek undoes it.
    let mut aligned = stream.aligned();
    // Where pacing starts: the next chunk boundary of the wall clock, aligned or not, so that
    // sequence numbers keep counting in real time across restarts.
    let mut anchor = Anchor::now();
    let mut seq = clock.next_seq_at(UNIX_EPOCH + anchor.since_epoch);
    stream.ring.expect_first(seq);
    if aligned {
        if let Err(e) = source.seek_to(clock.first_frame(seq)) {
            crate::log!(
                "cannot align {} to the clock ({e}); playing from its start",
                source.describe()
            );
            aligned = false;
            stream.stop_aligning();
        }
    }
    let mut start = Instant::now();
    let mut emitted: u64 = 0;
    let mut follow = Follow::new(source.pacing(), stream.format);
    let mut outage: Option<Outage> = None;
    let mut xruns = source.stats().xruns;
    // When the last chunk of a device or pipe ended, in its own capture times; `None` until
    // the first.
    let mut last_end: Option<SystemTime> = None;
    stream.set_source_stats(source.stats());
    while !stop.load(Ordering::Relaxed) {
        match fill(source, &mut samples) {
            Fill::Full => {}
            Fill::Ended(filled) => {
                // The last audio of a pipe is sent too, padded with silence to a whole chunk.
                if filled > 0 {
                    samples[filled..].fill(0);
                    outbox.cut(&mut seq, produced_now(source), &samples);
                }
                outbox.send(stream, source);
                crate::log!("source {} ended", source.describe());
                stream.set_state(SourceState::Ended("source ended".into()));
                return;
            }
            Fill::Failed(filled, err) => {
                // Audio captured before the failure is sent too.
                if filled > 0 {
                    samples[filled..].fill(0);
                    let produced = produced_now(source);
                    outbox.cut(&mut seq, produced, &samples);
                    if !paced_by_clock {
                        last_end = Some(produced);
                    }
                }
                outbox.send(stream, source);
                let outage = outage.get_or_insert_with(|| Outage::new(seq));
                outage.report(&err, source, stream);
                if !outage.wait_and_recover(source, stream, stop) {
                    return;
                }
                // Start again from now; the time down becomes a gap in sequence numbers. A
                // clock-paced source's numbers follow the clock; a device's or a pipe's count
                // its frames, so its gap is counted from its last chunk when the next is read.
                if paced_by_clock {
                    seq = resume_at(&clock, &mut anchor, Anchor::now(), seq);
                }
                if aligned {
                    if let Err(e) = source.seek_to(clock.first_frame(seq)) {
                        crate::log!("cannot realign {}: {e}", source.describe());
                    }
                }
                // After what was staged before the failure, which listeners are still to get.
                start = outbox
                    .staged_until
                    .map_or(Instant::now(), |t| t.max(Instant::now()));
                emitted = 0;
                follow.restart();
                continue;
            }
        }
        let now_xruns = source.stats().xruns;
        let overran = now_xruns != xruns;
        // A device or pipe that was down delivered its first chunk since.
        let came_back = outage.is_some() && !paced_by_clock;
        if overran || came_back {
            // The device overran while this chunk was read, or it (or a pipe) was away until
            // now: what it could not keep is lost. That time becomes a gap in sequence numbers,
            // from when the last chunk's audio ended to when this one's began, so listeners
            // measure the loss instead of hearing a jump in a stream that looks continuous.
            // Counted between the two, not from the system clock: sequence numbers count the
            // device's frames, and its clock drifts from the system's (a sound card's by its
            // crystal, a starved software clock or a slow writer by far more), so the system
            // clock would add all the drift since capture began to the loss, or hide a loss
            // shorter than a fast device's lead.
            xruns = now_xruns;
            let captured = source.captured_at().unwrap_or_else(SystemTime::now);
            let began = captured.checked_sub(stream.period()).unwrap_or(captured);
            let next = match last_end {
                Some(end) => seq + chunks_between(end, began, stream.period()),
                None => seq.max(clock.next_seq_at(began)),
            };
            if overran {
                log_overrun_gap(source, stream, seq, next);
            }
            seq = next;
            follow.restart();
        }
        if let Some(outage) = outage.take() {
            outage.end(source, stream, seq);
        }
        emitted += stream.chunk_frames as u64;
        if paced_by_clock {
            let due = if aligned {
                anchor.instant_at(clock.start_of(seq.wrapping_add(1)))
            } else {
                start + stream.format.duration_of(emitted)
            };
            // Read ahead: the chunk goes into the ring now and is read from the time it is
            // due, when real time reaches its last frame. It carries that time as its
            // production time (PROTOCOL.md), so latency figures are those of a chunk pushed
            // then.
            outbox.cut_due(&mut seq, due, &samples);
            if outbox.held.len() < stage {
                continue;
            }
            let first_due = outbox.first_due().unwrap_or(due);
            outbox.send(stream, source);
            // Sleep until the first chunk just staged is due: the rest of the stage is still
            // ahead when the next one is read.
            let now = Instant::now();
            if first_due > now {
                thread::sleep(first_due - now);
            }
            // Looked at after the sleep: a producer stopped while it slept (a frozen thread, a
            // stopped process, a suspended machine) wakes up with the clock long past what it
            // staged.
            let now = Instant::now();
            let behind = now.saturating_duration_since(first_due);
            if behind > MAX_LAG {
                crate::log!(
                    "producer fell {} ms behind real time; continuing from now",
                    behind.as_millis()
                );
                Stream::count(&stream.counters.producer_resyncs, 1);
                // Jump to where the clock says the stream is: the time nothing was staged for
                // shows as a sequence gap of exactly its length, and sequence numbers keep
                // counting in real time.
                seq = resume_at(&clock, &mut anchor, Anchor::now(), seq);
                start = now;
                emitted = 0;
                if aligned {
                    if let Err(e) = source.seek_to(clock.first_frame(seq)) {
                        crate::log!("cannot realign {}: {e}", source.describe());
                    }
                }
            }
            continue;
        }
        follow.wait_turn(stream, source);
        let produced = produced_now(source);
        outbox.cut(&mut seq, produced, &samples);
        last_end = Some(produced);
        outbox.send(stream, source);
    }
}

/// Chunks cut but not yet in the ring, each with the time it may be read (`None`: at once),
/// and the buffers of chunks the ring dropped, reused for the next ones so that a steady stream
/// allocates nothing.
#[derive(Default)]
struct Outbox {
    held: Vec<(Chunk, Option<Instant>)>,
    spares: Vec<Vec<u8>>,
    /// When the last chunk put into the ring is due.
    staged_until: Option<Instant>,
}

impl Outbox {
    /// Encodes `samples` as chunk `seq`, produced at `produced`, readable at once, and moves
    /// `seq` on.
    fn cut(&mut self, seq: &mut u64, produced: SystemTime, samples: &[i16]) {
        self.cut_at(seq, produced, None, samples);
    }

    /// Encodes `samples` as chunk `seq`, due at `due`: readable from then, and stamped with
    /// what the wall clock reads then. Read afresh, not from the stream's anchor, so that the
    /// stamps follow the wall clock when it is stepped (a Pi without a real-time clock that
    /// started earshot before its clock was set).
    fn cut_due(&mut self, seq: &mut u64, due: Instant, samples: &[i16]) {
        self.cut_at(seq, Anchor::now().wall_at(due), Some(due), samples);
    }

    fn cut_at(&mut self, seq: &mut u64, produced: SystemTime, due: Option<Instant>, s: &[i16]) {
        let buf = self.spares.pop().unwrap_or_default();
        let produced_us = audio::unix_micros(produced);
        let chunk = protocol::encode_chunk_into(buf, *seq, produced_us, s);
        self.held.push((chunk, due));
        *seq = seq.wrapping_add(1);
    }

    /// When the first held chunk is due, if it waits for a time.
    fn first_due(&self) -> Option<Instant> {
        self.held.first().and_then(|(_, due)| *due)
    }

    /// Puts every held chunk into the ring at once, each readable from its time.
    fn send(&mut self, stream: &Stream, source: &dyn Source) {
        if self.held.is_empty() {
            return;
        }
        let count = self.held.len() as u64;
        // As many spare buffers as a stage's worth of dropped chunks.
        let keep = self.held.len().max(MAX_CHUNKS_PER_WAKE);
        let now = Instant::now();
        self.staged_until = self.held.last().map(|(_, due)| due.unwrap_or(now));
        let spares = &mut self.spares;
        let held = self.held.drain(..).map(|(c, due)| (c, due.unwrap_or(now)));
        stream.ring.stage(held, |dropped| {
            if spares.len() < keep {
                spares.push(protocol::recycle(dropped));
            }
        });
        Stream::count(&stream.counters.chunks_produced, count);
        stream.set_source_stats(source.stats());
    }
}

/// Says which chunks an overrun cost, `first` up to `next` (not included), so a gap a listener
/// reports can be matched to its cause in the log.
fn log_overrun_gap(source: &dyn Source, stream: &Stream, first: u64, next: u64) {
    match lost_chunks(stream.period(), first, next) {
        Some(lost) => crate::log!(
            "{}: the overrun cost {lost}, skipped in sequence numbers",
            source.describe()
        ),
        None => crate::log!(
            "{}: the overrun cost less than a chunk; no sequence number skipped",
            source.describe()
        ),
    }
}

/// Chunks `first` up to `next` (not included) as the log names them, "chunks A to B (N ms)";
/// `None` when there are none.
fn lost_chunks(period: Duration, first: u64, next: u64) -> Option<String> {
    let lost = next.checked_sub(first).filter(|&n| n > 0)?;
    Some(format!(
        "chunks {first} to {} ({} ms)",
        next - 1,
        period.as_micros() * u128::from(lost) / 1000
    ))
}

/// Where a clock-paced stream goes on after the producer stopped (held up past [`MAX_LAG`], or
/// its source down): the chunk the wall clock says at `now`, re-anchored there, unless the wall
/// clock is behind where `anchor` puts the stream in monotonic time. That happens when it was
/// set back while earshot ran (a saved time ahead of the network's, on a Pi without a real-time
/// clock), and the numbers cannot go back: re-anchored, the next chunk would be due only when
/// the wall clock came back to it, an hour later for an hour's step. Then `anchor` stays and
/// the numbers count on in monotonic time. A wall clock ahead of it (set forward) is followed,
/// its step counted as time the stream skipped.
fn resume_at(clock: &StreamClock, anchor: &mut Anchor, now: Anchor, seq: u64) -> u64 {
    let by_wall = clock.next_seq_at(UNIX_EPOCH + now.since_epoch);
    let by_monotonic = clock.next_seq_at(anchor.wall_at(now.instant));
    if by_wall >= by_monotonic {
        *anchor = now;
        seq.max(by_wall)
    } else {
        seq.max(by_monotonic)
    }
}

/// Whole chunks of `period` from `from` to `to`, to the nearest (none when `to` is earlier).
fn chunks_between(from: SystemTime, to: SystemTime, period: Duration) -> u64 {
    let gap = to.duration_since(from).unwrap_or_default().as_micros();
    let period = period.as_micros().max(1);
    ((gap + period / 2) / period) as u64
}

/// When a chunk produced now was produced: a capture device says when its audio was captured.
fn produced_now(source: &dyn Source) -> SystemTime {
    source.captured_at().unwrap_or_else(SystemTime::now)
}

/// How filling one chunk went.
enum Fill {
    Full,
    /// The source ended after this many samples.
    Ended(usize),
    /// The source failed after this many samples.
    Failed(usize, Error),
}

fn fill(source: &mut dyn Source, samples: &mut [i16]) -> Fill {
    let mut filled = 0;
    while filled < samples.len() {
        match source.read(&mut samples[filled..]) {
            Ok(0) => return Fill::Ended(filled),
            Ok(n) => filled += n,
            Err(e) => return Fill::Failed(filled, e),
        }
    }
    Fill::Full
}

/// Pacing for a source that sets its own pace (a device, a pipe): follow it, but hold it back
/// when it runs ahead of real time.
struct Follow {
    /// How far ahead of real time the source may run: a pipe not at all (its writer is a
    /// decoder as often as a live recorder), a device as far as [`DEVICE_MAX_LEAD`] allows.
    max_lead: Duration,
    /// How far behind real time the source may stay and still catch up at once: a device by its
    /// backlog ([`DEVICE_MAX_BACKLOG`]), a pipe not at all.
    max_backlog: Duration,
    format: Format,
    /// The time frame zero (since the last restart) belongs to; `None` until the source
    /// delivers its first chunk.
    start: Option<Instant>,
    emitted: u64,
    /// Whether the source has been held back already (logged once).
    held_back: bool,
}

impl Follow {
    fn new(pacing: Pacing, format: Format) -> Follow {
        Follow {
            max_lead: match pacing {
                Pacing::Device => DEVICE_MAX_LEAD,
                Pacing::Pipe | Pacing::Clock => Duration::ZERO,
            },
            max_backlog: match pacing {
                Pacing::Device => DEVICE_MAX_BACKLOG,
                Pacing::Pipe | Pacing::Clock => Duration::ZERO,
            },
            format,
            start: None,
            emitted: 0,
            held_back: false,
        }
    }

    /// Starts counting again, after the source was down.
    fn restart(&mut self) {
        self.start = None;
        self.emitted = 0;
    }

    /// Sleeps, if the source is ahead of real time, until the chunk just read may be pushed.
    fn wait_turn(&mut self, stream: &Stream, source: &dyn Source) {
        let Some(hold) = self.hold(Instant::now(), stream.chunk_frames as u64) else {
            return;
        };
        if !self.max_lead.is_zero() && !self.held_back {
            self.held_back = true;
            crate::log!(
                "source {} delivers audio faster than real time (a device without a clock, such \
                 as ALSA's file or null plugin?); holding it to the system clock",
                source.describe()
            );
        }
        thread::sleep(hold);
    }

    /// How long to hold a chunk of `frames` read at `now`, if the source is ahead of real time
    /// by more than it may be.
    fn hold(&mut self, now: Instant, frames: u64) -> Option<Duration> {
        // The first chunk goes out at once: its audio is already late.
        let start = *self
            .start
            .get_or_insert_with(|| earlier(now, self.format.duration_of(frames)));
        self.emitted += frames;
        let due = start + self.format.duration_of(self.emitted);
        let lead = if self.max_lead.is_zero() {
            Duration::ZERO
        } else {
            self.max_lead + (now - start) / DEVICE_DRIFT_ALLOWANCE
        };
        if due > now + lead {
            return Some(due - lead - now);
        }
        let floor = earlier(now, self.max_backlog);
        if due < floor {
            // Behind real time by more than a backlog: the source is slower than the clock, or
            // was away. It sets the pace, so follow it from here instead of letting a later burst
            // run ahead. Up to a backlog behind, a device has kept what it captured while this
            // thread was held up, and hands it over at once: that catches up, it does not run
            // ahead, so it is neither held back nor taken for a device without a clock.
            self.start = Some(earlier(floor, self.format.duration_of(self.emitted)));
        }
        None
    }
}

fn earlier(t: Instant, by: Duration) -> Instant {
    t.checked_sub(by).unwrap_or(t)
}

/// A source that failed and has not delivered a whole chunk since.
struct Outage {
    since: Instant,
    /// The first sequence number not produced because of it.
    first_lost: u64,
    delay: Duration,
    attempts: u32,
    reason: String,
}

impl Outage {
    fn new(first_lost: u64) -> Outage {
        Outage {
            since: Instant::now(),
            first_lost,
            delay: RETRY_FIRST,
            attempts: 0,
            reason: String::new(),
        }
    }

    /// Logs a failure unless it repeats the last one, and tells listeners the source is down.
    fn report(&mut self, err: &Error, source: &dyn Source, stream: &Stream) {
        let reason = err.to_string();
        if reason == self.reason {
            return;
        }
        if self.reason.is_empty() {
            crate::log!(
                "source {} is down: {reason}; retrying in {} ms, backing off to {} s",
                source.describe(),
                RETRY_FIRST.as_millis(),
                RETRY_MAX.as_secs()
            );
        } else {
            crate::log!("source {} is still down: {reason}", source.describe());
        }
        stream.set_state(SourceState::Down(reason.clone()));
        self.reason = reason;
    }

    /// Waits out the backoff and asks the source to recover, until it does; `false` when the
    /// producer is told to stop meanwhile.
    fn wait_and_recover(
        &mut self,
        source: &mut dyn Source,
        stream: &Stream,
        stop: &AtomicBool,
    ) -> bool {
        loop {
            if !sleep_unless_stopped(self.delay, stop) {
                return false;
            }
            self.delay = next_retry_delay(self.delay);
            self.attempts += 1;
            match source.recover() {
                Ok(()) => return true,
                Err(e) => self.report(&e, source, stream),
            }
        }
    }

    /// Says the source is back, and which chunks its time down cost: up to `next`, the first
    /// it produces again.
    fn end(self, source: &dyn Source, stream: &Stream, next: u64) {
        let cost = lost_chunks(stream.period(), self.first_lost, next)
            .map(|lost| format!("; it cost {lost}, skipped in sequence numbers"))
            .unwrap_or_default();
        crate::log!(
            "source {} is live again after {:.1} s down ({} retries){cost}",
            source.describe(),
            self.since.elapsed().as_secs_f64(),
            self.attempts
        );
        Stream::count(&stream.counters.source_reconnects, 1);
        stream.set_state(SourceState::Live);
    }
}

/// The pause after `delay` when the source is still down: twice as long, at most [`RETRY_MAX`].
fn next_retry_delay(delay: Duration) -> Duration {
    (delay * 2).min(RETRY_MAX)
}

/// Sleeps for `d` in short steps; `false` if `stop` was set meanwhile.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CD: Format = Format {
        sample_rate: 48_000,
        channels: 2,
    };
    const CHUNK: u64 = 960;
    const CHUNK_TIME: Duration = Duration::from_millis(20);

    #[test]
    fn an_overrun_gap_is_counted_in_whole_chunks_to_the_nearest_and_never_backwards() {
        let end = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let after = |ms| end + Duration::from_millis(ms);
        assert_eq!(chunks_between(end, after(0), CHUNK_TIME), 0);
        assert_eq!(chunks_between(end, after(9), CHUNK_TIME), 0);
        assert_eq!(chunks_between(end, after(11), CHUNK_TIME), 1);
        assert_eq!(chunks_between(end, after(1_500), CHUNK_TIME), 75);
        assert_eq!(chunks_between(after(40), end, CHUNK_TIME), 0);
    }

    #[test]
    fn a_stream_resumes_where_the_wall_clock_is_unless_it_was_set_back_behind_the_stream() {
        let clock = StreamClock::new(44_100, 882);
        let start = Anchor::now();
        let seq = clock.next_seq_at(UNIX_EPOCH + start.since_epoch);
        let later = start.instant + Duration::from_secs(5);
        let by_monotonic = clock.next_seq_at(start.wall_at(later));
        let at = |wall_offset_s: i64| Anchor {
            instant: later,
            since_epoch: if wall_offset_s >= 0 {
                start.since_epoch + Duration::from_secs(5 + wall_offset_s as u64)
            } else {
                start.since_epoch + Duration::from_secs(5)
                    - Duration::from_secs(wall_offset_s.unsigned_abs())
            },
        };

        // Clocks that agree: 5 s on, re-anchored.
        let mut anchor = start;
        assert_eq!(resume_at(&clock, &mut anchor, at(0), seq), by_monotonic);
        assert_eq!(anchor.instant, later);

        // Set forward an hour: followed, an hour of chunks further.
        let mut anchor = start;
        let ahead = resume_at(&clock, &mut anchor, at(3600), seq);
        assert_eq!(ahead, by_monotonic + 3600 * 50);
        assert_eq!(anchor.instant, later);

        // Set back an hour: the numbers count on in monotonic time, from the same anchor, so the
        // next chunk is due now and not in an hour.
        let mut anchor = start;
        let back = resume_at(&clock, &mut anchor, at(-3600), seq);
        assert_eq!(back, by_monotonic);
        assert_eq!(anchor.instant, start.instant);
        let due = anchor.instant_at(clock.start_of(back + 1));
        assert!(
            due <= later + Duration::from_millis(40),
            "due {:?} after now",
            due - later
        );
    }

    #[test]
    fn a_loss_is_logged_as_the_chunks_it_skipped_first_to_last_and_no_loss_as_none() {
        assert_eq!(
            lost_chunks(CHUNK_TIME, 1200, 1225).as_deref(),
            Some("chunks 1200 to 1224 (500 ms)")
        );
        assert_eq!(
            lost_chunks(CHUNK_TIME, 7, 8).as_deref(),
            Some("chunks 7 to 7 (20 ms)")
        );
        assert_eq!(lost_chunks(CHUNK_TIME, 7, 7), None);
        assert_eq!(lost_chunks(CHUNK_TIME, 8, 7), None);
    }

    /// A clock-paced source of silence that cannot be positioned, as a file that vanished
    /// between opening and the first seek would be.
    struct Unseekable;

    impl Source for Unseekable {
        fn format(&self) -> Format {
            CD
        }
        fn read(&mut self, out: &mut [i16]) -> crate::error::Result<usize> {
            out.fill(0);
            Ok(out.len())
        }
        fn describe(&self) -> String {
            "unseekable:".into()
        }
        fn seek_to(&mut self, _frame: u64) -> crate::error::Result<()> {
            Err(Error::source("unseekable:", "gone"))
        }
    }

    #[test]
    fn a_source_that_cannot_seek_plays_from_its_start_and_says_it_is_not_aligned() {
        let stream = Arc::new(Stream::new(
            "main",
            "unseekable:".into(),
            CD,
            20,
            1000,
            true,
        ));
        assert!(stream.aligned());
        let stop = Arc::new(AtomicBool::new(false));
        let producer = spawn(Box::new(Unseekable), stream.clone(), stop.clone()).unwrap();
        let produced = stream
            .ring
            .wait_first(Instant::now() + Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        producer.join().unwrap();
        assert!(produced, "audio flows anyway");
        assert!(
            !stream.aligned(),
            "hello and /api/status must not claim clock alignment"
        );
    }

    #[test]
    fn a_clock_paced_source_is_read_a_stage_ahead_and_each_chunk_is_readable_when_due() {
        let stream = Arc::new(Stream::new("main", "silence:".into(), CD, 20, 1000, false));
        let stop = Arc::new(AtomicBool::new(false));
        let producer = spawn(Box::new(Unseekable), stream.clone(), stop.clone()).unwrap();
        assert!(
            stream
                .ring
                .wait_first(Instant::now() + Duration::from_secs(2))
        );
        let stage = stream.chunks_in(STAGE.as_millis() as u32) as u64;
        let first = stream.ring.burst_start(1000).unwrap();
        let mut most_ahead = 0;
        let mut newest = Vec::new();
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            let mut chunks = Vec::new();
            // Every chunk due by `before_us` must be readable; none due after `now_us` may be.
            // Read on each side of `read_from`, so a test thread held up in between fails
            // neither.
            let before_us = audio::unix_micros(SystemTime::now());
            stream.ring.read_from(first, 1000, &mut chunks);
            let now_us = audio::unix_micros(SystemTime::now());
            let last = chunks.last().unwrap();
            assert!(
                last.produced_us <= now_us + 1000,
                "chunk {} readable {} µs before it is due",
                last.seq,
                last.produced_us - now_us
            );
            // Saturating: the newest may have become due after `before_us`.
            let since_due = before_us.saturating_sub(last.produced_us);
            assert!(
                since_due <= 25_000,
                "chunk {} was due {since_due} µs ago and is still the newest readable",
                last.seq
            );
            let produced = stream.counters.chunks_produced.load(Ordering::Relaxed);
            most_ahead = most_ahead.max(produced - chunks.len() as u64);
            if newest.last() != Some(&last.seq) {
                newest.push(last.seq);
            }
            thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        producer.join().unwrap();
        assert!(
            most_ahead >= stage,
            "the producer was at most {most_ahead} chunks ahead of the readers, not a stage"
        );
        assert!(
            newest.windows(2).all(|w| w[1] == w[0] + 1),
            "chunks became readable one at a time, as each was due: {newest:?}"
        );
        assert!(newest.len() >= 25, "{} chunks in 600 ms", newest.len());
    }

    #[test]
    fn retries_back_off_from_a_quarter_second_to_five_seconds() {
        let mut delay = RETRY_FIRST;
        let mut seen = vec![delay];
        for _ in 0..6 {
            delay = next_retry_delay(delay);
            seen.push(delay);
        }
        let ms: Vec<u128> = seen.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000]);
    }

    #[test]
    fn a_pipe_writer_faster_than_real_time_is_held_to_it() {
        let mut follow = Follow::new(Pacing::Pipe, CD);
        let t = Instant::now();
        assert_eq!(follow.hold(t, CHUNK), None, "the first chunk goes at once");
        assert_eq!(follow.hold(t, CHUNK), Some(CHUNK_TIME));
        assert_eq!(follow.hold(t + CHUNK_TIME, CHUNK), Some(CHUNK_TIME));
    }

    #[test]
    fn a_slow_source_is_followed_without_a_catch_up_burst() {
        let mut follow = Follow::new(Pacing::Pipe, CD);
        let t = Instant::now();
        assert_eq!(follow.hold(t, CHUNK), None);
        // The writer pauses for a second, then delivers a burst: it goes out at real time again,
        // not as fast as it can to make up for the pause.
        let later = t + Duration::from_secs(1);
        assert_eq!(follow.hold(later, CHUNK), None);
        assert_eq!(follow.hold(later, CHUNK), Some(CHUNK_TIME));
    }

    #[test]
    fn a_device_may_run_ahead_to_drain_its_buffer_but_not_without_a_clock() {
        let mut follow = Follow::new(Pacing::Device, CD);
        let t = Instant::now();
        // A chunk and a second more at once (a device catching up its buffer) pass unheld...
        for _ in 0..51 {
            assert_eq!(follow.hold(t, CHUNK), None);
        }
        // ...more than that is held back to real time.
        assert!(follow.hold(t, CHUNK).is_some());
        // A device 0.5 % fast, fifty times a real sound card's error, is never held.
        let mut follow = Follow::new(Pacing::Device, CD);
        for i in 0..30_000u32 {
            let now = t + CHUNK_TIME * i * 1000 / 1005;
            assert_eq!(follow.hold(now, CHUNK), None, "chunk {i}");
        }
    }

    #[test]
    fn a_device_hands_over_at_once_what_it_kept_while_the_producer_was_held_up() {
        let mut follow = Follow::new(Pacing::Device, CD);
        let t = Instant::now();
        assert_eq!(follow.hold(t, CHUNK), None);
        // The producer could not read for 3 s; the device kept what it captured meanwhile (a
        // sound server's ALSA plugin keeps seconds) and hands it over at once: none of it waits.
        let later = t + Duration::from_secs(3);
        for i in 0..149 {
            assert_eq!(follow.hold(later, CHUNK), None, "backlog chunk {i}");
        }
        // Caught up, it may run ahead by the lead of a device, a second and then some, and is
        // held back past that, as one without a clock.
        let ahead = (0..100)
            .take_while(|_| follow.hold(later, CHUNK).is_none())
            .count();
        assert!((50..=53).contains(&ahead), "{ahead} chunks ahead");
    }

    #[test]
    fn a_device_away_for_longer_than_a_backlog_is_followed_from_where_it_is() {
        let mut follow = Follow::new(Pacing::Device, CD);
        let t = Instant::now();
        assert_eq!(follow.hold(t, CHUNK), None);
        // 60 s without a chunk is no backlog a device keeps: only the last 10 s of catching up
        // pass at once, then the lead, and the rest is held to real time.
        let later = t + Duration::from_secs(60);
        let at_once = (0..2000)
            .take_while(|_| follow.hold(later, CHUNK).is_none())
            .count();
        let expected = 50 * (10 + 1) + 6; // a backlog, a lead, and 1 % of the minute
        assert!(at_once.abs_diff(expected) <= 3, "{at_once} chunks at once");
    }
}
