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
use redis::Commands;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

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

async fn connect(p: &ProsaasProcess) -> Ws {
    let url = format!("ws://{}/ws/twilio/media", p.http_addr());
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket")
        .0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

async fn start(ws: &mut Ws, sid: &str) {
    send(
        ws,
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    )
    .await;
    send(
        ws,
        json!({"event": "start", "sequenceNumber": "1", "streamSid": format!("MZ{sid}"), "start": {
        "accountSid": "AC0", "streamSid": format!("MZ{sid}"), "callSid": sid, "tracks": ["inbound"],
        "customParameters": {"business_id": "12"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}),
    )
    .await;
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
async fn a_ten_second_call_with_dropped_chunks_is_recorded_and_enqueued_once() {
    let t = db();
    let dir = tempfile::tempdir().unwrap();
    let p = calls(&t, dir.path(), &[]);
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
            let reports = store.dashboard().live_calls().await.ok()?;
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
        store.dashboard().live_calls().await.unwrap().is_empty(),
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
    drop(sockets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let url = format!("ws://{}/ws/twilio/media", p.http_addr());
    let third = tokio_tungstenite::connect_async(url).await;
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
