//! `earshot listen` and `earshot bench`: their flags, their checks, and the resulting configs.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::Secret;
use crate::client::connection::ConnectOptions;
use crate::client::endpoint::{Endpoint, Scheme};
use crate::error::{Error, Result};
use crate::flags::{Flag, RawArgs};

/// `--password-file`, the same for `listen` and `bench`.
const PASSWORD_FILE: Flag = Flag {
    name: "password-file",
    value: Some("FILE"),
    default: None,
    help: "Read the password from the first line of FILE instead (keeps it out of ps)",
};

pub const LISTEN_USAGE: &str = "earshot listen [OPTIONS] ws://HOST:PORT/ws | wss://HOST/ws";
pub const LISTEN_SUMMARY: &str = "\
Listen to a stream and measure it: one line per second with latency p50/p99 (corrected by the
clock offset from ping/pong), RFC 3550 jitter, kbit/s, chunks, gaps, skips and reconnects.
Exit code: 0 continuous, 3 audio missing but playing at the end, 4 stream lost, 1 error,
2 usage.";

pub const LISTEN_FLAGS: &[Flag] = &[
    Flag {
        name: "out",
        value: Some("FILE"),
        default: None,
        help: "Write what is received to FILE as a 16-bit WAV in the stream's format; missing\n\
               audio becomes silence of the same length, so the file's timeline is the stream's",
    },
    Flag {
        name: "duration",
        value: Some("S"),
        default: None,
        help: "Stop after S seconds of stream (decimals allowed); the WAV is then S seconds long.\n\
               Default: until SIGINT or SIGTERM",
    },
    Flag {
        name: "password",
        value: Some("PW"),
        default: None,
        help: "The server's listening password, sent as the first WebSocket message; the token it\n\
               earns is used for reconnects. Prefer EARSHOT_PASSWORD: argv is visible in ps",
    },
    PASSWORD_FILE,
    Flag {
        name: "token",
        value: Some("TOKEN"),
        default: None,
        help: "A token from POST /api/login, sent as Authorization: Bearer",
    },
    Flag {
        name: "ca-file",
        value: Some("FILE"),
        default: None,
        help: "For wss://: trust the CA certificates in this PEM file instead of the system's",
    },
    Flag {
        name: "report",
        value: Some("FILE"),
        default: None,
        help: "At the end, write a JSON summary of the run to FILE for a change ticket: the\n\
               instances that served the stream, each interruption and instance change with its\n\
               duration and the audio lost, and the totals (see README)",
    },
    Flag {
        name: "json",
        value: None,
        default: None,
        help: "Print one JSON object per line instead of text: connected, stats (every second),\n\
               gap, disconnected, source, interruption, note, summary (see README)",
    },
    Flag {
        name: "reconnect",
        value: None,
        default: None,
        help: "Reconnect when the connection is lost, and report each interruption: its length,\n\
               the audio lost, and the server instance before and after",
    },
    Flag {
        name: "reconnect-timeout",
        value: Some("S"),
        default: None,
        help: "With --reconnect, give up after S seconds without a connection. Default: never",
    },
    Flag {
        name: "stall-ms",
        value: Some("MS"),
        default: None,
        help: "Treat a connection that delivers nothing for MS as stalled (a frozen server, a\n\
               migrating VM) and reconnect at once with --reconnect. Default: 20 chunk\n\
               durations (400 ms with 20 ms chunks)",
    },
    Flag {
        name: "connect-timeout-ms",
        value: Some("MS"),
        default: Some("5000"),
        help: "Time allowed for each message until the hello (the server pings while its\n\
               source has not started), and for each write (the TCP connect, TLS, the\n\
               handshake and a password login are allowed 10 s each)",
    },
    Flag {
        name: "play",
        value: None,
        default: None,
        help: "Also play the stream through ALSA (builds with the alsa feature only)",
    },
    Flag {
        name: "play-device",
        value: Some("NAME"),
        default: Some("default"),
        help: "ALSA device for --play",
    },
];

pub const BENCH_USAGE: &str = "earshot bench [OPTIONS] URL";
pub const BENCH_SUMMARY: &str = "\
Attach a ladder of concurrent listeners from this one process and measure each step: listeners
connected, chunks on time, latency p50/p99/max, jitter, gaps, skips, bytes/s, and the server's
CPU and memory from /proc when it runs on this machine. URL is ws://HOST:PORT/ws for earshot,
or http://HOST:PORT/MOUNT for a plain HTTP audio stream such as Icecast (bytes only).
A chunk is on time when it arrives within --on-time-ms of its production; a chunk that never
arrives is not on time.";

