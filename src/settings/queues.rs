//! `[queues.<name>]`, `[[rate_limits]]` and `[[external]]`: how queues share their workers,
//! how fast jobs may start, and which job types Python RQ runs.

use std::collections::HashMap;

use anyhow::bail;
use serde::Deserialize;

use crate::jobs::{is_valid_queue_name, is_valid_tenant};

/// `[queues.<name>]`: how one queue shares its workers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    #[serde(default)]
    pub fairness: Fairness,
    /// The most of one tenant's jobs that run at once across all workers (fair queues); 0: any.
    #[serde(default)]
    pub tenant_concurrency: u32,
    /// Tenant → share of turns (fair queues; absent tenants have 1).
    #[serde(default)]
    pub tenant_weights: HashMap<String, u32>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fairness {
    /// One FIFO list, as RQ's.
    #[default]
    None,
    /// Round robin across tenants with work, FIFO within each tenant.
    Tenant,
}

/// A job type that prosaas enqueues but a Python RQ worker runs, on a queue of its own.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalType {
    pub job_type: String,
    pub queue: String,
}

/// One `[[rate_limits]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Names the limit in keys, metrics and a deferred job's reason; derived when empty.
    #[serde(default)]
    pub name: String,
    /// `"*"`: each tenant has its own bucket; a tenant's name: that tenant only; absent: every
    /// job of the type shares one.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The job type it limits (as handlers are named); absent: every type.
    #[serde(default)]
    pub job_type: Option<String>,
    /// `"<n>/s"`, `"<n>/m"` or `"<n>/h"`.
    pub rate: String,
    /// Starts allowed at once after a quiet period.
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl RateLimitSettings {
    /// Milliseconds between starts, from `rate`; `None` when it does not parse.
    pub fn interval_ms(&self) -> Option<f64> {
        let (n, unit) = self.rate.trim().split_once('/')?;
        let n: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
        let unit_ms = match unit.trim() {
            "s" | "sec" | "second" => 1_000.0,
            "m" | "min" | "minute" => 60_000.0,
            "h" | "hour" => 3_600_000.0,
            _ => return None,
        };
        Some(unit_ms / f64::from(n))
    }

    /// The name given, else one made of what it limits (`tenant-*.type-push_send_job`).
    pub fn label(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        let mut parts = Vec::new();
        if let Some(t) = &self.tenant {
            parts.push(format!("tenant-{t}"));
        }
        if let Some(j) = &self.job_type {
            parts.push(format!("type-{j}"));
        }
        parts.join(".")
    }
}

impl QueueSettings {
    /// Names, and settings that only mean something on a fair queue.
    pub(super) fn check_all(queues: &HashMap<String, QueueSettings>) -> anyhow::Result<()> {
        let mut names: Vec<&String> = queues.keys().collect();
        names.sort();
        for name in names {
            let q = &queues[name];
            if !is_valid_queue_name(name) {
                bail!("queues.{name}: not a valid queue name ([A-Za-z0-9_.-], 1-128 characters)");
            }
            if q.fairness != Fairness::Tenant
                && (q.tenant_concurrency > 0 || !q.tenant_weights.is_empty())
            {
                bail!(
                    "queues.{name}: tenant_concurrency and tenant_weights need fairness = \"tenant\""
                );
            }
            if let Some((t, _)) = q.tenant_weights.iter().find(|(t, _)| !is_valid_tenant(t)) {
                bail!("queues.{name}.tenant_weights: {t:?} is not a valid tenant name");
            }
            if let Some((t, w)) = q
                .tenant_weights
                .iter()
                .find(|(_, w)| !(1..=1000).contains(*w))
            {
                bail!("queues.{name}.tenant_weights.{t}: {w} must be 1 to 1000");
            }
        }
        Ok(())
    }
}

impl RateLimitSettings {
    /// What each limits, its rate and burst, unique names.
    pub(super) fn check_all(limits: &[RateLimitSettings]) -> anyhow::Result<()> {
        if limits.len() > 100 {
            bail!("rate_limits: at most 100 limits");
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in limits.iter().enumerate() {
            let at = format!("rate_limits[{i}]");
            if r.tenant.is_none() && r.job_type.is_none() {
                bail!("{at}: set tenant (a name, or \"*\" for each tenant), job_type, or both");
            }
            if let Some(t) = &r.tenant
                && t != "*"
                && !is_valid_tenant(t)
            {
                bail!("{at}.tenant: {t:?} is neither \"*\" nor a valid tenant name");
            }
            if r.job_type
                .as_deref()
                .is_some_and(|j| j.is_empty() || j.len() > 256)
            {
                bail!("{at}.job_type: must be 1-256 characters");
            }
            match r.interval_ms() {
                Some(ms) if ms >= 1.0 => {}
                Some(_) => bail!("{at}.rate: {:?} is more than 1000/s", r.rate),
                None => bail!(
                    "{at}.rate: {:?} must be <n>/s, <n>/m or <n>/h with n > 0",
                    r.rate
                ),
            }
            if !(1..=10_000).contains(&r.burst) {
                bail!("{at}.burst: {} must be 1 to 10000", r.burst);
            }
            let label = r.label();
            if label.len() > 200
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:@*-".contains(&b))
            {
                bail!("{at}.name: {label:?} must be 1-200 characters of [A-Za-z0-9_.:@*-]");
            }
            if !names.insert(label.clone()) {
                bail!("{at}.name: {label:?} is used twice");
            }
        }
        Ok(())
    }
}
