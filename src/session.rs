//! One listener's thread: hello, the burst, paced chunks, control messages, and the close.
//!
//! The session both reads and writes its socket from one thread (a tungstenite `WebSocket`
//! cannot be split): it sleeps in a read with a timeout that ends when the next chunk it wants is
//! due, so a client's ping or close is answered at once, and audio goes out on time. Writes have
//! a short timeout; a socket that accepts nothing for `--send-timeout-ms` is dropped, and a
//! listener that falls a whole ring behind skips to the live edge and is told what it lost.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::protocol::{self, ClientMessage, ServerMessage};
use crate::ring::Chunk;
use crate::server::{ListenerSlot, Server};
use crate::stream::Stream;

/// The longest a single write may block, so a stuck socket never stops the session loop.
const WRITE_TIMEOUT: Duration = Duration::from_millis(250);
/// How much longer than needed a read may wait, to reuse the socket's timeout (see
/// `ListenerSession::set_read_timeout`): the audio goes out at most this much later.
const TIMEOUT_REUSE: Duration = Duration::from_millis(2);
/// How long a new listener waits for the very first chunk of a just-started source.
const FIRST_CHUNK_WAIT: Duration = Duration::from_secs(5);
/// How long a listener may go without a message before it gets a WebSocket ping: only while no
/// audio flows (a source that is down, a pipe whose writer pauses), so that a proxy's idle
/// timeout (nginx's `proxy_read_timeout`, an F5's idle timeout) never ends a listener that is
/// only waiting, and a proxy can use a short one to notice a frozen instance.
const KEEPALIVE: Duration = Duration::from_secs(1);
/// How long a server-initiated close waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Most chunks handed to tungstenite per wake, to keep its write buffer small.
pub const MAX_CHUNKS_PER_WAKE: usize = 16;
/// How long a `/ws?auth=message` client has to send its password.
const LOGIN_WAIT: Duration = Duration::from_secs(10);
/// How often a session waiting for a login looks up to see whether the server is stopping.
const LOGIN_POLL: Duration = Duration::from_millis(250);

/// Why a session ended, for the log line.
#[derive(Debug)]
enum End {
    ClientClosed,
    ClientGone(String),
    SlowClient(Duration),
    ServerClosed(&'static str),
    Refused(CloseCode, String),
}

/// Sets the socket options a streaming connection needs, before the 101 is sent.
///
/// The send buffer is bounded so that a listener that stops reading is noticed within a second
/// or so of audio instead of hiding many seconds in the kernel (Linux autotunes it up to 4 MiB).
pub fn tune_socket(socket: &TcpStream, stream: &Stream, burst_ms: u32) {
    let bytes_per_ms = stream.format.bytes_for(stream.format.sample_rate as usize) / 1000;
    let burst = bytes_per_ms * burst_ms as usize;
    let sndbuf = (2 * burst).clamp(64 * 1024, 1024 * 1024);
    let _ = socket2::SockRef::from(socket).set_send_buffer_size(sndbuf);
    let _ = socket.set_write_timeout(Some(WRITE_TIMEOUT));
}

struct ListenerSession<'a> {
    server: &'a Server,
    ws: WebSocket<TcpStream>,
    peer: SocketAddr,
    cursor: u64,
    /// Set while the socket refuses data; audio is held back until it drains.
    stalled_since: Option<Instant>,
    chunks_sent: u64,
    source_epoch: u64,
    reported_state: &'static str,
    told_to_go: bool,
    /// The socket's current receive timeout, so an unchanged one is not set again.
    read_timeout: Option<Duration>,
    /// When audio last went out (or the last keepalive ping), for [`KEEPALIVE`].
    last_sent: Instant,
    /// The second the client's messages are counted in, and how many came in it.
    messages: (Instant, u32),
    scratch: Vec<Chunk>,
}

