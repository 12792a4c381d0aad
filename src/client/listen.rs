//! `earshot listen URL`: one listener that measures what it hears, records it, and survives
//! server restarts.
//!
//! The loop owns the connection's life: connect, take events, and on a lost connection either
//! end (the stream is lost) or reconnect and measure the interruption. What a chunk means for the
//! recording is the [`Timeline`]'s business, what it means for the numbers is [`stats`]'s, and
//! how anything is printed is [`Console`]'s.
//!
//! [`stats`]: crate::client::stats

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::audio::Format;
use crate::auth::Secret;
use crate::client::clock;
use crate::client::config::{ListenConfig, ListenCredentials};
use crate::client::connection::{AudioChunk, Closed, Connection, Event, Hello};
use crate::client::console::{self, Console, Latency, Second, Summary, Totals};
use crate::client::interruptions::InterruptionLog;
#[cfg(feature = "alsa")]
use crate::client::play::Player;
use crate::client::report::{Report, Served};
use crate::client::stats::{Histogram, Jitter, ms};
use crate::client::timeline::{Hole, Placement, Timeline};
use crate::client::wavout::WavOut;
use crate::error::{Error, Result};
use crate::protocol::ServerMessage;
use crate::wsclient::Credentials;

/// Exit code: the stream played without a gap, a skip or an interruption.
pub const EXIT_CONTINUOUS: i32 = 0;
/// Exit code: audio was missing (gaps, skips or interruptions), but the stream was playing at
/// the end.
pub const EXIT_RECOVERED: i32 = 3;
/// Exit code: the stream was lost: no connection at the end (or ever), or it ended early.
pub const EXIT_LOST: i32 = 4;

const REPORT_EVERY: Duration = Duration::from_secs(1);
/// First and longest wait between reconnect attempts.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_millis(500);
/// With `--duration`, how long past it the listener waits for audio that is late.
const DURATION_GRACE: Duration = Duration::from_secs(2);
/// After `goaway`, the wait between attempts to open the successor (a balancer may still send
/// one attempt to the draining instance, which refuses it with 503).
const MOVE_RETRY: Duration = Duration::from_millis(100);
/// How long the old connection may keep feeding the timeline until it reaches the successor's
/// first chunk; past it the successor takes over anyway and the splice measures the hole.
const MOVE_CATCH_UP: Duration = Duration::from_secs(1);

/// A move the server asked for with `goaway`: make before break.
struct Move {
    cause: String,
    /// The new connection, open and unread until it takes over.
    successor: Option<(Connection, Instant)>,
    next_attempt: Instant,
    /// The old connection closes then; no use opening a successor after it.
    give_up: Instant,
    failures: u64,
}

/// Runs the listener until `--duration`, SIGINT/SIGTERM, or the stream is lost; returns the
/// exit code ([`EXIT_CONTINUOUS`], [`EXIT_RECOVERED`] or [`EXIT_LOST`]).
pub fn run(config: &ListenConfig) -> Result<i32> {
    // The first SIGINT or SIGTERM ends the run cleanly (the WAV finished, the summary printed);
    // a second one, for a user who cannot wait, exits at once with the usual 128 + SIGINT.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .map_err(|e| Error::io("install signal handlers", e))?;
    }
    let mut listener = Listener::new(config);
    let outcome = listener.run(&stop);
    listener.finish(outcome)
}

/// How the run ended.
#[derive(Debug)]
enum End {
    /// `--duration` of stream received (the normal end with `--duration`).
    Done,
    /// SIGINT or SIGTERM while connected (the normal end without `--duration`); `flowing`:
    /// audio was still coming (see `pad_missing_end`).
    Stopped { flowing: bool },
    /// `--duration` of wall-clock time passed (plus grace) before that much audio arrived.
    TimeUp,
    /// The server ended the stream on purpose (`bye`, `source ended`).
    StreamEnded,
    /// The connection is gone and not coming back (or never came).
    Lost(String),
}

