//! promote.lua's owner: due jobs of a scheduled registry back onto their queue.

use std::time::Duration;

use super::super::error::JobError;
use super::super::job::rq_timestamp;
use super::super::scripts::{Layout, LuaScript, args, with_lanes};
use super::{Workers, ttl_secs};

pub(crate) static PROMOTE: LuaScript =
    LuaScript::new(with_lanes!("ops/promote.lua"), &[&FIXED_ARGS]);

/// promote.lua's arguments.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &[
        "prefix", "queue", "now", "now_ts", "owner", "lock_ttl", "max_jobs", "hostname",
    ],
};

impl Workers<'_> {
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
            let mut inv = PROMOTE.prepare_invoke();
            args!(inv, FIXED_ARGS;
                self.keys().rq_prefix(),
                queue,
                format!("{:.3}", now.timestamp_millis() as f64 / 1000.0),
                rq_timestamp(now),
                &owner,
                ttl_secs(lock_ttl),
                PROMOTE_BATCH,
                hostname,
            );
            let moved: i64 = inv.invoke_async(&mut self.conn().await?).await?;
            let Ok(moved) = u64::try_from(moved) else {
                return Ok(None);
            };
            total += moved;
            if moved < PROMOTE_BATCH {
                return Ok(Some(total));
            }
        }
    }
}

const PROMOTE_BATCH: u64 = 500;
