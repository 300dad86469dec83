//! The dashboard's data (GET, a session) and actions (POST, a session and its CSRF token): what
//! each page polls, read through the store's views.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::{Action, OperatorSession};
use crate::context::AppContext;
use crate::http::ApiError;
use crate::http::extract::{JsonPath, JsonQuery};
use crate::jobs::is_valid_queue_name;

/// Failed jobs per page.
const FAILED_PAGE: usize = 25;
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
        .route("/dashboard/api/failed/requeue-all", post(requeue_all))
        .route("/dashboard/api/jobs/{id}", get(job))
        .route("/dashboard/api/jobs/{id}/requeue", post(requeue))
        .route("/dashboard/api/jobs/{id}/delete", post(delete))
        .route("/dashboard/api/scheduler", get(scheduler))
        .route("/dashboard/api/calls", get(calls))
}

/// Queues, health status and reasons (the jobs health report), and the last hour per minute.
async fn overview(State(ctx): State<AppContext>, _s: OperatorSession) -> (StatusCode, Json<Value>) {
    let (status, mut report) = crate::http::health::report(&ctx).await;
    match ctx.jobs.stats().series().await {
        Ok(series) => report["series"] = json!(series),
        Err(e) => tracing::warn!(error = %e, "dashboard: cannot read the series"),
    }
    (status, Json(report))
}

async fn workers(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
) -> Result<Json<Value>, ApiError> {
    let workers = ctx.jobs.stats().workers().await?;
    Ok(Json(json!({"workers": workers})))
}

#[derive(Deserialize)]
struct FailedQuery {
    queue: Option<String>,
    cursor: Option<usize>,
}

/// One page of a queue's failed jobs (oldest failure first), with the queues to choose from.
async fn failed(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
    JsonQuery(q): JsonQuery<FailedQuery>,
) -> Result<Json<Value>, ApiError> {
    let stats = ctx
        .jobs
        .stats()
        .queue_stats(&ctx.settings.worker.queues)
        .await?;
    let queue = match q.queue {
        Some(queue) if is_valid_queue_name(&queue) => queue,
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
    let rows: Vec<Value> = jobs.iter().map(|j| failed_row(j, now)).collect();
    let queues: Vec<Value> = stats
        .iter()
        .map(|(name, s)| json!({"name": name, "failed": s.failed}))
        .collect();
    let total = stats.get(&queue).map_or(0, |s| s.failed);
    Ok(Json(json!({
        "queue": queue,
        "queues": queues,
        "jobs": rows,
        "cursor": cursor,
        "page_size": FAILED_PAGE,
        "total": total,
        "next_cursor": (jobs.len() == FAILED_PAGE).then_some(cursor.saturating_add(FAILED_PAGE)),
    })))
}

/// A failed job as its row shows it: the last line of its error.
fn failed_row(j: &crate::jobs::JobDetail, now: chrono::DateTime<chrono::Utc>) -> Value {
    let error = match &j.result {
        Some(crate::jobs::JobResult::Failed { error }) => error.as_str(),
        _ => j.last_error.as_deref().unwrap_or(""),
    };
    json!({
        "id": j.info.id,
        "job_type": j.info.job_type,
        "tenant": j.info.tenant(),
        "attempts": j.attempts,
        "error": error.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(""),
        "ended_at": j.info.ended_at,
        "age_secs": j.info.ended_at.as_deref().and_then(|t| crate::jobs::age_secs(t, now)),
    })
}

/// One job in full, with large values cut so a page stays small.
async fn job(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<Value>, ApiError> {
    crate::http::admin::check_id(&id)?;
    let Some(detail) = ctx.jobs.admin().job_detail(&id).await? else {
        return Err(ApiError::not_found(format!("no job {id}")));
    };
    let tenant = detail.info.tenant().map(str::to_owned);
    let mut v = serde_json::to_value(&detail).map_err(|e| ApiError::internal(&e))?;
    for field in ["args", "kwargs", "meta"] {
        if let Some(x) = v.get_mut(field) {
            cut(x);
        }
    }
    if let Some(result) = v.get_mut("result") {
        if let Some(r) = result.get_mut("return_value") {
            cut(r);
        }
        if let Some(Value::String(e)) = result.get_mut("error") {
            *e = tail(e, MAX_TRACEBACK_CHARS);
        }
    }
    v["tenant"] = json!(tenant);
    v["recorded"] = json!(ctx.jobs.admin().recorded(&id).await?);
    Ok(Json(v))
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

/// The leader, its lock and each entry as of the last tick.
async fn scheduler(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
) -> Result<Json<Value>, ApiError> {
    let health = ctx.jobs.stats().scheduler_health().await?;
    let s = &ctx.settings.scheduler;
    Ok(Json(json!({
        "scheduler": health,
        "tick_interval_ms": s.tick_interval_ms.as_millis(),
        "lock_ttl_ms": s.lock_ttl_ms.as_millis(),
    })))
}

/// Live calls of every calls process, and the busiest tenants of each fair queue.
async fn calls(
    State(ctx): State<AppContext>,
    _s: OperatorSession,
) -> Result<Json<Value>, ApiError> {
    let processes = ctx.jobs.call_status().live_calls().await?;
    let stats = ctx
        .jobs
        .stats()
        .queue_stats(&ctx.settings.worker.queues)
        .await?;
    let tenants: Vec<Value> = stats
        .iter()
        .filter_map(|(q, s)| Some(json!({"queue": q, "tenants": s.tenants.as_ref()?})))
        .collect();
    Ok(Json(
        json!({"processes": processes, "fair_queues": tenants}),
    ))
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
) -> Result<Json<Value>, ApiError> {
    let result = crate::http::admin::requeue_one(&ctx, &id).await;
    audit(&a, "requeue", &id, &result);
    result
}

async fn delete(
    State(ctx): State<AppContext>,
    a: Action,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<Value>, ApiError> {
    let result = crate::http::admin::delete_one(&ctx, &id).await;
    audit(&a, "delete", &id, &result);
    result
}

#[derive(Deserialize)]
struct QueueQuery {
    queue: Option<String>,
}

async fn requeue_all(
    State(ctx): State<AppContext>,
    a: Action,
    JsonQuery(q): JsonQuery<QueueQuery>,
) -> Result<Json<Value>, ApiError> {
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
        .map(|n| Json(json!({"requeued": n, "queue": queue})));
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
}
