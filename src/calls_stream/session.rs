//! One media stream: Twilio's messages (`connected`, `start`, `media`, `mark`, `dtmf`, `stop`)
//! turned into recorded tracks. Transport-free, so it is tested without a socket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::recorder::{FRAMES_PER_MS, TrackRecorder};

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Event {
    Connected {},
    Start {
        start: Start,
    },
    Media {
        media: Media,
    },
    Mark {},
    Dtmf {},
    Stop {},
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start {
    call_sid: String,
    stream_sid: Option<String>,
    #[serde(default)]
    custom_parameters: Map<String, Value>,
    media_format: Option<MediaFormat>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaFormat {
    encoding: String,
    sample_rate: u32,
    channels: u32,
}

#[derive(Deserialize)]
struct Media {
    track: Option<String>,
    timestamp: Value,
    payload: String,
}

/// What the caller should do after a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// `stop`: the call is over.
    Stop,
    /// The stream is unusable (malformed frame, media before start): close it, keep what was
    /// recorded.
    Fail(String),
}

/// A finished call's recording, ready for `recording_job`.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    pub call_sid: String,
    /// File names relative to the recordings directory.
    pub paths: Vec<String>,
    pub duration_secs: f64,
    pub parameters: Map<String, Value>,
}

pub struct Session {
    dir: PathBuf,
    call_sid: Option<String>,
    stream_sid: Option<String>,
    parameters: Map<String, Value>,
    tracks: BTreeMap<String, TrackRecorder>,
    pub media_frames: u64,
}

impl Session {
    pub fn new(recordings_dir: &Path) -> Self {
        Self {
            dir: recordings_dir.to_path_buf(),
            call_sid: None,
            stream_sid: None,
            parameters: Map::new(),
            tracks: BTreeMap::new(),
            media_frames: 0,
        }
    }

    pub fn call_sid(&self) -> Option<&str> {
        self.call_sid.as_deref()
    }

    pub fn stream_sid(&self) -> Option<&str> {
        self.stream_sid.as_deref()
    }

    pub fn handle(&mut self, text: &str) -> Step {
        let event: Event = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => return Step::Fail(format!("malformed frame: {e}")),
        };
        match event {
            Event::Connected {} | Event::Mark {} | Event::Dtmf {} => Step::Continue,
            Event::Unknown => {
                tracing::debug!("ignoring an unknown media-stream event");
                Step::Continue
            }
            Event::Stop {} => Step::Stop,
            Event::Start { start } => self.start(start),
            Event::Media { media } => self.media(&media),
        }
    }

    fn start(&mut self, s: Start) -> Step {
        if self.call_sid.is_some() {
            return Step::Fail("a second start on one stream".into());
        }
        if !crate::webhooks::twilio::is_valid_call_sid(&s.call_sid) {
            return Step::Fail(format!("invalid callSid {:?}", s.call_sid));
        }
        if let Some(f) = &s.media_format
            && (f.encoding != "audio/x-mulaw" || f.sample_rate != 8000 || f.channels != 1)
        {
            return Step::Fail(format!(
                "unsupported media format {} {} Hz x{} (expected audio/x-mulaw 8000 Hz mono)",
                f.encoding, f.sample_rate, f.channels
            ));
        }
        self.call_sid = Some(s.call_sid);
        self.stream_sid = s.stream_sid;
        self.parameters = s.custom_parameters;
        Step::Continue
    }

    fn media(&mut self, m: &Media) -> Step {
        let Some(call_sid) = &self.call_sid else {
            return Step::Fail("media before start".into());
        };
        let track = m.track.as_deref().unwrap_or("inbound");
        if !matches!(track, "inbound" | "outbound") {
            return Step::Fail(format!("unknown track {track:?}"));
        }
        let ms = match &m.timestamp {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let Some(ms) = ms else {
            return Step::Fail("media timestamp is not a number of milliseconds".into());
        };
        let audio = match BASE64.decode(&m.payload) {
            Ok(a) => a,
            Err(e) => return Step::Fail(format!("media payload is not base64: {e}")),
        };
        let recorder = match self.tracks.entry(track.to_owned()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                match TrackRecorder::create(&self.dir.join(format!("{call_sid}.{track}.wav"))) {
                    Ok(r) => e.insert(r),
                    Err(err) => return Step::Fail(format!("cannot create the recording: {err}")),
                }
            }
        };
        if let Err(e) = recorder.write_at(ms * FRAMES_PER_MS, &audio) {
            return Step::Fail(format!("cannot record: {e}"));
        }
        self.media_frames += 1;
        Step::Continue
    }

    /// Finishes every track; `None` when the stream never started or recorded nothing.
    pub fn finish(self) -> std::io::Result<Option<Recording>> {
        let Some(call_sid) = self.call_sid else {
            return Ok(None);
        };
        let mut paths = Vec::new();
        let mut frames = 0;
        for (_, recorder) in self.tracks {
            let (path, n) = recorder.finish()?;
            frames = frames.max(n);
            if let Some(name) = path.file_name() {
                paths.push(name.to_string_lossy().into_owned());
            }
        }
        if paths.is_empty() {
            return Ok(None);
        }
        Ok(Some(Recording {
            call_sid,
            paths,
            duration_secs: frames as f64 / 8000.0,
            parameters: self.parameters,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn media(ts: u64, bytes: &[u8]) -> String {
        json!({"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "chunk": "1", "timestamp": ts.to_string(), "payload": BASE64.encode(bytes)}}).to_string()
    }

    #[test]
    fn a_stream_records_and_reports_what_went_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session::new(dir.path());
        assert_eq!(
            s.handle(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#),
            Step::Continue
        );
        assert!(
            matches!(s.handle(&media(0, &[0xFF; 160])), Step::Fail(m) if m == "media before start")
        );
        let start = json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
            "accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
            "customParameters": {"business_id": "12"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}});
        assert_eq!(s.handle(&start.to_string()), Step::Continue);
        assert_eq!(s.handle(&media(0, &[1; 160])), Step::Continue);
        assert_eq!(s.handle(&media(40, &[2; 160])), Step::Continue);
        assert_eq!(
            s.handle(r#"{"event":"mark","mark":{"name":"x"}}"#),
            Step::Continue
        );
        assert_eq!(
            s.handle(r#"{"event":"dtmf","dtmf":{"digit":"1"}}"#),
            Step::Continue
        );
        assert_eq!(s.handle(r#"{"event":"something-new"}"#), Step::Continue);
        assert!(matches!(s.handle("{not json"), Step::Fail(m) if m.starts_with("malformed frame")));
        assert!(matches!(
            s.handle(
                &json!({"event": "media", "media": {"timestamp": "1", "payload": "%%%"}})
                    .to_string()
            ),
            Step::Fail(_)
        ));
        assert_eq!(
            s.handle(r#"{"event":"stop","stop":{"callSid":"CA1"}}"#),
            Step::Stop
        );
        let rec = s.finish().unwrap().unwrap();
        assert_eq!(rec.paths, ["CA1.inbound.wav"]);
        assert_eq!(rec.duration_secs, 480.0 / 8000.0);
        assert_eq!(rec.parameters["business_id"], "12");

        let mut bad = Session::new(dir.path());
        let wrong = json!({"event": "start", "start": {"callSid": "CA2", "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000, "channels": 1}}});
        assert!(
            matches!(bad.handle(&wrong.to_string()), Step::Fail(m) if m.contains("unsupported media format"))
        );
        assert!(bad.finish().unwrap().is_none());
    }
}
