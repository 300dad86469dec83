//! Typed settings, loaded in layers (`layers.rs`) and validated before anything connects: one
//! file per section, each with its struct and its checks; what spans sections is checked here.
//! Durations arrive as `Duration`s and counts that cannot be zero as non-zero types
//! (`units.rs`), so a broken value is refused by the deserializer, naming its key.

use std::collections::HashMap;
use std::path::Path;

use anyhow::bail;
use serde::Deserialize;

use crate::jobs::{StoreConfig, is_valid_queue_name};

mod api;
mod calls;
mod dashboard;
mod http;
mod layers;
mod log;
mod queues;
mod recordings;
mod scheduler;
mod store;
mod units;
mod worker;

pub use api::{AlertSettings, ApiSettings, IngressQueues, QueueAlert};
pub use calls::CallSettings;
pub use dashboard::DashboardSettings;
pub use http::HttpSettings;
pub use log::{LogFormat, LogSettings};
pub use queues::{ExternalType, Fairness, QueueSettings, RateLimitSettings};
pub use recordings::RecordingSettings;
pub use scheduler::{EntrySettings, SchedulerSettings};
pub use store::{LocalRedisSettings, RedisSettings, RedisUrlSource, SentinelSettings};
pub use units::{Millis, PositiveMillis, TimeoutSecs};
pub use worker::{AliasSettings, HttpTargetSettings, JobTypeSettings, WorkerSettings};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub api: ApiSettings,
    pub worker: WorkerSettings,
    pub calls: CallSettings,
    pub recordings: RecordingSettings,
    pub scheduler: SchedulerSettings,
    pub shutdown: ShutdownSettings,
    pub log: LogSettings,
    pub dashboard: DashboardSettings,
    #[serde(default)]
    pub external: Vec<ExternalType>,
    /// Per-queue behaviour: `[queues.<name>]`.
    #[serde(default)]
    pub queues: HashMap<String, QueueSettings>,
    /// `[[rate_limits]]`: starts per second (minute, hour) by tenant, job type or both.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitSettings>,
    /// How every role reaches Redis, built once by [`Settings::load`] from `[redis]`,
    /// `[queues]` and `worker.record_current_job`.
    #[serde(skip)]
    store: StoreConfig,
}

/// `[shutdown]`: how long a process has from SIGTERM to exit; the worker's and the calls
/// role's own graces must fit inside it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    pub grace_ms: PositiveMillis,
}

impl Settings {
    /// Loads and validates. `overlay` is `--config FILE`; without it `config/$APP_ENV.toml` is
    /// read when `APP_ENV` is set. Errors are one line, naming the setting at fault.
    pub fn load(overlay: Option<&Path>, env: &HashMap<String, String>) -> anyhow::Result<Self> {
        let mut settings: Settings = layers::merged(overlay, env)?
            .try_deserialize()
            .map_err(|e: config::ConfigError| anyhow::anyhow!("{e}"))?;
        settings.validate()?;
        settings.store = settings
            .redis
            .store_config(&settings.queues, settings.worker.record_current_job);
        Ok(settings)
    }

    /// Every section's rules, then the ones between sections; the first broken one is the error.
    fn validate(&self) -> anyhow::Result<()> {
        self.redis.check()?;
        self.worker.check()?;
        self.calls.check()?;
        self.scheduler.check()?;
        self.api.check()?;
        self.recordings.check()?;
        QueueSettings::check_all(&self.queues)?;
        RateLimitSettings::check_all(&self.rate_limits)?;
        self.dashboard.check()?;
        self.http.check()?;
        self.validate_graces()?;
        self.validate_external()
    }

    /// The worker and the calls role must finish their own shutdown inside the process's.
    fn validate_graces(&self) -> anyhow::Result<()> {
        let whole = self.shutdown.grace_ms;
        for (name, grace, then) in [
            (
                "worker.shutdown_grace_ms",
                self.worker.shutdown_grace_ms,
                "put unfinished jobs back",
            ),
            (
                "calls.shutdown_grace_ms",
                self.calls.shutdown_grace_ms,
                "finalize recordings",
            ),
        ] {
            if grace.get() >= whole.get() {
                bail!(
                    "{name} ({}) must be shorter than shutdown.grace_ms ({}), to leave time to {then}",
                    grace.as_millis(),
                    whole.as_millis()
                );
            }
        }
        Ok(())
    }

    /// `external`: each type's queue is its own, and scheduler entries for it use that queue.
    fn validate_external(&self) -> anyhow::Result<()> {
        for e in &self.external {
            if !is_valid_queue_name(&e.queue) {
                bail!("external: {:?} is not a valid queue name", e.queue);
            }
            if self.worker.queues.contains(&e.queue) {
                bail!(
                    "worker.queues includes {}, the queue of the external job type {}: prosaas workers would take jobs only Python RQ can run",
                    e.queue,
                    e.job_type
                );
            }
            // Scheduler entries are enqueued on their own queue, not routed: one for an external
            // type must name that type's queue, or a prosaas worker takes it and fails it.
            if let Some(entry) = self
                .scheduler
                .entries
                .iter()
                .find(|en| en.job_type == e.job_type && en.queue != e.queue)
            {
                bail!(
                    "scheduler.entries.{}: job type {} runs outside prosaas on queue {}, so the entry must set queue = {:?}",
                    entry.name,
                    e.job_type,
                    e.queue,
                    e.queue
                );
            }
        }
        Ok(())
    }

    /// The queue a job of `job_type` goes to: the external type's own queue, else `requested`,
    /// else `default`. An explicit queue that contradicts an external type's is an error.
    pub fn route(&self, job_type: &str, requested: Option<&str>) -> Result<String, String> {
        match (
            self.external.iter().find(|e| e.job_type == job_type),
            requested,
        ) {
            (Some(e), Some(q)) if q != e.queue => Err(format!(
                "job type {job_type} runs outside prosaas, on queue {}, not {q}",
                e.queue
            )),
            (Some(e), _) => Ok(e.queue.clone()),
            (None, Some(q)) => Ok(q.to_owned()),
            (None, None) => Ok("default".to_owned()),
        }
    }

    /// The queues the enqueue API may push to: `api.queues`, or when that is empty the worker
    /// queues and the external types' queues.
    pub fn enqueue_queues(&self) -> Vec<&str> {
        if !self.api.queues.is_empty() {
            return self.api.queues.iter().map(String::as_str).collect();
        }
        let mut qs: Vec<&str> = self.worker.queues.iter().map(String::as_str).collect();
        for e in &self.external {
            if !qs.contains(&e.queue.as_str()) {
                qs.push(&e.queue);
            }
        }
        qs
    }

    /// How the jobs module reaches Redis.
    pub fn store_config(&self) -> &StoreConfig {
        &self.store
    }
}

/// The names of the settings in `named` that are empty.
fn unset(named: &[(&'static str, &String)]) -> Vec<&'static str> {
    named
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests;
