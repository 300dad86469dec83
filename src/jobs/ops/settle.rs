//! settle.lua's owner: a batch of outcomes recorded as RQ records them, in one step.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use redis::Value as RedisValue;
use serde_json::Value;

use super::super::error::JobError;
use super::super::job::rq_timestamp;
use super::super::scripts::{Layout, LuaScript, args, with_endings};
use super::super::series::wait_bucket;
use super::{Execution, Repeat, WorkerInfo, Workers, encode_exc_string};

pub(crate) static SETTLE: LuaScript = LuaScript::new(
    with_endings!("ops/settle.lua"),
    &[&FIXED_ARGS, &FIELDS_PER_OUTCOME],
);

/// settle.lua's arguments before its outcomes.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &[
        "prefix",
        "worker",
        "now",
        "working",
        "state",
        "state_seq",
        "capped",
        "minute",
        "current_job",
        "write_counts",
        "carried",
    ],
};

/// One outcome's arguments (see settle.lua's header for what each holds by kind).
const FIELDS_PER_OUTCOME: Layout = Layout {
    name: "FIELDS_PER_OUTCOME",
    fields: &[
        "kind",
        "id",
        "eid",
        "queue",
        "ttl",
        "score",
        "payload",
        "started",
        "ended",
        "retries_left",
        "error",
        "lane",
        "wait",
        "rate_limit",
    ],
};

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
    /// Success of a job with RQ's `Repeat` and runs left: recorded as a success is, without
    /// the expiry (RQ's `Repeat.schedule` instead of `Job.cleanup`), then back on its queue
    /// (`delay_secs` 0) or scheduled, with `repeat` as it stands for the next run.
    Repeat {
        result: Option<Value>,
        result_ttl: i64,
        delay_secs: u64,
        repeat: Repeat,
    },
    /// Not run to completion (shutdown): back to the head of its queue, no retry consumed.
    Requeue,
    /// Stopped by an operator (RQ's `send_stop_job_command`): status `stopped`, in the failed
    /// registry with RQ's message, never retried.
    Stopped { failure_ttl: i64 },
}

/// A return value as RQ's results stream holds it: base64 of its JSON, '' for none.
fn return_value(result: &Option<Value>) -> String {
    match result {
        Some(v) => BASE64.encode(serde_json::to_vec(v).unwrap_or_default()),
        None => String::new(),
    }
}

/// The error RQ records for a stopped job.
pub(crate) const STOPPED_MESSAGE: &str = "Job stopped by user, work-horse terminated.";

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

/// Counts of recorded outcomes that a busy worker has not written yet: its hash's
/// `successful_job_count`, `failed_job_count` and `total_working_time`, and the dashboard's
/// minute series. Written at most once per [`Tally::EVERY`] (and whenever the minute turns), so
/// a worker settling one job at a time does not pay three more commands per job for them.
#[derive(Debug, Default)]
pub struct Tally {
    successful: u64,
    failed: u64,
    working: f64,
    /// The minute the held series counts belong to; `None` while nothing is held.
    minute: Option<i64>,
    series: Vec<(String, u64)>,
    written_at: Option<std::time::Instant>,
}

impl Tally {
    /// How long counts may wait before they are written.
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    /// When the counts held must be written, if any are held.
    pub fn due_at(&self) -> Option<std::time::Instant> {
        self.minute?;
        Some(
            self.written_at
                .map_or_else(std::time::Instant::now, |t| t + Self::EVERY),
        )
    }

    /// Whether a call in `minute` writes the counts (a worker's first call always does).
    fn writes_now(&self, minute: i64) -> bool {
        self.written_at.is_none_or(|t| t.elapsed() >= Self::EVERY)
            || self.minute.is_some_and(|m| m != minute)
    }

    /// The held counts in settle.lua's `carried` form ('' for none).
    fn carried(&self) -> String {
        let Some(minute) = self.minute else {
            return String::new();
        };
        let mut out = format!("{} {} {minute}", self.successful, self.failed);
        for (field, n) in &self.series {
            out.push_str(&format!(" {field} {n}"));
        }
        out
    }

