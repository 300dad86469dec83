//! Several real worker processes on one Redis: no job runs twice, none is lost, a killed
//! worker's jobs are recovered within the documented bound, and SIGTERM loses nothing.

use std::time::{Duration, Instant};

use prosaas::jobs::NewJob;
use redis::Commands;
use serde_json::json;

use crate::support::redis_server::TestDb;
use crate::support::{ProsaasProcess, db, eventually, kwargs};

const BOOT: Duration = Duration::from_secs(20);

fn worker(t: &TestDb, extra: &[(&str, &str)]) -> ProsaasProcess {
    let url = t.url();
    let mut env = vec![("REDIS_URL", url.as_str())];
    env.extend_from_slice(extra);
    let p = ProsaasProcess::start("worker", &env);
    p.wait_for_log("worker registered", BOOT);
    p
}

async fn enqueue_counted(t: &TestDb, n: usize, ms: u64) -> Vec<String> {
    let store = t.store();
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<NewJob> = chunk
            .iter()
            .map(|i| NewJob::new("default", "diag.count", kwargs(json!({"i": i, "ms": ms}))))
            .collect();
        ids.extend(store.enqueue_many(&batch).await.unwrap());
    }
    ids
}

fn registry_sizes(t: &TestDb) -> (usize, usize, usize, usize, usize) {
    let mut c = t.connection();
    (
        c.llen("rq:queue:default").unwrap(),
        c.zcard("rq:wip:default").unwrap(),
        c.zcard("rq:finished:default").unwrap(),
        c.zcard("rq:failed:default").unwrap(),
        c.zcard("rq:scheduled:default").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_drain_ten_thousand_jobs_each_exactly_once() {
    let t = db();
    let ids = enqueue_counted(&t, 10_000, 0).await;
    let started = Instant::now();
    let mut workers: Vec<ProsaasProcess> = (0..3)
        .map(|_| worker(&t, &[("PROSAAS__WORKER__CONCURRENCY", "16")]))
        .collect();
    let store = t.store();
    eventually("10,000 jobs finished", Duration::from_secs(120), || async {
        let stats = store.stats().queue_stats(&[]).await.ok()?;
        (stats.get("default")?.finished == 10_000).then_some(())
    })
    .await;
    let took = started.elapsed();
    let counts = store.diag().execution_counts().await.unwrap();
    assert_eq!(counts.len(), 10_000, "every job executed");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "jobs executed more than once: {twice:?}");
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1));
    }
    assert_eq!(
        registry_sizes(&t),
        (0, 0, 10_000, 0, 0),
        "(queued, started, finished, failed, scheduled)"
    );
    // Each worker took a share: the claim is shared fairly, not grabbed by one process.
    let mut c = t.connection();
    let keys: Vec<String> = c.smembers("rq:workers").unwrap();
    assert_eq!(keys.len(), 3);
    for k in &keys {
        let done: u64 = c.hget(k, "successful_job_count").unwrap();
        assert!(done > 0, "{k} ran nothing");
    }
    for w in &mut workers {
        assert!(w.stop().success());
    }
    eprintln!("3 workers x 16 drained 10,000 jobs in {took:?} (debug build, includes startup)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_jobs_are_recovered_within_the_bound() {
    let t = db();
    // Short timings so the test is quick; the bound is heartbeat_ttl + maintenance_interval.
    let fast = [
        ("PROSAAS__WORKER__HEARTBEAT_INTERVAL_MS", "500"),
        ("PROSAAS__WORKER__HEARTBEAT_TTL_MS", "2000"),
        ("PROSAAS__WORKER__MAINTENANCE_INTERVAL_MS", "500"),
        ("PROSAAS__WORKER__CONCURRENCY", "4"),
    ];
    let ids = enqueue_counted(&t, 8, 3000).await;
    let victim = worker(&t, &fast);
    let store = t.store();
    eventually(
        "the victim to hold 4 jobs",
        Duration::from_secs(10),
        || async {
            let stats = store.stats().queue_stats(&[]).await.ok()?;
            (stats.get("default")?.started == 4).then_some(())
        },
    )
    .await;
    // Claimed is not yet run: wait until the handlers have counted their start.
    eventually(
        "the victim to run 4 jobs",
        Duration::from_secs(10),
        || async { (store.diag().execution_counts().await.ok()?.len() == 4).then_some(()) },
    )
    .await;
    victim.signal("KILL");
    let killed_at = Instant::now();
    let mut rescuer = worker(&t, &fast);
    rescuer.wait_for_log("recovered jobs of a dead worker", Duration::from_secs(15));
    let recovery = killed_at.elapsed();
    // Deadlines are whole seconds (RQ's scores), so allow one second of rounding on top.
    let bound = Duration::from_millis(2000 + 500 + 1000 + 1000);
    assert!(
        recovery <= bound,
        "recovered after {recovery:?}, bound {bound:?}"
    );

    eventually("all 8 jobs finished", Duration::from_secs(30), || async {
        let stats = store.stats().queue_stats(&[]).await.ok()?;
        (stats.get("default")?.finished == 8).then_some(())
    })
    .await;
    let counts = store.diag().execution_counts().await.unwrap();
    for id in &ids {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!((1..=2).contains(&n), "{id} ran {n} times");
    }
    let rerun = counts.values().filter(|n| **n == 2).count();
    assert_eq!(
        rerun, 4,
        "exactly the 4 jobs the victim held ran again (at-least-once)"
    );
    assert_eq!(registry_sizes(&t), (0, 0, 8, 0, 0));
    assert!(rescuer.stop().success());
    eprintln!("recovered a killed worker's jobs {recovery:?} after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_jobs_finish_within_the_grace_period() {
    let t = db();
    let ids = enqueue_counted(&t, 1, 1500).await;
    let mut w = worker(&t, &[]);
    let store = t.store();
    eventually("the job to start", Duration::from_secs(10), || async {
        (store.fetch_job(&ids[0]).await.ok()??.status == "started").then_some(())
    })
    .await;
    w.signal("TERM");
    let status = w.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(w.logs().contains("waiting for jobs in flight"));
    assert_eq!(
        store.fetch_job(&ids[0]).await.unwrap().unwrap().status,
        "finished"
    );
    assert_eq!(
        store.diag().execution_counts().await.unwrap().get(&ids[0]),
        Some(&1)
    );
    assert_eq!(registry_sizes(&t), (0, 0, 1, 0, 0));
    let workers: Vec<String> = t.connection().smembers("rq:workers").unwrap();
    assert!(workers.is_empty(), "unregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_grace_period_puts_jobs_back_at_the_front() {
    let t = db();
    let ids = enqueue_counted(&t, 3, 30_000).await;
    let mut w = worker(
        &t,
        &[
            ("PROSAAS__WORKER__CONCURRENCY", "2"),
            ("PROSAAS__WORKER__SHUTDOWN_GRACE_MS", "500"),
        ],
    );
    let store = t.store();
    eventually("two jobs to start", Duration::from_secs(10), || async {
        (crate::support::default_queue(&store).await?.started == 2).then_some(())
    })
    .await;
    w.signal("TERM");
    let status = w.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let mut c = t.connection();
    let queued: Vec<String> = c.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(queued.len(), 3, "nothing lost: {queued:?}");
    // The two interrupted jobs went back ahead of the one that never started.
    assert_eq!(queued[2], ids[2]);
    for id in &queued[..2] {
        assert_eq!(store.fetch_job(id).await.unwrap().unwrap().status, "queued");
    }
    assert_eq!(registry_sizes(&t), (3, 0, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_left_by_the_api_role_are_run_by_a_worker() {
    let t = db();
    let ids = enqueue_counted(&t, 5, 0).await;
    let mut api = ProsaasProcess::start("api", &[("REDIS_URL", &t.url())]);
    api.wait_for_log("API mode", BOOT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(registry_sizes(&t).0, 5, "api runs nothing");
    let mut w = worker(&t, &[]);
    let store = t.store();
    eventually(
        "the worker to drain them",
        Duration::from_secs(10),
        || async { (crate::support::default_queue(&store).await?.finished == 5).then_some(()) },
    )
    .await;
    assert_eq!(
        store.diag().execution_counts().await.unwrap().len(),
        ids.len()
    );
    assert!(w.stop().success());
    assert!(api.stop().success());
}
