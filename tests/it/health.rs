//! `/api/jobs/health` tells the truth through a Redis outage and recovers without a restart;
//! at startup every role checks the Redis settings that jobs depend on.

use std::time::Duration;

use prosaas::jobs::NewJob;
use serde_json::{Value, json};

use crate::support::client::TestApi;
use crate::support::process::{TEST_PUBLIC_URL, TEST_SECRET, TEST_TOKEN, TEST_TWILIO_TOKEN};
use crate::support::{ProsaasProcess, TestRedis, eventually, kwargs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_while_redis_is_down_and_healthy_after_it_returns() {
    let mut redis = TestRedis::start();
    let url = redis.url();
    let p = ProsaasProcess::start("api", &[("REDIS_URL", &url)]);
    const HEALTH: &str = "/api/jobs/health";
    let api = TestApi::new(&p);

    let store = crate::support::redis_server::TestDb::store_for(&url);
    for i in 0..2 {
        store
            .enqueue(NewJob::new("default", "t", kwargs(json!({"i": i}))))
            .await
            .unwrap();
    }
    let (status, body) = api.get(HEALTH).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["queues"]["default"]["queued"], 2);
    assert_eq!(body["queues"]["default"]["started"], 0);
    assert_eq!(
        body["queues"]["high"]["queued"], 0,
        "configured queues are listed"
    );
    assert_eq!(body["scheduler"]["lock_held"], false);
    assert_eq!(body["scheduler"]["last_tick"], Value::Null);

    redis.kill();
    let started = std::time::Instant::now();
    let (status, body) = api.get(HEALTH).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "health must answer promptly while Redis is down"
    );
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unhealthy");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(api.status("/readyz").await, 503);
    assert_eq!(api.status("/healthz").await, 200, "liveness ignores Redis");
    every_route_answers_unavailable(&p).await;

    redis.restart();
    eventually("health to recover", Duration::from_secs(15), || async {
        let (status, _) = api.try_get(HEALTH).await?;
        (status == 200).then_some(())
    })
    .await;
    let (_, body) = api.get(HEALTH).await;
    assert_eq!(body["status"], "healthy");
    assert_eq!(
        body["queues"]["default"]["queued"], 0,
        "the restarted Redis is empty"
    );
    assert_eq!(api.status("/readyz").await, 200);
    assert!(p.logs().contains("API mode"), "same process throughout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_scheduler_tick_makes_health_degraded() {
    let t = crate::support::db();
    let p = ProsaasProcess::start(
        "api",
        &[
            ("REDIS_URL", &t.url()),
            ("PROSAAS__SCHEDULER__TICK_INTERVAL_MS", "1000"),
        ],
    );
    let api = TestApi::new(&p);
    let set_tick = |age: chrono::Duration| {
        let tick = (chrono::Utc::now() - age).to_rfc3339();
        let _: () = redis::cmd("HSET")
            .arg("prosaas:scheduler:health")
            .arg("last_tick")
            .arg(tick)
            .query(&mut t.connection())
            .unwrap();
    };
    set_tick(chrono::Duration::seconds(10));
    let (_, body) = api.get("/api/jobs/health").await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("scheduler last tick"),
        "{body}"
    );
    set_tick(chrono::Duration::milliseconds(500));
    let (_, body) = api.get("/api/jobs/health").await;
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["reasons"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_or_stale_queues_make_health_degraded() {
    let t = crate::support::db();
    let p = ProsaasProcess::start(
        "api",
        &[
            ("REDIS_URL", &t.url()),
            ("PROSAAS__API__ALERTS__QUEUE_DEPTH", "2"),
            (
                "PROSAAS__API__ALERTS__QUEUES__LOW__OLDEST_JOB_AGE_SECS",
                "60",
            ),
        ],
    );
    let api = TestApi::new(&p);
    let store = t.store();
    let health = || async { api.get("/api/jobs/health").await.1 };
    for i in 0..2 {
        store
            .enqueue(NewJob::new("default", "t", kwargs(json!({"i": i}))))
            .await
            .unwrap();
    }
    assert_eq!(health().await["status"], "healthy");
    store
        .enqueue(NewJob::new("default", "t", kwargs(json!({"i": 3}))))
        .await
        .unwrap();
    let body = health().await;
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        body["reasons"],
        json!(["queue default holds 3 jobs (alert threshold 2)"])
    );

    let old = store
        .enqueue(NewJob::new("low", "t", kwargs(json!({}))))
        .await
        .unwrap();
    let stale = prosaas::jobs::rq_timestamp(chrono::Utc::now() - chrono::Duration::seconds(90));
    let _: () = redis::cmd("HSET")
        .arg(format!("rq:job:{old}"))
        .arg("enqueued_at")
        .arg(stale)
        .query(&mut t.connection())
        .unwrap();
    let reasons = health().await["reasons"].clone();
    assert!(
        reasons.as_array().unwrap().iter().any(|r| r
            .as_str()
            .unwrap()
            .starts_with("the oldest job on low has waited 9")),
        "{reasons}"
    );
}

