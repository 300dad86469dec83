//! The dashboard's data (GET, a session) and actions (POST, a session and its CSRF token): what
//! each page polls, read through the store's views.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::session::{Action, OperatorSession};
use crate::context::AppContext;
use crate::http::ApiError;
use crate::http::admin::{CancelAnswer, DeletedJob, PauseAnswer, Requeued, StopAnswer};
use crate::http::extract::{JsonBody, JsonPath, JsonQuery};
use crate::http::health::Health;
use crate::jobs::{
    JobDetail, JobFilter, JobResult, Listed, ListedJob, ListedState, Minute, Recorded,
    SchedulerHealth, TenantStats, WorkerRow, is_valid_queue_name, is_valid_tenant,
};

/// Failed jobs per page.
const FAILED_PAGE: usize = 25;
/// Jobs per page of a state's list.
const LIST_PAGE: usize = 25;
/// The longest queue name a read accepts.
const MAX_READ_QUEUE_NAME: usize = 512;
/// Strings longer than this are cut in a job's arguments, meta and result.
const MAX_SHOWN_CHARS: usize = 2_000;
/// Arrays and objects longer than this are cut likewise.
const MAX_SHOWN_ITEMS: usize = 100;
/// A traceback is shown up to this many characters (its end, where the error is).
const MAX_TRACEBACK_CHARS: usize = 20_000;

pub(super) fn routes() -> Router<AppContext> {
    Router::new()
        .route("/dashboard/api/overview", get(overview))
        .route("/dashboard/api/workers", get(workers))
        .route("/dashboard/api/failed", get(failed))
        .route("/dashboard/api/queues/{queue}/{state}", get(listing))
        .route("/dashboard/api/find", get(find))
        .route("/dashboard/api/failed/requeue-all", post(requeue_all))
        .route("/dashboard/api/failed/delete-all", post(delete_all))
        .route("/dashboard/api/jobs/bulk", post(bulk))
        .route("/dashboard/api/jobs/{id}/cancel", post(cancel))
        .route("/dashboard/api/jobs/{id}/stop", post(stop))
        .route("/dashboard/api/queues/{queue}/pause", post(pause))
        .route("/dashboard/api/queues/{queue}/unpause", post(unpause))
        .route("/dashboard/api/jobs/{id}", get(job))
        .route("/dashboard/api/jobs/{id}/download", get(download))
        .route("/dashboard/api/jobs/{id}/requeue", post(requeue))
        .route("/dashboard/api/jobs/{id}/delete", post(delete))
        .route("/dashboard/api/scheduler", get(scheduler))
        .route("/dashboard/api/calls", get(calls))
}

/// The jobs health report and the last hour per minute.
#[derive(Serialize)]
struct Overview {
    #[serde(flatten)]
    health: Health,
    /// Absent when it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<Vec<Minute>>,
}

/// Queues, health status and reasons (the jobs health report), and the last hour per minute.
async fn overview(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
) -> (StatusCode, Json<Overview>) {
    let (status, health) = crate::http::health::report(&ctx).await;
    let series = match ctx.jobs.stats().series().await {
        Ok(series) => Some(series),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard: cannot read the series");
            None
        }
    };
    (status, Json(Overview { health, series }))
}

#[derive(Serialize)]
struct Workers {
    workers: Vec<WorkerRow>,
}

async fn workers(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
) -> Result<Json<Workers>, ApiError> {
    let workers = ctx.jobs.stats().workers().await?;
    Ok(Json(Workers { workers }))
}

#[derive(Deserialize)]
struct FailedQuery {
    queue: Option<String>,
    cursor: Option<usize>,
}

/// A page of the failed list.
#[derive(Serialize)]
struct FailedPage {
    queue: String,
    /// Every queue with its failed count, to choose from.
    queues: Vec<QueueFailures>,
    jobs: Vec<FailedRow>,
    cursor: usize,
    page_size: usize,
    /// Failed jobs of `queue` in all.
    total: u64,
    next_cursor: Option<usize>,
}

