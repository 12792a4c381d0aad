//! `--play`: the received audio on an ALSA device (built with the `alsa` feature).
//!
//! The device is written from its own thread, so a slow or stuck device never delays reading
//! the socket (and so never distorts the latency numbers). Between them sits a queue of at most
//! half a second; what does not fit is dropped rather than building up delay. An underrun
//! (the network was late) is recovered and playback resumes with the next chunk.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};

use alsa::pcm::{Access, Format as PcmFormat, Frames, HwParams, PCM};
use alsa::{Direction, ValueOr};

use crate::audio::Format;
use crate::error::{Error, Result};

/// Chunks queued for the device (25 × 20 ms = 500 ms).
const QUEUE_CHUNKS: usize = 25;
/// The device's own buffer, and how much it holds before it starts.
const BUFFER_US: u32 = 200_000;
const PERIOD_US: u32 = 20_000;
const START_FRAMES_MS: u32 = 60;

pub struct Player {
    queue: Option<SyncSender<Vec<i16>>>,
    thread: Option<JoinHandle<()>>,
    channels: usize,
}

impl Player {
    /// Opens `device` for the stream's format (the nearest rate the device offers; ALSA's
    /// `plug` layer behind `default` resamples when needed).
    pub fn open(device: &str, format: Format) -> Result<Player> {
        let fail = |e: alsa::Error| Error::source(format!("alsa:{device}"), e);
        let pcm = PCM::new(device, Direction::Playback, false).map_err(fail)?;
        {
            let hw = HwParams::any(&pcm).map_err(fail)?;
            hw.set_channels(u32::from(format.channels)).map_err(fail)?;
            hw.set_rate_near(format.sample_rate, ValueOr::Nearest)
                .map_err(fail)?;
            hw.set_format(PcmFormat::s16()).map_err(fail)?;
            hw.set_access(Access::RWInterleaved).map_err(fail)?;
            hw.set_buffer_time_near(BUFFER_US, ValueOr::Nearest)
                .map_err(fail)?;
            hw.set_period_time_near(PERIOD_US, ValueOr::Nearest)
                .map_err(fail)?;
            pcm.hw_params(&hw).map_err(fail)?;
            let sw = pcm.sw_params_current().map_err(fail)?;
            // Frames is a C long, 32 bits on a 32-bit Pi; 60 ms is at most 11,520 frames.
            let start =
                u16::try_from(format.sample_rate * START_FRAMES_MS / 1000).unwrap_or(u16::MAX);
            sw.set_start_threshold(Frames::from(start)).map_err(fail)?;
            pcm.sw_params(&sw).map_err(fail)?;
        }
        let (queue, samples) = mpsc::sync_channel(QUEUE_CHUNKS);
        let thread = thread::Builder::new()
            .name("play".into())
            .spawn(move || play_loop(pcm, samples))
            .map_err(|e| Error::io("start playback thread", e))?;
        Ok(Player {
            queue: Some(queue),
            thread: Some(thread),
            channels: usize::from(format.channels),
        })
    }

    /// Queues s16le sample bytes; dropped when the device is more than the queue behind.
    pub fn play(&mut self, bytes: &[u8]) {
        let samples = bytes
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect();
        self.send(samples);
    }

    /// Queues `frames` frames of silence (a short hole, so the audio keeps its rhythm).
    pub fn silence(&mut self, frames: u64) {
        if frames > 0 {
            // Never more than the queue could hold anyway.
            let frames = frames.min(48_000) as usize;
            self.send(vec![0; frames * self.channels]);
        }
    }

    fn send(&mut self, samples: Vec<i16>) {
        if let Some(queue) = &self.queue {
            match queue.try_send(samples) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => self.queue = None,
            }
        }
    }

    /// Plays what is queued, then closes the device.
    pub fn finish(mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn play_loop(pcm: PCM, samples: Receiver<Vec<i16>>) {
    let Ok(io) = pcm.io_i16() else { return };
    let channels = pcm
        .hw_params_current()
        .and_then(|h| h.get_channels())
        .map_or(1, |c| c.max(1) as usize);
    for block in samples {
        let mut rest = &block[..];
        while !rest.is_empty() {
            match io.writei(rest) {
                Ok(frames) => rest = &rest[(frames * channels).min(rest.len())..],
                Err(e) => {
                    // An underrun (EPIPE) or a suspended device: recover and go on.
                    if pcm.try_recover(e, true).is_err() {
                        return;
                    }
                }
            }
        }
    }
    let _ = pcm.drain();
}
