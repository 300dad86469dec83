//! The `calls` role: Twilio's voice webhook and Media Streams (routes in `http::calls`), and this
//! task, which on shutdown stops new streams, gives live calls `calls.shutdown_grace_ms`, then
//! finalizes every recording and enqueues its jobs before the process exits.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use axum::Router;

use crate::context::AppContext;

pub async fn run(ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(
        max_calls = ctx.settings.calls.max_concurrent_calls,
        path = crate::http::calls::STREAM_PATH,
        "calls: accepting Twilio media streams"
    );
    shutdown.cancelled().await;
    crate::http::calls::drain(
        ctx.calls.clone(),
        Duration::from_millis(ctx.settings.calls.shutdown_grace_ms),
    )
    .await;
    Ok(())
}

/// Routes of the `Calls` subsystem: Twilio's voice webhook and the Media Streams WebSocket.
pub fn routes() -> Router<AppContext> {
    crate::http::calls::routes()
}
