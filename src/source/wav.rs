//! `file:` sources in WAV: integer PCM of 8 to 32 bits or 32-bit float, looped seamlessly.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavReader, WavSpec};

use super::{Source, SourceStats};
use crate::audio::{self, Format};
use crate::error::{Error, Result};

pub struct WavFile {
    path: PathBuf,
    data: Data,
    spec: WavSpec,
    /// Frames in the data chunk, as its header says.
    frames: u32,
    format: Format,
    stats: SourceStats,
}

/// Where the samples come from.
enum Data {
    /// 16-bit PCM, the usual WAV: its bytes, read straight.
    Pcm16(Pcm16),
    /// Any other sample format, converted sample by sample by hound.
    Hound {
        reader: WavReader<BufReader<File>>,
        /// A read failed (the data ends before its header says), and hound counted the failed
        /// samples as read: its relative `seek` would now land early, in the header
        /// (`tests/hound_quirks.rs`). The file is opened again before the next seek instead.
        position_lost: bool,
    },
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
        let frames = reader.duration();
        if frames == 0 {
            return Err(Error::source(path.display(), "WAV file has no samples"));
        }
        let data = if (spec.sample_format, spec.bits_per_sample) == (SampleFormat::Int, 16) {
            let samples = reader.len();
            let mut file = reader.into_inner();
            // hound left the file at the first byte of the data chunk.
            let start = file
                .stream_position()
                .map_err(|e| Error::io(format!("{}: find the audio data", path.display()), e))?;
            Data::Pcm16(Pcm16 {
                file,
                start,
                end: start + u64::from(samples) * 2,
                at: start,
                bytes: Vec::new(),
            })
        } else {
            Data::Hound {
                reader,
                position_lost: false,
            }
        };
        Ok(WavFile {
            path: path.to_path_buf(),
            data,
            spec,
            frames,
            format,
            stats: SourceStats::default(),
        })
    }

    /// Moves to `frame`; after a failed read through hound, by opening the file again (see
    /// `position_lost`).
    fn seek(&mut self, frame: u32) -> Result<()> {
        let fail = |e| Error::io(format!("{}: seek", self.path.display()), e);
        match &mut self.data {
            Data::Pcm16(pcm) => {
                let offset = u64::from(frame) * u64::from(self.format.channels) * 2;
                pcm.seek(offset).map_err(fail)
            }
            Data::Hound {
                reader,
                position_lost,
            } => {
                if *position_lost {
                    let reopened = WavReader::open(&self.path)
                        .map_err(|e| Error::source(self.path.display(), e))?;
                    if reopened.spec() != self.spec {
                        return Err(Error::source(
                            self.path.display(),
                            "the file changed on disk to another format; restart earshot to play it",
                        ));
                    }
                    *reader = reopened;
                    *position_lost = false;
                }
                reader.seek(frame).map_err(fail)
            }
        }
    }

    /// Reads up to `out.len()` samples from the current position; `Ok(0)` at the end of the data.
    fn read_some(&mut self, out: &mut [i16]) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let bits = u32::from(self.spec.bits_per_sample);
        let (n, failed) = match &mut self.data {
            Data::Pcm16(pcm) => pcm
                .read(out)
                .map_err(|e| Error::io(format!("{}: read", self.path.display()), e))?,
            Data::Hound {
                reader,
                position_lost,
            } => {
                let (n, failed) = match self.spec.sample_format {
                    SampleFormat::Float => fill(reader.samples::<f32>(), out, audio::float_to_i16),
                    SampleFormat::Int => {
                        fill(reader.samples::<i32>(), out, |v| audio::int_to_i16(v, bits))
                    }
                };
                *position_lost |= failed.is_some();
                (n, failed)
            }
        };
        if let Some(e) = failed {
            // A data chunk shorter than its header claims: play what is there, then loop.
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
        let target = frame % u64::from(self.frames.max(1));
        self.seek(target as u32)
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

/// The data chunk of a 16-bit PCM WAV, read as bytes: its little-endian samples are the
/// stream's own. Through hound, each sample is a separate read and conversion, which took most
/// of an idle server's CPU (about 45 µs per 20 ms stereo chunk; BENCHMARKS.md). hound still
/// parses the header, and leaves the file where the data starts.
struct Pcm16 {
    file: BufReader<File>,
    /// Where the data chunk starts and ends in the file, and where reading is.
    start: u64,
    end: u64,
    at: u64,
    bytes: Vec<u8>,
}

impl Pcm16 {
    fn seek(&mut self, offset: u64) -> std::io::Result<()> {
        self.at = self.start + offset;
        self.file.seek(SeekFrom::Start(self.at)).map(drop)
    }

    /// Reads up to `out.len()` samples; as [`fill`], what ended the data early, if the file is
    /// shorter than its header says.
    fn read(&mut self, out: &mut [i16]) -> std::io::Result<(usize, Option<String>)> {
        let want = (out.len() as u64 * 2).min(self.end.saturating_sub(self.at));
        self.bytes.clear();
        let got = (&mut self.file).take(want).read_to_end(&mut self.bytes)?;
        self.at += got as u64;
        for (sample, le) in out.iter_mut().zip(self.bytes.chunks_exact(2)) {
            *sample = i16::from_le_bytes([le[0], le[1]]);
        }
        let short = ((got as u64) < want)
            .then(|| format!("{} bytes missing at byte {}", self.end - self.at, self.at));
        Ok((got / 2, short))
    }
}

/// Converts samples into `out` until it is full or the data ends; returns how many, and the
/// error that ended the data early, if one did.
fn fill<S>(
    samples: impl Iterator<Item = hound::Result<S>>,
    out: &mut [i16],
    convert: impl Fn(S) -> i16,
) -> (usize, Option<String>) {
    let mut n = 0;
    for sample in samples.take(out.len()) {
        match sample {
            Ok(v) => out[n] = convert(v),
            Err(e) => return (n, Some(e.to_string())),
        }
        n += 1;
    }
    (n, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hound::WavWriter;

    /// Writes a short stereo WAV of `bits`-bit integer PCM and opens it as a source.
    fn open_written(bits: u16) -> WavFile {
        let path = std::env::temp_dir().join(format!(
            "earshot-wav-path-{}-{bits}.wav",
            std::process::id()
        ));
        let spec = WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: bits,
            sample_format: SampleFormat::Int,
        };
        let mut writer = WavWriter::create(&path, spec).unwrap();
        for i in 0..200 {
            writer.write_sample(i % 100).unwrap();
        }
        writer.finalize().unwrap();
        let wav = WavFile::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        wav
    }

    #[test]
    fn a_16_bit_wav_is_read_as_bytes_and_other_formats_through_hound() {
        // tests/sources.rs checks that both paths play the right samples; this pins which path
        // each format takes, so a change that sent 16-bit PCM back through hound's per-sample
        // reads (most of an idle server's CPU) would fail here.
        assert!(matches!(open_written(16).data, Data::Pcm16(_)));
        assert!(matches!(open_written(24).data, Data::Hound { .. }));
        assert!(matches!(open_written(8).data, Data::Hound { .. }));
    }
}
