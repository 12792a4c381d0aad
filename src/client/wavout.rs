//! `--out FILE.wav`: what the listener received, as a WAV file whose timeline is the stream's.
//!
//! Missing audio is written as silence of its exact length, so a sample's position in the file
//! is its position in the stream. The header is rewritten every second (hound's `flush`), so a
//! listener that is killed still leaves a file any player opens.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::audio::Format;
use crate::error::{Error, Result};

const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A WAV file's sizes are 32-bit: its data stops a little short of 4 GiB (6.7 hours of CD audio).
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 4096;

pub struct WavOut {
    path: PathBuf,
    format: Format,
    writer: hound::WavWriter<BufWriter<File>>,
    frames: u64,
    /// The file stops growing here: `--duration` in frames, or the format's size limit.
    limit: u64,
    last_flush: Instant,
}

impl WavOut {
    pub fn create(path: &Path, format: Format, limit_frames: Option<u64>) -> Result<WavOut> {
        let spec = hound::WavSpec {
            channels: format.channels,
            sample_rate: format.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec)
            .map_err(|e| wav_error(path, "cannot create", e))?;
        Ok(WavOut {
            path: path.to_path_buf(),
            format,
            writer,
            frames: 0,
            limit: limit_frames
                .unwrap_or(u64::MAX)
                .min(MAX_DATA_BYTES / format.bytes_for(1) as u64),
            last_flush: Instant::now(),
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Frames in the file so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The file has its `--duration`, or is as large as a WAV file can be.
    pub fn is_full(&self) -> bool {
        self.frames >= self.limit
    }

    /// Appends interleaved s16le sample bytes (a trailing odd byte or partial frame is ignored).
    pub fn write_samples(&mut self, bytes: &[u8]) -> Result<()> {
        let frame_bytes = usize::from(self.format.channels) * 2;
        let frames = (bytes.len() / frame_bytes) as u64;
        let take = self.room(frames);
        let mut writer = self
            .writer
            .get_i16_writer((take * u64::from(self.format.channels)) as u32);
        for pair in bytes[..take as usize * frame_bytes].chunks_exact(2) {
            writer.write_sample(i16::from_le_bytes([pair[0], pair[1]]));
        }
        writer
            .flush()
            .map_err(|e| wav_error(&self.path, "cannot write", e))?;
        self.frames += take;
        self.flush_now_and_then()
    }

    /// Appends `frames` frames of silence.
    pub fn write_silence(&mut self, frames: u64) -> Result<()> {
        let mut left = self.room(frames);
        while left > 0 {
            // In slices, so an hour-long outage never needs an hour's buffer.
            let n = left.min(u64::from(self.format.sample_rate));
            let mut writer = self
                .writer
                .get_i16_writer((n * u64::from(self.format.channels)) as u32);
            for _ in 0..n * u64::from(self.format.channels) {
                writer.write_sample(0);
            }
            writer
                .flush()
                .map_err(|e| wav_error(&self.path, "cannot write", e))?;
            self.frames += n;
            left -= n;
        }
        self.flush_now_and_then()
    }

    /// Pads with silence up to `frames` frames in all (for `--duration`, when the stream ended
    /// early or fell behind); returns the frames added.
    pub fn pad_to(&mut self, frames: u64) -> Result<u64> {
        let before = self.frames;
        self.write_silence(frames.saturating_sub(before))?;
        Ok(self.frames - before)
    }

    /// Writes the final header.
    pub fn finish(self) -> Result<()> {
        let path = self.path;
        self.writer
            .finalize()
            .map_err(|e| wav_error(&path, "cannot finish", e))
    }

    fn room(&self, frames: u64) -> u64 {
        frames.min(self.limit.saturating_sub(self.frames))
    }

    fn flush_now_and_then(&mut self) -> Result<()> {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.last_flush = Instant::now();
            self.writer
                .flush()
                .map_err(|e| wav_error(&self.path, "cannot write", e))?;
        }
        Ok(())
    }
}

fn wav_error(path: &Path, what: &str, e: hound::Error) -> Error {
    let display = path.display();
    match e {
        hound::Error::IoError(io) => Error::io(format!("{display}: {what}"), io),
        other => Error::source(display, format!("{what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_samples_land_in_order_and_the_limit_truncates() {
        let dir = std::env::temp_dir().join(format!("earshot-wavout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.wav");
        let format = Format {
            sample_rate: 8000,
            channels: 2,
        };
        let mut out = WavOut::create(&path, format, Some(5)).unwrap();
        out.write_samples(&[1, 0, 2, 0, 3, 0, 4, 0]).unwrap();
        out.write_silence(1).unwrap();
        out.write_samples(&[5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 10, 0])
            .unwrap();
        assert!(out.is_full());
        out.finish().unwrap();
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.spec().sample_rate, 8000);
        let samples: Vec<i16> = reader.into_samples().map(|s| s.unwrap()).collect();
        assert_eq!(samples, [1, 2, 3, 4, 0, 0, 5, 6, 7, 8]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
