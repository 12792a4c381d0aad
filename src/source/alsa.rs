//! `alsa:NAME`: live capture from an ALSA device (`hw:0,0`, `default`, a dsnoop or softvol PCM
//! such as `mic_with_gain`), paced by the device's own clock.
//!
//! The nearest parameters the device supports are negotiated and logged; the stream takes the
//! rate obtained and the first one or two channels. An overrun (xrun) is recovered on the spot
//! and counted. Any other failure (device unplugged, gone silent) closes the device and returns
//! an error; the producer reports the source down and calls [`Source::recover`], which opens
//! the device again with the same request, until it comes back at the same rate.

use std::time::{Duration, SystemTime};

use ::alsa::Direction;
use ::alsa::pcm::{Access, Format as AlsaFormat, Frames, HwParams, PCM, State};

use super::raw::SampleFormat;
use super::{CaptureParams, InputFormat, Pacing, Source, SourceStats};
use crate::audio::Format;
use crate::error::{Error, Result};

/// How long a running device may deliver nothing before it counts as failed (a stopped I2S
/// clock, a USB device that hangs): far longer than any period, and than the couple of seconds
/// some devices (a PulseAudio monitor) take to deliver their first audio after opening.
const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The capture buffer: deep enough to ride out a busy moment on a Pi Zero without an overrun.
/// It costs no latency, because every chunk is read as soon as its frames are there.
const BUFFER_TIME: Duration = Duration::from_millis(500);

pub struct AlsaCapture {
    uri: String,
    device: String,
    request: CaptureParams,
    /// `None` after a failure, until `recover` opens the device again.
    pcm: Option<PCM>,
    setup: Setup,
    /// The stream's format, fixed at startup: a device that comes back must match its rate.
    format: Format,
    bytes: Vec<u8>,
    captured_at: Option<SystemTime>,
    xruns: u64,
}

/// What the device agreed to.
#[derive(Debug, Clone, Copy)]
struct Setup {
    sample_format: SampleFormat,
    rate: u32,
    channels: u16,
    period_frames: u64,
    buffer_frames: u64,
}

impl AlsaCapture {
    /// Opens and configures the device; any failure here is a startup error.
    pub fn open(uri: &str, device: &str, request: &CaptureParams) -> Result<AlsaCapture> {
        if device.is_empty() {
            return Err(Error::usage(format!(
                "--source {uri}: name a device, such as alsa:default or alsa:hw:0,0 \
                 (`arecord -L` lists them)"
            )));
        }
        let (pcm, setup) = open_device(uri, device, request)?;
        let channels = setup.channels.min(request.channels);
        let format = Format {
            sample_rate: setup.rate,
            channels,
        }
        .validate()
        .map_err(|reason| Error::source(uri, reason))?;
        log_setup(uri, request, &setup, channels);
        Ok(AlsaCapture {
            uri: uri.to_string(),
            device: device.to_string(),
            request: request.clone(),
            pcm: Some(pcm),
            setup,
            format,
            bytes: Vec::new(),
            captured_at: None,
            xruns: 0,
        })
    }

    /// Recovers from an overrun or a suspend in place, so capture goes on with a short gap.
    /// An overrun is counted only once recovered: an unplugged device can report one first.
    fn recover_xrun(&mut self, pcm: &PCM, err: ::alsa::Error) -> std::result::Result<(), String> {
        let overrun = err.errno().abs() == libc::EPIPE;
        pcm.try_recover(err, true)
            .and_then(|()| pcm.start())
            .map_err(|e| describe(&e))?;
        if overrun {
            self.xruns += 1;
            crate::log!(
                "{}: overrun (xrun {}): audio arrived faster than it was read, and what the \
                 device could not keep is lost (a gap in sequence numbers); capture goes on",
                self.uri,
                self.xruns
            );
        } else {
            crate::log!("{}: device was suspended; capture resumed", self.uri);
        }
        Ok(())
    }

