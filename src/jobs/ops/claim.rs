//! claim.lua's owner: up to N jobs popped and started for one worker, in one step.

use std::time::Duration;

use redis::Value as RedisValue;
use serde_json::Value;

use super::super::error::JobError;
use super::super::job::{ENQUEUED_BY_PROSAAS, JobCall, decode_data, rq_timestamp, stored_ttl};
use super::super::keys::Keys;
use super::super::scripts::{Layout, LuaScript, args, with_preludes};
use super::{Execution, WorkerInfo, Workers, ttl_secs};

pub(crate) static CLAIM: LuaScript = LuaScript::new(
    with_preludes!(["lua/lanes.lua", "lua/clock.lua"], "ops/claim.lua"),
    &[&FIXED_ARGS, &REPLY_HEAD, &FIELDS_PER_JOB],
);

/// claim.lua's reply before its jobs: ids dropped (their hash was gone; -1 alone while
/// suspended), and the worker's queues that are paused, space-separated.
const REPLY_HEAD: Layout = Layout {
    name: "REPLY_HEAD",
    fields: &["dropped", "paused"],
};

/// claim.lua's arguments before its queues (the queue names, then each one's tenant cap).
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &[
        "prefix",
        "worker",
        "now",
        "deadline",
        "max",
        "eid_base",
        "inbox",
        "state_seq",
        "current_job",
        "queue_count",
    ],
};

/// One claimed job in claim.lua's reply (after [`REPLY_HEAD`]).
const FIELDS_PER_JOB: Layout = Layout {
    name: "FIELDS_PER_JOB",
    fields: &[
        "id",
        "eid",
        "queue",
        "data",
        "timeout",
        "retries_left",
        "retry_intervals",
        "result_ttl",
        "failure_ttl",
        "enqueued_at",
        "attempts",
        "enqueued_by",
        "lane",
        "meta",
        "rq_options",
    ],
};

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
    /// RQ's callbacks, when a Python producer set any.
    pub callbacks: Option<Callbacks>,
    /// RQ's `Repeat` (2.2+), when a Python producer set it and runs are still to come.
    pub repeat: Option<Repeat>,
    /// RQ 3.0's webhooks: requests to make once the job has finished or failed.
    pub webhooks: Vec<Webhook>,
}

/// One of RQ 3.0's `Webhook`s, as the job hash's `webhooks` JSON holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Webhook {
    pub url: String,
    /// `finished` or `failed`: the outcome it is sent for.
    pub job_status: String,
    #[serde(default = "Webhook::get")]
    pub method: String,
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Seconds.
    #[serde(default = "Webhook::ten")]
    pub timeout: u64,
}

impl Webhook {
    fn get() -> String {
        "GET".into()
    }

    fn ten() -> u64 {
        10
    }

    /// From `rq_options` line 9; what cannot be read is logged and sends nothing, as RQ's
    /// `Job.restore` does.
    fn parse(id: &str, lines: &[&str]) -> Vec<Self> {
        let Some(json) = lines.get(8).filter(|l| !l.is_empty()) else {
            return Vec::new();
        };
        serde_json::from_str(json).unwrap_or_else(|e| {
            tracing::warn!(job_id = %id, error = %e, "the job's RQ webhooks cannot be read; none will be sent");
            Vec::new()
        })
    }
}

/// RQ's `Repeat` as a job carries it: runs still to come after this one, and the intervals
/// between them in seconds (the first is the next one's, RQ 3.0's reading).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repeat {
    pub left: u32,
    pub intervals: Vec<u64>,
}

impl Repeat {
    /// From `rq_options` lines 7 and 8; `None` when no run is left.
    fn parse(lines: &[&str]) -> Option<Self> {
        let left = lines.get(6)?.parse().ok().filter(|n| *n > 0)?;
        let intervals = lines
            .get(7)
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        Some(Self { left, intervals })
    }
}

/// A job's RQ callbacks (`on_success`, `on_failure`, `on_stopped`): Python import paths, with
/// their timeouts in seconds when set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Callbacks {
    pub success: Option<Callback>,
    pub failure: Option<Callback>,
    pub stopped: Option<Callback>,
}

/// One callback: its name and timeout (seconds, `None` for RQ's default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    pub name: String,
    pub timeout: Option<u64>,
}

