//! The `scheduler` role: leader-elected periodic enqueuing.
//!
//! Not built yet (issue #4): the subsystem reports that and idles until shutdown, so a
//! deployment can already run the role without firing anything.

use tokio_util::sync::CancellationToken;

use crate::app::AppContext;

pub async fn run(_ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::warn!(
        "scheduler subsystem: periodic jobs are not built yet (issue #4); nothing will fire"
    );
    shutdown.cancelled().await;
    Ok(())
}
