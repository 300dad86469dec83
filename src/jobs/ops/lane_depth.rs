//! lane_depth.lua's owner: the jobs waiting in a fair queue's lanes, counted.

use super::super::error::JobError;
use super::super::scripts::{Layout, LuaScript, args, with_lanes};
use super::Workers;

pub(crate) static LANE_DEPTH: LuaScript =
    LuaScript::new(with_lanes!("ops/lane_depth.lua"), &[&FIXED_ARGS]);

/// lane_depth.lua's arguments.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "queue", "anew", "most_lanes"],
};

impl Workers<'_> {
    /// Counts the jobs in a fair queue's lanes when that count is missing, or with `anew` when
    /// the queue has at most 50,000 lanes (lane_depth.lua): `Some(count)` when it
    /// was counted now.
    pub async fn count_lanes(&self, queue: &str, anew: bool) -> Result<Option<u64>, JobError> {
        let mut inv = LANE_DEPTH.prepare_invoke();
        args!(inv, FIXED_ARGS;
            self.keys().rq_prefix(),
            queue,
            if anew { "1" } else { "0" },
            RECOUNTED_LANES,
        );
        let counted: i64 = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(u64::try_from(counted).ok())
    }
}

/// The most lanes a fair queue may have for its count to be redone on every pruning pass: one
/// `LLEN` each, about 10 ms of Redis's time at this bound, once a minute.
const RECOUNTED_LANES: usize = 50_000;
