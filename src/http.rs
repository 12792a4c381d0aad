//! HTTP/1.1 on the shared port: reading request heads within limits, the routes, and the one
//! place where errors become responses. Responses are framed by tiny_http's `Response`.

use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tiny_http::{HTTPVersion, Header, Response, StatusCode};

use crate::auth::{self, LoginBodyError};
use crate::server::Server;
use crate::stream::SourceState;
use crate::ws;

/// The largest request head accepted; larger gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most header lines accepted; more gets 431.
pub const MAX_HEADERS: usize = 48;
/// The largest request body accepted (logins and admin calls are tiny); larger gets 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub type Reply = Response<Cursor<Vec<u8>>>;

/// A parsed request head (and its small body).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (in any of its lines) holds `token`, ignoring case:
    /// `Connection: keep-alive, Upgrade` holds `upgrade`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub fn keep_alive(&self) -> bool {
        if self.header_has_token("Connection", "close") {
            return false;
        }
        self.minor_version >= 1 || self.header_has_token("Connection", "keep-alive")
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// A request that cannot be served, and why: becomes a JSON `{"error": reason}` response.
#[derive(Debug)]
pub struct HttpError {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(&'static str, String)>,
}

impl HttpError {
    pub fn new(status: u16, reason: impl Into<String>) -> HttpError {
        HttpError {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> HttpError {
        self.headers.push((name, value.into()));
        self
    }

    /// The single place where an error becomes a response.
    pub fn into_reply(self) -> Reply {
        let mut reply = json_reply(self.status, &json!({ "error": self.reason }));
        for (name, value) in self.headers {
            add_header(&mut reply, name, &value);
        }
        reply
    }
}

impl From<auth::LoginRefused> for HttpError {
    fn from(refused: auth::LoginRefused) -> HttpError {
        match refused {
            auth::LoginRefused::TooManyFailures(wait) => HttpError::new(429, refused.reason())
                .with_header("Retry-After", auth::retry_after_secs(wait).to_string()),
            auth::LoginRefused::WrongPassword => HttpError::new(401, refused.reason()),
            auth::LoginRefused::NoRandomness => HttpError::new(500, refused.reason()),
        }
    }
}

/// How reading a request head ended, when it did not yield a request.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed (or went silent) between requests: a normal end.
    Closed,
    /// The request is malformed or over a limit: answer, then close.
    Bad(HttpError),
}

/// How long a connection may wait for a request, and take to send it.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Silence allowed before a request's first byte; then the connection is closed quietly.
    pub idle: Duration,
    /// Time allowed from a request's first byte to its last (head and body); then 408.
    pub head: Duration,
}

/// Reads one request from `stream`, starting with any bytes already in `buf`.
///
/// On success the bytes after the request (a pipelined request, or WebSocket frames sent right
/// after the handshake) are left in `buf`.
pub fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    peer: SocketAddr,
    timeouts: Timeouts,
) -> Result<Request, ReadError> {
    let idle_deadline = Instant::now() + timeouts.idle;
    let mut head_deadline = (!buf.is_empty()).then(|| Instant::now() + timeouts.head);
    // The bytes of `buf` already searched for the end of the head, so that a head trickled in
    // a few bytes at a time is searched once, not once per read.
    let mut searched: usize = 0;
    loop {
        let head_may_be_complete = buf.len() >= MAX_HEAD_BYTES
            || find_head_end(&buf[searched.saturating_sub(3)..]).is_some();
        if head_may_be_complete {
            if let Some((request, used)) = parse_request(buf, peer).map_err(ReadError::Bad)? {
                buf.drain(..used);
                return Ok(request);
            }
        } else {
            searched = buf.len();
        }
        let deadline = head_deadline.unwrap_or(idle_deadline);
        let got_some = !buf.is_empty();
        match read_some(stream, buf, deadline, MAX_HEAD_BYTES + MAX_BODY_BYTES)? {
            0 if got_some => {
                return Err(ReadError::Bad(HttpError::new(
                    400,
                    "connection closed mid-request",
                )));
            }
            0 => return Err(ReadError::Closed),
            _ => {
                head_deadline.get_or_insert_with(|| Instant::now() + timeouts.head);
            }
        }
    }
}

