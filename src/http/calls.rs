//! The calls role's endpoints: Twilio's voice webhook (answers TwiML that connects the call to
//! our media stream) and the Media Streams WebSocket, one task per call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::ApiError;
use super::auth::TwilioSigned;
use super::extract::RawBody;
use super::ingress::{invalid, twilio_form};
use crate::backoff::Backoff;
use crate::calls_stream::registry::CallSlot;
use crate::calls_stream::session::{Recording, Session, Step};
use crate::context::AppContext;
use crate::jobs::NewJob;
use crate::metrics as m;
use crate::webhooks::twilio;

pub const STREAM_PATH: &str = "/ws/twilio/media";

pub fn routes() -> Router<AppContext> {
    Router::new()
        .route("/twilio/voice", post(voice))
        .route("/ws/twilio/media", get(media_stream))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// TwiML connecting the call to our stream; the business id (from the webhook URL's query) and
/// the call's parameters travel as `<Parameter>`s and come back in the stream's `start`.
async fn voice(
    State(ctx): State<AppContext>,
    uri: OriginalUri,
    signed: TwilioSigned,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let params = twilio_form(&ctx, &uri, &signed, &body)?;
    let call_sid = twilio::call_sid(&params).map_err(invalid)?;
    let business_id = uri
        .0
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "business_id"))
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let base = &ctx.settings.api.public_base_url;
    let ws_base = base
        .strip_prefix("https://")
        .map(|h| format!("wss://{h}"))
        .or_else(|| base.strip_prefix("http://").map(|h| format!("ws://{h}")))
        .ok_or_else(|| invalid("PUBLIC_BASE_URL must be http(s)"))?;
    let stream_url = format!("{}{STREAM_PATH}", ws_base.trim_end_matches('/'));
    let mut parameters = vec![
        ("business_id", business_id),
        ("call_sid", call_sid.to_owned()),
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

async fn media_stream(State(ctx): State<AppContext>, ws: WebSocketUpgrade) -> Response {
    let slot = match ctx.calls.admit() {
        Ok(slot) => slot,
        Err(why) => {
            tracing::warn!("refused a media stream: {why}");
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", why).into_response();
        }
    };
    let calls = ctx.calls.clone();
    ws.on_upgrade(move |socket| calls.tracker.track_future(run_call(socket, ctx, slot)))
}

// Long on purpose: one select loop over a call's socket, whose exits name why the call ended.
async fn run_call(socket: WebSocket, ctx: AppContext, _slot: CallSlot) {
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    // One writer owns the sink: the greeting and the closing frame both go through it.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut session = Session::new(&ctx.settings.recordings.dir);
    let mut greeting: Option<tokio::task::JoinHandle<()>> = None;
    let idle = Duration::from_millis(ctx.settings.calls.idle_timeout_ms);
    let ended = loop {
        let next = tokio::select! {
            () = ctx.calls.end_all.cancelled() => break "shutdown",
            next = tokio::time::timeout(idle, stream.next()) => next,
        };
        let text = match next {
            Err(_) => break "idle timeout",
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => break "socket closed",
            Ok(Some(Err(_))) => break "socket error",
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
        };
        let started = Instant::now();
        let step = session.handle(&text);
        metrics::histogram!(m::CALL_FRAME_SECONDS).record(started.elapsed().as_secs_f64());
        if greeting.is_none()
            && let (Some(audio), Some(stream_sid)) = (&ctx.calls.greeting, session.stream_sid())
        {
            greeting = Some(tokio::spawn(play(
                audio.clone(),
                stream_sid.to_owned(),
                out_tx.clone(),
            )));
        }
        match step {
            Step::Continue => {}
            Step::Stop => break "stop",
            Step::Fail(why) => {
                tracing::warn!(
                    call_sid = session.call_sid().unwrap_or("-"),
                    "closing a media stream: {why}"
                );
                break "malformed stream";
            }
        }
    };
    if let Some(g) = greeting {
        g.abort();
    }
    let _ = out_tx.send(Message::Close(None)).await;
    drop(out_tx);
    let _ = writer.await;
    finish_call(session, &ctx, ended).await;
}

/// Finalizes the recording (syncing its files) and enqueues the post-call jobs.
async fn finish_call(session: Session, ctx: &AppContext, ended: &str) {
    let call_sid = session.call_sid().unwrap_or("-").to_owned();
    // Finishing syncs files to disk: keep it off the async threads.
    let finished = tokio::task::spawn_blocking(move || session.finish()).await;
    let recording = match finished {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => {
            tracing::info!(call_sid, ended, "media stream ended with nothing recorded");
            return;
        }
        Ok(Err(e)) => {
            tracing::error!(call_sid, error = %e, "cannot finalize the recording");
            return;
        }
        Err(e) => {
            tracing::error!(call_sid, error = %e, "finalizing the recording failed");
            return;
        }
    };
    tracing::info!(call_sid, ended, duration_secs = recording.duration_secs, files = ?recording.paths, "call recorded");
    enqueue_post_call(ctx, &recording).await;
}

/// `recording_job` (de-dupe `recording:{sid}`, the key Twilio's recording callback uses too) and
/// the call-ended `twilio_callback` (de-dupe `twilio:{sid}:completed`), in one round trip. Retried
/// while Redis is unreachable: the files are on disk, the jobs must not be lost.
async fn enqueue_post_call(ctx: &AppContext, r: &Recording) {
    let mut rec = Map::new();
    rec.insert("call_sid".into(), r.call_sid.clone().into());
    rec.insert("paths".into(), json!(r.paths));
    rec.insert("duration_secs".into(), json!(r.duration_secs));
    rec.insert("parameters".into(), Value::Object(r.parameters.clone()));
    rec.insert("source".into(), "media_stream".into());
    let mut ended = Map::new();
    ended.insert("call_sid".into(), r.call_sid.clone().into());
    ended.insert("event_type".into(), "completed".into());
    ended.insert(
        "params".into(),
        json!({"CallSid": r.call_sid, "CallStatus": "completed",
               "CallDuration": (r.duration_secs.round() as u64).to_string(), "Source": "media_stream"}),
    );
    let queue = &ctx.settings.api.ingress_queues.calls;
    let tenant = twilio::stream_tenant(&r.parameters);
    let job = |job_type: &str, args: &Map<String, Value>| {
        let mut job = NewJob::new(queue.clone(), job_type, args.clone());
        if let Some(t) = tenant {
            // A valid tenant on a fresh job's meta cannot conflict.
            let _ = job.set_tenant(t);
        }
        job
    };
    let events = || {
        vec![
            (
                job("recording_job", &rec),
                twilio::recording_key(&r.call_sid),
            ),
            (
                job("twilio_callback", &ended),
                twilio::status_key(&r.call_sid, "completed"),
            ),
        ]
    };
    let ttl = ctx.settings.api.twilio_dedupe_ttl_secs;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    for attempt in 1..=10 {
        match ctx.jobs.enqueue_many_with_dedupe(events(), ttl).await {
            Ok(results) => {
                for (what, res) in ["recording_job", "twilio_callback"].iter().zip(&results) {
                    if !res.is_duplicate() {
                        metrics::counter!(m::JOBS_ENQUEUED, "source" => "calls", "job_type" => *what).increment(1);
                    }
                    tracing::info!(call_sid = %r.call_sid, job_id = res.job_id(), duplicate = res.is_duplicate(), "{what} for the call");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(call_sid = %r.call_sid, attempt, error = %e, "cannot enqueue the post-call jobs yet");
                backoff.sleep().await;
            }
        }
    }
    tracing::error!(call_sid = %r.call_sid, files = ?r.paths, "post-call jobs not enqueued; the recording stays on disk");
}

/// Plays μ-law audio to the caller as outbound `media` frames, 20 ms each at real-time pace,
/// then a `mark` named `greeting-end` (Twilio echoes it back once played).
async fn play(audio: Arc<Vec<u8>>, stream_sid: String, out: tokio::sync::mpsc::Sender<Message>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for frame in audio.chunks(160) {
        tick.tick().await;
        let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, frame);
        let msg = json!({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}});
        if out
            .send(Message::Text(msg.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let mark = json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": "greeting-end"}});
    let _ = out.send(Message::Text(mark.to_string().into())).await;
}

pub(crate) fn snapshot(ctx: &AppContext) -> Value {
    json!(ctx.calls.snapshot())
}

/// For shutdown: stop admitting, let live calls run up to `grace`, then end them (each
/// finalizes and enqueues) and wait until all have.
pub async fn drain(calls: Arc<crate::calls_stream::registry::CallRegistry>, grace: Duration) {
    calls.close();
    let live = calls.snapshot().active;
    if live > 0 {
        tracing::info!(live, ?grace, "letting live calls finish");
    }
    if tokio::time::timeout(grace, calls.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            live = calls.snapshot().active,
            "grace period over; finalizing live calls"
        );
        calls.end_all.cancel();
        calls.tracker.wait().await;
    }
}
