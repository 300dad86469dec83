//! The `scheduler` role's subsystem: the leader-elected periodic scheduler.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::AppContext;
use crate::identity::process_name;
use crate::scheduler::{Scheduler, entries};

pub async fn run(ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    let s = &ctx.settings.scheduler;
    let scheduler = Scheduler {
        store: ctx.jobs.clone(),
        token: format!("scheduler.{}", process_name()),
        entries: entries(s)?,
        lock_ttl: Duration::from_millis(s.lock_ttl_ms),
        renew_interval: Duration::from_millis(s.renew_interval_ms),
        tick_interval: Duration::from_millis(s.tick_interval_ms),
    };
    scheduler.run(shutdown).await
}