/// Parses the request at the start of `buf`: `Ok(None)` while its head or body is incomplete,
/// else the request and how many bytes it took. Every limit on the head and body is checked
/// here, so a pure function decides what a client's bytes mean (and can be fuzzed alone).
pub fn parse_request(buf: &[u8], peer: SocketAddr) -> Result<Option<(Request, usize)>, HttpError> {
    let Some(head_len) = find_head_end(buf) else {
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(HttpError::new(431, "request head larger than 8 KiB"));
        }
        return Ok(None);
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(HttpError::new(431, "request head larger than 8 KiB"));
    }
    let mut request = parse_head(&buf[..head_len], peer)?;
    if request.header("Transfer-Encoding").is_some() {
        return Err(HttpError::new(
            411,
            "chunked request bodies are not accepted; send Content-Length",
        ));
    }
    let body_len = content_length(&request)?;
    if body_len > MAX_BODY_BYTES {
        return Err(HttpError::new(413, "request body larger than 16 KiB"));
    }
    let end = head_len + body_len;
    if buf.len() < end {
        return Ok(None);
    }
    request.body = buf[head_len..end].to_vec();
    Ok(Some((request, end)))
}

/// The body length: digits only, and every `Content-Length` line must agree, so that no proxy
/// in front of earshot can read a different request boundary from the same bytes.
fn content_length(request: &Request) -> Result<usize, HttpError> {
    let mut length = None;
    for (_, value) in request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
    {
        let v = value.trim();
        let parsed = (!v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| HttpError::new(400, format!("bad Content-Length '{v}'")))?;
        if length.is_some_and(|l| l != parsed) {
            return Err(HttpError::new(400, "conflicting Content-Length headers"));
        }
        length = Some(parsed);
    }
    Ok(length.unwrap_or(0))
}

/// Reads what is available (up to `limit` bytes in `buf`) before `deadline`.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    limit: usize,
) -> Result<usize, ReadError> {
    let now = Instant::now();
    if now >= deadline {
        return Err(timeout_error(buf));
    }
    stream
        .set_read_timeout(Some(deadline - now))
        .map_err(|_| ReadError::Closed)?;
    let mut chunk = [0u8; 2048];
    let room = limit.saturating_sub(buf.len()).clamp(1, chunk.len());
    match stream.read(&mut chunk[..room]) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(timeout_error(buf))
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            Ok(read_some(stream, buf, deadline, limit)?)
        }
        Err(_) => Err(ReadError::Closed),
    }
}

fn timeout_error(buf: &[u8]) -> ReadError {
    if buf.is_empty() {
        ReadError::Closed
    } else {
        ReadError::Bad(HttpError::new(408, "request head not received in time"))
    }
}

/// The length of the HTTP head at the start of `buf`, through its blank line, once it is all there.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_head(head: &[u8], peer: SocketAddr) -> Result<Request, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HttpError::new(400, "incomplete request head"));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(
                431,
                format!("more than {MAX_HEADERS} header lines"),
            ));
        }
        Err(e) => return Err(HttpError::new(400, format!("malformed request: {e}"))),
    }
    let target = parsed.path.unwrap_or("/");
    if !target.starts_with('/') {
        return Err(HttpError::new(400, "request target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok(Request {
        method: parsed.method.unwrap_or("GET").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        minor_version: parsed.version.unwrap_or(1),
        headers,
        body: Vec::new(),
        peer,
    })
}

/// Answers a plain (non-WebSocket) request.
pub fn route(server: &Arc<Server>, request: &Request) -> Reply {
    let result = match request.path.as_str() {
        // Open even with a password: load balancers poll it.
        "/healthz" => only_get(request).map(|_| healthz(server)),
        "/api/status" => only_get(request)
            .and_then(|_| authorize(server, request))
            .map(|_| json_reply(200, &server.status_json())),
        "/api/session" => only_get(request).map(|_| session(server, request)),
        "/api/login" => only_post(request)
            .and_then(|_| ws::check_origin(request, &server.config.allowed_origins))
            .and_then(|_| login(server, request)),
        "/api/logout" => only_post(request)
            .and_then(|_| ws::check_origin(request, &server.config.allowed_origins))
            .map(|_| logout(server, request)),
        "/api/drain" => drain(server, request),
        "/ws" => Err(HttpError::new(
            400,
            "expected a WebSocket upgrade (GET with Upgrade: websocket)",
        )),
        path => match server.assets.get(path) {
            Some(asset) => only_get(request).map(|_| {
                let mut reply = Response::from_data(asset.body.into_owned());
                add_header(&mut reply, "Content-Type", asset.content_type);
                add_header(&mut reply, "Cache-Control", "no-cache");
                // Another site must not frame the page (and its login form) to steal clicks.
                add_header(&mut reply, "X-Frame-Options", "SAMEORIGIN");
                add_header(
                    &mut reply,
                    "Content-Security-Policy",
                    "frame-ancestors 'self'",
                );
                reply
            }),
            None => Err(HttpError::new(404, format!("no such path: {path}"))),
        },
    };
    result.unwrap_or_else(HttpError::into_reply)
}

