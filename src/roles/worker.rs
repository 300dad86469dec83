//! The `worker` role: claims and runs jobs, and recovers jobs of dead workers.

use tokio_util::sync::CancellationToken;

use crate::app::AppContext;

pub async fn run_executor(_ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::warn!("job execution is not built yet (issue #3)");
    shutdown.cancelled().await;
    Ok(())
}

pub async fn run_recovery(_ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    shutdown.cancelled().await;
    Ok(())
}
