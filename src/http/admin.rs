//! The admin API (bearer token): one job, failed jobs with cursor paging, requeue, delete,
//! cancel, stop, and pausing a queue.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiError;
use super::auth::Bearer;
use super::error::{BadRequest, ErrorBody, NotFound, Unauthorized, Unavailable};
use super::extract::{JsonPath, JsonQuery};
use crate::context::AppContext;
use crate::jobs::{
    Canceled, Deleted, JobDetail, Requeue, Stop, is_valid_job_id, is_valid_queue_name,
};

pub(super) fn routes() -> Router<AppContext> {
    Router::new()
        .route("/api/jobs/failed", get(failed))
        .route("/api/jobs/failed/requeue-all", post(requeue_all))
        .route("/api/jobs/failed/{id}/requeue", post(requeue))
        .route("/api/jobs/{id}", get(show).delete(delete))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/api/jobs/{id}/stop", post(stop))
        .route("/api/queues/{queue}/pause", post(pause))
        .route("/api/queues/{queue}/unpause", post(unpause))
}

/// A queue's pause, after a pause or unpause request.
#[derive(Serialize, ToSchema)]
pub(super) struct PauseAnswer {
    queue: String,
    /// Whether no prosaas worker takes its jobs now.
    paused: bool,
    /// `false` when it already was as asked (the request is idempotent).
    changed: bool,
}

fn check_queue(queue: &str) -> Result<(), ApiError> {
    if is_valid_queue_name(queue) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "queue names are 1-128 characters of [A-Za-z0-9_.-]",
        ))
    }
}

#[utoipa::path(post, path = "/api/queues/{queue}/pause", tag = "admin",
    summary = "Pause a queue for every prosaas worker (idempotent)",
    description = "No prosaas worker starts a job of the queue (its tenant lanes included) until it is unpaused; jobs in flight finish, and enqueues go on. Python RQ's workers do not know about it (use `rq suspend` to stop them all).",
    security(("bearer" = [])),
    params(("queue" = String, Path, description = "the queue")),
    responses(
        (status = 200, description = "the queue is paused", body = PauseAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ))]
async fn pause(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(queue): JsonPath<String>,
) -> Result<Json<PauseAnswer>, ApiError> {
    let answer = set_paused(&ctx, queue, true).await?;
    tracing::warn!(
        queue = answer.queue,
        changed = answer.changed,
        "queue paused through the admin API"
    );
    Ok(answer)
}

#[utoipa::path(post, path = "/api/queues/{queue}/unpause", tag = "admin",
    summary = "Let prosaas workers take a paused queue's jobs again (idempotent)",
    security(("bearer" = [])),
    params(("queue" = String, Path, description = "the queue")),
    responses(
        (status = 200, description = "the queue is not paused", body = PauseAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ))]
async fn unpause(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(queue): JsonPath<String>,
) -> Result<Json<PauseAnswer>, ApiError> {
    let answer = set_paused(&ctx, queue, false).await?;
    tracing::info!(
        queue = answer.queue,
        changed = answer.changed,
        "queue unpaused through the admin API"
    );
    Ok(answer)
}

