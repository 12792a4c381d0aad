//! The server: opens the source, binds the one port, runs the accept loop, and gives each
//! connection its own thread that serves HTTP requests until one upgrades to a WebSocket.
//!
//! earshot owns the accept loop instead of `tiny_http::Server` (see README, "Why earshot owns
//! the accept loop"): one thread per connection, spawned at accept time, answers every
//! simultaneous connect, and an upgraded socket stays a plain `TcpStream` with timeouts.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::assets::Assets;
use crate::auth::{Auth, LoginRefused, Secret};
use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::http::{self, HttpError, ReadError};
use crate::limits::{ConnectionLimiter, ConnectionPermit, LoginLimiter};
use crate::stream::{SourceState, Stream};
use crate::{drain, producer, session, source, ws};

/// Stack for connection threads: enough for parsing and framing, small enough for thousands.
const CONNECTION_STACK: usize = 128 * 1024;
/// Pending connections the kernel queues while the accept thread catches up (capped by
/// net.core.somaxconn); large so that a thousand simultaneous connects are all accepted.
const LISTEN_BACKLOG: i32 = 4096;
/// How long shutdown waits for listeners to receive `bye` and close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a refused connection's request is read (and discarded) after the refusal is sent,
/// so that closing does not reset the connection before the client has read why.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Everything a connection thread needs, shared by all of them.
pub struct Server {
    pub config: ServeConfig,
    pub stream: Arc<Stream>,
    pub assets: Assets,
    pub started: Instant,
    pub local_addr: SocketAddr,
    /// `None` when no password is set.
    pub auth: Option<Auth>,
    logins: LoginLimiter,
    connections: ConnectionLimiter,
    listeners: AtomicUsize,
    draining: AtomicBool,
    shutting_down: AtomicBool,
}

impl Server {
    pub fn listener_count(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    /// When sessions wake, for the listeners connected now.
    pub fn wakes(&self) -> session::Wakes {
        session::Wakes::new(
            self.listener_count(),
            self.stream.chunk_ms,
            self.config.batch_chunks,
        )
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks the server draining; false if it already was.
    pub fn begin_drain(&self) -> bool {
        !self.draining.swap(true, Ordering::AcqRel)
    }

    /// Marks the server shutting down; false if it already was.
    pub fn begin_shutdown(&self) -> bool {
        !self.shutting_down.swap(true, Ordering::AcqRel)
    }

    /// Takes a listener slot, or `None` when `--max-listeners` are already connected.
    pub fn join_listener(&self) -> Option<ListenerSlot<'_>> {
        let max = self.config.max_listeners;
        self.listeners
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Stream::count(&self.stream.counters.listeners_total, 1);
        Some(ListenerSlot(&self.listeners))
    }

    pub fn token_ttl(&self) -> Duration {
        self.config.token_ttl
    }

    fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.config.trusted_proxies.iter().any(|r| r.contains(ip))
    }

