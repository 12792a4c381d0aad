//! The one error type of earshot: every failure a user can see, with the context to act on it.

use std::fmt;
use std::io;
use std::time::Duration;

/// Everything that can stop a command before or while it runs.
///
/// Messages are lowercase, carry the file, address or flag they concern, and never end in a period,
/// so they compose into lines such as `earshot: audio/x.mp3: no decodable MPEG audio frame`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The command line or an `EARSHOT_*` variable is malformed or out of range.
    Usage(String),
    /// An audio source could not be opened or decoded; `what` names the file or device.
    Source { what: String, reason: String },
    /// An I/O operation failed; `context` says which one and on what.
    Io { context: String, source: io::Error },
    /// A client could not set up TLS with a server: a CA file it cannot use, or a certificate it
    /// does not trust. `what` is the URL.
    Tls { what: String, reason: String },
    /// A server refused a client's connection: `status` is the HTTP answer to the upgrade (401
    /// no or bad credentials, 403 origin, 429 too many attempts, 503 full or shutting down), or
    /// 401 for a password the server turned down after the upgrade. `what` is the URL.
    Refused {
        what: String,
        status: u16,
        reason: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    pub fn source(what: impl fmt::Display, reason: impl fmt::Display) -> Error {
        Error::Source {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn io(context: impl fmt::Display, source: io::Error) -> Error {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    /// Whether the same attempt could succeed later: a lost or refused connection, a server
    /// that is full, draining or restarting behind a proxy (408, 429, 5xx). Not a malformed
    /// command line, nor any other refusal: credentials or an origin turned down (401, 403), or
    /// a URL that is not a stream (200 for the page, 404), nor TLS refusing the server's
    /// certificate, which need a change first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Usage(_) | Error::Tls { .. } => false,
            Error::Refused { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => true,
        }
    }

    /// How long the server asked a client to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The process exit code for this error: 2 for usage errors as is usual for CLI tools.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg}"),
            Error::Source { what, reason } => write!(f, "{what}: {reason}"),
            Error::Tls { what, reason } => write!(f, "{what}: tls: {reason}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Refused {
                what,
                status,
                reason,
                ..
            } => write!(f, "{what}: refused by the server ({status}): {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16) -> Error {
        Error::Refused {
            what: "ws://h/ws".into(),
            status,
            reason: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn only_what_can_pass_by_itself_is_retried() {
        for status in [429, 502, 503, 504, 408] {
            assert!(refused(status).is_retryable(), "{status}");
        }
        for status in [200, 400, 401, 403, 404] {
            assert!(!refused(status).is_retryable(), "{status}");
        }
        assert!(!Error::usage("bad flag").is_retryable());
        let untrusted = Error::Tls {
            what: "wss://proxy/ws".into(),
            reason: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(!untrusted.is_retryable());
        let lost = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert!(Error::io("connect", lost).is_retryable());
    }
}
