//! `push_send_job(notification_id, business_id, user_id | token, title, body, data)`: validates a
//! push notification and delivers it to the push gateway configured as this type's HTTP target.
//! The gateway sees the job id as `Idempotency-Key`, so a re-delivered job is recognisable.

use serde_json::{Value, json};

use crate::worker::handler::{HandlerContext, HandlerError, HandlerResult, JobInput};

pub async fn push_send_job(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let notification = validate(&input)?;
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

fn validate(input: &JobInput) -> Result<Value, HandlerError> {
    let k = &input.kwargs;
    let id = k
        .get("notification_id")
        .filter(|v| v.is_string() || v.is_number())
        .ok_or_else(|| HandlerError::Permanent("missing argument notification_id".into()))?;
    let title = input.str_arg("title")?;
    let body = input.str_arg("body")?;
    if title.trim().is_empty() && body.trim().is_empty() {
        return Err(HandlerError::Permanent(
            "title and body are both empty".into(),
        ));
    }
    let recipient = ["user_id", "token"]
        .iter()
        .find_map(|f| k.get(*f).filter(|v| !v.is_null()).map(|v| (*f, v.clone())));
    let Some((recipient_kind, recipient)) = recipient else {
        return Err(HandlerError::Permanent(
            "one of user_id or token is required".into(),
        ));
    };
    let data = k.get("data").cloned().unwrap_or(json!({}));
    if !data.is_object() {
        return Err(HandlerError::Permanent(
            "argument data must be an object".into(),
        ));
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
