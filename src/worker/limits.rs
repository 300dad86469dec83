//! Rate limits (`[[rate_limits]]`): which limits a claimed job counts against, and the step after
//! each claim that defers the jobs their limits do not allow yet. The buckets live in Redis
//! (`jobs::Workers::apply_rate_limits`, one script), so a limit holds across every worker.

use crate::jobs::{ClaimedJob, JobStore, RateBucket, WorkerInfo};
use crate::metrics as m;
use crate::settings::RateLimitSettings;

use super::handler::Registry;

/// Which tenants a limit covers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tenants {
    /// Every job (of its type) shares one bucket.
    All,
    /// Each tenant has a bucket of its own (`tenant = "*"`); jobs without one share one.
    Each,
    /// One tenant's jobs only.
    One(String),
}

#[derive(Clone, Debug)]
struct Limit {
    name: String,
    tenants: Tenants,
    job_type: Option<String>,
    interval_ms: f64,
    burst: u32,
}

/// The configured limits, ready to match jobs against.
#[derive(Clone, Debug, Default)]
pub struct RateLimits {
    limits: Vec<Limit>,
}

impl RateLimits {
    /// From validated settings (a rate that does not parse is skipped; validation refuses it).
    pub fn from_settings(settings: &[RateLimitSettings]) -> Self {
        let limits = settings
            .iter()
            .filter_map(|s| {
                Some(Limit {
                    name: s.label(),
                    tenants: match s.tenant.as_deref() {
                        None => Tenants::All,
                        Some("*") => Tenants::Each,
                        Some(t) => Tenants::One(t.to_owned()),
                    },
                    job_type: s.job_type.clone(),
                    interval_ms: s.interval_ms()?,
                    burst: s.burst,
                })
            })
            .collect();
        Self { limits }
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// The buckets a job of `job_type` (as its handler is named) and `tenant` counts against.
    pub fn buckets(&self, job_type: &str, tenant: Option<&str>) -> Vec<RateBucket> {
        self.limits
            .iter()
            .filter(|l| l.job_type.as_deref().is_none_or(|t| t == job_type))
            .filter_map(|l| {
                let tenant = match &l.tenants {
                    Tenants::All => None,
                    Tenants::Each => tenant.map(str::to_owned),
                    Tenants::One(t) if Some(t.as_str()) == tenant => None,
                    Tenants::One(_) => return None,
                };
                Some(RateBucket {
                    limit: l.name.clone(),
                    tenant,
                    interval_ms: l.interval_ms,
                    burst: l.burst,
                })
            })
            .collect()
    }

    /// Defers the claimed jobs that their limits do not allow yet (to the scheduled registry, at
    /// the slot they now hold) and returns the jobs to run now. A job whose type cannot be read
    /// is not limited: it fails when run, as it would without limits. If Redis cannot be asked,
    /// the jobs run (the claim already succeeded; holding them would only let recovery run them
    /// later, with a retry spent), and the log says so.
    pub async fn admit(
        &self,
        store: &JobStore,
        worker: &WorkerInfo,
        registry: &Registry,
        claimed: Vec<ClaimedJob>,
    ) -> Vec<ClaimedJob> {
        if self.is_empty() || claimed.is_empty() {
            return claimed;
        }
        let limited: Vec<_> = claimed
            .iter()
            .filter_map(|job| {
                let job_type = job.call.as_ref().ok()?.job_type.as_str();
                let name = registry.resolve(job_type).map_or(job_type, |(n, _)| n);
                let buckets = self.buckets(name, job.tenant().as_deref());
                (!buckets.is_empty()).then_some((&job.execution, buckets))
            })
            .collect();
        let deferred = match store.workers().apply_rate_limits(worker, &limited).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, jobs = limited.len(), "rate limits could not be checked; running the jobs");
                return claimed;
            }
        };
        if deferred.is_empty() {
            return claimed;
        }
        for d in &deferred {
            tracing::debug!(job_id = %d.id, limit = %d.limit, slot_ms = d.slot_ms, "deferred by a rate limit");
            metrics::counter!(m::JOBS_RATE_LIMITED, "queue" => d.queue.clone(), "limit" => d.limit.clone())
                .increment(1);
        }
        claimed
            .into_iter()
            .filter(|job| !deferred.iter().any(|d| d.id == job.execution.id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(tenant: Option<&str>, job_type: Option<&str>, rate: &str) -> RateLimitSettings {
        RateLimitSettings {
            name: String::new(),
            tenant: tenant.map(str::to_owned),
            job_type: job_type.map(str::to_owned),
            rate: rate.into(),
            burst: 1,
        }
    }

    #[test]
    fn jobs_count_against_every_limit_that_covers_them() {
        let limits = RateLimits::from_settings(&[
            limit(Some("*"), None, "5/s"),
            limit(None, Some("push_send_job"), "20/s"),
            limit(Some("acme"), Some("push_send_job"), "1/m"),
        ]);
        let names = |t: &str, tenant: Option<&str>| -> Vec<(String, Option<String>)> {
            limits
                .buckets(t, tenant)
                .into_iter()
                .map(|b| (b.limit, b.tenant))
                .collect()
        };
        assert_eq!(
            names("push_send_job", Some("acme")),
            [
                ("tenant-*".into(), Some("acme".into())),
                ("type-push_send_job".into(), None),
                ("tenant-acme.type-push_send_job".into(), None),
            ]
        );
        assert_eq!(
            names("push_send_job", Some("beta")),
            [
                ("tenant-*".into(), Some("beta".into())),
                ("type-push_send_job".into(), None),
            ]
        );
        // Without a tenant, a per-tenant limit still applies, through one shared bucket.
        assert_eq!(names("other", None), [("tenant-*".into(), None)]);
        let b = &limits.buckets("push_send_job", Some("acme"))[2];
        assert!((b.interval_ms - 60_000.0).abs() < 1e-9);
        assert!(RateLimits::default().buckets("x", Some("a")).is_empty());
    }
}
