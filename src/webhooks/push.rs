//! The push API's notifications: `push_send_job` jobs de-duplicated by
//! `push:notification:{notification_id}`. The worker's handler checks a job's arguments with
//! the same [`validate`].

use serde_json::{Map, Value, json};

use super::Event;
use crate::jobs::NewJob;

/// A push request's body as the `push_send_job` it becomes on `queue`, or why not.
pub fn event(body: Map<String, Value>, queue: &str) -> Result<Event, String> {
    validate(&body)?;
    let id = match &body["notification_id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut job = NewJob::new(queue, "push_send_job", body);
    job.options.meta.insert("source".into(), "push_api".into());
    Ok(Event {
        job,
        dedupe_key: format!("push:notification:{id}"),
    })
}

/// Checks a notification and returns it normalized; the error names the field at fault.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_becomes_one_job_under_its_id() {
        let body = json!({"notification_id": 7, "user_id": "u", "title": "t", "body": "b"});
        let Value::Object(body) = body else {
            unreachable!()
        };
        let e = event(body.clone(), "push").unwrap();
        assert_eq!(e.dedupe_key, "push:notification:7");
        assert_eq!(e.job.queue, "push");
        assert_eq!(e.job.job_type, "push_send_job");
        assert_eq!(e.job.options.meta["source"], "push_api");
        let mut no_one = body;
        no_one.remove("user_id");
        assert!(
            event(no_one, "push")
                .unwrap_err()
                .contains("user_id or token")
        );
    }
}
