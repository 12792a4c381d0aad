//! `--play`: the received audio on an ALSA device (built with the `alsa` feature).
//!
//! The device is written from its own thread, so a slow or stuck device never delays reading
//! the socket (and so never distorts the latency numbers). Between them sits a queue of at most
//! half a second; what does not fit is dropped rather than building up delay. An underrun
//! (the network was late) is recovered and playback resumes with the next chunk. A device that
//! fails for good (a USB headset pulled out) is reported on standard error and opened again
//! every second, while `listen` goes on measuring.
//!
//! The device must take the stream's rate and channel count as they are: earshot does not
//! resample, and a `hw:` device given the nearest rate it has would play at the wrong speed.
//! Such a device is refused with the reason, and a `plughw:` one (or `default`) converts. The
//! sample format is the device's choice: s16le when it takes it, else the stream's samples are
//! widened exactly (a Raspberry Pi I2S DAC, or ALSA's loopback opened at S32_LE on its other
//! side, takes only 32-bit samples).

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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
    /// takes. An error here ends `listen`; a device lost later is reopened by the play thread.
    pub fn open(device: &str, format: Format) -> Result<Player> {
        // The alsa crate panics on a name with a NUL byte; no device has one.
        if device.contains('\0') {
            return Err(Error::usage(format!(
                "--play-device {device:?}: the name contains a NUL byte"
            )));
        }
        let (pcm, sample_format) = open_device(device, format)?;
        let (queue, samples) = mpsc::sync_channel(QUEUE_CHUNKS);
        let device = Device {
            name: device.to_string(),
            format,
            sample_format,
        };
        let thread = thread::Builder::new()
            .name("play".into())
            .spawn(move || play_loop(device, pcm, samples))
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

/// The device `listen --play` writes to.
struct Device {
    name: String,
    /// The stream's format.
    format: Format,
    /// The samples the device takes (it may take others when it comes back).
    sample_format: SampleFormat,
}

/// How often a lost device is tried again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// Opens `device` for playback of `format`; returns it and the sample format it takes.
fn open_device(device: &str, format: Format) -> Result<(PCM, SampleFormat)> {
    let uri = format!("alsa:{device}");
    let fail =
        |what: &str, e: alsa::Error| Error::source(&uri, format!("{what}: {}", describe(&e)));
    let pcm = PCM::new(device, Direction::Playback, false)
        .map_err(|e| open_error(&uri, Direction::Playback, e))?;
    let sample_format = {
        let hw =
            HwParams::any(&pcm).map_err(|e| fail("cannot read the device's capabilities", e))?;
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
    Ok((pcm, sample_format))
}

/// Writes what comes from `samples` to the device. When the device fails for good (unplugged,
/// its driver gone), says so on standard error, drops the audio meanwhile and tries to open it
/// again every second, so a headset plugged back in plays again; the measuring goes on
/// throughout.
fn play_loop(mut device: Device, pcm: PCM, samples: Receiver<Vec<i16>>) {
    let mut pcm = Some(pcm);
    let mut lost_at: Option<Instant> = None;
    let mut last_try = Instant::now();
    let mut bytes = Vec::new();
    for block in &samples {
        let Some(open) = &pcm else {
            if last_try.elapsed() < REOPEN_EVERY {
                continue;
            }
            last_try = Instant::now();
            if let Ok((reopened, sample_format)) = open_device(&device.name, device.format) {
                let away = lost_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
                eprintln!(
                    "earshot: alsa:{}: playback resumed after {away:.1} s",
                    device.name
                );
                // What queued up while it was away is stale: start from the live edge.
                while samples.try_recv().is_ok() {}
                device.sample_format = sample_format;
                pcm = Some(reopened);
            }
            continue;
        };
        bytes.clear();
        for &sample in &block {
            device.sample_format.push_i16(sample, &mut bytes);
        }
        if let Err(reason) = write_all(
            open,
            device.sample_format,
            usize::from(device.format.channels),
            &bytes,
        ) {
            eprintln!(
                "earshot: alsa:{}: playback failed: {reason}; trying again every {} s",
                device.name,
                REOPEN_EVERY.as_secs()
            );
            pcm = None;
            lost_at = Some(Instant::now());
            last_try = Instant::now();
        }
    }
    if let Some(pcm) = pcm {
        let _ = pcm.drain();
    }
}

/// Writes whole frames, recovering from an underrun (the network was late) or a suspend; an
/// error it cannot recover from is returned.
fn write_all(
    pcm: &PCM,
    format: SampleFormat,
    channels: usize,
    bytes: &[u8],
) -> std::result::Result<(), String> {
    let io = pcm.io_bytes();
    let frame_bytes = format.width() * channels;
    let mut rest = bytes;
    while rest.len() >= frame_bytes {
        match io.writei(rest) {
            Ok(frames) => rest = &rest[(frames * frame_bytes).min(rest.len())..],
            Err(e) => {
                if pcm.try_recover(e, true).is_err() {
                    return Err(describe(&e));
                }
            }
        }
    }
    Ok(())
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