struct Listener<'a> {
    config: &'a ListenConfig,
    console: Console,
    url: String,
    started: Instant,
    first_audio: Option<Instant>,
    wav: Option<WavOut>,
    #[cfg(feature = "alsa")]
    player: Option<Player>,
    /// The stream's shape, from the first hello; later hellos must match it.
    shape: Option<(Format, usize)>,
    timeline: Option<Timeline>,
    timeline_frames: u64,
    duration_frames: Option<u64>,
    /// Production time (server µs) before which chunks belong to the connection's burst.
    live_from_us: u64,
    instance: Option<String>,
    connections: u64,
    /// The token a password login earned, for the next connections.
    token: Option<Secret>,
    /// Every connection's instance, for `--report`.
    served: Vec<Served>,
    started_unix_ms: u64,
    jitter: Jitter,
    window: Histogram,
    window_chunks: u64,
    window_bytes: u64,
    window_started: Instant,
    latency: Histogram,
    totals: Totals,
    interruptions: InterruptionLog,
    last_audio_us: Option<u64>,
    /// When the last chunk arrived, on this machine's clock.
    last_audio_at: Option<Instant>,
    last_error: Option<String>,
    rtt_ms: Option<f64>,
    offset_ms: Option<f64>,
}

impl<'a> Listener<'a> {
    fn new(config: &'a ListenConfig) -> Listener<'a> {
        let now = Instant::now();
        Listener {
            config,
            console: Console::new(config.json),
            url: config.endpoint.url(),
            started: now,
            first_audio: None,
            wav: None,
            #[cfg(feature = "alsa")]
            player: None,
            shape: None,
            timeline: None,
            timeline_frames: 0,
            duration_frames: None,
            live_from_us: 0,
            instance: None,
            connections: 0,
            token: None,
            served: Vec::new(),
            started_unix_ms: crate::audio::unix_millis_now(),
            jitter: Jitter::default(),
            window: Histogram::new(),
            window_chunks: 0,
            window_bytes: 0,
            window_started: now,
            latency: Histogram::new(),
            totals: Totals::default(),
            interruptions: InterruptionLog::default(),
            last_audio_us: None,
            last_audio_at: None,
            last_error: None,
            rtt_ms: None,
            offset_ms: None,
        }
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<End> {
        let mut connection: Option<Connection> = None;
        let mut retry_wait = RETRY_FIRST;
        let mut next_attempt = Instant::now();
        let mut next_report = self.started + REPORT_EVERY;
        let mut moving: Option<Move> = None;
        // A stalled connection is held open, unread, until the next one is open, as the page
        // does: a balancer that counts connections (nginx's least_conn) then sends the next one
        // elsewhere, not back to the frozen instance its listeners just left.
        let mut stalled: Option<Connection> = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                let mut flowing = false;
                if let Some(c) = connection.take() {
                    flowing = self.last_audio_at.is_some_and(|t| c.audio_flowing(t));
                    c.close();
                }
                return Ok(self.end_now(End::Stopped { flowing }));
            }
            if let Some(end) = self.past_a_deadline() {
                if let Some(c) = connection.take() {
                    c.close();
                }
                return Ok(end);
            }
            let now = Instant::now();
            if now >= next_report {
                self.report(connection.as_ref());
                next_report += REPORT_EVERY;
                if next_report < now {
                    next_report = now + REPORT_EVERY;
                }
            }
            if let Some(m) = moving.as_mut() {
                if connection.is_none() || self.step_move(m, &mut connection)? {
                    moving = None;
                }
            }
            let Some(conn) = connection.as_mut() else {
                if now < next_attempt {
                    std::thread::sleep((next_attempt - now).min(Duration::from_millis(50)));
                    continue;
                }
                match self.open() {
                    Ok(c) => {
                        // A frozen server would not answer a close handshake: just drop it.
                        drop(stalled.take());
                        self.on_connected(&c)?;
                        connection = Some(c);
                        retry_wait = RETRY_FIRST;
                    }
                    Err(e) if self.config.reconnect && e.is_retryable() => {
                        self.interruptions.attempt();
                        if self.interruptions.pending().is_none() && self.last_error.is_none() {
                            self.console.disconnected(&e.to_string(), true);
                        }
                        self.last_error = Some(e.to_string());
                        // A full or draining server says when to come back; never sooner.
                        next_attempt =
                            Instant::now() + retry_wait.max(e.retry_after().unwrap_or_default());
                        retry_wait = (retry_wait * 2).min(RETRY_MAX);
                    }
                    // Wrong credentials or a refused origin need a change, not another try.
                    Err(e) if !e.is_retryable() => return Err(e),
                    Err(e) => return Ok(End::Lost(e.to_string())),
                }
                continue;
            };
            match conn.next_event(next_report.min(Instant::now() + Duration::from_millis(100))) {
                Event::Audio(chunk) => {
                    let (offset, rtt) = (conn.clock.offset_us(), conn.clock.rtt_us());
                    self.offset_ms = Some(offset as f64 / 1000.0);
                    self.rtt_ms = rtt.map(ms);
                    self.on_audio(&chunk, offset)?;
                }
                Event::Control(ServerMessage::Goaway { reason, grace_ms }) => {
                    if moving.is_none() {
                        self.console.note(&format!(
                            "server asks to move ({reason}, {grace_ms} ms of grace): \
                             opening a new connection first"
                        ));
                        let now = Instant::now();
                        moving = Some(Move {
                            cause: format!("goaway: {reason}"),
                            successor: None,
                            next_attempt: now,
                            give_up: now + Duration::from_millis(grace_ms),
                            failures: 0,
                        });
                    }
                }
                Event::Control(message) => self.on_control(message),
                Event::Idle => {}
                Event::Closed(closed) => {
                    // The old connection ended before the successor caught up with it: the
                    // successor takes over at once and the splice measures what is missing.
                    if let Some((successor, _)) = moving.take().and_then(|m| m.successor) {
                        connection = Some(successor);
                        self.take_over(&closed.reason, connection.as_ref())?;
                        continue;
                    }
                    let old = connection.take();
                    if closed.stalled && self.config.reconnect {
                        stalled = old;
                    }
                    if let Some(end) = self.on_closed(closed) {
                        return Ok(end);
                    }
                    next_attempt = Instant::now();
                }
            }
        }
    }