    /// Adds a batch's counts (settle.lua's reply after the applied flags).
    fn add(&mut self, minute: i64, working: f64, reply: &[RedisValue]) -> Result<(), JobError> {
        let int = |v: &RedisValue| redis::from_redis_value::<u64>(v.clone());
        let [ok, fail, not_worked, series @ ..] = reply else {
            return Err(JobError::Invalid("settle.lua returned no counts".into()));
        };
        self.successful += int(ok)?;
        self.failed += int(fail)?;
        let not_worked: String = redis::from_redis_value(not_worked.clone())?;
        self.working += working - not_worked.parse::<f64>().unwrap_or(0.0);
        self.minute = Some(minute);
        for pair in series.chunks(2) {
            let [field, n] = pair else { break };
            let field: String = redis::from_redis_value(field.clone())?;
            let n = int(n)?;
            match self.series.iter_mut().find(|(f, _)| *f == field) {
                Some((_, held)) => *held += n,
                None => self.series.push((field, n)),
            }
        }
        Ok(())
    }

    /// Not written (Redis did not answer): held a period more.
    pub fn postpone(&mut self) {
        self.written_at = Some(std::time::Instant::now());
    }

    fn written(&mut self) {
        *self = Self {
            written_at: Some(std::time::Instant::now()),
            ..Self::default()
        };
    }
}

