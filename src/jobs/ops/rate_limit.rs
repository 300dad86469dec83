//! rate_limit.lua's owner: claimed jobs checked against their rate limits.

use super::super::error::JobError;
use super::super::keys::Keys;
use super::super::scripts::{Layout, LuaScript, args, with_lanes};
use super::{Execution, WorkerInfo, Workers};

pub(crate) static RATE_LIMIT: LuaScript = LuaScript::new(
    with_lanes!("ops/rate_limit.lua"),
    &[
        &FIXED_ARGS,
        &FIELDS_PER_JOB,
        &FIELDS_PER_BUCKET,
        &FIELDS_PER_RESULT,
    ],
);

/// rate_limit.lua's arguments before its jobs.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "worker", "now_ms", "tolerance_ms"],
};

/// One job's arguments, followed by its buckets'.
const FIELDS_PER_JOB: Layout = Layout {
    name: "FIELDS_PER_JOB",
    fields: &["id", "eid", "queue", "lane", "buckets"],
};

/// One bucket a job counts against.
const FIELDS_PER_BUCKET: Layout = Layout {
    name: "FIELDS_PER_BUCKET",
    fields: &["key", "interval_ms", "burst", "name"],
};

/// One job's result: the limit that deferred it ('' to run now), and its slot.
const FIELDS_PER_RESULT: Layout = Layout {
    name: "FIELDS_PER_RESULT",
    fields: &["limit", "slot_ms"],
};

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

impl Workers<'_> {
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
        let mut inv = RATE_LIMIT.prepare_invoke();
        args!(inv, FIXED_ARGS;
            self.keys().rq_prefix(),
            &w.name,
            self.now().timestamp_millis(),
            RATE_SLOT_TOLERANCE_MS,
        );
        for (e, buckets) in jobs {
            args!(inv, FIELDS_PER_JOB; &e.id, &e.execution_id, &e.queue, &e.lane, buckets.len());
            for b in buckets {
                args!(inv, FIELDS_PER_BUCKET;
                    Keys::rate_bucket(&b.limit, b.tenant.as_deref()),
                    b.interval_ms,
                    b.burst,
                    &b.limit,
                );
            }
        }
        // Read as (limit, slot) pairs: a result of another length must change this type too.
        const _: () = assert!(FIELDS_PER_RESULT.len() == 2);
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
}

/// A deferred job claimed this much before its slot still runs on it (promotion is periodic,
/// so it is normally late, never early; this covers clock rounding).
const RATE_SLOT_TOLERANCE_MS: i64 = 50;
