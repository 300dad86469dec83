//! Registry hygiene: what Python RQ's workers prune in their maintenance, done by prosaas's
//! (prune.lua), so a fleet with no Python worker does not keep every expired entry forever.
//! Each queue's pass runs on one worker per interval (a lock taken with `SET NX PX` and left
//! to expire) and is bounded per call and per pass.

use std::time::Duration;

use super::error::JobError;
use super::keys::Keys;
use super::scripts::{Layout, LuaScript, args, plain};

/// Entries one script call looks at: about a millisecond of Redis's time.
const PER_CALL: usize = 1000;
/// Calls per registry per pass: a backlog of expired entries larger than this many batches is
/// pruned over several passes.
const CALLS_PER_PASS: usize = 50;

/// The registries of a queue, in the order a pass prunes them.
const REGISTRIES: [&str; 5] = ["finished", "failed", "canceled", "deferred", "scheduled"];

/// What one pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Registry (or `workers`, `queues`) → entries removed.
    pub removed: Vec<(&'static str, u64)>,
    /// Some registry had more to prune than this pass's budget.
    pub unfinished: bool,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.removed.iter().map(|(_, n)| n).sum()
    }
}

/// The outcome of asking for a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrunePass {
    Done(Pruned),
    /// Another worker pruned this within the interval.
    NotDue,
}

super::capability! {
    /// Registry hygiene, run by workers' maintenance.
    Prune via prune
}

impl Prune<'_> {
    /// Prunes `queue`'s registries and its worker set, unless another worker did within `every`.
    pub async fn queue(&self, queue: &str, every: Duration) -> Result<PrunePass, JobError> {
        if !self.take_turn(&Keys::prune_lock(queue), every).await? {
            return Ok(PrunePass::NotDue);
        }
        let mut pruned = Pruned::default();
        for phase in REGISTRIES.iter().copied().chain(["workers"]) {
            self.phase(queue, phase, &[], &mut pruned).await?;
        }
        Ok(PrunePass::Done(pruned))
    }

    /// Prunes the shared sets (`rq:workers`, `rq:queues`, RQ 3.0's groups) unless another worker did within
    /// `every`; `served` are the queues this process serves, never unlisted.
    pub async fn shared(&self, served: &[String], every: Duration) -> Result<PrunePass, JobError> {
        if !self.take_turn(Keys::prune_shared_lock(), every).await? {
            return Ok(PrunePass::NotDue);
        }
        let mut pruned = Pruned::default();
        self.phase("", "workers", &[], &mut pruned).await?;
        self.phase("", "queues", served, &mut pruned).await?;
        self.phase("", "groups", &[], &mut pruned).await?;
        Ok(PrunePass::Done(pruned))
    }

    /// `SET NX PX`: whether this process runs the pass now.
    async fn take_turn(&self, lock: &str, every: Duration) -> Result<bool, JobError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(lock)
            .arg("1")
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(taken.is_some())
    }

    async fn phase(
        &self,
        queue: &str,
        phase: &'static str,
        served: &[String],
        pruned: &mut Pruned,
    ) -> Result<(), JobError> {
        let mut removed = 0;
        for call in 1..=CALLS_PER_PASS {
            let mut inv = PRUNE.prepare_invoke();
            args!(inv, FIXED_ARGS;
                self.keys().rq_prefix(),
                queue,
                phase,
                self.now().timestamp(),
                PER_CALL,
            );
            inv.arg(served);
            const _: () = assert!(REPLY.len() == 2);
            let (n, more): (u64, u8) = inv.invoke_async(&mut self.conn().await?).await?;
            removed += n;
            if more == 0 {
                break;
            }
            if call == CALLS_PER_PASS {
                pruned.unfinished = true;
            }
        }
        if removed > 0 {
            pruned.removed.push((phase, removed));
        }
        Ok(())
    }
}

pub(crate) static PRUNE: LuaScript =
    LuaScript::new(plain!("lua/prune.lua"), &[&FIXED_ARGS, &REPLY]);

/// prune.lua's arguments before the queues this process serves.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "queue", "phase", "now", "most"],
};

/// How many entries a call removed, and whether it stopped at its bound.
const REPLY: Layout = Layout {
    name: "REPLY",
    fields: &["removed", "more"],
};