impl Workers<'_> {
    /// Records on a running job's hash (`unresolved_callbacks`) the RQ callbacks no handler
    /// answers, so `jobs show` and Python readers see what was skipped. The job is running
    /// (a delete refuses it), so its hash is there; its outcome is recorded after this.
    pub async fn note_unresolved_callbacks(&self, id: &str, names: &str) -> Result<(), JobError> {
        let () = redis::cmd("HSET")
            .arg(self.keys().job(id))
            .arg("unresolved_callbacks")
            .arg(names)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// Records a batch of outcomes in one round trip, with the worker's counts of them; one
    /// [`Settled`] per settlement. With an empty batch it only records the worker's state.
    pub async fn settle(
        &self,
        w: &WorkerInfo,
        batch: &[Settlement],
        state: Option<(WorkerState, u64)>,
    ) -> Result<Vec<Settled>, JobError> {
        self.settle_counting(w, batch, state, &mut Tally::default())
            .await
    }

    /// [`Self::settle`] for a worker's settler: the counts of the outcomes go into `tally` and
    /// are written with the first call after [`Tally::EVERY`] (an empty batch writes them when
    /// they are due and nothing else comes).
    // Long on purpose: one script call: its KEYS/ARGV are built here in the order settle.lua reads
    // them, and split up that layout would be spread over several functions.
    pub async fn settle_counting(
        &self,
        w: &WorkerInfo,
        batch: &[Settlement],
        state: Option<(WorkerState, u64)>,
        tally: &mut Tally,
    ) -> Result<Vec<Settled>, JobError> {
        let now = self.now();
        let now_secs = now.timestamp();
        let now_exact = now.timestamp_millis() as f64 / 1000.0;
        let minute = now_secs.div_euclid(60);
        // An empty batch has nothing to count: it is the call that writes what is held.
        let write_counts = batch.is_empty() || tally.writes_now(minute);
        // Registry scores and the working time are computed here and sent as strings: the
        // script passes them on untouched (see settle.lua on Lua's number conversions).
        let working: f64 = batch
            .iter()
            .filter(|s| !matches!(s.outcome, Outcome::Requeue))
            .map(|s| s.ended_at - s.started_at)
            .sum();
        let capped: Vec<&str> = w
            .queues
            .iter()
            .filter(|q| self.caps_tenants(q))
            .map(String::as_str)
            .collect();
        // Written now, the held counts' working time goes in with this batch's.
        let sent_working = if write_counts {
            working + tally.working
        } else {
            working
        };
        let mut inv = SETTLE.prepare_invoke();
        args!(inv, FIXED_ARGS;
            self.keys().rq_prefix(),
            &w.name,
            rq_timestamp(now),
            if sent_working > 0.0 { format!("{sent_working:.6}") } else { String::new() },
            state.map_or("", |(s, _)| s.as_str()),
            state.map_or(0, |(_, seq)| seq),
            capped.join(" "),
            minute,
            if self.store.record_current_job { "1" } else { "" },
            if write_counts { "1" } else { "" },
            if write_counts { tally.carried() } else { String::new() },
        );
        // No due time: back on the queue now; otherwise due `delay` from now, with the
        // milliseconds kept so a short backoff is neither cut nor stretched.
        let due_in = |delay_secs: u64| {
            let delay = i64::try_from(delay_secs).unwrap_or(i64::MAX);
            let due = if delay > 0 {
                format!("{:.3}", now_exact + delay as f64)
            } else {
                String::new()
            };
            (delay, due)
        };
        let registry_score = |ttl: i64, forever: &str| match ttl {
            -1 => forever.to_owned(),
            ttl => (now_secs + ttl).to_string(),
        };
        for s in batch {
            let (kind, ttl, score, payload, left, err): (_, _, _, _, _, Cow<'_, str>) = match &s
                .outcome
            {
                Outcome::Finished { result, result_ttl } => {
                    let score = registry_score(*result_ttl, "+inf");
                    ("ok", *result_ttl, score, return_value(result), 0, "".into())
                }
                Outcome::Repeat {
                    result,
                    result_ttl,
                    delay_secs,
                    repeat,
                } => {
                    // The score is the next run's due time ('' for now): the finished
                    // registry's score is computed by the script on this rare path.
                    let (_, due) = due_in(*delay_secs);
                    let intervals = serde_json::to_string(&repeat.intervals).unwrap_or_default();
                    let payload = return_value(result);
                    (
                        "repeat",
                        *result_ttl,
                        due,
                        payload,
                        repeat.left,
                        intervals.into(),
                    )
                }
                Outcome::Failed { error, failure_ttl } => {
                    let score = registry_score(*failure_ttl, "-1");
                    (
                        "fail",
                        *failure_ttl,
                        score,
                        encode_exc_string(error),
                        0,
                        "".into(),
                    )
                }
                Outcome::Retry {
                    error,
                    delay_secs,
                    retries_left,
                } => {
                    let (delay, due) = due_in(*delay_secs);
                    (
                        "retry",
                        delay,
                        due,
                        String::new(),
                        *retries_left,
                        error.as_str().into(),
                    )
                }
                Outcome::Requeue => ("requeue", 0, String::new(), String::new(), 0, "".into()),
                Outcome::Stopped { failure_ttl } => {
                    let score = registry_score(*failure_ttl, "-1");
                    let error = encode_exc_string(STOPPED_MESSAGE);
                    ("stop", *failure_ttl, score, error, 0, "".into())
                }
            };
            let e = &s.execution;
            let wait = s
                .waited
                .map_or(String::new(), |w| wait_bucket(w).to_string());
            args!(inv, FIELDS_PER_OUTCOME;
                kind,
                &e.id,
                &e.execution_id,
                &e.queue,
                ttl,
                score,
                payload,
                format!("{:.6}", s.started_at),
                format!("{:.6}", s.ended_at),
                left,
                err.as_ref(),
                &e.lane,
                wait,
                &e.rate_limit,
            );
        }
        let reply: Vec<RedisValue> = inv.invoke_async(&mut self.conn().await?).await?;
        if reply.len() < batch.len() {
            return Err(JobError::Invalid(
                "settle.lua returned fewer results than outcomes".into(),
            ));
        }
        let (applied, counts) = reply.split_at(batch.len());
        if write_counts {
            tally.written();
        } else {
            tally.add(minute, working, counts)?;
        }
        applied
            .iter()
            .map(|a| {
                Ok(if redis::from_redis_value::<i64>(a.clone())? == 1 {
                    Settled::Applied
                } else {
                    Settled::Conflict
                })
            })
            .collect()
    }
}
