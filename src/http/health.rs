//! `GET /api/jobs/health`: queue numbers, scheduler state, role, in the migration guide's shape.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::calls_stream::registry::CallsSnapshot;
use crate::context::AppContext;
use crate::jobs::{QueueStats, SchedulerHealth, Snapshot, Suspension};
use crate::settings::{AlertSettings, Settings};

/// The whole report must come back promptly even while Redis is unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn routes() -> Router<AppContext> {
    Router::new().route("/api/jobs/health", get(jobs_health))
}

/// The jobs health report: the numbers while Redis answers, the error while it does not.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum Health {
    Up(Box<HealthReport>),
    Down(Unhealthy),
}

/// Queue counts, scheduler state, live calls and this process, with a verdict.
#[derive(Serialize, ToSchema)]
pub(super) struct HealthReport {
    /// Every worker queue, and queues with work up to a bound.
    queues: BTreeMap<String, QueueStats>,
    /// Queues the bound left out of `queues` (absent when none was).
    #[serde(skip_serializing_if = "is_zero")]
    queues_not_listed: u64,
    scheduler: SchedulerHealth,
    calls: CallsSnapshot,
    redis: RedisEndpoint,
    role: &'static str,
    subsystems: Vec<&'static str>,
    build: Build,
    /// Registered workers per version they run (two during a deploy); absent when Redis was too
    /// slow to list them.
    worker_versions: Option<BTreeMap<String, u64>>,
    /// Present while workers are suspended (`rq suspend`): no job starts.
    suspended: Option<Suspension>,
    /// `healthy`, or `degraded` with `reasons`.
    status: &'static str,
    /// Which alert thresholds are passed (`api.alerts`), and the scheduler's silence.
    reasons: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Redis did not answer in time.
#[derive(Serialize, ToSchema)]
pub(super) struct Unhealthy {
    /// `unhealthy`.
    status: &'static str,
    error: String,
    redis: RedisEndpoint,
    role: &'static str,
    subsystems: Vec<&'static str>,
    build: Build,
}

/// This process's version and commit.
#[derive(Serialize, ToSchema)]
struct Build {
    version: &'static str,
    commit: &'static str,
}

/// The master in use and the failovers followed, so an operator sees a failover happen.
#[derive(Serialize, ToSchema)]
struct RedisEndpoint {
    /// `host:port`; absent while Sentinel names none.
    master: Option<String>,
    failovers: u64,
}

#[utoipa::path(get, path = "/api/jobs/health", tag = "jobs",
    summary = "Queue counts, scheduler state, role; degraded with reasons past alert thresholds",
    responses(
        (status = 200, description = "healthy or degraded", body = HealthReport),
        (status = 503, description = "unhealthy: Redis unreachable; with Retry-After", body = Unhealthy),
    ))]
async fn jobs_health(State(ctx): State<AppContext>) -> Response {
    let (status, report) = report(&ctx).await;
    let mut response = (status, Json(report)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(super::error::RETRY_AFTER_SECS),
        );
    }
    response
}

/// The jobs health report (also the dashboard overview's): 200 with the numbers, or 503 with
/// the error while Redis cannot answer.
pub(super) async fn report(ctx: &AppContext) -> (StatusCode, Health) {
    match ctx
        .jobs
        .stats()
        .health_snapshot(&ctx.settings.worker.queues, HEALTH_TIMEOUT)
        .await
    {
        Ok(snapshot) => (
            StatusCode::OK,
            Health::Up(Box::new(up(ctx, snapshot).await)),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "jobs health: Redis unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Health::Down(Unhealthy {
                    status: "unhealthy",
                    error: e.to_string(),
                    redis: redis_endpoint(ctx),
                    role: ctx.role.name(),
                    subsystems: ctx.role.subsystem_names(),
                    build: build(),
                }),
            )
        }
    }
}

/// The report from what Redis answered: its numbers, the fleet's versions and the reasons
/// that make it degraded.
async fn up(ctx: &AppContext, snapshot: Snapshot) -> HealthReport {
    let Snapshot {
        queues,
        queues_unlisted,
        scheduler,
        suspension,
    } = snapshot;
    // Which builds the fleet runs (two during a deploy); left out if Redis is slow now.
    let versions = tokio::time::timeout(HEALTH_TIMEOUT, ctx.jobs.stats().worker_versions())
        .await
        .ok()
        .and_then(Result::ok);
    let mut reasons = queue_reasons(&queues, &ctx.settings.api.alerts);
    reasons.extend(scheduler_reason(&scheduler, &ctx.settings));
    reasons.extend(suspension.as_ref().map(suspension_reason));
    let status = if reasons.is_empty() {
        "healthy"
    } else {
        "degraded"
    };
    HealthReport {
        queues,
        queues_not_listed: queues_unlisted,
        scheduler,
        calls: ctx.calls.snapshot(),
        redis: redis_endpoint(ctx),
        role: ctx.role.name(),
        subsystems: ctx.role.subsystem_names(),
        build: build(),
        worker_versions: versions,
        suspended: suspension,
        status,
        reasons,
    }
}

fn build() -> Build {
    Build {
        version: crate::version::VERSION,
        commit: crate::version::COMMIT,
    }
}

fn redis_endpoint(ctx: &AppContext) -> RedisEndpoint {
    RedisEndpoint {
        master: ctx.jobs.redis_master(),
        failovers: ctx.jobs.redis_failovers(),
    }
}

/// Why a queue makes the system degraded: too deep, its oldest job too old, jobs waiting
/// with no worker listening, or dependents stranded.
fn queue_reasons(queues: &BTreeMap<String, QueueStats>, alerts: &AlertSettings) -> Vec<String> {
    let mut reasons = Vec::new();
    for (q, stats) in queues {
        let (max_depth, max_age) = alerts.for_queue(q);
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
        if let Some(age) = stats
            .oldest_queued_secs
            .filter(|a| *a > alerts.unserved_secs)
            && stats.workers == 0
        {
            reasons.push(format!(
                "queue {q} has jobs waiting {age}s and no registered worker listens on it"
            ));
        }
        if stats.paused {
            reasons.push(format!(
                "queue {q} is paused: no prosaas worker starts its {} queued jobs (`prosaas jobs unpause {q}`)",
                stats.queued
            ));
        }
        if let Some(id) = &stats.stranded_example {
            reasons.push(format!(
                "{} deferred jobs of {q} can never run: none of their parents can still end \
                 (deleted, expired, canceled, stopped or failed); see `prosaas jobs show {id}`",
                stats.stranded
            ));
        }
    }
    reasons
}

/// Suspended workers start no job: the system is degraded until someone resumes them.
fn suspension_reason(s: &Suspension) -> String {
    match s.seconds_left {
        Some(left) => format!(
            "workers are suspended for another {left}s: no job starts (rq:suspended; `prosaas jobs resume` or `rq resume` ends it)"
        ),
        None => "workers are suspended: no job starts until `prosaas jobs resume` or `rq resume`"
            .to_owned(),
    }
}

/// A tick older than three tick intervals means no leader is evaluating the schedule.
fn scheduler_reason(scheduler: &SchedulerHealth, settings: &Settings) -> Option<String> {
    let tick_ms = settings.scheduler.tick_interval_ms.as_millis();
    let stale_after = chrono::Duration::milliseconds(
        i64::try_from(tick_ms.saturating_mul(3)).unwrap_or(i64::MAX),
    );
    let age = scheduler
        .last_tick
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc))?;
    (age > stale_after).then(|| {
        format!(
            "scheduler last tick was {}s ago (more than three {tick_ms}ms ticks): no leader is running",
            age.num_seconds()
        )
    })
}
