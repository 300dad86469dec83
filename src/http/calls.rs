//! The calls role's endpoints: Twilio's voice webhook (answers TwiML that connects the call to
//! our media stream) and the Media Streams WebSocket's upgrade, checked here (Twilio's
//! signature, the disk, a call slot) before the socket is handed to `calls::live`, one task per
//! call.

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::ApiError;
use super::auth::{TwilioSigned, TwilioStream};
use super::error::{BadRequest, ErrorBody};
use super::extract::RawBody;
use super::ingress::{TwilioForm, twilio_form};
use crate::calls_stream::session::Gate;
use crate::context::AppContext;
use crate::metrics as m;
use crate::webhooks::twilio;
use crate::webhooks::twilio::stream::{self, STREAM_PATH, StreamTokens};

pub fn routes() -> Router<AppContext> {
    Router::new()
        .route("/twilio/voice", post(voice))
        // stream::STREAM_PATH (the API document's test reads routes as literals).
        .route("/ws/twilio/media", get(media_stream))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// TwiML connecting the call to our stream; the business id (from the webhook URL's query), the
/// call's parameters and the stream token that lets the stream start (for this call only) travel
/// as `<Parameter>`s and come back in the stream's `start`.
#[utoipa::path(post, path = "/twilio/voice", tag = "calls",
    summary = "Twilio voice webhook (calls role): answers TwiML that connects the call to the media stream; ?business_id= is passed on as a stream parameter",
    security(("twilioSignature" = [])),
    params(("business_id" = Option<String>, Query, description = "passed on to the stream's start")),
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "TwiML", content_type = "text/xml", body = String),
        (status = 400, response = BadRequest),
        (status = 403, description = "bad signature (forbidden)", body = ErrorBody),
    ))]
async fn voice(
    State(ctx): State<AppContext>,
    uri: OriginalUri,
    signed: TwilioSigned,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let params = twilio_form(&ctx, &uri, &signed, &body)?;
    let call_sid = twilio::call_sid(&params).map_err(ApiError::invalid)?;
    let business_id = uri
        .0
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "business_id"))
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let api = &ctx.settings.api;
    let stream_url = stream::stream_url(&api.public_base_url, STREAM_PATH)
        .ok_or_else(|| ApiError::invalid("PUBLIC_BASE_URL must be http(s)"))?;
    let expires = ctx.jobs.unix_now() as u64 + stream::TOKEN_TTL_SECS;
    let token = StreamTokens::new(&api.twilio_auth_token).issue(call_sid, &business_id, expires);
    let mut parameters = vec![
        ("business_id", business_id),
        ("call_sid", call_sid.to_owned()),
        (stream::TOKEN_PARAMETER, token),
    ];
    for name in ["From", "To", "Direction"] {
        if let Some((_, v)) = params.iter().find(|(k, _)| k == name) {
            parameters.push((name, v.clone()));
        }
    }
    let mut twiml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect><Stream url=\"{}\">",
        xml_escape(&stream_url)
    );
    for (name, value) in parameters {
        twiml.push_str(&format!(
            "<Parameter name=\"{}\" value=\"{}\"/>",
            xml_escape(name),
            xml_escape(&value)
        ));
    }
    twiml.push_str("</Stream></Connect></Response>");
    Ok(([(header::CONTENT_TYPE, "text/xml")], twiml).into_response())
}

/// A stream's reads are Twilio's ~300-byte messages, so a small read buffer (tungstenite's
/// default is 128 KiB per socket) keeps a live call's memory small.
const READ_BUFFER: usize = 4096;
/// Outbound (the greeting) is written as it is sent; a peer that stops reading holds at most this.
const WRITE_BUFFER_MAX: usize = 64 * 1024;

/// The upgrade: Twilio's signature (checked by [`TwilioStream`] before anything else), then
/// room on the recordings disk and a call slot, then a socket whose messages are capped at
/// `calls.max_message_bytes`.
#[utoipa::path(get, path = "/ws/twilio/media", tag = "calls",
    summary = "Twilio Media Streams WebSocket (calls role): connected, start, media, mark, dtmf, stop; records the call and enqueues recording_job on stop, disconnect, idle timeout or calls.max_call_secs",
    description = "The upgrade must carry Twilio's X-Twilio-Signature over the stream URL (wss:// of PUBLIC_BASE_URL and the path, no parameters). The start must carry the stream_token parameter /twilio/voice put in the TwiML for its callSid, or the socket is closed with nothing written; a call already streaming (on any calls process) or already finalized is refused the same way. Messages over calls.max_message_bytes close the socket; media stamped more than calls.max_timestamp_lead_ms ahead of the stream's elapsed time is dropped.",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the stream URL")),
    responses(
        (status = 101, description = "switching to WebSocket"),
        (status = 400, description = "not a WebSocket upgrade (not_websocket)", body = ErrorBody),
        (status = 403, description = "the upgrade is not signed by Twilio (forbidden)", body = ErrorBody),
        (status = 503, description = "at the maximum of concurrent calls or shutting down (busy), the recordings disk under recordings.min_free_bytes (disk_low), or Twilio's secrets not configured (not_configured); with Retry-After", body = ErrorBody),
    ))]
async fn media_stream(
    State(ctx): State<AppContext>,
    signed: TwilioStream,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejected) => {
            return ApiError::new(rejected.status(), "not_websocket", rejected.body_text())
                .into_response();
        }
    };
    let refuse = |reason: &'static str, why: String| {
        metrics::counter!(m::CALL_STREAMS_REFUSED, "reason" => reason).increment(1);
        tracing::warn!(reason, "refused a media stream: {why}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason, why).into_response()
    };
    let disk = &ctx.calls.disk;
    if disk.is_low() {
        return refuse(
            "disk_low",
            format!(
                "the recordings disk has {} bytes free, under recordings.min_free_bytes ({})",
                disk.free_bytes(),
                disk.floor()
            ),
        );
    }
    let slot = match ctx.calls.admit() {
        Ok(slot) => slot,
        Err(why) => return refuse("busy", why.to_owned()),
    };
    let gate = match signed {
        TwilioStream::Verified => Gate::Tokens {
            tokens: StreamTokens::new(&ctx.settings.api.twilio_auth_token),
            required: ctx.settings.calls.require_stream_token,
        },
        TwilioStream::Unverified => Gate::Open,
    };
    let limit = ctx.settings.calls.max_message_bytes;
    let calls = ctx.calls.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(WRITE_BUFFER_MAX)
        .on_upgrade(move |socket| {
            calls
                .tracker
                .track_future(crate::calls::live::run(socket, ctx, slot, gate))
        })
}
