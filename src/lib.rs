//! earshot: live audio to browsers and native clients over WebSocket, on one HTTP port.
//!
//! Synchronous by design: one producer thread per stream writes into a ring buffer, and one
//! thread per connection paces its own sends. Blocking I/O on std threads keeps the code easy to
//! audit and the binary small enough for a Raspberry Pi Zero, with no async runtime.
#![forbid(unsafe_code)]

pub mod assets;
pub mod audio;
pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod drain;
pub mod error;
pub mod flags;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod limits;
#[macro_use]
pub mod log;
#[macro_use]
pub mod out;
pub mod producer;
pub mod protocol;
pub mod ring;
pub mod server;
pub mod session;
pub mod source;
pub mod stream;
pub mod ws;
pub mod wsclient;
