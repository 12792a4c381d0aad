//! One WebSocket connection to an earshot stream, from the client's side: connect, handshake,
//! `hello`, then a stream of [`Event`]s, with pings for the clock offset sent along the way.
//!
//! This is the one place that knows how a listener talks to the server; connecting itself
//! (`ws://` or `wss://`, a token or a password login, a CA file) is [`wsclient`]'s, shared with
//! the tests. Blocking I/O with read timeouts, like the server: one connection needs no more.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::{Bytes, Message, WebSocket};

use crate::audio::{self, Format};
use crate::auth::Secret;
use crate::client::clock::{ClockOffset, unix_us};
use crate::client::endpoint::{Endpoint, Scheme};
use crate::error::{Error, Result};
use crate::protocol::{self, ServerMessage};
use crate::wsclient::{self, ClientStream, ConnectError, Credentials};

/// How often a ping goes out to refine the clock offset.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Pings remembered while waiting for their pongs; older ones are forgotten.
const PINGS_IN_FLIGHT: usize = 8;
/// Without `--stall-ms`, a connection is stalled after this many chunk durations without a
/// message (400 ms with 20 ms chunks): far above the jitter of a loaded machine (tens of ms, the
/// server paces chunks one by one), far below a TCP timeout, and short enough that a reconnect's
/// burst (200 ms by default) plus the stall is what a listener loses to a frozen server.
pub const STALL_CHUNKS: u32 = 20;
/// The automatic stall threshold never goes below this, whatever the chunk size.
const STALL_FLOOR: Duration = Duration::from_millis(250);

/// How a connection is made and when it is given up.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// For the TCP connect, the handshake and the `hello`, each.
    pub timeout: Duration,
    /// A connection that delivers nothing for this long is treated as lost (a server that hangs
    /// with its socket open, a network that silently drops everything, a VM being migrated).
    /// `None`: [`STALL_CHUNKS`] chunk durations of the stream, from `hello`.
    pub stall: Option<Duration>,
}

/// The stream's description from `hello`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub codec: String,
    pub format: Format,
    pub chunk_ms: u32,
    pub chunk_frames: usize,
    pub stream: String,
    pub instance: String,
    /// The sequence number of the first chunk on this connection.
    pub seq: u64,
    pub server_time_ms: u64,
}

impl Hello {
    /// One chunk's duration in µs (exact: `chunk_frames / sample_rate`).
    pub fn chunk_us(&self) -> f64 {
        self.chunk_frames as f64 * 1e6 / f64::from(self.format.sample_rate)
    }
}

/// One audio message as received.
#[derive(Debug, Clone)]
pub struct AudioChunk {
    pub seq: u64,
    /// Production time on the server's clock, µs since the epoch.
    pub produced_us: u64,
    /// Arrival time on this client's clock, µs since the epoch.
    pub arrival_us: u64,
    /// The whole message; the samples start after the 16-byte header.
    payload: Bytes,
}

impl AudioChunk {
    /// Interleaved s16le sample bytes.
    pub fn samples(&self) -> &[u8] {
        &self.payload[protocol::CHUNK_HEADER_LEN..]
    }

    pub fn wire_len(&self) -> usize {
        self.payload.len()
    }
}

/// What [`Connection::next_event`] returns.
#[derive(Debug)]
pub enum Event {
    Audio(AudioChunk),
    /// A control message other than `pong` (pongs are consumed for the clock offset).
    Control(ServerMessage),
    /// Nothing arrived before the deadline given to `next_event`.
    Idle,
    /// The connection is over; nothing more will come.
    Closed(Closed),
}

#[derive(Debug, Clone)]
pub struct Closed {
    /// Why, for the interruption log: the server's `bye` reason, a close code, or an I/O error.
    pub reason: String,
    /// The server ended the connection on purpose (`bye` or a close frame).
    pub by_server: bool,
    /// Given up for bringing nothing for the stall threshold: still open underneath, and a
    /// frozen server may come back to it.
    pub stalled: bool,
}

pub struct Connection {
    ws: WebSocket<ClientStream>,
    pub hello: Hello,
    pub clock: ClockOffset,
    stall: Duration,
    /// The server said its source is down: no audio is due, only pongs prove the server lives.
    source_down: bool,
    last_message: Instant,
    /// The stall deadline passed and one last short read was allowed.
    stall_probed: bool,
    next_ping: Instant,
    next_ping_id: u64,
    pings: VecDeque<(u64, u64)>,
    pongs: u64,
    bye: Option<String>,
    /// The token a password login earned, to reconnect without sending the password again.
    pub token: Option<Secret>,
}

