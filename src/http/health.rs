//! `GET /api/jobs/health`: queue numbers, scheduler state, role, in the migration guide's shape.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::context::AppContext;

/// The whole report must come back promptly even while Redis is unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn routes() -> Router<AppContext> {
    Router::new().route("/api/jobs/health", get(jobs_health))
}

async fn jobs_health(State(ctx): State<AppContext>) -> (StatusCode, Json<Value>) {
    let role = ctx.role.name();
    let subsystems = ctx.role.subsystem_names();
    match ctx
        .jobs
        .stats()
        .health_snapshot(&ctx.settings.worker.queues, HEALTH_TIMEOUT)
        .await
    {
        Ok((queues, scheduler)) => {
            let mut reasons = Vec::new();
            for (q, stats) in &queues {
                let (max_depth, max_age) = ctx.settings.api.alerts.for_queue(q);
                if stats.queued > max_depth {
                    reasons.push(format!(
                        "queue {q} holds {} jobs (alert threshold {max_depth})",
                        stats.queued
                    ));
                }
                if let Some(age) = stats.oldest_queued_secs.filter(|a| *a > max_age) {
                    reasons.push(format!(
                        "the oldest job on {q} has waited {age}s (alert threshold {max_age}s)"
                    ));
                }
                let unserved = ctx.settings.api.alerts.unserved_secs;
                if let Some(age) = stats.oldest_queued_secs.filter(|a| *a > unserved)
                    && stats.workers == 0
                {
                    reasons.push(format!(
                        "queue {q} has jobs waiting {age}s and no registered worker listens on it"
                    ));
                }
            }
            // A tick older than three tick intervals means no leader is evaluating the schedule.
            let stale_after = chrono::Duration::milliseconds(
                i64::try_from(ctx.settings.scheduler.tick_interval_ms.saturating_mul(3))
                    .unwrap_or(i64::MAX),
            );
            if let Some(age) = scheduler
                .last_tick
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                && age > stale_after
            {
                reasons.push(format!(
                    "scheduler last tick was {}s ago (more than three {}ms ticks): no leader is running",
                    age.num_seconds(),
                    ctx.settings.scheduler.tick_interval_ms
                ));
            }
            let status = if reasons.is_empty() {
                "healthy"
            } else {
                "degraded"
            };
            (
                StatusCode::OK,
                Json(json!({
                    "queues": queues,
                    "scheduler": scheduler,
                    "calls": super::calls::snapshot(&ctx),
                    "role": role,
                    "subsystems": subsystems,
                    "status": status,
                    "reasons": reasons,
                })),
            )
        }
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
