//! Native clients of an earshot stream: `earshot listen`, one listener that measures, records
//! and plays what it hears, and `earshot bench`, thousands of listeners from one process that
//! measure what the server delivers as their number grows.
//!
//! Shared by both: the URL ([`endpoint`]), the clock offset ([`clock`]) and the statistics
//! ([`stats`]). `listen` speaks through [`connection`] (tungstenite, one blocking socket);
//! `bench` through [`loadgen`] (its own frame reader, many non-blocking sockets per thread).

pub mod axes;
pub mod bench;
pub mod chart;
pub mod clock;
pub mod config;
pub mod connection;
pub mod console;
pub mod endpoint;
pub mod handshake;
pub mod interruptions;
pub mod listen;
pub mod loadgen;
#[cfg(feature = "alsa")]
pub mod play;
pub mod procstat;
pub mod report;
pub mod results;
pub mod schedule;
pub mod stats;
pub mod timeline;
pub mod wavout;
pub mod worker;
pub mod wsframe;
