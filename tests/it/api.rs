//! The api role with the real binary: webhook de-duplication (the migration guide's checks),
//! Twilio signatures behind a proxy, the internal and admin API, hostile input, metrics.

use std::time::Duration;

use prosaas::webhooks::twilio;
use redis::Commands;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;

use crate::support::client::TestApi;
use crate::support::process::{TEST_PUBLIC_URL, TEST_SECRET, TEST_TOKEN, TEST_TWILIO_TOKEN};
use crate::support::redis_server::TestDb;
use crate::support::{ProsaasProcess, db, process, promtext};

fn api(t: &TestDb) -> ProsaasProcess {
    let p = ProsaasProcess::start("api", &[("REDIS_URL", &t.url())]);
    p.wait_for_log("API mode", Duration::from_secs(20));
    p
}

fn job_count(t: &TestDb) -> usize {
    let keys: Vec<String> = t.connection().keys("rq:job:*").unwrap();
    keys.len()
}

fn webhook(ids: &[&str]) -> Value {
    let messages: Vec<Value> = ids
        .iter()
        .map(|id| json!({"key": {"id": id, "remoteJid": "972500000000@s.whatsapp.net", "fromMe": false},
                         "message": {"conversation": "a private message body"}, "messageTimestamp": 1732800000}))
        .collect();
    json!({"tenantId": "1", "payload": {"messages": messages}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_twice_makes_one_job() {
    let t = db();
    let p = api(&t);
    let client = TestApi::new(&p);
    let (s1, b1) = client.webhook(&webhook(&["TEST123"])).await;
    let (s2, b2) = client.webhook(&webhook(&["TEST123"])).await;
    assert_eq!(
        (s1, s2),
        (StatusCode::OK, StatusCode::OK),
        "the bridge must stop retrying"
    );
    assert_eq!(b1["enqueued"], 1);
    assert_eq!(b2["enqueued"], 0);
    assert_eq!(b2["duplicates"], 1);
    assert_eq!(
        b1["jobs"][0]["job_id"], b2["jobs"][0]["job_id"],
        "a retry maps to the same job"
    );
    let len: usize = t.connection().llen("rq:queue:default").unwrap();
    assert_eq!(len, 1, "redis-cli LLEN rq:queue:default is 1, not 2");
    let id = b1["jobs"][0]["job_id"].as_str().unwrap();
    let job = t.store().fetch_job(id).await.unwrap().unwrap();
    assert_eq!(
        job.tenant(),
        Some("1"),
        "the event's tenantId is the job's tenant"
    );
    p.wait_for_log(
        "Skipped duplicate webhook for msg_id=TEST123",
        Duration::from_secs(5),
    );

    // A batch with 3 new and 2 already seen ids makes 3 jobs.
    let (s, b) = client
        .webhook(&webhook(&["TEST123", "N1", "N2", "N3", "N1"]))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (b["enqueued"].as_u64(), b["duplicates"].as_u64()),
        (Some(3), Some(1)),
        "{b}"
    );
    let len: usize = t.connection().llen("rq:queue:default").unwrap();
    assert_eq!(len, 4);
    let logs = p.logs();
    assert!(
        !logs.contains(TEST_SECRET) && !logs.contains("a private message body"),
        "secrets or payloads logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_retries_from_fifty_connections_make_one_job() {
    let t = db();
    let p = api(&t);
    let url = p.url("/webhook/whatsapp/incoming");
    let body = webhook(&["RACE-1"]);
    let clients: Vec<reqwest::Client> = (0..50)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap()
        })
        .collect();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (c, url, body) = (clients[i % 50].clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(&url)
                .header("X-Internal-Secret", TEST_SECRET)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }));
    }
    let mut enqueued = 0;
    for task in tasks {
        enqueued += task.await.unwrap()["enqueued"].as_u64().unwrap();
    }
    assert_eq!(enqueued, 1, "exactly one request enqueued");
    let len: usize = t.connection().llen("rq:queue:default").unwrap();
    assert_eq!(len, 1);
    assert_eq!(job_count(&t), 1);
}