impl Connection {
    /// Connects (`ws://` or `wss://`, through [`wsclient`]), performs the WebSocket handshake
    /// and the login if any, and reads `hello`. A password login's token is in
    /// [`Connection::token`].
    pub fn open(
        endpoint: &Endpoint,
        options: &ConnectOptions,
        credentials: Credentials<'_>,
        ca_file: Option<&Path>,
    ) -> Result<Connection> {
        let url = endpoint.url();
        if endpoint.scheme == Scheme::Http {
            return Err(Error::usage(format!(
                "{url}: a listener needs a ws:// or wss:// URL (the stream is at ws://HOST:PORT/ws)"
            )));
        }
        let sent_us = unix_us();
        let without_credentials = matches!(credentials, Credentials::None);
        let wsclient::Connection { mut ws, token } =
            wsclient::connect_within(&url, ca_file, credentials, options.timeout)
                .map_err(|e| with_login_hint(connect_error(&url, e), without_credentials))?;
        let tcp = ws.get_ref().tcp();
        tcp.set_read_timeout(Some(options.timeout))
            .and_then(|()| tcp.set_write_timeout(Some(options.timeout)))
            .map_err(|e| Error::io(format!("{url}: socket options"), e))?;
        let hello = read_hello(&mut ws).map_err(|why| Error::source(&url, why))?;
        let mut clock = ClockOffset::default();
        clock.observe(sent_us, unix_us(), hello.server_time_ms);
        let now = Instant::now();
        let stall = options.stall.unwrap_or_else(|| automatic_stall(&hello));
        Ok(Connection {
            ws,
            hello,
            clock,
            stall,
            source_down: false,
            stall_probed: false,
            last_message: now,
            next_ping: now,
            next_ping_id: 1,
            pings: VecDeque::with_capacity(PINGS_IN_FLIGHT),
            pongs: 0,
            bye: None,
            token,
        })
    }

