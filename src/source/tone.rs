//! `tone:`, the test signal: a steady tone with a marker beep at the start of every second.
//!
//! Designed so that an interruption is both audible and measurable: the steady 440 Hz tone
//! (−12 dBFS) makes any dropout a click or a hole, and a 1 kHz beep of 50 ms at the start of
//! every second of stream position turns a lost or repeated stretch into a beep that comes early
//! or late. Every sample is a pure function of its position, so two instances started at the same
//! position produce identical samples.

use std::f64::consts::PI;

use super::Source;
use crate::audio::Format;
use crate::error::{Error, Result};

pub const DEFAULT_FREQ_HZ: u32 = 440;
pub const MARKER_FREQ_HZ: u32 = 1000;
pub const MARKER_MS: u64 = 50;
/// Peak amplitude of the tone and of the marker, each −12 dBFS.
const AMPLITUDE: f64 = 0.25;
/// Raised-cosine edges of the marker, so the beep itself never clicks.
const RAMP_MS: u64 = 5;

pub struct Tone {
    format: Format,
    freq_hz: u32,
    /// Frames since position zero.
    position: u64,
}

impl Tone {
    pub fn new(format: Format, freq_hz: u32) -> Tone {
        Tone {
            format,
            freq_hz,
            position: 0,
        }
    }

    /// Parses `tone:` with optional `?freq=HZ&rate=HZ&channels=N`.
    pub fn from_uri(uri: &str, rest: &str) -> Result<Tone> {
        let mut format = Format {
            sample_rate: 44_100,
            channels: 2,
        };
        let mut freq = DEFAULT_FREQ_HZ;
        let query = rest.strip_prefix('?').unwrap_or(rest);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = value.parse::<u32>().map_err(|_| {
                Error::usage(format!(
                    "--source {uri}: '{key}' needs a whole number, got '{value}'"
                ))
            })?;
            match key {
                "freq" => freq = number,
                "rate" => format.sample_rate = number,
                "channels" => format.channels = number as u16,
                _ => {
                    return Err(Error::usage(format!(
                        "--source {uri}: unknown parameter '{key}' (expected freq, rate or channels)"
                    )));
                }
            }
        }
        let format = format
            .validate()
            .map_err(|reason| Error::usage(format!("--source {uri}: {reason}")))?;
        if freq == 0 || freq >= format.sample_rate / 2 {
            return Err(Error::usage(format!(
                "--source {uri}: freq must be between 1 Hz and half the sample rate"
            )));
        }
        Ok(Tone::new(format, freq))
    }

    /// Moves to an absolute position in frames, so the signal can follow a clock.
    pub fn set_position(&mut self, frame: u64) {
        self.position = frame;
    }

    /// The sample at a position: a pure function, exact over any length of stream.
    pub fn sample_at(&self, frame: u64) -> i16 {
        let rate = u64::from(self.format.sample_rate);
        // Whole seconds hold whole cycles of integer frequencies, so only the offset matters.
        let in_second = frame % rate;
        let phase = |hz: u32| 2.0 * PI * (in_second * u64::from(hz) % rate) as f64 / rate as f64;
        let mut value = AMPLITUDE * phase(self.freq_hz).sin();
        let marker_len = rate * MARKER_MS / 1000;
        if in_second < marker_len {
            let ramp = rate * RAMP_MS / 1000;
            let edge = in_second.min(marker_len - 1 - in_second);
            let gain = if edge < ramp {
                0.5 - 0.5 * (PI * edge as f64 / ramp as f64).cos()
            } else {
                1.0
            };
            value += AMPLITUDE * gain * phase(MARKER_FREQ_HZ).sin();
        }
        (value * 32767.0).round() as i16
    }
}

impl Source for Tone {
    fn format(&self) -> Format {
        self.format
    }

    fn read(&mut self, out: &mut [i16]) -> Result<usize> {
        let channels = usize::from(self.format.channels);
        let frames = out.len() / channels;
        for frame in out.chunks_exact_mut(channels).take(frames) {
            frame.fill(self.sample_at(self.position));
            self.position += 1;
        }
        Ok(frames * channels)
    }

    fn seek_to(&mut self, frame: u64) -> Result<()> {
        self.set_position(frame);
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "tone:?freq={}&rate={}&channels={}",
            self.freq_hz, self.format.sample_rate, self.format.channels
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_is_continuous_across_second_boundaries() {
        let tone = Tone::new(
            Format {
                sample_rate: 8000,
                channels: 1,
            },
            440,
        );
        // A sine of frequency f moves at most 2πf/rate × amplitude per sample; the marker adds its own.
        let step_of = |hz: f64| (2.0 * PI * hz / 8000.0 * AMPLITUDE * 32767.0) as i32 + 2;
        let max_step = step_of(440.0);
        let marker_step = max_step + step_of(1000.0);
        for frame in 7_900..8_100u64 {
            let step = i32::from(tone.sample_at(frame + 1)) - i32::from(tone.sample_at(frame));
            let limit = if (frame % 8000) < 400 {
                marker_step
            } else {
                max_step
            };
            assert!(step.abs() <= limit, "jump of {step} at frame {frame}");
        }
    }

    #[test]
    fn marker_beeps_only_in_the_first_50_ms_of_each_second() {
        let tone = Tone::new(
            Format {
                sample_rate: 8000,
                channels: 1,
            },
            440,
        );
        let energy = |from: u64, to: u64| {
            (from..to)
                .map(|f| f64::from(tone.sample_at(f)).powi(2))
                .sum::<f64>()
                / (to - from) as f64
        };
        assert!(energy(8000 + 40, 8000 + 360) > 1.5 * energy(8000 + 800, 8000 + 1120));
    }

    #[test]
    fn bad_parameters_are_usage_errors() {
        assert!(Tone::from_uri("tone:?freq=abc", "?freq=abc").is_err());
        assert!(Tone::from_uri("tone:?volume=3", "?volume=3").is_err());
        assert!(Tone::from_uri("tone:?rate=1", "?rate=1").is_err());
        let t = Tone::from_uri(
            "tone:?freq=1000&rate=48000&channels=1",
            "?freq=1000&rate=48000&channels=1",
        )
        .unwrap();
        assert_eq!(
            t.format(),
            Format {
                sample_rate: 48_000,
                channels: 1
            }
        );
    }
}