/// Runs a listener's session; `login` is the client's address when it still has to send its
/// password as the first message.
pub fn run(
    server: &Server,
    ws: WebSocket<TcpStream>,
    peer: SocketAddr,
    slot: ListenerSlot<'_>,
    login: Option<IpAddr>,
) {
    let started = Instant::now();
    crate::log!(
        "listener {peer} joined ({} connected)",
        server.listener_count()
    );
    let mut session = ListenerSession {
        server,
        ws,
        peer,
        cursor: 0,
        stalled_since: None,
        chunks_sent: 0,
        // Checked on the first wake-up, so a listener joining a failing source is told at once.
        source_epoch: u64::MAX,
        reported_state: "live",
        told_to_go: false,
        read_timeout: None,
        last_sent: Instant::now(),
        messages: (Instant::now(), 0),
        scratch: Vec::with_capacity(MAX_CHUNKS_PER_WAKE),
    };
    let end = match login.map(|client| session.login_by_message(client)) {
        Some(Err(end)) => end,
        _ => session.serve(),
    };
    let sent = session.chunks_sent;
    drop(session);
    drop(slot);
    let why = match &end {
        End::ClientClosed => "client closed".to_string(),
        End::ClientGone(e) => format!("connection lost: {e}"),
        End::SlowClient(d) => format!(
            "send timeout: client accepted no data for {} ms",
            d.as_millis()
        ),
        End::ServerClosed(reason) => (*reason).to_string(),
        End::Refused(code, reason) => format!("closed with {}: {reason}", u16::from(*code)),
    };
    crate::log!(
        "listener {peer} left after {:.1} s, {sent} chunks: {why}",
        started.elapsed().as_secs_f64()
    );
}

