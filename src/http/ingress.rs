//! Ingress: the WhatsApp bridge and Twilio webhooks, the push API and the generic enqueue API.
//! Each request is validated whole before anything is enqueued, and enqueueing (with de-dupe)
//! is the only work done in the request.

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::ApiError;
use super::auth::{Bearer, InternalSecret, TwilioSigned};
use super::error::{BadRequest, ErrorBody, Unauthorized, Unavailable};
use super::extract::{JsonBody, RawBody};
use crate::context::AppContext;
use crate::jobs::{Enqueued, JobOptions, NewJob};
use crate::metrics as m;
use crate::webhooks::{Event, push, twilio, whatsapp};

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
    let r = ctx.jobs.enqueue_with_dedupe(job, key, ttl).await?;
    count(source, &job_type, &r);
    Ok(r)
}

/// Events written per round trip: a large batch goes to Redis in bounded pieces, each well
/// inside the Redis response timeout, rather than as one pipeline of thousands of scripts.
const ENQUEUE_BATCH: usize = 100;

/// The Baileys bridge's webhook (parsed by `webhooks::whatsapp`; this type only documents it).
#[derive(ToSchema)]
#[allow(dead_code)]
struct WhatsAppWebhook {
    /// The tenant: a non-empty string of at most 64 characters, or a positive integer.
    #[schema(rename = "tenantId", value_type = Value)]
    tenant_id: (),
    payload: WhatsAppPayload,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct WhatsAppPayload {
    /// Each message as Baileys delivers it; `key.id` is its de-dupe id.
    #[schema(value_type = Vec<Object>)]
    messages: (),
}

/// What became of a webhook's messages.
#[derive(Serialize, ToSchema)]
struct WhatsAppAccepted {
    /// Messages enqueued now.
    enqueued: usize,
    /// Messages already seen (within `api.webhook_dedupe_ttl_secs`).
    duplicates: usize,
    /// One entry per message, in the order received.
    jobs: Vec<MessageJob>,
}

#[derive(Serialize, ToSchema)]
struct MessageJob {
    message_id: String,
    job_id: String,
    duplicate: bool,
}

#[utoipa::path(post, path = "/webhook/whatsapp/incoming", tag = "ingress",
    summary = "Baileys bridge webhook: one webhook_process_job per message, de-duplicated by message id",
    security(("internalSecret" = [])),
    request_body = WhatsAppWebhook,
    responses(
        (status = 200, description = "accepted", body = WhatsAppAccepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, description = "more messages than api.max_messages_per_request (too_many_messages)", body = ErrorBody),
        (status = 503, response = Unavailable),
    ))]
async fn whatsapp_incoming(
    State(ctx): State<AppContext>,
    _auth: InternalSecret,
    JsonBody(body, _room): JsonBody<Value>,
) -> Result<Json<WhatsAppAccepted>, ApiError> {
    let max = ctx.settings.api.max_messages_per_request;
    let carried = whatsapp::message_count(&body);
    if carried > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_messages",
            format!(
                "the request carries {carried} messages; api.max_messages_per_request is {max}"
            ),
        ));
    }
    let messages = whatsapp::parse(body).map_err(ApiError::invalid)?;
    let queue = &ctx.settings.api.ingress_queues.whatsapp;
    let ttl = ctx.settings.api.webhook_dedupe_ttl_secs;
    let mut jobs = Vec::with_capacity(messages.len());
    let mut duplicates = 0;
    let mut messages = messages.into_iter().peekable();
    // If a piece fails (Redis went away, the request's deadline passed), the answer is 503 and
    // the pieces written stand: the provider's retry finds them de-duplicated and writes the rest.
    while messages.peek().is_some() {
        let mut ids = Vec::with_capacity(ENQUEUE_BATCH);
        let events = messages
            .by_ref()
            .take(ENQUEUE_BATCH)
            .map(|mut m| {
                m.job.queue.clone_from(queue);
                ids.push(m.message_id);
                (m.job, m.dedupe_key)
            })
            .collect();
        let results = ctx.jobs.enqueue_many_with_dedupe(events, ttl).await?;
        for (id, r) in ids.into_iter().zip(&results) {
            count("whatsapp", "webhook_process_job", r);
            if r.is_duplicate() {
                duplicates += 1;
                // Escaped: a client's id must not be able to break or forge a text log line.
                tracing::info!("Skipped duplicate webhook for msg_id={}", id.escape_debug());
            }
            jobs.push(MessageJob {
                message_id: id,
                job_id: r.job_id().to_owned(),
                duplicate: r.is_duplicate(),
            });
        }
    }
    Ok(Json(WhatsAppAccepted {
        enqueued: jobs.len() - duplicates,
        duplicates,
        jobs,
    }))
}

