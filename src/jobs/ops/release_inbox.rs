//! release_inbox.lua's owner: a worker's inbox back onto its queues.

use super::super::error::JobError;
use super::super::keys::Keys;
use super::super::scripts::{Layout, LuaScript, args, with_lanes};
use super::Workers;

pub(crate) static RELEASE_INBOX: LuaScript =
    LuaScript::new(with_lanes!("ops/release_inbox.lua"), &[&FIXED_ARGS]);

/// release_inbox.lua's arguments.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &[
        "prefix",
        "worker",
        "inbox",
        "inboxes",
        "force",
        "fallback_queue",
    ],
};

impl Workers<'_> {
    /// Returns the ids in `worker`'s inbox to their queues. Without `force`, only if the worker
    /// is dead (its registration expired). `None` when it is alive.
    pub async fn release_inbox(
        &self,
        worker: &str,
        fallback_queue: &str,
        force: bool,
    ) -> Result<Option<u64>, JobError> {
        let mut inv = RELEASE_INBOX.prepare_invoke();
        args!(inv, FIXED_ARGS;
            self.keys().rq_prefix(),
            worker,
            Keys::inbox(worker),
            Keys::inboxes(),
            if force { "1" } else { "0" },
            fallback_queue,
        );
        let n: i64 = inv.invoke_async(&mut self.conn().await?).await?;
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
}
