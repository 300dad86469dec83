//! The Baileys bridge's webhook: `{"tenantId": "1", "payload": {"messages": [...]}}`, one
//! `webhook_process_job` per message, de-duplicated by `webhook:baileys:{message id}`.

use serde_json::{Map, Value};

use crate::jobs::{NewJob, TENANT, is_valid_tenant};

/// Longest message id accepted (Baileys ids are ~20-32 characters).
const MAX_ID_LEN: usize = 256;

/// One message of a valid request, ready to enqueue.
#[derive(Debug)]
pub struct IncomingMessage {
    pub message_id: String,
    pub dedupe_key: String,
    pub job: NewJob,
}

/// The number of messages a request carries (0 when it has no list of them), to refuse a batch
/// over the limit before any job is built.
pub fn message_count(body: &Value) -> usize {
    body.pointer("/payload/messages")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// The request's messages as jobs, validated whole before anything is enqueued: a request with
/// one bad message enqueues nothing, and the error names the field at fault. The messages are
/// moved, not copied, into their jobs: a request's memory stays a small multiple of its body.
// Long on purpose: one check per field, naming the field at fault, in the order of the payload.
pub fn parse(mut body: Value) -> Result<Vec<IncomingMessage>, String> {
    let messages = body
        .pointer_mut("/payload/messages")
        .map(Value::take)
        .unwrap_or(Value::Null);
    let obj = body.as_object().ok_or("the body must be a JSON object")?;
    let tenant = match obj.get("tenantId") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 64 => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(other) => {
            return Err(format!(
                "tenantId must be a non-empty string (at most 64 characters) or a positive integer, got {}",
                type_name(other)
            ));
        }
        None => return Err("tenantId is missing".into()),
    };
    let messages = match messages {
        Value::Array(m) => m,
        Value::Null if obj.get("payload").and_then(|p| p.get("messages")).is_none() => {
            return Err("payload.messages is missing".into());
        }
        other => {
            return Err(format!(
                "payload.messages must be a list, got {}",
                type_name(&other)
            ));
        }
    };
    let mut out = Vec::with_capacity(messages.len());
    let mut seen = std::collections::HashSet::new();
    for (i, m) in messages.into_iter().enumerate() {
        let id = match m.get("key").and_then(|k| k.get("id")) {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_LEN => id.clone(),
            Some(Value::String(_)) => {
                return Err(format!(
                    "payload.messages[{i}].key.id must be 1-{MAX_ID_LEN} characters"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "payload.messages[{i}].key.id must be a string, got {}",
                    type_name(other)
                ));
            }
            None => return Err(format!("payload.messages[{i}].key.id is missing")),
        };
        // The same id twice in one batch is one event.
        if !seen.insert(id.clone()) {
            continue;
        }
        let mut args = Map::new();
        args.insert("business_id".into(), Value::String(tenant.clone()));
        args.insert("tenant_id".into(), Value::String(tenant.clone()));
        args.insert("messages".into(), Value::Array(vec![m]));
        let mut job = NewJob::new("default", "webhook_process_job", args);
        job.options
            .meta
            .insert("tenant_id".into(), Value::String(tenant.clone()));
        job.options.meta.insert("source".into(), "whatsapp".into());
        // The tenant of tenant-aware features; a tenantId outside the tenant alphabet (accepted
        // before tenants existed) stays in `tenant_id` only.
        if is_valid_tenant(&tenant) {
            job.options
                .meta
                .insert(TENANT.into(), Value::String(tenant.clone()));
        }
        out.push(IncomingMessage {
            dedupe_key: format!("webhook:baileys:{id}"),
            message_id: id,
            job,
        });
    }
    Ok(out)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_validated_whole() {
        let ok = json!({"tenantId": "1", "payload": {"messages": [
            {"key": {"id": "A"}}, {"key": {"id": "B"}}, {"key": {"id": "A"}}
        ]}});
        let msgs = parse(ok).unwrap();
        assert_eq!(msgs.len(), 2, "a repeated id in one batch is one event");
        assert_eq!(msgs[0].dedupe_key, "webhook:baileys:A");
        assert_eq!(msgs[0].job.args["tenant_id"], "1");
        let numeric = json!({"tenantId": 7, "payload": {"messages": []}});
        assert!(parse(numeric).unwrap().is_empty());
        for (bad, needle) in [
            (json!([]), "JSON object"),
            (json!({"payload": {"messages": []}}), "tenantId is missing"),
            (
                json!({"tenantId": {"x": 1}, "payload": {"messages": []}}),
                "tenantId must be",
            ),
            (
                json!({"tenantId": "", "payload": {"messages": []}}),
                "tenantId must be",
            ),
            (json!({"tenantId": "1"}), "payload.messages is missing"),
            (
                json!({"tenantId": "1", "payload": {"messages": "x"}}),
                "must be a list",
            ),
            (
                json!({"tenantId": "1", "payload": {"messages": [{"key": {"id": "A"}}, {"key": {}}]}}),
                "messages[1].key.id is missing",
            ),
            (
                json!({"tenantId": "1", "payload": {"messages": [{"key": {"id": 5}}]}}),
                "must be a string",
            ),
        ] {
            let err = parse(bad.clone()).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