pub const BENCH_FLAGS: &[Flag] = &[
    Flag {
        name: "clients",
        value: Some("LIST"),
        default: Some("1,5,10,20,35,50,100,200,500,1000,2000"),
        help: "Listener counts to measure, ascending, comma-separated; listeners are added to\n\
               reach each count, never reconnected between steps",
    },
    Flag {
        name: "duration",
        value: Some("S"),
        default: Some("10"),
        help: "Measurement time per step (decimals allowed)",
    },
    Flag {
        name: "settle",
        value: Some("S"),
        default: Some("2"),
        help: "Wait after a step's listeners are connected, before measuring",
    },
    Flag {
        name: "on-time-ms",
        value: Some("MS"),
        default: Some("100"),
        help: "A chunk is on time when it arrives within MS of its production",
    },
    Flag {
        name: "threads",
        value: Some("N"),
        default: Some("CORES"),
        help: "Threads driving the listeners' non-blocking sockets (each drives many)",
    },
    Flag {
        name: "poll-ms",
        value: Some("MS"),
        default: Some("4"),
        help: "How often a socket that is waiting for data is read (doubling up to 4x while\n\
               nothing comes): the resolution of arrival times, and the generator's cost",
    },
    Flag {
        name: "server-pid",
        value: Some("PID"),
        default: None,
        help: "The server's process, for CPU % and RSS from /proc. Default: the process\n\
               listening on the URL's port, when the host is this machine",
    },
    Flag {
        name: "csv",
        value: Some("FILE"),
        default: None,
        help: "Write the results as CSV, one row per step",
    },
    Flag {
        name: "svg",
        value: Some("FILE"),
        default: None,
        help: "Write an SVG chart: latency and on-time share against listener count",
    },
    Flag {
        name: "markdown",
        value: Some("FILE"),
        default: None,
        help: "Write the results as a Markdown table",
    },
    Flag {
        name: "label",
        value: Some("NAME"),
        default: Some("earshot"),
        help: "Name of the server in the CSV, the chart and the table",
    },
    Flag {
        name: "byte-rate",
        value: Some("B"),
        default: Some("176400"),
        help: "For http:// streams: bytes per second a listener should receive; the delivered\n\
               share compares against it",
    },
    Flag {
        name: "password",
        value: Some("PW"),
        default: None,
        help: "For a server with a listening password: logged in once, and every listener\n\
               presents the token it earns. Prefer EARSHOT_PASSWORD: argv is visible in ps",
    },
    PASSWORD_FILE,
    Flag {
        name: "token",
        value: Some("TOKEN"),
        default: None,
        help: "A token from POST /api/login, which every listener presents (Authorization:\n\
               Bearer)",
    },
    Flag {
        name: "connect-timeout-ms",
        value: Some("MS"),
        default: Some("5000"),
        help: "Time allowed for each listener's connect and handshake",
    },
];

/// How `earshot listen` (or `bench`'s listeners) proves it may listen.
#[derive(Debug, Clone)]
pub enum ListenCredentials {
    None,
    Password(Secret),
    Token(Secret),
}

/// Everything `earshot listen` needs, checked.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub endpoint: Endpoint,
    pub out: Option<PathBuf>,
    /// `--report`: where to write the failover report at the end.
    pub report: Option<PathBuf>,
    pub credentials: ListenCredentials,
    /// `--ca-file`: the CA certificates to trust for `wss://`.
    pub ca_file: Option<PathBuf>,
    pub duration: Option<Duration>,
    pub json: bool,
    pub reconnect: bool,
    /// With `reconnect`: give up after this long without a connection.
    pub reconnect_timeout: Option<Duration>,
    pub connect: ConnectOptions,
    /// `--play`: the ALSA device to play on.
    pub play_device: Option<String>,
}

/// Everything `earshot bench` needs, checked.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub endpoint: Endpoint,
    pub clients: Vec<usize>,
    pub duration: Duration,
    pub settle: Duration,
    pub on_time: Duration,
    pub threads: usize,
    pub poll: Duration,
    pub server_pid: Option<u32>,
    pub csv: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub label: String,
    pub byte_rate: u64,
    pub connect_timeout: Duration,
    /// How the listeners prove they may listen (a password is logged in once, by the probe).
    pub credentials: ListenCredentials,
}

