//! The `earshot` command: picks the subcommand, runs it, and turns an error into a message and
//! an exit code.

use earshot::config::{self, ServeConfig};
use earshot::error::{Error, Result};
use earshot::flags;

const USAGE: &str = "\
earshot — low-latency live audio to browsers and native clients over WebSocket

Usage:
  earshot serve [OPTIONS]     Stream a file, the test signal or a capture device
  earshot --help | --version

Run 'earshot serve --help' for the options of a command.";

fn main() {
    if let Err(err) = try_main() {
        eprintln!("earshot: {err}");
        std::process::exit(err.exit_code());
    }
}

fn try_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        "-V" | "--version" => {
            println!("earshot {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "serve" => {
            let raw = flags::parse(config::SERVE_FLAGS, rest)?;
            if raw.help {
                print!(
                    "{}",
                    flags::help(
                        config::SERVE_USAGE,
                        config::SERVE_SUMMARY,
                        config::SERVE_FLAGS
                    )
                );
                return Ok(());
            }
            earshot::server::run(ServeConfig::from_raw(&raw)?)
        }
        other => Err(Error::usage(format!(
            "unknown command '{other}' (see earshot --help)"
        ))),
    }
}
