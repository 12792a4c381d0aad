//! The client side of the stream, for `earshot listen` and the tests: `ws://` and `wss://`
//! URLs, a token or a password, and TLS verified against the system's roots or a given CA file.
//!
//! TLS is rustls over a plain `TcpStream` that stays reachable ([`ClientStream::tcp`]), so a
//! client can set read timeouts on a `wss://` connection exactly as on a `ws://` one.
//! Certificates are always verified; a self-signed proxy is trusted by passing its CA file.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::{HeaderValue, Uri};
use tungstenite::{Message, WebSocket};

use crate::auth::Secret;
use crate::protocol::ServerMessage;

/// How long connecting, the TLS and WebSocket handshakes and the login may each take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where Debian, Ubuntu, Alpine, Fedora and friends keep the system's CA bundle.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// How a client proves it may listen.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// The server has no password.
    None,
    /// A token from `POST /api/login` or an earlier password login, sent as
    /// `Authorization: Bearer`.
    Token(&'a str),
    /// The password, sent as the first WebSocket message (`/ws?auth=message`); the server
    /// answers with a token, returned in [`Connection::token`] for the next connection.
    Password(&'a str),
}

/// A connected listener, right before the server's `hello`.
pub struct Connection {
    pub ws: WebSocket<ClientStream>,
    /// The token a password login earned, to reconnect without the password.
    pub token: Option<Secret>,
}

/// A plain or TLS connection to the server.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl ClientStream {
    /// The TCP socket underneath, for timeouts and shutdown.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(s) => s,
            ClientStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.read(buf),
            ClientStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.write(buf),
            ClientStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.flush(),
            ClientStream::Tls(s) => s.flush(),
        }
    }
}

/// Why a connection could not be made. Only `Refused` with a 503 (or 429) is worth retrying
/// soon; the others need a changed URL, certificate or credential.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not `ws://HOST[:PORT]/PATH` or `wss://…`.
    Url(String),
    /// Resolving or connecting failed.
    Io { context: String, source: io::Error },
    /// The CA file could not be read, or TLS refused the server (an untrusted certificate, a
    /// protocol alert). A connection lost during the handshake is `Io`.
    Tls(String),
    /// The server answered the upgrade with an HTTP error: 401 (no or bad token), 403 (origin),
    /// 429 (too many failed logins or connections), 503 (full or shutting down).
    Refused {
        status: u16,
        reason: String,
        retry_after: Option<u64>,
    },
    /// The server refused the password sent as the first message.
    Login(String),
    /// The WebSocket handshake or the login exchange went wrong in another way.
    Protocol(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Url(reason) => write!(f, "{reason}"),
            ConnectError::Io { context, source } => write!(f, "{context}: {source}"),
            ConnectError::Tls(reason) => write!(f, "tls: {reason}"),
            ConnectError::Refused { status, reason, .. } => {
                write!(f, "refused with {status}: {reason}")
            }
            ConnectError::Login(reason) => write!(f, "login refused: {reason}"),
            ConnectError::Protocol(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Connects to `url` (`ws://` or `wss://`) as a listener.
///
/// `ca_file` is a PEM file of the certificates to trust for `wss://` instead of the system's
/// (a private CA, or a proxy's self-signed certificate). On success the server's `hello` is
/// the next message to read; a read timeout of [`CONNECT_TIMEOUT`] is left on the socket.
pub fn connect(
    url: &str,
    ca_file: Option<&Path>,
    credentials: Credentials<'_>,
) -> Result<Connection, ConnectError> {
    connect_within(url, ca_file, credentials, CONNECT_TIMEOUT)
}

/// [`connect`] with another limit than [`CONNECT_TIMEOUT`] for each step (`earshot listen
/// --connect-timeout-ms`); the socket is left with that read timeout.
pub fn connect_within(
    url: &str,
    ca_file: Option<&Path>,
    credentials: Credentials<'_>,
    timeout: Duration,
) -> Result<Connection, ConnectError> {
    let uri = parse_url(url)?;
    let uri = match credentials {
        Credentials::Password(_) => with_query(&uri, "auth=message")?,
        _ => uri,
    };
    let mut request = (&uri)
        .into_client_request()
        .map_err(|e| ConnectError::Url(format!("{url}: {e}")))?;
    if let Credentials::Token(token) = credentials {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ConnectError::Url("the token has characters a header cannot carry".into())
        })?;
        request.headers_mut().insert("Authorization", value);
    }
    let stream = open_stream_within(&uri, ca_file, timeout)?;
    let (ws, _) = tungstenite::client(request, stream).map_err(handshake_error)?;
    let mut connection = Connection { ws, token: None };
    if let Credentials::Password(password) = credentials {
        connection.token = Some(login(&mut connection.ws, password)?);
    }
    Ok(connection)
}

