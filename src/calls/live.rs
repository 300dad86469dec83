//! One call's stream from its upgrade to its end: the messages read and handed to the session,
//! the call claimed once verified (on this process, then across calls processes through Redis,
//! a lease renewed while it lasts), every bound that ends it (no start in time, the longest
//! call, a low disk, idle, shutdown), and the close code the peer is told.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};

use super::claim;
use crate::calls_stream::registry::CallSlot;
use crate::calls_stream::session::{Gate, Session, Step, StreamRules};
use crate::context::AppContext;
use crate::metrics as m;

/// How long a stream may go without a verified `start` (Twilio sends it right after
/// `connected`), or `calls.idle_timeout_ms` if shorter.
const START_WITHIN: Duration = Duration::from_secs(10);
// Long on purpose: one select loop over a call's socket, whose exits name why the call ended.
pub async fn run(socket: WebSocket, ctx: AppContext, mut slot: CallSlot, gate: Gate) {
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
        max_timestamp_lead: settings.max_timestamp_lead_ms.get(),
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
        crate::identity::hostname(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let mut claimed = false;
    let mut renew = tokio::time::interval_at(
        tokio::time::Instant::now() + claim::RENEW_EVERY,
        claim::RENEW_EVERY,
    );
    let longest = tokio::time::sleep(Duration::from_secs(settings.max_call_secs));
    tokio::pin!(longest);
    // Twilio starts a stream as soon as it opens it; a socket that holds a call slot without a
    // verified start (a replayed upgrade signature sending `connected` now and then) goes.
    let idle = settings.idle_timeout_ms.get();
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
                claim::renew(&ctx, session.call_sid().unwrap_or_default(), &owner).await;
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
                if let Err(reason) = claim::take(&ctx, &mut slot, &sid, &owner).await {
                    metrics::counter!(m::CALL_STREAMS_REFUSED, "reason" => reason).increment(1);
                    tracing::warn!(call_sid = sid, reason, "refused a second stream for a call");
                    break Ended::Refused;
                }
                claimed = true;
                if let (Some(audio), Some(stream_sid)) = (&ctx.calls.greeting, session.stream_sid())
                {
                    greeting = Some(tokio::spawn(super::greeting::play(
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
    super::post_call::finish(session, &ctx, ended.text(), claim).await;
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