    /// Opens a connection with the configured credentials; after a password login, with the
    /// token it earned (so a reconnect does not send the password again).
    fn open(&mut self) -> Result<Connection> {
        let credentials = match (&self.token, &self.config.credentials) {
            (Some(token), _) => Credentials::Token(token.expose()),
            (None, ListenCredentials::Token(t)) => Credentials::Token(t.expose()),
            (None, ListenCredentials::Password(p)) => Credentials::Password(p.expose()),
            (None, ListenCredentials::None) => Credentials::None,
        };
        let opened = Connection::open(
            &self.config.endpoint,
            &self.config.connect,
            credentials,
            self.config.ca_file.as_deref(),
        );
        let c = match opened {
            // The earned token expired (or the server restarted): log in with the password again.
            Err(Error::Refused { status: 401, .. }) if self.token.is_some() => {
                self.token = None;
                return self.open();
            }
            other => other?,
        };
        if let Some(token) = &c.token {
            self.token = Some(token.clone());
        }
        Ok(c)
    }

    /// One step of a move: open the successor, and once the old connection has delivered up to
    /// the successor's first chunk, let the successor take over. Returns whether the move is
    /// over (done, or given up: then the old connection's end is an ordinary interruption).
    fn step_move(&mut self, m: &mut Move, connection: &mut Option<Connection>) -> Result<bool> {
        let now = Instant::now();
        let Some((successor, opened)) = m.successor.as_ref() else {
            if now >= m.give_up {
                self.console
                    .note("no new connection before the grace period ended");
                return Ok(true);
            }
            if now < m.next_attempt {
                return Ok(false);
            }
            match self.open() {
                Ok(c) => m.successor = Some((c, Instant::now())),
                Err(e) => {
                    m.failures += 1;
                    if m.failures == 1 {
                        self.console
                            .note(&format!("new connection failed: {e}; retrying"));
                    }
                    m.next_attempt = Instant::now() + MOVE_RETRY;
                }
            }
            return Ok(false);
        };
        let caught_up = match self.timeline.as_ref().and_then(Timeline::next_seq) {
            Some(next) => next.wrapping_sub(successor.hello.seq) as i64 >= 0,
            None => true,
        };
        if !caught_up && opened.elapsed() < MOVE_CATCH_UP {
            return Ok(false);
        }
        let (successor, _) = m.successor.take().expect("checked above");
        if let Some(old) = connection.replace(successor) {
            // The close handshake waits for the server; the audio must not.
            std::thread::spawn(move || old.close());
        }
        let cause = m.cause.clone();
        self.take_over(&cause, connection.as_ref())?;
        Ok(true)
    }

