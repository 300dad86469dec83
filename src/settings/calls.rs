//! `[calls]`: the realtime role's limits, the greeting it plays, its shutdown grace.

use std::num::NonZeroUsize;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::units::{Millis, PositiveMillis};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSettings {
    pub max_concurrent_calls: NonZeroUsize,
    pub idle_timeout_ms: PositiveMillis,
    pub shutdown_grace_ms: Millis,
    pub greeting_path: String,
    pub max_timestamp_lead_ms: PositiveMillis,
    pub max_call_secs: u64,
    pub max_message_bytes: usize,
    pub require_stream_token: bool,
}

impl CallSettings {
    /// The greeting's μ-law audio, if one is configured; the error names what is wrong with it.
    pub fn greeting(&self) -> anyhow::Result<Option<Vec<u8>>> {
        if self.greeting_path.is_empty() {
            return Ok(None);
        }
        let file = std::fs::File::open(&self.greeting_path)
            .with_context(|| format!("calls.greeting_path: cannot open {}", self.greeting_path))?;
        let wav = crate::audio::read_wav(std::io::BufReader::new(file)).with_context(|| {
            format!(
                "calls.greeting_path: {} is not a WAV file",
                self.greeting_path
            )
        })?;
        if wav.format != crate::audio::WavFormat::MULAW_8K_MONO {
            bail!(
                "calls.greeting_path: {} must be μ-law 8 kHz mono, as Twilio plays it",
                self.greeting_path
            );
        }
        Ok(Some(wav.data))
    }

    pub(super) fn check(&self) -> anyhow::Result<()> {
        self.greeting()?;
        let longest = crate::audio::MAX_TRACK_SECS;
        if self.max_call_secs == 0 || self.max_call_secs > longest {
            bail!("calls.max_call_secs must be between 1 and {longest} (6 hours)");
        }
        // Twilio's messages are a few hundred bytes; the start carries the call's parameters.
        if !(4096..=16 << 20).contains(&self.max_message_bytes) {
            bail!("calls.max_message_bytes must be between 4096 and 16777216 (16 MiB)");
        }
        Ok(())
    }
}
