//! `file:` sources in MP3 (MPEG-1/2/2.5 Layer I–III): tags and junk skipped, corrupt frames
//! skipped and counted, looped seamlessly.
//!
//! Two quirks of minimp3 0.6's `Decoder::next_frame` shape this file (README, "Known crate
//! issues"; pinned by `tests/minimp3_quirks.rs`):
//! - it skips unreadable bytes without telling the caller (`SkippedData` is never returned), so
//!   this source feeds it exactly the audio region of the file, between an ID3v2 tag and an
//!   ID3v1 trailer, and counts skipped frames from the bytes no decoded frame accounts for;
//! - once its reader is exhausted, a skipped frame makes it return `Eof` although whole frames
//!   are still buffered, which would cut the last ~11 KB of a file with a damaged frame near its
//!   end (or all of a small one). Calling it again continues, so `Eof` is only believed after
//!   it repeats without progress.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use minimp3::{Decoder, Error as Mp3Error};

use super::{Source, SourceStats};
use crate::audio::Format;
use crate::error::{Error, Result};

type AudioRegion = io::Take<BufReader<File>>;

/// How many `Eof`s in a row `next_frame` may return before the file is taken to have ended.
const MAX_EOF_RETRIES: u32 = 32;

pub struct Mp3File {
    path: PathBuf,
    decoder: Decoder<AudioRegion>,
    /// Byte offset and length of the audio frames inside the file.
    region: (u64, u64),
    format: Format,
    /// Decoded samples not yet handed out, from `pending_at`.
    pending: Vec<i16>,
    pending_at: usize,
    /// Bytes of the region explained by decoded frames in this pass.
    accounted_bytes: f64,
    frames_this_pass: u64,
    /// Whether this pass began at the first frame (and so may count skipped frames).
    pass_from_start: bool,
    length_frames: Option<u64>,
    stats: SourceStats,
}

impl Mp3File {
    pub fn open(path: &Path) -> Result<Mp3File> {
        let region = audio_region(path).map_err(|e| Error::source(path.display(), e))?;
        let decoder = Decoder::new(open_region(path, region)?);
        let mut source = Mp3File {
            path: path.to_path_buf(),
            decoder,
            region,
            format: Format {
                sample_rate: 0,
                channels: 0,
            },
            pending: Vec::new(),
            pending_at: 0,
            accounted_bytes: 0.0,
            frames_this_pass: 0,
            pass_from_start: true,
            length_frames: None,
            stats: SourceStats::default(),
        };
        // The first decodable frame fixes the stream's format.
        let mut eofs = 0;
        let first = loop {
            match source.decoder.next_frame() {
                Ok(frame) if frame.sample_rate > 0 && frame.channels > 0 => break frame,
                Ok(_) => continue,
                Err(Mp3Error::Eof) | Err(Mp3Error::InsufficientData) if eofs < MAX_EOF_RETRIES => {
                    eofs += 1;
                }
                Err(Mp3Error::Eof) | Err(Mp3Error::InsufficientData) => {
                    return Err(Error::source(
                        path.display(),
                        "no decodable MPEG audio frame (is this an MP3 file?)",
                    ));
                }
                Err(Mp3Error::Io(e)) => return Err(Error::source(path.display(), e)),
                Err(Mp3Error::SkippedData) => continue,
            }
        };
        source.format = Format {
            sample_rate: first.sample_rate as u32,
            channels: first.channels as u16,
        }
        .validate()
        .map_err(|reason| Error::source(path.display(), reason))?;
        source.account(&first);
        source.pending = first.data;
        Ok(source)
    }

    fn account(&mut self, frame: &minimp3::Frame) {
        let per_channel = frame.data.len() / frame.channels.max(1);
        // A frame holds samples/8 * bitrate / rate bytes: 144 * kbps * 1000 / rate for Layer III.
        self.accounted_bytes += per_channel as f64 / 8.0 * f64::from(frame.bitrate) * 1000.0
            / f64::from(frame.sample_rate);
        self.frames_this_pass += 1;
    }

    /// Decodes the next frame of the stream's format; `None` at the end of the file.
    fn next_frame(&mut self) -> Result<Option<Vec<i16>>> {
        let mut eofs = 0;
        loop {
            match self.decoder.next_frame() {
                Ok(frame) => {
                    let same_format = frame.sample_rate as u32 == self.format.sample_rate
                        && frame.channels == usize::from(self.format.channels);
                    if !same_format {
                        // A frame that claims another rate or channel count is damage, not music.
                        self.stats.corrupt_frames += 1;
                        continue;
                    }
                    self.account(&frame);
                    return Ok(Some(frame.data));
                }
                Err(Mp3Error::SkippedData) => self.stats.corrupt_frames += 1,
                // Each premature `Eof` consumed a skipped frame; a real one consumes nothing
                // and repeats. More premature ones in a row than this means damage, not music.
                Err(Mp3Error::Eof) | Err(Mp3Error::InsufficientData) if eofs < MAX_EOF_RETRIES => {
                    eofs += 1;
                }
                Err(Mp3Error::Eof) | Err(Mp3Error::InsufficientData) => return Ok(None),
                Err(Mp3Error::Io(e)) => {
                    return Err(Error::io(format!("{}: read", self.path.display()), e));
                }
            }
        }
    }