    /// Reads whole frames into `self.bytes`, returning how many; errors mean the device failed.
    fn read_frames(&mut self, pcm: &PCM, frames: usize) -> std::result::Result<usize, String> {
        let frame_bytes = self.setup.sample_format.width() * usize::from(self.setup.channels);
        self.bytes.resize(frames * frame_bytes, 0);
        loop {
            if pcm.state_raw() == State::Running as i32 {
                match pcm.wait(Some(STALL_TIMEOUT.as_millis() as u32)) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(format!(
                            "no audio from the device for {} s",
                            STALL_TIMEOUT.as_secs()
                        ));
                    }
                    Err(e) if is_recoverable(&e) => {
                        self.recover_xrun(pcm, e)?;
                        continue;
                    }
                    Err(e) => return Err(describe(&e)),
                }
            }
            match pcm.io_bytes().readi(&mut self.bytes) {
                Ok(0) => continue,
                Ok(n) => return Ok(n),
                Err(e) if is_recoverable(&e) => self.recover_xrun(pcm, e)?,
                Err(e) if matches!(e.errno().abs(), libc::EAGAIN | libc::EINTR) => {}
                Err(e) => return Err(describe(&e)),
            }
        }
    }
}

impl Source for AlsaCapture {
    fn format(&self) -> Format {
        self.format
    }

    fn read(&mut self, out: &mut [i16]) -> Result<usize> {
        let channels = usize::from(self.format.channels);
        let frames = out.len() / channels;
        if frames == 0 {
            return Ok(0);
        }
        let Some(pcm) = self.pcm.take() else {
            return Err(Error::source(&self.uri, "device is closed"));
        };
        match self.read_frames(&pcm, frames) {
            Ok(n) => {
                let frame_bytes =
                    self.setup.sample_format.width() * usize::from(self.setup.channels);
                let end = (n * frame_bytes).min(self.bytes.len());
                let samples = self.setup.sample_format.decode(
                    &self.bytes[..end],
                    usize::from(self.setup.channels),
                    channels,
                    out,
                );
                // Frames still waiting in the buffer were captured after the last one read.
                let now = SystemTime::now();
                self.captured_at = Some(match pcm.avail() {
                    Ok(waiting) => now
                        .checked_sub(self.format.duration_of(waiting.max(0) as u64))
                        .unwrap_or(now),
                    // The device overran while earshot was held up (the next read reports it):
                    // what this read returned followed the previous read's audio without a
                    // break, so it was captured a chunk after it, not now.
                    Err(_) => self
                        .captured_at
                        .map(|t| t + self.format.duration_of(n as u64))
                        .unwrap_or(now)
                        .min(now),
                });
                self.pcm = Some(pcm);
                Ok(samples)
            }
            Err(reason) => {
                // Closing the device lets it be opened again when it comes back.
                drop(pcm);
                Err(Error::source(
                    &self.uri,
                    format!("capture failed: {reason}"),
                ))
            }
        }
    }

    fn describe(&self) -> String {
        self.uri.clone()
    }

    fn pacing(&self) -> Pacing {
        Pacing::Device
    }

    fn stats(&self) -> SourceStats {
        SourceStats {
            xruns: self.xruns,
            input: Some(InputFormat {
                sample_format: self.setup.sample_format,
                channels: self.setup.channels,
                period_frames: Some(self.setup.period_frames),
                buffer_frames: Some(self.setup.buffer_frames),
            }),
            ..SourceStats::default()
        }
    }

    fn captured_at(&self) -> Option<SystemTime> {
        self.captured_at
    }

    fn recover(&mut self) -> Result<()> {
        if self.pcm.is_some() {
            return Ok(());
        }
        let (pcm, setup) = open_device(&self.uri, &self.device, &self.request)?;
        if setup.rate != self.format.sample_rate {
            return Err(Error::source(
                &self.uri,
                format!(
                    "device came back at {} Hz but the stream is {} Hz",
                    setup.rate, self.format.sample_rate
                ),
            ));
        }
        if setup.channels < self.format.channels {
            return Err(Error::source(
                &self.uri,
                format!(
                    "device came back with {} channel(s) but the stream has {}",
                    setup.channels, self.format.channels
                ),
            ));
        }
        log_setup(&self.uri, &self.request, &setup, self.format.channels);
        self.setup = setup;
        self.pcm = Some(pcm);
        // The device's timeline starts again: nothing it captures follows the last read.
        self.captured_at = None;
        Ok(())
    }
}

