//! `pipe:` and `stdin:`: raw interleaved PCM from standard input or a named pipe, as `arecord`,
//! `ffmpeg -f s16le -` or `sox -t raw -` write it, in the format the capture flags give.
//!
//! `pipe:` alone (or `stdin:`, `pipe:-`) reads standard input; `pipe:PATH` reads a named pipe
//! (made with `mkfifo`) or a file. When the writer closes the pipe the source ends, or with
//! `--on-pipe-end wait` reports itself down until more data comes: a named pipe is opened again
//! and waits for its next writer, standard input is polled.

use std::fs::File;
use std::io::{ErrorKind, IsTerminal, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::raw::SampleFormat;
use super::{CaptureParams, InputFormat, Pacing, PipeEnd, Source, SourceStats};
use crate::audio::Format;
use crate::error::{Error, Result};

pub struct PipeSource {
    uri: String,
    input: Input,
    sample_format: SampleFormat,
    format: Format,
    on_end: PipeEnd,
    /// Bytes read but not yet converted: at most one partial frame between reads.
    buf: Vec<u8>,
    filled: usize,
}

enum Input {
    Stdin(std::io::Stdin),
    /// A named pipe or file. A named pipe is opened by the producer thread, not at startup,
    /// because opening one blocks until a writer opens the other end.
    Path {
        path: PathBuf,
        fifo: bool,
        file: Option<File>,
    },
}

impl PipeSource {
    /// Opens `pipe:`, `pipe:PATH` or `stdin:`, checking what can be checked before the server
    /// starts: the format, and that the input exists and is not a terminal.
    pub fn open(uri: &str, rest: &str, capture: &CaptureParams) -> Result<PipeSource> {
        let format = Format {
            sample_rate: capture.rate,
            channels: capture.channels,
        }
        .validate()
        .map_err(|reason| Error::usage(format!("--source {uri}: {reason}")))?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let input = if rest.is_empty() || rest == "-" || uri.starts_with("stdin:") {
            if !rest.is_empty() && rest != "-" {
                return Err(Error::usage(format!(
                    "--source {uri}: stdin: takes no path (use pipe:PATH for a named pipe)"
                )));
            }
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(Error::source(
                    uri,
                    "standard input is a terminal; pipe raw PCM in, for example \
                     `arecord -f S16_LE -r 48000 -c 2 | earshot serve --source pipe:`",
                ));
            }
            Input::Stdin(stdin)
        } else {
            open_path(Path::new(rest))?
        };
        Ok(PipeSource {
            uri: uri.to_string(),
            input,
            sample_format: capture.sample_format.unwrap_or(SampleFormat::S16Le),
            format,
            on_end: capture.on_pipe_end,
            buf: Vec::new(),
            filled: 0,
        })
    }

    fn frame_bytes(&self) -> usize {
        self.sample_format.width() * usize::from(self.format.channels)
    }

    /// Reads once into `buf` after the bytes already there; `Ok(0)` at the end of input.
    fn read_more(&mut self) -> Result<usize> {
        loop {
            let dest = &mut self.buf[self.filled..];
            let result = match &mut self.input {
                Input::Stdin(stdin) => stdin.read(dest),
                Input::Path { path, file, .. } => {
                    if file.is_none() {
                        *file =
                            Some(File::open(&*path).map_err(|e| Error::source(path.display(), e))?);
                    }
                    match file {
                        Some(f) => f.read(dest),
                        None => Ok(0),
                    }
                }
            };
            match result {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("{}: read", self.uri), e)),
            }
        }
    }

    /// The writer is gone: end, or report down and get ready for the next writer.
    fn end_of_input(&mut self) -> Result<usize> {
        if self.filled > 0 {
            crate::log!(
                "{}: dropped {} bytes at the end of input (not a whole frame of {} bytes)",
                self.uri,
                self.filled,
                self.frame_bytes()
            );
            self.filled = 0;
        }
        match self.on_end {
            PipeEnd::Exit => Ok(0),
            PipeEnd::Wait => {
                if let Input::Path {
                    fifo: true, file, ..
                } = &mut self.input
                {
                    // A named pipe stays at end of input until it is opened again.
                    *file = None;
                    return Err(Error::source(
                        &self.uri,
                        "the writer closed the pipe; waiting for a new writer",
                    ));
                }
                Err(Error::source(&self.uri, "end of input; waiting for more"))
            }
        }
    }
}

fn open_path(path: &Path) -> Result<Input> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            Error::source(
                path.display(),
                "no such named pipe or file (create a pipe with mkfifo)",
            )
        } else {
            Error::source(path.display(), e)
        }
    })?;
    if meta.is_dir() {
        return Err(Error::source(path.display(), "is a directory"));
    }
    let fifo = meta.file_type().is_fifo();
    let file = if fifo {
        None
    } else {
        Some(File::open(path).map_err(|e| Error::source(path.display(), e))?)
    };
    Ok(Input::Path {
        path: path.to_path_buf(),
        fifo,
        file,
    })
}

impl Source for PipeSource {
    fn format(&self) -> Format {
        self.format
    }

    fn read(&mut self, out: &mut [i16]) -> Result<usize> {
        let channels = usize::from(self.format.channels);
        let frame_bytes = self.frame_bytes();
        let frames = out.len() / channels;
        if frames == 0 {
            return Ok(0);
        }
        self.buf.resize(frames * frame_bytes, 0);
        loop {
            let n = self.read_more()?;
            if n == 0 {
                return self.end_of_input();
            }
            self.filled += n;
            let whole = self.filled - self.filled % frame_bytes;
            if whole == 0 {
                continue;
            }
            let samples = self
                .sample_format
                .decode(&self.buf[..whole], channels, channels, out);
            self.buf.copy_within(whole..self.filled, 0);
            self.filled -= whole;
            return Ok(samples);
        }
    }

    fn describe(&self) -> String {
        self.uri.clone()
    }

    fn pacing(&self) -> Pacing {
        Pacing::Pipe
    }

    fn stats(&self) -> SourceStats {
        SourceStats {
            input: Some(InputFormat {
                sample_format: self.sample_format,
                channels: self.format.channels,
                period_frames: None,
                buffer_frames: None,
            }),
            ..SourceStats::default()
        }
    }

    fn recover(&mut self) -> Result<()> {
        if let Input::Path {
            path,
            fifo: true,
            file: file @ None,
        } = &mut self.input
        {
            // Blocks until a writer opens the pipe; the source is reported down meanwhile.
            *file = Some(File::open(&*path).map_err(|e| Error::source(path.display(), e))?);
        }
        Ok(())
    }
}
