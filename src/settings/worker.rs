//! `[worker]`: queues, the timings that keep live jobs from being recovered, retries, TTLs,
//! per-type overrides, aliases and HTTP targets.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use anyhow::bail;
use serde::Deserialize;

use super::units::{Millis, PositiveMillis, TimeoutSecs};
use crate::jobs::{MAX_TTL_SECS, is_valid_queue_name};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub queues: Vec<String>,
    pub concurrency: NonZeroUsize,
    pub heartbeat_interval_ms: PositiveMillis,
    pub heartbeat_ttl_ms: PositiveMillis,
    pub maintenance_interval_ms: PositiveMillis,
    pub promote_interval_ms: PositiveMillis,
    pub prune_interval_ms: PositiveMillis,
    pub shutdown_grace_ms: Millis,
    pub max_retries: u32,
    pub retry_rq_jobs: bool,
    pub started_entries: String,
    /// Claims write RQ's `current_job` field on the worker's registration.
    pub record_current_job: bool,
    pub backoff_secs: Vec<u64>,
    pub backoff_jitter: f64,
    pub timeout_secs: TimeoutSecs,
    pub result_ttl_secs: i64,
    pub failure_ttl_secs: i64,
    pub resolve_dotted_names: bool,
    pub diagnostic_handlers: bool,
    #[serde(default)]
    pub aliases: Vec<AliasSettings>,
    #[serde(default)]
    pub types: HashMap<String, JobTypeSettings>,
    #[serde(default)]
    pub http_targets: HashMap<String, HttpTargetSettings>,
}

/// A job type delivered over HTTP.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTargetSettings {
    pub url: String,
    pub secret: String,
    #[serde(default = "default_target_timeout")]
    pub timeout_ms: PositiveMillis,
}

impl std::fmt::Debug for HttpTargetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTargetSettings")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn default_target_timeout() -> PositiveMillis {
    PositiveMillis::TEN_SECONDS
}

/// A job type name that runs another type's handler.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasSettings {
    pub from: String,
    pub to: String,
}

/// Per job type overrides of the worker defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTypeSettings {
    pub timeout_secs: Option<TimeoutSecs>,
    pub max_retries: Option<u32>,
    pub backoff_secs: Option<Vec<u64>>,
    pub retry_rq_jobs: Option<bool>,
}

impl WorkerSettings {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        if self.queues.is_empty() {
            bail!("worker.queues must name at least one queue");
        }
        if let Some(q) = self.queues.iter().find(|q| !is_valid_queue_name(q)) {
            bail!(
                "worker.queues: {q:?} is not a valid queue name ([A-Za-z0-9_.-], 1-128 characters)"
            );
        }
        if self.heartbeat_ttl_ms.get() < 2 * self.heartbeat_interval_ms.get() {
            bail!(
                "worker.heartbeat_ttl_ms ({}) must be at least twice worker.heartbeat_interval_ms ({}), or one late heartbeat gets a live job recovered",
                self.heartbeat_ttl_ms.as_millis(),
                self.heartbeat_interval_ms.as_millis()
            );
        }
        if self.backoff_secs.is_empty() {
            bail!("worker.backoff_secs must list at least one delay");
        }
        if !(0.0..=1.0).contains(&self.backoff_jitter) {
            bail!("worker.backoff_jitter must be between 0 and 1");
        }
        let ttl_ok = |v: i64| (-1..=MAX_TTL_SECS).contains(&v);
        if !ttl_ok(self.result_ttl_secs) || !ttl_ok(self.failure_ttl_secs) {
            bail!(
                "worker.result_ttl_secs and worker.failure_ttl_secs must be -1 (forever), 0 or positive up to {MAX_TTL_SECS}"
            );
        }
        if !["auto", "rq1", "rq2"].contains(&self.started_entries.as_str()) {
            bail!(
                "worker.started_entries must be auto, rq1 or rq2, not {:?}",
                self.started_entries
            );
        }
        self.check_types()
    }

    /// `[worker.types]` and `[worker.http_targets]`: per-type backoffs, each target's URL and
    /// secret.
    fn check_types(&self) -> anyhow::Result<()> {
        for (name, t) in &self.types {
            if t.backoff_secs.as_ref().is_some_and(Vec::is_empty) {
                bail!("worker.types.{name}.backoff_secs must list at least one delay");
            }
        }
        for (name, t) in &self.http_targets {
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                bail!("worker.http_targets.{name}.url must be an http:// or https:// URL");
            }
            if t.secret.is_empty() {
                bail!(
                    "worker.http_targets.{name}.secret must be set: the target verifies requests with it"
                );
            }
        }
        Ok(())
    }
}