/// Opens `device` for capture and negotiates the nearest parameters to `request`.
fn open_device(uri: &str, device: &str, request: &CaptureParams) -> Result<(PCM, Setup)> {
    // The alsa crate panics on a name with a NUL byte; no device has one.
    if device.contains('\0') {
        return Err(Error::usage(format!(
            "--source {uri}: device name contains a NUL byte"
        )));
    }
    let fail =
        |what: &str, e: ::alsa::Error| Error::source(uri, format!("{what}: {}", describe(&e)));
    let pcm = PCM::new(device, Direction::Capture, false)
        .map_err(|e| open_error(uri, Direction::Capture, e))?;
    let setup = {
        let hw =
            HwParams::any(&pcm).map_err(|e| fail("cannot read the device's capabilities", e))?;
        hw.set_access(Access::RWInterleaved)
            .map_err(|e| fail("device does not offer interleaved capture", e))?;
        let offered: Vec<SampleFormat> = SampleFormat::BEST_FIRST
            .into_iter()
            .filter(|f| hw.test_format(alsa_format(*f)).is_ok())
            .collect();
        let sample_format = choose_format(request.sample_format, &offered).ok_or_else(|| {
            Error::source(
                uri,
                format!(
                    "device offers none of the sample formats earshot reads ({})",
                    super::raw::format_names()
                ),
            )
        })?;
        hw.set_format(alsa_format(sample_format))
            .map_err(|e| fail("cannot set the sample format", e))?;
        hw.set_channels_near(u32::from(request.channels))
            .map_err(|e| fail("cannot set the channel count", e))?;
        let rate = hw
            .set_rate_near(request.rate, ::alsa::ValueOr::Nearest)
            .map_err(|e| fail("cannot set the sample rate", e))?;
        let period = request.period_frames.unwrap_or((rate / 100).max(16));
        let period = hw
            .set_period_size_near(frames(period), ::alsa::ValueOr::Nearest)
            .map_err(|e| fail("cannot set the period size", e))?;
        let buffer = (rate.saturating_mul(BUFFER_TIME.as_millis() as u32) / 1000)
            .max(u32::try_from(period).unwrap_or(0).saturating_mul(4));
        hw.set_buffer_size_near(frames(buffer))
            .map_err(|e| fail("cannot set the buffer size", e))?;
        pcm.hw_params(&hw)
            .map_err(|e| fail("device refused the parameters", e))?;
        let channels = hw.get_channels().map_err(|e| fail("channels", e))?;
        Setup {
            sample_format,
            rate: hw.get_rate().map_err(|e| fail("rate", e))?,
            channels: u16::try_from(channels).unwrap_or(u16::MAX),
            period_frames: hw.get_period_size().map_err(|e| fail("period", e))?.max(0) as u64,
            buffer_frames: hw.get_buffer_size().map_err(|e| fail("buffer", e))?.max(0) as u64,
        }
    };
    // Start now rather than on the first read, so a stalled device is noticed by `wait`.
    pcm.start().map_err(|e| fail("cannot start capture", e))?;
    Ok((pcm, setup))
}

/// The format to ask for: the one requested if the device offers it, else the best offered.
fn choose_format(
    requested: Option<SampleFormat>,
    offered: &[SampleFormat],
) -> Option<SampleFormat> {
    match requested {
        Some(f) if offered.contains(&f) => Some(f),
        _ => offered.first().copied(),
    }
}

fn log_setup(uri: &str, request: &CaptureParams, setup: &Setup, stream_channels: u16) {
    let mut notes = Vec::new();
    if let Some(f) = request.sample_format {
        if f != setup.sample_format {
            notes.push(format!("{f} is not offered"));
        }
    }
    if setup.rate != request.rate {
        notes.push(format!("asked for {} Hz", request.rate));
    }
    if setup.channels != request.channels {
        notes.push(format!(
            "asked for {} channel(s); streaming {stream_channels}",
            request.channels
        ));
    }
    if let Some(p) = request.period_frames {
        if u64::from(p) != setup.period_frames {
            notes.push(format!("asked for a period of {p} frames"));
        }
    }
    let period_ms = setup.period_frames as f64 * 1000.0 / f64::from(setup.rate);
    let buffer_ms = setup.buffer_frames as f64 * 1000.0 / f64::from(setup.rate);
    crate::log!(
        "{uri}: capturing {}, {} Hz, {} channel(s), period {} frames ({period_ms:.1} ms), \
         buffer {} frames ({buffer_ms:.0} ms){}",
        setup.sample_format,
        setup.rate,
        setup.channels,
        setup.period_frames,
        setup.buffer_frames,
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    );
}