/// A verified Twilio request's parameters (`webhooks::twilio::verified_params`), or the 403 or
/// 400 that refuses it.
pub(super) fn twilio_form(
    ctx: &AppContext,
    uri: &OriginalUri,
    signed: &TwilioSigned,
    body: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    let api = &ctx.settings.api;
    let path = uri.0.path_and_query().map_or("/", |p| p.as_str());
    let url = twilio::public_url(&api.public_base_url, path);
    let signature = twilio::Signature {
        header: &signed.signature,
        algorithm: signed.algorithm,
    };
    twilio::verified_params(&api.twilio_auth_token, &url, signature, signed.json, body).map_err(
        |refused| match refused {
            twilio::Refused::Signature => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "X-Twilio-Signature does not match",
            ),
            twilio::Refused::Body(why) => ApiError::invalid(why),
        },
    )
}

/// A Twilio callback's form (Twilio's names; the handler reads what its job needs).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct TwilioForm {
    #[schema(rename = "CallSid")]
    call_sid: String,
    #[schema(rename = "CallStatus")]
    call_status: Option<String>,
    #[schema(rename = "AccountSid")]
    account_sid: Option<String>,
}

/// What Twilio expects back from a status callback: an empty 204, quickly.
fn accepted() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[utoipa::path(post, path = "/webhook/twilio/status", tag = "ingress",
    summary = "Twilio call status callback: twilio_callback, de-duplicated by call sid and status",
    security(("twilioSignature" = [])),
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 204, description = "accepted"),
        (status = 400, response = BadRequest),
        (status = 403, description = "bad signature (forbidden)", body = ErrorBody),
        (status = 503, response = Unavailable),
    ))]
async fn twilio_status(
    State(ctx): State<AppContext>,
    uri: OriginalUri,
    signed: TwilioSigned,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    twilio_callback(&ctx, &uri, &signed, &body, twilio::status_event).await
}

#[utoipa::path(post, path = "/webhook/twilio/recording", tag = "ingress",
    summary = "Twilio recording callback: recording_job, de-duplicated by call sid",
    security(("twilioSignature" = [])),
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 204, description = "accepted"),
        (status = 400, response = BadRequest),
        (status = 403, description = "bad signature (forbidden)", body = ErrorBody),
        (status = 503, response = Unavailable),
    ))]
async fn twilio_recording(
    State(ctx): State<AppContext>,
    uri: OriginalUri,
    signed: TwilioSigned,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    twilio_callback(&ctx, &uri, &signed, &body, twilio::recording_event).await
}

/// How a callback's form becomes its event (`twilio::status_event`, `twilio::recording_event`).
type EventOf = fn(&[(String, String)], &str) -> Result<Event, String>;

/// A verified Twilio callback turned into its job by `event` (with the callback URL's tenant)
/// and admitted under its de-dupe key.
async fn twilio_callback(
    ctx: &AppContext,
    uri: &OriginalUri,
    signed: &TwilioSigned,
    body: &[u8],
    event: EventOf,
) -> Result<Response, ApiError> {
    let params = twilio_form(ctx, uri, signed, body)?;
    let mut e =
        event(&params, &ctx.settings.api.ingress_queues.twilio).map_err(ApiError::invalid)?;
    twilio::tenant_from_query(&mut e, uri.0.query()).map_err(ApiError::invalid)?;
    let ttl = ctx.settings.api.twilio_dedupe_ttl_secs;
    admit(ctx, "twilio", e.job, &e.dedupe_key, ttl).await?;
    Ok(accepted())
}

