//! The `scheduler` role's subsystem: the leader-elected periodic scheduler.

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
        lock_ttl: s.lock_ttl_ms.get(),
        renew_interval: s.renew_interval_ms.get(),
        tick_interval: s.tick_interval_ms.get(),
    };
    scheduler.run(shutdown).await
}
