//! `webhook_process_job(business_id, tenant_id, messages)`: WhatsApp messages from the Baileys
//! bridge, normalized.
//!
//! Each Baileys `WebMessageInfo` becomes `{id, chat, sender, push_name, timestamp, text, media}`.
//! Messages sent by the business itself (`key.fromMe`) and status broadcasts are skipped. The
//! result is the normalized batch; with an HTTP target configured it is delivered there (with the
//! job id as idempotency key, so a re-run is recognisable as the same delivery).

use serde_json::{Map, Value, json};

use crate::worker::handler::{HandlerContext, HandlerError, HandlerResult, JobInput};

const STATUS_BROADCAST: &str = "status@broadcast";

pub async fn webhook_process_job(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let messages = match input.kwargs.get("messages") {
        Some(Value::Array(m)) => m,
        Some(other) => {
            return Err(HandlerError::Permanent(format!(
                "argument messages must be a list, got {other}"
            )));
        }
        None => return Err(HandlerError::Permanent("missing argument messages".into())),
    };
    let mut normalized = Vec::with_capacity(messages.len());
    let mut skipped = 0;
    for (i, m) in messages.iter().enumerate() {
        match normalize(m) {
            Ok(Some(n)) => normalized.push(n),
            Ok(None) => skipped += 1,
            Err(reason) => {
                return Err(HandlerError::Permanent(format!("message {i}: {reason}")));
            }
        }
    }
    let result = json!({
        "tenant_id": input.kwargs.get("tenant_id").cloned().unwrap_or(Value::Null),
        "business_id": input.kwargs.get("business_id").cloned().unwrap_or(Value::Null),
        "messages": normalized,
        "skipped": skipped,
    });
    if let Some(delivered) = ctx.delivery.deliver_if_configured(&input, &result).await {
        delivered?;
    }
    Ok(Some(result))
}

/// One Baileys message → its normalized form; `None` for messages we do not process.
pub fn normalize(m: &Value) -> Result<Option<Value>, String> {
    let key = m
        .get("key")
        .and_then(Value::as_object)
        .ok_or("no key object")?;
    let id = key
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("no key.id")?;
    let chat = key.get("remoteJid").and_then(Value::as_str).unwrap_or("");
    if key.get("fromMe").and_then(Value::as_bool) == Some(true) || chat == STATUS_BROADCAST {
        return Ok(None);
    }
    let sender = key
        .get("participant")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(chat);
    let message = m.get("message").and_then(Value::as_object);
    let (text, media) = message.map_or((None, None), content);
    Ok(Some(json!({
        "id": id,
        "chat": chat,
        "sender": sender,
        "is_group": chat.ends_with("@g.us"),
        "push_name": m.get("pushName").and_then(Value::as_str),
        "timestamp": m.get("messageTimestamp").and_then(timestamp),
        "text": text,
        "media": media,
    })))
}

/// Text and media kind of a message body.
fn content(message: &Map<String, Value>) -> (Option<String>, Option<&'static str>) {
    let text_of = |k: &str, field: &str| {
        message
            .get(k)
            .and_then(|v| v.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if let Some(t) = message.get("conversation").and_then(Value::as_str) {
        return (Some(t.to_owned()), None);
    }
    if let Some(t) = text_of("extendedTextMessage", "text") {
        return (Some(t), None);
    }
    const MEDIA: [(&str, &str); 7] = [
        ("imageMessage", "image"),
        ("videoMessage", "video"),
        ("audioMessage", "audio"),
        ("documentMessage", "document"),
        ("stickerMessage", "sticker"),
        ("locationMessage", "location"),
        ("contactMessage", "contact"),
    ];
    for (k, kind) in MEDIA {
        if message.contains_key(k) {
            return (text_of(k, "caption"), Some(kind));
        }
    }
    (None, None)
}

/// Baileys sends `messageTimestamp` as a number, a numeric string, or a protobuf Long
/// `{low, high, unsigned}`.
fn timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        Value::Object(o) => {
            let low = o.get("low")?.as_i64()?;
            let high = o.get("high").and_then(Value::as_i64).unwrap_or(0);
            Some((high << 32) | (low & 0xFFFF_FFFF))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baileys_messages_normalize() {
        let text = json!({"key": {"id": "A1", "remoteJid": "972501234567@s.whatsapp.net", "fromMe": false},
                          "message": {"conversation": "shalom"}, "pushName": "Dana", "messageTimestamp": 1732800000});
        let n = normalize(&text).unwrap().unwrap();
        assert_eq!(n["id"], "A1");
        assert_eq!(n["text"], "shalom");
        assert_eq!(n["sender"], "972501234567@s.whatsapp.net");
        assert_eq!(n["timestamp"], 1732800000);
        assert_eq!(n["media"], Value::Null);

        let group_image = json!({"key": {"id": "B2", "remoteJid": "123@g.us", "participant": "555@s.whatsapp.net"},
                                 "message": {"imageMessage": {"caption": "look"}},
                                 "messageTimestamp": {"low": 1732800001, "high": 0, "unsigned": true}});
        let n = normalize(&group_image).unwrap().unwrap();
        assert_eq!(
            (n["sender"].as_str(), n["is_group"].as_bool()),
            (Some("555@s.whatsapp.net"), Some(true))
        );
        assert_eq!(
            (n["text"].as_str(), n["media"].as_str()),
            (Some("look"), Some("image"))
        );
        assert_eq!(n["timestamp"], 1732800001);

        let extended = json!({"key": {"id": "C3", "remoteJid": "1@s.whatsapp.net"},
                              "message": {"extendedTextMessage": {"text": "a link"}}, "messageTimestamp": "1732800002"});
        assert_eq!(normalize(&extended).unwrap().unwrap()["text"], "a link");

        let mine = json!({"key": {"id": "D4", "remoteJid": "1@s.whatsapp.net", "fromMe": true}});
        assert_eq!(normalize(&mine).unwrap(), None);
        let status = json!({"key": {"id": "E5", "remoteJid": "status@broadcast"}});
        assert_eq!(normalize(&status).unwrap(), None);
        assert!(normalize(&json!({"key": {"remoteJid": "x"}})).is_err());
        assert!(normalize(&json!("nope")).is_err());
    }
}