/// An evicting `maxmemory-policy` can lose jobs: every role warns about it at startup, and
/// names the per-result stream reservation as a cost. A safe, lean Redis gets neither.
#[test]
fn startup_names_an_evicting_redis_and_a_costly_stream_setting() {
    let redis = TestRedis::start();
    let url = redis.url();
    let set = |name: &str, value: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(&mut redis.connection(0))
            .unwrap();
    };
    set("maxmemory-policy", "allkeys-lru");
    set("stream-node-max-bytes", "4096");
    let mut p = ProsaasProcess::start("worker", &[("REDIS_URL", &url)]);
    p.wait_for_log("Redis configuration checked", Duration::from_secs(20));
    let logs = p.logs();
    let line = |needle: &str| logs.lines().find(|l| l.contains(needle)).map(str::to_owned);
    let eviction = line("maxmemory-policy is allkeys-lru").expect("an eviction warning");
    assert!(eviction.contains("WARN"), "{eviction}");
    let stream = line("stream-node-max-bytes is 4096").expect("a stream cost note");
    assert!(stream.contains("INFO"), "{stream}");
    assert!(p.stop().success());

    set("maxmemory-policy", "noeviction");
    set("stream-node-max-bytes", "512");
    let mut p = ProsaasProcess::start("api", &[("REDIS_URL", &url)]);
    p.wait_for_log("Redis configuration checked", Duration::from_secs(20));
    let logs = p.logs();
    assert!(
        !logs.contains("maxmemory-policy is") && !logs.contains("stream-node-max-bytes is"),
        "{logs}"
    );
    assert!(p.stop().success());
}

/// Ingress queues are settings, and a queue whose jobs wait with no worker listening turns the
/// health `degraded`, naming it, until a worker registers on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_nobody_will_run_are_reported() {
    let t = crate::support::db();
    let url = t.url();
    let p = ProsaasProcess::start(
        "api",
        &[
            ("REDIS_URL", &url),
            ("PROSAAS__API__INGRESS_QUEUES__WHATSAPP", "high"),
            ("PROSAAS__API__ALERTS__UNSERVED_SECS", "1"),
        ],
    );
    let api = crate::support::client::TestApi::new(&p);
    let (status, _) = api
        .webhook(&json!({"tenantId": "1", "payload": {"messages": [
            {"key": {"id": "UNSERVED-1", "remoteJid": "972500000000@s.whatsapp.net"},
             "message": {"conversation": "hi"}}]}}))
        .await;
    assert_eq!(status, 200);
    let mut c = t.connection();
    let high: usize = redis::Commands::llen(&mut c, "rq:queue:high").unwrap();
    assert_eq!(
        high, 1,
        "the WhatsApp job went to the configured ingress queue"
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, body) = api.get("/api/jobs/health").await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["queues"]["high"]["workers"], 0);
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("queue high has jobs waiting") && reasons.contains("no registered worker"),
        "{reasons}"
    );

    // A worker listening on `high` serves it (and runs the job): the reason goes.
    let w = ProsaasProcess::start(
        "worker",
        &[("REDIS_URL", &url), ("PROSAAS__WORKER__QUEUES", "high")],
    );
    w.wait_for_log("worker registered", Duration::from_secs(20));
    crate::support::eventually("the reason to clear", Duration::from_secs(10), || async {
        let (_, body) = api.get("/api/jobs/health").await;
        (!body["reasons"].to_string().contains("no registered worker")).then_some(())
    })
    .await;
}

/// While Redis is down, every route that needs it answers 503 `unavailable` with `Retry-After`:
/// a provider or operator retries, and a retried event is de-duplicated.
// Long on purpose: one table of every route that needs Redis, each asked while the same Redis is
// down.
async fn every_route_answers_unavailable(p: &ProsaasProcess) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let webhook = json!({"tenantId": "1", "payload": {"messages": [{"key": {"id": "M1",
        "remoteJid": "972500000000@s.whatsapp.net"}, "message": {"conversation": "hi"}}]}});
    let twilio: Vec<(String, String)> = vec![
        ("CallSid".into(), "CA1".into()),
        ("CallStatus".into(), "ringing".into()),
    ];
    let signature = prosaas::webhooks::twilio::signature(
        TEST_TWILIO_TOKEN,
        &format!("{TEST_PUBLIC_URL}/webhook/twilio/status"),
        &twilio,
    );
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&twilio)
        .finish();
    let requests = [
        (
            "whatsapp webhook",
            http.post(p.url("/webhook/whatsapp/incoming"))
                .header("X-Internal-Secret", TEST_SECRET)
                .json(&webhook),
        ),
        (
            "twilio status",
            http.post(p.url("/webhook/twilio/status"))
                .header("X-Twilio-Signature", signature)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form),
        ),
        (
            "push",
            http.post(p.url("/api/notifications/push"))
                .bearer_auth(TEST_TOKEN)
                .json(&json!({"notification_id": "n1", "user_id": "u", "title": "t", "body": "b"})),
        ),
        (
            "enqueue",
            http.post(p.url("/api/jobs/enqueue"))
                .bearer_auth(TEST_TOKEN)
                .json(&json!({"job_type": "t", "queue": "default"})),
        ),
        (
            "failed jobs",
            http.get(p.url("/api/jobs/failed?queue=default"))
                .bearer_auth(TEST_TOKEN),
        ),
        (
            "job detail",
            http.get(p.url("/api/jobs/some-id")).bearer_auth(TEST_TOKEN),
        ),
        (
            "requeue",
            http.post(p.url("/api/jobs/failed/some-id/requeue"))
                .bearer_auth(TEST_TOKEN),
        ),
        (
            "jobs health",
            http.get(p.url("/api/jobs/health")).bearer_auth(TEST_TOKEN),
        ),
    ];
    for (what, request) in requests {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 503, "{what}");
        assert_eq!(
            r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
            Some("1"),
            "{what}"
        );
        let body: Value = r.json().await.unwrap();
        if what != "jobs health" {
            assert_eq!(body["error"], "unavailable", "{what}: {body}");
        }
    }
}
