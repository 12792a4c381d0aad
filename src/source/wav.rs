//! `file:` sources in WAV: integer PCM of 8 to 32 bits or 32-bit float, looped seamlessly.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavReader};

use super::{Source, SourceStats};
use crate::audio::{self, Format};
use crate::error::{Error, Result};

pub struct WavFile {
    path: PathBuf,
    reader: WavReader<BufReader<File>>,
    format: Format,
    stats: SourceStats,
    /// A read failed (the data ends before its header says), and hound counted the failed
    /// samples as read: its relative `seek` would now land early, in the header
    /// (`tests/hound_quirks.rs`). The file is opened again before the next seek instead.
    position_lost: bool,
}

impl WavFile {
    pub fn open(path: &Path) -> Result<WavFile> {
        let reader = WavReader::open(path).map_err(|e| Error::source(path.display(), e))?;
        let spec = reader.spec();
        let supported = matches!(
            (spec.sample_format, spec.bits_per_sample),
            (SampleFormat::Int, 8..=32) | (SampleFormat::Float, 32)
        );
        if !supported {
            return Err(Error::source(
                path.display(),
                format!(
                    "unsupported WAV sample format: {}-bit {:?} (earshot reads 8 to 32-bit integer PCM and 32-bit float)",
                    spec.bits_per_sample, spec.sample_format
                ),
            ));
        }
        let format = Format {
            sample_rate: spec.sample_rate,
            channels: spec.channels,
        }
        .validate()
        .map_err(|reason| Error::source(path.display(), reason))?;
        if reader.duration() == 0 {
            return Err(Error::source(path.display(), "WAV file has no samples"));
        }
        Ok(WavFile {
            path: path.to_path_buf(),
            reader,
            format,
            stats: SourceStats::default(),
            position_lost: false,
        })
    }

    /// Moves to `frame`; after a failed read, by opening the file again (see `position_lost`).
    fn seek(&mut self, frame: u32) -> Result<()> {
        if self.position_lost {
            let reader =
                WavReader::open(&self.path).map_err(|e| Error::source(self.path.display(), e))?;
            if reader.spec() != self.reader.spec() {
                return Err(Error::source(
                    self.path.display(),
                    "the file changed on disk to another format; restart earshot to play it",
                ));
            }
            self.reader = reader;
            self.position_lost = false;
        }
        self.reader
            .seek(frame)
            .map_err(|e| Error::io(format!("{}: seek", self.path.display()), e))
    }

    /// Reads up to `out.len()` samples from the current position; `Ok(0)` at the end of the data.
    fn read_some(&mut self, out: &mut [i16]) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let spec = self.reader.spec();
        let bits = u32::from(spec.bits_per_sample);
        let (n, failed) = match spec.sample_format {
            SampleFormat::Float => fill(self.reader.samples::<f32>(), out, audio::float_to_i16),
            SampleFormat::Int => fill(self.reader.samples::<i32>(), out, |v| {
                audio::int_to_i16(v, bits)
            }),
        };
        if let Some(e) = failed {
            // A data chunk shorter than its header claims: play what is there, then loop.
            self.position_lost = true;
            if self.stats.corrupt_frames == 0 {
                crate::log!(
                    "{}: the audio data ends before its header says ({e}); looping at the last \
                     readable sample",
                    self.path.display()
                );
            }
            self.stats.corrupt_frames += 1;
        }
        // Keep whole frames only, so channels never swap at the loop point.
        let channels = usize::from(self.format.channels);
        Ok(n - n % channels)
    }
}

impl Source for WavFile {
    fn format(&self) -> Format {
        self.format
    }

    fn read(&mut self, out: &mut [i16]) -> Result<usize> {
        let n = self.read_some(out)?;
        if n > 0 {
            return Ok(n);
        }
        self.seek(0)?;
        self.stats.loops += 1;
        match self.read_some(out)? {
            0 => Err(Error::source(
                self.path.display(),
                "no readable samples after looping to the start",
            )),
            n => Ok(n),
        }
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn seek_to(&mut self, frame: u64) -> Result<()> {
        let target = frame % u64::from(self.reader.duration().max(1));
        self.seek(target as u32)
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

/// Converts samples into `out` until it is full or the data ends; returns how many, and the
/// error that ended the data early, if one did.
fn fill<S>(
    samples: impl Iterator<Item = hound::Result<S>>,
    out: &mut [i16],
    convert: impl Fn(S) -> i16,
) -> (usize, Option<hound::Error>) {
    let mut n = 0;
    for sample in samples.take(out.len()) {
        match sample {
            Ok(v) => out[n] = convert(v),
            Err(e) => return (n, Some(e)),
        }
        n += 1;
    }
    (n, None)
}
