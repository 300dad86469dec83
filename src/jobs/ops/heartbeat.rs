//! heartbeat.lua's owner: a worker's heartbeat, as RQ's.

use std::time::Duration;

use super::super::error::JobError;
use super::super::job::rq_timestamp;
use super::super::keys::Keys;
use super::super::scripts::{Layout, LuaScript, args, plain};
use super::{Execution, WorkerInfo, Workers, ttl_secs};

pub(crate) static HEARTBEAT: LuaScript = LuaScript::new(
    plain!("ops/heartbeat.lua"),
    &[&FIXED_ARGS, &FIELDS_PER_EXECUTION],
);

/// heartbeat.lua's arguments before the worker's queues and its running executions.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &[
        "prefix",
        "worker",
        "now",
        "ttl",
        "deadline",
        "inboxes",
        "queue_count",
    ],
};

/// One running execution's arguments.
const FIELDS_PER_EXECUTION: Layout = Layout {
    name: "FIELDS_PER_EXECUTION",
    fields: &["queue", "id", "eid"],
};

impl Workers<'_> {
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
        let mut inv = HEARTBEAT.prepare_invoke();
        args!(inv, FIXED_ARGS;
            self.keys().rq_prefix(),
            &w.name,
            rq_timestamp(now),
            ttl_secs(ttl),
            now.timestamp() + ttl_secs(ttl),
            Keys::inboxes(),
            w.queues.len(),
        );
        inv.arg(&w.queues);
        for e in running {
            args!(inv, FIELDS_PER_EXECUTION; &e.queue, &e.id, &e.execution_id);
        }
        let refreshed: i64 = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(u64::try_from(refreshed).ok())
    }
}
