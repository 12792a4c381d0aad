//! `earshot serve` configuration: its flags, their checks, and the resulting [`ServeConfig`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::flags::{self, Flag};
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
    pub max_listeners: usize,
    pub send_timeout: Duration,
    pub drain_grace: Duration,
    pub drain_on_sigterm: bool,
    pub instance_id: String,
    pub www: Option<PathBuf>,
    /// What `alsa:` and `pipe:` sources capture.
    pub capture: CaptureParams,
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
            max_listeners: raw.number("max-listeners", 10_000usize, 1..=1_000_000)?,
            send_timeout: Duration::from_millis(raw.number(
                "send-timeout-ms",
                10_000u64,
                100..=3_600_000,
            )?),
            drain_grace: Duration::from_millis(raw.number(
                "drain-grace-ms",
                10_000u64,
                0..=3_600_000,
            )?),
            drain_on_sigterm: raw.switch("drain-on-sigterm")?,
            instance_id: raw
                .str("instance-id")
                .map(str::to_string)
                .unwrap_or_else(default_instance_id),
            www,
            capture: capture_params(raw)?,
        })
    }
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
        assert_eq!(c.max_listeners, 10_000);
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
}
