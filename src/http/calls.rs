//! The calls role's endpoints: Twilio's voice webhook (answers TwiML that connects the call to
//! our media stream) and the Media Streams WebSocket, one task per call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::ApiError;
use super::auth::{TwilioSigned, TwilioStream};
use super::extract::RawBody;
use super::ingress::twilio_form;
use crate::backoff::Backoff;
use crate::calls_stream::registry::CallSlot;
use crate::calls_stream::session::{Gate, Recording, Session, Step, StreamRules};
use crate::context::AppContext;
use crate::jobs::{NewJob, StreamClaim};
use crate::metrics as m;
use crate::webhooks::twilio;
use crate::webhooks::twilio::stream::{self, StreamTokens};

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
                .track_future(run_call(socket, ctx, slot, gate))
        })
}

/// How long a stream may go without a verified `start` (Twilio sends it right after
/// `connected`), or `calls.idle_timeout_ms` if shorter.
const START_WITHIN: Duration = Duration::from_secs(10);
/// How long a stream's claim on its call lasts unless renewed (every third of it): a calls
/// process that dies holds its calls no longer than this.
const CALL_LEASE: Duration = Duration::from_secs(60);
/// A claim that Redis does not answer in time is taken on this process's word alone (the call
/// goes on; its files are created exclusively, so nothing is overwritten).
const CLAIM_WITHIN: Duration = Duration::from_secs(2);

// Long on purpose: one select loop over a call's socket, whose exits name why the call ended.
async fn run_call(socket: WebSocket, ctx: AppContext, mut slot: CallSlot, gate: Gate) {
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
    let settings = &ctx.settings.calls;
    let rules = StreamRules {
        gate,
        max_timestamp_lead: Duration::from_millis(settings.max_timestamp_lead_ms),
    };
    let mut session = Session::new(
        &ctx.settings.recordings.dir,
        rules,
        ctx.jobs.unix_now() as u64,
    );
    // The token of this stream's claim on its call (taken once its start is verified): host and
    // pid first, so an operator reading the key sees who holds the call.
    let owner = format!(
        "{}:{}:{}",
        crate::worker::hostname(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let mut claimed = false;
    let mut renew =
        tokio::time::interval_at(tokio::time::Instant::now() + CALL_LEASE / 3, CALL_LEASE / 3);
    let longest = tokio::time::sleep(Duration::from_secs(settings.max_call_secs));
    tokio::pin!(longest);
    // Twilio starts a stream as soon as it opens it; a socket that holds a call slot without a
    // verified start (a replayed upgrade signature sending `connected` now and then) goes.
    let idle = Duration::from_millis(settings.idle_timeout_ms);
    let start_by = tokio::time::sleep(START_WITHIN.min(idle));
    tokio::pin!(start_by);
    let mut greeting: Option<tokio::task::JoinHandle<()>> = None;
    let mut disk_low = ctx.calls.disk.watch();
    let ended = loop {
        let next = tokio::select! {
            () = ctx.calls.end_all.cancelled() => break Ended::Shutdown,
            () = turns_low(&mut disk_low) => break Ended::DiskLow,
            () = &mut longest => break Ended::Longest,
            () = &mut start_by, if !claimed => {
                metrics::counter!(m::CALL_STREAMS_REFUSED, "reason" => "no_start").increment(1);
                break Ended::NoStart;
            }
            _ = renew.tick(), if claimed => {
                renew_claim(&ctx, session.call_sid().unwrap_or_default(), &owner).await;
                continue;
            }
            next = tokio::time::timeout(idle, stream.next()) => next,
        };
        let text = match next {
            Err(_) => break Ended::Idle,
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => break Ended::Closed,
            Ok(Some(Err(e))) => {
                tracing::warn!(call_sid = session.call_sid().unwrap_or("-"), error = %e, "media stream socket error");
                break Ended::SocketError;
            }
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
        };
        let started = Instant::now();
        let step = session.handle(&text, started);
        metrics::histogram!(m::CALL_FRAME_SECONDS).record(started.elapsed().as_secs_f64());
        match step {
            Step::Continue => {}
            Step::Dropped(reason) => {
                metrics::counter!(m::CALL_FRAMES_DROPPED, "reason" => reason).increment(1);
            }
            Step::Started => {
                let sid = session.call_sid().unwrap_or_default().to_owned();
                if let Err(reason) = claim_call(&ctx, &mut slot, &sid, &owner).await {
                    metrics::counter!(m::CALL_STREAMS_REFUSED, "reason" => reason).increment(1);
                    tracing::warn!(call_sid = sid, reason, "refused a second stream for a call");
                    break Ended::Refused;
                }
                claimed = true;
                if let (Some(audio), Some(stream_sid)) = (&ctx.calls.greeting, session.stream_sid())
                {
                    greeting = Some(tokio::spawn(play(
                        audio.clone(),
                        stream_sid.to_owned(),
                        out_tx.clone(),
                    )));
                }
            }
            Step::Stop => break Ended::Stop,
            Step::Refused(reason) => {
                metrics::counter!(m::CALL_STREAMS_REFUSED, "reason" => reason).increment(1);
                tracing::warn!(reason, "refused a media stream's start");
                break Ended::Refused;
            }
            Step::Fail(why) => {
                tracing::warn!(
                    call_sid = session.call_sid().unwrap_or("-"),
                    "closing a media stream: {why}"
                );
                break Ended::Malformed;
            }
        }
    };
    if let Some(g) = greeting {
        g.abort();
    }
    // A close code the peer can read (Twilio logs it): a bare close frame reads as 1005.
    let close = CloseFrame {
        code: ended.close_code(),
        reason: ended.text().into(),
    };
    let _ = out_tx.send(Message::Close(Some(close))).await;
    drop(out_tx);
    let _ = writer.await;
    let claim = claimed.then_some(owner.as_str());
    finish_call(session, &ctx, ended.text(), claim).await;
}

/// Why a call's stream ended: logged, and told to the peer as a WebSocket close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Stop,
    Closed,
    Idle,
    Longest,
    Shutdown,
    DiskLow,
    NoStart,
    Refused,
    Malformed,
    SocketError,
}

impl Ended {
    fn text(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Closed => "socket closed",
            Self::Idle => "idle timeout",
            Self::Longest => "longest call (calls.max_call_secs)",
            Self::Shutdown => "shutdown",
            Self::DiskLow => "recordings disk low",
            Self::NoStart => "no verified start in time",
            Self::Refused => "refused",
            Self::Malformed => "malformed stream",
            Self::SocketError => "socket error",
        }
    }

    fn close_code(self) -> u16 {
        use axum::extract::ws::close_code as code;
        match self {
            Self::Stop | Self::Closed | Self::Idle | Self::Longest => code::NORMAL,
            // The server is going away for this call: shutting down, or out of disk.
            Self::Shutdown | Self::DiskLow => code::AWAY,
            Self::NoStart | Self::Refused => code::POLICY,
            Self::Malformed => code::INVALID,
            Self::SocketError => code::ERROR,
        }
    }
}