/// Opens the TCP connection for a `ws://` or `wss://` URI, and the TLS session for `wss://`.
/// Also useful for plain HTTPS requests to the same server.
pub fn open_stream(uri: &Uri, ca_file: Option<&Path>) -> Result<ClientStream, ConnectError> {
    open_stream_within(uri, ca_file, CONNECT_TIMEOUT)
}

fn open_stream_within(
    uri: &Uri,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<ClientStream, ConnectError> {
    let tls = uri.scheme_str() == Some("wss") || uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| ConnectError::Url(format!("{uri}: no host")))?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = connect_tcp(bare_host, port, timeout)?;
    if !tls {
        return Ok(ClientStream::Plain(tcp));
    }
    let config = tls_config(ca_file)?;
    let name = ServerName::try_from(bare_host.to_string())
        .map_err(|_| ConnectError::Url(format!("{host}: not a valid TLS server name")))?;
    let session =
        ClientConnection::new(config, name).map_err(|e| ConnectError::Tls(e.to_string()))?;
    let mut stream = StreamOwned::new(session, tcp);
    // Complete the TLS handshake now, so a bad certificate is reported as such. rustls reports
    // what TLS itself refused (a certificate, an alert) as InvalidData; anything else is the
    // connection failing underneath, as when a restarting proxy cuts it, which may pass.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => ConnectError::Tls(format!("{host}:{port}: {e}")),
                _ => ConnectError::Io {
                    context: format!("tls handshake with {host}:{port}"),
                    source: e,
                },
            })?;
    }
    Ok(ClientStream::Tls(Box::new(stream)))
}

/// Parses and checks a stream URL; a URL without a path gets `/ws`.
pub fn parse_url(url: &str) -> Result<Uri, ConnectError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| ConnectError::Url(format!("{url}: {e}")))?;
    if !matches!(uri.scheme_str(), Some("ws") | Some("wss")) || uri.host().is_none() {
        return Err(ConnectError::Url(format!(
            "{url}: expected ws://HOST:PORT/ws or wss://HOST/ws"
        )));
    }
    if uri.path() == "/" && !url.trim_end().ends_with('/') {
        return with_path(&uri, "/ws");
    }
    Ok(uri)
}

fn with_path(uri: &Uri, path: &str) -> Result<Uri, ConnectError> {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    rebuild(uri, &format!("{path}{query}"))
}

fn with_query(uri: &Uri, param: &str) -> Result<Uri, ConnectError> {
    let path_and_query = match uri.query() {
        Some(q) if !q.is_empty() => format!("{}?{q}&{param}", uri.path()),
        _ => format!("{}?{param}", uri.path()),
    };
    rebuild(uri, &path_and_query)
}

fn rebuild(uri: &Uri, path_and_query: &str) -> Result<Uri, ConnectError> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|e| ConnectError::Url(format!("{uri}: {e}")))?,
    );
    Uri::from_parts(parts).map_err(|e| ConnectError::Url(format!("{uri}: {e}")))
}

fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let io_error = |context: String| move |source| ConnectError::Io { context, source };
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(io_error(format!("cannot resolve {host}")))?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                tcp.set_read_timeout(Some(timeout))
                    .and_then(|_| tcp.set_write_timeout(Some(timeout)))
                    .map_err(io_error(format!("{host}:{port}")))?;
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    Err(ConnectError::Io {
        context: format!("cannot connect to {host}:{port}"),
        source: last,
    })
}

/// Trust `ca_file`'s certificates if given, else the system's CA bundle (`SSL_CERT_FILE` or
/// the usual paths).
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, ConnectError> {
    let bundle = match ca_file {
        Some(path) => path.to_path_buf(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(Into::into)
            .or_else(|| {
                SYSTEM_CA_BUNDLES
                    .iter()
                    .map(Path::new)
                    .find(|p| p.is_file())
                    .map(Path::to_path_buf)
            })
            .ok_or_else(|| {
                ConnectError::Tls("no CA bundle found; give the CA file to trust".into())
            })?,
    };
    let fail = |reason: String| ConnectError::Tls(format!("{}: {reason}", bundle.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&bundle).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificates in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Turns a refused handshake into the server's status and JSON reason.
fn handshake_error(
    e: tungstenite::HandshakeError<tungstenite::ClientHandshake<ClientStream>>,
) -> ConnectError {
    let e = match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => {
            return ConnectError::Protocol("handshake timed out".into());
        }
    };
    match e {
        tungstenite::Error::Http(response) => {
            let reason = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "no reason given".into());
            let retry_after = response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok()?.trim().parse().ok());
            ConnectError::Refused {
                status: response.status().as_u16(),
                reason,
                retry_after,
            }
        }
        tungstenite::Error::Io(source) => ConnectError::Io {
            context: "websocket handshake".into(),
            source,
        },
        other => ConnectError::Protocol(format!("websocket handshake: {other}")),
    }
}

/// Sends the password as the first message and reads the token the server answers with.
fn login(ws: &mut WebSocket<ClientStream>, password: &str) -> Result<Secret, ConnectError> {
    let message = serde_json::json!({ "type": "login", "password": password }).to_string();
    ws.send(Message::text(message))
        .map_err(|e| ConnectError::Protocol(format!("sending the login: {e}")))?;
    loop {
        let message = ws
            .read()
            .map_err(|e| ConnectError::Protocol(format!("waiting for the token: {e}")))?;
        match message {
            Message::Text(text) => {
                return match serde_json::from_str::<ServerMessage>(text.as_str()) {
                    Ok(ServerMessage::Token { token, .. }) => Ok(token),
                    Ok(ServerMessage::Hello { .. }) => Err(ConnectError::Login(
                        "the server has no password: connect without one".into(),
                    )),
                    _ => Err(ConnectError::Protocol(
                        "the server did not answer the login with a token".into(),
                    )),
                };
            }
            Message::Close(frame) => {
                return Err(ConnectError::Login(
                    frame
                        .map(|f| f.reason.to_string())
                        .unwrap_or_else(|| "closed without a reason".into()),
                ));
            }
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_websocket_scheme_and_default_to_the_ws_path() {
        assert_eq!(
            parse_url("ws://h:8080").unwrap().to_string(),
            "ws://h:8080/ws"
        );
        assert_eq!(
            parse_url("wss://h/ws?x=1").unwrap().to_string(),
            "wss://h/ws?x=1"
        );
        assert!(parse_url("http://h/ws").is_err());
        assert!(parse_url("h:8080").is_err());
        let uri = parse_url("ws://h/ws?x=1").unwrap();
        assert_eq!(
            with_query(&uri, "auth=message").unwrap().to_string(),
            "ws://h/ws?x=1&auth=message"
        );
    }

    #[test]
    fn a_missing_ca_file_is_a_tls_error_naming_the_file() {
        let err = tls_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            err.to_string().starts_with("tls: /nonexistent/ca.pem: "),
            "{err}"
        );
    }
}
