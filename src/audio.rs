//! Telephone audio: G.711 μ-law ⇄ 16-bit linear PCM, and WAV files (RIFF, `fmt `, `data`).
//!
//! Twilio Media Streams carry 8 kHz mono μ-law; recordings are stored as μ-law WAV (format 7)
//! while a call runs and converted to 16-bit PCM WAV (format 1) afterwards by `recording_job`.

use std::io::{self, Read, Write};

pub const FORMAT_PCM: u16 = 1;
pub const FORMAT_MULAW: u16 = 7;

/// Decodes one G.711 μ-law byte to a 16-bit linear sample.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    // magnitude ≤ 32124, so the cast is lossless.
    if u & 0x80 != 0 {
        -(magnitude as i16)
    } else {
        magnitude as i16
    }
}

/// Encodes a 16-bit linear sample as G.711 μ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    // Every part is masked to its bit width, so the value fits in a byte.
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// The μ-law byte for silence (linear 0).
pub const ULAW_SILENCE: u8 = 0xFF;

/// The longest track a call records, in seconds: six hours of 8 kHz μ-law, well inside what a
/// WAV's 32-bit length holds once converted to 16-bit PCM.
pub const MAX_TRACK_SECS: u64 = 6 * 3600;

/// A WAV header's essentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavFormat {
    pub format: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
}

impl WavFormat {
    pub const MULAW_8K_MONO: WavFormat = WavFormat {
        format: FORMAT_MULAW,
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 8,
    };
    pub const PCM16_8K_MONO: WavFormat = WavFormat {
        format: FORMAT_PCM,
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
    };

    fn block_align(self) -> u16 {
        self.channels * self.bits_per_sample.div_ceil(8)
    }
}

/// A 44-byte canonical header for `data_len` bytes of audio. Written again with the final
/// length when a streamed recording is finalized.
pub fn wav_header(fmt: WavFormat, data_len: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let byte_rate = fmt.sample_rate * u32::from(fmt.block_align());
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data_len).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&fmt.format.to_le_bytes());
    h[22..24].copy_from_slice(&fmt.channels.to_le_bytes());
    h[24..28].copy_from_slice(&fmt.sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&fmt.block_align().to_le_bytes());
    h[34..36].copy_from_slice(&fmt.bits_per_sample.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// A parsed WAV file: its format and its audio bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wav {
    pub format: WavFormat,
    pub data: Vec<u8>,
}

impl Wav {
    pub fn frames(&self) -> usize {
        self.data.len() / usize::from(self.format.block_align().max(1))
    }

    pub fn duration_secs(&self) -> f64 {
        self.frames() as f64 / f64::from(self.format.sample_rate.max(1))
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses a RIFF/WAVE file, skipping chunks other than `fmt ` and `data`.
pub fn read_wav(mut r: impl Read) -> io::Result<Wav> {
    let mut riff = [0u8; 12];
    r.read_exact(&mut riff)
        .map_err(|_| invalid("shorter than a WAV header"))?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(invalid("not a RIFF/WAVE file"));
    }
    let mut format = None;
    loop {
        let mut chunk = [0u8; 8];
        if r.read_exact(&mut chunk).is_err() {
            return Err(invalid("no data chunk"));
        }
        let len = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as usize;
        match &chunk[0..4] {
            b"fmt " => {
                if len < 16 {
                    return Err(invalid("fmt chunk too short"));
                }
                let mut f = vec![0u8; len + (len & 1)];
                r.read_exact(&mut f)
                    .map_err(|_| invalid("truncated fmt chunk"))?;
                format = Some(WavFormat {
                    format: u16::from_le_bytes([f[0], f[1]]),
                    channels: u16::from_le_bytes([f[2], f[3]]),
                    sample_rate: u32::from_le_bytes([f[4], f[5], f[6], f[7]]),
                    bits_per_sample: u16::from_le_bytes([f[14], f[15]]),
                });
            }
            b"data" => {
                let format = format.ok_or_else(|| invalid("data chunk before fmt chunk"))?;
                if format.channels == 0 || format.sample_rate == 0 {
                    return Err(invalid("zero channels or sample rate"));
                }
                let mut data = Vec::with_capacity(len.min(64 << 20));
                r.take(len as u64).read_to_end(&mut data)?;
                if data.len() != len {
                    return Err(invalid(format!(
                        "data chunk declares {len} bytes but the file holds {}",
                        data.len()
                    )));
                }
                return Ok(Wav { format, data });
            }
            _ => {
                io::copy(
                    &mut (&mut r).take((len + (len & 1)) as u64),
                    &mut io::sink(),
                )?;
            }
        }
    }
}

/// Writes a WAV file with a canonical header.
pub fn write_wav(mut w: impl Write, fmt: WavFormat, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len()).map_err(|_| invalid("audio longer than a WAV can hold"))?;
    w.write_all(&wav_header(fmt, len))?;
    w.write_all(data)
}

/// μ-law bytes → little-endian 16-bit PCM bytes.
pub fn ulaw_to_pcm16(ulaw: &[u8]) -> Vec<u8> {
    ulaw.iter()
        .flat_map(|b| ulaw_to_linear(*b).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mulaw_matches_g711_reference_points() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        // Every code decodes and re-encodes to itself (except the two zeros).
        for b in 0..=255u8 {
            let back = linear_to_ulaw(ulaw_to_linear(b));
            if b != 0x7F {
                assert_eq!(back, b, "code {b:#x}");
            }
        }
    }

    #[test]
    fn wav_round_trips_and_rejects_garbage() {
        let data = vec![ULAW_SILENCE; 8000];
        let mut file = Vec::new();
        write_wav(&mut file, WavFormat::MULAW_8K_MONO, &data).unwrap();
        let wav = read_wav(file.as_slice()).unwrap();
        assert_eq!(wav.format, WavFormat::MULAW_8K_MONO);
        assert_eq!(wav.duration_secs(), 1.0);
        let pcm = ulaw_to_pcm16(&wav.data);
        assert_eq!(pcm.len(), 16000);
        assert!(read_wav(&b"RIFF....WAVX"[..]).is_err());
        assert!(read_wav(&file[..50]).is_err(), "truncated data");
    }
}
