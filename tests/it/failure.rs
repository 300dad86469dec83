//! Failure semantics at the edges, with real worker processes: a Redis outage of several
//! heartbeat TTLs re-runs nothing, a worker whose clock is wrong recovers nothing healthy, and
//! recovery counts retries as a failed attempt does.

use std::time::Duration;

use prosaas::jobs::NewJob;
use redis::Commands;
use serde_json::json;

use crate::support::{ProsaasProcess, TestRedis, db, eventually, kwargs};

const FAST: [(&str, &str); 3] = [
    ("PROSAAS__WORKER__HEARTBEAT_INTERVAL_MS", "700"),
    ("PROSAAS__WORKER__HEARTBEAT_TTL_MS", "2000"),
    ("PROSAAS__WORKER__MAINTENANCE_INTERVAL_MS", "200"),
];

fn worker_on(url: &str, extra: &[(&str, &str)]) -> ProsaasProcess {
    let mut env: Vec<(&str, &str)> =
        vec![("REDIS_URL", url), ("PROSAAS__WORKER__CONCURRENCY", "4")];
    env.extend_from_slice(&FAST);
    env.extend_from_slice(extra);
    let p = ProsaasProcess::start("worker", &env);
    p.wait_for_log("worker registered", Duration::from_secs(20));
    p
}

async fn enqueue(
    store: &prosaas::jobs::JobStore,
    job_type: &str,
    n: usize,
    ms: u64,
) -> Vec<String> {
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new("default", job_type, kwargs(json!({"i": i, "ms": ms}))))
        .collect();
    store.enqueue_many(&jobs).await.unwrap()
}

async fn wait_started(store: &prosaas::jobs::JobStore, n: u64) {
    eventually(
        &format!("{n} jobs started"),
        Duration::from_secs(15),
        || async {
            let stats = store.stats().queue_stats(&[]).await.ok()?;
            (stats.get("default")?.started == n).then_some(())
        },
    )
    .await;
}

async fn wait_finished(store: &prosaas::jobs::JobStore, n: u64, within: Duration) {
    eventually(&format!("{n} jobs finished"), within, || async {
        let stats = store.stats().queue_stats(&[]).await.ok()?;
        (stats.get("default")?.finished == n).then_some(())
    })
    .await;
}

/// Redis down for three heartbeat TTLs (and restarted from its append-only file) while two
/// workers run eight long jobs: every job runs once, and each worker registers itself again
/// whole, not as a stub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_of_several_ttls_reruns_nothing() {
    let mut redis = TestRedis::start_durable();
    let url = redis.url();
    let store = crate::support::redis_server::TestDb::store_for(&url);
    let ids = enqueue(&store, "diag.count", 8, 9000).await;
    let a = worker_on(&url, &[]);
    let b = worker_on(&url, &[]);
    wait_started(&store, 8).await;
    // Claimed is not yet running: diag.count's own Redis call at its start would fail in the
    // outage (a retryable failure, run again by design). Wait until every handler has counted.
    eventually("8 handlers running", Duration::from_secs(10), || async {
        (store.diag().execution_counts().await.ok()?.len() == 8).then_some(())
    })
    .await;

    redis.kill();
    std::thread::sleep(Duration::from_secs(6));
    redis.up();

    wait_finished(&store, 8, Duration::from_secs(40)).await;
    let counts = store.diag().execution_counts().await.unwrap();
    for id in &ids {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id} ran {:?} times",
            counts.get(id)
        );
    }
    for w in [&a, &b] {
        assert!(
            !w.logs().contains("recovered jobs of a dead worker"),
            "{}",
            w.logs()
        );
        w.wait_for_log("registering again", Duration::from_secs(5));
    }
    let mut c = redis.connection(0);
    let workers: Vec<String> = c.smembers("rq:workers").unwrap();
    assert_eq!(workers.len(), 2);
    for key in workers {
        let queues: Option<String> = c.hget(&key, "queues").unwrap();
        let birth: Option<String> = c.hget(&key, "birth").unwrap();
        assert!(
            queues.is_some_and(|q| q.contains("default")) && birth.is_some(),
            "{key} is a stub registration"
        );
    }
}

