//! Steady state: with only prosaas workers running, what expires leaves Redis. Jobs finish and
//! fail for several result and failure TTLs; every registry's expired entries go back to 0 and
//! Redis's keys and memory settle, and what Python RQ's maintenance would prune (dead workers'
//! names, empty unserved queues, entries whose job is gone) is pruned.

use std::time::Duration;

use prosaas::jobs::{JobStore, NewJob};
use redis::Commands;
use serde_json::json;

use crate::support::redis_server::TestDb;
use crate::support::{ProsaasProcess, TestRedis, eventually, kwargs};

/// Entries of `key` whose score is in [0, now]: expired, as RQ's cleanup sees them.
fn expired(c: &mut redis::Connection, key: &str) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    c.zcount(key, 0, now).unwrap()
}

fn used_memory(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_leave_and_redis_settles() {
    let redis = TestRedis::start();
    let url = redis.url_db(0);
    let store = TestDb::store_for(&url);
    let mut c = redis.connection(0);
    plant_what_only_rqs_maintenance_pruned(&mut c);
    let w = ProsaasProcess::start(
        "worker",
        &[
            ("REDIS_URL", &url),
            ("PROSAAS__WORKER__RESULT_TTL_SECS", "2"),
            ("PROSAAS__WORKER__FAILURE_TTL_SECS", "2"),
            ("PROSAAS__WORKER__PRUNE_INTERVAL_MS", "1000"),
            ("PROSAAS__WORKER__CONCURRENCY", "16"),
        ],
    );
    w.wait_for_log("worker registered", Duration::from_secs(20));
    five_rounds_finish_and_fail(&store).await;
    let peak_keys: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    every_registry_is_pruned(&mut c).await;
    // Settled: the jobs' hashes and results leave with their TTLs (Redis expires them as it
    // samples keys), and what is left is the worker's own keys, a couple of dozen.
    let keys = eventually("the jobs' keys expired", Duration::from_secs(20), || {
        let keys: Vec<String> = c.keys("*").unwrap();
        async move { (keys.len() < 30).then_some(keys) }
    })
    .await;
    eprintln!(
        "{peak_keys} keys at the peak, {} settled: {keys:?}",
        keys.len()
    );
    keys_and_memory_stay_flat(&mut c).await;
    assert!(w.logs().contains("pruned expired registry entries"));
    drop(w);
}

/// What only RQ's maintenance used to prune: a dead worker's name, an empty queue nobody
/// serves, registry entries whose jobs are gone, RQ 3.0 groups' ids of jobs that are gone.
fn plant_what_only_rqs_maintenance_pruned(c: &mut redis::Connection) {
    let _: () = c.sadd("rq:groups", &["emptied", "kept"]).unwrap();
    let _: () = c.sadd("rq:group:emptied", &["gone-1", "gone-2"]).unwrap();
    let _: () = c.sadd("rq:group:kept", &["gone-3", "alive"]).unwrap();
    let _: () = c.hset("rq:job:alive", "status", "finished").unwrap();
    let _: () = c.sadd("rq:workers", "rq:worker:ghost").unwrap();
    let _: () = c.sadd("rq:workers:default", "rq:worker:ghost").unwrap();
    let _: () = c.sadd("rq:queues", "rq:queue:abandoned").unwrap();
    for registry in ["canceled", "deferred", "scheduled"] {
        let _: () = c
            .zadd(
                format!("rq:{registry}:default"),
                "gone-job",
                4_000_000_000u64,
            )
            .unwrap();
    }
}

/// Five rounds a second apart: 1,000 jobs finish and fail across several TTLs.
async fn five_rounds_finish_and_fail(store: &JobStore) {
    for round in 0..5 {
        let jobs: Vec<NewJob> = (0..200)
            .map(|i| {
                let (kind, args) = if i % 2 == 0 {
                    ("diag.noop", json!({}))
                } else {
                    (
                        "diag.fail",
                        json!({"permanent": true, "message": format!("r{round}")}),
                    )
                };
                NewJob::new("default", kind, kwargs(args))
            })
            .collect();
        store.enqueue_many(&jobs).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eventually("all 1,000 jobs run", Duration::from_secs(20), || async {
        let s = crate::support::default_queue(store).await?;
        (s.queued == 0 && s.started == 0).then_some(())
    })
    .await;
}

/// Past every TTL and a pruning pass: nothing expired is left in any registry, nor the planted
/// ghosts, while the served queue stays listed.
async fn every_registry_is_pruned(c: &mut redis::Connection) {
    eventually("the registries pruned", Duration::from_secs(15), || {
        let left: u64 = ["rq:finished:default", "rq:failed:default"]
            .iter()
            .map(|k| c.zcard::<_, u64>(*k).unwrap())
            .sum();
        let gone_entries: u64 = ["canceled", "deferred", "scheduled"]
            .iter()
            .map(|r| c.zcard::<_, u64>(format!("rq:{r}:default")).unwrap())
            .sum();
        let ghost: bool = c.sismember("rq:workers", "rq:worker:ghost").unwrap();
        let abandoned: bool = c.sismember("rq:queues", "rq:queue:abandoned").unwrap();
        let groups: Vec<String> = c.smembers("rq:groups").unwrap();
        async move {
            (left == 0 && gone_entries == 0 && !ghost && !abandoned && groups == ["kept"])
                .then_some(())
        }
    })
    .await;
    let kept: Vec<String> = c.smembers("rq:group:kept").unwrap();
    assert_eq!(kept, ["alive"], "a group keeps the ids of jobs that exist");
    assert_eq!(expired(c, "rq:finished:default"), 0);
    assert_eq!(expired(c, "rq:failed:default"), 0);
    let served: bool = c.sismember("rq:queues", "rq:queue:default").unwrap();
    assert!(served, "a served queue stays listed");
    let ghost_by_queue: bool = c
        .sismember("rq:workers:default", "rq:worker:ghost")
        .unwrap();
    assert!(!ghost_by_queue);
}

/// Once settled, the key count and used memory stay flat while the worker keeps working.
async fn keys_and_memory_stay_flat(c: &mut redis::Connection) {
    // This server has 1,024 databases, so Redis's active expiry reaches each one seldom; a scan
    // reclaims what has expired at once, as a production Redis's own cycle does within seconds.
    let _: Vec<redis::RedisResult<String>> = c.scan().unwrap().collect();
    let settled: u64 = redis::cmd("DBSIZE").query(c).unwrap();
    assert!(settled < 30, "{settled} keys in the database");
    let memory = used_memory(c);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _: Vec<redis::RedisResult<String>> = c.scan().unwrap().collect();
    let later_keys: u64 = redis::cmd("DBSIZE").query(c).unwrap();
    let later_memory = used_memory(c);
    assert!(
        later_keys <= settled + 2,
        "{settled} keys, then {later_keys}"
    );
    assert!(
        later_memory < memory + 256 * 1024,
        "used memory {memory} -> {later_memory}"
    );
}

/// A calls process killed without withdrawing its live-calls report leaves a field that every
/// other process's next report drops, so the hash does not collect one field per process ever
/// started.
#[tokio::test]
async fn a_dead_calls_processs_report_is_dropped_by_the_next_report() {
    let t = crate::support::db();
    let store = t.store();
    let mut c = t.connection();
    let stale = json!({"process": "gone:1", "at": 1_000.0, "calls": {}}).to_string();
    let _: () = c.hset("prosaas:calls:live", "gone:1", stale).unwrap();
    let _: () = c
        .hset("prosaas:calls:live", "garbage:2", "not json")
        .unwrap();
    store
        .call_status()
        .publish_calls("alive:3", &json!({"active": 0}))
        .await
        .unwrap();
    let mut fields: Vec<String> = c.hkeys("prosaas:calls:live").unwrap();
    fields.sort();
    assert_eq!(fields, ["alive:3"]);
    let ttl: i64 = c.ttl("prosaas:calls:live").unwrap();
    assert!(ttl > 0 && ttl <= 60);
}