/// What claim.lua's `rq_options` field says (see its header), split into its lines once: the
/// callbacks, the Repeat, the webhooks and the rate limit key (the last line, kept whole). Empty
/// for every job prosaas enqueued, which then costs nothing here.
fn read_rq_options(
    id: &str,
    field: &str,
) -> (Option<Callbacks>, Option<Repeat>, Vec<Webhook>, String) {
    if field.is_empty() {
        return (None, None, Vec::new(), String::new());
    }
    let lines: Vec<&str> = field.splitn(10, '\n').collect();
    (
        Callbacks::parse(&lines),
        Repeat::parse(&lines),
        Webhook::parse(id, &lines),
        lines.get(9).copied().unwrap_or_default().to_owned(),
    )
}

impl Callbacks {
    /// The callbacks in `rq_options` lines 1 to 6 (names, then timeouts); `None` when it names
    /// none.
    fn parse(lines: &[&str]) -> Option<Self> {
        if lines.iter().take(3).all(|name| name.is_empty()) {
            return None;
        }
        let one = |i: usize| {
            let name = lines.get(i).copied().unwrap_or_default();
            (!name.is_empty()).then(|| Callback {
                name: name.to_owned(),
                // RQ stores the timeout as written (an int, maybe a float): whole seconds.
                timeout: lines
                    .get(i + 3)
                    .and_then(|t| t.parse::<f64>().ok())
                    .filter(|t| t.is_finite() && *t > 0.0)
                    .map(|t| t.ceil() as u64),
            })
        };
        Some(Self {
            success: one(0),
            failure: one(1),
            stopped: one(2),
        })
    }
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
            .get(super::super::job::TENANT)?
            .as_str()
            .map(str::to_owned)
    }
}

/// What one claim got.
#[derive(Debug, Default)]
pub struct Claim {
    pub jobs: Vec<ClaimedJob>,
    /// `rq:suspended` exists (`rq suspend`, `prosaas jobs suspend`): nothing was taken.
    pub suspended: bool,
    /// The worker's queues that are paused (`prosaas jobs pause`): nothing was taken from them.
    pub paused: Vec<String>,
}

impl Workers<'_> {
    /// Claims up to `max` jobs: the worker's inbox first, then its queues in priority order.
    /// Each claimed job is in `rq:wip:<queue>` with deadline `now + job_ttl`.
    /// `state_seq` numbers the "busy" this claim writes when it gets jobs (see [`WorkerState`](super::WorkerState)).
    pub async fn claim(
        &self,
        w: &WorkerInfo,
        max: usize,
        job_ttl: Duration,
        state_seq: u64,
    ) -> Result<Claim, JobError> {
        let inv = self.claim_invocation(w, max, job_ttl, state_seq, false);
        let reply: Vec<RedisValue> = inv.invoke_async(&mut self.conn().await?).await?;
        read_claim(reply)
    }

    /// claim.lua's call for [`Self::claim`]; with `at_run` its time (`started_at`, the
    /// deadline) is Redis's clock when it runs, for a claim sent ahead behind a blocking wait.
    pub(super) fn claim_invocation(
        &self,
        w: &WorkerInfo,
        max: usize,
        job_ttl: Duration,
        state_seq: u64,
        at_run: bool,
    ) -> redis::ScriptInvocation<'static> {
        // No execution ids in RQ 1.x's format (see claim.lua).
        let base = if self.rq1_entries() {
            String::new()
        } else {
            uuid::Uuid::new_v4().simple().to_string()[..24].to_owned()
        };
        let (now, deadline) = if at_run {
            (String::new(), ttl_secs(job_ttl))
        } else {
            let now = self.now();
            (rq_timestamp(now), now.timestamp() + ttl_secs(job_ttl))
        };
        let mut inv = CLAIM.prepare_invoke();
        args!(inv, FIXED_ARGS;
            self.keys().rq_prefix(),
            &w.name,
            now,
            deadline,
            max,
            &base,
            Keys::inbox(&w.name),
            state_seq,
            if self.store.record_current_job { "1" } else { "" },
            w.queues.len(),
        );
        inv.arg(&w.queues);
        for q in &w.queues {
            inv.arg(self.store.fairness(q).map_or(0, |f| f.tenant_concurrency));
        }
        inv
    }
}

