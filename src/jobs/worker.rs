//! The worker's Redis primitives: registration and heartbeats as RQ records them, claim,
//! settle (batched), the blocking wake-up, recovery of abandoned jobs, promotion of due retries.
//!
//! Round trips per job on the hot path: one claim call serves up to `concurrency` jobs and one
//! settle call records every outcome that is ready, so under load both are amortised over many
//! jobs; an idle worker pays one of each per job.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value as RedisValue};
use serde_json::Value;

use super::error::JobError;
use super::job::{
    ENQUEUED_BY_PROSAAS, JobCall, MAX_TTL_SECS, decode_data, rq_timestamp, stored_ttl,
};
use super::keys::Keys;
use super::{bounded, scripts};

/// Who a worker is, as registered in `rq:worker:<name>`.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    pub name: String,
    pub queues: Vec<String>,
    pub pid: u32,
    pub hostname: String,
}

/// One execution of a job: the id, the execution id of this attempt (empty when it was claimed
/// in RQ 1.x's plain-id entry format), the queue, and the tenant lane it came from (empty for
/// the queue's own list).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Execution {
    pub id: String,
    pub execution_id: String,
    pub queue: String,
    pub lane: String,
}

impl Execution {
    /// Its started-registry member: `<id>:<execution id>`, or the plain id in RQ 1.x's format.
    /// Unique among a worker's running executions either way.
    pub fn member(&self) -> String {
        if self.execution_id.is_empty() {
            self.id.clone()
        } else {
            format!("{}:{}", self.id, self.execution_id)
        }
    }
}

/// A job this worker now holds (in `rq:wip:<queue>` with a heartbeat deadline).
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub execution: Execution,
    /// The decoded call, or why it cannot be decoded (the job then fails permanently).
    pub call: Result<JobCall, String>,
    pub timeout: Option<i64>,
    pub retries_left: Option<u32>,
    pub retry_intervals: Option<Vec<u64>>,
    pub result_ttl: Option<i64>,
    pub failure_ttl: Option<i64>,
    pub enqueued_at: Option<String>,
    /// How many times the job has been claimed, this time included.
    pub attempts: u32,
    /// prosaas enqueued it (else Python RQ or another client): a missing `retries_left` then
    /// means the type's policy rather than RQ's "run once".
    pub enqueued_by_prosaas: bool,
    /// The job's `meta` as stored (JSON; empty when it has none), read for its tenant.
    pub meta: Vec<u8>,
}

impl ClaimedJob {
    /// Its tenant: the lane it waited in, else `meta["tenant"]` (whoever enqueued it). Parsed
    /// when asked (rate limits), not for every claimed job.
    pub fn tenant(&self) -> Option<String> {
        if !self.execution.lane.is_empty() {
            return Some(self.execution.lane.clone());
        }
        serde_json::from_slice::<Value>(&self.meta)
            .ok()?
            .get(super::job::TENANT)?
            .as_str()
            .map(str::to_owned)
    }
}

/// One rate limit a claimed job counts against (see rate_limit.lua).
#[derive(Clone, Debug, PartialEq)]
pub struct RateBucket {
    /// The limit's name (its key, and what a deferred job's reason names).
    pub limit: String,
    /// The tenant whose own bucket this is, for a per-tenant limit.
    pub tenant: Option<String>,
    /// Milliseconds between two starts at the steady rate.
    pub interval_ms: f64,
    /// Starts allowed at once after a quiet period.
    pub burst: u32,
}

/// A claimed job that a rate limit moved to the scheduled registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferred {
    pub id: String,
    pub queue: String,
    /// The limit that decided its slot.
    pub limit: String,
    /// When it may start (Unix ms, Redis's clock).
    pub slot_ms: i64,
}

/// A worker's state as `rq info` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    Idle,
    Busy,
}

impl WorkerState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Busy => "busy",
        }
    }
}