impl ListenerSession<'_> {
    /// The first-message login: `{"type":"login","password":…}` gets a `token` message back
    /// (then the stream starts); anything else, a wrong password or silence closes with 1008.
    fn login_by_message(&mut self, client: IpAddr) -> Result<(), End> {
        let deadline = Instant::now() + LOGIN_WAIT;
        loop {
            if self.server.shutting_down() {
                return Err(self.close(CloseCode::Away, "server shutting down"));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.refuse(CloseCode::Policy, "no login message in time"));
            }
            // Pinged while it waits, like a listener waiting for audio: a proxy's read timeout
            // must not end a login that takes its time.
            self.keep_alive(now)?;
            self.set_read_timeout((deadline - now).min(LOGIN_POLL))?;
            let message = self.ws.read();
            if message.is_ok() {
                self.count_message()?;
            }
            let password = match message {
                Ok(Message::Text(text)) => match protocol::parse_client_message(text.as_str()) {
                    Some(ClientMessage::Login { password }) => password,
                    _ => {
                        return Err(self.refuse(
                            CloseCode::Policy,
                            "the first message must be {\"type\":\"login\",\"password\":…}",
                        ));
                    }
                },
                Ok(Message::Binary(_)) => {
                    return Err(self.refuse(CloseCode::Policy, "the first message must be a login"));
                }
                Ok(Message::Close(_)) => return Err(self.client_closed()),
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(self.read_failed(e)),
            };
            return match self.server.login(client, password.expose()) {
                Ok(token) => self.send_text(&ServerMessage::Token {
                    token,
                    expires_in_s: self.server.token_ttl().as_secs(),
                }),
                Err(refused) => Err(self.refuse(CloseCode::Policy, &refused.reason())),
            };
        }
    }

    fn serve(&mut self) -> End {
        let stream = &*self.server.stream;
        let burst = stream.chunks_in(self.server.config.burst_ms).max(1);
        self.cursor = match stream.ring.burst_start(burst) {
            Some(seq) => seq,
            None => {
                // A source that has not produced yet (a pipe without a writer, a device that is
                // slow to start): wait a little for its first chunks, which are this listener's
                // burst, else start at the chunk the producer announced it will push first.
                if let Err(end) = self.wait_first_chunk() {
                    return end;
                }
                match stream
                    .ring
                    .burst_start(burst)
                    .or_else(|| stream.ring.next_seq())
                {
                    Some(seq) => seq,
                    None => return self.close(CloseCode::Again, "the source has not started"),
                }
            }
        };
        let hello = ServerMessage::hello(
            stream.format,
            stream.chunk_ms,
            stream.chunk_frames,
            stream.aligned(),
            &stream.name,
            &self.server.config.instance_id,
            self.cursor,
        );
        if let Err(end) = self.send_text(&hello) {
            return end;
        }
        loop {
            if self.server.shutting_down() {
                let reason = if self.told_to_go {
                    "drained"
                } else {
                    "server shutting down"
                };
                return self.close(CloseCode::Away, reason);
            }
            if self.server.draining() && !self.told_to_go {
                self.told_to_go = true;
                let grace_ms = self.server.config.drain_grace.as_millis() as u64;
                let goaway = ServerMessage::Goaway {
                    reason: "draining".into(),
                    grace_ms,
                };
                if let Err(end) = self.send_text(&goaway) {
                    return end;
                }
            }
            if let Err(end) = self.report_source_state() {
                return end;
            }
            let sent_before = self.chunks_sent;
            if let Err(end) = self.send_audio() {
                return end;
            }
            let now = Instant::now();
            if self.chunks_sent != sent_before {
                self.last_sent = now;
            } else if let Err(end) = self.keep_alive(now) {
                return end;
            }
            if stream.has_ended() && !stream.ring.has(self.cursor) {
                return self.close(CloseCode::Normal, "source ended");
            }
            // Sleep (reading the client meanwhile) until the chunks we want next are due.
            let want = self.server.wakes().next_want(self.cursor);
            let deadline = match (self.stalled_since, stream.ring.due(want)) {
                (None, Some(due)) if due > now => due,
                _ => now + stream.period(),
            };
            if let Err(end) = self.read_client_until(deadline) {
                return end;
            }
            if self.stalled_since.is_none() && !stream.ring.has(want) {
                // The producer is late (or paced by a device): wait for it, briefly.
                stream.ring.wait_for(want, Instant::now() + stream.period());
            }
        }
    }

    /// Waits up to [`FIRST_CHUNK_WAIT`] for a just-started source's first chunk, pinging every
    /// [`KEEPALIVE`] meanwhile as while no audio flows: a proxy with a short read timeout
    /// (`deploy/nginx.conf` has 3 s) would otherwise end the listener before its hello.
    fn wait_first_chunk(&mut self) -> Result<(), End> {
        let ring = &self.server.stream.ring;
        let deadline = Instant::now() + FIRST_CHUNK_WAIT;
        loop {
            let now = Instant::now();
            if now >= deadline || ring.wait_first((now + KEEPALIVE).min(deadline)) {
                return Ok(());
            }
            if self.server.shutting_down() {
                return Err(self.close(CloseCode::Away, "server shutting down"));
            }
            self.keep_alive(Instant::now())?;
        }
    }

    /// Sends what the ring has for this listener, unless its socket is still full.
    fn send_audio(&mut self) -> Result<(), End> {
        if let Some(since) = self.stalled_since {
            match self.ws.flush() {
                Ok(()) => self.stalled_since = None,
                Err(e) if is_timeout(&e) => {
                    let stalled = since.elapsed();
                    if stalled >= self.server.config.send_timeout {
                        Stream::count(&self.server.stream.counters.slow_disconnects, 1);
                        return Err(End::SlowClient(stalled));
                    }
                    return Ok(());
                }
                Err(e) => return Err(self.io_end(e)),
            }
        }
        let stream = &*self.server.stream;
        let mut chunks = std::mem::take(&mut self.scratch);
        chunks.clear();
        let outcome = stream
            .ring
            .read_from(self.cursor, MAX_CHUNKS_PER_WAKE, &mut chunks);
        self.cursor = outcome.next;
        let result = (|| {
            if let Some((from, to)) = outcome.skipped {
                Stream::count(&stream.counters.listener_skips, 1);
                Stream::count(&stream.counters.chunks_skipped, to.wrapping_sub(from));
                self.queue(Message::text(ServerMessage::Skipped { from, to }.to_json()))?;
            }
            let mut bytes = 0;
            // Drained, so each payload moves into its message: one reference count change per
            // chunk and listener instead of two.
            for chunk in chunks.drain(..) {
                if self.stalled_since.is_some() {
                    // The socket filled up mid-batch: the rest waits in the ring, from where it
                    // goes out when the socket drains, or is announced in `skipped` if the ring
                    // moves on first. Never dropped silently.
                    self.cursor = chunk.seq;
                    break;
                }
                bytes += chunk.payload.len() as u64;
                self.queue(Message::Binary(chunk.payload))?;
                self.chunks_sent += 1;
            }
            Stream::count(&stream.counters.bytes_sent, bytes);
            self.flush()
        })();
        self.scratch = chunks;
        result
    }

    /// Hands a message to tungstenite; a full socket marks the session stalled (the message
    /// stays queued in tungstenite and goes out when the socket drains).
    fn queue(&mut self, message: Message) -> Result<(), End> {
        if self.stalled_since.is_some() {
            return Ok(());
        }
        match self.ws.write(message) {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => {
                self.stalled_since = Some(Instant::now());
                Ok(())
            }
            Err(e) => Err(self.io_end(e)),
        }
    }

    /// A WebSocket ping when no audio went out for [`KEEPALIVE`]. Clients answer it by
    /// themselves (browsers and WebSocket libraries do); the answer is not waited for.
    fn keep_alive(&mut self, now: Instant) -> Result<(), End> {
        if self.stalled_since.is_some() || now - self.last_sent < KEEPALIVE {
            return Ok(());
        }
        self.last_sent = now;
        self.queue(Message::Ping(Default::default()))?;
        self.flush()
    }

    fn flush(&mut self) -> Result<(), End> {
        match self.ws.flush() {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => {
                self.stalled_since.get_or_insert_with(Instant::now);
                Ok(())
            }
            Err(e) => Err(self.io_end(e)),
        }
    }

    fn send_text(&mut self, message: &ServerMessage) -> Result<(), End> {
        self.queue(Message::text(message.to_json()))?;
        self.flush()
    }

    /// Tells the listener when the source goes down, comes back or ends.
    fn report_source_state(&mut self) -> Result<(), End> {
        let epoch = self.server.stream.state_epoch();
        if epoch == self.source_epoch {
            return Ok(());
        }
        self.source_epoch = epoch;
        let state = self.server.stream.state();
        let (name, reason) = state.describe();
        // Listeners only need to know whether audio flows; "starting" is a kind of live, and a
        // listener assumes "live" until told otherwise.
        let name = if name == "starting" { "live" } else { name };
        if name == self.reported_state {
            return Ok(());
        }
        self.reported_state = name;
        self.send_text(&ServerMessage::Source {
            state: name.to_string(),
            reason: reason.map(str::to_string),
        })
    }

    /// Sets how long the next read may wait: at least `wait`, and at most [`TIMEOUT_REUSE`]
    /// longer.
    ///
    /// A session waits about one chunk period every time, so the timeout already set usually
    /// fits and the system call is skipped: one of the three a wake-up would otherwise cost.
    fn set_read_timeout(&mut self, wait: Duration) -> Result<(), End> {
        if let Some(wanted) = read_timeout_to_set(self.read_timeout, wait) {
            if self.ws.get_ref().set_read_timeout(Some(wanted)).is_err() {
                return Err(End::ClientGone("socket closed".into()));
            }
            self.read_timeout = Some(wanted);
        }
        Ok(())
    }

    /// Reads and answers client messages until `deadline`.
    fn read_client_until(&mut self, deadline: Instant) -> Result<(), End> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            self.set_read_timeout(deadline - now)?;
            let message = self.ws.read();
            if message.is_ok() {
                self.count_message()?;
            }
            match message {
                Ok(Message::Text(text)) => self.answer(text.as_str())?,
                Ok(Message::Binary(_)) => {
                    return Err(
                        self.refuse(CloseCode::Unsupported, "binary messages are not accepted")
                    );
                }
                Ok(Message::Close(_)) => return Err(self.client_closed()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Ok(()),
                Err(e) => return Err(self.read_failed(e)),
            }
        }
    }

    /// Ends the session after a failed read: a broken frame or message gets its close code.
    fn read_failed(&mut self, e: WsError) -> End {
        match e {
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                End::ClientGone(format!("closed without a close frame ({})", self.peer))
            }
            WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => self.refuse(
                CloseCode::Size,
                &format!("message of {size} bytes is over the {max_size}-byte limit"),
            ),
            WsError::Capacity(e) => self.refuse(CloseCode::Size, &e.to_string()),
            WsError::Protocol(e) => self.refuse(CloseCode::Protocol, &e.to_string()),
            WsError::Utf8(_) => self.refuse(CloseCode::Invalid, "text message is not UTF-8"),
            e => self.io_end(e),
        }
    }

    /// Counts a message from the client; past [`MAX_CLIENT_MESSAGES_PER_S`] in a second, the
    /// client is closed with 1008.
    fn count_message(&mut self) -> Result<(), End> {
        let now = Instant::now();
        let (since, count) = &mut self.messages;
        if now.duration_since(*since) >= Duration::from_secs(1) {
            (*since, *count) = (now, 0);
        }
        *count += 1;
        if *count > protocol::MAX_CLIENT_MESSAGES_PER_S {
            let reason = format!(
                "more than {} messages in a second",
                protocol::MAX_CLIENT_MESSAGES_PER_S
            );
            return Err(self.refuse(CloseCode::Policy, &reason));
        }
        Ok(())
    }

    fn answer(&mut self, text: &str) -> Result<(), End> {
        match protocol::parse_client_message(text) {
            Some(ClientMessage::Ping { id }) => {
                let pong = ServerMessage::Pong {
                    id,
                    server_time_ms: crate::audio::unix_millis_now(),
                };
                self.send_text(&pong)
            }
            // Unknown or malformed messages are ignored, so newer clients work with this server;
            // so is a login on a connection that is already listening.
            Some(ClientMessage::Login { .. }) | None => Ok(()),
        }
    }

    /// Closes because of something the client sent.
    ///
    /// Nothing more is read through tungstenite: after a framing error it cannot find the next
    /// frame (RFC 6455 §7.1.7: fail the connection), and tungstenite 0.30 trips over its own
    /// buffer when asked to (README, "Known crate issues"). The close frame is followed by a
    /// lingering close, so a client still sending does not reset it away.
    fn refuse(&mut self, code: CloseCode, reason: &str) -> End {
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: reason.to_string().into(),
        }));
        let _ = self.ws.flush();
        crate::server::lingering_close(self.ws.get_mut(), CLOSE_WAIT);
        End::Refused(code, reason.to_string())
    }

    /// Closes from the server's side: `bye`, a close frame, then the client's close frame.
    fn close(&mut self, code: CloseCode, reason: &'static str) -> End {
        let bye = ServerMessage::Bye {
            reason: reason.to_string(),
        };
        let _ = self.ws.write(Message::text(bye.to_json()));
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        self.finish_close();
        End::ServerClosed(reason)
    }

    /// Drives the close handshake to its end, for at most [`CLOSE_WAIT`].
    fn finish_close(&mut self) {
        let deadline = Instant::now() + CLOSE_WAIT;
        let _ = self.ws.flush();
        while Instant::now() < deadline {
            if self.set_read_timeout(deadline - Instant::now()).is_err() {
                break;
            }
            // Until the client's close frame ends the handshake (an error), or time runs out.
            if self.ws.read().is_err() {
                break;
            }
        }
    }

    /// The client's close frame was read: tungstenite has queued the reply, which goes out now,
    /// and the session is over. Reading on instead, a session whose read had run past its
    /// deadline went to send audio (or a keepalive ping), which tungstenite refuses after a
    /// close, and logged a clean close as a lost connection.
    fn client_closed(&mut self) -> End {
        let _ = self.ws.flush();
        End::ClientClosed
    }

    fn io_end(&self, e: WsError) -> End {
        match e {
            WsError::ConnectionClosed | WsError::AlreadyClosed => End::ClientClosed,
            other => End::ClientGone(format!("{other} ({})", self.peer)),
        }
    }
}

