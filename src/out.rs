//! Plain lines on standard output that never panic: when the reader has gone (`earshot --help |
//! head`, a bench table piped to a closed pager), the line is dropped and the command goes on.
//!
//! `println!` panics on a write error; Rust ignores SIGPIPE, so a closed pipe is one.

use std::io::Write;

/// Writes one line to standard output and flushes it; a write error is ignored.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Prints a formatted line to standard output: `outln!("earshot {version}")`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::out::line(format_args!($($arg)*)) };
}
