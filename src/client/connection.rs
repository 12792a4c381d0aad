//! One WebSocket connection to an earshot stream, from the client's side: connect, handshake,
//! `hello`, then a stream of [`Event`]s, with pings for the clock offset sent along the way.
//!
//! This is the one place that knows how a client talks to the server, so what later arrives here
//! (a `goaway` message that asks the client to move) changes this file and the listener's
//! reaction to an event, not the listener's loop. The socket, TLS for `wss://` and the
//! credentials (a token, or a password login whose token a [`Connector`] keeps for reconnects)
//! come from [`crate::wsclient`]. Blocking I/O with read timeouts, like the server: one
//! connection needs no more.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::{Bytes, Message, WebSocket};

use crate::audio::{self, Format};
use crate::auth::Secret;
use crate::client::clock::ClockOffset;
use crate::client::endpoint::{Endpoint, Scheme};
use crate::error::{Error, Result};
use crate::protocol::{self, ServerMessage};
use crate::wsclient::{self, ClientStream, ConnectError, Credentials};

/// How often a ping goes out to refine the clock offset.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Pings remembered while waiting for their pongs; older ones are forgotten.
const PINGS_IN_FLIGHT: usize = 8;

/// How a connection is made and when it is given up.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// For the TCP connect, the handshake and the `hello`, each.
    pub timeout: Duration,
    /// A connection that delivers nothing for this long is treated as lost (a server that hangs
    /// with its socket open, a network that silently drops everything).
    pub stall: Duration,
    /// For `wss://`: the PEM certificates to trust instead of the system's (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    pub login: Login,
}

/// How a client proves it may listen to a server with a password.
#[derive(Debug, Clone, Default)]
pub enum Login {
    /// The server has no password.
    #[default]
    None,
    /// A token from `POST /api/login` (`--token`), sent as `Authorization: Bearer`.
    Token(Secret),
    /// The password (`--password`, `--password-file`), sent as the first message; the server
    /// answers with a token, which a [`Connector`] uses for the reconnects that follow.
    Password(Secret),
}

impl Login {
    fn credentials(&self) -> Credentials<'_> {
        match self {
            Login::None => Credentials::None,
            Login::Token(token) => Credentials::Token(token.expose()),
            Login::Password(password) => Credentials::Password(password.expose()),
        }
    }
}

/// Opens connection after connection to one stream. After a password login it reconnects
/// with the token the server gave, so the password crosses the network once; when that token
/// is refused (it expired, or the server restarted and forgot it) it logs in again.
pub struct Connector {
    endpoint: Endpoint,
    options: ConnectOptions,
    earned: Option<Secret>,
}

impl Connector {
    pub fn new(endpoint: &Endpoint, options: &ConnectOptions) -> Connector {
        Connector {
            endpoint: endpoint.clone(),
            options: options.clone(),
            earned: None,
        }
    }

    /// Connects, logs in if need be, and reads `hello`.
    pub fn open(&mut self) -> Result<Connection> {
        if let Some(token) = self.earned.clone() {
            let credentials = Credentials::Token(token.expose());
            match Connection::open_as(&self.endpoint, &self.options, credentials) {
                Err(Error::Refused { status: 401, .. }) => self.earned = None,
                other => return other.map(|(connection, _)| connection),
            }
        }
        let credentials = self.options.login.credentials();
        let (connection, token) = Connection::open_as(&self.endpoint, &self.options, credentials)
            .map_err(|e| match (e, &self.options.login) {
            (
                Error::Refused {
                    what,
                    status: 401,
                    reason,
                    retry_after,
                },
                Login::None,
            ) => Error::Refused {
                what,
                status: 401,
                reason: format!("{reason} (give --password, --password-file or --token)"),
                retry_after,
            },
            (e, _) => e,
        })?;
        if token.is_some() {
            self.earned = token;
        }
        Ok(connection)
    }
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
}

pub struct Connection {
    ws: WebSocket<ClientStream>,
    pub hello: Hello,
    pub clock: ClockOffset,
    stall: Duration,
    last_message: Instant,
    next_ping: Instant,
    next_ping_id: u64,
    pings: VecDeque<(u64, u64)>,
    pongs: u64,
    bye: Option<String>,
}

