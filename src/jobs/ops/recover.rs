//! recover.lua's owner: jobs of dead or stalled workers re-queued or failed.

use std::time::Duration;

use redis::Value as RedisValue;

use super::super::error::JobError;
use super::super::job::{ENQUEUED_BY_PROSAAS, MAX_TTL_SECS, decode_data, rq_timestamp};
use super::super::keys::Keys;
use super::super::scripts::{Layout, LuaScript, args, with_endings};
use super::{Workers, encode_exc_string};

pub(crate) static RECOVER: LuaScript = LuaScript::new(
    with_endings!("ops/recover.lua"),
    &[
        &FIXED_ARGS,
        &FIELDS_PER_DECISION,
        &REPLY_HEAD,
        &FIELDS_PER_UNDECIDED,
    ],
);

/// recover.lua's arguments before the caller's decisions.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &[
        "prefix",
        "queue",
        "now",
        "now_ts",
        "passed_over",
        "exc_string",
        "failure_ttl",
        "max_entries",
        "lock",
        "owner",
        "lock_ttl_ms",
        "max_ttl",
    ],
};

/// The retries the caller decided for a job the script left undecided.
const FIELDS_PER_DECISION: Layout = Layout {
    name: "FIELDS_PER_DECISION",
    fields: &["id", "retries"],
};

/// The counts that open recover.lua's reply.
const REPLY_HEAD: Layout = Layout {
    name: "REPLY_HEAD",
    fields: &["requeued", "failed", "removed", "busy", "kept"],
};

/// A job the script left for the caller to decide (it carries no `retries_left`).
const FIELDS_PER_UNDECIDED: Layout = Layout {
    name: "FIELDS_PER_UNDECIDED",
    fields: &["id", "data", "enqueued_by"],
};

/// What one recovery pass over a queue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub requeued: u64,
    pub failed: u64,
}

impl Workers<'_> {
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
            let mut inv = RECOVER.prepare_invoke();
            args!(inv, FIXED_ARGS;
                self.keys().rq_prefix(),
                queue,
                now.timestamp(),
                rq_timestamp(now),
                passed_over,
                &exc,
                default_failure_ttl,
                RECOVER_BATCH,
                Keys::maintenance_lock(queue),
                owner,
                u64::try_from(lock_ttl.as_millis()).unwrap_or(u64::MAX).max(1),
                MAX_TTL_SECS,
            );
            for (id, n) in &decided {
                args!(inv, FIELDS_PER_DECISION; id, n);
            }
            let reply: Vec<RedisValue> = inv.invoke_async(&mut self.conn().await?).await?;
            let mut fields = reply.into_iter();
            let head: [RedisValue; REPLY_HEAD.len()] =
                std::array::from_fn(|_| fields.next().unwrap_or(RedisValue::Nil));
            let int = |v: RedisValue| -> Result<u64, JobError> {
                Ok(redis::from_redis_value::<Option<u64>>(v)?.unwrap_or(0))
            };
            let [requeued, failed, removed, busy, kept] = head;
            let (requeued, failed, removed) = (int(requeued)?, int(failed)?, int(removed)?);
            let (busy, kept) = (int(busy)?, int(kept)?);
            if busy == 1 {
                return Ok(total);
            }
            total.requeued += requeued;
            total.failed += failed;
            let mut undecided = Vec::new();
            while fields.len() >= FIELDS_PER_UNDECIDED.len() {
                let row: [RedisValue; FIELDS_PER_UNDECIDED.len()] =
                    std::array::from_fn(|_| fields.next().unwrap_or(RedisValue::Nil));
                let [id, data, by] = row;
                let id: String = redis::from_redis_value(id)?;
                let data: Vec<u8> = redis::from_redis_value(data)?;
                let by: String = redis::from_redis_value(by)?;
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
}

const RECOVER_BATCH: u64 = 200;
