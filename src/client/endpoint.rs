//! The URL a client connects to: `ws://HOST[:PORT][/PATH]` or `wss://…` (through a TLS proxy)
//! for the stream, `http://…` for a plain HTTP audio stream (what `earshot bench` attaches to
//! Icecast). `earshot listen` speaks both WebSocket schemes through [`crate::wsclient`];
//! `earshot bench` only plain ones.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A WebSocket stream (PROTOCOL.md).
    Ws,
    /// The same through TLS (a reverse proxy in front of earshot).
    Wss,
    /// Plain HTTP: the response body is the audio (Icecast and the like).
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// As written in the URL, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
}

impl Endpoint {
    /// Parses a `ws://` or `http://` URL.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::usage(format!("{url}: {why}"));
        let (scheme, rest, default_port) = if let Some(rest) = url.strip_prefix("ws://") {
            (Scheme::Ws, rest, 80)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest, 80)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (Scheme::Wss, rest, 443)
        } else if url.starts_with("https://") {
            return Err(bad(
                "https:// streams are not supported; use the stream's ws:// or wss:// URL",
            ));
        } else {
            return Err(bad("expected a ws:// URL such as ws://127.0.0.1:8080/ws"));
        };
        // A WebSocket URL without a path means the stream, as in `wsclient::parse_url`: earshot
        // upgrades only /ws, and its / is the page.
        let default_path = if scheme == Scheme::Http { "/" } else { "/ws" };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("{default_path}{}", &rest[i..])),
            None => (rest, default_path.to_string()),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after the IPv6 address")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("bad port '{p}'")))?,
        };
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The URL again, normalised (`ws://host:port/path`).
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Http => "http",
        };
        format!("{scheme}://{}{}", self.host_port(), self.path)
    }

    /// `host:port` as for a `Host` header, with brackets around an IPv6 address.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Resolves the host (DNS for a name) to the first address.
    pub fn resolve(&self) -> Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("{}: cannot resolve host", self.url()), e))?
            .next()
            .ok_or_else(|| {
                Error::io(
                    format!("{}: cannot resolve host", self.url()),
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls_parse_with_and_without_port_and_path() {
        let e = Endpoint::parse("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Ws, "127.0.0.1", 8080)
        );
        assert_eq!(e.path, "/ws");
        assert_eq!(e.url(), "ws://127.0.0.1:8080/ws");
        let e = Endpoint::parse("ws://pi.local").unwrap();
        assert_eq!(
            (e.port, e.path.as_str()),
            (80, "/ws"),
            "no path means the stream"
        );
        let e = Endpoint::parse("ws://pi.local:8080?token=x").unwrap();
        assert_eq!(e.path, "/ws?token=x");
        assert_eq!(Endpoint::parse("http://ice:8000").unwrap().path, "/");
        let e = Endpoint::parse("ws://[::1]:9000/ws?token=x").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert_eq!(e.path, "/ws?token=x");
        assert_eq!(e.host_port(), "[::1]:9000");
        let e = Endpoint::parse("http://127.0.0.1:8000/stream.wav").unwrap();
        assert_eq!(e.scheme, Scheme::Http);
    }

    #[test]
    fn unsupported_or_malformed_urls_say_why() {
        let msg = |u: &str| Endpoint::parse(u).unwrap_err().to_string();
        assert!(msg("https://x/stream").contains("not supported"));
        assert_eq!(
            Endpoint::parse("wss://x/ws").unwrap().url(),
            "wss://x:443/ws"
        );
        assert!(msg("127.0.0.1:8080").contains("expected a ws:// URL"));
        assert!(msg("ws://:80/ws").contains("no host"));
        assert!(msg("ws://h:99999/ws").contains("bad port"));
        assert!(msg("ws://[::1/ws").contains("unclosed"));
    }
}
