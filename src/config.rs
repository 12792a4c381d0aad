//! `earshot serve` configuration: its flags, their checks, and the resulting [`ServeConfig`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::flags::{self, Flag};
use crate::limits::IpRange;
use crate::source::{CaptureParams, PipeEnd, SampleFormat};

pub const SERVE_USAGE: &str = "earshot serve [OPTIONS]";
pub const SERVE_SUMMARY: &str = "\
Stream live audio to browsers and native clients over WebSocket, on one HTTP port.
The page is at http://HOST:PORT/, the stream at ws://HOST:PORT/ws.";

pub const SERVE_FLAGS: &[Flag] = &[
    Flag {
        name: "listen",
        value: Some("ADDR"),
        default: Some("0.0.0.0:8080"),
        help: "Address and port for HTTP and WebSocket (port 0 picks a free port)",
    },
    Flag {
        name: "source",
        value: Some("URI"),
        default: None,
        help: "What to stream: a path or file:PATH (MP3 or WAV, looped), tone: for the test\n\
               signal (tone:?freq=440&rate=44100&channels=2), alsa:DEVICE to capture from\n\
               an ALSA device (alsa:hw:0,0, alsa:default), or pipe: for raw PCM on standard\n\
               input (pipe:PATH for a named pipe). Default: the first *.mp3 or *.wav in\n\
               ./audio, else tone:",
    },
    Flag {
        name: "align",
        value: Some("MODE"),
        default: Some("clock"),
        help: "clock: file and tone positions and sequence numbers follow the wall clock, so\n\
               every instance plays the same audio under the same sequence number at the same\n\
               moment (for failover); none: play from the start of the file",
    },
    Flag {
        name: "rate",
        value: Some("HZ"),
        default: Some("48000"),
        help: "Sample rate of an alsa: or pipe: source; a device gets the nearest it supports",
    },
    Flag {
        name: "channels",
        value: Some("N"),
        default: Some("2"),
        help: "Channels of an alsa: or pipe: source, 1 or 2; from a device with more, the\n\
               first ones are streamed",
    },
    Flag {
        name: "sample-format",
        value: Some("FORMAT"),
        default: None,
        help: "Raw samples of an alsa: or pipe: source: S16_LE, S24_LE, S24_3LE, S32_LE or\n\
               FLOAT_LE. Default: the best the device offers (alsa:), S16_LE (pipe:)",
    },
    Flag {
        name: "period-frames",
        value: Some("N"),
        default: None,
        help: "ALSA period, 16 to 65536 frames: smaller means lower latency and more wake-ups.\n\
               Default: 10 ms (480 frames at 48 kHz)",
    },
    Flag {
        name: "on-pipe-end",
        value: Some("exit|wait"),
        default: Some("exit"),
        help: "When the writer closes a pipe: end the stream (listeners get bye) and exit,\n\
               or report the source down and wait for more",
    },
    Flag {
        name: "chunk-ms",
        value: Some("MS"),
        default: Some("20"),
        help: "Duration of one audio message, 5 to 100",
    },
    Flag {
        name: "buffer-ms",
        value: Some("MS"),
        default: Some("5000"),
        help: "Audio kept in the ring buffer; a listener further behind skips to the live edge",
    },
    Flag {
        name: "burst-ms",
        value: Some("MS"),
        default: Some("200"),
        help: "Recent audio sent at once to a new listener so playback starts immediately",
    },
    Flag {
        name: "batch-ms",
        value: Some("MS|auto"),
        default: Some("auto"),
        help: "Audio each listener's thread gathers before it wakes up to send. auto: each\n\
               chunk as soon as it is produced, and 60 ms at once from 200 listeners on.\n\
               MS (a multiple of --chunk-ms, at most 200 and 16 chunks): always that much,\n\
               which adds up to MS minus one chunk of latency and cuts the server's CPU per\n\
               listener (BENCHMARKS.md)",
    },
    Flag {
        name: "max-listeners",
        value: Some("N"),
        default: Some("10000"),
        help: "Concurrent WebSocket listeners; more are refused with 503",
    },
    Flag {
        name: "send-timeout-ms",
        value: Some("MS"),
        default: Some("10000"),
        help: "Disconnect a listener whose socket accepts no data for this long",
    },
    Flag {
        name: "drain-grace-ms",
        value: Some("MS"),
        default: Some("10000"),
        help: "How long a drain (SIGUSR1, POST /api/drain) lets listeners move to another\n\
               instance before the rest are closed and the process exits 0",
    },
    Flag {
        name: "drain-on-sigterm",
        value: None,
        default: None,
        help: "Make SIGTERM drain like SIGUSR1 instead of shutting down at once",
    },
    Flag {
        name: "password",
        value: Some("PASSWORD"),
        default: None,
        help: "Require this password to listen and to read /api/status; the page shows a login\n\
               form. Prefer --password-file: a command line is visible to every user in ps",
    },
    Flag {
        name: "password-file",
        value: Some("FILE"),
        default: None,
        help: "Read the password from the first line of FILE (readable only by earshot: chmod 600)",
    },
    Flag {
        name: "token-ttl",
        value: Some("DURATION"),
        default: Some("24h"),
        help: "How long a login lasts before the password is asked again: 90s, 30m, 24h, 7d",
    },
    Flag {
        name: "allowed-origin",
        value: Some("ORIGIN"),
        default: None,
        help: "Web origins besides the server's own whose pages may open the stream, such as\n\
               https://radio.example.org (repeat the flag or separate with commas; * allows any)",
    },
    Flag {
        name: "trusted-proxy",
        value: Some("ADDR"),
        default: None,
        help: "Reverse proxies (addresses or networks such as 10.0.0.0/8, comma-separated)\n\
               whose X-Forwarded-For names the client for login limits and logs; their own\n\
               connections are not limited by --max-per-address",
    },
    Flag {
        name: "max-per-address",
        value: Some("N"),
        default: Some("1000"),
        help: "Connections one client address (IPv6: one /64 network) may have open at once;\n\
               more are refused with 429. 0 for no limit",
    },
    Flag {
        name: "idle-timeout-ms",
        value: Some("MS"),
        default: Some("10000"),
        help: "Close a connection that has not upgraded to a WebSocket and sends no request for\n\
               this long",
    },
    Flag {
        name: "head-timeout-ms",
        value: Some("MS"),
        default: Some("10000"),
        help: "Time a request head may take from its first byte; a client that trickles it\n\
               (slowloris) gets 408 and is disconnected",
    },
    Flag {
        name: "instance-id",
        value: Some("ID"),
        default: Some("HOSTNAME-PID"),
        help: "Name of this server in hello, /healthz and logs (tells instances apart behind a\n\
               load balancer)",
    },
    Flag {
        name: "www",
        value: Some("DIR"),
        default: None,
        help: "Serve the page's files from DIR instead of the copies built into the binary\n\
               (for development)",
    },
];

