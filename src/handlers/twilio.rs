//! `twilio_callback(call_sid, event_type, params)`: a Twilio call status callback, normalized and
//! recorded so that out-of-order or repeated callbacks never move a call backwards
//! (queued → initiated → ringing → in-progress → completed | busy | failed | no-answer | canceled).
//! A change that moves the call forward is delivered to the type's HTTP target when configured.

use serde_json::{Value, json};

use crate::jobs::CallUpdate;
use crate::worker::handler::{HandlerContext, HandlerError, HandlerResult, JobInput};

/// The rank of a Twilio call status; final statuses share the top rank (the first one wins).
pub fn status_rank(status: &str) -> Option<u8> {
    Some(match status {
        "queued" => 0,
        "initiated" => 1,
        "ringing" => 2,
        "in-progress" | "answered" => 3,
        "completed" | "busy" | "failed" | "no-answer" | "canceled" => 4,
        _ => return None,
    })
}

pub async fn twilio_callback(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let call_sid = input.str_arg("call_sid")?;
    if !crate::webhooks::twilio::is_valid_call_sid(call_sid) {
        return Err(HandlerError::Permanent(format!(
            "invalid call_sid {call_sid:?}"
        )));
    }
    let params = input.kwargs.get("params").cloned().unwrap_or(json!({}));
    let status = params
        .get("CallStatus")
        .and_then(Value::as_str)
        .or_else(|| input.kwargs.get("event_type").and_then(Value::as_str))
        .ok_or_else(|| HandlerError::Permanent("no CallStatus in params and no event_type".into()))?
        .to_ascii_lowercase();
    let rank = status_rank(&status)
        .ok_or_else(|| HandlerError::Permanent(format!("unknown call status {status:?}")))?;
    let details = json!({
        "call_sid": call_sid,
        "status": status,
        "from": params.get("From"),
        "to": params.get("To"),
        "direction": params.get("Direction"),
        "duration_secs": params.get("CallDuration").and_then(|d| d.as_str().and_then(|s| s.parse::<u64>().ok()).or_else(|| d.as_u64())),
        "sequence_number": params.get("SequenceNumber"),
        "timestamp": params.get("Timestamp"),
    });
    let update = ctx
        .jobs
        .call_status()
        .record_call_status(call_sid, &status, rank, &details)
        .await
        .map_err(|e| HandlerError::Retryable(e.to_string()))?;
    match update {
        CallUpdate::Advanced(_) => {
            if let Some(delivered) = ctx.delivery.deliver_if_configured(&input, &details).await {
                delivered?;
            }
            Ok(Some(
                json!({"call_sid": call_sid, "status": status, "applied": true}),
            ))
        }
        CallUpdate::Unchanged(current) => Ok(Some(json!({
            "call_sid": call_sid,
            "status": current,
            "applied": false,
            "ignored_status": status,
        }))),
    }
}
