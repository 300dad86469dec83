//! `[scheduler]`: the leader lock's timings and the periodic entries (whose schedules the
//! scheduler itself parses and checks, in `scheduler::entries`).

use anyhow::bail;
use serde::Deserialize;

use super::units::PositiveMillis;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    pub lock_ttl_ms: PositiveMillis,
    pub renew_interval_ms: PositiveMillis,
    pub tick_interval_ms: PositiveMillis,
    #[serde(default)]
    pub entries: Vec<EntrySettings>,
}

/// One periodic job: `every` or `cron` (with `timezone`), and the job to enqueue.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySettings {
    pub name: String,
    pub every: Option<String>,
    pub cron: Option<String>,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_queue")]
    pub queue: String,
    pub job_type: String,
    #[serde(default)]
    pub args: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub options: crate::jobs::JobOptions,
}

fn default_timezone() -> String {
    "UTC".into()
}

fn default_queue() -> String {
    "default".into()
}

impl SchedulerSettings {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        if self.lock_ttl_ms <= self.renew_interval_ms {
            bail!(
                "scheduler.lock_ttl_ms ({}) must be larger than scheduler.renew_interval_ms ({}), or the leader loses its lock between renewals",
                self.lock_ttl_ms.as_millis(),
                self.renew_interval_ms.as_millis()
            );
        }
        Ok(())
    }
}
