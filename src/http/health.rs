//! `GET /api/jobs/health`: queue numbers, scheduler state, role, in the migration guide's shape.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::{AppContext, subsystem_names};

/// The whole report must come back promptly even while Redis is unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn routes() -> Router<AppContext> {
    Router::new().route("/api/jobs/health", get(jobs_health))
}

async fn jobs_health(State(ctx): State<AppContext>) -> (StatusCode, Json<Value>) {
    let role = ctx.role.name();
    let subsystems = subsystem_names(ctx.role);
    match ctx
        .jobs
        .health_snapshot(&ctx.settings.worker.queues, HEALTH_TIMEOUT)
        .await
    {
        Ok((queues, scheduler)) => (
            StatusCode::OK,
            Json(json!({
                "queues": queues,
                "scheduler": scheduler,
                "role": role,
                "subsystems": subsystems,
                "status": "healthy",
            })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "jobs health: Redis unavailable");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({
                    "status": "unhealthy",
                    "error": e.to_string(),
                    "role": role,
                    "subsystems": subsystems,
                })),
            )
        }
    }
}