#[derive(Serialize)]
struct QueueFailures {
    name: String,
    failed: u64,
}

/// A failed job as its row shows it.
#[derive(Serialize)]
struct FailedRow {
    id: String,
    job_type: String,
    tenant: Option<String>,
    attempts: u32,
    /// Its error's first line ([`headline`]).
    error: String,
    ended_at: Option<String>,
    age_secs: Option<u64>,
}

/// A queue name good enough to read by: whatever Python RQ may have named a queue (prosaas's own
/// names are stricter, [`is_valid_queue_name`], for what it writes), bounded and printable. A
/// key built from it is only ever read.
fn is_readable_queue_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_READ_QUEUE_NAME && !name.chars().any(char::is_control)
}

#[derive(Deserialize)]
struct ListQuery {
    cursor: Option<usize>,
    /// A tenant's lane of a fair queue (queued only).
    lane: Option<String>,
    /// Filters: the job's type, its tenant, text in its error.
    #[serde(rename = "type")]
    job_type: Option<String>,
    tenant: Option<String>,
    error: Option<String>,
}

/// The most entries one filtered page looks at.
const FILTER_LOOK: usize = 1_000;
/// The longest filter text.
const MAX_FILTER_LEN: usize = 200;

/// A page of one state's list.
#[derive(Serialize)]
struct ListPage {
    queue: String,
    state: ListedState,
    lane: Option<String>,
    /// Entries in all (they may have moved on since).
    total: u64,
    cursor: usize,
    page_size: usize,
    /// With a filter: the entries looked at from `cursor` (at most [`FILTER_LOOK`]) and where
    /// the next look starts (`None` at the list's end).
    #[serde(skip_serializing_if = "Option::is_none")]
    looked: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<usize>,
    filtered: bool,
    newest_first: bool,
    /// No prosaas worker takes the queue's jobs until it is unpaused.
    paused: bool,
    jobs: Vec<ListRow>,
}

/// A job as a list row shows it.
#[derive(Default, Serialize)]
struct ListRow {
    id: String,
    /// Its hash is gone (deleted or expired) though the list still names it.
    gone: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    status: Option<String>,
    job_type: Option<String>,
    tenant: Option<String>,
    enqueued_at: Option<String>,
    started_at: Option<String>,
    ended_at: Option<String>,
    worker_name: Option<String>,
    attempts: u32,
    deferred_reason: Option<String>,
    /// Its error's first line ([`headline`]), for a failed job or one being retried.
    error: Option<String>,
}

fn list_row(id: String, score: Option<f64>, job: Option<JobDetail>) -> ListRow {
    let Some(j) = job else {
        return ListRow {
            id,
            gone: true,
            score,
            ..ListRow::default()
        };
    };
    let error = match &j.result {
        Some(JobResult::Failed { error }) if j.info.status == "failed" => Some(error.as_str()),
        _ => j.last_error.as_deref(),
    };
    ListRow {
        gone: false,
        score,
        error: error.map(|e| headline(e).to_owned()),
        tenant: j.info.tenant().map(str::to_owned),
        id,
        status: Some(j.info.status),
        job_type: Some(j.info.job_type),
        enqueued_at: j.info.enqueued_at,
        started_at: j.info.started_at,
        ended_at: j.info.ended_at,
        worker_name: j.info.worker_name,
        attempts: j.attempts,
        deferred_reason: j.deferred_reason,
    }
}