    /// Ends a pass over the file: counts the frames skipped in it and starts again at the top.
    fn rewind(&mut self) -> Result<()> {
        if self.frames_this_pass == 0 {
            return Err(Error::source(
                self.path.display(),
                "no decodable MPEG audio frame after looping to the start",
            ));
        }
        // Only a whole pass accounts for the whole region (a pass begun by a seek does not).
        if self.pass_from_start {
            let average = self.accounted_bytes / self.frames_this_pass as f64;
            let unaccounted = self.region.1 as f64 - self.accounted_bytes;
            // Padding explains a few bytes; anything near a frame's size is a frame.
            let skipped = (unaccounted / average).round();
            if skipped >= 1.0 {
                self.stats.corrupt_frames += skipped as u64;
            }
        }
        self.restart()?;
        self.stats.loops += 1;
        Ok(())
    }

    /// Starts decoding again from the first frame.
    fn restart(&mut self) -> Result<()> {
        self.accounted_bytes = 0.0;
        self.frames_this_pass = 0;
        self.pass_from_start = true;
        self.pending.clear();
        self.pending_at = 0;
        self.decoder = Decoder::new(open_region(&self.path, self.region)?);
        Ok(())
    }

    /// Frames in one pass over the file, counted by decoding it once (only when first needed).
    fn length_frames(&mut self) -> Result<u64> {
        if let Some(n) = self.length_frames {
            return Ok(n);
        }
        let mut counter = Mp3File::open(&self.path)?;
        let channels = usize::from(self.format.channels);
        let mut buf = vec![0i16; 1152 * channels];
        let mut samples = 0u64;
        while counter.stats.loops == 0 {
            let n = counter.read(&mut buf)?;
            if counter.stats.loops == 0 {
                samples += n as u64;
            }
        }
        let frames = (samples / channels as u64).max(1);
        self.length_frames = Some(frames);
        Ok(frames)
    }
}

impl Source for Mp3File {
    fn format(&self) -> Format {
        self.format
    }

    fn read(&mut self, out: &mut [i16]) -> Result<usize> {
        let mut rewound = false;
        while self.pending_at == self.pending.len() {
            match self.next_frame()? {
                Some(samples) => {
                    self.pending = samples;
                    self.pending_at = 0;
                }
                None if rewound => {
                    return Err(Error::source(self.path.display(), "file became unreadable"));
                }
                None => {
                    self.rewind()?;
                    rewound = true;
                }
            }
        }
        let n = out.len().min(self.pending.len() - self.pending_at);
        out[..n].copy_from_slice(&self.pending[self.pending_at..self.pending_at + n]);
        self.pending_at += n;
        Ok(n)
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    /// Decodes from the top and discards up to the position: MP3 has no sample-exact index.
    fn seek_to(&mut self, frame: u64) -> Result<()> {
        let target = frame % self.length_frames()?;
        self.restart()?;
        self.pass_from_start = false;
        let channels = usize::from(self.format.channels);
        let mut skip = target * channels as u64;
        let mut buf = vec![0i16; 1152 * channels];
        while skip > 0 {
            let want = (skip as usize).min(buf.len());
            let n = self.read(&mut buf[..want])?;
            skip -= n as u64;
        }
        Ok(())
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

fn open_region(path: &Path, (start, len): (u64, u64)) -> Result<AudioRegion> {
    let mut file = File::open(path).map_err(|e| Error::source(path.display(), e))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(format!("{}: seek", path.display()), e))?;
    Ok(BufReader::new(file).take(len))
}

/// The byte range of a file that holds MPEG frames: after any ID3v2 tag, before an ID3v1 trailer.
///
/// Only the two tag headers' size fields are read (ID3v2.4 §3.1: a 28-bit "syncsafe" size after
/// `ID3`, version and flags, plus a 10-byte footer when flag 0x10 is set; ID3v1 is the final 128
/// bytes starting with `TAG`). The tags' contents are never parsed.
fn audio_region(path: &Path) -> io::Result<(u64, u64)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut start = 0;
    let mut header = [0u8; 10];
    if len >= 10 {
        file.read_exact(&mut header)?;
        if &header[..3] == b"ID3" && header[6..10].iter().all(|b| b & 0x80 == 0) {
            let size = header[6..10]
                .iter()
                .fold(0u64, |acc, &b| (acc << 7) | u64::from(b));
            let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
            start = (10 + size + footer).min(len);
        }
    }
    let mut end = len;
    if len >= start + 128 {
        let mut trailer = [0u8; 3];
        file.seek(SeekFrom::Start(len - 128))?;
        file.read_exact(&mut trailer)?;
        if &trailer == b"TAG" {
            end = len - 128;
        }
    }
    Ok((start, end - start))
}
