//! The load generator's side of connecting one listener: TCP connect, then the WebSocket
//! upgrade (or, for an HTTP stream, the GET) on a blocking socket with a timeout, checked like a
//! real client checks it (status, `Sec-WebSocket-Accept`), before the socket turns non-blocking.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::auth::Secret;
use crate::client::endpoint::{Endpoint, Scheme};

/// Largest HTTP response head accepted from the server.
const MAX_HEAD: usize = 16 * 1024;

/// Connects, performs the WebSocket (or HTTP) handshake, and makes the socket non-blocking;
/// returns it with the bytes read past the response head (the start of the stream). `token` is
/// presented as `Authorization: Bearer` to a WebSocket server with a password.
pub fn open(
    endpoint: &Endpoint,
    addr: SocketAddr,
    timeout: Duration,
    token: Option<&Secret>,
) -> Result<(TcpStream, Vec<u8>), String> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let key = tungstenite::handshake::client::generate_key();
    let request = match endpoint.scheme {
        // wss:// is refused by `bench`'s config: its sockets are plain.
        Scheme::Ws | Scheme::Wss => format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
            endpoint.path,
            endpoint.host_port(),
            token.map_or(String::new(), |t| format!(
                "Authorization: Bearer {}\r\n",
                t.expose()
            ))
        ),
        Scheme::Http => format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: earshot-bench\r\nConnection: close\r\n\r\n",
            endpoint.path,
            endpoint.host_port()
        ),
    };
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| format!("send request: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let head_len = loop {
        if len == buf.len() {
            if buf.len() >= MAX_HEAD {
                return Err("response head too large".into());
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = (&stream)
            .read(&mut buf[len..])
            .map_err(|e| format!("read response: {e}"))?;
        if n == 0 {
            return Err("connection closed during the handshake".into());
        }
        len += n;
        if let Some(end) = crate::http::find_head_end(&buf[..len]) {
            break end;
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response
        .parse(&buf[..head_len])
        .map_err(|e| format!("bad response: {e}"))?;
    let code = response.code.unwrap_or(0);
    let expected = if endpoint.scheme == Scheme::Ws {
        101
    } else {
        200
    };
    if code != expected {
        let body = String::from_utf8_lossy(&buf[head_len..len])
            .trim()
            .to_string();
        return Err(format!("server answered {code} {body}").trim().to_string());
    }
    if endpoint.scheme == Scheme::Ws {
        let accept = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Accept"))
            .map(|h| h.value);
        let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
        if accept != Some(want.as_bytes()) {
            return Err("wrong Sec-WebSocket-Accept".into());
        }
    }
    stream
        .set_nonblocking(true)
        .map_err(|e| format!("non-blocking: {e}"))?;
    Ok((stream, buf[head_len..len].to_vec()))
}