/// Listeners from which `--batch-ms auto` gathers [`AUTO_BATCH_MS`] per wake-up.
pub const AUTO_BATCH_FROM: usize = 200;
/// What `--batch-ms auto` gathers under load: the most that keeps p99 latency well under 100 ms.
const AUTO_BATCH_MS: u32 = 60;

/// How many chunks a session asks for per wake-up: `batch` (from `--batch-ms`) or, when that
/// is `auto`, one chunk below [`AUTO_BATCH_FROM`] listeners and 60 ms of chunks from there on.
///
/// Each wake-up of a listener's thread costs a context switch and a timer, which on two cores
/// costs more than copying the audio: waking for every 20 ms chunk takes 1.5 to 2.5 times the
/// CPU per listener of waking every 60 ms (BENCHMARKS.md has the profile and the figures).
/// Below a few hundred listeners that CPU is cheap and latency is what listeners notice, so
/// `auto` sends every chunk as it is produced; from there on it sends three 20 ms chunks
/// together, which adds up to 40 ms of latency. Never more than [`MAX_CHUNKS_PER_WAKE`].
pub fn wake_every(listeners: usize, chunk_ms: u32, batch: Option<u32>) -> u64 {
    let chunks = match batch {
        Some(chunks) => u64::from(chunks),
        None if listeners < AUTO_BATCH_FROM => 1,
        None => u64::from(AUTO_BATCH_MS / chunk_ms.max(1)),
    };
    chunks.clamp(1, MAX_CHUNKS_PER_WAKE as u64)
}

