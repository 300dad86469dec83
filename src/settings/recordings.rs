//! `[recordings]`: where recordings are written, and what the recording job may download.

use std::num::NonZeroU64;
use std::path::PathBuf;

use anyhow::bail;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSettings {
    pub dir: PathBuf,
    pub allowed_hosts: Vec<String>,
    pub max_download_bytes: NonZeroU64,
    pub allow_http: bool,
    pub twilio_account_sid: String,
    pub min_free_bytes: u64,
}

impl RecordingSettings {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        if let Some(h) = self.allowed_hosts.iter().find(|h| {
            let name = h.strip_prefix("*.").unwrap_or(h);
            name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }) {
            bail!("recordings.allowed_hosts: {h:?} must be a host name, or *. and a domain");
        }
        Ok(())
    }
}
