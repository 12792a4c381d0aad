//! Audio sources, chosen by URI scheme (`file:`, `tone:`, `alsa:`, `pipe:`), and the trait the
//! producer reads from.
//!
//! A bare path is a file. Each kind lives in its own file; every one delivers interleaved s16le
//! samples in the source's own format, and the producer thread alone decides when to read.

#[cfg(feature = "alsa")]
pub(crate) mod alsa;
mod mp3;
mod pipe;
mod raw;
mod tone;
mod wav;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::audio::Format;
use crate::error::{Error, Result};

pub use raw::{SampleFormat, format_names};
pub use tone::Tone;

/// Who sets the pace of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Samples are available at once (a file, a generator): the producer paces them by the clock.
    Clock,
    /// Reads block until a capture device has the samples: the device's clock sets the pace.
    Device,
    /// Reads block until a writer supplies the samples. A live writer (`arecord`) sets the pace;
    /// a writer faster than real time (`ffmpeg` decoding a file) is held to real time, and the
    /// pipe's back-pressure slows it down.
    Pipe,
}

/// Counters and facts a source keeps about its input, reported by `/api/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Frames or blocks of the input that could not be decoded and were skipped.
    pub corrupt_frames: u64,
    /// Times a file source went back to its start.
    pub loops: u64,
    /// Capture overruns (xruns) the source recovered from; each loses a little audio.
    pub xruns: u64,
    /// The raw format a capture source reads, as obtained from the device.
    pub input: Option<InputFormat>,
}

/// The raw format a capture source reads before conversion to the stream's s16le.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputFormat {
    pub sample_format: SampleFormat,
    /// Channels the device delivers; the stream keeps the first one or two.
    pub channels: u16,
    /// ALSA period and buffer, in frames (`None` for a pipe).
    pub period_frames: Option<u64>,
    pub buffer_frames: Option<u64>,
}

impl InputFormat {
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "sample_format": self.sample_format.name(),
            "channels": self.channels,
            "period_frames": self.period_frames,
            "buffer_frames": self.buffer_frames,
        })
    }
}

/// What to do when the writer of a `pipe:` source closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeEnd {
    /// The stream ends: listeners get `bye` and the server exits.
    Exit,
    /// The source is reported down until more data arrives (a new writer of a named pipe).
    Wait,
}

/// What the capture flags (`--rate`, `--channels`, `--sample-format`, `--period-frames`,
/// `--on-pipe-end`) ask of an `alsa:` or `pipe:` source. Devices get the nearest they support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureParams {
    pub rate: u32,
    pub channels: u16,
    /// `None`: the best the device offers; S16_LE for a pipe.
    pub sample_format: Option<SampleFormat>,
    /// `None`: about 10 ms at the rate obtained.
    pub period_frames: Option<u32>,
    pub on_pipe_end: PipeEnd,
}

impl Default for CaptureParams {
    fn default() -> Self {
        CaptureParams {
            rate: 48_000,
            channels: 2,
            sample_format: None,
            period_frames: None,
            on_pipe_end: PipeEnd::Exit,
        }
    }
}

/// A producer of interleaved s16le samples.
pub trait Source: Send {
    /// The format of every sample this source delivers; it never changes.
    fn format(&self) -> Format;

    /// Fills the front of `out` with interleaved samples and returns how many it wrote, always a
    /// whole number of frames. `Ok(0)` means the source has ended for good.
    fn read(&mut self, out: &mut [i16]) -> Result<usize>;

    /// A short description for logs and status, such as `file:audio/sample.mp3`.
    fn describe(&self) -> String;

    fn pacing(&self) -> Pacing {
        Pacing::Clock
    }