    /// The client's address: the peer's, or for a `--trusted-proxy` peer the address that proxy
    /// appended to `X-Forwarded-For` (the last one; earlier ones the client could have forged).
    pub fn client_ip(&self, request: &http::Request) -> IpAddr {
        let peer = request.peer.ip();
        if !self.is_trusted_proxy(peer) {
            return peer;
        }
        request
            .headers
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-Forwarded-For"))
            .and_then(|(_, v)| v.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
            .unwrap_or(peer)
    }

    /// Checks a password from `client`, under the brute-force limit; a token when it matches.
    /// Shared by `POST /api/login` and the WebSocket first-message login.
    pub fn login(&self, client: IpAddr, password: &str) -> Result<Secret, LoginRefused> {
        let Some(auth) = &self.auth else {
            return Err(LoginRefused::WrongPassword);
        };
        let now = Instant::now();
        if let Err(wait) = self.logins.check(client, now) {
            crate::log!("login from {client} refused: too many failed attempts");
            return Err(LoginRefused::TooManyFailures(wait));
        }
        if !auth.password_matches(password) {
            self.logins.record_failure(client, now);
            crate::log!("failed login from {client}");
            return Err(LoginRefused::WrongPassword);
        }
        self.logins.record_success(client);
        let token = auth.tokens().issue(now).map_err(|e| {
            crate::log!("cannot make a token: {e}");
            LoginRefused::NoRandomness
        })?;
        crate::log!("login from {client} ({} sessions)", auth.tokens().live(now));
        Ok(token)
    }

    pub fn status_json(&self) -> serde_json::Value {
        let s = &self.stream;
        let c = &s.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let stats = s.source_stats();
        let state = s.state();
        let (state_name, state_reason) = state.describe();
        json!({
            "instance": self.config.instance_id,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "stream": {
                "name": s.name,
                "codec": crate::audio::CODEC_PCM_S16LE,
                "sample_rate": s.format.sample_rate,
                "channels": s.format.channels,
                "chunk_ms": s.chunk_ms,
                "chunk_frames": s.chunk_frames,
                "buffer_ms": self.config.buffer_ms,
                "burst_ms": self.config.burst_ms,
                "align": if s.aligned() { "clock" } else { "none" },
            },
            "source": {
                "uri": s.source,
                "state": state_name,
                "reason": state_reason,
                "corrupt_frames": stats.corrupt_frames,
                "loops": stats.loops,
                "xruns": stats.xruns,
                "reconnects": load(&c.source_reconnects),
                "input": stats.input.map(|i| i.to_json()),
            },
            "listeners": {
                "current": self.listener_count(),
                "max": self.config.max_listeners,
                "total": load(&c.listeners_total),
            },
            "counters": {
                "chunks_produced": load(&c.chunks_produced),
                "listener_skips": load(&c.listener_skips),
                "chunks_skipped": load(&c.chunks_skipped),
                "slow_disconnects": load(&c.slow_disconnects),
                "bytes_sent": load(&c.bytes_sent),
                "producer_resyncs": load(&c.producer_resyncs),
            },
        })
    }
}

/// A connected listener, counted until dropped.
pub struct ListenerSlot<'a>(&'a AtomicUsize);

