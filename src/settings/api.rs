//! `[api]`: the public API's secrets, de-dupe windows, limits, queues and health alerts.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use anyhow::bail;
use serde::Deserialize;

use super::units::PositiveMillis;
use super::unset;
use crate::jobs::is_valid_queue_name;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub internal_secret: String,
    pub internal_api_token: String,
    pub twilio_auth_token: String,
    pub public_base_url: String,
    pub allow_missing_secrets: bool,
    pub webhook_dedupe_ttl_secs: u64,
    pub twilio_dedupe_ttl_secs: u64,
    pub push_dedupe_ttl_secs: u64,
    pub request_timeout_ms: PositiveMillis,
    pub max_concurrent_requests: NonZeroUsize,
    pub max_messages_per_request: usize,
    pub queues: Vec<String>,
    pub ingress_queues: IngressQueues,
    pub alerts: AlertSettings,
}

/// The queue each ingress source enqueues to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressQueues {
    pub whatsapp: String,
    pub twilio: String,
    pub push: String,
    pub calls: String,
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line, not even through a Debug print.
        let set = |s: &str| if s.is_empty() { "<unset>" } else { "<set>" };
        f.debug_struct("ApiSettings")
            .field("internal_secret", &set(&self.internal_secret))
            .field("internal_api_token", &set(&self.internal_api_token))
            .field("twilio_auth_token", &set(&self.twilio_auth_token))
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    pub queue_depth: u64,
    pub oldest_job_age_secs: u64,
    pub unserved_secs: u64,
    #[serde(default)]
    pub queues: HashMap<String, QueueAlert>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueAlert {
    pub queue_depth: Option<u64>,
    pub oldest_job_age_secs: Option<u64>,
}

impl AlertSettings {
    /// (depth, age) thresholds for a queue.
    pub fn for_queue(&self, queue: &str) -> (u64, u64) {
        let o = self.queues.get(queue);
        (
            o.and_then(|q| q.queue_depth).unwrap_or(self.queue_depth),
            o.and_then(|q| q.oldest_job_age_secs)
                .unwrap_or(self.oldest_job_age_secs),
        )
    }
}

impl ApiSettings {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        if !(1..=100_000).contains(&self.max_messages_per_request) {
            bail!("api.max_messages_per_request must be between 1 and 100000");
        }
        let max_ttl = crate::jobs::MAX_DEDUPE_TTL_SECS;
        for (name, ttl) in [
            ("webhook", self.webhook_dedupe_ttl_secs),
            ("twilio", self.twilio_dedupe_ttl_secs),
            ("push", self.push_dedupe_ttl_secs),
        ] {
            if !(1..=max_ttl).contains(&ttl) {
                bail!("api.{name}_dedupe_ttl_secs must be 1 to {max_ttl} seconds (30 days)");
            }
        }
        let iq = &self.ingress_queues;
        for (source, q) in [
            ("whatsapp", &iq.whatsapp),
            ("twilio", &iq.twilio),
            ("push", &iq.push),
            ("calls", &iq.calls),
        ] {
            if !is_valid_queue_name(q) {
                bail!(
                    "api.ingress_queues.{source}: {q:?} must be 1-128 characters of [A-Za-z0-9_.-]"
                );
            }
        }
        if let Some(q) = self.queues.iter().find(|q| !is_valid_queue_name(q)) {
            bail!("api.queues: {q:?} must be 1-128 characters of [A-Za-z0-9_.-]");
        }
        let url = &self.public_base_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            bail!("api.public_base_url (PUBLIC_BASE_URL) must start with https:// or http://");
        }
        Ok(())
    }

    /// What the calls role needs to tell Twilio's streams from anyone else's, when unset, by
    /// the variable that sets each.
    pub fn missing_calls_secrets(&self) -> Vec<&'static str> {
        unset(&[
            ("TWILIO_AUTH_TOKEN", &self.twilio_auth_token),
            ("PUBLIC_BASE_URL", &self.public_base_url),
        ])
    }

    /// The settings the public API cannot run without, when unset, by the variable that sets each.
    pub fn missing_secrets(&self) -> Vec<&'static str> {
        unset(&[
            ("INTERNAL_SECRET", &self.internal_secret),
            ("INTERNAL_API_TOKEN", &self.internal_api_token),
            ("TWILIO_AUTH_TOKEN", &self.twilio_auth_token),
            ("PUBLIC_BASE_URL", &self.public_base_url),
        ])
    }
}
