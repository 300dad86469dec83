//! `push_send_job(notification_id, business_id, user_id | token, title, body, data)`: validates a
//! push notification and delivers it to the push gateway configured as this type's HTTP target.
//! The gateway sees the job id as `Idempotency-Key`, so a re-delivered job is recognisable.

use serde_json::{Map, Value, json};

use crate::worker::handler::{HandlerContext, HandlerError, HandlerResult, JobInput};

pub async fn push_send_job(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let notification = validate(&input.kwargs).map_err(HandlerError::Permanent)?;
    match ctx
        .delivery
        .deliver_if_configured(&input, &notification)
        .await
    {
        Some(result) => result,
        None => Err(HandlerError::Permanent(
            "no push gateway is configured (set worker.http_targets.push_send_job)".into(),
        )),
    }
}

/// Checks a notification and returns it normalized; the error names the field at fault. The
/// push API checks requests with the same function before enqueueing.
pub fn validate(k: &Map<String, Value>) -> Result<Value, String> {
    let id = k
        .get("notification_id")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()) || v.is_u64())
        .ok_or("notification_id is missing (a non-empty string or a positive integer)")?;
    let text = |name: &str| match k.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(format!("{name} must be a string, got {other}")),
        None => Err(format!("{name} is missing")),
    };
    let title = text("title")?;
    let body = text("body")?;
    if title.trim().is_empty() && body.trim().is_empty() {
        return Err("title and body are both empty".into());
    }
    let recipient = ["user_id", "token"]
        .iter()
        .find_map(|f| k.get(*f).filter(|v| !v.is_null()).map(|v| (*f, v.clone())));
    let Some((recipient_kind, recipient)) = recipient else {
        return Err("one of user_id or token is required".into());
    };
    let data = k.get("data").cloned().unwrap_or(json!({}));
    if !data.is_object() {
        return Err("data must be an object".into());
    }
    Ok(json!({
        "notification_id": id,
        "business_id": k.get("business_id").cloned().unwrap_or(Value::Null),
        recipient_kind: recipient,
        "title": title,
        "body": body,
        "data": data,
    }))
}