impl Drop for ListenerSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `earshot serve` until SIGINT or SIGTERM.
pub fn run(config: ServeConfig) -> Result<()> {
    // Everything that can fail on a bad file or flag fails before the port opens.
    let source = match &config.source {
        Some(uri) => source::open(uri, &config.capture)?,
        None => default_source()?,
    };
    let aligned = config.align_clock && source.pacing() == source::Pacing::Clock;
    let stream = Arc::new(Stream::new(
        "main",
        source.describe(),
        source.format(),
        config.chunk_ms,
        config.buffer_ms,
        aligned,
    ));
    let listener = bind(config.listen)?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::io(format!("{}: local address", config.listen), e))?;
    let auth = config
        .password
        .as_ref()
        .map(|p| Auth::new(p, config.token_ttl));
    let server = Arc::new(Server {
        assets: Assets::new(config.www.clone()),
        auth,
        logins: LoginLimiter::default(),
        connections: ConnectionLimiter::new(config.max_per_address),
        config,
        stream: stream.clone(),
        started: Instant::now(),
        local_addr,
        listeners: AtomicUsize::new(0),
        draining: AtomicBool::new(false),
        shutting_down: AtomicBool::new(false),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let producer = producer::spawn(source, stream.clone(), stop.clone())
        .map_err(|e| Error::io("start producer thread", e))?;
    watch_source_end(server.clone(), producer)?;
    watch_signals(server.clone())?;
    let format = stream.format;
    crate::log!(
        "streaming {} ({} Hz, {} ch, {} ms chunks) as instance {}; password {}",
        stream.source,
        format.sample_rate,
        format.channels,
        stream.chunk_ms,
        server.config.instance_id,
        if server.auth.is_some() {
            "required"
        } else {
            "off"
        }
    );
    // The one line on standard output: scripts and tests read the real port from it.
    crate::outln!("earshot listening on http://{local_addr}/ (WebSocket: ws://{local_addr}/ws)");
    let _ = std::io::stdout().flush();
    if local_addr.ip().is_unspecified() {
        let port = local_addr.port();
        crate::log!(
            "open http://localhost:{port}/ here, or http://<this machine's address>:{port}/ from another"
        );
    }

    for conn in listener.incoming() {
        if server.shutting_down() {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, keep serving the rest.
                crate::log!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Counted here, in accept order, so a burst of connections from one address cannot slip
        // past the limit while their threads are still starting.
        let permit = admit_connection(&server, &stream);
        let server = server.clone();
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || serve_connection(&server, stream, permit));
        if let Err(e) = spawned {
            crate::log!("cannot start a connection thread: {e}; connection dropped");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while server.listener_count() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    crate::log!(
        "shut down ({} listeners still connected)",
        server.listener_count()
    );
    Ok(())
}

fn default_source() -> Result<Box<dyn source::Source>> {
    let dir = Path::new("audio");
    match source::first_audio_file(dir) {
        Some(path) => source::open_file(&path),
        None => {
            crate::log!(
                "warning: no *.mp3 or *.wav in ./audio; streaming the test signal (tone:). \
                 Put a file in ./audio or pass --source PATH"
            );
            source::open("tone:", &source::CaptureParams::default())
        }
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let fail = |e| Error::io(format!("cannot listen on {addr}"), e);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(LISTEN_BACKLOG).map_err(fail)?;
    Ok(socket.into())
}

/// SIGINT shuts down; SIGTERM shuts down, or drains with `--drain-on-sigterm`; SIGUSR1 drains.
fn watch_signals(server: Arc<Server>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1])
        .map_err(|e| Error::io("install signal handlers", e))?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGUSR1 => {
                        drain::start(&server, "SIGUSR1");
                    }
                    SIGTERM if server.config.drain_on_sigterm => {
                        drain::start(&server, "SIGTERM");
                    }
                    _ => drain::shut_down(&server, &format!("signal {sig}")),
                }
            }
        })
        .map_err(|e| Error::io("start signal thread", e))?;
    Ok(())
}

/// When the source ends for good (the writer closed a pipe), lets every listener receive the
/// last audio and its `bye`, then shuts down: with nothing left to stream, the server is done.
fn watch_source_end(server: Arc<Server>, producer: thread::JoinHandle<()>) -> Result<()> {
    thread::Builder::new()
        .name("source-end".into())
        .spawn(move || {
            let _ = producer.join();
            if !matches!(server.stream.state(), SourceState::Ended(_)) {
                return;
            }
            // A listener behind a stalled socket is dropped after --send-timeout-ms anyway.
            let deadline = Instant::now() + server.config.send_timeout + SHUTDOWN_GRACE;
            while server.listener_count() > 0 && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            drain::shut_down(&server, "source ended");
        })
        .map_err(|e| Error::io("start source watcher thread", e))?;
    Ok(())
}

/// A connection's place under `--max-per-address`: `Err` when its address has no room left.
type Permit = std::result::Result<Option<ConnectionPermit>, ()>;

fn admit_connection(server: &Server, stream: &TcpStream) -> Permit {
    match stream.peer_addr() {
        Ok(peer) if !server.is_trusted_proxy(peer.ip()) => {
            server.connections.admit(peer.ip()).map(Some).ok_or(())
        }
        _ => Ok(None),
    }
}

