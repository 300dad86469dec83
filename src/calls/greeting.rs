//! The greeting a caller hears when the stream starts (`calls.greeting_path`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use serde_json::json;

/// Plays μ-law audio to the caller as outbound `media` frames, 20 ms each at real-time pace,
/// then a `mark` named `greeting-end` (Twilio echoes it back once played).
pub(super) async fn play(
    audio: Arc<Vec<u8>>,
    stream_sid: String,
    out: tokio::sync::mpsc::Sender<Message>,
) {
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
