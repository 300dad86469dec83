//! RQ 3.0's webhooks (`enqueue(..., webhooks=[Webhook(url, 'finished'), ...])`): once a job's
//! outcome is recorded, each webhook registered for it (`finished`, or a final `failed`) is
//! requested, a GET or a POST of RQ's JSON payload, under its timeout. As in RQ, a webhook that
//! fails is logged and changes nothing, and it is sent before the worker's slot is free again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::jobs::{ClaimedJob, Outcome, Webhook, parse_rq_timestamp};

/// The longest a webhook may take, whatever its own timeout says: the job's slot is held meanwhile.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The status a webhook is sent for after `outcome`, and the error text of a failure; `None`
/// for outcomes RQ sends none for (retries, stops, requeues).
pub(super) fn status_of(outcome: &Outcome) -> Option<(&'static str, Option<&str>)> {
    match outcome {
        Outcome::Finished { .. } | Outcome::Repeat { .. } => Some(("finished", None)),
        Outcome::Failed { error, .. } => Some(("failed", Some(error))),
        _ => None,
    }
}

/// Sends `job`'s webhooks for `status`, one after another.
pub(super) async fn send(
    client: &reqwest::Client,
    job: &ClaimedJob,
    id: &str,
    status: &str,
    exc: Option<&str>,
    ended_at: f64,
) {
    for hook in job.webhooks.iter().filter(|h| h.job_status == status) {
        if let Err(e) = send_one(client, hook, payload(job, id, status, exc, ended_at)).await {
            tracing::warn!(job_id = %id, url = %hook.url.escape_debug(), error = %e, "RQ webhook not delivered");
        }
    }
}

async fn send_one(client: &reqwest::Client, hook: &Webhook, payload: Value) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&hook.url)?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "only http and https URLs are sent"
    );
    let timeout = Duration::from_secs(hook.timeout.max(1)).min(MAX_TIMEOUT);
    let mut request = match hook.method.as_str() {
        "POST" => client.post(url).json(&payload),
        _ => client.get(url),
    }
    .timeout(timeout);
    for (name, value) in hook.headers.iter().flatten() {
        request = request.header(name, value);
    }
    // RQ's urlopen raises on a 4xx or 5xx answer, which it logs as a failed send.
    request.send().await?.error_for_status()?;
    Ok(())
}

/// RQ's `Webhook.get_payload`.
fn payload(job: &ClaimedJob, id: &str, status: &str, exc: Option<&str>, ended_at: f64) -> Value {
    let iso =
        |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
    let enqueued_at = job
        .enqueued_at
        .as_deref()
        .and_then(parse_rq_timestamp)
        .map(iso);
    let ended_at = chrono::DateTime::from_timestamp_micros((ended_at * 1e6) as i64).map(iso);
    let mut body = json!({
        "job_id": id,
        "func_name": job.call.as_ref().map(|c| c.job_type.as_str()).unwrap_or_default(),
        "status": status,
        "enqueued_at": enqueued_at,
        "ended_at": ended_at,
    });
    if status == "failed" {
        body["exc_info"] = json!(exc);
    }
    body
}
