//! The HTTP surface: one listener per process, routes chosen by the role's subsystems.
//!
//! Handlers get [`AppContext`] through axum state and reach Redis only through `ctx.jobs`.

mod error;
mod health;
mod ops;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::AppContext;
use crate::roles::{self, Subsystem};

pub use error::ApiError;

/// The router for a set of subsystems; `/healthz` and `/readyz` are always there.
pub fn router(ctx: AppContext, subsystems: &[Subsystem]) -> Router {
    let body_limit = ctx.settings.http.body_limit_bytes;
    let mut router = ops::routes();
    if subsystems.contains(&Subsystem::PublicApi) {
        router = router.merge(roles::api::routes());
    }
    if subsystems.contains(&Subsystem::Calls) {
        router = router.merge(roles::calls::routes());
    }
    router
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(ctx)
}

/// Serves until `shutdown`, then lets in-flight requests finish (the supervisor bounds that).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// The jobs health routes, mounted by roles that serve the public API.
pub fn jobs_health_routes() -> Router<AppContext> {
    health::routes()
}
