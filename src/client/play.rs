//! `--play`: the received audio on an ALSA device (built with the `alsa` feature).
//!
//! The device is written from its own thread, so a slow or stuck device never delays reading
//! the socket (and so never distorts the latency numbers). Between them sits a queue of at most
//! half a second; what does not fit is dropped rather than building up delay. An underrun
//! (the network was late) is recovered and playback resumes with the next chunk.
//!
//! The device must take the stream's rate and channel count as they are: earshot does not
//! resample, and a `hw:` device given the nearest rate it has would play at the wrong speed.
//! Such a device is refused with the reason, and a `plughw:` one (or `default`) converts. The
//! sample format is the device's choice: s16le when it takes it, else the stream's samples are
//! widened exactly (a Raspberry Pi I2S DAC, or ALSA's loopback opened at S32_LE on its other
//! side, takes only 32-bit samples).

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};

use alsa::pcm::{Access, Frames, HwParams, PCM};
use alsa::{Direction, ValueOr};

use crate::audio::Format;
use crate::error::{Error, Result};
use crate::source::SampleFormat;
use crate::source::alsa::{alsa_format, describe, open_error};

/// Chunks queued for the device (25 × 20 ms = 500 ms).
const QUEUE_CHUNKS: usize = 25;
/// The device's own buffer, and how much it holds before it starts.
const BUFFER_US: u32 = 200_000;
const PERIOD_US: u32 = 20_000;
const START_FRAMES_MS: u32 = 60;
/// Sample formats tried on the device: the stream's own first, then the exact widenings.
const PLAY_FORMATS: [SampleFormat; 5] = [
    SampleFormat::S16Le,
    SampleFormat::S32Le,
    SampleFormat::S24Le,
    SampleFormat::S24_3Le,
    SampleFormat::FloatLe,
];
/// What to do about a device that cannot take the stream as it is.
const PLUG_HINT: &str = "play through a plug device, which converts (plughw:CARD=…, or default)";

pub struct Player {
    queue: Option<SyncSender<Vec<i16>>>,
    thread: Option<JoinHandle<()>>,
    channels: usize,
}

impl Player {
    /// Opens `device` for the stream's rate and channels, in the first of [`PLAY_FORMATS`] it
    /// takes.
    pub fn open(device: &str, format: Format) -> Result<Player> {
        let uri = format!("alsa:{device}");
        // The alsa crate panics on a name with a NUL byte; no device has one.
        if device.contains('\0') {
            return Err(Error::usage(format!(
                "--play-device {device:?}: the name contains a NUL byte"
            )));
        }
        let fail =
            |what: &str, e: alsa::Error| Error::source(&uri, format!("{what}: {}", describe(&e)));
        let pcm = PCM::new(device, Direction::Playback, false)
            .map_err(|e| open_error(&uri, Direction::Playback, e))?;
        let sample_format = {
            let hw = HwParams::any(&pcm)
                .map_err(|e| fail("cannot read the device's capabilities", e))?;
            hw.set_access(Access::RWInterleaved)
                .map_err(|e| fail("device does not offer interleaved playback", e))?;
            let channels = u32::from(format.channels);
            hw.set_channels(channels).map_err(|_| {
                let (min, max) = (hw.get_channels_min(), hw.get_channels_max());
                Error::source(
                    &uri,
                    format!(
                        "device cannot play {channels} channel(s) (it takes {}); {PLUG_HINT}",
                        range(min.ok(), max.ok(), "")
                    ),
                )
            })?;
            let sample_format = PLAY_FORMATS
                .into_iter()
                .find(|f| hw.test_format(alsa_format(*f)).is_ok())
                .ok_or_else(|| {
                    let names: Vec<&str> = PLAY_FORMATS.iter().map(|f| f.name()).collect();
                    Error::source(
                        &uri,
                        format!(
                            "device takes none of the sample formats earshot writes ({}); \
                             {PLUG_HINT}",
                            names.join(", ")
                        ),
                    )
                })?;
            hw.set_format(alsa_format(sample_format))
                .map_err(|e| fail("cannot set the sample format", e))?;
            let rate = format.sample_rate;
            hw.set_rate(rate, ValueOr::Nearest).map_err(|_| {
                let (min, max) = (hw.get_rate_min(), hw.get_rate_max());
                Error::source(
                    &uri,
                    format!(
                        "device cannot play {rate} Hz, the stream's rate (it takes {}); \
                         {PLUG_HINT}",
                        range(min.ok(), max.ok(), " Hz")
                    ),
                )
            })?;
            hw.set_buffer_time_near(BUFFER_US, ValueOr::Nearest)
                .map_err(|e| fail("cannot set the buffer time", e))?;
            hw.set_period_time_near(PERIOD_US, ValueOr::Nearest)
                .map_err(|e| fail("cannot set the period time", e))?;
            pcm.hw_params(&hw)
                .map_err(|e| fail("device refused the parameters", e))?;
            let sw = pcm
                .sw_params_current()
                .map_err(|e| fail("cannot read the software parameters", e))?;
            // Frames is a C long, 32 bits on a 32-bit Pi; 60 ms is at most 11,520 frames.
            let start = u16::try_from(rate * START_FRAMES_MS / 1000).unwrap_or(u16::MAX);
            sw.set_start_threshold(Frames::from(start))
                .map_err(|e| fail("cannot set the start threshold", e))?;
            pcm.sw_params(&sw)
                .map_err(|e| fail("device refused the software parameters", e))?;
            sample_format
        };
        let (queue, samples) = mpsc::sync_channel(QUEUE_CHUNKS);
        let channels = usize::from(format.channels);
        let thread = thread::Builder::new()
            .name("play".into())
            .spawn(move || play_loop(pcm, samples, sample_format, channels))
            .map_err(|e| Error::io("start playback thread", e))?;
        Ok(Player {
            queue: Some(queue),
            thread: Some(thread),
            channels,
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

fn play_loop(pcm: PCM, samples: Receiver<Vec<i16>>, format: SampleFormat, channels: usize) {
    let io = pcm.io_bytes();
    let frame_bytes = format.width() * channels;
    let mut bytes = Vec::new();
    for block in samples {
        bytes.clear();
        for &sample in &block {
            format.push_i16(sample, &mut bytes);
        }
        let mut rest = &bytes[..];
        while rest.len() >= frame_bytes {
            match io.writei(rest) {
                Ok(frames) => rest = &rest[(frames * frame_bytes).min(rest.len())..],
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

/// `min–max` with a unit, or `min` when they are equal; "?" for what ALSA would not say.
fn range(min: Option<u32>, max: Option<u32>, unit: &str) -> String {
    let show = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
    if min == max {
        format!("{}{unit}", show(min))
    } else {
        format!("{}–{}{unit}", show(min), show(max))
    }
}
