//! The calls role with the real binary and a WebSocket client that speaks Twilio's Media
//! Streams messages: recordings placed by timestamps, post-call jobs exactly once, malformed
//! streams isolated, every live call finalized on SIGTERM.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use prosaas::audio::{self, ULAW_SILENCE, WavFormat};
use prosaas::jobs::NewJob;
use prosaas::webhooks::twilio::stream::StreamTokens;
use redis::Commands;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

use crate::support::client::TestApi;
use crate::support::process::{TEST_PUBLIC_URL, TEST_TWILIO_TOKEN};
use crate::support::redis_server::TestDb;
use crate::support::{ProsaasProcess, db, eventually, kwargs};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn calls(t: &TestDb, dir: &Path, extra: &[(&str, &str)]) -> ProsaasProcess {
    let dir = dir.display().to_string();
    let url = t.url();
    let mut env = vec![
        ("REDIS_URL", url.as_str()),
        ("PROSAAS__RECORDINGS__DIR", dir.as_str()),
    ];
    env.extend_from_slice(extra);
    let p = ProsaasProcess::start("calls", &env);
    p.wait_for_log("accepting Twilio media streams", Duration::from_secs(20));
    p
}

/// The URL Twilio signs for a stream: the public base URL's `wss://` form.
const SIGNED_STREAM_URL: &str = "wss://prosaas.example.com/ws/twilio/media";

/// An upgrade request to the process's stream path with `signature` (none: unsigned).
fn upgrade(p: &ProsaasProcess, signature: Option<&str>) -> Request {
    let mut req = format!("ws://{}/ws/twilio/media", p.http_addr())
        .into_client_request()
        .unwrap();
    if let Some(sig) = signature {
        req.headers_mut()
            .insert("X-Twilio-Signature", sig.parse().unwrap());
    }
    req
}

/// Twilio's signature of the stream URL, as it signs the upgrade.
fn stream_signature() -> String {
    prosaas::webhooks::twilio::signature(TEST_TWILIO_TOKEN, SIGNED_STREAM_URL, &[])
}

/// A stream opened as Twilio opens one: the upgrade signed.
async fn connect(p: &ProsaasProcess) -> Ws {
    tokio_tungstenite::connect_async(upgrade(p, Some(&stream_signature())))
        .await
        .expect("websocket")
        .0
}