/// Pauses or unpauses a queue (the admin API's and the dashboard's action).
pub(super) async fn set_paused(
    ctx: &AppContext,
    queue: String,
    paused: bool,
) -> Result<Json<PauseAnswer>, ApiError> {
    check_queue(&queue)?;
    let admin = ctx.jobs.admin();
    let changed = if paused {
        admin.pause_queue(&queue).await?
    } else {
        admin.unpause_queue(&queue).await?
    };
    Ok(Json(PauseAnswer {
        queue,
        paused,
        changed,
    }))
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

#[utoipa::path(get, path = "/api/jobs/{id}", tag = "admin",
    summary = "One job",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the job id")),
    responses(
        (status = 200, description = "the job: status, attempts, timestamps, arguments and its latest result or error", body = JobDetail),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn show(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<JobDetail>, ApiError> {
    check_id(&id)?;
    match ctx.jobs.admin().job_detail(&id).await? {
        Some(d) => Ok(Json(d)),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FailedQuery {
    /// The queue (default `default`).
    queue: Option<String>,
    /// Jobs per page, 1-500 (default 50).
    #[param(maximum = 500)]
    limit: Option<usize>,
    /// Where the page starts: 0, or the `next_cursor` of the page before.
    cursor: Option<usize>,
}

/// A page of a queue's failed jobs.
#[derive(Serialize, ToSchema)]
pub(super) struct FailedPage {
    queue: String,
    jobs: Vec<JobDetail>,
    /// The cursor of the next page; absent on the last.
    next_cursor: Option<usize>,
}

#[utoipa::path(get, path = "/api/jobs/failed", tag = "admin",
    summary = "Failed jobs of a queue, oldest first, with cursor paging",
    security(("bearer" = [])),
    params(FailedQuery),
    responses(
        (status = 200, description = "jobs and next_cursor", body = FailedPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ))]
async fn failed(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonQuery(q): JsonQuery<FailedQuery>,
) -> Result<Json<FailedPage>, ApiError> {
    let queue = q.queue.unwrap_or_else(|| "default".into());
    check_queue(&queue)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let cursor = q.cursor.unwrap_or(0);
    let jobs = ctx.jobs.admin().failed_jobs(&queue, cursor, limit).await?;
    let next = (jobs.len() == limit).then_some(cursor.saturating_add(limit));
    Ok(Json(FailedPage {
        queue,
        jobs,
        next_cursor: next,
    }))
}

#[utoipa::path(post, path = "/api/jobs/failed/{id}/requeue", tag = "admin",
    summary = "Requeue one failed job",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the job id")),
    responses(
        (status = 200, description = "requeued", body = Requeued),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, description = "the job is not failed (not_failed)", body = ErrorBody),
        (status = 503, response = Unavailable),
    ))]
async fn requeue(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<Requeued>, ApiError> {
    requeue_one(&ctx, &id).await
}

/// A failed job put back on its queue.
#[derive(Serialize, ToSchema)]
pub(super) struct Requeued {
    /// The job's id.
    requeued: String,
    queue: String,
}

/// Puts one failed job back on its queue (the admin API's and the dashboard's action).
pub(super) async fn requeue_one(ctx: &AppContext, id: &str) -> Result<Json<Requeued>, ApiError> {
    check_id(id)?;
    let Some(job) = ctx.jobs.fetch_job(id).await? else {
        return Err(ApiError::not_found(format!("no job {id}")));
    };
    match ctx.jobs.admin().requeue_failed(&job.origin, id).await? {
        Requeue::Requeued => Ok(Json(Requeued {
            requeued: id.to_owned(),
            queue: job.origin,
        })),
        Requeue::NotFailed => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            format!("job {id} is {}, not in the failed registry", job.status),
        )),
        Requeue::Missing => Err(ApiError::not_found(format!("job {id} disappeared"))),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct QueueQuery {
    /// One queue; absent: every worker queue.
    queue: Option<String>,
}

/// How many failed jobs went back, from which queues.
#[derive(Serialize, ToSchema)]
pub(super) struct RequeuedAll {
    requeued: u64,
    queues: Vec<String>,
}

#[utoipa::path(post, path = "/api/jobs/failed/requeue-all", tag = "admin",
    summary = "Requeue every failed job of a queue (or of every worker queue)",
    security(("bearer" = [])),
    params(QueueQuery),
    responses(
        (status = 200, description = "how many were requeued", body = RequeuedAll),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ))]
async fn requeue_all(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonQuery(q): JsonQuery<QueueQuery>,
) -> Result<Json<RequeuedAll>, ApiError> {
    let queues = match q.queue {
        Some(queue) => {
            check_queue(&queue)?;
            vec![queue]
        }
        None => ctx.settings.worker.queues.clone(),
    };
    let mut n = 0;
    for queue in &queues {
        n += ctx.jobs.admin().requeue_all_failed(queue).await?;
    }
    Ok(Json(RequeuedAll {
        requeued: n,
        queues,
    }))
}

/// What a cancel did; asking again answers `already_canceled`.
#[derive(Serialize, ToSchema)]
pub(super) struct CancelAnswer {
    id: String,
    /// `canceled` (it will never start), `already_canceled`, or `already_ended` (see `status`).
    result: &'static str,
    /// The job's status before the cancel.
    status: String,
}

