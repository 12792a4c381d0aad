//! The WebSocket upgrade on the shared port: checking the request (RFC 6455 §4.2.1), answering
//! 101 with the accept key, and handing the raw socket to tungstenite.
//!
//! The upgrade is done here rather than through `tiny_http::Request::upgrade`, which would keep a
//! tiny_http thread blocked for the connection's whole life and hide the socket behind a
//! `Box<dyn ReadWrite>` with no timeouts (see README, "Why earshot owns the accept loop").

use std::net::TcpStream;

use tiny_http::{Response, StatusCode};
use tungstenite::WebSocket;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::http::{self, HttpError, Request};
use crate::protocol::MAX_CLIENT_MESSAGE;

/// Checks an upgrade request; returns the `Sec-WebSocket-Accept` value to answer with.
pub fn check_upgrade(request: &Request) -> Result<String, HttpError> {
    if request.method != "GET" {
        return Err(HttpError::new(
            400,
            format!("WebSocket upgrade needs GET, not {}", request.method),
        ));
    }
    if request.minor_version < 1 {
        return Err(HttpError::new(400, "WebSocket upgrade needs HTTP/1.1"));
    }
    if !request.header_has_token("Upgrade", "websocket") {
        return Err(HttpError::new(400, "missing 'Upgrade: websocket' header"));
    }
    if !request.header_has_token("Connection", "upgrade") {
        return Err(HttpError::new(
            400,
            "missing 'upgrade' in the Connection header",
        ));
    }
    match request.header("Sec-WebSocket-Version").map(str::trim) {
        Some("13") => {}
        Some(v) => {
            return Err(HttpError::new(
                400,
                format!("unsupported Sec-WebSocket-Version '{v}' (only 13)"),
            )
            .with_header("Sec-WebSocket-Version", "13"));
        }
        None => {
            return Err(HttpError::new(400, "missing Sec-WebSocket-Version header")
                .with_header("Sec-WebSocket-Version", "13"));
        }
    }
    let key = request
        .header("Sec-WebSocket-Key")
        .map(str::trim)
        .unwrap_or("");
    if key.is_empty() {
        return Err(HttpError::new(400, "missing Sec-WebSocket-Key header"));
    }
    if !is_valid_key(key) {
        return Err(HttpError::new(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Refuses a browser page from another site (cross-site WebSocket hijacking).
///
/// Browsers always send `Origin` with a WebSocket upgrade, and a page cannot forge it; native
/// clients usually send none and are let through (they could send anything anyway). A page is
/// allowed when its origin names the host it connected to (the `Host` header, which a reverse
/// proxy must pass on unchanged) or is one of `--allowed-origin`.
pub fn check_origin(request: &Request, allowed: &[String]) -> Result<(), HttpError> {
    let Some(origin) = request.header("Origin") else {
        return Ok(());
    };
    if allowed.iter().any(|a| a == "*") {
        return Ok(());
    }
    let permitted = normalize_origin(origin).is_some_and(|o| {
        allowed.contains(&o)
            || request
                .header("Host")
                .is_some_and(|h| same_authority(&o, h))
    });
    if permitted {
        return Ok(());
    }
    let shown: String = origin.chars().take(200).collect();
    Err(HttpError::new(
        403,
        format!("origin {shown} is not allowed here (see --allowed-origin)"),
    ))
}

/// `scheme://host[:port]` in lowercase without a default port or trailing slash, as browsers
/// serialise origins; `*` stays `*`. `None` for anything that is not an http(s) origin.
pub fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    if text == "*" {
        return Some(text);
    }
    let (scheme, authority) = text.trim_end_matches('/').split_once("://")?;
    if authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let default = default_port(scheme)?;
    let (host, port) = split_host_port(authority)?;
    Some(match port {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Whether a normalised origin names the same host and port as a `Host` header. A `Host`
/// without a port means the origin scheme's default one.
fn same_authority(origin: &str, host_header: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let host_header = host_header.trim().to_ascii_lowercase();
    let (Some(default), Some((o_host, o_port)), Some((h_host, h_port))) = (
        default_port(scheme),
        split_host_port(authority),
        split_host_port(&host_header),
    ) else {
        return false;
    };
    o_host == h_host && o_port.unwrap_or(default) == h_port.unwrap_or(default)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` into host and port.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let rest = &authority[end..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        (&authority[..end], port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

/// A key is the base64 of 16 bytes: 22 alphabet characters and `==` (RFC 6455 §4.1).
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Memory per connection matters at thousands of listeners: tungstenite's default read buffer is
/// 128 KiB. Clients only send small control messages, so 4 KiB is plenty, and any message over
/// [`MAX_CLIENT_MESSAGE`] is refused with close code 1009.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

/// Answers 101 and wraps the socket; `leftover` holds bytes the client sent after its request.
pub fn accept(
    mut stream: TcpStream,
    accept_key: &str,
    leftover: Vec<u8>,
) -> std::io::Result<WebSocket<TcpStream>> {
    let mut reply = Response::from_data(Vec::new()).with_status_code(StatusCode(101));
    http::add_header(&mut reply, "Sec-WebSocket-Accept", accept_key);
    let mut head = Vec::with_capacity(256);
    reply.raw_print(
        &mut head,
        tiny_http::HTTPVersion(1, 1),
        &[],
        true,
        Some("websocket"),
    )?;
    std::io::Write::write_all(&mut stream, &head)?;
    Ok(WebSocket::from_partially_read(
        stream,
        leftover,
        Role::Server,
        Some(config()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &[(&str, &str)], method: &str) -> Request {
        let mut headers = vec![
            ("Upgrade".to_string(), "websocket".to_string()),
            ("Connection".to_string(), "keep-alive, Upgrade".to_string()),
            ("Sec-WebSocket-Version".to_string(), "13".to_string()),
            (
                "Sec-WebSocket-Key".to_string(),
                "dGhlIHNhbXBsZSBub25jZQ==".to_string(),
            ),
        ];
        for (n, v) in extra {
            headers.retain(|(h, _)| !h.eq_ignore_ascii_case(n));
            if !v.is_empty() {
                headers.push((n.to_string(), v.to_string()));
            }
        }
        Request {
            method: method.into(),
            path: "/ws".into(),
            query: String::new(),
            minor_version: 1,
            headers,
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            check_upgrade(&request(&[], "GET")).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn origins_are_normalised_like_browsers_serialise_them() {
        let n = |s: &str| normalize_origin(s);
        assert_eq!(
            n("HTTPS://Example.ORG:443/").as_deref(),
            Some("https://example.org")
        );
        assert_eq!(n("http://a:8080").as_deref(), Some("http://a:8080"));
        assert_eq!(n("http://[::1]:80").as_deref(), Some("http://[::1]"));
        assert_eq!(n("*").as_deref(), Some("*"));
        for bad in [
            "example.org",
            "ftp://x",
            "http://",
            "http://x/path",
            "http://x:99999",
            "null",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_the_own_host_and_allowed_origins_may_upgrade() {
        let with = |origin: &str, host: &str| request(&[("Origin", origin), ("Host", host)], "GET");
        let allowed = vec!["https://radio.example.org".to_string()];
        let ok = |r: Request| check_origin(&r, &allowed).is_ok();
        assert!(ok(with("http://pi.local:8080", "pi.local:8080")));
        assert!(ok(with("https://pi.local", "pi.local")));
        assert!(ok(with("https://pi.local", "pi.local:443")));
        assert!(ok(with("https://radio.example.org", "pi.local:8080")));
        assert!(
            ok(request(&[("Host", "pi.local")], "GET")),
            "no Origin: not a browser"
        );
        assert!(!ok(with("https://evil.example", "pi.local:8080")));
        assert!(!ok(with("http://pi.local:8081", "pi.local:8080")));
        assert!(!ok(with("https://pi.local:8443", "pi.local")));
        assert!(!ok(with("null", "pi.local")));
        assert!(
            !ok(request(&[("Origin", "http://pi.local")], "GET")),
            "no Host"
        );
        let any = vec!["*".to_string()];
        assert!(check_origin(&with("https://evil.example", "x"), &any).is_ok());
        let err = check_origin(&with("https://evil.example", "x"), &allowed).unwrap_err();
        assert_eq!(err.status, 403);
    }

    #[test]
    fn bad_upgrades_are_refused_with_a_reason() {
        let reason = |r: Request| check_upgrade(&r).unwrap_err().reason;
        assert!(reason(request(&[], "POST")).contains("needs GET"));
        assert!(
            reason(request(&[("Sec-WebSocket-Key", "")], "GET"))
                .contains("missing Sec-WebSocket-Key")
        );
        assert!(reason(request(&[("Sec-WebSocket-Key", "short")], "GET")).contains("16 bytes"));
        assert!(reason(request(&[("Sec-WebSocket-Version", "8")], "GET")).contains("'8'"));
        assert!(reason(request(&[("Connection", "keep-alive")], "GET")).contains("Connection"));
        assert!(reason(request(&[("Upgrade", "h2c")], "GET")).contains("Upgrade"));
    }
}