impl Connection {
    /// Connects with `options.login`, performs the WebSocket handshake and reads `hello`.
    pub fn open(endpoint: &Endpoint, options: &ConnectOptions) -> Result<Connection> {
        let credentials = options.login.credentials();
        Connection::open_as(endpoint, options, credentials).map(|(connection, _)| connection)
    }

    /// [`Connection::open`] with these credentials; also returns the token a password login
    /// earned.
    fn open_as(
        endpoint: &Endpoint,
        options: &ConnectOptions,
        credentials: Credentials<'_>,
    ) -> Result<(Connection, Option<Secret>)> {
        let url = endpoint.url();
        if endpoint.scheme == Scheme::Http {
            return Err(Error::usage(format!(
                "{url}: a listener needs a ws:// or wss:// URL (the stream is at ws://HOST:PORT/ws)"
            )));
        }
        let sent_us = unix_us();
        let wsclient::Connection { mut ws, token } = wsclient::connect_within(
            &url,
            options.ca_file.as_deref(),
            credentials,
            options.timeout,
        )
        .map_err(|e| connect_error(&url, e))?;
        let hello = read_hello(&mut ws).map_err(|why| Error::source(&url, why))?;
        let mut clock = ClockOffset::default();
        clock.observe(sent_us, unix_us(), hello.server_time_ms);
        let now = Instant::now();
        let connection = Connection {
            ws,
            hello,
            clock,
            stall: options.stall,
            last_message: now,
            next_ping: now,
            next_ping_id: 1,
            pings: VecDeque::with_capacity(PINGS_IN_FLIGHT),
            pongs: 0,
            bye: None,
        };
        Ok((connection, token))
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
            let stall_at = self.last_message + self.stall;
            if now >= stall_at {
                return Event::Closed(Closed {
                    reason: format!("no data for {} ms", self.stall.as_millis()),
                    by_server: false,
                });
            }
            if now >= until {
                return Event::Idle;
            }
            let wake = until.min(self.next_ping).min(stall_at);
            let timeout = wake
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            if let Err(e) = self.ws.get_ref().tcp().set_read_timeout(Some(timeout)) {
                return Event::Closed(Closed {
                    reason: format!("socket: {e}"),
                    by_server: false,
                });
            }
            match self.ws.read() {
                Ok(message) => {
                    self.last_message = Instant::now();
                    if let Some(event) = self.on_message(message) {
                        return event;
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Event::Closed(self.closed_by(e)),
            }
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
            },
            (None, WsError::ConnectionClosed | WsError::AlreadyClosed) => Closed {
                reason: "closed by the server".into(),
                by_server: true,
            },
            (None, WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => Closed {
                reason: "connection reset by the server".into(),
                by_server: false,
            },
            (None, WsError::Io(io)) => Closed {
                reason: format!("connection lost: {io}"),
                by_server: false,
            },
            (None, other) => Closed {
                reason: format!("connection lost: {other}"),
                by_server: false,
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

/// Reads messages until `hello`, which must come first.
fn read_hello(ws: &mut WebSocket<ClientStream>) -> std::result::Result<Hello, String> {
    let message = ws.read().map_err(|e| format!("no hello: {e}"))?;
    let Message::Text(text) = message else {
        return Err("the first message is not a JSON hello".into());
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

/// A failed connect as the user sees it, always naming the URL; passwords and tokens are
/// never part of it.
fn connect_error(url: &str, e: ConnectError) -> Error {
    match e {
        ConnectError::Url(reason) => Error::usage(reason),
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
        // The server closes the connection on a wrong password, after the upgrade.
        ConnectError::Login(reason) => Error::Refused {
            what: url.to_string(),
            status: 401,
            reason: format!("password login: {reason}"),
            retry_after: None,
        },
        other => Error::source(url, other),
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

/// Now on this client's clock, µs since the epoch.
pub fn unix_us() -> u64 {
    audio::unix_micros(std::time::SystemTime::now())
}