/// What a list request asks for, checked: its state, lane and filter.
fn list_request(
    queue: &str,
    state: &str,
    q: ListQuery,
) -> Result<(ListedState, Option<String>, JobFilter), ApiError> {
    if !is_readable_queue_name(queue) {
        return Err(ApiError::invalid(format!(
            "a queue name is 1-{MAX_READ_QUEUE_NAME} bytes without control characters"
        )));
    }
    let Some(state) = ListedState::parse(state) else {
        let names: Vec<&str> = ListedState::ALL.iter().map(|s| s.name()).collect();
        return Err(ApiError::invalid(format!(
            "state is one of {}",
            names.join(", ")
        )));
    };
    let given = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let lane = given(q.lane);
    if let Some(t) = &lane
        && (state != ListedState::Queued || !is_valid_tenant(t))
    {
        return Err(ApiError::invalid(
            "lane names a valid tenant's lane, for queued jobs only",
        ));
    }
    let filter = JobFilter {
        job_type: given(q.job_type),
        tenant: given(q.tenant),
        error: given(q.error),
    };
    if [&filter.job_type, &filter.tenant, &filter.error]
        .into_iter()
        .flatten()
        .any(|v| v.len() > MAX_FILTER_LEN)
    {
        return Err(ApiError::invalid(format!(
            "a filter is at most {MAX_FILTER_LEN} bytes"
        )));
    }
    Ok((state, lane, filter))
}

/// One page of a queue's jobs in one state: O(page) Redis work however long the list (a
/// filtered page looks at up to [`FILTER_LOOK`] entries and says how many).
async fn listing(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
    JsonPath((queue, state)): JsonPath<(String, String)>,
    JsonQuery(q): JsonQuery<ListQuery>,
) -> Result<Json<ListPage>, ApiError> {
    let cursor = q.cursor.unwrap_or(0);
    let (state, lane, filter) = list_request(&queue, &state, q)?;
    let admin = ctx.jobs.admin();
    let of = Listed {
        queue: &queue,
        state,
        lane: lane.as_deref(),
    };
    let (total, jobs, looked, next_cursor): (u64, Vec<ListedJob>, _, _) = if filter.is_empty() {
        let page = admin.list_jobs(&of, cursor, LIST_PAGE).await?;
        (page.total, page.jobs, None, None)
    } else {
        let page = admin
            .filter_jobs(&of, cursor, LIST_PAGE, &filter, FILTER_LOOK)
            .await?;
        (page.total, page.jobs, Some(page.looked), page.next_offset)
    };
    let paused = admin.is_paused(&queue).await?;
    Ok(Json(ListPage {
        queue,
        state,
        lane,
        total,
        cursor,
        page_size: LIST_PAGE,
        looked,
        next_cursor,
        filtered: !filter.is_empty(),
        newest_first: state.newest_first(),
        paused,
        jobs: jobs
            .into_iter()
            .map(|l| list_row(l.id, l.score, l.job))
            .collect(),
    }))
}

#[derive(Deserialize)]
struct FindQuery {
    prefix: Option<String>,
}

/// Ids found by prefix.
#[derive(Serialize)]
struct Found {
    prefix: String,
    #[serde(flatten)]
    matches: crate::jobs::IdMatches,
}

/// The most ids one search lists.
const FIND_LIMIT: usize = 50;
/// The most `SCAN` calls one search makes (of 1,000 keys each, as Redis counts them).
const FIND_CALLS: u64 = 100;

/// Jobs whose id starts with a prefix: a bounded walk of the keyspace that says how far it got.
async fn find(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
    JsonQuery(q): JsonQuery<FindQuery>,
) -> Result<Json<Found>, ApiError> {
    let Some(prefix) = q.prefix.filter(|p| crate::jobs::is_valid_job_id(p)) else {
        return Err(ApiError::invalid(
            "prefix is 1-128 characters of [A-Za-z0-9_-]",
        ));
    };
    let matches = ctx
        .jobs
        .admin()
        .find_ids(&prefix, FIND_LIMIT, FIND_CALLS)
        .await?;
    Ok(Json(Found { prefix, matches }))
}