    /// The successor of a move is now the connection: the interruption it opens is closed by
    /// the successor's first new chunk, usually with nothing lost.
    fn take_over(&mut self, cause: &str, connection: Option<&Connection>) -> Result<()> {
        self.interruptions
            .begin_move(cause, self.instance.clone(), self.last_audio_us);
        match connection {
            Some(c) => self.on_connected(c),
            None => Ok(()),
        }
    }

    fn on_connected(&mut self, c: &Connection) -> Result<()> {
        let hello = &c.hello;
        self.connections += 1;
        if self.connections > 1 {
            self.totals.reconnects += 1;
        }
        self.check_shape(hello)?;
        self.interruptions.attempt();
        let same_instance = self.instance.as_deref() == Some(hello.instance.as_str());
        if let Some(t) = self.timeline.as_mut() {
            let rtt_us = c.clock.rtt_us().unwrap_or(0) as f64;
            // Back on the same instance, the sequence numbers are its own count and say exactly
            // what was lost; the clock, estimated from a connection that may have waited out a
            // freeze, would only blur that.
            t.reconnected(if same_instance {
                f64::INFINITY
            } else {
                rtt_us / 2.0
            });
        }
        self.jitter.restart();
        self.live_from_us = hello.server_time_ms.saturating_mul(1000);
        self.instance = Some(hello.instance.clone());
        self.served.push(Served {
            connection: self.connections,
            instance: hello.instance.clone(),
            connected_unix_ms: crate::audio::unix_millis_now(),
        });
        self.console.connected(&self.url, hello, self.connections);
        Ok(())
    }

    /// The first hello fixes the stream's format; a later one must agree while a file or a
    /// device is being written, since neither can change format midway.
    fn check_shape(&mut self, hello: &Hello) -> Result<()> {
        let shape = (hello.format, hello.chunk_frames);
        match self.shape {
            None => {
                self.shape = Some(shape);
                self.timeline = Some(Timeline::new(hello.chunk_frames, hello.format.sample_rate));
                self.duration_frames = self.config.duration.map(|d| {
                    (d.as_secs_f64() * f64::from(hello.format.sample_rate)).round() as u64
                });
                if let Some(path) = &self.config.out {
                    self.wav = Some(WavOut::create(path, hello.format, self.duration_frames)?);
                }
                #[cfg(feature = "alsa")]
                if let Some(device) = &self.config.play_device {
                    self.player = Some(Player::open(device, hello.format)?);
                }
                Ok(())
            }
            Some(old) if old == shape => Ok(()),
            Some((old, old_frames)) => {
                let describe = |f: Format, frames: usize| {
                    format!(
                        "{} Hz {} ch, {frames}-frame chunks",
                        f.sample_rate, f.channels
                    )
                };
                let change = format!(
                    "stream format changed from {} to {}",
                    describe(old, old_frames),
                    describe(hello.format, hello.chunk_frames)
                );
                if self.wav.is_some() || self.config.play_device.is_some() {
                    return Err(Error::source(
                        &self.url,
                        format!("{change}; cannot continue"),
                    ));
                }
                self.console
                    .note(&format!("{change}; the timeline starts again"));
                self.shape = Some(shape);
                self.timeline = Some(Timeline::new(hello.chunk_frames, hello.format.sample_rate));
                Ok(())
            }
        }
    }