/// `POST /api/drain`: an administrator's planned drain (see `drain.rs`).
fn drain(server: &Arc<Server>, request: &Request) -> Result<Reply, HttpError> {
    only_post(request)?;
    // A reverse proxy on this machine connects from loopback too: a request it relays (it says
    // so in a forwarding header) comes from somewhere else, and is refused like one would be.
    let relayed = request.headers.iter().any(|(name, _)| {
        ["X-Forwarded-For", "Forwarded", "X-Real-IP"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
    });
    if !request.peer.ip().is_loopback() || relayed {
        return Err(HttpError::new(
            403,
            "drain is allowed only from this machine, not through a proxy",
        ));
    }
    let grace_ms = server.config.drain_grace.as_millis() as u64;
    crate::drain::start(server, &format!("POST /api/drain from {}", request.peer));
    Ok(json_reply(
        202,
        &json!({ "status": "draining", "grace_ms": grace_ms }),
    ))
}

fn only_get(request: &Request) -> Result<(), HttpError> {
    match request.method.as_str() {
        "GET" | "HEAD" => Ok(()),
        other => Err(
            HttpError::new(405, format!("method {other} not allowed here"))
                .with_header("Allow", "GET, HEAD"),
        ),
    }
}

fn only_post(request: &Request) -> Result<(), HttpError> {
    match request.method.as_str() {
        "POST" => Ok(()),
        other => Err(
            HttpError::new(405, format!("method {other} not allowed here"))
                .with_header("Allow", "POST"),
        ),
    }
}

/// Lets a request through when authentication is off or it presents a valid token.
pub fn authorize(server: &Server, request: &Request) -> Result<(), HttpError> {
    let Some(auth) = &server.auth else {
        return Ok(());
    };
    let presented = auth::presented_tokens(request);
    let now = Instant::now();
    if presented.iter().any(|t| auth.tokens().is_valid(t, now)) {
        return Ok(());
    }
    let reason = if presented.is_empty() {
        "login required: POST the password to /api/login, then send the token"
    } else {
        "the token is invalid, expired or logged out: log in again"
    };
    Err(HttpError::new(401, reason).with_header("WWW-Authenticate", "Bearer realm=\"earshot\""))
}

/// `POST /api/login`: the password (JSON or form) for a token, also set as the page's cookie.
fn login(server: &Server, request: &Request) -> Result<Reply, HttpError> {
    if server.auth.is_none() {
        return Err(HttpError::new(
            404,
            "authentication is off (the server has no --password)",
        ));
    }
    let password = auth::login_password(request.header("Content-Type"), &request.body).map_err(
        |e| match e {
            LoginBodyError::UnsupportedType => HttpError::new(
                415,
                "send the password as JSON {\"password\": \"…\"} or as a form (password=…)",
            ),
            LoginBodyError::NoPassword => HttpError::new(400, "the body has no password"),
        },
    )?;
    let ttl = server.token_ttl();
    let token = server.login(server.client_ip(request), password.expose())?;
    let mut reply = json_reply(
        200,
        &json!({ "token": token.expose(), "expires_in_s": ttl.as_secs() }),
    );
    let cookie = auth::token_cookie(token.expose(), ttl, came_over_https(request));
    add_header(&mut reply, "Set-Cookie", &cookie);
    Ok(reply)
}

/// `POST /api/logout`: revokes every token the request presents and clears the cookie.
fn logout(server: &Server, request: &Request) -> Reply {
    if let Some(auth) = &server.auth {
        for token in auth::presented_tokens(request) {
            auth.tokens().revoke(&token);
        }
    }
    let mut reply = json_reply(200, &json!({ "status": "logged_out" }));
    add_header(
        &mut reply,
        "Set-Cookie",
        &auth::cleared_cookie(came_over_https(request)),
    );
    reply
}

/// `GET /api/session`: whether a password is needed and whether this request has a valid
/// token, so the page knows whether to show its login form.
fn session(server: &Server, request: &Request) -> Reply {
    let required = server.auth.is_some();
    let authenticated = required && authorize(server, request).is_ok();
    json_reply(
        200,
        &json!({ "auth_required": required, "authenticated": authenticated }),
    )
}

/// Whether the browser reached us over HTTPS, through a TLS-terminating proxy. Believed from
/// any client: a forged header only makes that client's own cookie `Secure`.
fn came_over_https(request: &Request) -> bool {
    request
        .header("X-Forwarded-Proto")
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

fn healthz(server: &Server) -> Reply {
    let (status, code) = match server.stream.state() {
        _ if server.draining() || server.shutting_down() => ("draining", 503),
        SourceState::Starting | SourceState::Live => ("ok", 200),
        SourceState::Down(_) => ("source_down", 503),
        SourceState::Ended(_) => ("source_ended", 503),
    };
    let body = json!({
        "status": status,
        "instance": server.config.instance_id,
        "uptime_s": server.started.elapsed().as_secs(),
        "listeners": server.listener_count(),
        "source": server.stream.source,
    });
    json_reply(code, &body)
}

pub fn json_reply(status: u16, body: &serde_json::Value) -> Reply {
    let mut reply =
        Response::from_data(body.to_string().into_bytes()).with_status_code(StatusCode(status));
    add_header(&mut reply, "Content-Type", "application/json");
    add_header(&mut reply, "Cache-Control", "no-store");
    reply
}

pub fn add_header(reply: &mut Reply, name: &str, value: &str) {
    if let Ok(header) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        reply.add_header(header);
    }
}

/// Writes a reply with tiny_http's framing (status line, Date, Content-Length).
///
/// Head and body go out in one write, so a client that reads only once (a WebSocket client
/// whose upgrade was refused) still gets the JSON reason. `close` says the connection ends
/// after this reply, with `Connection: close` (RFC 9112 §9.6): a proxy that keeps upstream
/// connections alive must not send its next request down one that is closing, or that request
/// (a POST is not retried) fails with 502. tiny_http drops a `Connection` header given to it,
/// so the line is put into the rendered head here.
pub fn write_reply(
    stream: &mut impl Write,
    reply: Reply,
    minor_version: u8,
    head_only: bool,
    close: bool,
) -> std::io::Result<()> {
    let mut reply = reply;
    add_header(
        &mut reply,
        "Server",
        concat!("earshot/", env!("CARGO_PKG_VERSION")),
    );
    // Browsers take every answer for what its Content-Type says, never for what it looks like.
    add_header(&mut reply, "X-Content-Type-Options", "nosniff");
    let version = HTTPVersion(1, minor_version.min(1));
    let mut bytes = Vec::with_capacity(512);
    reply.raw_print(&mut bytes, version, &[], head_only, None)?;
    if close {
        // After the status line, which raw_print always ends with CRLF.
        if let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") {
            bytes.splice(end + 2..end + 2, b"Connection: close\r\n".iter().copied());
        }
    }
    stream.write_all(&bytes)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Request, HttpError> {
        parse_head(text.as_bytes(), "127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn connection_tokens_are_matched_one_by_one_ignoring_case() {
        let r = parse("GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n").unwrap();
        assert!(r.header_has_token("connection", "upgrade"));
        assert!(!r.header_has_token("connection", "upgrad"));
        assert!(r.keep_alive());
    }

    #[test]
    fn malformed_heads_are_400_and_too_many_headers_431() {
        assert_eq!(parse("GARBAGE\r\n\r\n").unwrap_err().status, 400);
        let many: String = (0..60).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n"))
                .unwrap_err()
                .status,
            431
        );
        assert_eq!(
            parse("GET http://x/ HTTP/1.1\r\n\r\n").unwrap_err().status,
            400
        );
    }

    #[test]
    fn query_is_split_from_path() {
        let r = parse("GET /ws?token=abc HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(
            (r.path.as_str(), r.query.as_str(), r.minor_version),
            ("/ws", "token=abc", 0)
        );
        assert!(!r.keep_alive());
    }
}
