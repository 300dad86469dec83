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
use serde_json::{Value, json};

use super::ApiError;
use super::auth::{TwilioSigned, TwilioStream};
use super::extract::RawBody;
use super::ingress::twilio_form;
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

pub(crate) fn snapshot(ctx: &AppContext) -> Value {
    json!(ctx.calls.snapshot())
}