/// A worker whose host clock runs 20 s ahead (and another 20 s behind) beside a correct one:
/// deadlines are on Redis's clock, so no worker takes a healthy worker's jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_skewed_clocks_recover_nothing_healthy() {
    let t = db();
    let url = t.url();
    let store = t.store();
    let ids = enqueue(&store, "diag.count", 12, 4000).await;
    let workers = [
        worker_on(&url, &[("PROSAAS_TEST_CLOCK_SKEW_MS", "20000")]),
        worker_on(&url, &[]),
        worker_on(&url, &[("PROSAAS_TEST_CLOCK_SKEW_MS", "-20000")]),
    ];
    // While they run, every deadline is within one TTL of Redis's clock, whoever wrote it.
    wait_started(&store, 12).await;
    let mut c = t.connection();
    let (now, _): (i64, i64) = redis::cmd("TIME").query(&mut c).unwrap();
    let scores: Vec<(String, f64)> = c.zrange_withscores("rq:wip:default", 0, -1).unwrap();
    assert_eq!(scores.len(), 12);
    for (member, deadline) in &scores {
        let ahead = *deadline as i64 - now;
        assert!(
            (0..=3).contains(&ahead),
            "{member}: deadline {ahead} s from Redis's now"
        );
    }
    wait_finished(&store, 12, Duration::from_secs(40)).await;
    let counts = store.diag().execution_counts().await.unwrap();
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id} ran more than once");
    }
    for w in &workers {
        assert!(!w.logs().contains("recovered jobs"), "{}", w.logs());
    }
    // Deadlines in the started registry were written on Redis's clock, not a skewed one.
    let wip_empty: usize = t.connection().zcard("rq:wip:default").unwrap();
    assert_eq!(wip_empty, 0);
}

/// kill -9 with per-type retry settings: recovery takes the type's policy (0: failed at once;
/// 6: re-queued with 5 left), not the worker-wide default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_applies_the_types_retry_policy() {
    let t = db();
    let url = t.url();
    let store = t.store();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("types.toml");
    std::fs::write(
        &config,
        "[worker.types.\"diag.sleep\"]\nmax_retries = 0\n[worker.types.\"diag.count\"]\nmax_retries = 6\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let once = enqueue(&store, "diag.sleep", 1, 60_000).await.remove(0);
    let six = enqueue(&store, "diag.count", 1, 60_000).await.remove(0);
    let mut env: Vec<(&str, &str)> = vec![("REDIS_URL", &url)];
    env.extend_from_slice(&FAST);
    let victim = ProsaasProcess::start_args(&["--role", "worker", "--config", &config], &env);
    victim.wait_for_log("worker registered", Duration::from_secs(20));
    wait_started(&store, 2).await;
    victim.signal("KILL");
    let rescuer = ProsaasProcess::start_args(&["--role", "worker", "--config", &config], &env);
    rescuer.wait_for_log("recovered jobs of a dead worker", Duration::from_secs(20));

    let detail = |id: String| {
        let store = store.clone();
        async move { store.admin().job_detail(&id).await.unwrap().unwrap() }
    };
    eventually(
        "the no-retry type failed",
        Duration::from_secs(10),
        || async { (detail(once.clone()).await.info.status == "failed").then_some(()) },
    )
    .await;
    let mut c = t.connection();
    let left: Option<u32> = c.hget(format!("rq:job:{six}"), "retries_left").unwrap();
    assert_eq!(left, Some(5), "six retries, one used by the recovery");
    drop(rescuer);
}

/// A job Python RQ enqueued without `Retry` (no `retries_left`, no prosaas mark) runs once and
/// fails, as RQ runs it; the same job enqueued by prosaas is retried by its type's policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_python_enqueued_without_retry_are_not_retried() {
    let t = db();
    let store = t.store();
    let ids = store
        .enqueue_many(&[
            NewJob::new("default", "diag.fail", kwargs(json!({"message": "boom"}))),
            NewJob::new("default", "diag.fail", kwargs(json!({"message": "boom"}))),
        ])
        .await
        .unwrap();
    // Python RQ's layout: no `enqueued_by`.
    let _: () = t
        .connection()
        .hdel(format!("rq:job:{}", ids[0]), "enqueued_by")
        .unwrap();
    let w = worker_on(&t.url(), &[]);
    eventually("the Python job failed", Duration::from_secs(15), || async {
        let d = store.admin().job_detail(&ids[0]).await.ok()??;
        (d.info.status == "failed").then_some(())
    })
    .await;
    let d = store.admin().job_detail(&ids[1]).await.unwrap().unwrap();
    assert_eq!(
        d.info.status, "scheduled",
        "prosaas's own job waits for its retry"
    );
    drop(w);
}
