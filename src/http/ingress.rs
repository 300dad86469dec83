//! Ingress: the WhatsApp bridge and Twilio webhooks, the push API and the generic enqueue API.
//! Each request is validated whole before anything is enqueued, and enqueueing (with de-dupe)
//! is the only work done in the request.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::auth::{self, Bearer};
use super::extract::JsonBody;
use super::{ApiError, internal_error};
use crate::app::AppContext;
use crate::handlers::push;
use crate::jobs::{Enqueued, JobError, JobOptions, NewJob, is_valid_queue_name};
use crate::metrics as m;
use crate::webhooks::{twilio, whatsapp};

pub(super) fn routes() -> Router<AppContext> {
    Router::new()
        .route("/webhook/whatsapp/incoming", post(whatsapp_incoming))
        .route("/webhook/twilio/status", post(twilio_status))
        .route("/webhook/twilio/recording", post(twilio_recording))
        .route("/api/notifications/push", post(push_notification))
        .route("/api/jobs/enqueue", post(enqueue))
}

fn count(source: &'static str, job_type: &str, result: &Enqueued) {
    if result.is_duplicate() {
        metrics::counter!(m::JOBS_DEDUPLICATED, "source" => source).increment(1);
    } else {
        metrics::counter!(m::JOBS_ENQUEUED, "source" => source, "job_type" => job_type.to_owned())
            .increment(1);
    }
}

/// Enqueues one provider event under its de-dupe key, and counts it as new or duplicate.
async fn admit(
    ctx: &AppContext,
    source: &'static str,
    job: NewJob,
    key: &str,
    ttl: u64,
) -> Result<Enqueued, ApiError> {
    let job_type = job.job_type.clone();
    let r = ctx
        .jobs
        .enqueue_with_dedupe(job, key, ttl)
        .await
        .map_err(job_error)?;
    count(source, &job_type, &r);
    Ok(r)
}

pub(super) fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
}

fn job_error(e: JobError) -> ApiError {
    match e {
        JobError::Invalid(msg) => invalid(msg),
        other => internal_error(&other),
    }
}

async fn whatsapp_incoming(
    State(ctx): State<AppContext>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    auth::internal_secret(&headers, &ctx.settings.api.internal_secret)?;
    let messages = whatsapp::parse(&body).map_err(invalid)?;
    let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    let events = messages
        .into_iter()
        .map(|m| (m.job, m.dedupe_key))
        .collect();
    let results = ctx
        .jobs
        .enqueue_many_with_dedupe(events, ctx.settings.api.webhook_dedupe_ttl_secs)
        .await
        .map_err(job_error)?;
    let mut jobs = Vec::with_capacity(results.len());
    let mut duplicates = 0;
    for (id, r) in ids.iter().zip(&results) {
        count("whatsapp", "webhook_process_job", r);
        if r.is_duplicate() {
            duplicates += 1;
            tracing::info!("Skipped duplicate webhook for msg_id={id}");
        }
        jobs.push(json!({"message_id": id, "job_id": r.job_id(), "duplicate": r.is_duplicate()}));
    }
    Ok(Json(json!({
        "enqueued": results.len() - duplicates,
        "duplicates": duplicates,
        "jobs": jobs,
    })))
}

/// A verified Twilio form: its parameters, after checking the signature over the public URL.
pub(super) fn twilio_form(
    ctx: &AppContext,
    uri: &OriginalUri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), "body_too_large", r.body_text()))?;
    let api = &ctx.settings.api;
    auth::twilio_configured(&api.twilio_auth_token, &api.public_base_url)?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Twilio callbacks must be application/x-www-form-urlencoded",
        ));
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    let path = uri.0.path_and_query().map_or("/", |p| p.as_str());
    let url = twilio::public_url(&api.public_base_url, path);
    match signature {
        Some(sig) if twilio::verify(&api.twilio_auth_token, &url, &params, sig) => Ok(params),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "X-Twilio-Signature does not match",
        )),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "X-Twilio-Signature is missing",
        )),
    }
}

pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, ApiError> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .ok_or_else(|| invalid(format!("form field {name} is missing or malformed")))
}

pub(super) fn as_object(params: &[(String, String)]) -> Map<String, Value> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// What Twilio expects back from a status callback: an empty 204, quickly.
fn accepted() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

async fn twilio_status(
    State(ctx): State<AppContext>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = twilio_form(&ctx, &uri, &headers, body)?;
    let call_sid = param(&params, "CallSid")?;
    let status = param(&params, "CallStatus")?.to_ascii_lowercase();
    let mut args = Map::new();
    args.insert("call_sid".into(), call_sid.into());
    args.insert("event_type".into(), status.clone().into());
    args.insert("params".into(), Value::Object(as_object(&params)));
    let job = NewJob::new("default", "twilio_callback", args);
    let key = format!("twilio:{call_sid}:{status}");
    admit(
        &ctx,
        "twilio",
        job,
        &key,
        ctx.settings.api.twilio_dedupe_ttl_secs,
    )
    .await?;
    Ok(accepted())
}

async fn twilio_recording(
    State(ctx): State<AppContext>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = twilio_form(&ctx, &uri, &headers, body)?;
    let call_sid = param(&params, "CallSid")?;
    let url = params
        .iter()
        .find(|(k, _)| k == "RecordingUrl")
        .map(|(_, v)| v.clone())
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or_else(|| invalid("form field RecordingUrl is missing or not an HTTP URL"))?;
    let mut args = Map::new();
    args.insert("call_sid".into(), call_sid.into());
    args.insert("recording_url".into(), url.into());
    args.insert("params".into(), Value::Object(as_object(&params)));
    let job = NewJob::new("default", "recording_job", args);
    let key = format!("recording:{call_sid}");
    admit(
        &ctx,
        "twilio",
        job,
        &key,
        ctx.settings.api.twilio_dedupe_ttl_secs,
    )
    .await?;
    Ok(accepted())
}

async fn push_notification(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    push::validate(&body).map_err(invalid)?;
    let id = match &body["notification_id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut job = NewJob::new("default", "push_send_job", body);
    job.options.meta.insert("source".into(), "push_api".into());
    let key = format!("push:notification:{id}");
    let r = admit(
        &ctx,
        "push_api",
        job,
        &key,
        ctx.settings.api.push_dedupe_ttl_secs,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": r.job_id(), "duplicate": r.is_duplicate()})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueRequest {
    queue: Option<String>,
    job_type: String,
    #[serde(default)]
    args: Map<String, Value>,
    dedupe_key: Option<String>,
    #[serde(default = "default_dedupe_ttl")]
    dedupe_ttl: u64,
    #[serde(default)]
    options: JobOptions,
}

fn default_dedupe_ttl() -> u64 {
    600
}

async fn enqueue(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonBody(req): JsonBody<EnqueueRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let queue = ctx
        .settings
        .route(&req.job_type, req.queue.as_deref())
        .map_err(invalid)?;
    if !is_valid_queue_name(&queue) {
        return Err(invalid(format!(
            "queue {queue:?} must be 1-128 characters of [A-Za-z0-9_.-]"
        )));
    }
    let job_type = req.job_type.clone();
    let job = NewJob::new(queue, req.job_type, req.args).with_options(req.options);
    let r = match req.dedupe_key {
        Some(key) => {
            ctx.jobs
                .enqueue_with_dedupe(job, &key, req.dedupe_ttl)
                .await
        }
        None => ctx.jobs.enqueue(job).await.map(Enqueued::New),
    }
    .map_err(job_error)?;
    count("enqueue_api", &job_type, &r);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": r.job_id(), "duplicate": r.is_duplicate()})),
    ))
}