/// The stream token `/twilio/voice` issues for `sid` with tenant `12`.
fn token(sid: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    StreamTokens::new(TEST_TWILIO_TOKEN).issue(sid, "12", now + 300)
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// `connected` and a `start` for `sid` carrying `token` in its parameters.
async fn start_with(ws: &mut Ws, sid: &str, token: Option<&str>) {
    send(
        ws,
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    )
    .await;
    let mut params = json!({"business_id": "12"});
    if let Some(t) = token {
        params["stream_token"] = json!(t);
    }
    send(
        ws,
        json!({"event": "start", "sequenceNumber": "1", "streamSid": format!("MZ{sid}"), "start": {
        "accountSid": "AC0", "streamSid": format!("MZ{sid}"), "callSid": sid, "tracks": ["inbound"],
        "customParameters": params,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}),
    )
    .await;
}

/// A `start` as Twilio sends it for a call whose TwiML came from `/twilio/voice`.
async fn start(ws: &mut Ws, sid: &str) {
    start_with(ws, sid, Some(&token(sid))).await;
}

/// 20 ms of a tone, as μ-law, for chunk `n`.
fn chunk(n: u32) -> Vec<u8> {
    (0..160)
        .map(|i| {
            let t = f64::from(n * 160 + i) / 8000.0;
            audio::linear_to_ulaw(((t * 2.0 * std::f64::consts::PI * 440.0).sin() * 8000.0) as i16)
        })
        .collect()
}

async fn media(ws: &mut Ws, n: u32) {
    send(
        ws,
        json!({"event": "media", "sequenceNumber": (n + 2).to_string(), "media": {
        "track": "inbound", "chunk": (n + 1).to_string(), "timestamp": (n * 20).to_string(),
        "payload": BASE64.encode(chunk(n))}}),
    )
    .await;
}

fn queued_types(t: &TestDb) -> Vec<(String, String)> {
    let mut c = t.connection();
    let ids: Vec<String> = c.lrange("rq:queue:default", 0, -1).unwrap();
    ids.into_iter()
        .map(|id| {
            let desc: String = c.hget(format!("rq:job:{id}"), "description").unwrap();
            (id, desc.split('(').next().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: one call's media stream, frame by frame with gaps, then its recording and its
// jobs read back.
async fn a_ten_second_call_with_dropped_chunks_is_recorded_and_enqueued_once() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    // Ten seconds of audio sent at once: allowed ahead of the clock here.
    let p = calls(
        &t,
        dir.path(),
        &[("PROSAAS__CALLS__MAX_TIMESTAMP_LEAD_MS", "60000")],
    );
    let mut ws = connect(&p).await;
    start(&mut ws, "CA10S").await;
    let dropped = [100, 101, 250];
    for n in 0..500 {
        if !dropped.contains(&n) {
            media(&mut ws, n).await;
        }
    }
    send(
        &mut ws,
        json!({"event": "mark", "mark": {"name": "greeting-done"}}),
    )
    .await;
    send(&mut ws, json!({"event": "stop", "sequenceNumber": "600", "stop": {"accountSid": "AC0", "callSid": "CA10S"}})).await;
    p.wait_for_log("recording_job for the call", Duration::from_secs(10));

    let wav = audio::read_wav(std::fs::File::open(dir.path().join("CA10S.inbound.wav")).unwrap())
        .unwrap();
    assert_eq!(wav.format, WavFormat::MULAW_8K_MONO);
    assert_eq!(wav.duration_secs(), 10.0, "500 chunks of 20 ms");
    for n in [0, 99, 102, 249, 251, 499] {
        let at = n as usize * 160;
        assert_eq!(
            &wav.data[at..at + 160],
            chunk(n).as_slice(),
            "chunk {n} in place"
        );
    }
    for n in dropped {
        let at = n as usize * 160;
        assert!(
            wav.data[at..at + 160].iter().all(|b| *b == ULAW_SILENCE),
            "dropped chunk {n} is silence"
        );
    }
    let types = queued_types(&t);
    let kinds: Vec<&str> = types.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["recording_job", "twilio_callback"],
        "exactly one of each"
    );
    let rec = t.store().fetch_job(&types[0].0).await.unwrap().unwrap();
    assert_eq!(rec.kwargs["paths"], json!(["CA10S.inbound.wav"]));
    assert_eq!(rec.kwargs["parameters"]["business_id"], "12");
    assert_eq!(
        rec.tenant(),
        Some("12"),
        "the stream's business_id is the job's tenant"
    );

    // Twilio's own recording callback for this call is then a duplicate.
    let twilio_side = t
        .store()
        .enqueue_with_dedupe(
            NewJob::new(
                "default",
                "recording_job",
                kwargs(json!({"call_sid": "CA10S"})),
            ),
            "recording:CA10S",
            600,
        )
        .await
        .unwrap();
    assert!(twilio_side.is_duplicate());
    assert_eq!(twilio_side.job_id(), types[0].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: three sockets live at once on one calls process; what happens to each depends on
// the others staying open.
async fn a_dropped_socket_is_finalized_and_a_malformed_one_leaves_others_alone() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    let p = calls(&t, dir.path(), &[]);
    let mut good = connect(&p).await;
    start(&mut good, "CAGOOD").await;
    let mut gone = connect(&p).await;
    start(&mut gone, "CAGONE").await;
    let mut bad = connect(&p).await;
    start(&mut bad, "CABAD").await;
    for n in 0..50 {
        media(&mut good, n).await;
        media(&mut gone, n).await;
        media(&mut bad, n).await;
    }
    bad.send(Message::text("{\"event\": \"media\", \"media\": "))
        .await
        .unwrap();
    // The malformed socket is closed by the server.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = bad.next().await {
            if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the malformed stream was closed");
    drop(gone); // no stop: the connection just drops
    for n in 50..100 {
        media(&mut good, n).await;
    }
    send(&mut good, json!({"event": "stop"})).await;
    eventually("three calls finalized", Duration::from_secs(10), || async {
        (queued_types(&t).len() == 6).then_some(())
    })
    .await;
    let good = audio::read_wav(std::fs::File::open(dir.path().join("CAGOOD.inbound.wav")).unwrap())
        .unwrap();
    assert_eq!(
        good.duration_secs(),
        2.0,
        "the healthy call was not disturbed"
    );
    let gone = audio::read_wav(std::fs::File::open(dir.path().join("CAGONE.inbound.wav")).unwrap())
        .unwrap();
    assert_eq!(
        gone.duration_secs(),
        1.0,
        "what the dropped call sent is kept"
    );
    let bad = audio::read_wav(std::fs::File::open(dir.path().join("CABAD.inbound.wav")).unwrap())
        .unwrap();
    assert_eq!(
        bad.duration_secs(),
        1.0,
        "what the malformed call sent before is kept"
    );
    assert!(p.logs().contains("closing a media stream: malformed frame"));
    let recordings = queued_types(&t)
        .iter()
        .filter(|(_, k)| k == "recording_job")
        .count();
    assert_eq!(recordings, 3, "each call enqueued once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: twenty streams held open across the SIGTERM, then every recording checked
// against what was sent.
async fn sigterm_with_twenty_live_calls_finalizes_every_recording() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    let mut p = calls(
        &t,
        dir.path(),
        &[("PROSAAS__CALLS__SHUTDOWN_GRACE_MS", "500")],
    );
    let mut sockets = Vec::new();
    for i in 0..20 {
        let mut ws = connect(&p).await;
        start(&mut ws, &format!("CALIVE{i}")).await;
        for n in 0..25 {
            media(&mut ws, n).await;
        }
        sockets.push(ws);
    }
    let api = TestApi::new(&p);
    eventually(
        "20 live calls in /metrics",
        Duration::from_secs(5),
        || async {
            let text = api.metrics().await?;
            text.lines()
                .any(|l| l == "prosaas_calls_active 20")
                .then_some(())
        },
    )
    .await;
    // The process reports its live calls through Redis (every 5 s) for the dashboard.
    let store = t.store();
    let report = eventually(
        "the live calls reported",
        Duration::from_secs(8),
        || async {
            let reports = store.call_status().live_calls().await.ok()?;
            reports.into_iter().find(|r| r["calls"]["active"] == 20)
        },
    )
    .await;
    assert_eq!(report["calls"]["ages_secs"].as_array().unwrap().len(), 20);
    assert_eq!(report["calls"]["max"], 1000, "{report}");
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(
        store.call_status().live_calls().await.unwrap().is_empty(),
        "a stopped process withdraws its report"
    );
    for i in 0..20 {
        let wav = audio::read_wav(
            std::fs::File::open(dir.path().join(format!("CALIVE{i}.inbound.wav"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            wav.duration_secs(),
            0.5,
            "call {i} finalized with its header"
        );
    }
    let types = queued_types(&t);
    assert_eq!(
        types.iter().filter(|(_, k)| k == "recording_job").count(),
        20
    );
    assert_eq!(
        types.iter().filter(|(_, k)| k == "twilio_callback").count(),
        20
    );
    // Each stream was told the server is going away (1001), not closed bare (read as 1005).
    for mut ws in sockets {
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        };
        assert_eq!(code, Some(1001));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: the TwiML's stream URL and token are used by the streams that follow, on the
// same calls process.
async fn the_voice_webhook_answers_twiml_and_extra_streams_are_refused() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    let p = calls(
        &t,
        dir.path(),
        &[("PROSAAS__CALLS__MAX_CONCURRENT_CALLS", "2")],
    );
    let params: Vec<(String, String)> = [
        ("CallSid", "CAVOICE"),
        ("From", "+972501234567"),
        ("To", "+97239999999"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let path = "/twilio/voice?business_id=12";
    let sig = prosaas::webhooks::twilio::signature(
        TEST_TWILIO_TOKEN,
        &format!("{TEST_PUBLIC_URL}{path}"),
        &params,
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let http = reqwest::Client::new();
    let r = http
        .post(p.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/xml");
    let twiml = r.text().await.unwrap();
    assert!(
        twiml.contains("<Connect><Stream url=\"wss://prosaas.example.com/ws/twilio/media\">"),
        "{twiml}"
    );
    assert!(
        twiml.contains("<Parameter name=\"business_id\" value=\"12\"/>"),
        "{twiml}"
    );
    assert!(
        twiml.contains("<Parameter name=\"From\" value=\"+972501234567\"/>"),
        "{twiml}"
    );
    // The stream Twilio opens for this call carries the token the TwiML gave it.
    let token = twiml
        .split("<Parameter name=\"stream_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a stream token in the TwiML");
    let mut ws = connect(&p).await;
    start_with(&mut ws, "CAVOICE", Some(token)).await;
    media(&mut ws, 0).await;
    send(&mut ws, json!({"event": "stop"})).await;
    p.wait_for_log("recording_job for the call", Duration::from_secs(10));
    let rec = &queued_types(&t)[0];
    let job = t.store().fetch_job(&rec.0).await.unwrap().unwrap();
    assert_eq!(job.tenant(), Some("12"));
    assert!(
        job.kwargs["parameters"].get("stream_token").is_none(),
        "the token stays out of the job"
    );
    let unsigned = http
        .post(p.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);

    let _a = connect(&p).await;
    let _b = connect(&p).await;
    let third = tokio_tungstenite::connect_async(upgrade(&p, Some(&stream_signature()))).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = third else {
        panic!("a third stream must be refused")
    };
    assert_eq!(response.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_greeting_is_played_back_then_marked() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    // 0.2 s of tone: ten 20 ms frames.
    let greeting: Vec<u8> = (0..10).flat_map(chunk).collect();
    let path = dir.path().join("greeting.wav");
    let mut file = Vec::new();
    audio::write_wav(&mut file, WavFormat::MULAW_8K_MONO, &greeting).unwrap();
    std::fs::write(&path, file).unwrap();
    let path = path.display().to_string();
    let p = calls(&t, dir.path(), &[("PROSAAS__CALLS__GREETING_PATH", &path)]);
    let mut ws = connect(&p).await;
    start(&mut ws, "CAGREET").await;
    let mut played = Vec::new();
    let mark = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert_eq!(v["streamSid"], "MZCAGREET");
        match v["event"].as_str().unwrap() {
            "media" => played.extend(
                BASE64
                    .decode(v["media"]["payload"].as_str().unwrap())
                    .unwrap(),
            ),
            "mark" => break v,
            other => panic!("unexpected {other}"),
        }
    };
    assert_eq!(played, greeting, "the greeting, frame by frame, in order");
    assert_eq!(mark["mark"]["name"], "greeting-end");
    // The call itself is recorded as usual.
    for n in 0..5 {
        media(&mut ws, n).await;
    }
    send(&mut ws, json!({"event": "stop"})).await;
    p.wait_for_log("recording_job for the call", Duration::from_secs(10));

    // A greeting that is not μ-law 8 kHz mono stops startup with one line.
    let bad = dir.path().join("bad.wav");
    let mut file = Vec::new();
    audio::write_wav(&mut file, WavFormat::PCM16_8K_MONO, &[0; 320]).unwrap();
    std::fs::write(&bad, file).unwrap();
    let bad = bad.display().to_string();
    let out = crate::support::process::run(
        &["--role", "calls"],
        &[
            ("REDIS_URL", &t.url()),
            ("PROSAAS__CALLS__GREETING_PATH", &bad),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be μ-law 8 kHz mono"));
}

/// Waits until the server closes `ws` (a close frame, an error or the end), within 5 s.
async fn closed_by_server(ws: &mut Ws) {
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = ws.next().await {
            if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the stream");
}

/// The value of `name{reason="<reason>"}` in `/metrics`, 0 when absent.
async fn by_reason(p: &ProsaasProcess, name: &str, reason: &str) -> f64 {
    let text = TestApi::new(p).metrics().await.unwrap();
    let prefix = format!("{name}{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// The answer to an upgrade that must be refused: its status and JSON body.
async fn refused_upgrade(req: Request) -> (u16, Value) {
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
        Ok(_) => panic!("the upgrade must be refused"),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: a table of forged upgrades, each tried against the same calls process, then the
// genuine one.
async fn only_twilio_opens_a_stream_and_only_for_the_call_it_was_given() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    let p = calls(
        &t,
        dir.path(),
        &[("PROSAAS__CALLS__IDLE_TIMEOUT_MS", "2000")],
    );
    let (status, body) = refused_upgrade(upgrade(&p, None)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let forged = prosaas::webhooks::twilio::signature("not-the-token", SIGNED_STREAM_URL, &[]);
    let (status, body) = refused_upgrade(upgrade(&p, Some(&forged))).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    assert!(body["detail"].as_str().unwrap().contains("does not match"));

    // Signed by Twilio, but the start names a call it holds no token for: the attack of the
    // issue (a far-future frame right after the start) writes nothing.
    let attack = |sid: &str| {
        json!({"event": "media", "streamSid": format!("MZ{sid}"), "media": {"track": "inbound",
            "timestamp": "21599000", "payload": BASE64.encode([0u8; 160])}})
    };
    let mut no_token = connect(&p).await;
    start_with(&mut no_token, "CANOTOKEN", None).await;
    let _ = no_token
        .send(Message::text(attack("CANOTOKEN").to_string()))
        .await;
    closed_by_server(&mut no_token).await;
    let mut other_call = connect(&p).await;
    start_with(&mut other_call, "CATARGET", Some(&token("CAOTHER"))).await;
    let _ = other_call
        .send(Message::text(attack("CATARGET").to_string()))
        .await;
    closed_by_server(&mut other_call).await;
    let mut other_tenant = connect(&p).await;
    let wrong_tenant = StreamTokens::new(TEST_TWILIO_TOKEN).issue("CATENANT", "13", u64::MAX);
    start_with(&mut other_tenant, "CATENANT", Some(&wrong_tenant)).await;
    closed_by_server(&mut other_tenant).await;

    // A replayed signature opens a socket, but one that never starts gives its slot back
    // (here within the 2 s idle timeout, at most 10 s), however often it says `connected`.
    let mut lingering = connect(&p).await;
    let opened = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            if lingering
                .send(Message::text(json!({"event": "connected"}).to_string()))
                .await
                .is_err()
            {
                return;
            }
            let read = tokio::time::timeout(Duration::from_millis(500), lingering.next()).await;
            if let Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) = read {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a stream without a start was closed");
    assert!(opened.elapsed() >= Duration::from_millis(1900));

    p.wait_for_log("token_mismatch", Duration::from_secs(5));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing on disk"
    );
    assert!(queued_types(&t).is_empty(), "nothing enqueued");
    let name = "prosaas_calls_streams_refused_total";
    assert_eq!(by_reason(&p, name, "unsigned").await, 1.0);
    assert_eq!(by_reason(&p, name, "bad_signature").await, 1.0);
    assert_eq!(by_reason(&p, name, "token_missing").await, 1.0);
    assert_eq!(by_reason(&p, name, "token_mismatch").await, 2.0);
    assert_eq!(by_reason(&p, name, "no_start").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: the second stream is tried while the first is live, then the first's recording
// is read whole.
async fn a_second_stream_for_a_live_call_is_refused_and_the_first_recording_is_untouched() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    let first = calls(&t, dir.path(), &[]);
    let second = calls(&t, dir.path(), &[]);
    // The control: the same audio, recorded with nobody interfering.
    let mut control = connect(&first).await;
    start(&mut control, "CACONTROL").await;
    for n in 0..100 {
        media(&mut control, n).await;
    }
    send(&mut control, json!({"event": "stop"})).await;

    let mut live = connect(&first).await;
    start(&mut live, "CALIVECALL").await;
    for n in 0..50 {
        media(&mut live, n).await;
    }
    let mut redis = t.connection();
    eventually("the live call claimed", Duration::from_secs(5), || {
        let held: Option<String> = redis.get("prosaas:call:CALIVECALL:stream").unwrap();
        async move { held.filter(|h| h != "finalized") }
    })
    .await;
    // Twilio itself (a valid token) opening a second stream for the live call, on this process
    // and on another calls process: both are refused, and their frames write nothing.
    for p in [&first, &second] {
        let mut again = connect(p).await;
        start(&mut again, "CALIVECALL").await;
        let _ = again
            .send(Message::text(
                json!({"event": "media", "media": {"track": "inbound", "timestamp": "0",
                    "payload": BASE64.encode([0u8; 160])}})
                .to_string(),
            ))
            .await;
        closed_by_server(&mut again).await;
    }
    for n in 50..100 {
        media(&mut live, n).await;
    }
    send(&mut live, json!({"event": "stop"})).await;
    eventually("both calls finalized", Duration::from_secs(10), || async {
        (queued_types(&t).len() == 4).then_some(())
    })
    .await;
    let control = std::fs::read(dir.path().join("CACONTROL.inbound.wav")).unwrap();
    let recorded = std::fs::read(dir.path().join("CALIVECALL.inbound.wav")).unwrap();
    assert_eq!(control.len(), 44 + 100 * 160);
    assert!(
        recorded == control,
        "the live call's recording is byte-identical to the control's"
    );
    // A finalized call is not reopened.
    let mut late = connect(&second).await;
    start(&mut late, "CALIVECALL").await;
    closed_by_server(&mut late).await;
    let held: String = redis.get("prosaas:call:CALIVECALL:stream").unwrap();
    assert_eq!(held, "finalized");

    let kinds: Vec<String> = queued_types(&t).into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "recording_job").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "twilio_callback").count(),
        2,
        "{kinds:?}"
    );
    let name = "prosaas_calls_streams_refused_total";
    assert_eq!(by_reason(&first, name, "live").await, 1.0);
    assert_eq!(by_reason(&second, name, "live").await, 1.0);
    assert_eq!(by_reason(&second, name, "finalized").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: three bounds on one calls process, each with the stream that crosses it and the
// recording it leaves.
async fn audio_is_bounded_by_elapsed_time_call_length_and_message_size() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    let p = calls(&t, dir.path(), &[("PROSAAS__CALLS__MAX_CALL_SECS", "2")]);
    // The disk-fill attack's frames, on a real call: dropped and counted, nothing written.
    let mut ws = connect(&p).await;
    start(&mut ws, "CAFUTURE").await;
    media(&mut ws, 0).await;
    for ts in ["21599000", "21599000", "600000"] {
        send(
            &mut ws,
            json!({"event": "media", "media": {"track": "inbound", "timestamp": ts,
                "payload": BASE64.encode([0u8; 160])}}),
        )
        .await;
    }
    send(&mut ws, json!({"event": "stop"})).await;
    p.wait_for_log("recording_job for the call", Duration::from_secs(10));
    let len = std::fs::metadata(dir.path().join("CAFUTURE.inbound.wav"))
        .unwrap()
        .len();
    assert_eq!(len, 44 + 160, "only the frame in time was written");
    assert_eq!(
        by_reason(&p, "prosaas_calls_frames_dropped_total", "timestamp_lead").await,
        3.0
    );

    // A call that goes on past calls.max_call_secs is ended and finalized.
    let mut long = connect(&p).await;
    start(&mut long, "CALONG").await;
    let began = std::time::Instant::now();
    let mut n = 0;
    let ended = loop {
        media(&mut long, n).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(1), long.next()).await
            && matches!(msg, Ok(Message::Close(_)) | Err(_))
        {
            break began.elapsed();
        }
        assert!(
            began.elapsed() < Duration::from_secs(6),
            "the call was not ended"
        );
    };
    assert!(ended >= Duration::from_secs(2), "{ended:?}");
    p.wait_for_log("longest call", Duration::from_secs(5));

    // A message over calls.max_message_bytes (64 KiB) closes the socket; what came before stays.
    let mut big = connect(&p).await;
    start(&mut big, "CABIGMSG").await;
    media(&mut big, 0).await;
    let huge = json!({"event": "media", "media": {"track": "inbound", "timestamp": "20",
        "payload": BASE64.encode(vec![0u8; 60 * 1024])}});
    let _ = big.send(Message::text(huge.to_string())).await;
    closed_by_server(&mut big).await;
    eventually("three calls enqueued", Duration::from_secs(10), || async {
        (queued_types(&t).len() == 6).then_some(())
    })
    .await;
    let wav =
        audio::read_wav(std::fs::File::open(dir.path().join("CABIGMSG.inbound.wav")).unwrap())
            .unwrap();
    assert_eq!(
        wav.data.len(),
        160,
        "the frame before the oversized message"
    );
    assert!(p.logs().contains("Message too long"), "the close names why");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: the floor is crossed while a call is live: the refusal, the finalized call and
// the metric are one sequence.
async fn below_the_free_space_floor_streams_are_refused_and_live_calls_finalize() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    // A floor above any disk: refused at the upgrade, with the reason.
    let full = calls(
        &t,
        dir.path(),
        &[("PROSAAS__RECORDINGS__MIN_FREE_BYTES", "1000000000000000000")],
    );
    let (status, body) = refused_upgrade(upgrade(&full, Some(&stream_signature()))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("disk_low")),
        "{body}"
    );
    let text = TestApi::new(&full).metrics().await.unwrap();
    let free: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("prosaas_recordings_free_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(free > 0.0);
    drop(full);

    // A floor just under today's free space: filling the disk past it ends the live call,
    // which finalizes what it has and enqueues its jobs; new streams are refused until the
    // space returns.
    // The margins are wide: tests running beside this one write to the same disk.
    let stat = rustix::fs::statvfs(dir.path()).unwrap();
    let free = stat.f_bavail * stat.f_frsize;
    let margin = (2u64 << 30).min(free / 4);
    let floor = (free - margin).to_string();
    let p = calls(
        &t,
        dir.path(),
        &[("PROSAAS__RECORDINGS__MIN_FREE_BYTES", floor.as_str())],
    );
    let mut ws = connect(&p).await;
    start(&mut ws, "CAFILLED").await;
    for n in 0..25 {
        media(&mut ws, n).await;
    }
    // Every message handled (connected, start, 25 media) before the disk fills.
    let api = TestApi::new(&p);
    eventually("the frames handled", Duration::from_secs(5), || async {
        let text = api.metrics().await?;
        text.lines()
            .any(|l| l == "prosaas_call_frame_seconds_count 27")
            .then_some(())
    })
    .await;
    let filler_path = dir.path().join("filler");
    let filler = std::fs::File::create(&filler_path).unwrap();
    rustix::fs::fallocate(&filler, rustix::fs::FallocateFlags::empty(), 0, 2 * margin).unwrap();
    closed_by_server(&mut ws).await;
    p.wait_for_log("recording_job for the call", Duration::from_secs(10));
    let wav =
        audio::read_wav(std::fs::File::open(dir.path().join("CAFILLED.inbound.wav")).unwrap())
            .unwrap();
    assert_eq!(wav.duration_secs(), 0.5, "finalized with what it had");
    let (status, _) = refused_upgrade(upgrade(&p, Some(&stream_signature()))).await;
    assert_eq!(status, 503);
    drop(filler);
    let lines = p.logs().lines().count();
    std::fs::remove_file(&filler_path).unwrap();
    p.wait_for_log_after("recordings disk has room", lines, Duration::from_secs(5));
    let mut again = connect(&p).await;
    start(&mut again, "CAROOM").await;
    send(&mut again, json!({"event": "stop"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_twilios_secrets_streams_open_only_in_development_and_it_says_so() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::process::run(&["--role", "calls"], &[("REDIS_URL", &t.url())]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the calls role needs TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL"),
        "{stderr}"
    );
    let dev = calls(
        &t,
        dir.path(),
        &[
            ("TWILIO_AUTH_TOKEN", ""),
            ("PROSAAS__API__ALLOW_MISSING_SECRETS", "true"),
        ],
    );
    assert!(dev.logs().contains("media streams are NOT verified"));
    let (mut ws, _) = tokio_tungstenite::connect_async(upgrade(&dev, None))
        .await
        .unwrap();
    start_with(&mut ws, "CADEV", None).await;
    media(&mut ws, 0).await;
    send(&mut ws, json!({"event": "stop"})).await;
    dev.wait_for_log("recording_job for the call", Duration::from_secs(10));
}