/// Everything `earshot serve` needs, checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// `None`: pick the default source at startup.
    pub source: Option<String>,
    /// `--align clock`: positions follow the wall clock (file and tone sources).
    pub align_clock: bool,
    pub chunk_ms: u32,
    pub buffer_ms: u32,
    pub burst_ms: u32,
    /// `--batch-ms`: chunks a session sends per wake-up; `None` adapts to the listener count.
    pub batch_chunks: Option<u32>,
    pub max_listeners: usize,
    pub send_timeout: Duration,
    pub drain_grace: Duration,
    pub drain_on_sigterm: bool,
    pub instance_id: String,
    pub www: Option<PathBuf>,
    /// What `alsa:` and `pipe:` sources capture.
    pub capture: CaptureParams,
    /// `None`: authentication is off.
    pub password: Option<Secret>,
    pub token_ttl: Duration,
    /// Normalised origins (`https://host[:port]`), or `*`.
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<IpRange>,
    /// 0: no limit.
    pub max_per_address: usize,
    pub idle_timeout: Duration,
    pub head_timeout: Duration,
}

impl ServeConfig {
    pub fn from_raw(raw: &flags::RawArgs) -> Result<ServeConfig> {
        if let Some(extra) = raw.positionals.first() {
            return Err(Error::usage(format!(
                "unexpected argument '{extra}' (did you mean --source {extra}?)"
            )));
        }
        let listen_text = raw.string_or("listen", "0.0.0.0:8080");
        let listen = listen_text
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                Error::usage(format!(
                    "--listen {listen_text}: expected HOST:PORT, such as 0.0.0.0:8080"
                ))
            })?;
        let chunk_ms = raw.number("chunk-ms", 20u32, 5..=100)?;
        let buffer_ms = raw.number("buffer-ms", 5000u32, 100..=600_000)?;
        if buffer_ms < 2 * chunk_ms {
            return Err(Error::usage(format!(
                "--buffer-ms {buffer_ms} must hold at least two chunks of {chunk_ms} ms"
            )));
        }
        let burst_ms = raw.number("burst-ms", 200u32, 0..=buffer_ms)?;
        let batch_chunks = batch_chunks(raw, chunk_ms)?;
        let www = raw.str("www").map(PathBuf::from);
        if let Some(dir) = &www {
            if !dir.is_dir() {
                return Err(Error::usage(format!(
                    "--www {}: not a directory",
                    dir.display()
                )));
            }
        }
        let align_clock = match raw.str("align").unwrap_or("clock") {
            "clock" => true,
            "none" => false,
            other => {
                return Err(Error::usage(format!(
                    "--align {other}: expected clock or none"
                )));
            }
        };
        Ok(ServeConfig {
            listen,
            align_clock,
            source: raw.str("source").map(str::to_string),
            chunk_ms,
            buffer_ms,
            burst_ms,
            batch_chunks,
            max_listeners: raw.number("max-listeners", 10_000usize, 1..=1_000_000)?,
            send_timeout: millis(raw, "send-timeout-ms", 10_000, 100..=3_600_000)?,
            drain_grace: millis(raw, "drain-grace-ms", 10_000, 0..=3_600_000)?,
            drain_on_sigterm: raw.switch("drain-on-sigterm")?,
            instance_id: raw
                .str("instance-id")
                .map(str::to_string)
                .unwrap_or_else(default_instance_id),
            www,
            capture: capture_params(raw)?,
            password: password(raw)?,
            token_ttl: duration(raw, "token-ttl", Duration::from_secs(86_400))?,
            allowed_origins: raw
                .list("allowed-origin")
                .into_iter()
                .map(|o| {
                    crate::ws::normalize_origin(o).ok_or_else(|| {
                        Error::usage(format!(
                            "--allowed-origin {o}: expected an origin such as https://example.org"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
            trusted_proxies: raw
                .list("trusted-proxy")
                .into_iter()
                .map(|a| {
                    IpRange::parse(a).ok_or_else(|| {
                        Error::usage(format!(
                            "--trusted-proxy {a}: expected an IP address or network (10.0.0.0/8)"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
            max_per_address: raw.number("max-per-address", 1000usize, 0..=1_000_000)?,
            idle_timeout: millis(raw, "idle-timeout-ms", 10_000, 100..=3_600_000)?,
            head_timeout: millis(raw, "head-timeout-ms", 10_000, 100..=600_000)?,
        })
    }
}

/// `--batch-ms`: `auto`, or a whole number of chunks' worth of milliseconds.
fn batch_chunks(raw: &flags::RawArgs, chunk_ms: u32) -> Result<Option<u32>> {
    let text = raw.str("batch-ms").unwrap_or("auto");
    if text == "auto" {
        return Ok(None);
    }
    let ms: u32 = text.trim().parse().map_err(|_| {
        Error::usage(format!(
            "--batch-ms: expected auto or a number of milliseconds, got '{text}'"
        ))
    })?;
    let most = crate::session::MAX_CHUNKS_PER_WAKE as u32 * chunk_ms;
    let most = most.min(200);
    if ms < chunk_ms || ms > most || ms % chunk_ms != 0 {
        return Err(Error::usage(format!(
            "--batch-ms {ms}: expected auto or a multiple of --chunk-ms {chunk_ms} up to {most}"
        )));
    }
    Ok(Some(ms / chunk_ms))
}

fn capture_params(raw: &flags::RawArgs) -> Result<CaptureParams> {
    let sample_format = match raw.str("sample-format") {
        None => None,
        Some(text) => Some(
            SampleFormat::parse(text)
                .map_err(|reason| Error::usage(format!("--sample-format: {reason}")))?,
        ),
    };
    let on_pipe_end = match raw.str("on-pipe-end").unwrap_or("exit") {
        "exit" => PipeEnd::Exit,
        "wait" => PipeEnd::Wait,
        other => {
            return Err(Error::usage(format!(
                "--on-pipe-end: expected exit or wait, got '{other}'"
            )));
        }
    };
    Ok(CaptureParams {
        rate: raw.number("rate", 48_000u32, crate::audio::RATE_RANGE)?,
        channels: raw.number("channels", 2u16, crate::audio::CHANNEL_RANGE)?,
        sample_format,
        period_frames: match raw.str("period-frames") {
            None => None,
            Some(_) => Some(raw.number("period-frames", 480u32, 16..=65_536)?),
        },
        on_pipe_end,
    })
}

/// The password from `--password` or `--password-file` (not both).
pub(crate) fn password(raw: &flags::RawArgs) -> Result<Option<Secret>> {
    match (raw.str("password"), raw.str("password-file")) {
        (Some(_), Some(_)) => Err(Error::usage(
            "--password and --password-file: give only one of them",
        )),
        (Some(""), None) => Err(Error::usage("--password: must not be empty")),
        (Some(p), None) => Ok(Some(Secret::new(p))),
        (None, Some(file)) => read_password_file(Path::new(file)).map(Some),
        (None, None) => Ok(None),
    }
}

/// The first line of `path`, without its line ending.
fn read_password_file(path: &Path) -> Result<Secret> {
    let fail =
        |reason: String| Error::usage(format!("--password-file {}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(fail("the first line is empty".into()));
    }
    warn_if_others_can_read(path);
    Ok(Secret::new(line))
}

#[cfg(unix)]
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            crate::log!(
                "warning: {} is readable by every user; chmod 600 it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_: &Path) {}

/// A `…-ms` flag: whole milliseconds within `range`, or `default`.
fn millis(
    raw: &flags::RawArgs,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration> {
    raw.number(name, default, range).map(Duration::from_millis)
}

/// A duration flag: a whole number with a unit (`90s`, `30m`, `24h`, `7d`; bare is seconds).
fn duration(raw: &flags::RawArgs, name: &str, default: Duration) -> Result<Duration> {
    let Some(text) = raw.str(name) else {
        return Ok(default);
    };
    parse_duration(text).ok_or_else(|| {
        Error::usage(format!(
            "--{name}: expected a duration such as 90s, 30m, 24h or 7d, got '{text}'"
        ))
    })
}

pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    // A year at most: a token that never expires is a password with a different name.
    (1..=365 * 86_400)
        .contains(&seconds)
        .then(|| Duration::from_secs(seconds))
}

/// `HOSTNAME-PID`: unique per process, readable in logs, stable for the process's life.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "earshot".to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<ServeConfig> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        ServeConfig::from_raw(&flags::parse_with_env(SERVE_FLAGS, &args, |_| None)?)
    }

    #[test]
    fn defaults_match_the_help_text() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!((c.chunk_ms, c.buffer_ms, c.burst_ms), (20, 5000, 200));
        assert_eq!(c.batch_chunks, None);
        assert_eq!(c.max_listeners, 10_000);
        assert!(c.password.is_none());
        assert_eq!(c.token_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.max_per_address, 1000);
        assert_eq!(c.idle_timeout, Duration::from_secs(10));
        assert_eq!(c.head_timeout, Duration::from_secs(10));
        assert!(c.instance_id.ends_with(&format!("-{}", std::process::id())));
        assert_eq!(c.capture, CaptureParams::default());
        assert_eq!((c.capture.rate, c.capture.channels), (48_000, 2));
        assert_eq!(c.capture.on_pipe_end, PipeEnd::Exit);
    }

    #[test]
    fn capture_flags_are_checked_and_name_the_flag() {
        let c = config(&[
            "--rate",
            "44100",
            "--channels",
            "1",
            "--sample-format",
            "s32_le",
            "--period-frames",
            "256",
            "--on-pipe-end",
            "wait",
        ])
        .unwrap();
        assert_eq!(
            c.capture,
            CaptureParams {
                rate: 44_100,
                channels: 1,
                sample_format: Some(SampleFormat::S32Le),
                period_frames: Some(256),
                on_pipe_end: PipeEnd::Wait,
            }
        );
        let err = |args: &[&str]| config(args).unwrap_err().to_string();
        assert!(err(&["--channels", "3"]).starts_with("--channels: 3 is out of range"));
        assert!(err(&["--rate", "4000"]).starts_with("--rate"));
        assert!(err(&["--sample-format", "U8"]).starts_with("--sample-format: unknown"));
        assert!(err(&["--period-frames", "8"]).starts_with("--period-frames"));
        assert!(err(&["--on-pipe-end", "loop"]).contains("exit or wait"));
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_flag_named() {
        assert!(
            config(&["--chunk-ms", "4"])
                .unwrap_err()
                .to_string()
                .starts_with("--chunk-ms")
        );
        assert!(config(&["--chunk-ms", "101"]).is_err());
        assert!(config(&["--buffer-ms", "100", "--chunk-ms", "60"]).is_err());
        assert!(
            config(&["--listen", "nowhere"])
                .unwrap_err()
                .to_string()
                .contains("HOST:PORT")
        );
        assert!(
            config(&["song.mp3"])
                .unwrap_err()
                .to_string()
                .contains("--source song.mp3")
        );
    }

    #[test]
    fn batches_are_whole_chunks_or_auto() {
        let batch = |args: &[&str]| config(args).map(|c| c.batch_chunks);
        assert_eq!(batch(&["--batch-ms", "auto"]).unwrap(), None);
        assert_eq!(batch(&["--batch-ms", "60"]).unwrap(), Some(3));
        assert_eq!(batch(&["--batch-ms", "20"]).unwrap(), Some(1));
        assert_eq!(
            batch(&["--batch-ms", "100", "--chunk-ms", "10"]).unwrap(),
            Some(10)
        );
        let err = |args: &[&str]| config(args).unwrap_err().to_string();
        assert_eq!(
            err(&["--batch-ms", "50"]),
            "--batch-ms 50: expected auto or a multiple of --chunk-ms 20 up to 200"
        );
        assert!(err(&["--batch-ms", "10"]).contains("multiple of --chunk-ms 20"));
        assert!(err(&["--batch-ms", "220"]).contains("up to 200"));
        // No more than 16 chunks go out per wake-up.
        assert!(err(&["--batch-ms", "85", "--chunk-ms", "5"]).contains("up to 80"));
        assert_eq!(
            err(&["--batch-ms", "fast"]),
            "--batch-ms: expected auto or a number of milliseconds, got 'fast'"
        );
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("999999999999999999d"), None);
    }

    #[test]
    fn security_flags_are_checked() {
        let c = config(&[
            "--password",
            "pw",
            "--allowed-origin",
            "HTTPS://Radio.Example.org:443/,http://a:8080",
            "--trusted-proxy",
            "127.0.0.1,10.0.0.0/8",
        ])
        .unwrap();
        assert_eq!(c.password.unwrap().expose(), "pw");
        assert_eq!(
            c.allowed_origins,
            ["https://radio.example.org", "http://a:8080"]
        );
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(config(&["--password", "a", "--password-file", "b"]).is_err());
        assert!(config(&["--password", ""]).is_err());
        assert!(config(&["--allowed-origin", "example.org"]).is_err());
        assert!(config(&["--trusted-proxy", "localhost"]).is_err());
        assert!(config(&["--token-ttl", "forever"]).is_err());
        let missing = config(&["--password-file", "/nonexistent/pw"]).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("--password-file /nonexistent/pw: ")
        );
    }

    #[test]
    fn the_password_file_gives_its_first_line() {
        let path = std::env::temp_dir().join(format!("earshot-pw-{}", std::process::id()));
        std::fs::write(&path, "s3cret word\r\nsecond line\n").unwrap();
        let c = config(&["--password-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.password.unwrap().expose(), "s3cret word");
        std::fs::write(&path, "\n").unwrap();
        assert!(config(&["--password-file", path.to_str().unwrap()]).is_err());
        let _ = std::fs::remove_file(path);
    }
}
