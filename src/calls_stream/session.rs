//! One media stream: Twilio's messages (`connected`, `start`, `media`, `mark`, `dtmf`, `stop`)
//! turned into recorded tracks. Transport-free, so it is tested without a socket; the caller
//! passes the time each message arrived.
//!
//! A `start` is taken only with a valid stream token for its call SID (unless the process runs
//! without Twilio's secrets, for development), and the call's parameters come only from such a
//! start. Audio is bounded by reality: a frame stamped further ahead of the time the stream has
//! been running than `calls.max_timestamp_lead_ms` is dropped, so a stream cannot write silence
//! up to a far-future timestamp.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::recorder::{FRAMES_PER_MS, TrackRecorder};
use crate::webhooks::twilio::stream::{StreamTokens, TOKEN_PARAMETER};

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
    /// A verified `start`: the caller binds the call SID to this stream before reading on.
    Started,
    /// A frame was not recorded, for this reason (a metric label); the stream goes on.
    Dropped(&'static str),
    /// `stop`: the call is over.
    Stop,
    /// The `start` was refused, for this reason (a metric label): close, nothing was written.
    Refused(&'static str),
    /// The stream is unusable (malformed frame, media before start): close it, keep what was
    /// recorded.
    Fail(String),
}

/// Who may start a stream.
#[derive(Clone, Debug)]
pub enum Gate {
    /// A start must carry a token issued for its call SID (`required`), or, while upgrading
    /// from a release that issued none (`calls.require_stream_token = false`), may carry none;
    /// a token that is there must be valid either way.
    Tokens {
        tokens: StreamTokens,
        required: bool,
    },
    /// Anyone: development without Twilio's secrets (`api.allow_missing_secrets`).
    Open,
}

/// The rules one stream is held to.
#[derive(Clone, Debug)]
pub struct StreamRules {
    pub gate: Gate,
    /// How far a media timestamp may run ahead of the stream's elapsed time.
    pub max_timestamp_lead: Duration,
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
    rules: StreamRules,
    /// When the socket opened, on this host's monotonic clock and as Unix seconds (the token's).
    opened: (Instant, u64),
    /// When the verified start arrived: media timestamps count from it.
    started: Option<Instant>,
    call_sid: Option<String>,
    stream_sid: Option<String>,
    parameters: Map<String, Value>,
    tracks: BTreeMap<String, TrackRecorder>,
    pub media_frames: u64,
}

impl Session {
    /// A stream that opened at `opened_unix` (seconds, on the clock tokens are issued by).
    pub fn new(recordings_dir: &Path, rules: StreamRules, opened_unix: u64) -> Self {
        Self {
            dir: recordings_dir.to_path_buf(),
            rules,
            opened: (Instant::now(), opened_unix),
            started: None,
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

    /// Handles one message that arrived at `now`.
    pub fn handle(&mut self, text: &str, now: Instant) -> Step {
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
            Event::Start { start } => self.start(start, now),
            Event::Media { media } => self.media(&media, now),
        }
    }

    fn start(&mut self, s: Start, now: Instant) -> Step {
        if self.call_sid.is_some() {
            return Step::Fail("a second start on one stream".into());
        }
        if !crate::webhooks::twilio::is_valid_call_sid(&s.call_sid) {
            return Step::Fail(format!("invalid callSid {:?}", s.call_sid));
        }
        let mut parameters = s.custom_parameters;
        // The token is a credential: checked here, never passed on to jobs.
        let token = parameters.remove(TOKEN_PARAMETER);
        if let Gate::Tokens { tokens, required } = &self.rules.gate {
            let tenant = parameters
                .get("business_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let now_unix = self.opened.1 + now.saturating_duration_since(self.opened.0).as_secs();
            let token = token.as_ref().and_then(Value::as_str);
            let tolerated = !required && token.is_none();
            if !tolerated && let Err(refused) = tokens.check(token, &s.call_sid, tenant, now_unix) {
                return Step::Refused(refused.label());
            }
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
        self.parameters = parameters;
        self.started = Some(now);
        Step::Started
    }

    fn media(&mut self, m: &Media, now: Instant) -> Step {
        let (Some(call_sid), Some(started)) = (&self.call_sid, self.started) else {
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
        let elapsed = now.saturating_duration_since(started) + self.rules.max_timestamp_lead;
        if u128::from(ms) > elapsed.as_millis() {
            return Step::Dropped("timestamp_lead");
        }
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

    fn open(dir: &Path) -> Session {
        let rules = StreamRules {
            gate: Gate::Open,
            max_timestamp_lead: Duration::from_secs(60),
        };
        Session::new(dir, rules, 1_000)
    }

    fn media(ts: u64, bytes: &[u8]) -> String {
        json!({"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "chunk": "1", "timestamp": ts.to_string(), "payload": BASE64.encode(bytes)}}).to_string()
    }

    #[test]
    fn a_stream_records_and_reports_what_went_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let now = Instant::now();
        assert_eq!(
            s.handle(
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
                now
            ),
            Step::Continue
        );
        assert!(
            matches!(s.handle(&media(0, &[0xFF; 160]), now), Step::Fail(m) if m == "media before start")
        );
        let start = json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
            "accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
            "customParameters": {"business_id": "12"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}});
        assert_eq!(s.handle(&start.to_string(), now), Step::Started);
        assert_eq!(s.handle(&media(0, &[1; 160]), now), Step::Continue);
        assert_eq!(s.handle(&media(40, &[2; 160]), now), Step::Continue);
        assert_eq!(
            s.handle(r#"{"event":"mark","mark":{"name":"x"}}"#, now),
            Step::Continue
        );
        assert_eq!(
            s.handle(r#"{"event":"dtmf","dtmf":{"digit":"1"}}"#, now),
            Step::Continue
        );
        assert_eq!(
            s.handle(r#"{"event":"something-new"}"#, now),
            Step::Continue
        );
        assert!(
            matches!(s.handle("{not json", now), Step::Fail(m) if m.starts_with("malformed frame"))
        );
        assert!(matches!(
            s.handle(
                &json!({"event": "media", "media": {"timestamp": "1", "payload": "%%%"}})
                    .to_string(),
                now
            ),
            Step::Fail(_)
        ));
        assert_eq!(
            s.handle(r#"{"event":"stop","stop":{"callSid":"CA1"}}"#, now),
            Step::Stop
        );
        let rec = s.finish().unwrap().unwrap();
        assert_eq!(rec.paths, ["CA1.inbound.wav"]);
        assert_eq!(rec.duration_secs, 480.0 / 8000.0);
        assert_eq!(rec.parameters["business_id"], "12");

        let mut bad = open(dir.path());
        let wrong = json!({"event": "start", "start": {"callSid": "CA2", "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000, "channels": 1}}});
        assert!(
            matches!(bad.handle(&wrong.to_string(), now), Step::Fail(m) if m.contains("unsupported media format"))
        );
        assert!(bad.finish().unwrap().is_none());
    }

    fn start_with(token: Option<&str>, sid: &str, tenant: &str) -> String {
        let mut params = json!({"business_id": tenant, "From": "+1"});
        if let Some(t) = token {
            params[TOKEN_PARAMETER] = json!(t);
        }
        json!({"event": "start", "start": {"callSid": sid, "streamSid": "MZ1",
            "customParameters": params}})
        .to_string()
    }

    #[test]
    fn only_a_start_with_its_calls_token_opens_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = StreamTokens::new("auth");
        let session = || {
            let rules = StreamRules {
                gate: Gate::Tokens {
                    tokens: tokens.clone(),
                    required: true,
                },
                max_timestamp_lead: Duration::from_secs(2),
            };
            Session::new(dir.path(), rules, 1_000)
        };
        let now = Instant::now();
        let good = tokens.issue("CA1", "12", 1_100);
        for (start, refused) in [
            (start_with(None, "CA1", "12"), "token_missing"),
            (start_with(Some("nope"), "CA1", "12"), "token_malformed"),
            (start_with(Some(&good), "CA2", "12"), "token_mismatch"),
            (start_with(Some(&good), "CA1", "13"), "token_mismatch"),
            (
                start_with(Some(&tokens.issue("CA1", "12", 999)), "CA1", "12"),
                "token_expired",
            ),
        ] {
            let mut s = session();
            assert_eq!(s.handle(&start, now), Step::Refused(refused));
            assert!(
                matches!(s.handle(&media(0, &[1; 160]), now), Step::Fail(m) if m == "media before start"),
                "nothing is recorded after a refused start"
            );
            assert!(s.finish().unwrap().is_none());
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut s = session();
        assert_eq!(
            s.handle(&start_with(Some(&good), "CA1", "12"), now),
            Step::Started
        );
        assert_eq!(s.handle(&media(0, &[1; 160]), now), Step::Continue);
        let rec = s.finish().unwrap().unwrap();
        assert_eq!(rec.parameters["business_id"], "12");
        assert!(
            !rec.parameters.contains_key(TOKEN_PARAMETER),
            "the token is not passed on"
        );

        // While upgrading from a release that issued no tokens: none is tolerated, a bad one
        // is not.
        let lenient = || {
            let rules = StreamRules {
                gate: Gate::Tokens {
                    tokens: tokens.clone(),
                    required: false,
                },
                max_timestamp_lead: Duration::from_secs(2),
            };
            Session::new(dir.path(), rules, 1_000)
        };
        assert_eq!(
            lenient().handle(&start_with(None, "CA9", "12"), now),
            Step::Started
        );
        assert_eq!(
            lenient().handle(&start_with(Some("nope"), "CA9", "12"), now),
            Step::Refused("token_malformed")
        );
    }

    #[test]
    fn frames_stamped_ahead_of_the_clock_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let rules = StreamRules {
            gate: Gate::Open,
            max_timestamp_lead: Duration::from_millis(2_000),
        };
        let mut s = Session::new(dir.path(), rules, 0);
        let t0 = Instant::now();
        assert_eq!(s.handle(&start_with(None, "CA1", ""), t0), Step::Started);
        assert_eq!(s.handle(&media(2_000, &[1; 160]), t0), Step::Continue);
        assert_eq!(
            s.handle(&media(2_001, &[1; 160]), t0),
            Step::Dropped("timestamp_lead")
        );
        assert_eq!(
            s.handle(&media(21_599_000, &[1; 160]), t0),
            Step::Dropped("timestamp_lead"),
            "the six-hour silence of the attack is never written"
        );
        assert_eq!(
            s.handle(&media(u64::MAX / 2, &[1; 160]), t0),
            Step::Dropped("timestamp_lead")
        );
        let later = t0 + Duration::from_secs(10);
        assert_eq!(s.handle(&media(11_980, &[1; 160]), later), Step::Continue);
        let rec = s.finish().unwrap().unwrap();
        assert_eq!(
            rec.duration_secs, 12.0,
            "bounded by elapsed time plus the lead"
        );
    }
}