/// What became of one execution.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Success; `result_ttl` seconds to keep it (`-1` forever, `0` delete at once).
    Finished {
        result: Option<Value>,
        result_ttl: i64,
    },
    /// Final failure; kept `failure_ttl` seconds in the failed registry (`-1` forever).
    Failed { error: String, failure_ttl: i64 },
    /// Failed, to be tried again after `delay_secs` with `retries_left` still to go.
    Retry {
        error: String,
        delay_secs: u64,
        retries_left: u32,
    },
    /// Not run to completion (shutdown): back to the head of its queue, no retry consumed.
    Requeue,
}

/// An outcome ready to record.
#[derive(Clone, Debug)]
pub struct Settlement {
    pub execution: Execution,
    /// Unix seconds.
    pub started_at: f64,
    pub ended_at: f64,
    /// Seconds from enqueue to this start, when the job's `enqueued_at` is known: counted in
    /// the dashboard's per-minute series by the same settle call.
    pub waited: Option<f64>,
    pub outcome: Outcome,
}

/// Whether a settlement was recorded, or found its job already taken away (recovered as
/// abandoned, or failed by `rq info`) and left it alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    Applied,
    Conflict,
}

/// What one recovery pass over a queue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub requeued: u64,
    pub failed: u64,
}

/// base64(zlib(text)): how RQ stores `exc_string` in the result stream.
pub(crate) fn encode_exc_string(text: &str) -> String {
    BASE64.encode(super::zlib::compress(text.as_bytes()))
}

super::capability! {
    /// A worker process's steps: register, claim, settle, heartbeat, recover, promote, wait.
    Workers via workers
}