    fn on_audio(&mut self, chunk: &AudioChunk, offset_us: i64) -> Result<()> {
        let now = Instant::now();
        self.first_audio.get_or_insert(now);
        self.last_audio_at = Some(now);
        self.window_chunks += 1;
        self.window_bytes += chunk.wire_len() as u64;
        self.totals.chunks += 1;
        self.totals.bytes += chunk.wire_len() as u64;
        // The burst was produced before we connected: its age is not latency.
        if chunk.produced_us >= self.live_from_us {
            let latency = clock::latency_us(chunk.arrival_us, chunk.produced_us, offset_us);
            self.window.record(latency);
            self.latency.record(latency);
            self.jitter
                .update(chunk.arrival_us as i64, chunk.produced_us as i64);
        }
        let Some(timeline) = self.timeline.as_mut() else {
            return Ok(());
        };
        let produced_local = (chunk.produced_us as i64).saturating_sub(offset_us) as f64;
        let placement = timeline.place(chunk.seq, produced_local);
        let (silence, hole) = match placement {
            Placement::Drop => {
                self.totals.duplicates += 1;
                return Ok(());
            }
            Placement::Append {
                silence_frames,
                hole,
            } => (silence_frames, hole),
        };
        let chunk_ms = |n: u64| timeline.ms_of(n);
        match hole {
            Some(Hole::Gap { from, to }) => {
                let gap_ms = chunk_ms(to.wrapping_sub(from));
                self.totals.gaps += 1;
                self.totals.gap_ms += gap_ms;
                self.console.hole("sequence", from, to, gap_ms);
            }
            Some(Hole::Reconnect { lost_us, by }) => {
                self.complete_interruption(chunk.arrival_us, lost_us, by.as_str());
            }
            Some(Hole::Skipped { .. }) | None => {}
        }
        let frame_bytes = self.shape.map_or(4, |(f, _)| f.bytes_for(1));
        self.timeline_frames += silence + (chunk.samples().len() / frame_bytes) as u64;
        if let Some(wav) = self.wav.as_mut() {
            wav.write_silence(silence)?;
            wav.write_samples(chunk.samples())?;
        }
        #[cfg(feature = "alsa")]
        if let Some(player) = self.player.as_mut() {
            // A reconnect's hole is not played as silence: that would add its length to the
            // playback latency. Short holes are, so the audio keeps its rhythm.
            if !matches!(hole, Some(Hole::Reconnect { .. })) {
                player.silence(silence);
            }
            player.play(chunk.samples());
        }
        self.last_audio_us = Some(chunk.arrival_us);
        Ok(())
    }