/// One page of a queue's failed jobs (oldest failure first), with the queues to choose from.
async fn failed(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
    JsonQuery(q): JsonQuery<FailedQuery>,
) -> Result<Json<FailedPage>, ApiError> {
    let stats = ctx
        .jobs
        .stats()
        .queue_stats(&ctx.settings.worker.queues)
        .await?;
    let queue = match q.queue {
        Some(queue) if is_readable_queue_name(&queue) => queue,
        Some(_) => return Err(ApiError::invalid("queue is not a valid queue name")),
        // The first queue with failures, else the first configured one.
        None => stats
            .iter()
            .find(|(_, s)| s.failed > 0)
            .map(|(name, _)| name.clone())
            .or_else(|| ctx.settings.worker.queues.first().cloned())
            .unwrap_or_else(|| "default".into()),
    };
    let cursor = q.cursor.unwrap_or(0);
    let jobs = ctx
        .jobs
        .admin()
        .failed_jobs(&queue, cursor, FAILED_PAGE)
        .await?;
    let now = ctx.jobs.now();
    let rows: Vec<FailedRow> = jobs.iter().map(|j| failed_row(j, now)).collect();
    let queues: Vec<QueueFailures> = stats
        .iter()
        .map(|(name, s)| QueueFailures {
            name: name.clone(),
            failed: s.failed,
        })
        .collect();
    let total = stats.get(&queue).map_or(0, |s| s.failed);
    Ok(Json(FailedPage {
        queue,
        queues,
        jobs: rows,
        cursor,
        page_size: FAILED_PAGE,
        total,
        next_cursor: (jobs.len() == FAILED_PAGE).then_some(cursor.saturating_add(FAILED_PAGE)),
    }))
}

fn failed_row(j: &JobDetail, now: chrono::DateTime<chrono::Utc>) -> FailedRow {
    let error = match &j.result {
        Some(JobResult::Failed { error }) => error.as_str(),
        _ => j.last_error.as_deref().unwrap_or(""),
    };
    FailedRow {
        id: j.info.id.clone(),
        job_type: j.info.job_type.clone(),
        tenant: j.info.tenant().map(str::to_owned),
        attempts: j.attempts,
        error: headline(error).to_owned(),
        ended_at: j.info.ended_at.clone(),
        age_secs: j
            .info
            .ended_at
            .as_deref()
            .and_then(|t| crate::jobs::age_secs(t, now)),
    }
}

/// The line that names an error: in a Python traceback, the first line of the last exception
/// (after its frames, which are indented; a message may go on over more lines, as psycopg's
/// "could not connect" does); otherwise the first line that is not blank.
fn headline(error: &str) -> &str {
    let lines: Vec<&str> = error.lines().collect();
    let after_header = lines
        .iter()
        .rposition(|l| l.starts_with("Traceback (most recent call last)"))
        .map_or(0, |i| i + 1);
    lines[after_header..]
        .iter()
        .find(|l| !l.trim().is_empty() && !l.starts_with([' ', '\t']))
        .or_else(|| lines.iter().find(|l| !l.trim().is_empty()))
        .map_or("", |l| l.trim())
}

/// A job's page: the job in full with large values cut, its tenant and its recorded results.
#[derive(Serialize)]
struct JobPage {
    #[serde(flatten)]
    detail: JobDetail,
    tenant: Option<String>,
    recorded: Vec<Recorded>,
}