    /// Moves to an absolute position in frames, so that instances playing the same file agree
    /// (a file source takes it modulo its length). Sources that cannot seek say so.
    fn seek_to(&mut self, _frame: u64) -> Result<()> {
        Err(Error::source(
            self.describe(),
            "this source cannot be aligned to the clock",
        ))
    }

    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }

    /// When the last frame returned by the latest `read` was captured, for a source that knows
    /// (a device with a buffer); the producer stamps other chunks when it pushes them.
    fn captured_at(&self) -> Option<SystemTime> {
        None
    }

    /// Called after `read` failed and the producer has waited: reopen whatever failed (a device
    /// that was unplugged). An error means the source is still down; the producer waits longer
    /// and calls again.
    fn recover(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Opens the source a `--source` value names.
///
/// `tone:` (with optional `?freq=HZ&rate=HZ&channels=N`) is the test signal; `file:PATH` or a
/// bare path is an MP3 or WAV file, recognised by its content; `alsa:NAME` captures from an ALSA
/// device and `pipe:` (or `stdin:`) reads raw PCM from standard input, both as `capture` asks.
pub fn open(uri: &str, capture: &CaptureParams) -> Result<Box<dyn Source>> {
    let (scheme, rest) = match uri.split_once(':') {
        // A one-letter "scheme" is a Windows drive; a path with a slash before the colon is a path.
        Some((scheme, rest))
            if scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            (scheme, rest)
        }
        _ => ("file", uri),
    };
    match scheme {
        "tone" => Ok(Box::new(Tone::from_uri(uri, rest)?)),
        "file" => open_file(Path::new(rest.strip_prefix("//").unwrap_or(rest))),
        "alsa" => open_alsa(uri, rest.strip_prefix("//").unwrap_or(rest), capture),
        "pipe" | "stdin" => Ok(Box::new(pipe::PipeSource::open(uri, rest, capture)?)),
        other => Err(Error::usage(format!(
            "--source {uri}: unknown scheme '{other}:' (expected a file path, file:PATH, tone:, \
             alsa:DEVICE or pipe:)"
        ))),
    }
}

#[cfg(feature = "alsa")]
fn open_alsa(uri: &str, device: &str, capture: &CaptureParams) -> Result<Box<dyn Source>> {
    Ok(Box::new(alsa::AlsaCapture::open(uri, device, capture)?))
}

#[cfg(not(feature = "alsa"))]
fn open_alsa(uri: &str, _device: &str, _capture: &CaptureParams) -> Result<Box<dyn Source>> {
    Err(Error::usage(format!(
        "--source {uri}: this earshot was built without ALSA capture; build it with \
         `make build-alsa` (needs libasound2-dev), or pipe audio in with --source pipe:"
    )))
}

/// Opens an MP3 or WAV file, telling them apart by their first bytes rather than their name.
pub fn open_file(path: &Path) -> Result<Box<dyn Source>> {
    let mut head = [0u8; 12];
    let n = File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .map_err(|e| Error::source(path.display(), e))?;
    let head = &head[..n];
    if head.starts_with(b"RIFF") || head.starts_with(b"RIFX") || head.starts_with(b"RF64") {
        return Ok(Box::new(wav::WavFile::open(path)?));
    }
    let by_name = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    if head.starts_with(b"ID3") || looks_like_mpeg_sync(head) || by_name.as_deref() == Some("mp3") {
        return Ok(Box::new(mp3::Mp3File::open(path)?));
    }
    if n == 0 {
        return Err(Error::source(path.display(), "file is empty"));
    }
    Err(Error::source(
        path.display(),
        "unsupported format (earshot plays MP3 and WAV files)",
    ))
}

/// The default source: the first `*.mp3` or `*.wav` in `dir`, by name, if there is one.
pub fn first_audio_file(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e.eq_ignore_ascii_case("mp3") || e.eq_ignore_ascii_case("wav"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

fn looks_like_mpeg_sync(head: &[u8]) -> bool {
    head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "alsa"))]
    #[test]
    fn alsa_sources_without_the_feature_say_how_to_build_with_it() {
        let err = open("alsa:hw:0,0", &CaptureParams::default())
            .err()
            .expect("no ALSA in this build");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("make build-alsa"), "{err}");
    }

    #[test]
    fn unknown_schemes_list_the_capture_sources_too() {
        let err = open("jack:system", &CaptureParams::default())
            .err()
            .expect("unknown scheme");
        assert!(err.to_string().contains("alsa:DEVICE or pipe:"), "{err}");
    }
}
