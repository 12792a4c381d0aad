//! The stream's audio format, chunk sizing and sample conversion to the wire codec (s16le).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The format every source delivers and every listener receives: interleaved signed 16-bit
/// little-endian PCM at the source's own rate and channel count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub sample_rate: u32,
    pub channels: u16,
}

/// The wire codec name, as sent in `hello`.
pub const CODEC_PCM_S16LE: &str = "pcm_s16le";

/// Rates a source may have: telephony 8 kHz up to studio 192 kHz.
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// Channel counts the stream supports: the browser player and the WAV writer handle these.
pub const CHANNEL_RANGE: std::ops::RangeInclusive<u16> = 1..=2;

impl Format {
    /// Checks that a format can be streamed, naming what is wrong.
    pub fn validate(self) -> Result<Format, String> {
        if !RATE_RANGE.contains(&self.sample_rate) {
            return Err(format!(
                "unsupported sample rate {} Hz (earshot streams {} to {} Hz)",
                self.sample_rate,
                RATE_RANGE.start(),
                RATE_RANGE.end()
            ));
        }
        if !CHANNEL_RANGE.contains(&self.channels) {
            return Err(format!(
                "unsupported channel count {} (earshot streams mono or stereo)",
                self.channels
            ));
        }
        Ok(self)
    }

    /// Frames in one chunk of `chunk_ms` milliseconds, rounded to the nearest frame.
    ///
    /// Pacing counts frames, not milliseconds, so a rate such as 11025 Hz whose chunk is not a
    /// whole number of frames still keeps exact time: each chunk lasts `frames / rate` seconds.
    pub fn frames_per_chunk(self, chunk_ms: u32) -> usize {
        let frames = (u64::from(self.sample_rate) * u64::from(chunk_ms) + 500) / 1000;
        frames.max(1) as usize
    }

    /// The duration of `frames` frames at this rate.
    pub fn duration_of(self, frames: u64) -> Duration {
        let rate = u64::from(self.sample_rate);
        Duration::from_secs(frames / rate)
            + Duration::from_nanos((frames % rate) * 1_000_000_000 / rate)
    }

    /// Bytes of s16le audio in `frames` frames.
    pub fn bytes_for(self, frames: usize) -> usize {
        frames * usize::from(self.channels) * 2
    }
}

/// Converts a signed integer sample of `bits` significant bits to 16 bits, rounding to nearest
/// and saturating, so full scale never wraps around.
pub fn int_to_i16(sample: i32, bits: u32) -> i16 {
    match bits {
        0..=16 => (sample << (16 - bits.max(1))) as i16,
        _ => {
            let shift = bits.min(32) - 16;
            let rounded = (i64::from(sample) + (1i64 << (shift - 1))) >> shift;
            rounded.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
        }
    }
}

/// Converts a float sample in [-1.0, 1.0] to 16 bits, rounding and saturating (NaN becomes 0).
pub fn float_to_i16(sample: f32) -> i16 {
    if sample.is_nan() {
        return 0;
    }
    (sample * 32768.0)
        .round()
        .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// Microseconds since the Unix epoch: the production time carried by every chunk.
pub fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// Milliseconds since the Unix epoch, as in `server_time_ms`.
pub fn unix_millis_now() -> u64 {
    unix_micros(SystemTime::now()) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_follow_rate_and_duration() {
        let cd = Format {
            sample_rate: 44_100,
            channels: 2,
        };
        assert_eq!(cd.frames_per_chunk(20), 882);
        assert_eq!(cd.bytes_for(882), 3528);
        let odd = Format {
            sample_rate: 11_025,
            channels: 1,
        };
        assert_eq!(odd.frames_per_chunk(5), 55);
        assert_eq!(
            cd.duration_of(44_100 * 3 + 441),
            Duration::from_millis(3010)
        );
    }

    #[test]
    fn wide_samples_round_and_saturate_instead_of_wrapping() {
        assert_eq!(int_to_i16(i32::MAX, 32), i16::MAX);
        assert_eq!(int_to_i16(i32::MIN, 32), i16::MIN);
        assert_eq!(int_to_i16(0x7F_FFFF, 24), i16::MAX);
        assert_eq!(int_to_i16(-0x80_0000, 24), i16::MIN);
        assert_eq!(int_to_i16(0x0180, 24), 2); // 1.5 rounds up
        assert_eq!(int_to_i16(-128, 8), i16::MIN);
        assert_eq!(int_to_i16(127, 8), 127 << 8);
        assert_eq!(int_to_i16(-1234, 16), -1234);
    }

    #[test]
    fn floats_clamp_at_full_scale() {
        assert_eq!(float_to_i16(1.0), i16::MAX);
        assert_eq!(float_to_i16(-1.0), i16::MIN);
        assert_eq!(float_to_i16(2.0), i16::MAX);
        assert_eq!(float_to_i16(0.5), 16384);
        assert_eq!(float_to_i16(f32::NAN), 0);
    }
}