/// One job in full, with large values cut so a page stays small.
async fn job(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<JobPage>, ApiError> {
    let mut page = job_page(&ctx, &id).await?;
    let info = &mut page.detail.info;
    cut_vec(&mut info.args);
    cut_map(&mut info.kwargs);
    cut_map(&mut info.meta);
    match &mut page.detail.result {
        Some(JobResult::Finished {
            return_value: Some(r),
        }) => cut(r),
        Some(JobResult::Failed { error }) => *error = tail(error, MAX_TRACEBACK_CHARS),
        _ => {}
    }
    Ok(Json(page))
}

/// A job in full with its tenant and recorded outcomes, nothing cut; 404 for an unknown id.
async fn job_page(ctx: &AppContext, id: &str) -> Result<JobPage, ApiError> {
    crate::http::admin::check_id(id)?;
    let Some(detail) = ctx.jobs.admin().job_detail(id).await? else {
        return Err(ApiError::not_found(format!("no job {id}")));
    };
    Ok(JobPage {
        tenant: detail.info.tenant().map(str::to_owned),
        recorded: ctx.jobs.admin().recorded(id).await?,
        detail,
    })
}

/// The job in full, nothing cut (arguments, meta, result and traceback), as a JSON file to save.
async fn download(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
    JsonPath(id): JsonPath<String>,
) -> Result<Response, ApiError> {
    let mut r = Json(job_page(&ctx, &id).await?).into_response();
    // The id was checked: letters, digits, '-' and '_' only.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"job-{id}.json\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// [`cut`] for an array held as a `Vec`.
fn cut_vec(items: &mut Vec<Value>) {
    let mut v = Value::Array(std::mem::take(items));
    cut(&mut v);
    if let Value::Array(cut_items) = v {
        *items = cut_items;
    }
}

/// [`cut`] for an object held as a `Map`.
fn cut_map(map: &mut serde_json::Map<String, Value>) {
    let mut v = Value::Object(std::mem::take(map));
    cut(&mut v);
    if let Value::Object(m) = v {
        *map = m;
    }
}

/// Cuts long strings, arrays and objects in place, saying how much was left out.
fn cut(v: &mut Value) {
    match v {
        Value::String(s) if s.chars().count() > MAX_SHOWN_CHARS => {
            let more = s.chars().count() - MAX_SHOWN_CHARS;
            *s = format!(
                "{}… ({more} more characters)",
                s.chars().take(MAX_SHOWN_CHARS).collect::<String>()
            );
        }
        Value::Array(items) => {
            if items.len() > MAX_SHOWN_ITEMS {
                let more = items.len() - MAX_SHOWN_ITEMS;
                items.truncate(MAX_SHOWN_ITEMS);
                items.push(json!(format!("… ({more} more items)")));
            }
            items.iter_mut().for_each(cut);
        }
        Value::Object(map) => {
            if map.len() > MAX_SHOWN_ITEMS {
                let more = map.len() - MAX_SHOWN_ITEMS;
                let keep: Vec<String> = map.keys().take(MAX_SHOWN_ITEMS).cloned().collect();
                map.retain(|k, _| keep.contains(k));
                map.insert("…".into(), json!(format!("{more} more keys")));
            }
            map.values_mut().for_each(cut);
        }
        _ => {}
    }
}

/// The last `max` characters of `s` (a traceback ends with its error).
fn tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    format!(
        "… ({} characters before)\n{}",
        n - max,
        s.chars().skip(n - max).collect::<String>()
    )
}

#[derive(Serialize)]
struct SchedulerPage {
    scheduler: SchedulerHealth,
    tick_interval_ms: u64,
    lock_ttl_ms: u64,
}

/// The leader, its lock and each entry as of the last tick.
async fn scheduler(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
) -> Result<Json<SchedulerPage>, ApiError> {
    let health = ctx.jobs.stats().scheduler_health().await?;
    let s = &ctx.settings.scheduler;
    Ok(Json(SchedulerPage {
        scheduler: health,
        tick_interval_ms: s.tick_interval_ms.as_millis(),
        lock_ttl_ms: s.lock_ttl_ms.as_millis(),
    }))
}

#[derive(Serialize)]
struct CallsPage {
    /// Each calls process's last report.
    processes: Vec<Value>,
    fair_queues: Vec<FairQueueTenants>,
}

#[derive(Serialize)]
struct FairQueueTenants {
    queue: String,
    tenants: TenantStats,
}

/// Live calls of every calls process, and the busiest tenants of each fair queue.
async fn calls(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
) -> Result<Json<CallsPage>, ApiError> {
    let processes = ctx.jobs.call_status().live_calls().await?;
    let stats = ctx
        .jobs
        .stats()
        .queue_stats(&ctx.settings.worker.queues)
        .await?;
    let fair_queues = stats
        .into_iter()
        .filter_map(|(queue, s)| {
            Some(FairQueueTenants {
                queue,
                tenants: s.tenants?,
            })
        })
        .collect();
    Ok(Json(CallsPage {
        processes,
        fair_queues,
    }))
}

/// Every action is logged with the session that took it (its id's first 8 characters: enough to
/// tell operators' sessions apart, useless as a credential) and whether it was done.
fn audit<T>(a: &Action, action: &str, target: &str, result: &Result<T, ApiError>) {
    let Action(session) = a;
    let session = session.id.get(..8).unwrap_or_default();
    // Debug-formatted: the target comes from the request and must not forge a log line.
    tracing::info!(session, action, target = ?target, done = result.is_ok(), "dashboard action");
}

async fn requeue(
    State(ctx): State<AppContext>,
    a: Action,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<Requeued>, ApiError> {
    let result = crate::http::admin::requeue_one(&ctx, &id).await;
    audit(&a, "requeue", &id, &result);
    result
}

async fn delete(
    State(ctx): State<AppContext>,
    a: Action,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<DeletedJob>, ApiError> {
    let result = crate::http::admin::delete_one(&ctx, &id).await;
    audit(&a, "delete", &id, &result);
    result
}

async fn cancel(
    State(ctx): State<AppContext>,
    a: Action,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<CancelAnswer>, ApiError> {
    let result = crate::http::admin::cancel_one(&ctx, id.clone()).await;
    audit(&a, "cancel", &id, &result);
    result
}

async fn stop(
    State(ctx): State<AppContext>,
    a: Action,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<StopAnswer>, ApiError> {
    let result = crate::http::admin::stop_one(&ctx, id.clone()).await;
    audit(&a, "stop", &id, &result);
    result
}

async fn pause(
    State(ctx): State<AppContext>,
    a: Action,
    JsonPath(queue): JsonPath<String>,
) -> Result<Json<PauseAnswer>, ApiError> {
    let result = crate::http::admin::set_paused(&ctx, queue.clone(), true).await;
    audit(&a, "pause", &queue, &result);
    result
}

async fn unpause(
    State(ctx): State<AppContext>,
    a: Action,
    JsonPath(queue): JsonPath<String>,
) -> Result<Json<PauseAnswer>, ApiError> {
    let result = crate::http::admin::set_paused(&ctx, queue.clone(), false).await;
    audit(&a, "unpause", &queue, &result);
    result
}

/// The most jobs one bulk action names.
const MAX_BULK: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkRequest {
    /// `requeue` (failed jobs), `delete` (any not running) or `cancel` (any not started).
    action: String,
    ids: Vec<String>,
}

#[derive(Serialize)]
struct BulkAnswer {
    action: String,
    done: usize,
    results: Vec<BulkResult>,
}

/// One job's outcome in a bulk action: done, or why not (the error a single action would give).
#[derive(Serialize)]
struct BulkResult {
    id: String,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// Several selected jobs, one action: each job as its own action would do it (not all or
/// nothing: one running job does not hold back the rest), every one logged.
async fn bulk(
    State(ctx): State<AppContext>,
    a: Action,
    JsonBody(req, _room): JsonBody<BulkRequest>,
) -> Result<Json<BulkAnswer>, ApiError> {
    if !matches!(req.action.as_str(), "requeue" | "delete" | "cancel") {
        return Err(ApiError::invalid(
            "action is one of requeue, delete, cancel",
        ));
    }
    if req.ids.is_empty() || req.ids.len() > MAX_BULK {
        return Err(ApiError::invalid(format!("ids names 1 to {MAX_BULK} jobs")));
    }
    let mut results = Vec::with_capacity(req.ids.len());
    for id in req.ids {
        let outcome = match req.action.as_str() {
            "requeue" => crate::http::admin::requeue_one(&ctx, &id).await.map(drop),
            "delete" => crate::http::admin::delete_one(&ctx, &id).await.map(drop),
            _ => crate::http::admin::cancel_one(&ctx, id.clone())
                .await
                .map(drop),
        };
        audit(&a, &req.action, &id, &outcome);
        results.push(BulkResult {
            done: outcome.is_ok(),
            error: outcome
                .err()
                .map(|e| json!({"error": e.error, "detail": e.detail})),
            id,
        });
    }
    Ok(Json(BulkAnswer {
        done: results.iter().filter(|r| r.done).count(),
        action: req.action,
        results,
    }))
}

#[derive(Serialize)]
struct DeletedQueue {
    deleted: u64,
    queue: String,
}

/// Deletes every failed job of a queue (the dashboard asks first).
async fn delete_all(
    State(ctx): State<AppContext>,
    a: Action,
    JsonQuery(q): JsonQuery<QueueQuery>,
) -> Result<Json<DeletedQueue>, ApiError> {
    let Some(queue) = q.queue.filter(|q| is_readable_queue_name(q)) else {
        return Err(ApiError::invalid("queue is missing or not a queue name"));
    };
    let result = ctx
        .jobs
        .admin()
        .delete_all_failed(&queue)
        .await
        .map_err(ApiError::from)
        .map(|deleted| {
            Json(DeletedQueue {
                deleted,
                queue: queue.clone(),
            })
        });
    audit(&a, "delete all failed", &queue, &result);
    result
}

#[derive(Deserialize)]
struct QueueQuery {
    queue: Option<String>,
}

#[derive(Serialize)]
struct RequeuedQueue {
    requeued: u64,
    queue: String,
}

async fn requeue_all(
    State(ctx): State<AppContext>,
    a: Action,
    JsonQuery(q): JsonQuery<QueueQuery>,
) -> Result<Json<RequeuedQueue>, ApiError> {
    let Some(queue) = q.queue.filter(|q| is_valid_queue_name(q)) else {
        return Err(ApiError::invalid(
            "queue is missing or not a valid queue name",
        ));
    };
    let result = ctx
        .jobs
        .admin()
        .requeue_all_failed(&queue)
        .await
        .map_err(ApiError::from)
        .map(|requeued| {
            Json(RequeuedQueue {
                requeued,
                queue: queue.clone(),
            })
        });
    audit(&a, "requeue all", &queue, &result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_values_are_cut_and_say_so() {
        let mut v = json!({"text": "x".repeat(2_500), "list": (0..150).collect::<Vec<_>>()});
        cut(&mut v);
        let text = v["text"].as_str().unwrap();
        assert!(
            text.ends_with("… (500 more characters)"),
            "{}",
            &text[1990..]
        );
        assert_eq!(v["list"].as_array().unwrap().len(), 101);
        assert_eq!(v["list"][100], "… (50 more items)");
        assert_eq!(tail("abcdef", 3), "… (3 characters before)\ndef");
    }

    #[test]
    fn an_error_is_named_by_its_first_line() {
        let psycopg = "Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    \
                       connect()\npsycopg2.OperationalError: could not connect to server: \
                       Connection refused\n\tIs the server running on host \"db\" and accepting\n\
                       \tTCP/IP connections on port 5432?\n";
        assert_eq!(
            headline(psycopg),
            "psycopg2.OperationalError: could not connect to server: Connection refused"
        );
        let chained = "Traceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'x'\n\n\
                       During handling of the above exception, another exception occurred:\n\n\
                       Traceback (most recent call last):\n  File \"a.py\", line 2\n\
                       ValueError: bad order\n";
        assert_eq!(headline(chained), "ValueError: bad order");
        assert_eq!(
            headline("\nhandler failed: timeout\nCaused by: read"),
            "handler failed: timeout"
        );
        assert_eq!(headline("   only indented\n"), "only indented");
        assert_eq!(headline(""), "");
    }
}
