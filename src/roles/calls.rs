//! The `calls` role: Twilio's voice webhook and Media Streams (routes in `http::calls`), and
//! the calls process's own task (`calls::process`): disk, live-call reports, the drain.

use tokio_util::sync::CancellationToken;

use axum::Router;

use crate::context::AppContext;

pub async fn run(ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    crate::calls::process::run(ctx, shutdown).await
}

/// Routes of the `Calls` subsystem: Twilio's voice webhook and the Media Streams WebSocket.
pub fn routes() -> Router<AppContext> {
    crate::http::calls::routes()
}
