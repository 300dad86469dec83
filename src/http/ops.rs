//! Liveness, readiness and metrics, served by every role.
//!
//! `/healthz` never touches Redis (a Redis outage must not get the process killed), while
//! `/readyz` answers 503 until Redis does, so traffic waits instead of failing. These routes sit
//! outside the request cap, the timeout and the body budget, and bound their own Redis waits:
//! a probe must answer while everything else is saturated or Redis is stalled.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::context::AppContext;

/// How long a readiness probe waits for Redis before calling it down: well inside an
/// orchestrator's probe timeout (1 s by default on Kubernetes).
const READY_PING_TIMEOUT: Duration = Duration::from_millis(500);

pub(super) fn routes() -> Router<AppContext> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    summary = "Prometheus text exposition",
    responses((status = 200, description = "metrics", content_type = "text/plain", body = String)))]
async fn metrics(State(ctx): State<AppContext>) -> impl axum::response::IntoResponse {
    let text =
        crate::metrics::render(&ctx.jobs, &ctx.settings.worker.queues, ctx.calls.snapshot()).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}

/// The process answers.
#[derive(Serialize, ToSchema)]
pub(super) struct Liveness {
    /// Always `alive`.
    status: &'static str,
    /// The role this process runs.
    role: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "ops",
    summary = "Liveness (never touches Redis)",
    responses((status = 200, description = "alive", body = Liveness)))]
async fn healthz(State(ctx): State<AppContext>) -> Json<Liveness> {
    Json(Liveness {
        status: "alive",
        role: ctx.role.name(),
    })
}

/// Whether Redis answers.
#[derive(Serialize, ToSchema)]
pub(super) struct Readiness {
    /// `ready` or `unready`.
    status: &'static str,
    /// Why not, when unready.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[utoipa::path(get, path = "/readyz", tag = "ops",
    summary = "Readiness (Redis answers)",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "Redis unreachable", body = Readiness),
    ))]
async fn readyz(State(ctx): State<AppContext>) -> (StatusCode, Json<Readiness>) {
    match ctx.jobs.ping(READY_PING_TIMEOUT).await {
        Ok(()) => (
            StatusCode::OK,
            Json(Readiness {
                status: "ready",
                error: None,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "unready",
                error: Some(e.to_string()),
            }),
        ),
    }
}
