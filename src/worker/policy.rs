//! Per job type execution policy (timeout, retries, backoff) and the retry decision.

use std::collections::HashMap;
use std::time::Duration;

use crate::jobs::ClaimedJob;
use crate::settings::{TimeoutSecs, WorkerSettings};

/// Timeout and retry rules for one job type.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// `None`: no limit.
    pub timeout: Option<Duration>,
    pub max_retries: u32,
    pub backoff_secs: Vec<u64>,
    /// Jobs Python RQ enqueued without `Retry` get `max_retries` too (else none, as RQ).
    pub retry_rq_jobs: bool,
}

/// The worker-wide defaults plus per-type overrides.
#[derive(Clone, Debug)]
pub struct Policies {
    default: Policy,
    by_type: HashMap<String, Policy>,
    jitter: f64,
    pub result_ttl: i64,
    pub failure_ttl: i64,
}

impl Policies {
    pub fn from_settings(w: &WorkerSettings) -> Self {
        let default = Policy {
            timeout: w.timeout_secs.limit(),
            max_retries: w.max_retries,
            backoff_secs: w.backoff_secs.clone(),
            retry_rq_jobs: w.retry_rq_jobs,
        };
        let by_type = w
            .types
            .iter()
            .map(|(name, t)| {
                let p = Policy {
                    timeout: t.timeout_secs.map_or(default.timeout, TimeoutSecs::limit),
                    max_retries: t.max_retries.unwrap_or(default.max_retries),
                    backoff_secs: t
                        .backoff_secs
                        .clone()
                        .unwrap_or_else(|| default.backoff_secs.clone()),
                    retry_rq_jobs: t.retry_rq_jobs.unwrap_or(default.retry_rq_jobs),
                };
                (name.clone(), p)
            })
            .collect();
        Self {
            default,
            by_type,
            jitter: w.backoff_jitter,
            result_ttl: w.result_ttl_secs,
            failure_ttl: w.failure_ttl_secs,
        }
    }

    pub fn for_type(&self, job_type: &str) -> &Policy {
        self.by_type.get(job_type).unwrap_or(&self.default)
    }

    /// The job's own timeout (RQ's `timeout` field; `-1` none) wins over the type's.
    pub fn timeout(&self, job: &ClaimedJob, job_type: &str) -> Option<Duration> {
        match job.timeout {
            // Job data, not a setting: a negative number is no limit, as in RQ.
            Some(t) => u64::try_from(t).ok().map(Duration::from_secs),
            None => self.for_type(job_type).timeout,
        }
    }

    /// The retries a job without its own `retries_left` has: its type's, for a job prosaas
    /// enqueued; none for one Python RQ enqueued without `Retry` (RQ runs it once), unless the
    /// type opts in with `retry_rq_jobs`. Recovery of an abandoned job counts the same way.
    pub fn retries_for(&self, job_type: &str, enqueued_by_prosaas: bool) -> u32 {
        let policy = self.for_type(job_type);
        if enqueued_by_prosaas || policy.retry_rq_jobs {
            policy.max_retries
        } else {
            0
        }
    }

    /// After a retryable failure: `Some((delay, retries left after this retry))`, or `None`
    /// when the job has used up its retries.
    ///
    /// A job carrying RQ's `retries_left`/`retry_intervals` is treated exactly as RQ does
    /// (`intervals[max(len - retries_left, 0)]`, no jitter); otherwise the type's policy applies,
    /// its delays varied by the jitter so that a burst of failures does not retry in lockstep.
    pub fn retry(&self, job: &ClaimedJob, job_type: &str) -> Option<(Duration, u32)> {
        let policy = self.for_type(job_type);
        let left = job
            .retries_left
            .unwrap_or_else(|| self.retries_for(job_type, job.enqueued_by_prosaas));
        if left == 0 {
            return None;
        }
        let delay = match &job.retry_intervals {
            Some(iv) if !iv.is_empty() => {
                let idx = iv.len().saturating_sub(left as usize);
                Duration::from_secs(iv[idx.min(iv.len() - 1)])
            }
            _ => {
                let done = policy.max_retries.saturating_sub(left) as usize;
                let base = policy.backoff_secs[done.min(policy.backoff_secs.len() - 1)] as f64;
                let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
                Duration::from_secs_f64((base * factor).max(0.0))
            }
        };
        Some((delay, left - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Execution;

    fn job(retries_left: Option<u32>, intervals: Option<Vec<u64>>) -> ClaimedJob {
        ClaimedJob {
            execution: Execution {
                id: "j".into(),
                execution_id: "e".into(),
                queue: "q".into(),
                ..Default::default()
            },
            call: Err("unused".into()),
            timeout: None,
            retries_left,
            retry_intervals: intervals,
            result_ttl: None,
            failure_ttl: None,
            enqueued_at: None,
            attempts: 1,
            enqueued_by_prosaas: true,
            meta: Vec::new(),
            callbacks: None,
            repeat: None,
            webhooks: Vec::new(),
        }
    }

    fn policies(jitter: f64) -> Policies {
        let mut w = crate::settings::Settings::load(None, &HashMap::new())
            .unwrap()
            .worker;
        w.backoff_jitter = jitter;
        w.types.insert(
            "slow".into(),
            crate::settings::JobTypeSettings {
                timeout_secs: Some(crate::settings::TimeoutSecs::try_from(-1).unwrap()),
                max_retries: Some(1),
                backoff_secs: None,
                retry_rq_jobs: None,
            },
        );
        Policies::from_settings(&w)
    }

    #[test]
    fn default_backoff_walks_the_list_then_stops() {
        let p = policies(0.0);
        let first = p.retry(&job(None, None), "t").unwrap();
        assert_eq!(first, (Duration::from_secs(10), 2));
        assert_eq!(
            p.retry(&job(Some(2), None), "t").unwrap(),
            (Duration::from_secs(60), 1)
        );
        assert_eq!(
            p.retry(&job(Some(1), None), "t").unwrap(),
            (Duration::from_secs(300), 0)
        );
        assert_eq!(p.retry(&job(Some(0), None), "t"), None);
    }

    #[test]
    fn rq_intervals_follow_rqs_formula() {
        let p = policies(0.5);
        let iv = Some(vec![10, 20, 30]);
        assert_eq!(
            p.retry(&job(Some(3), iv.clone()), "t").unwrap().0,
            Duration::from_secs(10)
        );
        assert_eq!(
            p.retry(&job(Some(2), iv.clone()), "t").unwrap().0,
            Duration::from_secs(20)
        );
        assert_eq!(
            p.retry(&job(Some(1), iv), "t").unwrap().0,
            Duration::from_secs(30)
        );
        assert_eq!(
            p.retry(&job(Some(5), Some(vec![0])), "t").unwrap().0,
            Duration::ZERO
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = policies(0.2);
        for _ in 0..200 {
            let d = p.retry(&job(None, None), "t").unwrap().0.as_secs_f64();
            assert!((8.0..=12.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn per_type_overrides_and_job_timeouts() {
        let p = policies(0.0);
        assert_eq!(p.for_type("slow").timeout, None);
        assert_eq!(p.for_type("slow").max_retries, 1);
        assert_eq!(p.for_type("other").timeout, Some(Duration::from_secs(180)));
        let mut j = job(None, None);
        j.timeout = Some(5);
        assert_eq!(p.timeout(&j, "slow"), Some(Duration::from_secs(5)));
        j.timeout = Some(-1);
        assert_eq!(p.timeout(&j, "other"), None);
    }
}
