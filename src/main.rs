//! The `earshot` command: picks the subcommand, runs it, and turns an error into a message and
//! an exit code.

use earshot::client::config::{self as client_config, BenchConfig, ListenConfig};
use earshot::client::{bench, listen};
use earshot::config::{self, ServeConfig};
use earshot::error::{Error, Result};
use earshot::flags::{self, Flag};
use earshot::outln;

const USAGE: &str = "\
earshot — low-latency live audio to browsers and native clients over WebSocket

Usage:
  earshot serve [OPTIONS]     Stream a file, the test signal or a capture device
  earshot listen [OPTIONS] URL
                              Listen to a stream and measure it (latency, jitter, gaps),
                              optionally record it to WAV or play it
  earshot bench [OPTIONS] URL Measure a server with a ladder of concurrent listeners
  earshot --help | --version

Run 'earshot COMMAND --help' for the options of a command.";

fn main() {
    match try_main() {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("earshot: {err}");
            std::process::exit(err.exit_code());
        }
    }
}

/// Runs the command; the exit code on success (`listen` tells continuity through it).
fn try_main() -> Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        outln!("{USAGE}");
        return Ok(0);
    };
    match command.as_str() {
        "-h" | "--help" | "help" => {
            outln!("{USAGE}");
            Ok(0)
        }
        "-V" | "--version" => {
            outln!("earshot {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        "serve" => {
            let Some(raw) = parse_or_help(
                config::SERVE_USAGE,
                config::SERVE_SUMMARY,
                config::SERVE_FLAGS,
                rest,
            )?
            else {
                return Ok(0);
            };
            earshot::server::run(ServeConfig::from_raw(&raw)?).map(|()| 0)
        }
        "listen" => {
            let Some(raw) = parse_or_help(
                client_config::LISTEN_USAGE,
                client_config::LISTEN_SUMMARY,
                client_config::LISTEN_FLAGS,
                rest,
            )?
            else {
                return Ok(0);
            };
            listen::run(&ListenConfig::from_raw(&raw)?)
        }
        "bench" => {
            let Some(raw) = parse_or_help(
                client_config::BENCH_USAGE,
                client_config::BENCH_SUMMARY,
                client_config::BENCH_FLAGS,
                rest,
            )?
            else {
                return Ok(0);
            };
            bench::run(&BenchConfig::from_raw(&raw)?).map(|()| 0)
        }
        other => Err(Error::usage(format!(
            "unknown command '{other}' (see earshot --help)"
        ))),
    }
}

/// Parses a subcommand's flags; prints its help and returns `None` for `--help`.
fn parse_or_help(
    usage: &str,
    summary: &str,
    flag_table: &[Flag],
    args: &[String],
) -> Result<Option<flags::RawArgs>> {
    let raw = flags::parse(flag_table, args)?;
    if raw.help {
        outln!("{}", flags::help(usage, summary, flag_table).trim_end());
        return Ok(None);
    }
    Ok(Some(raw))
}