    /// Waits for the next message until `until`, answering nothing but sending pings when due.
    pub fn next_event(&mut self, until: Instant) -> Event {
        loop {
            let now = Instant::now();
            if now >= self.next_ping {
                if let Err(e) = self.send_ping() {
                    return Event::Closed(self.closed_by(e));
                }
            }
            if now >= until {
                return Event::Idle;
            }
            let stall = self.stall_threshold();
            let stall_at = self.last_message + stall;
            // The caller may have been busy (opening a successor): one last short read takes
            // what already waits before the connection is called stalled.
            if now >= stall_at {
                if self.stall_probed {
                    return Event::Closed(Closed {
                        reason: format!("stalled: no data for {} ms", stall.as_millis()),
                        by_server: false,
                        stalled: true,
                    });
                }
                self.stall_probed = true;
            }
            let wake = until.min(self.next_ping).min(stall_at.max(now));
            let timeout = wake
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            if let Err(e) = self.ws.get_ref().tcp().set_read_timeout(Some(timeout)) {
                return Event::Closed(Closed {
                    reason: format!("socket: {e}"),
                    by_server: false,
                    stalled: false,
                });
            }
            match self.ws.read() {
                Ok(message) => {
                    self.last_message = Instant::now();
                    self.stall_probed = false;
                    if let Some(event) = self.on_message(message) {
                        return event;
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Event::Closed(self.closed_by(e)),
            }
        }
    }

    /// Whether audio that last came at `last_audio` was still flowing: the source is up and no
    /// more than the stall threshold has passed. What such a stream has not delivered yet is
    /// late (in flight, or a server that is slow for a moment), not missing.
    pub fn audio_flowing(&self, last_audio: Instant) -> bool {
        !self.source_down && last_audio.elapsed() < self.stall
    }

    /// How long the connection may stay silent. While the source is down no audio is due, so
    /// only the pongs (one a second) show the server is alive.
    fn stall_threshold(&self) -> Duration {
        match self.source_down {
            true => self.stall.max(PING_EVERY * 3),
            false => self.stall,
        }
    }

    fn on_message(&mut self, message: Message) -> Option<Event> {
        match message {
            Message::Binary(payload) => {
                let arrival_us = unix_us();
                let (seq, produced_us, _) = protocol::decode_chunk(&payload)?;
                Some(Event::Audio(AudioChunk {
                    seq,
                    produced_us,
                    arrival_us,
                    payload,
                }))
            }
            Message::Text(text) => {
                // Unknown message types are ignored, as PROTOCOL.md asks of clients.
                let parsed: ServerMessage = serde_json::from_str(text.as_str()).ok()?;
                match parsed {
                    ServerMessage::Pong { id, server_time_ms } => {
                        let received = unix_us();
                        let id = id.as_u64()?;
                        let (_, sent) = *self.pings.iter().find(|(i, _)| *i == id)?;
                        self.clock.observe(sent, received, server_time_ms);
                        self.pongs += 1;
                        None
                    }
                    ServerMessage::Source { state, reason } => {
                        self.source_down = state == "down";
                        Some(Event::Control(ServerMessage::Source { state, reason }))
                    }
                    ServerMessage::Bye { reason } => {
                        self.bye = Some(reason.clone());
                        Some(Event::Control(ServerMessage::Bye { reason }))
                    }
                    other => Some(Event::Control(other)),
                }
            }
            // Ping frames are answered by tungstenite; close frames end in ConnectionClosed.
            _ => None,
        }
    }

    /// Pongs received so far (each one refines [`Connection::clock`]).
    pub fn pongs(&self) -> u64 {
        self.pongs
    }

    fn send_ping(&mut self) -> std::result::Result<(), WsError> {
        let id = self.next_ping_id;
        self.next_ping_id += 1;
        if self.pings.len() == PINGS_IN_FLIGHT {
            self.pings.pop_front();
        }
        self.pings.push_back((id, unix_us()));
        self.next_ping = Instant::now() + PING_EVERY;
        self.ws
            .send(Message::text(format!(r#"{{"type":"ping","id":{id}}}"#)))
    }

    fn closed_by(&self, e: WsError) -> Closed {
        match (&self.bye, e) {
            (Some(reason), _) => Closed {
                reason: format!("server said bye: {reason}"),
                by_server: true,
                stalled: false,
            },
            (None, WsError::ConnectionClosed | WsError::AlreadyClosed) => Closed {
                reason: "closed by the server".into(),
                by_server: true,
                stalled: false,
            },
            (None, WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => Closed {
                reason: "connection reset by the server".into(),
                by_server: false,
                stalled: false,
            },
            (None, WsError::Io(io)) => Closed {
                reason: format!("connection lost: {io}"),
                by_server: false,
                stalled: false,
            },
            (None, other) => Closed {
                reason: format!("connection lost: {other}"),
                by_server: false,
                stalled: false,
            },
        }
    }

    /// Closes politely (close frame, then wait briefly for the server's), for a normal end.
    pub fn close(mut self) {
        let _ = self
            .ws
            .get_ref()
            .tcp()
            .set_read_timeout(Some(Duration::from_millis(500)));
        if self.ws.close(None).is_ok() {
            while self.ws.read().is_ok() {}
        }
    }
}

/// [`STALL_CHUNKS`] chunk durations, at least [`STALL_FLOOR`].
fn automatic_stall(hello: &Hello) -> Duration {
    let chunks = Duration::from_secs_f64(hello.chunk_us() * f64::from(STALL_CHUNKS) / 1e6);
    chunks.max(STALL_FLOOR)
}

/// Reads messages until `hello`, which must come first.
fn read_hello(ws: &mut WebSocket<ClientStream>) -> std::result::Result<Hello, String> {
    // The server pings while it waits for a just-started source (PROTOCOL.md, "Keepalive");
    // tungstenite answers them.
    let text = loop {
        match ws.read().map_err(|e| format!("no hello: {e}"))? {
            Message::Text(text) => break text,
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => return Err("the first message is not a JSON hello".into()),
        }
    };
    match serde_json::from_str::<ServerMessage>(text.as_str()) {
        Ok(ServerMessage::Hello {
            version,
            codec,
            sample_rate,
            channels,
            chunk_ms,
            chunk_frames,
            align: _,
            stream,
            instance,
            seq,
            server_time_ms,
        }) => {
            if version != protocol::VERSION {
                return Err(format!("protocol version {version} (this client speaks 1)"));
            }
            if codec != audio::CODEC_PCM_S16LE {
                return Err(format!("codec '{codec}' (this client plays pcm_s16le)"));
            }
            let format = Format {
                sample_rate,
                channels,
            }
            .validate()?;
            if chunk_frames == 0 {
                return Err("hello says chunks have 0 frames".into());
            }
            Ok(Hello {
                codec,
                format,
                chunk_ms,
                chunk_frames,
                stream,
                instance,
                seq,
                server_time_ms,
            })
        }
        _ => Err("the first message is not a valid hello".into()),
    }
}

/// The client library's reasons, in the listener's words. A refusal keeps its status and
/// `Retry-After`, which decide whether and when to try again; a password turned down after the
/// upgrade is a refusal with 401 like a token turned down before it.
fn connect_error(url: &str, e: ConnectError) -> Error {
    match e {
        ConnectError::Url(reason) => Error::usage(format!("{url}: {reason}")),
        ConnectError::Io { context, source } => Error::io(format!("{url}: {context}"), source),
        ConnectError::Refused {
            status,
            reason,
            retry_after,
        } => Error::Refused {
            what: url.to_string(),
            status,
            reason,
            retry_after: retry_after.map(Duration::from_secs),
        },
        ConnectError::Tls(reason) => Error::Tls {
            what: url.to_string(),
            reason,
        },
        ConnectError::Login(reason) => Error::Refused {
            what: url.to_string(),
            status: 401,
            reason: format!("password login: {reason}"),
            retry_after: None,
        },
        other => Error::source(url, other.to_string()),
    }
}

/// A 401 to a client that gave no password or token says how to give one (the flags are the
/// same for `listen` and `bench`).
fn with_login_hint(e: Error, without_credentials: bool) -> Error {
    match e {
        Error::Refused {
            what,
            status: 401,
            reason,
            retry_after,
        } if without_credentials => Error::Refused {
            what,
            status: 401,
            reason: format!("{reason} (give --password, --password-file or --token)"),
            retry_after,
        },
        e => e,
    }
}

/// A read that timed out, or that a signal interrupted (a read with a timeout is not restarted
/// after SIGINT): nothing happened to the connection.
fn is_timeout(e: &WsError) -> bool {
    matches!(e, WsError::Io(io) if matches!(
        io.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    ))
}