    fn on_control(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Skipped { from, to } => {
                if let Some(t) = self.timeline.as_mut() {
                    t.skipped(from, to);
                    let skipped_ms = t.ms_of(to.wrapping_sub(from));
                    self.totals.skips += 1;
                    self.totals.skipped_ms += skipped_ms;
                    self.console.hole("skipped", from, to, skipped_ms);
                }
            }
            ServerMessage::Source { state, reason } => {
                self.console.source(&state, reason.as_deref());
            }
            _ => {}
        }
    }

    /// A connection ended: either the end of the run or the start of an interruption.
    fn on_closed(&mut self, closed: Closed) -> Option<End> {
        let source_ended = closed.by_server && closed.reason.contains("source ended");
        let reconnecting = self.config.reconnect && !source_ended;
        self.console.disconnected(&closed.reason, reconnecting);
        self.interruptions
            .begin(&closed.reason, self.instance.clone(), self.last_audio_us);
        if source_ended {
            return Some(End::StreamEnded);
        }
        if !self.config.reconnect {
            return Some(End::Lost(closed.reason));
        }
        None
    }

    fn complete_interruption(&mut self, arrival_us: u64, lost_us: i64, splice: &'static str) {
        let instance = self.instance.clone();
        if let Some(i) = self
            .interruptions
            .complete(arrival_us, lost_us, splice, instance)
        {
            self.totals.interruption_lost_ms += i.lost_ms;
            self.console.interruption(i);
        }
    }

    /// Checks `--duration` (in stream time, then in wall-clock time with some grace for late
    /// audio), `--reconnect-timeout`, and a full WAV file.
    fn past_a_deadline(&mut self) -> Option<End> {
        if let Some(frames) = self.duration_frames {
            if self.timeline_frames >= frames {
                return Some(End::Done);
            }
        }
        if self.wav.as_ref().is_some_and(WavOut::is_full) {
            return Some(End::Done);
        }
        if let Some(d) = self.config.duration {
            let from = self.first_audio.unwrap_or(self.started);
            if from.elapsed() >= d + DURATION_GRACE {
                return Some(self.end_now(End::TimeUp));
            }
        }
        if let (Some(p), Some(limit)) =
            (self.interruptions.pending(), self.config.reconnect_timeout)
        {
            if p.since.elapsed() >= limit {
                return Some(End::Lost(format!(
                    "no connection for {} s ({})",
                    limit.as_secs_f64(),
                    p.cause
                )));
            }
        }
        None
    }

    /// The run stops here: as `end`, unless there is no connection right now.
    fn end_now(&self, end: End) -> End {
        match (self.interruptions.pending(), &self.last_error) {
            (Some(p), _) => End::Lost(p.cause.clone()),
            (None, Some(e)) if self.connections == 0 => End::Lost(e.clone()),
            (None, None) if self.connections == 0 => End::Lost("never connected".into()),
            _ => end,
        }
    }

    fn report(&mut self, connection: Option<&Connection>) {
        let elapsed = self.window_started.elapsed().as_secs_f64().max(1e-3);
        let latency = latency_of(&self.window);
        let second = Second {
            elapsed_s: self.started.elapsed().as_secs_f64(),
            connected: connection.is_some(),
            instance: self.instance.clone(),
            chunks: self.window_chunks,
            kbps: self.window_bytes as f64 * 8.0 / elapsed / 1000.0,
            latency,
            jitter_ms: self.jitter.ms(),
            rtt_ms: self.rtt_ms,
            clock_offset_ms: self.offset_ms,
        };
        self.console.second(&second, &self.totals);
        self.window.clear();
        self.window_chunks = 0;
        self.window_bytes = 0;
        self.window_started = Instant::now();
    }

    /// Audio that stopped before the end of the run is missing, not absent: the timeline is
    /// padded with silence up to the wall-clock time since the first audio (never past
    /// `--duration`). Not when the server ended the stream, nor when the run was stopped while
    /// audio was still flowing: what had not come yet was in flight (the latency of the last
    /// chunks is above the first's on a busy machine), and the file ends at the last audio that
    /// came. Returns the ms padded.
    fn pad_missing_end(&mut self, end: &End) -> Result<f64> {
        let (Some(first), Some((format, _))) = (self.first_audio, self.shape) else {
            return Ok(0.0);
        };
        if matches!(
            end,
            End::StreamEnded | End::Done | End::Stopped { flowing: true }
        ) {
            return Ok(0.0);
        }
        let rate = f64::from(format.sample_rate);
        let wall_frames = (first.elapsed().as_secs_f64() * rate) as u64;
        let target = wall_frames.min(self.duration_frames.unwrap_or(u64::MAX));
        let missing = target.saturating_sub(self.timeline_frames);
        if missing == 0 {
            return Ok(0.0);
        }
        if let Some(wav) = self.wav.as_mut() {
            wav.pad_to(target)?;
        }
        self.timeline_frames = target;
        Ok(missing as f64 * 1000.0 / rate)
    }

    /// Finishes the file and the player, prints the summary and picks the exit code.
    fn finish(&mut self, end: Result<End>) -> Result<i32> {
        let end = end?;
        let padded_ms = self.pad_missing_end(&end)?;
        let wav_seconds = self.wav.as_ref().and_then(|w| {
            let rate = f64::from(w.format().sample_rate);
            (rate > 0.0).then(|| w.frames() as f64 / rate)
        });
        if let Some(wav) = self.wav.take() {
            wav.finish()?;
        }
        #[cfg(feature = "alsa")]
        if let Some(player) = self.player.take() {
            player.finish();
        }
        self.totals.interruption_lost_ms += padded_ms;
        let (outcome, exit_code) = match &end {
            End::Lost(why) => {
                eprintln!("earshot: stream lost: {why}");
                ("lost", EXIT_LOST)
            }
            End::Done | End::Stopped { .. } | End::TimeUp | End::StreamEnded => {
                let missing = self.totals.gaps
                    + self.totals.skips
                    + self.interruptions.audible() as u64
                    + u64::from(padded_ms > 0.0);
                if missing == 0 {
                    ("continuous", EXIT_CONTINUOUS)
                } else {
                    ("recovered", EXIT_RECOVERED)
                }
            }
        };
        let summary = Summary {
            elapsed_s: self.started.elapsed().as_secs_f64(),
            totals: self.totals.clone(),
            latency: latency_of(&self.latency),
            jitter_ms: self.jitter.ms(),
            interruptions: self.interruptions.completed().len() as u64,
            interruption_ms: self
                .interruptions
                .completed()
                .iter()
                .map(|i| i.duration_ms)
                .sum::<f64>()
                + 0.0,
            outcome,
            exit_code,
            wav_seconds,
        };
        self.console.summary(&summary);
        if let Some(path) = &self.config.report {
            let report = Report {
                url: &self.url,
                started_unix_ms: self.started_unix_ms,
                served: &self.served,
                interruptions: self.interruptions.completed(),
                summary: &summary,
            };
            report.write(path)?;
        }
        Ok(exit_code)
    }
}

fn latency_of(h: &Histogram) -> Option<Latency> {
    Some(console::Latency {
        p50: ms(h.percentile(0.5)?),
        p99: ms(h.percentile(0.99)?),
        max: ms(h.max()?),
    })
}