/// claim.lua's reply, decoded.
// Long on purpose: the reply's head, then each job's row in the layout's order.
pub(super) fn read_claim(reply: Vec<RedisValue>) -> Result<Claim, JobError> {
    let mut fields = reply.into_iter();
    let dropped: i64 = fields
        .next()
        .map(redis::from_redis_value)
        .transpose()?
        .unwrap_or(0);
    if dropped < 0 {
        return Ok(Claim {
            jobs: Vec::new(),
            suspended: true,
            paused: Vec::new(),
        });
    }
    const _: () = assert!(REPLY_HEAD.len() == 2);
    let paused: String = fields
        .next()
        .map(redis::from_redis_value)
        .transpose()?
        .unwrap_or_default();
    let paused = paused.split_whitespace().map(str::to_owned).collect();
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
    if !fields.len().is_multiple_of(FIELDS_PER_JOB.len()) {
        return Err(JobError::Invalid(format!(
            "the claim script returned {} fields, not rows of {}",
            fields.len(),
            FIELDS_PER_JOB.len()
        )));
    }
    let mut jobs = Vec::with_capacity(fields.len() / FIELDS_PER_JOB.len());
    while fields.len() >= FIELDS_PER_JOB.len() {
        // A row of another length than the layout's does not compile.
        let row: [RedisValue; FIELDS_PER_JOB.len()] =
            std::array::from_fn(|_| fields.next().unwrap_or(RedisValue::Nil));
        let [
            id,
            execution_id,
            queue,
            data,
            timeout,
            retries_left,
            retry_intervals,
            result_ttl,
            failure_ttl,
            enqueued_at,
            attempts,
            enqueued_by,
            lane,
            meta,
            rq_options,
        ] = row;
        let (id, execution_id, queue) = (text(id)?, text(execution_id)?, text(queue)?);
        let (callbacks, repeat, webhooks, rate_limit) = read_rq_options(&id, &text(rq_options)?);
        let data: Vec<u8> = redis::from_redis_value(data)?;
        let lane = text(lane)?;
        let meta: Vec<u8> = redis::from_redis_value(meta)?;
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
            callbacks,
            repeat,
            webhooks,
            execution: Execution {
                id,
                execution_id,
                queue,
                lane,
                rate_limit,
            },
        });
    }
    Ok(Claim {
        jobs,
        suspended: false,
        paused,
    })
}

#[cfg(test)]
mod tests {
    use super::{Callback, Callbacks, Repeat, read_rq_options};

    fn lines(field: &str) -> Vec<&str> {
        field.splitn(10, '\n').collect()
    }

    #[test]
    fn rq_options_keep_a_rate_limit_key_whole() {
        let (callbacks, repeat, webhooks, key) =
            read_rq_options("j", "\n\n\n\n\n\n\n\n\ncrm\nwith a newline");
        assert_eq!((callbacks, repeat, webhooks.len()), (None, None, 0));
        assert_eq!(key, "crm\nwith a newline");
        assert_eq!(read_rq_options("j", "").3, "");
    }

    /// claim.lua skips reading RQ's Python-side options for what prosaas enqueued by comparing
    /// `enqueued_by` with a literal: the literal is the mark prosaas writes.
    #[test]
    fn claim_lua_knows_prosaas_mark() {
        let mark = format!("h[11] ~= '{}'", super::ENQUEUED_BY_PROSAAS);
        assert!(include_str!("claim.lua").contains(&mark), "{mark}");
    }

    #[test]
    fn repeat_reads_as_claim_lua_writes_it() {
        assert_eq!(Repeat::parse(&lines("")), None);
        assert_eq!(
            Repeat::parse(&lines("app.ok\n\n\n\n\n\n\n")),
            None,
            "callbacks alone"
        );
        assert_eq!(
            Repeat::parse(&lines("\n\n\n\n\n\n0\n[5]")),
            None,
            "no run left"
        );
        assert_eq!(
            Repeat::parse(&lines("\n\n\n\n\n\n2\n[10, 20]")),
            Some(Repeat {
                left: 2,
                intervals: vec![10, 20]
            })
        );
        assert_eq!(
            Repeat::parse(&lines("\n\n\n\n\n\n1\n")),
            Some(Repeat {
                left: 1,
                intervals: Vec::new()
            })
        );
    }

    #[test]
    fn callbacks_read_as_claim_lua_writes_them() {
        assert_eq!(Callbacks::parse(&lines("")), None);
        assert_eq!(
            Callbacks::parse(&lines("\n\n\n\n\n\n3\n[1]")),
            None,
            "a Repeat alone"
        );
        let cb = |name: &str, timeout| {
            Some(Callback {
                name: name.into(),
                timeout,
            })
        };
        assert_eq!(
            Callbacks::parse(&lines("app.ok\n\napp.stopped\n60\n\n2.5\n")),
            Some(Callbacks {
                success: cb("app.ok", Some(60)),
                failure: None,
                stopped: cb("app.stopped", Some(3)),
            })
        );
        // A timeout Python wrote as something else is RQ's default.
        assert_eq!(
            Callbacks::parse(&lines("\napp.f\n\n\nsoon\n\n")).and_then(|c| c.failure),
            Some(Callback {
                name: "app.f".into(),
                timeout: None
            })
        );
    }
}