/// Listeners from which sessions stagger their batches instead of waking together.
pub const STAGGER_FROM: usize = AUTO_BATCH_FROM;

/// When sessions and the producer wake, for the number of listeners connected now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wakes {
    /// Chunks a session asks for per wake-up ([`wake_every`]).
    pub chunks: u64,
    /// Whether batches follow sequence numbers (`seq + 1` a multiple of `chunks`), so every
    /// session wakes together once per batch. Below [`STAGGER_FROM`] listeners that is
    /// cheapest: one wake-up of an idle machine instead of several. From there on each
    /// session's batches start where its cursor is, which spreads the sessions over the chunk
    /// periods: two thousand threads made runnable at once took 5–8 % more of one core and
    /// added about 10 ms to p99 latency (BENCHMARKS.md).
    pub together: bool,
}

impl Wakes {
    pub fn new(listeners: usize, chunk_ms: u32, batch: Option<u32>) -> Wakes {
        Wakes {
            chunks: wake_every(listeners, chunk_ms, batch),
            together: listeners < STAGGER_FROM,
        }
    }

    /// The chunk a session at `cursor` sleeps until: the last of its batch.
    pub fn next_want(self, cursor: u64) -> u64 {
        let batch = self.chunks.max(1);
        if self.together {
            cursor.wrapping_add(batch - 1 - cursor % batch)
        } else {
            cursor.wrapping_add(batch - 1)
        }
    }
}

