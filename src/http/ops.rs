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
use serde_json::{Value, json};

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

async fn healthz(State(ctx): State<AppContext>) -> Json<Value> {
    Json(json!({"status": "alive", "role": ctx.role.name()}))
}

async fn readyz(State(ctx): State<AppContext>) -> (StatusCode, Json<Value>) {
    match ctx.jobs.ping(READY_PING_TIMEOUT).await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unready", "error": e.to_string()})),
        ),
    }
}