/// A push notification (parsed by `webhooks::push`; this type only documents it).
#[derive(ToSchema)]
#[allow(dead_code)]
struct PushNotification {
    /// Its de-dupe id: a non-empty string or a positive integer.
    #[schema(value_type = Value)]
    notification_id: (),
    #[schema(value_type = Option<Value>)]
    business_id: (),
    /// One of `user_id` or `token` is required.
    #[schema(value_type = Option<Value>)]
    user_id: (),
    #[schema(value_type = Option<String>)]
    token: (),
    title: String,
    body: String,
    #[schema(value_type = Option<Object>)]
    data: (),
}

/// A job admitted under its de-dupe key or id.
#[derive(Serialize, ToSchema)]
#[schema(as = Enqueued)]
pub(super) struct EnqueuedBody {
    job_id: String,
    /// `true` when the event was seen before: nothing new was enqueued.
    duplicate: bool,
}

impl From<&Enqueued> for EnqueuedBody {
    fn from(r: &Enqueued) -> Self {
        Self {
            job_id: r.job_id().to_owned(),
            duplicate: r.is_duplicate(),
        }
    }
}

#[utoipa::path(post, path = "/api/notifications/push", tag = "ingress",
    summary = "Queue a push notification (push_send_job), de-duplicated by notification id",
    security(("bearer" = [])),
    request_body = PushNotification,
    responses(
        (status = 202, description = "queued", body = EnqueuedBody),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ))]
async fn push_notification(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonBody(body, _room): JsonBody<Map<String, Value>>,
) -> Result<(StatusCode, Json<EnqueuedBody>), ApiError> {
    let e = push::event(body, &ctx.settings.api.ingress_queues.push).map_err(ApiError::invalid)?;
    let ttl = ctx.settings.api.push_dedupe_ttl_secs;
    let r = admit(&ctx, "push_api", e.job, &e.dedupe_key, ttl).await?;
    Ok((StatusCode::ACCEPTED, Json(EnqueuedBody::from(&r))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EnqueueRequest {
    /// Routed by the job type when absent (an external type's own queue, else `default`).
    queue: Option<String>,
    job_type: String,
    /// The handler's keyword arguments.
    #[serde(default)]
    args: Map<String, Value>,
    /// Admits the job once per key within `dedupe_ttl` seconds.
    dedupe_key: Option<String>,
    #[serde(default = "default_dedupe_ttl")]
    #[schema(default = 600)]
    dedupe_ttl: u64,
    /// The tenant the job belongs to: 1-128 characters of `[A-Za-z0-9_.:@-]`, stored as
    /// `meta.tenant`.
    tenant: Option<String>,
    #[serde(default)]
    options: JobOptions,
}

fn default_dedupe_ttl() -> u64 {
    600
}

#[utoipa::path(post, path = "/api/jobs/enqueue", tag = "jobs",
    summary = "Enqueue any job, optionally de-duplicated",
    security(("bearer" = [])),
    request_body = EnqueueRequest,
    responses(
        (status = 202, description = "queued", body = EnqueuedBody),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, description = "job_id names a job that is queued, scheduled, started or deferred (the error names its state)", body = ErrorBody),
        (status = 413, description = "the body declares more than http.body_limit_bytes", body = ErrorBody),
        (status = 503, response = Unavailable),
    ))]
async fn enqueue(
    State(ctx): State<AppContext>,
    _auth: Bearer,
    JsonBody(req, _room): JsonBody<EnqueueRequest>,
) -> Result<(StatusCode, Json<EnqueuedBody>), ApiError> {
    let queue = ctx
        .settings
        .route(&req.job_type, req.queue.as_deref())
        .map_err(ApiError::invalid)?;
    let allowed = ctx.settings.enqueue_queues();
    if !allowed.contains(&queue.as_str()) {
        return Err(ApiError::invalid(format!(
            "queue {queue:?} is not one of the queues this API serves ({}); see api.queues",
            allowed.join(", ")
        )));
    }
    let job_type = req.job_type.clone();
    let mut job = NewJob::new(queue, req.job_type, req.args).with_options(req.options);
    if let Some(tenant) = &req.tenant {
        job.set_tenant(tenant).map_err(ApiError::from)?;
    }
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
    }?;
    count("enqueue_api", &job_type, &r);
    Ok((StatusCode::ACCEPTED, Json(EnqueuedBody::from(&r))))
}
