//! The one error type of earshot: every failure a user can see, with the context to act on it.

use std::fmt;
use std::io;

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
            Error::Io { context, source } => write!(f, "{context}: {source}"),
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
