//! Audio sources, chosen by URI scheme (`file:`, `tone:`), and the trait the producer reads from.
//!
//! A bare path is a file. Each kind lives in its own file; every one delivers interleaved s16le
//! samples in the source's own format, and the producer thread alone decides when to read.

mod mp3;
mod tone;
mod wav;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::audio::Format;
use crate::error::{Error, Result};

pub use tone::Tone;

/// Who sets the pace of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Samples are available at once (a file, a generator): the producer paces them by the clock.
    Clock,
    /// Reads block until the samples exist (a device, a pipe): the source paces itself.
    Device,
}

/// Counters a source keeps about its input, reported by `/api/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Frames or blocks of the input that could not be decoded and were skipped.
    pub corrupt_frames: u64,
    /// Times a file source went back to its start.
    pub loops: u64,
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
}

/// Opens the source a `--source` value names.
///
/// `tone:` (with optional `?freq=HZ&rate=HZ&channels=N`) is the test signal; `file:PATH` or a
/// bare path is an MP3 or WAV file, recognised by its content.
pub fn open(uri: &str) -> Result<Box<dyn Source>> {
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
        other => Err(Error::usage(format!(
            "--source {uri}: unknown scheme '{other}:' (expected a file path, file:PATH or tone:)"
        ))),
    }
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
