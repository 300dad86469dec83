//! The built-in job types and HTTP targets, run by an in-process worker against a real HTTP
//! server started by the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use prosaas::audio::{self, WavFormat};
use prosaas::jobs::{JobOptions, JobResult, JobStore, NewJob};
use prosaas::worker::http_target::verify;
use serde_json::{Value, json};

use crate::support::worker::InProcWorker;
use crate::support::{db, eventually, kwargs};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>);

impl Seen {
    fn count(&self, path: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .count()
    }
    fn last(&self, path: &str) -> (HeaderMap, Value) {
        let all = self.0.lock().unwrap();
        let (_, h, b) = all
            .iter()
            .rev()
            .find(|(p, _, _)| p == path)
            .expect("a request")
            .clone();
        (h, serde_json::from_slice(&b).unwrap())
    }
}

/// A business application: `/ok` accepts, `/reject` answers 422, `/flaky` answers 503 twice and
/// then 200, `/hang` never answers in time.
async fn business_app(seen: Seen) -> String {
    async fn record(seen: &Seen, path: &str, h: HeaderMap, b: Bytes) -> usize {
        let mut all = seen.0.lock().unwrap();
        all.push((path.to_owned(), h, b));
        all.iter().filter(|(p, _, _)| p == path).count()
    }
    let app = Router::new()
        .route(
            "/ok",
            post(|State(s): State<Seen>, h: HeaderMap, b: Bytes| async move {
                record(&s, "/ok", h, b).await;
                (StatusCode::OK, axum::Json(json!({"delivered": true})))
            }),
        )
        .route(
            "/reject",
            post(|State(s): State<Seen>, h: HeaderMap, b: Bytes| async move {
                record(&s, "/reject", h, b).await;
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown user")
            }),
        )
        .route(
            "/flaky",
            post(|State(s): State<Seen>, h: HeaderMap, b: Bytes| async move {
                let n = record(&s, "/flaky", h, b).await;
                if n <= 2 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .route(
            "/hang",
            post(|State(s): State<Seen>, h: HeaderMap, b: Bytes| async move {
                record(&s, "/hang", h, b).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK
            }),
        )
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn wait_final(store: &JobStore, id: &str) -> prosaas::jobs::JobDetail {
    eventually(
        &format!("job {id} to finish or fail"),
        Duration::from_secs(20),
        || async {
            let d = store.admin().job_detail(id).await.ok()??;
            matches!(d.info.status.as_str(), "finished" | "failed").then_some(d)
        },
    )
    .await
}

fn error_of(d: &prosaas::jobs::JobDetail) -> String {
    match &d.result {
        Some(JobResult::Failed { error }) => error.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_targets_sign_and_map_statuses_to_outcomes() {
    let t = db();
    let store = t.store();
    let seen = Seen::default();
    let base = business_app(seen.clone()).await;
    let env = four_targets(&base);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let w = InProcWorker::start(&t, &env_ref);

    let job = |ty: &str| {
        NewJob::new(
            "default",
            ty,
            kwargs(json!({"lead_id": 7, "tenant_id": "1"})),
        )
    };
    let ok = store.enqueue(job("crm_sync")).await.unwrap();
    let reject = store.enqueue(job("crm_reject")).await.unwrap();
    let flaky = store.enqueue(job("crm_flaky")).await.unwrap();
    let hang = store.enqueue(job("crm_hang")).await.unwrap();
    a_delivery_is_signed_and_its_answer_is_the_result(&store, &seen, &ok).await;

    let d = wait_final(&store, &reject).await;
    assert_eq!(d.info.status, "failed");
    assert_eq!(seen.count("/reject"), 1, "a 4xx is not retried");
    assert!(error_of(&d).contains("422"), "{}", error_of(&d));

    let d = wait_final(&store, &flaky).await;
    assert_eq!(
        d.info.status, "finished",
        "5xx is retried until it succeeds"
    );
    assert_eq!(seen.count("/flaky"), 3);

    let d = wait_final(&store, &hang).await;
    assert_eq!(d.info.status, "failed");
    assert_eq!(
        seen.count("/hang"),
        3,
        "a hung target is retried (first attempt + 2 retries)"
    );
    assert!(
        error_of(&d).contains("did not answer within"),
        "{}",
        error_of(&d)
    );
    w.stop().await;
}

/// Four HTTP targets on the business app (answering, rejecting, failing twice, hanging), with
/// a secret, a 500 ms timeout, no backoff and two retries.
fn four_targets(base: &str) -> Vec<(String, String)> {
    let target = |name: &str, path: &str| -> Vec<(String, String)> {
        let up = name.to_uppercase();
        vec![
            (
                format!("PROSAAS__WORKER__HTTP_TARGETS__{up}__URL"),
                format!("{base}{path}"),
            ),
            (
                format!("PROSAAS__WORKER__HTTP_TARGETS__{up}__SECRET"),
                "s3cret".into(),
            ),
            (
                format!("PROSAAS__WORKER__HTTP_TARGETS__{up}__TIMEOUT_MS"),
                "500".into(),
            ),
        ]
    };
    let mut env: Vec<(String, String)> = [
        target("crm_sync", "/ok"),
        target("crm_reject", "/reject"),
        target("crm_flaky", "/flaky"),
        target("crm_hang", "/hang"),
    ]
    .concat();
    env.push(("PROSAAS__WORKER__BACKOFF_SECS".into(), "0".into()));
    env.push(("PROSAAS__WORKER__MAX_RETRIES".into(), "2".into()));
    env
}

/// The job's arguments are the body, signed with the target's secret and named by the job's
/// id (its idempotency key); what the target answers is the job's result.
async fn a_delivery_is_signed_and_its_answer_is_the_result(
    store: &JobStore,
    seen: &Seen,
    ok: &str,
) {
    let d = wait_final(store, ok).await;
    assert_eq!(d.info.status, "finished");
    assert_eq!(
        d.result,
        Some(JobResult::Finished {
            return_value: Some(json!({"delivered": true}))
        })
    );
    let (headers, body) = seen.last("/ok");
    assert_eq!(
        body,
        json!({"lead_id": 7, "tenant_id": "1"}),
        "the job's arguments are the body"
    );
    let sig = headers["x-prosaas-signature"].to_str().unwrap();
    let raw = serde_json::to_vec(&body).unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        verify("s3cret", sig, &raw, now, Duration::from_secs(60)),
        "signature verifies"
    );
    assert!(!verify("wrong", sig, &raw, now, Duration::from_secs(60)));
    assert_eq!(headers["x-prosaas-job-id"], ok);
    assert_eq!(headers["idempotency-key"], ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_messages_are_normalized_and_delivered() {
    let t = db();
    let store = t.store();
    let seen = Seen::default();
    let base = business_app(seen.clone()).await;
    let url = format!("{base}/ok");
    let w = InProcWorker::start(
        &t,
        &[
            (
                "PROSAAS__WORKER__HTTP_TARGETS__WEBHOOK_PROCESS_JOB__URL",
                &url,
            ),
            (
                "PROSAAS__WORKER__HTTP_TARGETS__WEBHOOK_PROCESS_JOB__SECRET",
                "k",
            ),
        ],
    );
    let messages = json!([
        {"key": {"id": "M1", "remoteJid": "972501111111@s.whatsapp.net", "fromMe": false},
         "message": {"conversation": "hello"}, "pushName": "Noa", "messageTimestamp": 1732800000},
        {"key": {"id": "M2", "remoteJid": "972501111111@s.whatsapp.net", "fromMe": true},
         "message": {"conversation": "our own reply"}},
        {"key": {"id": "M3", "remoteJid": "status@broadcast"}, "message": {"conversation": "story"}},
    ]);
    // Python-side producers use the dotted function path; it resolves to the built-in type.
    let id = store
        .enqueue(NewJob::new(
            "default",
            "server.jobs.webhook_process_job",
            kwargs(json!({"tenant_id": "1", "business_id": 12, "messages": messages})),
        ))
        .await
        .unwrap();
    let d = wait_final(&store, &id).await;
    let Some(JobResult::Finished {
        return_value: Some(result),
    }) = &d.result
    else {
        panic!("{d:?}")
    };
    assert_eq!(result["skipped"], 2);
    assert_eq!(result["messages"].as_array().unwrap().len(), 1);
    assert_eq!(result["messages"][0]["text"], "hello");
    assert_eq!(result["messages"][0]["push_name"], "Noa");
    let (headers, body) = seen.last("/ok");
    assert_eq!(&body, result, "the normalized batch is what gets delivered");
    assert_eq!(headers["x-prosaas-job-type"], "webhook_process_job");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: a table of callbacks delivered out of order, then the one state they leave.
async fn twilio_callbacks_out_of_order_leave_the_latest_state() {
    let t = db();
    let store = t.store();
    let w = InProcWorker::start(&t, &[("PROSAAS__WORKER__CONCURRENCY", "1")]);
    let sid = "CA0123456789abcdef0123456789abcdef";
    // Delivered out of order: completed arrives before ringing and in-progress; one repeats.
    let order = ["completed", "ringing", "in-progress", "completed", "queued"];
    let mut ids = Vec::new();
    for status in order {
        let args = json!({"call_sid": sid, "event_type": status,
                          "params": {"CallSid": sid, "CallStatus": status, "CallDuration": "42"}});
        ids.push(
            store
                .enqueue(NewJob::new("default", "twilio_callback", kwargs(args)))
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        assert_eq!(wait_final(&store, id).await.info.status, "finished");
    }
    let state = store.call_status().call_state(sid).await.unwrap().unwrap();
    assert_eq!(state.status, "completed");
    assert_eq!(state.details["duration_secs"], 42);
    let applied: Vec<bool> = {
        let mut v = Vec::new();
        for id in &ids {
            let d = store.admin().job_detail(id).await.unwrap().unwrap();
            let Some(JobResult::Finished {
                return_value: Some(r),
            }) = d.result
            else {
                panic!()
            };
            v.push(r["applied"].as_bool().unwrap());
        }
        v
    };
    assert_eq!(
        applied,
        [true, false, false, false, false],
        "nothing moves a completed call back"
    );

    let bad = store
        .enqueue(
            NewJob::new(
                "default",
                "twilio_callback",
                kwargs(json!({"call_sid": sid, "event_type": "exploded"})),
            )
            .with_options(JobOptions {
                max_retries: Some(0),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert!(error_of(&wait_final(&store, &bad).await).contains("unknown call status"));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_job_turns_mulaw_into_pcm_with_the_right_duration() {
    let t = db();
    let store = t.store();
    let dir = tempfile::tempdir().unwrap();
    let samples = a_recording_as_the_calls_role_writes_it(dir.path());

    let rec = dir.path().display().to_string();
    let w = InProcWorker::start(&t, &[("PROSAAS__RECORDINGS__DIR", &rec)]);
    let id = store
        .enqueue(NewJob::new(
            "default",
            "recording_job",
            kwargs(json!({"call_sid": "CA1", "path": "CA1.inbound.wav"})),
        ))
        .await
        .unwrap();
    let d = wait_final(&store, &id).await;
    let Some(JobResult::Finished {
        return_value: Some(r),
    }) = &d.result
    else {
        panic!("{d:?}")
    };
    assert_eq!(r["duration_secs"], 2.5);
    assert_eq!(r["files"][0]["frames"], 20_000);

    let pcm = audio::read_wav(std::fs::File::open(dir.path().join("CA1.inbound.pcm.wav")).unwrap())
        .unwrap();
    assert_eq!(pcm.format, WavFormat::PCM16_8K_MONO);
    assert_eq!(pcm.duration_secs(), 2.5);
    let first: Vec<i16> = pcm
        .data
        .chunks(2)
        .take(3)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let expected: Vec<i16> = samples[..3]
        .iter()
        .map(|b| audio::ulaw_to_linear(*b))
        .collect();
    assert_eq!(first, expected, "samples are the decoded μ-law");
    bad_recordings_fail_saying_why(&store).await;
    w.stop().await;
}

/// 2.5 s of a 440 Hz tone at 8 kHz, μ-law, as the calls role writes it, in `CA1.inbound.wav`
/// (and a broken WAV beside it); returns its samples.
fn a_recording_as_the_calls_role_writes_it(dir: &std::path::Path) -> Vec<u8> {
    let samples: Vec<u8> = (0..20_000)
        .map(|i| {
            let v = (f64::from(i) * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 12_000.0;
            audio::linear_to_ulaw(v as i16)
        })
        .collect();
    let mut file = Vec::new();
    audio::write_wav(&mut file, WavFormat::MULAW_8K_MONO, &samples).unwrap();
    std::fs::write(dir.join("CA1.inbound.wav"), &file).unwrap();
    std::fs::write(dir.join("broken.wav"), b"RIFF\x00\x00\x00\x00WAVEjunk").unwrap();
    samples
}

/// A path outside the directory, a broken WAV, a missing file and no file at all each fail the
/// job, permanently, saying which.
async fn bad_recordings_fail_saying_why(store: &JobStore) {
    let no_retry = JobOptions {
        max_retries: Some(0),
        ..Default::default()
    };
    for (args, needle) in [
        (
            json!({"call_sid": "CA1", "path": "../etc/passwd"}),
            "without '..'",
        ),
        (
            json!({"call_sid": "CA1", "path": "broken.wav"}),
            "not a valid WAV",
        ),
        (
            json!({"call_sid": "CA1", "path": "missing.wav"}),
            "cannot open",
        ),
        (
            json!({"call_sid": "CA1"}),
            "one of path, paths or recording_url",
        ),
    ] {
        let id = store
            .enqueue(
                NewJob::new("default", "recording_job", kwargs(args))
                    .with_options(no_retry.clone()),
            )
            .await
            .unwrap();
        let e = error_of(&wait_final(store, &id).await);
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

/// A recording host: `/rec.wav` serves a WAV to basic auth `AC1:twilio-token` only, `/big`
/// declares 2 MB, `/stream` streams 2 MB without declaring it, `/away` redirects off the list.
async fn recording_host(wav: Vec<u8>, seen: Seen) -> String {
    use axum::body::Body;
    use axum::routing::get;
    let app = Router::new()
        .route(
            "/rec.wav",
            get(move |State(s): State<Seen>, h: HeaderMap| async move {
                s.0.lock()
                    .unwrap()
                    .push(("/rec.wav".into(), h.clone(), Bytes::new()));
                // base64("AC1:twilio-token")
                let ok = h.get("authorization").and_then(|v| v.to_str().ok())
                    == Some("Basic QUMxOnR3aWxpby10b2tlbg==");
                if ok {
                    (StatusCode::OK, wav.clone())
                } else {
                    (StatusCode::UNAUTHORIZED, Vec::new())
                }
            }),
        )
        .route("/big", get(|| async { vec![0u8; 2_000_000] }))
        .route(
            "/stream",
            get(|| async {
                let chunks = (0..200).map(|_| Ok::<_, std::io::Error>(vec![0u8; 10_000]));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/away",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [("location", "http://localhost:1/elsewhere")],
                )
            }),
        )
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: a table of hostile recording URLs against one recording host, each with what it
// must not do.
async fn recording_downloads_are_confined_capped_and_authenticated() {
    let t = db();
    let store = t.store();
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<u8> = (0..8_000u32).map(|i| (i % 251) as u8).collect();
    let mut wav = Vec::new();
    audio::write_wav(&mut wav, WavFormat::MULAW_8K_MONO, &samples).unwrap();
    let seen = Seen::default();
    let host = recording_host(wav, seen.clone()).await;
    let rec = dir.path().display().to_string();
    let w = InProcWorker::start(
        &t,
        &[
            ("PROSAAS__RECORDINGS__DIR", &rec),
            ("PROSAAS__RECORDINGS__ALLOWED_HOSTS", "127.0.0.1"),
            ("PROSAAS__RECORDINGS__ALLOW_HTTP", "true"),
            ("PROSAAS__RECORDINGS__MAX_DOWNLOAD_BYTES", "1000000"),
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "twilio-token"),
        ],
    );
    let run = |url: String| {
        let store = store.clone();
        async move {
            let job = NewJob::new(
                "default",
                "recording_job",
                kwargs(json!({"call_sid": "CA9", "recording_url": url})),
            )
            .with_options(JobOptions {
                max_retries: Some(0),
                ..Default::default()
            });
            let id = store.enqueue(job).await.unwrap();
            wait_final(&store, &id).await
        }
    };
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let port = host.rsplit(':').next().unwrap().to_owned();
    for (url, needle) in [
        (
            format!("http://localhost:{port}/rec.wav"),
            "outside recordings.allowed_hosts",
        ),
        (format!("{host}/big"), "over recordings.max_download_bytes"),
        (
            format!("{host}/stream"),
            "over recordings.max_download_bytes",
        ),
        (format!("{host}/away"), "outside recordings.allowed_hosts"),
        ("ftp://127.0.0.1/x".to_owned(), "is not https"),
    ] {
        let e = error_of(&run(url.clone()).await);
        assert!(e.contains(needle), "{url}: {e}");
        assert_eq!(files(), Vec::<String>::new(), "{url} left a file behind");
    }
    let d = run(format!("{host}/rec.wav")).await;
    assert_eq!(d.info.status, "finished", "{d:?}");
    assert_eq!(files(), ["CA9.twilio.pcm.wav", "CA9.twilio.wav"]);
    assert_eq!(seen.count("/rec.wav"), 1, "one authenticated fetch");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: a table of notifications, valid and not, against one gateway, then what the
// gateway received.
async fn push_notifications_are_validated_and_delivered_to_the_gateway() {
    let t = db();
    let store = t.store();
    let seen = Seen::default();
    let base = business_app(seen.clone()).await;
    let url = format!("{base}/ok");
    let w = InProcWorker::start(
        &t,
        &[
            ("PROSAAS__WORKER__HTTP_TARGETS__PUSH_SEND_JOB__URL", &url),
            ("PROSAAS__WORKER__HTTP_TARGETS__PUSH_SEND_JOB__SECRET", "k"),
        ],
    );
    let good = json!({"notification_id": 77, "business_id": 3, "user_id": "u-9",
                      "title": "New lead", "body": "Dana wrote", "data": {"lead": 5}});
    let id = store
        .enqueue(NewJob::new("default", "push_send_job", kwargs(good)))
        .await
        .unwrap();
    assert_eq!(wait_final(&store, &id).await.info.status, "finished");
    let (_, body) = seen.last("/ok");
    assert_eq!(
        body,
        json!({"notification_id": 77, "business_id": 3, "user_id": "u-9", "title": "New lead",
               "body": "Dana wrote", "data": {"lead": 5}})
    );
    for (args, needle) in [
        (
            json!({"title": "t", "body": "b", "user_id": "u"}),
            "notification_id",
        ),
        (
            json!({"notification_id": 1, "title": "t", "body": "b"}),
            "user_id or token",
        ),
        (
            json!({"notification_id": 1, "title": 5, "body": "b", "token": "x"}),
            "title must be a string",
        ),
    ] {
        let id = store
            .enqueue(NewJob::new("default", "push_send_job", kwargs(args)))
            .await
            .unwrap();
        let d = wait_final(&store, &id).await;
        assert!(error_of(&d).contains(needle), "{needle}: {}", error_of(&d));
        assert_eq!(d.attempts, 1, "invalid notifications are not retried");
    }
    w.stop().await;

    // Without a gateway configured the job fails clearly instead of pretending to send.
    let t = db();
    let store = t.store();
    let w = InProcWorker::start(&t, &[]);
    let args = json!({"notification_id": 1, "title": "t", "body": "b", "token": "x"});
    let id = store
        .enqueue(NewJob::new("default", "push_send_job", kwargs(args)))
        .await
        .unwrap();
    assert!(error_of(&wait_final(&store, &id).await).contains("no push gateway is configured"));
    w.stop().await;
}
