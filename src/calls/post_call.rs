//! After a call: its recording finalized (files synced), its post-call jobs enqueued, and its
//! claim marked finalized (or released when nothing was recorded).

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::backoff::Backoff;
use crate::calls_stream::session::{Recording, Session};
use crate::context::AppContext;
use crate::jobs::NewJob;
use crate::metrics as m;
use crate::webhooks::twilio;

/// Finalizes the recording (syncing its files), enqueues the post-call jobs, then marks the call
/// finalized (or, with nothing recorded, releases it) when this stream holds its claim.
pub(super) async fn finish(session: Session, ctx: &AppContext, ended: &str, claim: Option<&str>) {
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
        enqueue(ctx, recording).await;
    }
    if let Some(owner) = claim {
        super::claim::end(ctx, &call_sid, owner, recording.is_some()).await;
    }
}

/// `recording_job` (de-dupe `recording:{sid}`, the key Twilio's recording callback uses too) and
/// the call-ended `twilio_callback` (de-dupe `twilio:{sid}:completed`), in one round trip. Retried
/// while Redis is unreachable: the files are on disk, the jobs must not be lost.
async fn enqueue(ctx: &AppContext, r: &Recording) {
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