fn signed_form(path: &str, params: &[(&str, &str)]) -> (String, String) {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig = twilio::signature(
        TEST_TWILIO_TOKEN,
        &format!("{TEST_PUBLIC_URL}{path}"),
        &owned,
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    (sig, body)
}

/// Posts `params` to `path` as Twilio would, signed for the public URL; returns the status.
async fn post_signed(p: &ProsaasProcess, path: &str, params: &[(&str, &str)]) -> StatusCode {
    TestApi::new(p).twilio(path, params).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: one signed callback, then each byte that can change (body, signature, URL)
// changed against the same process.
async fn twilio_callbacks_are_verified_against_the_public_url() {
    let t = db();
    let p = api(&t);
    let http = reqwest::Client::new();
    let status = [
        ("CallSid", "CA42"),
        ("CallStatus", "ringing"),
        ("From", "+972501234567"),
        ("To", "+972722222222"),
    ];
    // Twilio signed the public URL; the request reaches us on 127.0.0.1 through a "proxy".
    let (sig, body) = signed_form("/webhook/twilio/status", &status);
    let send = |sig: String, body: String| {
        http.post(p.url("/webhook/twilio/status"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", sig)
            .body(body)
            .send()
    };
    assert_eq!(
        send(sig.clone(), body.clone()).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(sig.clone(), body.clone()).await.unwrap().status(),
        StatusCode::NO_CONTENT,
        "a retry is acknowledged"
    );
    assert_eq!(job_count(&t), 1, "and de-duplicated by call sid and status");
    let id: String = t.connection().lindex("rq:queue:default", 0).unwrap();
    let job = t.store().fetch_job(&id).await.unwrap().unwrap();
    assert_eq!(job.job_type, "twilio_callback");
    assert_eq!(job.kwargs["event_type"], "ringing");

    // A changed byte anywhere fails: body, signature, or the URL it was signed for.
    let tampered = body.replace("ringing", "completed");
    let r = send(sig.clone(), tampered).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"], "forbidden");
    let local_url = p.url("/webhook/twilio/status");
    let owned: Vec<(String, String)> = status
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let wrong_url_sig = twilio::signature(TEST_TWILIO_TOKEN, &local_url, &owned);
    assert_eq!(
        send(wrong_url_sig, body.clone()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(String::new(), body.clone()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(job_count(&t), 1);
    the_recording_callback_is_a_duplicate_of_the_calls_roles(&t, &p).await;

    // The application's callback URL names the tenant; the signature covers it.
    let path = "/webhook/twilio/status?business_id=shop-7";
    let done = [("CallSid", "CA42"), ("CallStatus", "completed")];
    assert_eq!(post_signed(&p, path, &done).await, StatusCode::NO_CONTENT);
    let id: String = t.connection().lindex("rq:queue:default", -1).unwrap();
    let job = t.store().fetch_job(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.kwargs["event_type"].as_str(), job.tenant()),
        (Some("completed"), Some("shop-7"))
    );
}

/// The calls role enqueued this call's recording already: Twilio's recording callback is a
/// duplicate of it.
async fn the_recording_callback_is_a_duplicate_of_the_calls_roles(t: &TestDb, p: &ProsaasProcess) {
    let calls_side = t
        .store()
        .enqueue_with_dedupe(
            prosaas::jobs::NewJob::new(
                "default",
                "recording_job",
                crate::support::kwargs(json!({"call_sid": "CA42", "path": "CA42.wav"})),
            ),
            "recording:CA42",
            3600,
        )
        .await
        .unwrap();
    assert!(!calls_side.is_duplicate());
    let rec = [
        ("CallSid", "CA42"),
        ("RecordingUrl", "https://api.twilio.com/rec/RE1"),
        ("RecordingSid", "RE1"),
    ];
    assert_eq!(
        post_signed(p, "/webhook/twilio/recording", &rec).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(job_count(t), 2, "one status job and one recording job");
}

/// What Twilio's own validator accepts gets through: the URL signed with its default port,
/// a parameter repeated with the same value, and a JSON body signed through `bodySHA256`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_requests_pass_as_twilios_validator_passes_them() {
    let t = db();
    let p = api(&t);
    let http = reqwest::Client::new();
    let post = |path: &str, content_type: &str, sig: String, body: String| {
        http.post(p.url(path))
            .header("content-type", content_type)
            .header("X-Twilio-Signature", sig)
            .body(body)
            .send()
    };
    let form = "application/x-www-form-urlencoded";
    let params: Vec<(String, String)> = [
        ("CallSid", "CA7"),
        ("CallStatus", "ringing"),
        ("CallSid", "CA7"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let with_port = TEST_PUBLIC_URL.replace(".com", ".com:443");
    let sig = twilio::signature(
        TEST_TWILIO_TOKEN,
        &format!("{with_port}/webhook/twilio/status"),
        &params,
    );
    let r = post("/webhook/twilio/status", form, sig, body)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let json_body = r#"{"CallSid":"CA8","CallStatus":"completed"}"#.to_string();
    let hash = prosaas::hex::hex(&sha2::Sha256::digest(json_body.as_bytes()));
    let path = format!("/webhook/twilio/status?bodySHA256={hash}");
    let sig = twilio::signature(TEST_TWILIO_TOKEN, &format!("{TEST_PUBLIC_URL}{path}"), &[]);
    let r = post(&path, "application/json", sig.clone(), json_body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let tampered = json_body.replace("completed", "failed");
    let r = post(&path, "application/json", sig.clone(), tampered)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // JSON without the hash in the URL is not a Twilio form.
    let r = post("/webhook/twilio/status", "application/json", sig, json_body)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(job_count(&t), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_push_enqueue_and_admin_api() {
    let t = db();
    let p = api(&t);
    let api = TestApi::new(&p);
    let push = json!({"notification_id": 9, "user_id": "u1", "title": "Hi", "body": "New lead"});
    let (_, r1) = api.post("/api/notifications/push", Some(&push)).await;
    let (_, r2) = api.post("/api/notifications/push", Some(&push)).await;
    assert_eq!(
        (r1["duplicate"].as_bool(), r2["duplicate"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(r1["job_id"], r2["job_id"]);

    let req = json!({"queue": "high", "job_type": "diag.fail", "args": {"permanent": true}, "options": {"max_retries": 0}});
    let (status, r) = api.post("/api/jobs/enqueue", Some(&req)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = r["job_id"].as_str().unwrap().to_owned();

    let (_, job) = api.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["status"], "queued");
    assert_eq!(job["origin"], "high");
    a_tenant_is_stored_as_meta(&api).await;
    assert_eq!(api.get("/api/jobs/nope").await.0, StatusCode::NOT_FOUND);

    // Fail it (as a worker would), list, requeue, delete.
    let w = crate::support::worker::InProcWorker::start(&t, &[]);
    crate::support::eventually("the job to fail", Duration::from_secs(10), || async {
        let d = t.store().fetch_job(&id).await.ok()??;
        (d.status == "failed").then_some(())
    })
    .await;
    w.stop().await;
    the_failed_list_pages_and_names_bad_queries(&api, &id).await;
    let requeue = format!("/api/jobs/failed/{id}/requeue");
    assert_eq!(api.post(&requeue, None).await.0, StatusCode::OK);
    assert_eq!(
        api.post(&requeue, None).await.0,
        StatusCode::CONFLICT,
        "no longer failed"
    );
    assert_eq!(
        api.delete(&format!("/api/jobs/{id}")).await.0,
        StatusCode::OK
    );
    let len: usize = t.connection().llen("rq:queue:high").unwrap();
    assert_eq!(len, 0, "deleted from its queue too");
    // The push notification failed too (no push gateway is configured here): requeue-all
    // puts it back.
    let push_id = r1["job_id"].as_str().unwrap();
    assert_eq!(
        t.store().fetch_job(push_id).await.unwrap().unwrap().status,
        "failed"
    );
    let (_, all) = api.post("/api/jobs/failed/requeue-all", None).await;
    assert_eq!(all["requeued"], 1);
    assert_eq!(
        t.store().fetch_job(push_id).await.unwrap().unwrap().status,
        "queued"
    );
}

/// A tenant, given at the top or in meta (not both, differing), is stored as meta.tenant; a
/// malformed one is a 400 naming the rule.
async fn a_tenant_is_stored_as_meta(api: &TestApi) {
    let with_tenant = json!({"job_type": "diag.noop", "tenant": "shop-7"});
    let (status, r) = api.post("/api/jobs/enqueue", Some(&with_tenant)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let (_, job) = api
        .get(&format!("/api/jobs/{}", r["job_id"].as_str().unwrap()))
        .await;
    assert_eq!(job["meta"]["tenant"], "shop-7", "{job}");
    for (bad, why) in [
        (
            json!({"job_type": "t", "tenant": "a b"}),
            "1-128 characters",
        ),
        (json!({"job_type": "t", "tenant": ""}), "1-128 characters"),
        (
            json!({"job_type": "t", "options": {"meta": {"tenant": 7}}}),
            "1-128 characters",
        ),
        (
            json!({"job_type": "t", "tenant": "x", "options": {"meta": {"tenant": "y"}}}),
            "differs",
        ),
    ] {
        let (status, r) = api.post("/api/jobs/enqueue", Some(&bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {r}");
        assert!(r["detail"].as_str().unwrap().contains(why), "{bad}: {r}");
    }
}

/// The failed list shows the job and its error; a malformed query is a JSON 400 naming the
/// parameter, like every other bad input; a cursor past the end is an empty page.
async fn the_failed_list_pages_and_names_bad_queries(api: &TestApi, id: &str) {
    let (_, failed) = api.get("/api/jobs/failed?queue=high&limit=10").await;
    assert_eq!(failed["jobs"][0]["id"], id);
    let (status, bad) = api.get("/api/jobs/failed?limit=ten").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"], "invalid_request");
    assert!(bad["detail"].as_str().unwrap().contains("limit"), "{bad}");
    let far = format!("/api/jobs/failed?queue=high&cursor={}", usize::MAX);
    let (status, page) = api.get(&far).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["jobs"], json!([]));
    assert!(
        failed["jobs"][0]["result"]["error"]
            .as_str()
            .unwrap()
            .contains("PermanentJobError")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: a table of hostile requests against one api process; after all of them, nothing
// changed.
async fn hostile_input_gets_a_json_4xx_and_changes_nothing() {
    let t = db();
    let p = ProsaasProcess::start(
        "api",
        &[
            ("REDIS_URL", &t.url()),
            ("PROSAAS__HTTP__BODY_LIMIT_BYTES", "4096"),
        ],
    );
    p.wait_for_log("API mode", Duration::from_secs(20));
    let http = reqwest::Client::new();
    let hook = p.url("/webhook/whatsapp/incoming");
    let auth = format!("Bearer {TEST_TOKEN}");
    let json_ct = "application/json";
    let big = format!(
        "{{\"tenantId\":\"1\",\"payload\":{{\"messages\":[{{\"key\":{{\"id\":\"{}\"}}}}]}}}}",
        "x".repeat(10_000)
    );
    type Case = (
        &'static str,
        reqwest::RequestBuilder,
        StatusCode,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("malformed JSON", http.post(&hook).header("X-Internal-Secret", TEST_SECRET).header("content-type", json_ct).body("{\"tenantId\": "), StatusCode::BAD_REQUEST, "malformed_json"),
        ("wrong types", http.post(&hook).header("X-Internal-Secret", TEST_SECRET).json(&json!({"tenantId": "1", "payload": {"messages": {"a": 1}}})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("message without id", http.post(&hook).header("X-Internal-Secret", TEST_SECRET).json(&json!({"tenantId": "1", "payload": {"messages": [{"key": {"id": "ok"}}, {"key": {}}]}})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("tenant as an object", http.post(&hook).header("X-Internal-Secret", TEST_SECRET).json(&json!({"tenantId": {"$ne": 1}, "payload": {"messages": []}})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("oversized body", http.post(&hook).header("X-Internal-Secret", TEST_SECRET).header("content-type", json_ct).body(big.clone()), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        ("wrong content type", http.post(&hook).header("X-Internal-Secret", TEST_SECRET).header("content-type", "text/plain").body("{}"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("missing secret", http.post(&hook).json(&webhook(&["A"])), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("wrong secret", http.post(&hook).header("X-Internal-Secret", "guess").json(&webhook(&["A"])), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("twilio without signature", http.post(p.url("/webhook/twilio/status")).header("content-type", "application/x-www-form-urlencoded").body("CallSid=CA1&CallStatus=ringing"), StatusCode::FORBIDDEN, "forbidden"),
        ("twilio as JSON", http.post(p.url("/webhook/twilio/status")).json(&json!({"CallSid": "CA1"})), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("push without token", http.post(p.url("/api/notifications/push")).json(&json!({"notification_id": 1, "title": "t", "body": "b", "token": "x"})), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("push with a wrong token", http.post(p.url("/api/notifications/push")).header("authorization", "Bearer nope").json(&json!({})), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("push missing fields", http.post(p.url("/api/notifications/push")).header("authorization", &auth).json(&json!({"title": "t"})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("enqueue unknown field", http.post(p.url("/api/jobs/enqueue")).header("authorization", &auth).json(&json!({"job_type": "t", "evil": true})), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("enqueue bad job id", http.post(p.url("/api/jobs/enqueue")).header("authorization", &auth).json(&json!({"job_type": "t", "options": {"job_id": "../x"}})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("enqueue bad queue", http.post(p.url("/api/jobs/enqueue")).header("authorization", &auth).json(&json!({"job_type": "t", "queue": "a b"})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("enqueue unserved queue", http.post(p.url("/api/jobs/enqueue")).header("authorization", &auth).json(&json!({"job_type": "t", "queue": "tenant-5000"})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("enqueue huge dedupe ttl", http.post(p.url("/api/jobs/enqueue")).header("authorization", &auth).json(&json!({"job_type": "t", "dedupe_key": "k", "dedupe_ttl": 18446744073709551615u64})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("enqueue zero dedupe ttl", http.post(p.url("/api/jobs/enqueue")).header("authorization", &auth).json(&json!({"job_type": "t", "dedupe_key": "k", "dedupe_ttl": 0})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("enqueue huge timeout", http.post(p.url("/api/jobs/enqueue")).header("authorization", &auth).json(&json!({"job_type": "t", "options": {"timeout": 9223372036854775807i64}})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("enqueue huge retries", http.post(p.url("/api/jobs/enqueue")).header("authorization", &auth).json(&json!({"job_type": "t", "options": {"max_retries": 4000000000u64}})), StatusCode::BAD_REQUEST, "invalid_request"),
        ("admin without token", http.get(p.url("/api/jobs/failed")), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("wrong method", http.get(&hook), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("unknown path", http.get(p.url("/admin.php")), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (what, req, status, error) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{what}");
        let body: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert_eq!(body["error"], error, "{what}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {body}"
        );
    }
    assert_eq!(job_count(&t), 0, "no hostile request enqueued anything");
    let keys: Vec<String> = t.connection().keys("*").unwrap();
    assert!(keys.is_empty(), "nothing at all was written: {keys:?}");
    let logs = p.logs();
    for secret in [TEST_SECRET, TEST_TOKEN, TEST_TWILIO_TOKEN] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
}

#[test]
fn the_api_role_refuses_to_start_without_its_secrets() {
    let t = db();
    let out = process::command(
        &["--role", "api"],
        &[("REDIS_URL", &t.url()), ("INTERNAL_SECRET", "s")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("INTERNAL_API_TOKEN, TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL"),
        "{err}"
    );
}

/// The Prometheus text format, strictly enough: `# HELP`/`# TYPE` comments, and samples
/// `name{labels} value` with a parseable value.
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = series
            .split_once('{')
            .map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        samples.push((name.to_owned(), labels.to_owned(), value));
    }
    samples
}

fn sample(samples: &[(String, String, f64)], name: &str, label: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && l.contains(label))
        .map(|(_, _, v)| *v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: the api's exposition, then a worker's once jobs flowed, each parsed strictly
// and read for the samples the same jobs moved.
async fn metrics_parse_and_move_as_jobs_flow() {
    let t = db();
    let p = api(&t);
    let http = reqwest::Client::new();
    let scrape =
        || async { parse_prometheus(&promtext::scrape_clean(&http, p.url("/metrics")).await) };
    let client = TestApi::new(&p);
    client.webhook(&webhook(&["M1", "M2"])).await;
    client.webhook(&webhook(&["M1"])).await;
    let s = scrape().await;
    assert_eq!(
        sample(&s, "prosaas_jobs_enqueued_total", "source=\"whatsapp\""),
        2.0
    );
    assert_eq!(
        sample(&s, "prosaas_jobs_deduplicated_total", "source=\"whatsapp\""),
        1.0
    );
    assert_eq!(
        sample(
            &s,
            "prosaas_queue_jobs",
            "queue=\"default\",state=\"queued\""
        ),
        2.0
    );
    assert_eq!(sample(&s, "prosaas_redis_up", ""), 1.0);
    assert!(
        sample(
            &s,
            "prosaas_http_requests_total",
            "route=\"/webhook/whatsapp/incoming\",status=\"200\""
        ) >= 2.0
    );

    // The worker's own /metrics counts what it processed.
    let mut w = ProsaasProcess::start("worker", &[("REDIS_URL", &t.url())]);
    w.wait_for_log("worker registered", Duration::from_secs(20));
    let worker_api = TestApi::new(&w);
    crate::support::eventually("both jobs processed", Duration::from_secs(10), || async {
        let text = worker_api.metrics().await?;
        let s = parse_prometheus(&text);
        (sample(
            &s,
            "prosaas_jobs_processed_total",
            "job_type=\"webhook_process_job\",outcome=\"finished\"",
        ) == 2.0)
            .then_some(())
    })
    .await;
    let s = parse_prometheus(&promtext::scrape_clean(&http, w.url("/metrics")).await);
    let build = format!(
        "version=\"{}\",commit=\"{}\"",
        prosaas::version::VERSION,
        prosaas::version::COMMIT
    );
    assert_eq!(
        sample(&s, "prosaas_build_info", &build),
        1.0,
        "the build this process runs"
    );
    assert!(
        s.iter()
            .any(|(n, _, _)| n == "prosaas_job_duration_seconds_bucket"),
        "durations are histograms"
    );
    assert!(
        s.iter()
            .any(|(n, _, _)| n == "prosaas_job_start_latency_seconds_count")
    );
    assert!(w.stop().success());
}

#[test]
fn alert_rules_parse_and_name_only_exported_metrics() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/alerts.yml"
    ))
    .unwrap();
    let doc = yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap()
        .remove(0);
    let rules = doc["groups"][0]["rules"].as_vec().expect("rules");
    assert!(rules.len() >= 5);
    let mut named = Vec::new();
    for r in rules {
        let expr = r["expr"].as_str().expect("expr");
        assert!(r["alert"].as_str().is_some() && r["annotations"]["summary"].as_str().is_some());
        for token in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if token.starts_with("prosaas_") {
                assert!(
                    prosaas::metrics::ALL.contains(&token),
                    "alert uses unexported metric {token}"
                );
                named.push(token.to_owned());
            }
        }
    }
    for needed in [
        "prosaas_queue_jobs",
        "prosaas_queue_oldest_job_age_seconds",
        "prosaas_jobs_processed_total",
        "prosaas_scheduler_lock_held",
        "prosaas_scheduler_last_tick_timestamp_seconds",
        "prosaas_tenant_oldest_job_age_seconds",
        "prosaas_recordings_free_bytes",
    ] {
        assert!(named.iter().any(|n| n == needed), "no alert on {needed}");
    }
}

/// Every operation of the generated document, called once and answered as its schema says
/// (`TestApi` checks each answer; see `support::schema`), success and the documented refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_its_schema_says() {
    let t = db();
    let p = api(&t);
    each_api_role_operation_once(&TestApi::new(&p)).await;
    let calls = ProsaasProcess::start("calls", &[("REDIS_URL", &t.url())]);
    calls.wait_for_log("accepting Twilio media streams", Duration::from_secs(20));
    let voice = [("CallSid", "CA8")];
    let (status, _) = TestApi::new(&calls).twilio("/twilio/voice", &voice).await;
    assert_eq!(status, StatusCode::OK);

    // The WebSocket upgrade's answers are checked by the calls tests, with a WebSocket client.
    let mut missing = crate::support::schema::documented();
    missing.retain(|op| op != "GET /ws/twilio/media");
    let checked = crate::support::schema::checked();
    missing.retain(|op| !checked.contains(op));
    assert!(missing.is_empty(), "never called: {missing:?}");
}

/// Each operation of the api role: its success, and a documented refusal where one is cheap.
async fn each_api_role_operation_once(api: &TestApi) {
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
        "/api/jobs/health",
    ] {
        assert_eq!(api.get(path).await.0, StatusCode::OK, "{path}");
    }
    assert_eq!(api.webhook(&webhook(&["S1"])).await.0, StatusCode::OK);
    let call = [("CallSid", "CA7"), ("CallStatus", "completed")];
    let recording = [
        ("CallSid", "CA7"),
        ("RecordingUrl", "https://api.twilio.com/r/RE7"),
        ("RecordingSid", "RE7"),
    ];
    let (status, _) = api.twilio("/webhook/twilio/status", &call).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.twilio("/webhook/twilio/recording", &recording).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let push = json!({"notification_id": 7, "user_id": 1, "title": "t", "body": "b"});
    let (status, _) = api.post("/api/notifications/push", Some(&push)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let noop = json!({"job_type": "diag.noop"});
    let (status, job) = api.post("/api/jobs/enqueue", Some(&noop)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = job["job_id"].as_str().unwrap();
    assert_eq!(api.get(&format!("/api/jobs/{id}")).await.0, StatusCode::OK);
    assert_eq!(api.get("/api/jobs/failed").await.0, StatusCode::OK);
    let (status, _) = api.post("/api/jobs/failed/requeue-all", None).await;
    assert_eq!(status, StatusCode::OK);
    let requeue = format!("/api/jobs/failed/{id}/requeue");
    assert_eq!(
        api.post(&requeue, None).await.0,
        StatusCode::CONFLICT,
        "not failed"
    );
    let stop = format!("/api/jobs/{id}/stop");
    assert_eq!(api.post(&stop, None).await.1["result"], "not_running");
    let cancel = format!("/api/jobs/{id}/cancel");
    assert_eq!(api.post(&cancel, None).await.1["result"], "canceled");
    assert_eq!(
        api.delete(&format!("/api/jobs/{id}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&format!("/api/jobs/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/api/jobs/bad%20id").await.0,
        StatusCode::BAD_REQUEST
    );
    pause_and_unpause(api).await;
}

/// The queue pause operations: a pause, its repeat, a refusal, an unpause.
async fn pause_and_unpause(api: &TestApi) {
    let (status, paused) = api.post("/api/queues/default/pause", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&paused["paused"], &paused["changed"]),
        (&json!(true), &json!(true))
    );
    let again = api.post("/api/queues/default/pause", None).await.1;
    assert_eq!(again["changed"], false, "idempotent");
    let (status, _) = api.post("/api/queues/bad%20q/pause", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, unpaused) = api.post("/api/queues/default/unpause", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unpaused["paused"], false);
}

#[test]
fn the_openapi_document_lists_exactly_the_served_routes() {
    let doc: Value = serde_json::to_value(prosaas::http::openapi()).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut served = Vec::new();
    // The files directly in src/http: the machine API. The dashboard's routes (src/http/dashboard/)
    // serve its own pages and their data, tested in tests/it/dashboard.rs, not documented here.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        for chunk in text
            .split(".route(\n")
            .flat_map(|c| c.split(".route("))
            .skip(1)
        {
            let path = chunk.trim_start().split('"').nth(1).unwrap().to_owned();
            let rest = &chunk[..chunk.find("))").map_or(chunk.len(), |i| i + 1)];
            for method in ["get", "post", "delete", "put", "patch"] {
                if rest.contains(&format!("{method}(")) || rest.contains(&format!(".{method}(")) {
                    served.push((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    served.sort();
    served.dedup();
    assert_eq!(
        served, documented,
        "the OpenAPI document (src/http/api_doc.rs) is out of step with the routes"
    );
}

/// An explicit `job_id` that is waiting or running is not pushed again (409 naming its state);
/// once it is gone, the id can be enqueued again. A de-duplicated webhook whose job was deleted
/// is admitted again on the provider's next retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_ids_and_deleted_jobs() {
    let t = db();
    let p = api(&t);
    let api = TestApi::new(&p);
    let req = json!({"job_type": "crm_sync", "options": {"job_id": "crm-sync-7"}});
    let enqueue = || api.post("/api/jobs/enqueue", Some(&req));
    assert_eq!(enqueue().await.0, StatusCode::ACCEPTED);
    let (status, err) = enqueue().await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"], "conflict");
    assert!(err["detail"].as_str().unwrap().contains("queued"), "{err}");
    assert_eq!(job_count(&t), 1);
    assert!(api.delete("/api/jobs/crm-sync-7").await.0.is_success());
    assert_eq!(enqueue().await.0, StatusCode::ACCEPTED);

    let (_, first) = api.webhook(&webhook(&["DEL-ME"])).await;
    let id = first["jobs"][0]["job_id"].as_str().unwrap().to_owned();
    assert!(api.delete(&format!("/api/jobs/{id}")).await.0.is_success());
    let (_, retry) = api.webhook(&webhook(&["DEL-ME"])).await;
    assert_eq!(retry["duplicates"], 0, "{retry}");
    assert_eq!(retry["enqueued"], 1);
}