/// Resolves once the recordings disk is low (at once if it is).
async fn turns_low(disk: &mut tokio::sync::watch::Receiver<bool>) {
    if disk.wait_for(|low| *low).await.is_err() {
        // The registry (and its disk) outlive every call; should it not, never end a call for it.
        std::future::pending::<()>().await;
    }
}

/// Binds a verified start's call to this stream: on this process, then across calls processes
/// through Redis. `Err(reason)` when another stream has the call, or had it and finalized it.
async fn claim_call(
    ctx: &AppContext,
    slot: &mut CallSlot,
    call_sid: &str,
    owner: &str,
) -> Result<(), &'static str> {
    if !slot.bind(call_sid) {
        return Err("live");
    }
    let claim = ctx.jobs.call_status();
    match tokio::time::timeout(
        CLAIM_WITHIN,
        claim.claim_stream(call_sid, owner, CALL_LEASE),
    )
    .await
    {
        Ok(Ok(StreamClaim::Owned)) => Ok(()),
        Ok(Ok(StreamClaim::Live | StreamClaim::Lost)) => Err("live"),
        Ok(Ok(StreamClaim::Finalized)) => Err("finalized"),
        Ok(Err(e)) => {
            tracing::warn!(call_sid, error = %e, "cannot claim the call in Redis; recording it on this process's word");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(
                call_sid,
                "Redis did not answer the call's claim in time; recording it on this process's word"
            );
            Ok(())
        }
    }
}

async fn renew_claim(ctx: &AppContext, call_sid: &str, owner: &str) {
    let claim = ctx.jobs.call_status();
    match tokio::time::timeout(
        CLAIM_WITHIN,
        claim.renew_stream(call_sid, owner, CALL_LEASE),
    )
    .await
    {
        Ok(Ok(StreamClaim::Owned)) => {}
        Ok(Ok(_)) => tracing::warn!(
            call_sid,
            "another stream took this call's claim while it lapsed; this one records on"
        ),
        Ok(Err(e)) => tracing::debug!(call_sid, error = %e, "cannot renew the call's claim"),
        Err(_) => tracing::debug!(call_sid, "renewing the call's claim timed out"),
    }
}

/// Finalizes the recording (syncing its files), enqueues the post-call jobs, then marks the call
/// finalized (or, with nothing recorded, releases it) when this stream holds its claim.
async fn finish_call(session: Session, ctx: &AppContext, ended: &str, claim: Option<&str>) {
    let call_sid = session.call_sid().unwrap_or("-").to_owned();
    // Finishing syncs files to disk: keep it off the async threads.
    let finished = tokio::task::spawn_blocking(move || session.finish()).await;
    let recording = match finished {
        Ok(Ok(Some(r))) => Some(r),
        Ok(Ok(None)) => {
            tracing::info!(call_sid, ended, "media stream ended with nothing recorded");
            None
        }
        Ok(Err(e)) => {
            tracing::error!(call_sid, error = %e, "cannot finalize the recording");
            None
        }
        Err(e) => {
            tracing::error!(call_sid, error = %e, "finalizing the recording failed");
            None
        }
    };
    if let Some(recording) = &recording {
        tracing::info!(call_sid, ended, duration_secs = recording.duration_secs, files = ?recording.paths, "call recorded");
        enqueue_post_call(ctx, recording).await;
    }
    if let Some(owner) = claim {
        let keep = Duration::from_secs(ctx.settings.api.twilio_dedupe_ttl_secs);
        let status = ctx.jobs.call_status();
        let end = status.end_stream(&call_sid, owner, recording.is_some(), keep);
        if !matches!(tokio::time::timeout(CLAIM_WITHIN, end).await, Ok(Ok(_))) {
            tracing::debug!(call_sid, "cannot end the call's claim; its lease runs out");
        }
    }
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