/// `n` frames as ALSA counts them: a C long, which cannot hold every u32 on a 32-bit Pi.
#[allow(clippy::unnecessary_fallible_conversions)] // infallible only where a long is 64 bits
fn frames(n: u32) -> Frames {
    Frames::try_from(n).unwrap_or(Frames::MAX)
}

/// The ALSA name of a sample format (also for `listen --play`).
pub(crate) fn alsa_format(f: SampleFormat) -> AlsaFormat {
    match f {
        SampleFormat::S16Le => AlsaFormat::S16LE,
        SampleFormat::S24Le => AlsaFormat::S24LE,
        SampleFormat::S24_3Le => AlsaFormat::S243LE,
        SampleFormat::S32Le => AlsaFormat::S32LE,
        SampleFormat::FloatLe => AlsaFormat::FloatLE,
    }
}

/// An overrun or a suspend: recovered in place without closing the device.
fn is_recoverable(e: &::alsa::Error) -> bool {
    matches!(e.errno().abs(), libc::EPIPE | libc::ESTRPIPE)
}

/// An error opening a capture or (for `listen --play`) playback device, with the likely cause
/// for the common errors.
pub(crate) fn open_error(uri: &str, direction: Direction, e: ::alsa::Error) -> Error {
    let capture = matches!(direction, Direction::Capture);
    let hint = match e.errno().abs() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO if capture => {
            "no such capture device (`arecord -L` lists the names; check the card is plugged in)"
        }
        libc::ENOENT | libc::ENODEV | libc::ENXIO => {
            "no such playback device (`aplay -L` lists the names; check the card is plugged in)"
        }
        libc::EBUSY if capture => {
            "device is busy: another program is capturing from it (share it through a dsnoop \
             device)"
        }
        libc::EBUSY => {
            "device is busy: another program is playing through it (share it through a dmix \
             device)"
        }
        libc::EACCES | libc::EPERM => "permission denied (add the user to the audio group)",
        _ => "",
    };
    let what = if capture { "capture" } else { "playback" };
    if hint.is_empty() {
        Error::source(uri, format!("cannot open {what} device: {}", describe(&e)))
    } else {
        Error::source(uri, hint)
    }
}

/// An ALSA error as the OS describes its errno, e.g. `No such device (os error 19)`.
pub(crate) fn describe(e: &::alsa::Error) -> String {
    std::io::Error::from_raw_os_error(e.errno().abs()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_format_is_used_when_offered_else_the_best_offered() {
        use SampleFormat::*;
        assert_eq!(choose_format(None, &[S32Le, S16Le]), Some(S32Le));
        assert_eq!(choose_format(Some(S16Le), &[S32Le, S16Le]), Some(S16Le));
        assert_eq!(
            choose_format(Some(FloatLe), &[S24_3Le, S16Le]),
            Some(S24_3Le)
        );
        assert_eq!(choose_format(None, &[]), None);
    }

    /// alsa 0.12 `PCM::new` unwraps `CString::new(name)`, so a name with a NUL byte panics
    /// instead of returning an error. earshot refuses such a name before calling it.
    #[test]
    fn alsa_crate_panics_on_a_device_name_with_a_nul_byte_so_earshot_checks_first() {
        let crate_result = std::panic::catch_unwind(|| {
            let _ = PCM::new("hw:0\0", Direction::Capture, false);
        });
        assert!(crate_result.is_err(), "alsa crate fixed: drop the check");
        let ours =
            open_device("alsa:hw:0\0", "hw:0\0", &CaptureParams::default()).expect_err("refused");
        assert!(ours.to_string().contains("NUL"), "{ours}");
    }
}