/// Seconds with decimals, within `range`, or `None` when the flag is absent.
fn seconds(
    raw: &RawArgs,
    name: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<Duration>> {
    let Some(v) = raw.str(name) else {
        return Ok(None);
    };
    let s: f64 = v
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite())
        .ok_or_else(|| Error::usage(format!("--{name}: expected seconds, got '{v}'")))?;
    if !range.contains(&s) {
        return Err(Error::usage(format!(
            "--{name}: {s} is out of range ({} to {} s)",
            range.start(),
            range.end()
        )));
    }
    Ok(Some(Duration::from_secs_f64(s)))
}

fn the_url(raw: &RawArgs, usage: &str) -> Result<Endpoint> {
    match raw.positionals.as_slice() {
        [url] => Endpoint::parse(url),
        [] => Err(Error::usage(format!("missing URL (usage: {usage})"))),
        [_, extra, ..] => Err(Error::usage(format!("unexpected argument '{extra}'"))),
    }
}

fn millis(
    raw: &RawArgs,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration> {
    Ok(Duration::from_millis(raw.number(name, default, range)?))
}

impl ListenConfig {
    pub fn from_raw(raw: &RawArgs) -> Result<ListenConfig> {
        let endpoint = the_url(raw, LISTEN_USAGE)?;
        if endpoint.scheme == Scheme::Http {
            return Err(Error::usage(format!(
                "{}: listen needs the stream's ws:// or wss:// URL, such as ws://{}/ws",
                endpoint.url(),
                endpoint.host_port()
            )));
        }
        let play = raw.switch("play")?;
        if play && !cfg!(feature = "alsa") {
            return Err(Error::usage(
                "--play needs ALSA, and this earshot was built without it \
                 (build with: cargo build --release --features alsa)",
            ));
        }
        let reconnect = raw.switch("reconnect")?;
        let reconnect_timeout = seconds(raw, "reconnect-timeout", 0.1..=1e7)?;
        if reconnect_timeout.is_some() && !reconnect {
            return Err(Error::usage("--reconnect-timeout needs --reconnect"));
        }
        Ok(ListenConfig {
            endpoint,
            out: raw.str("out").map(PathBuf::from),
            report: raw.str("report").map(PathBuf::from),
            credentials: credentials(raw)?,
            ca_file: raw.str("ca-file").map(PathBuf::from),
            duration: seconds(raw, "duration", 0.01..=1e7)?,
            json: raw.switch("json")?,
            reconnect,
            reconnect_timeout,
            connect: ConnectOptions {
                timeout: millis(raw, "connect-timeout-ms", 5000, 100..=600_000)?,
                stall: match raw.str("stall-ms") {
                    Some(_) => Some(millis(raw, "stall-ms", 0, 50..=3_600_000)?),
                    None => None,
                },
            },
            play_device: play.then(|| raw.string_or("play-device", "default")),
        })
    }
}

impl BenchConfig {
    pub fn from_raw(raw: &RawArgs) -> Result<BenchConfig> {
        let endpoint = the_url(raw, BENCH_USAGE)?;
        if endpoint.scheme == Scheme::Wss {
            return Err(Error::usage(format!(
                "{}: bench speaks ws:// and http:// only; measure the server behind the proxy",
                endpoint.url()
            )));
        }
        let credentials = credentials(raw)?;
        if endpoint.scheme == Scheme::Http && !matches!(credentials, ListenCredentials::None) {
            return Err(Error::usage(
                "--password and --token are for an earshot ws:// stream, not an http:// one",
            ));
        }
        let clients =
            parse_ladder(&raw.string_or("clients", "1,5,10,20,35,50,100,200,500,1000,2000"))?;
        let cores = crate::client::procstat::cores();
        let label = raw.string_or("label", "earshot");
        if label.is_empty() || label.contains([',', '"', '\n']) {
            return Err(Error::usage(
                "--label: a plain name, without commas or quotes",
            ));
        }
        Ok(BenchConfig {
            endpoint,
            clients,
            duration: seconds(raw, "duration", 0.5..=86_400.0)?.unwrap_or(Duration::from_secs(10)),
            settle: seconds(raw, "settle", 0.0..=3600.0)?.unwrap_or(Duration::from_secs(2)),
            on_time: millis(raw, "on-time-ms", 100, 1..=60_000)?,
            threads: raw.number("threads", cores, 1..=256)?,
            poll: millis(raw, "poll-ms", 4, 1..=100)?,
            server_pid: match raw.str("server-pid") {
                None => None,
                Some(_) => Some(raw.number("server-pid", 0u32, 1..=u32::MAX)?),
            },
            csv: raw.str("csv").map(PathBuf::from),
            svg: raw.str("svg").map(PathBuf::from),
            markdown: raw.str("markdown").map(PathBuf::from),
            label,
            byte_rate: raw.number("byte-rate", 176_400u64, 1..=1_000_000_000)?,
            connect_timeout: millis(raw, "connect-timeout-ms", 5000, 100..=600_000)?,
            credentials,
        })
    }
}

/// `--password` (or `--password-file`) or `--token`, at most one of them.
fn credentials(raw: &RawArgs) -> Result<ListenCredentials> {
    Ok(match (crate::config::password(raw)?, raw.str("token")) {
        (Some(_), Some(_)) => return Err(Error::usage("give --password or --token, not both")),
        (Some(p), None) => ListenCredentials::Password(p),
        (None, Some(t)) => ListenCredentials::Token(Secret::new(t)),
        (None, None) => ListenCredentials::None,
    })
}

/// `1,5,10` into counts, ascending and positive.
fn parse_ladder(text: &str) -> Result<Vec<usize>> {
    let mut counts = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n: usize = part
            .parse()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| {
                Error::usage(format!(
                    "--clients: '{part}' is not a count from 1 to 1000000"
                ))
            })?;
        if counts.last().is_some_and(|&last| n <= last) {
            return Err(Error::usage(format!(
                "--clients: counts must ascend ({n} after {})",
                counts.last().copied().unwrap_or(0)
            )));
        }
        counts.push(n);
    }
    if counts.is_empty() {
        return Err(Error::usage("--clients: no counts given"));
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags;

    fn listen(args: &[&str]) -> Result<ListenConfig> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        ListenConfig::from_raw(&flags::parse_with_env(LISTEN_FLAGS, &args, |_| None)?)
    }

    fn bench(args: &[&str]) -> Result<BenchConfig> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        BenchConfig::from_raw(&flags::parse_with_env(BENCH_FLAGS, &args, |_| None)?)
    }

    #[test]
    fn listen_takes_one_ws_url_and_fractional_seconds() {
        let c = listen(&["ws://127.0.0.1:8080/ws", "--duration", "2.5", "--reconnect"]).unwrap();
        assert_eq!(c.duration, Some(Duration::from_millis(2500)));
        assert!(c.reconnect && !c.json && c.play_device.is_none());
        assert_eq!(c.connect.stall, None);
        let err = |a: &[&str]| listen(a).unwrap_err().to_string();
        assert!(err(&[]).contains("missing URL"));
        assert!(err(&["http://h:8080/"]).contains("ws://h:8080/ws"));
        assert!(err(&["ws://h/ws", "--duration", "soon"]).contains("expected seconds"));
        assert!(err(&["ws://h/ws", "--reconnect-timeout", "5"]).contains("needs --reconnect"));
    }

    #[test]
    fn play_without_the_alsa_feature_is_refused_clearly() {
        let result = listen(&["ws://h/ws", "--play"]);
        if cfg!(feature = "alsa") {
            assert_eq!(result.unwrap().play_device.as_deref(), Some("default"));
        } else {
            assert!(result.unwrap_err().to_string().contains("--features alsa"));
        }
    }

    #[test]
    fn bench_ladders_must_ascend() {
        assert_eq!(
            bench(&["ws://h/ws", "--clients", "1, 20,100"])
                .unwrap()
                .clients,
            [1, 20, 100]
        );
        assert!(bench(&["ws://h/ws", "--clients", "5,5"]).is_err());
        assert!(bench(&["ws://h/ws", "--clients", "0"]).is_err());
        assert!(bench(&["ws://h/ws", "--clients", ""]).is_err());
        let c = bench(&["http://h:8000/stream.wav"]).unwrap();
        assert_eq!(c.clients.last(), Some(&2000));
        assert_eq!(c.duration, Duration::from_secs(10));
    }
}
