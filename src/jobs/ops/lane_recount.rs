//! lane_recount.lua's owner: each tenant's started jobs of a fair queue, recounted.

use super::super::error::JobError;
use super::super::scripts::{Layout, LuaScript, args, with_lanes};
use super::Workers;

pub(crate) static LANE_RECOUNT: LuaScript =
    LuaScript::new(with_lanes!("ops/lane_recount.lua"), &[&FIXED_ARGS]);

/// lane_recount.lua's arguments.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "queue"],
};

impl Workers<'_> {
    /// Recounts each tenant's started jobs of a fair queue from its started registry
    /// (lane_recount.lua); returns how many run in lanes.
    pub async fn recount_lanes(&self, queue: &str) -> Result<u64, JobError> {
        let mut inv = LANE_RECOUNT.prepare_invoke();
        args!(inv, FIXED_ARGS; self.keys().rq_prefix(), queue);
        let total: i64 = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }
}
