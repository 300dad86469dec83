//! The job layout is RQ's (rq-protocol.md §3.0, §6.3 b), checked on the raw Redis data.

use std::collections::HashMap;
use std::io::Read;

use prosaas::jobs::{JobOptions, NewJob, QueueStats, parse_rq_timestamp};
use redis::Commands;
use serde_json::{Value, json};

use crate::support::{db, kwargs};

fn inflate(bytes: &[u8]) -> Value {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("data is zlib");
    serde_json::from_slice(&out).expect("data is JSON")
}

fn field(h: &HashMap<String, Vec<u8>>, k: &str) -> String {
    String::from_utf8(h.get(k).unwrap_or_else(|| panic!("no field {k}")).clone()).unwrap()
}

#[tokio::test]
// Long on purpose: every field of RQ's job hash, checked against the protocol note in one place.
async fn enqueue_writes_the_rq_job_layout() {
    let t = db();
    let store = t.store();
    let opts = JobOptions {
        meta: kwargs(json!({"tenant_id": "7", "business_id": 12})),
        result_ttl: Some(60),
        max_retries: Some(2),
        retry_intervals: Some(vec![10, 60]),
        ..Default::default()
    };
    let job = NewJob::new(
        "default",
        "webhook_process_job",
        kwargs(json!({"tenant_id": "7", "n": 1})),
    )
    .with_options(opts);
    let id = store.enqueue(job).await.unwrap();
    assert!(prosaas::jobs::is_valid_job_id(&id));
    assert_eq!(id.len(), 36, "a UUID v4 string, as RQ generates");

    let mut c = t.connection();
    let h: HashMap<String, Vec<u8>> = c.hgetall(format!("rq:job:{id}")).unwrap();
    // zlib (RFC 1950: CMF 0x78), not gzip or raw deflate, which RQ cannot read (trap 4).
    assert_eq!(h["data"][0], 0x78, "data is a zlib stream");
    assert_eq!(
        inflate(&h["data"]),
        json!(["webhook_process_job", null, [], {"tenant_id": "7", "n": 1}])
    );
    assert_eq!(field(&h, "origin"), "default");
    assert_eq!(field(&h, "status"), "queued");
    assert_eq!(field(&h, "timeout"), "180");
    assert_eq!(field(&h, "result_ttl"), "60");
    assert_eq!(field(&h, "retries_left"), "2");
    assert_eq!(field(&h, "retry_intervals"), "[10,60]");
    assert_eq!(
        serde_json::from_str::<Value>(&field(&h, "meta")).unwrap(),
        json!({"tenant_id": "7", "business_id": 12})
    );
    assert_eq!(
        field(&h, "description"),
        "webhook_process_job(n=1, tenant_id=\"7\")"
    );
    for ts in ["created_at", "enqueued_at"] {
        let v = field(&h, ts);
        // Exactly RQ's utcformat: 26 characters, six fraction digits, a literal Z.
        assert_eq!(v.len(), 27, "{ts}={v}");
        assert!(v.ends_with('Z') && v.as_bytes()[19] == b'.', "{ts}={v}");
        assert!(parse_rq_timestamp(&v).is_some(), "{ts}={v}");
    }
    let queues: Vec<String> = c.smembers("rq:queues").unwrap();
    assert_eq!(queues, ["rq:queue:default"], "members are full queue keys");
    let ids: Vec<String> = c.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(ids, std::slice::from_ref(&id));
    let ttl: i64 = c.ttl(format!("rq:job:{id}")).unwrap();
    assert_eq!(ttl, -1, "a queued job without ttl never expires");

    let info = store.fetch_job(&id).await.unwrap().unwrap();
    assert_eq!(info.job_type, "webhook_process_job");
    assert_eq!(info.kwargs["n"], json!(1));
    assert_eq!(info.status, "queued");
    assert_eq!(info.retries_left, Some(2));
    assert!(store.fetch_job("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn at_front_ttl_and_explicit_ids() {
    let t = db();
    let store = t.store();
    let first = store
        .enqueue(NewJob::new("q", "a", kwargs(json!({}))))
        .await
        .unwrap();
    let front = store
        .enqueue(
            NewJob::new("q", "b", kwargs(json!({}))).with_options(JobOptions {
                at_front: true,
                ttl: Some(100),
                job_id: Some("my-id_1".into()),
                timeout: Some(-1),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(front, "my-id_1");
    let mut c = t.connection();
    let ids: Vec<String> = c.lrange("rq:queue:q", 0, -1).unwrap();
    assert_eq!(ids, [front.clone(), first]);
    let ttl: i64 = c.ttl("rq:job:my-id_1").unwrap();
    assert!((95..=100).contains(&ttl), "ttl {ttl}");
    let timeout: String = c.hget("rq:job:my-id_1", "timeout").unwrap();
    assert_eq!(timeout, "-1");

    // Re-using an explicit id replaces the old hash rather than merging stale fields into it.
    let _: () = c
        .hset("rq:job:my-id_1", "ended_at", "2026-01-01T00:00:00.000000Z")
        .unwrap();
    store
        .enqueue(
            NewJob::new("q", "b", kwargs(json!({}))).with_options(JobOptions {
                job_id: Some("my-id_1".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let ended: Option<String> = c.hget("rq:job:my-id_1", "ended_at").unwrap();
    assert_eq!(ended, None);
}

#[tokio::test]
async fn a_batch_is_all_or_nothing() {
    let t = db();
    let store = t.store();
    let good = NewJob::new("default", "t", kwargs(json!({"i": 1})));
    let bad = NewJob::new("default", "t", kwargs(json!({}))).with_options(JobOptions {
        job_id: Some("has.dot".into()),
        ..Default::default()
    });
    let err = store.enqueue_many(&[good.clone(), bad]).await.unwrap_err();
    assert!(err.to_string().contains("job id"), "{err}");
    let mut c = t.connection();
    let n: usize = c.llen("rq:queue:default").unwrap();
    assert_eq!(n, 0, "an invalid job in a batch writes nothing");
    let keys: Vec<String> = c.keys("*").unwrap();
    assert!(keys.is_empty(), "{keys:?}");

    let batch: Vec<NewJob> = (0..500)
        .map(|i| NewJob::new("default", "t", kwargs(json!({"i": i}))))
        .collect();
    let ids = store.enqueue_many(&batch).await.unwrap();
    let listed: Vec<String> = c.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(listed, ids, "a batch keeps its order");
}

#[tokio::test]
async fn a_mixed_batch_leaves_the_lists_as_one_by_one_pushes_would() {
    let t = db();
    let store = t.store();
    // (queue, at_front) per job, across two queues, fronts interleaved with backs.
    let plan = [
        ("a", false),
        ("b", false),
        ("a", true),
        ("a", false),
        ("b", true),
        ("a", true),
        ("b", false),
    ];
    let jobs = |prefix: &str| -> Vec<NewJob> {
        plan.iter()
            .enumerate()
            .map(|(i, (q, front))| {
                NewJob::new(*q, "t", kwargs(json!({}))).with_options(JobOptions {
                    job_id: Some(format!("{prefix}{i}")),
                    at_front: *front,
                    ..Default::default()
                })
            })
            .collect()
    };
    for job in jobs("one") {
        store.enqueue(job).await.unwrap();
    }
    let mut c = t.connection();
    let one_by_one: Vec<Vec<String>> = ["a", "b"]
        .iter()
        .map(|q| c.lrange(format!("rq:queue:{q}"), 0, -1).unwrap())
        .collect();
    let _: () = c.del(&["rq:queue:a", "rq:queue:b"]).unwrap();
    store.enqueue_many(&jobs("batch")).await.unwrap();
    for (q, expected) in ["a", "b"].iter().zip(one_by_one) {
        let got: Vec<String> = c.lrange(format!("rq:queue:{q}"), 0, -1).unwrap();
        let expected: Vec<String> = expected
            .iter()
            .map(|id| id.replace("one", "batch"))
            .collect();
        assert_eq!(got, expected, "queue {q}");
    }
    assert_eq!(
        c.lrange::<_, Vec<String>>("rq:queue:a", 0, -1).unwrap(),
        ["batch5", "batch2", "batch0", "batch3"]
    );
    let queues: Vec<String> = c.smembers("rq:queues").unwrap();
    assert_eq!(queues.len(), 2, "{queues:?}");
}

#[tokio::test]
async fn invalid_jobs_are_refused_before_redis() {
    let t = db();
    let store = t.store();
    for (queue, ty, opts, needle) in [
        ("bad queue", "t", JobOptions::default(), "queue name"),
        ("q", "has space", JobOptions::default(), "job type"),
        (
            "q",
            "t",
            JobOptions {
                timeout: Some(0),
                ..Default::default()
            },
            "timeout",
        ),
        (
            "q",
            "t",
            JobOptions {
                ttl: Some(0),
                ..Default::default()
            },
            "ttl",
        ),
        (
            "q",
            "t",
            JobOptions {
                job_id: Some("a:b".into()),
                ..Default::default()
            },
            "job id",
        ),
    ] {
        let err = store
            .enqueue(NewJob::new(queue, ty, kwargs(json!({}))).with_options(opts))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    let keys: Vec<String> = t.connection().keys("*").unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
// Long on purpose: every registry filled by hand, then each count read once.
async fn queue_stats_count_what_is_in_the_registries() {
    let t = db();
    let store = t.store();
    for i in 0..3 {
        store
            .enqueue(NewJob::new("default", "t", kwargs(json!({"i": i}))))
            .await
            .unwrap();
    }
    store
        .enqueue(NewJob::new("low", "t", kwargs(json!({}))))
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut c = t.connection();
    let _: () = redis::pipe()
        .zadd("rq:wip:default", "a:e1", now + 90)
        .zadd("rq:wip:default", "b:e2", now - 5) // abandoned, not yet recovered: still started
        .zadd("rq:finished:default", "c", now + 500)
        .zadd("rq:finished:default", "d", "+inf")
        .zadd("rq:finished:default", "old", now - 10) // past its result TTL: not counted
        .zadd("rq:failed:default", "e", now + 1000)
        .zadd("rq:failed:default", "forever", -1) // failure_ttl -1: kept forever
        .zadd("rq:scheduled:default", "f", now + 30)
        .zadd("rq:deferred:default", "g", now)
        .query(&mut c)
        .unwrap();
    // The head of `default` was enqueued two minutes ago.
    let head: String = c.lindex("rq:queue:default", 0).unwrap();
    let two_minutes_ago =
        prosaas::jobs::rq_timestamp(chrono::Utc::now() - chrono::Duration::seconds(120));
    let _: () = c
        .hset(format!("rq:job:{head}"), "enqueued_at", two_minutes_ago)
        .unwrap();
    let stats = store
        .stats()
        .queue_stats(&["high".to_string()])
        .await
        .unwrap();
    let age = stats["default"].oldest_queued_secs.unwrap();
    assert!((119..=122).contains(&age), "oldest job age {age}");
    let deferred_age = stats["default"].oldest_deferred_secs.unwrap();
    assert!(deferred_age <= 2, "deferred just now: {deferred_age}");
    assert_eq!(
        stats["default"],
        QueueStats {
            queued: 3,
            started: 2,
            finished: 2,
            failed: 2,
            scheduled: 1,
            deferred: 1,
            // Its job hash is gone: an entry for pruning, not a stranded job.
            oldest_deferred_secs: Some(deferred_age),
            stranded: 0,
            stranded_example: None,
            oldest_queued_secs: Some(age),
            workers: 0,
            paused: false,
            tenants: None,
        }
    );
    assert_eq!(stats["low"].queued, 1);
    assert!(stats["low"].oldest_queued_secs.is_some_and(|a| a <= 2));
    assert_eq!(
        stats["high"],
        QueueStats::default(),
        "configured queues show even when empty"
    );
    assert_eq!(stats.len(), 3);
}

#[tokio::test]
async fn scheduler_health_reports_honestly() {
    let t = db();
    let store = t.store();
    let h = store.stats().scheduler_health().await.unwrap();
    assert_eq!(
        h,
        Default::default(),
        "no scheduler has run: nothing held, no tick"
    );
    let mut c = t.connection();
    let _: () = redis::cmd("SET")
        .arg("prosaas:scheduler:lock")
        .arg("host-1:abc")
        .arg("PX")
        .arg(12_500)
        .query(&mut c)
        .unwrap();
    let _: () = c
        .hset(
            "prosaas:scheduler:health",
            "last_tick",
            "2026-11-28T10:00:00Z",
        )
        .unwrap();
    let h = store.stats().scheduler_health().await.unwrap();
    assert!(h.lock_held);
    assert_eq!(h.holder.as_deref(), Some("host-1:abc"));
    assert_eq!(h.lock_ttl, Some(13));
    assert!(h.lock_ttl_ms.unwrap() > 12_000);
    assert_eq!(h.last_tick.as_deref(), Some("2026-11-28T10:00:00Z"));
}