impl Workers<'_> {
    /// Whether claims write RQ 1.x's plain-id started-registry entries.
    pub fn rq1_entries(&self) -> bool {
        self.store
            .rq1_entries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Switches the started-registry entry format of later claims (running executions keep
    /// theirs): plain ids, which RQ 1.x tooling reads, or RQ 2's `<id>:<execution id>`.
    pub fn set_rq1_entries(&self, plain: bool) {
        self.store
            .rq1_entries
            .store(plain, std::sync::atomic::Ordering::Relaxed);
    }

    /// Registers the worker as RQ does (`rq:worker:<w>`, `rq:workers`, `rq:workers:<q>`).
    pub async fn register_worker(&self, w: &WorkerInfo, ttl: Duration) -> Result<(), JobError> {
        // Deadlines are about to be written: on Redis's clock, not this host's.
        self.store.sync_clock().await?;
        let k = &self.keys();
        let wkey = k.worker(&w.name);
        let now = rq_timestamp(self.now());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&wkey)
            .hset_multiple(
                &wkey,
                &[
                    ("birth", now.as_str()),
                    ("last_heartbeat", now.as_str()),
                    ("queues", &w.queues.join(",")),
                    ("pid", &w.pid.to_string()),
                    ("hostname", &w.hostname),
                    ("ip_address", "unknown"),
                    // `prosaas 0.2.0 (commit 1a2b3c4)`: `rq info`, the dashboard and health
                    // show which build each worker of a mixed fleet runs.
                    ("version", &format!("prosaas {}", crate::version::DESCRIBE)),
                    (
                        "python_version",
                        concat!("rust (prosaas ", env!("CARGO_PKG_VERSION"), ")"),
                    ),
                    ("state", "idle"),
                    ("successful_job_count", "0"),
                    ("failed_job_count", "0"),
                    ("total_working_time", "0"),
                ],
            )
            .expire(&wkey, ttl_secs(ttl))
            .sadd(k.workers(), &wkey)
            .sadd(Keys::inboxes(), &w.name);
        for q in &w.queues {
            pipe.sadd(k.workers_of(q), &wkey);
            // The weights this worker was configured with, for every claim to read: the last
            // worker to register wins, so a rolling change settles once every worker runs it.
            if let Some(fair) = self.store.fairness(q) {
                let weights = Keys::fair_weights(q);
                pipe.del(&weights);
                if !fair.weights.is_empty() {
                    pipe.hset_multiple(&weights, &fair.weights.iter().collect::<Vec<_>>());
                }
            }
        }
        pipe.query_async::<()>(&mut self.conn().await?).await?;
        Ok(())
    }

    /// Refreshes the registration (TTL `ttl`) and, for every running execution still in its
    /// started registry, pushes the deadline to `now + ttl` and writes the job's
    /// `last_heartbeat`, as RQ's heartbeat does, in one script (heartbeat.lua): an entry that
    /// recovery or `rq info` removed meanwhile is neither re-added nor its job touched.
    /// Returns how many executions were refreshed, or `None` without touching anything when the
    /// worker's registration has expired (register again, then heartbeat).
    pub async fn heartbeat(
        &self,
        w: &WorkerInfo,
        running: &[Execution],
        ttl: Duration,
    ) -> Result<Option<u64>, JobError> {
        let now = self.now();
        let mut inv = scripts::HEARTBEAT.prepare_invoke();
        inv.arg(self.keys().rq_prefix())
            .arg(&w.name)
            .arg(rq_timestamp(now))
            .arg(ttl_secs(ttl))
            .arg(now.timestamp() + ttl_secs(ttl))
            .arg(Keys::inboxes())
            .arg(w.queues.len())
            .arg(&w.queues);
        for e in running {
            inv.arg(&e.queue).arg(&e.id).arg(&e.execution_id);
        }
        let refreshed: i64 = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(u64::try_from(refreshed).ok())
    }

    /// Whether a registered worker reports an RQ 1.x version (RQ writes `version` on its
    /// registration; prosaas writes `prosaas <version>`).
    pub async fn rq1_workers_registered(&self) -> Result<bool, JobError> {
        let workers: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().workers())
            .query_async(&mut self.conn().await?)
            .await?;
        if workers.is_empty() {
            return Ok(false);
        }
        let mut pipe = redis::pipe();
        for w in &workers {
            pipe.hget(w, "version");
        }
        let versions: Vec<Option<String>> = pipe.query_async(&mut self.conn().await?).await?;
        Ok(versions.iter().flatten().any(|v| v.starts_with("1.")))
    }

    /// Removes the worker from RQ's sets and marks its hash dead, as RQ's `register_death`.
    pub async fn unregister_worker(&self, w: &WorkerInfo) -> Result<(), JobError> {
        let k = &self.keys();
        let wkey = k.worker(&w.name);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(Keys::running(&w.name))
            .srem(k.workers(), &wkey)
            .hset_multiple(
                &wkey,
                &[
                    ("death", rq_timestamp(self.now())),
                    ("state", "dead".to_owned()),
                ],
            )
            .expire(&wkey, 60);
        for q in &w.queues {
            pipe.srem(k.workers_of(q), &wkey);
        }
        pipe.query_async::<()>(&mut self.conn().await?).await?;
        Ok(())
    }

    /// Claims up to `max` jobs: the worker's inbox first, then its queues in priority order.
    /// Each claimed job is in `rq:wip:<queue>` with deadline `now + job_ttl`.
    /// `state_seq` numbers the "busy" this claim writes when it gets jobs (see [`WorkerState`]).
    // Long on purpose: one script call, its arguments in claim.lua's order, and the decoding of its
    // reply.
    pub async fn claim(
        &self,
        w: &WorkerInfo,
        max: usize,
        job_ttl: Duration,
        state_seq: u64,
    ) -> Result<Vec<ClaimedJob>, JobError> {
        let now = self.now();
        // No execution ids in RQ 1.x's format (see claim.lua).
        let base = if self.rq1_entries() {
            String::new()
        } else {
            uuid::Uuid::new_v4().simple().to_string()[..24].to_owned()
        };
        let mut inv = scripts::CLAIM.prepare_invoke();
        inv.arg(self.keys().rq_prefix())
            .arg(&w.name)
            .arg(rq_timestamp(now))
            .arg(now.timestamp() + ttl_secs(job_ttl))
            .arg(max)
            .arg(&base)
            .arg(Keys::inbox(&w.name))
            .arg(state_seq)
            .arg(if self.store.record_current_job {
                "1"
            } else {
                ""
            })
            .arg(w.queues.len())
            .arg(&w.queues);
        for q in &w.queues {
            inv.arg(self.store.fairness(q).map_or(0, |f| f.tenant_concurrency));
        }
        let reply: Vec<RedisValue> = inv.invoke_async(&mut self.conn().await?).await?;
        let mut fields = reply.into_iter();
        let dropped: i64 = fields
            .next()
            .map(redis::from_redis_value)
            .transpose()?
            .unwrap_or(0);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "claimed ids whose job hash no longer exists; dropped as RQ does"
            );
        }
        // Values are moved out of the reply, not cloned: `data` can be the largest part.
        let text = |v: RedisValue| -> Result<String, JobError> { Ok(redis::from_redis_value(v)?) };
        let opt = |v: RedisValue| -> Result<Option<String>, JobError> {
            Ok(Some(text(v)?).filter(|s| !s.is_empty()))
        };
        let mut jobs = Vec::with_capacity(fields.len() / 14);
        while fields.len() >= 14 {
            let mut row = fields.by_ref().take(14);
            let mut take = || {
                row.next().ok_or_else(|| {
                    JobError::Invalid("the claim script returned a short row".into())
                })
            };
            let id = text(take()?)?;
            let execution_id = text(take()?)?;
            let queue = text(take()?)?;
            let data: Vec<u8> = redis::from_redis_value(take()?)?;
            let (timeout, retries_left, retry_intervals) = (take()?, take()?, take()?);
            let (result_ttl, failure_ttl, enqueued_at) = (take()?, take()?, take()?);
            let (attempts, enqueued_by) = (take()?, take()?);
            let lane = text(take()?)?;
            let meta: Vec<u8> = redis::from_redis_value(take()?)?;
            jobs.push(ClaimedJob {
                call: decode_data(&id, &data).map_err(|e| e.to_string()),
                timeout: opt(timeout)?.and_then(|v| v.parse().ok()),
                retries_left: opt(retries_left)?.and_then(|v| v.parse().ok()),
                retry_intervals: opt(retry_intervals)?.and_then(|v| serde_json::from_str(&v).ok()),
                result_ttl: opt(result_ttl)?
                    .and_then(|v| v.parse().ok())
                    .map(stored_ttl),
                failure_ttl: opt(failure_ttl)?
                    .and_then(|v| v.parse().ok())
                    .map(stored_ttl),
                enqueued_at: opt(enqueued_at)?,
                attempts: text(attempts)?.parse().unwrap_or(1),
                enqueued_by_prosaas: text(enqueued_by)? == ENQUEUED_BY_PROSAAS,
                meta,
                execution: Execution {
                    id,
                    execution_id,
                    queue,
                    lane,
                },
            });
        }
        Ok(jobs)
    }

    /// Records a batch of outcomes in one round trip; one [`Settled`] per settlement. With an
    /// empty batch it only records the worker's state.
    // Long on purpose: one script call: its KEYS/ARGV are built here in the order settle.lua reads
    // them, and split up that layout would be spread over several functions.
    pub async fn settle(
        &self,
        w: &WorkerInfo,
        batch: &[Settlement],
        state: Option<(WorkerState, u64)>,
    ) -> Result<Vec<Settled>, JobError> {
        let now = self.now();
        let now_secs = now.timestamp();
        let now_exact = now.timestamp_millis() as f64 / 1000.0;
        // Registry scores and the working time are computed here and sent as strings: the
        // script passes them on untouched (see settle.lua on Lua's number conversions).
        let working: f64 = batch
            .iter()
            .filter(|s| !matches!(s.outcome, Outcome::Requeue))
            .map(|s| s.ended_at - s.started_at)
            .sum();
        let mut inv = scripts::SETTLE.prepare_invoke();
        inv.arg(self.keys().rq_prefix())
            .arg(&w.name)
            .arg(rq_timestamp(now))
            .arg(if working > 0.0 {
                format!("{working:.6}")
            } else {
                String::new()
            })
            .arg(state.map_or("", |(s, _)| s.as_str()))
            .arg(state.map_or(0, |(_, seq)| seq))
            .arg(
                w.queues
                    .iter()
                    .filter(|q| {
                        self.store
                            .fairness(q)
                            .is_some_and(|f| f.tenant_concurrency > 0)
                    })
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .arg(now_secs.div_euclid(60))
            .arg(if self.store.record_current_job {
                "1"
            } else {
                ""
            });
        let registry_score = |ttl: i64, forever: &str| match ttl {
            -1 => forever.to_owned(),
            ttl => (now_secs + ttl).to_string(),
        };
        for s in batch {
            let (kind, ttl, score, payload, left, err) = match &s.outcome {
                Outcome::Finished { result, result_ttl } => {
                    let payload = match result {
                        Some(v) => BASE64.encode(serde_json::to_vec(v).unwrap_or_default()),
                        None => String::new(),
                    };
                    let score = registry_score(*result_ttl, "+inf");
                    ("ok", *result_ttl, score, payload, 0, "")
                }
                Outcome::Failed { error, failure_ttl } => {
                    let score = registry_score(*failure_ttl, "-1");
                    ("fail", *failure_ttl, score, encode_exc_string(error), 0, "")
                }
                Outcome::Retry {
                    error,
                    delay_secs,
                    retries_left,
                } => {
                    let delay = i64::try_from(*delay_secs).unwrap_or(i64::MAX);
                    // No score: back on the queue now; otherwise due `delay` from now, with
                    // the milliseconds kept so a short backoff is neither cut nor stretched.
                    let due = if delay > 0 {
                        format!("{:.3}", now_exact + delay as f64)
                    } else {
                        String::new()
                    };
                    (
                        "retry",
                        delay,
                        due,
                        String::new(),
                        *retries_left,
                        error.as_str(),
                    )
                }
                Outcome::Requeue => ("requeue", 0, String::new(), String::new(), 0, ""),
            };
            let e = &s.execution;
            inv.arg(kind)
                .arg(&e.id)
                .arg(&e.execution_id)
                .arg(&e.queue)
                .arg(ttl)
                .arg(score)
                .arg(payload)
                .arg(format!("{:.6}", s.started_at))
                .arg(format!("{:.6}", s.ended_at))
                .arg(left)
                .arg(err)
                .arg(&e.lane)
                .arg(
                    s.waited
                        .map_or(String::new(), |w| super::series::wait_bucket(w).to_string()),
                );
        }
        let applied: Vec<i64> = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(applied
            .into_iter()
            .map(|a| {
                if a == 1 {
                    Settled::Applied
                } else {
                    Settled::Conflict
                }
            })
            .collect())
    }

    /// Recovers `queue`'s jobs whose deadline passed and whose worker is not renewing them
    /// (recover.lua), in batches. A job without its own `retries_left` gets
    /// `retries_for(job type, enqueued by prosaas)`, the rule a failed attempt follows.
    ///
    /// A short per-queue maintenance lock (`prosaas:maintenance:<queue>`, held by `owner` for
    /// `lock_ttl`) keeps several workers from doing the same pass; the script itself is atomic,
    /// so correctness does not depend on it.
    // Long on purpose: one script call, its arguments in recover.lua's order, and the per-job retry
    // decisions it needs.
    pub async fn recover_abandoned(
        &self,
        queue: &str,
        owner: &str,
        lock_ttl: Duration,
        retries_for: &(dyn Fn(&str, bool) -> u32 + Sync),
        default_failure_ttl: i64,
    ) -> Result<Recovered, JobError> {
        let now = self.now();
        let exc = encode_exc_string(&format!(
            "AbandonedJobError: moved to FailedJobRegistry at {} because its worker stopped heartbeating",
            rq_timestamp(now)
        ));
        let mut total = Recovered::default();
        // Expired entries left in place (a live worker's) are passed over by later batches.
        let mut passed_over: u64 = 0;
        let mut decided: Vec<(String, u32)> = Vec::new();
        loop {
            let mut inv = scripts::RECOVER.prepare_invoke();
            inv.arg(self.keys().rq_prefix())
                .arg(queue)
                .arg(now.timestamp())
                .arg(rq_timestamp(now))
                .arg(passed_over)
                .arg(&exc)
                .arg(default_failure_ttl)
                .arg(RECOVER_BATCH)
                .arg(Keys::maintenance_lock(queue))
                .arg(owner)
                .arg(
                    u64::try_from(lock_ttl.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                )
                .arg(MAX_TTL_SECS);
            for (id, n) in &decided {
                inv.arg(id).arg(n);
            }
            let reply: Vec<RedisValue> = inv.invoke_async(&mut self.conn().await?).await?;
            let mut fields = reply.into_iter();
            let mut int = || -> Result<u64, JobError> {
                Ok(fields
                    .next()
                    .map(redis::from_redis_value::<u64>)
                    .transpose()?
                    .unwrap_or(0))
            };
            let (requeued, failed, removed, busy, kept) = (int()?, int()?, int()?, int()?, int()?);
            if busy == 1 {
                return Ok(total);
            }
            total.requeued += requeued;
            total.failed += failed;
            let mut undecided = Vec::new();
            while fields.len() >= 3 {
                let id: String = redis::from_redis_value(fields.next().unwrap_or(RedisValue::Nil))?;
                let data: Vec<u8> =
                    redis::from_redis_value(fields.next().unwrap_or(RedisValue::Nil))?;
                let by: String = redis::from_redis_value(fields.next().unwrap_or(RedisValue::Nil))?;
                // Undecodable data: the attempt would fail permanently too, so no retries.
                let retries = decode_data(&id, &data)
                    .map(|call| retries_for(&call.job_type, by == ENQUEUED_BY_PROSAAS))
                    .unwrap_or(0);
                undecided.push((id, retries));
            }
            if !undecided.is_empty() && decided.is_empty() {
                // Same batch again, now with the decisions.
                decided = undecided;
                continue;
            }
            decided.clear();
            passed_over += kept;
            // Small batches keep each script short, so Redis never stalls on a big backlog.
            if requeued + failed + removed + kept < RECOVER_BATCH {
                return Ok(total);
            }
        }
    }

    /// Moves due jobs of `queue`'s scheduled registry onto the queue. `None` when a Python RQ
    /// scheduler holds the queue's scheduler lock (it promotes them itself). The lock's value is
    /// this process's PID, as RQ's own schedulers write it; two prosaas processes that happen to
    /// share a PID on different hosts both promote, which is safe (each step is atomic).
    pub async fn promote_due(
        &self,
        queue: &str,
        hostname: &str,
        lock_ttl: Duration,
    ) -> Result<Option<u64>, JobError> {
        let owner = std::process::id().to_string();
        let now = self.now();
        let mut total = 0;
        loop {
            let moved: i64 = scripts::PROMOTE
                .arg(self.keys().rq_prefix())
                .arg(queue)
                .arg(format!("{:.3}", now.timestamp_millis() as f64 / 1000.0))
                .arg(rq_timestamp(now))
                .arg(&owner)
                .arg(ttl_secs(lock_ttl))
                .arg(PROMOTE_BATCH)
                .arg(hostname)
                .invoke_async(&mut self.conn().await?)
                .await?;
            let Ok(moved) = u64::try_from(moved) else {
                return Ok(None);
            };
            total += moved;
            if moved < PROMOTE_BATCH {
                return Ok(Some(total));
            }
        }
    }

    /// Returns the ids in `worker`'s inbox to their queues. Without `force`, only if the worker
    /// is dead (its registration expired). `None` when it is alive.
    pub async fn release_inbox(
        &self,
        worker: &str,
        fallback_queue: &str,
        force: bool,
    ) -> Result<Option<u64>, JobError> {
        let n: i64 = scripts::RELEASE_INBOX
            .arg(self.keys().rq_prefix())
            .arg(worker)
            .arg(Keys::inbox(worker))
            .arg(Keys::inboxes())
            .arg(if force { "1" } else { "0" })
            .arg(fallback_queue)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(u64::try_from(n).ok())
    }

    /// Releases the inboxes of every dead worker; returns how many ids went back.
    pub async fn release_dead_inboxes(&self, fallback_queue: &str) -> Result<u64, JobError> {
        let workers: Vec<String> = redis::cmd("SMEMBERS")
            .arg(Keys::inboxes())
            .query_async(&mut self.conn().await?)
            .await?;
        let mut total = 0;
        for w in workers {
            total += self
                .release_inbox(&w, fallback_queue, false)
                .await?
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// A dedicated connection that blocks until a job arrives on `queue`, for idle workers: on
    /// the queue's own list, or with `lanes` on the bell of its tenant lanes.
    pub async fn waker(
        &self,
        w: &WorkerInfo,
        queue: &str,
        lanes: bool,
    ) -> Result<QueueWaker, JobError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            // Blocking pops answer after their own timeout; only a dead link needs this.
            .set_response_timeout(Some(WAKER_BLOCK + Duration::from_secs(5)));
        let conn = self
            .store
            .client()
            .await?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(QueueWaker {
            conn,
            watch: if lanes {
                Watch::Bell(Keys::fair_bell(queue))
            } else {
                Watch::List {
                    queue_key: self.keys().queue(queue),
                    inbox: Keys::inbox(&w.name),
                }
            },
        })
    }

    /// Applies rate limits to claimed jobs (rate_limit.lua): each job with buckets either keeps
    /// its claim or is moved to the scheduled registry at the slot its limits allow. Returns the
    /// deferred ones; the rest run now.
    pub async fn apply_rate_limits(
        &self,
        w: &WorkerInfo,
        jobs: &[(&Execution, Vec<RateBucket>)],
    ) -> Result<Vec<Deferred>, JobError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = scripts::RATE_LIMIT.prepare_invoke();
        inv.arg(self.keys().rq_prefix())
            .arg(&w.name)
            .arg(self.now().timestamp_millis())
            .arg(RATE_SLOT_TOLERANCE_MS);
        for (e, buckets) in jobs {
            inv.arg(&e.id)
                .arg(&e.execution_id)
                .arg(&e.queue)
                .arg(&e.lane)
                .arg(buckets.len());
            for b in buckets {
                inv.arg(Keys::rate_bucket(&b.limit, b.tenant.as_deref()))
                    .arg(b.interval_ms)
                    .arg(b.burst)
                    .arg(&b.limit);
            }
        }
        let reply: Vec<(String, i64)> = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(jobs
            .iter()
            .zip(reply)
            .filter(|(_, (limit, _))| !limit.is_empty())
            .map(|((e, _), (limit, slot_ms))| Deferred {
                id: e.id.clone(),
                queue: e.queue.clone(),
                limit,
                slot_ms,
            })
            .collect())
    }

    /// Recounts each tenant's started jobs of a fair queue from its started registry
    /// (lane_recount.lua); returns how many run in lanes.
    pub async fn recount_lanes(&self, queue: &str) -> Result<u64, JobError> {
        let total: i64 = scripts::LANE_RECOUNT
            .prepare_invoke()
            .arg(self.keys().rq_prefix())
            .arg(queue)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// Counts the jobs in a fair queue's lanes when that count is missing, or with `anew` when
    /// the queue has at most 50,000 lanes (lane_depth.lua): `Some(count)` when it
    /// was counted now.
    pub async fn count_lanes(&self, queue: &str, anew: bool) -> Result<Option<u64>, JobError> {
        let counted: i64 = scripts::LANE_DEPTH
            .prepare_invoke()
            .arg(self.keys().rq_prefix())
            .arg(queue)
            .arg(if anew { "1" } else { "0" })
            .arg(RECOUNTED_LANES)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(u64::try_from(counted).ok())
    }

    /// Whether `queue` has tenant lanes to wake workers for.
    pub fn has_lanes(&self, queue: &str) -> bool {
        self.store.fairness(queue).is_some()
    }

    /// Whether `queue` caps each tenant's running jobs (and so keeps their counts).
    pub fn caps_tenants(&self, queue: &str) -> bool {
        self.store
            .fairness(queue)
            .is_some_and(|f| f.tenant_concurrency > 0)
    }
}

/// The most lanes a fair queue may have for its count to be redone on every pruning pass: one
/// `LLEN` each, about 10 ms of Redis's time at this bound, once a minute.
const RECOUNTED_LANES: usize = 50_000;

super::capability! {
    /// The diagnostic job type's execution counter, which tests and the bench read to prove
    /// exactly-once execution; nothing in production reads it.
    Diag via diag
}

impl Diag<'_> {
    /// Counts an execution of `job_id` (the diagnostic `diag.count` job type uses it to prove
    /// exactly-once execution in tests and benchmarks).
    pub async fn count_execution(&self, job_id: &str) -> Result<u64, JobError> {
        Ok(redis::cmd("HINCRBY")
            .arg(Keys::diag_executions())
            .arg(job_id)
            .arg(1)
            .query_async(&mut self.conn().await?)
            .await?)
    }

    /// Every execution counted by [`Diag::count_execution`], by job id.
    pub async fn execution_counts(&self) -> Result<BTreeMap<String, u64>, JobError> {
        Ok(redis::cmd("HGETALL")
            .arg(Keys::diag_executions())
            .query_async(&mut self.conn().await?)
            .await?)
    }
}

const RECOVER_BATCH: u64 = 200;
/// A deferred job claimed this much before its slot still runs on it (promotion is periodic,
/// so it is normally late, never early; this covers clock rounding).
const RATE_SLOT_TOLERANCE_MS: i64 = 50;
const PROMOTE_BATCH: u64 = 500;
/// How long one blocking pop waits before the waker re-checks whether it is still wanted.
pub const WAKER_BLOCK: Duration = Duration::from_secs(1);

fn ttl_secs(d: Duration) -> i64 {
    i64::try_from(d.as_millis().div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1)
}

/// A blocking wake-up on one queue. On the queue's list it moves an arriving id into the
/// worker's inbox (never outside a list, so a crash cannot lose it), where the next claim picks
/// it up first. Tenant lanes come and go, so no pop can wait on them: their bell (a short list of
/// tokens pushed with every lane push, see lanes.lua) is popped instead, and the claim that
/// follows takes the jobs; a lost token only delays a worker to its next idle poll.
pub struct QueueWaker {
    conn: MultiplexedConnection,
    watch: Watch,
}

enum Watch {
    List { queue_key: String, inbox: String },
    Bell(String),
}

impl QueueWaker {
    /// Waits up to [`WAKER_BLOCK`] for a job; `true` when one arrived.
    pub async fn wait(&mut self) -> Result<bool, JobError> {
        let block = WAKER_BLOCK.as_secs_f64();
        let cmd = match &self.watch {
            Watch::List { queue_key, inbox } => {
                let mut cmd = redis::cmd("BLMOVE");
                cmd.arg(queue_key)
                    .arg(inbox)
                    .arg("LEFT")
                    .arg("RIGHT")
                    .arg(block);
                cmd
            }
            Watch::Bell(bell) => {
                let mut cmd = redis::cmd("BLPOP");
                cmd.arg(bell).arg(block);
                cmd
            }
        };
        let got: RedisValue = bounded(WAKER_BLOCK + Duration::from_secs(5), async {
            Ok(cmd.query_async(&mut self.conn).await?)
        })
        .await?;
        Ok(!matches!(got, RedisValue::Nil))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn exc_string_is_base64_of_zlib() {
        let enc = encode_exc_string("ValueError: bad 1");
        let raw = BASE64.decode(enc).unwrap();
        let mut text = String::new();
        flate2::read::ZlibDecoder::new(raw.as_slice())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "ValueError: bad 1");
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::ZERO), 1);
    }
}