/// Serves one TCP connection: HTTP requests (keep-alive) until it closes or upgrades. `server`
/// is an `Arc` because a request may start background work that outlives it (a drain's timer).
fn serve_connection(server: &Arc<Server>, mut stream: TcpStream, permit: Permit) {
    let Ok(peer) = stream.peer_addr() else { return };
    let _ = stream.set_nodelay(true);
    let Ok(_permit) = permit else {
        let limit = server.connections.max();
        return refuse_connection(
            stream,
            HttpError::new(
                429,
                format!("too many connections from {} (limit {limit})", peer.ip()),
            )
            .with_header("Retry-After", "5"),
            1,
        );
    };
    let timeouts = http::Timeouts {
        idle: server.config.idle_timeout,
        head: server.config.head_timeout,
    };
    let mut buf = Vec::with_capacity(1024);
    loop {
        if server.shutting_down() {
            return;
        }
        let request = match http::read_request(&mut stream, &mut buf, peer, timeouts) {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(err)) => return refuse_connection(stream, err, 1),
        };
        if request.path == "/ws" && request.header("Upgrade").is_some() {
            upgrade(server, stream, request, buf);
            return;
        }
        let reply = http::route(server, &request);
        let close = !request.keep_alive() || server.shutting_down();
        let head_only = request.is_head();
        if http::write_reply(&mut stream, reply, request.minor_version, head_only, close).is_err()
            || close
        {
            return;
        }
    }
}

/// Answers a connection with an error, then closes it without losing the answer to a reset.
fn refuse_connection(mut stream: TcpStream, err: HttpError, minor_version: u8) {
    if http::write_reply(&mut stream, err.into_reply(), minor_version, false, true).is_ok() {
        lingering_close(&mut stream, REFUSAL_LINGER);
    }
}

/// Ends our side (FIN), then reads and drops what the client still sends, for at most `wait`.
/// Closing with unread data would send a reset, which can destroy the last reply before the
/// client has read it.
pub fn lingering_close(stream: &mut TcpStream, wait: Duration) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + wait;
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            return;
        }
    }
}

/// How a WebSocket client proves it may listen.
enum Admission {
    /// Authentication is off, or the request carried a valid token.
    Admitted,
    /// `?auth=message`: the password comes as the first WebSocket message.
    LoginByMessage(IpAddr),
}

/// Decides, before the upgrade, whether this request may become a listener.
fn admit(server: &Server, request: &http::Request) -> std::result::Result<Admission, HttpError> {
    ws::check_origin(request, &server.config.allowed_origins)?;
    if server.auth.is_none() {
        return Ok(Admission::Admitted);
    }
    let by_message = crate::auth::query_values(&request.query, "auth").any(|v| v == "message");
    if !by_message {
        http::authorize(server, request)?;
        return Ok(Admission::Admitted);
    }
    let client = server.client_ip(request);
    if let Err(wait) = server.logins.check(client, Instant::now()) {
        return Err(LoginRefused::TooManyFailures(wait).into());
    }
    Ok(Admission::LoginByMessage(client))
}

fn upgrade(server: &Server, stream: TcpStream, request: http::Request, leftover: Vec<u8>) {
    let refuse = |stream: TcpStream, err: HttpError| {
        refuse_connection(stream, err, request.minor_version);
    };
    let accept_key = match ws::check_upgrade(&request) {
        Ok(key) => key,
        Err(err) => return refuse(stream, err),
    };
    let admission = match admit(server, &request) {
        Ok(a) => a,
        Err(err) => return refuse(stream, err),
    };
    if server.shutting_down() || server.draining() {
        // 503 before the upgrade lets a load balancer retry the request on another instance.
        return refuse(
            stream,
            HttpError::new(
                503,
                "server is draining; connect again to reach another instance",
            )
            .with_header("Retry-After", "0"),
        );
    }
    let Some(slot) = server.join_listener() else {
        return refuse(
            stream,
            HttpError::new(
                503,
                format!("listener limit reached ({})", server.config.max_listeners),
            )
            .with_header("Retry-After", "5"),
        );
    };
    session::tune_socket(&stream, &server.stream, server.config.burst_ms);
    let socket = match ws::accept(stream, &accept_key, leftover) {
        Ok(ws) => ws,
        Err(e) => {
            crate::log!("listener {}: handshake failed: {e}", request.peer);
            return;
        }
    };
    let login = match admission {
        Admission::Admitted => None,
        Admission::LoginByMessage(client) => Some(client),
    };
    session::run(server, socket, request.peer, slot, login);
}