/// The read timeout to set for a wait of `wait` when `current` is set, or `None` when `current`
/// already fits: at least `wait`, at most [`TIMEOUT_REUSE`] longer. Whole milliseconds, rounded
/// up, since the kernel keeps socket timeouts in timer ticks anyway. Public so that
/// `make bench-floor` (benches/wake_floor.rs) waits exactly as a session does.
pub fn read_timeout_to_set(current: Option<Duration>, wait: Duration) -> Option<Duration> {
    let fits = current.is_some_and(|t| t >= wait && t - wait <= TIMEOUT_REUSE);
    (!fits).then(|| Duration::from_millis(wait.as_micros().div_ceil(1000).max(1) as u64))
}

/// A read or write that ended without data moving but without harm either: its timeout ran out,
/// or a signal interrupted it (socket calls with timeouts are not restarted after SIGSTOP/SIGCONT).
fn is_timeout(e: &WsError) -> bool {
    matches!(e, WsError::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_batches_only_under_load_and_never_past_60_ms() {
        assert_eq!(wake_every(1, 20, None), 1);
        assert_eq!(wake_every(AUTO_BATCH_FROM - 1, 20, None), 1);
        assert_eq!(wake_every(AUTO_BATCH_FROM, 20, None), 3);
        assert_eq!(wake_every(100_000, 20, None), 3);
        assert_eq!(wake_every(100_000, 100, None), 1);
        assert_eq!(wake_every(100_000, 5, None), 12);
        assert_eq!(wake_every(100_000, 40, None), 1);
    }

    #[test]
    fn a_few_sessions_wake_together_for_batches_that_follow_sequence_numbers() {
        let wakes = Wakes::new(STAGGER_FROM - 1, 20, Some(3));
        assert!(wakes.together);
        assert_eq!(wakes.next_want(30), 32);
        assert_eq!(wakes.next_want(31), 32);
        assert_eq!(wakes.next_want(32), 32);
        assert_eq!(wakes.next_want(33), 35);
        for seq in 30..40 {
            assert_eq!((wakes.next_want(seq) + 1) % 3, 0, "batch ends at {seq}");
        }
        assert_eq!(Wakes::new(1, 20, None).next_want(31), 31);
    }

    #[test]
    fn many_sessions_stagger_their_batches() {
        let wakes = Wakes::new(STAGGER_FROM, 20, None);
        assert_eq!(wakes.chunks, 3);
        assert!(!wakes.together);
        assert_eq!(wakes.next_want(30), 32);
        assert_eq!(wakes.next_want(31), 33);
        assert_eq!(wakes.next_want(32), 34);
    }

    #[test]
    fn a_fixed_batch_holds_at_any_listener_count() {
        assert_eq!(wake_every(1, 20, Some(3)), 3);
        assert_eq!(wake_every(5000, 20, Some(1)), 1);
    }
}
