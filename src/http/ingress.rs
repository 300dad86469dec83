//! Ingress: the WhatsApp bridge and Twilio webhooks, the push API and the generic enqueue API.
//! Each request is validated whole before anything is enqueued, and enqueueing (with de-dupe)
//! is the only work done in the request.

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::auth::{Bearer, InternalSecret, TwilioSigned};
use super::extract::{JsonBody, RawBody};
use super::{ApiError, internal_error};
use crate::context::AppContext;
use crate::handlers::push;
use crate::jobs::{Enqueued, JobError, JobOptions, NewJob};
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
        metrics::counter!(m::JOBS_ENQUEUED, "source" => source, "job_type" => m::job_type_label(job_type))
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
    _auth: InternalSecret,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let messages = whatsapp::parse(&body).map_err(invalid)?;
    let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    let queue = &ctx.settings.api.ingress_queues.whatsapp;
    let events = messages
        .into_iter()
        .map(|mut m| {
            m.job.queue.clone_from(queue);
            (m.job, m.dedupe_key)
        })
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
            // Escaped: a client's id must not be able to break or forge a text log line.
            tracing::info!("Skipped duplicate webhook for msg_id={}", id.escape_debug());
        }
        jobs.push(json!({"message_id": id, "job_id": r.job_id(), "duplicate": r.is_duplicate()}));
    }
    Ok(Json(json!({
        "enqueued": results.len() - duplicates,
        "duplicates": duplicates,
        "jobs": jobs,
    })))
}

/// A verified Twilio request's parameters: the form's, or a JSON body's top-level scalars, after
/// checking the signature over the public URL.
pub(super) fn twilio_form(
    ctx: &AppContext,
    uri: &OriginalUri,
    signed: &TwilioSigned,
    body: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    let api = &ctx.settings.api;
    let path = uri.0.path_and_query().map_or("/", |p| p.as_str());
    let url = twilio::public_url(&api.public_base_url, path);
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "X-Twilio-Signature does not match",
        )
    };
    let token = &api.twilio_auth_token;
    if !signed.json {
        let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let what = twilio::Signed::Form(&params);
        return if twilio::verify_request(token, &url, what, &signed.signature, signed.algorithm) {
            Ok(params)
        } else {
            Err(forbidden())
        };
    }
    let what = twilio::Signed::Body(body);
    if !twilio::verify_request(token, &url, what, &signed.signature, signed.algorithm) {
        return Err(forbidden());
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(invalid("the JSON body must be an object"));
    };
    Ok(fields
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
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
    signed: TwilioSigned,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let params = twilio_form(&ctx, &uri, &signed, &body)?;
    let call_sid = param(&params, "CallSid")?;
    let status = param(&params, "CallStatus")?.to_ascii_lowercase();
    let mut args = Map::new();
    args.insert("call_sid".into(), call_sid.into());
    args.insert("event_type".into(), status.clone().into());
    args.insert("params".into(), Value::Object(as_object(&params)));
    let job = NewJob::new(
        ctx.settings.api.ingress_queues.twilio.clone(),
        "twilio_callback",
        args,
    );
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
    signed: TwilioSigned,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let params = twilio_form(&ctx, &uri, &signed, &body)?;
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
    let job = NewJob::new(
        ctx.settings.api.ingress_queues.twilio.clone(),
        "recording_job",
        args,
    );
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
    let mut job = NewJob::new(
        ctx.settings.api.ingress_queues.push.clone(),
        "push_send_job",
        body,
    );
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
    let allowed = ctx.settings.enqueue_queues();
    if !allowed.contains(&queue.as_str()) {
        return Err(invalid(format!(
            "queue {queue:?} is not one of the queues this API serves ({}); see api.queues",
            allowed.join(", ")
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
        // An explicit id that is waiting or running must not be pushed again: it would run
        // twice at once.
        None if job.options.job_id.is_some() => match ctx.jobs.enqueue_unique(job).await {
            Ok(Ok(id)) => Ok(Enqueued::New(id)),
            Ok(Err(status)) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("a job with this job_id is already {status}"),
                ));
            }
            Err(e) => Err(e),
        },
        None => ctx.jobs.enqueue(job).await.map(Enqueued::New),
    }
    .map_err(job_error)?;
    count("enqueue_api", &job_type, &r);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": r.job_id(), "duplicate": r.is_duplicate()})),
    ))
}