#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "admin",
    summary = "Cancel a job that has not started, as RQ's job.cancel() does (idempotent)",
    description = "A queued, scheduled or deferred job leaves its queue or registry for rq:canceled:<queue> with status canceled, and never starts (also when a worker's wake-up already holds its id). Its hash stays. Dependents stay deferred.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the job id")),
    responses(
        (status = 200, description = "canceled, already canceled, or already ended", body = CancelAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, description = "the job is running (running): a cancel cannot end it", body = ErrorBody),
        (status = 503, response = Unavailable),
    ))]
async fn cancel(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<CancelAnswer>, ApiError> {
    cancel_one(&ctx, id).await
}

/// Cancels a job that has not started (the admin API's and the dashboard's action).
pub(super) async fn cancel_one(
    ctx: &AppContext,
    id: String,
) -> Result<Json<CancelAnswer>, ApiError> {
    check_id(&id)?;
    let (result, status) = match ctx.jobs.admin().cancel_job(&id).await? {
        Canceled::Canceled(was) => ("canceled", was),
        Canceled::AlreadyCanceled => ("already_canceled", "canceled".to_owned()),
        Canceled::AlreadyEnded(status) => ("already_ended", status),
        Canceled::Running => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "running",
                format!("job {id} is running; a cancel cannot end it"),
            ));
        }
        Canceled::Missing => return Err(ApiError::not_found(format!("no job {id}"))),
    };
    Ok(Json(CancelAnswer { id, result, status }))
}

/// What a stop request did.
#[derive(Serialize, ToSchema)]
pub(super) struct StopAnswer {
    id: String,
    /// `stopping`: the worker running it was told (it ends `stopped`, never retried);
    /// `not_running`: nothing to stop (see `status`; a waiting job is canceled instead).
    result: &'static str,
    status: String,
    /// Workers that got the command; 0 when none listens on the channel of the worker the job
    /// names (it died: recovery handles the job).
    #[serde(skip_serializing_if = "Option::is_none")]
    listening: Option<u64>,
}

#[utoipa::path(post, path = "/api/jobs/{id}/stop", tag = "admin",
    summary = "Stop a running job, as RQ's send_stop_job_command does",
    description = "Publishes RQ's stop-job command on the channel of the worker the job hash names (prosaas's and Python RQ's workers obey it). The job ends stopped in the failed registry with RQ's message and is not retried. Asking again while it stops sends the command again.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the job id")),
    responses(
        (status = 200, description = "stopping, or not running", body = StopAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn stop(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<StopAnswer>, ApiError> {
    stop_one(&ctx, id).await
}

/// Asks the worker running a job to stop it (the admin API's and the dashboard's action).
pub(super) async fn stop_one(ctx: &AppContext, id: String) -> Result<Json<StopAnswer>, ApiError> {
    check_id(&id)?;
    let answer = match ctx.jobs.admin().stop_job(&id).await? {
        Stop::Sent { listening } => StopAnswer {
            id,
            result: "stopping",
            status: "started".into(),
            listening: Some(listening),
        },
        Stop::NotRunning(status) => StopAnswer {
            id,
            result: "not_running",
            status,
            listening: None,
        },
        Stop::Missing => return Err(ApiError::not_found(format!("no job {id}"))),
    };
    Ok(Json(answer))
}

#[utoipa::path(delete, path = "/api/jobs/{id}", tag = "admin",
    summary = "Delete a job that is not running",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the job id")),
    responses(
        (status = 200, description = "deleted", body = DeletedJob),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, description = "the job is running (running)", body = ErrorBody),
        (status = 503, response = Unavailable),
    ))]
async fn delete(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<DeletedJob>, ApiError> {
    delete_one(&ctx, &id).await
}

/// A job deleted with its result and registry entries.
#[derive(Serialize, ToSchema)]
pub(super) struct DeletedJob {
    /// The job's id.
    deleted: String,
}

/// Deletes a job that is not running (the admin API's and the dashboard's action).
pub(super) async fn delete_one(ctx: &AppContext, id: &str) -> Result<Json<DeletedJob>, ApiError> {
    check_id(id)?;
    match ctx.jobs.admin().delete_job(id).await? {
        Deleted::Deleted => Ok(Json(DeletedJob {
            deleted: id.to_owned(),
        })),
        Deleted::Missing => Err(ApiError::not_found(format!("no job {id}"))),
        Deleted::Running => Err(ApiError::new(
            StatusCode::CONFLICT,
            "running",
            format!("job {id} is running; it cannot be deleted under its worker"),
        )),
    }
}
