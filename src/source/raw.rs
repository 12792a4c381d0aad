//! Raw interleaved PCM as capture devices and pipes deliver it: the sample formats earshot reads,
//! by their ALSA names, and their conversion to the stream's s16le (and back, for a playback
//! device that takes no s16le).
//!
//! Wider samples are rounded to 16 bits and saturate at full scale (see [`audio::int_to_i16`]).
//! 32-bit integer samples are taken at their full 32-bit scale: I2S microphones on a Raspberry Pi
//! deliver 18 or 24 significant bits left-justified in S32_LE, so reading them as 32-bit keeps
//! them at the right level, where treating them as 24-bit would make them 256 times too loud.

use crate::audio;

/// A little-endian sample format, named as ALSA (and `arecord -f`) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// Signed 16-bit.
    S16Le,
    /// Signed 24-bit in the low three bytes of a 4-byte word (the top byte is ignored).
    S24Le,
    /// Signed 24-bit packed in 3 bytes.
    S24_3Le,
    /// Signed 32-bit.
    S32Le,
    /// 32-bit IEEE float, full scale ±1.0.
    FloatLe,
}

impl SampleFormat {
    /// Every format, in the order a capture device's formats are preferred when none is asked
    /// for: the most precision first (converting down to 16 bits then rounds instead of losing
    /// the device's low bits), and integer before float.
    pub const BEST_FIRST: [SampleFormat; 5] = [
        SampleFormat::S32Le,
        SampleFormat::S24Le,
        SampleFormat::S24_3Le,
        SampleFormat::FloatLe,
        SampleFormat::S16Le,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SampleFormat::S16Le => "S16_LE",
            SampleFormat::S24Le => "S24_LE",
            SampleFormat::S24_3Le => "S24_3LE",
            SampleFormat::S32Le => "S32_LE",
            SampleFormat::FloatLe => "FLOAT_LE",
        }
    }

    /// Parses an ALSA format name in any case (`S16_LE`, `s32_le`), or the unambiguous `ffmpeg`
    /// and `sox` spellings `s16le`, `s32le` and `f32le`.
    ///
    /// `s24le` is refused with an explanation: to ffmpeg it means 3 packed bytes, to ALSA
    /// (`S24_LE`) 24 bits in 4 bytes, and guessing wrong turns audio into noise.
    pub fn parse(text: &str) -> Result<SampleFormat, String> {
        match text.to_ascii_uppercase().as_str() {
            "S16_LE" | "S16LE" => Ok(SampleFormat::S16Le),
            "S24_LE" => Ok(SampleFormat::S24Le),
            "S24_3LE" => Ok(SampleFormat::S24_3Le),
            "S32_LE" | "S32LE" => Ok(SampleFormat::S32Le),
            "FLOAT_LE" | "F32LE" => Ok(SampleFormat::FloatLe),
            "S24LE" => Err(format!(
                "'{text}' is ambiguous: use S24_3LE for 3-byte samples (ffmpeg's s24le) or \
                 S24_LE for 24 bits in 4 bytes (ALSA's S24_LE)"
            )),
            _ => Err(format!(
                "unknown sample format '{text}' (expected one of {})",
                format_names()
            )),
        }
    }

    /// Bytes one sample takes.
    pub fn width(self) -> usize {
        match self {
            SampleFormat::S16Le => 2,
            SampleFormat::S24_3Le => 3,
            SampleFormat::S24Le | SampleFormat::S32Le | SampleFormat::FloatLe => 4,
        }
    }

    /// One sample's bytes (exactly [`width`](Self::width) of them) as s16.
    pub fn to_i16(self, b: &[u8]) -> i16 {
        match self {
            SampleFormat::S16Le => i16::from_le_bytes([b[0], b[1]]),
            // Shifting the 24 bits to the top of an i32 and back sign-extends them.
            SampleFormat::S24Le | SampleFormat::S24_3Le => {
                audio::int_to_i16(i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8, 24)
            }
            SampleFormat::S32Le => {
                audio::int_to_i16(i32::from_le_bytes([b[0], b[1], b[2], b[3]]), 32)
            }
            SampleFormat::FloatLe => {
                audio::float_to_i16(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
        }
    }

    /// Appends one s16 sample in this format: widened exactly, so [`to_i16`](Self::to_i16)
    /// gives it back unchanged.
    pub fn push_i16(self, sample: i16, out: &mut Vec<u8>) {
        let wide = i32::from(sample);
        match self {
            SampleFormat::S16Le => out.extend_from_slice(&sample.to_le_bytes()),
            SampleFormat::S24Le => out.extend_from_slice(&(wide << 8).to_le_bytes()),
            SampleFormat::S24_3Le => out.extend_from_slice(&(wide << 8).to_le_bytes()[..3]),
            SampleFormat::S32Le => out.extend_from_slice(&(wide << 16).to_le_bytes()),
            SampleFormat::FloatLe => {
                out.extend_from_slice(&(f32::from(sample) / 32768.0).to_le_bytes())
            }
        }
    }

    /// Converts whole frames of `in_channels` samples in `bytes` into `out`, keeping the first
    /// `out_channels` of each frame (a 4-channel microphone array streamed as stereo keeps
    /// channels 1 and 2). Returns the number of samples written to `out`.
    pub fn decode(
        self,
        bytes: &[u8],
        in_channels: usize,
        out_channels: usize,
        out: &mut [i16],
    ) -> usize {
        let width = self.width();
        let frame_bytes = width * in_channels;
        let keep = out_channels.min(in_channels);
        let mut n = 0;
        for (frame, dest) in bytes
            .chunks_exact(frame_bytes)
            .zip(out.chunks_exact_mut(keep))
        {
            for (sample, d) in frame.chunks_exact(width).zip(dest.iter_mut()) {
                *d = self.to_i16(sample);
            }
            n += keep;
        }
        n
    }
}

impl std::fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The names of every format, for help and error messages: `S16_LE, S24_LE, ...`.
pub fn format_names() -> String {
    [
        SampleFormat::S16Le,
        SampleFormat::S24Le,
        SampleFormat::S24_3Le,
        SampleFormat::S32Le,
        SampleFormat::FloatLe,
    ]
    .map(SampleFormat::name)
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(format: SampleFormat, bytes: &[u8]) -> i16 {
        let mut out = [0i16; 1];
        assert_eq!(format.decode(bytes, 1, 1, &mut out), 1);
        out[0]
    }

    #[test]
    fn every_s16_sample_widened_for_playback_reads_back_unchanged() {
        for format in SampleFormat::BEST_FIRST {
            let mut bytes = Vec::new();
            for v in i16::MIN..=i16::MAX {
                bytes.clear();
                format.push_i16(v, &mut bytes);
                assert_eq!(bytes.len(), format.width(), "{format}");
                assert_eq!(format.to_i16(&bytes), v, "{format}");
            }
        }
        // Full scale lands at the top of the wider word, not at its 16-bit value.
        let mut bytes = Vec::new();
        SampleFormat::S32Le.push_i16(i16::MIN, &mut bytes);
        assert_eq!(bytes, i32::MIN.to_le_bytes());
        bytes.clear();
        SampleFormat::FloatLe.push_i16(i16::MIN, &mut bytes);
        assert_eq!(bytes, (-1.0f32).to_le_bytes());
    }

    #[test]
    fn sixteen_bit_samples_pass_through_unchanged() {
        for v in [i16::MIN, -1, 0, 1, 12345, i16::MAX] {
            assert_eq!(one(SampleFormat::S16Le, &v.to_le_bytes()), v);
        }
    }

    #[test]
    fn thirty_two_bit_full_scale_saturates_instead_of_wrapping() {
        assert_eq!(one(SampleFormat::S32Le, &i32::MAX.to_le_bytes()), i16::MAX);
        assert_eq!(one(SampleFormat::S32Le, &i32::MIN.to_le_bytes()), i16::MIN);
        // Half a 16-bit step rounds up; just under half rounds down.
        assert_eq!(one(SampleFormat::S32Le, &0x0001_8000i32.to_le_bytes()), 2);
        assert_eq!(one(SampleFormat::S32Le, &0x0001_7FFFi32.to_le_bytes()), 1);
        assert_eq!(
            one(SampleFormat::S32Le, &(-0x0001_8001i32).to_le_bytes()),
            -2
        );
    }

    #[test]
    fn left_justified_i2s_microphone_samples_come_out_at_the_right_level() {
        // A 24-bit microphone sample of half scale, as an I2S codec puts it in S32_LE.
        let half_scale_24 = 0x40_0000i32 << 8;
        assert_eq!(
            one(SampleFormat::S32Le, &half_scale_24.to_le_bytes()),
            16384
        );
        // A quiet -60 dBFS signal stays quiet (32768 / 1000 ≈ 33).
        let quiet = (i32::MAX as f64 / 1000.0) as i32;
        assert_eq!(one(SampleFormat::S32Le, &quiet.to_le_bytes()), 33);
    }

    #[test]
    fn twenty_four_bit_samples_sign_extend_round_and_saturate() {
        let packed = |v: i32| [v as u8, (v >> 8) as u8, (v >> 16) as u8];
        assert_eq!(one(SampleFormat::S24_3Le, &packed(0x7F_FFFF)), i16::MAX);
        assert_eq!(one(SampleFormat::S24_3Le, &packed(-0x80_0000)), i16::MIN);
        assert_eq!(one(SampleFormat::S24_3Le, &packed(-256)), -1);
        assert_eq!(one(SampleFormat::S24_3Le, &packed(0x180)), 2);
        // S24_LE ignores the top byte of its 4-byte word, whatever a driver leaves there.
        let mut word = packed(-0x80_0000).to_vec();
        word.push(0x00);
        assert_eq!(one(SampleFormat::S24Le, &word), i16::MIN);
        let mut word = packed(0x7F_FFFF).to_vec();
        word.push(0xFF);
        assert_eq!(one(SampleFormat::S24Le, &word), i16::MAX);
    }

    #[test]
    fn float_samples_scale_and_clamp() {
        assert_eq!(one(SampleFormat::FloatLe, &0.5f32.to_le_bytes()), 16384);
        assert_eq!(one(SampleFormat::FloatLe, &1.5f32.to_le_bytes()), i16::MAX);
        assert_eq!(
            one(SampleFormat::FloatLe, &(-1.0f32).to_le_bytes()),
            i16::MIN
        );
    }

    #[test]
    fn extra_device_channels_are_dropped_keeping_the_first() {
        let frames: Vec<u8> = [1i16, 2, 3, 4, 5, 6, 7, 8]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mut out = [0i16; 4];
        assert_eq!(SampleFormat::S16Le.decode(&frames, 4, 2, &mut out), 4);
        assert_eq!(out, [1, 2, 5, 6]);
        let mut mono = [0i16; 2];
        assert_eq!(SampleFormat::S16Le.decode(&frames, 4, 1, &mut mono), 2);
        assert_eq!(mono, [1, 5]);
    }

    #[test]
    fn format_names_parse_in_alsa_and_unambiguous_ffmpeg_spellings() {
        assert_eq!(SampleFormat::parse("S16_LE"), Ok(SampleFormat::S16Le));
        assert_eq!(SampleFormat::parse("s16le"), Ok(SampleFormat::S16Le));
        assert_eq!(SampleFormat::parse("S24_3LE"), Ok(SampleFormat::S24_3Le));
        assert_eq!(SampleFormat::parse("s32le"), Ok(SampleFormat::S32Le));
        assert_eq!(SampleFormat::parse("f32le"), Ok(SampleFormat::FloatLe));
        assert_eq!(SampleFormat::parse("FLOAT_LE"), Ok(SampleFormat::FloatLe));
        assert!(
            SampleFormat::parse("s24le")
                .unwrap_err()
                .contains("ambiguous")
        );
        assert!(
            SampleFormat::parse("U8")
                .unwrap_err()
                .contains("S16_LE, S24_LE")
        );
        for f in SampleFormat::BEST_FIRST {
            assert_eq!(SampleFormat::parse(f.name()), Ok(f));
        }
    }
}
