//! The admin API (bearer token): one job, failed jobs with cursor paging, requeue, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::auth::Bearer;
use super::extract::{JsonPath, JsonQuery};
use crate::context::AppContext;
use crate::jobs::{Deleted, Requeue, is_valid_job_id, is_valid_queue_name};

pub(super) fn routes() -> Router<AppContext> {
    Router::new()
        .route("/api/jobs/failed", get(failed))
        .route("/api/jobs/failed/requeue-all", post(requeue_all))
        .route("/api/jobs/failed/{id}/requeue", post(requeue))
        .route("/api/jobs/{id}", get(show).delete(delete))
}

pub(super) fn check_id(id: &str) -> Result<(), ApiError> {
    if is_valid_job_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "job ids are 1-128 characters of [A-Za-z0-9_-]",
        ))
    }
}

async fn show(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    match ctx.jobs.admin().job_detail(&id).await? {
        Some(d) => Ok(Json(serde_json::to_value(d).unwrap_or(Value::Null))),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

#[derive(Deserialize)]
struct FailedQuery {
    queue: Option<String>,
    limit: Option<usize>,
    cursor: Option<usize>,
}

async fn failed(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonQuery(q): JsonQuery<FailedQuery>,
) -> Result<Json<Value>, ApiError> {
    let queue = q.queue.unwrap_or_else(|| "default".into());
    if !is_valid_queue_name(&queue) {
        return Err(ApiError::invalid("queue is not a valid queue name"));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let cursor = q.cursor.unwrap_or(0);
    let jobs = ctx.jobs.admin().failed_jobs(&queue, cursor, limit).await?;
    let next = (jobs.len() == limit).then_some(cursor.saturating_add(limit));
    Ok(Json(
        json!({"queue": queue, "jobs": jobs, "next_cursor": next}),
    ))
}

async fn requeue(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<Value>, ApiError> {
    requeue_one(&ctx, &id).await
}

/// Puts one failed job back on its queue (the admin API's and the dashboard's action).
pub(super) async fn requeue_one(ctx: &AppContext, id: &str) -> Result<Json<Value>, ApiError> {
    check_id(id)?;
    let Some(job) = ctx.jobs.fetch_job(id).await? else {
        return Err(ApiError::not_found(format!("no job {id}")));
    };
    match ctx.jobs.admin().requeue_failed(&job.origin, id).await? {
        Requeue::Requeued => Ok(Json(json!({"requeued": id, "queue": job.origin}))),
        Requeue::NotFailed => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            format!("job {id} is {}, not in the failed registry", job.status),
        )),
        Requeue::Missing => Err(ApiError::not_found(format!("job {id} disappeared"))),
    }
}

#[derive(Deserialize)]
struct QueueQuery {
    queue: Option<String>,
}

async fn requeue_all(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonQuery(q): JsonQuery<QueueQuery>,
) -> Result<Json<Value>, ApiError> {
    let queues = match q.queue {
        Some(queue) if is_valid_queue_name(&queue) => vec![queue],
        Some(_) => {
            return Err(ApiError::invalid("queue is not a valid queue name"));
        }
        None => ctx.settings.worker.queues.clone(),
    };
    let mut n = 0;
    for queue in &queues {
        n += ctx.jobs.admin().requeue_all_failed(queue).await?;
    }
    Ok(Json(json!({"requeued": n, "queues": queues})))
}

async fn delete(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<Value>, ApiError> {
    delete_one(&ctx, &id).await
}

/// Deletes a job that is not running (the admin API's and the dashboard's action).
pub(super) async fn delete_one(ctx: &AppContext, id: &str) -> Result<Json<Value>, ApiError> {
    check_id(id)?;
    match ctx.jobs.admin().delete_job(id).await? {
        Deleted::Deleted => Ok(Json(json!({"deleted": id}))),
        Deleted::Missing => Err(ApiError::not_found(format!("no job {id}"))),
        Deleted::Running => Err(ApiError::new(
            StatusCode::CONFLICT,
            "running",
            format!("job {id} is running; it cannot be deleted under its worker"),
        )),
    }
}
