//! Fair queues: tenants take turns (weighted), FIFO within each tenant, a per-tenant cap across
//! workers, recovery back into a tenant's lane, and counts that `rq info` and health can trust.
//! In-process claims pin the order exactly; the last test runs real worker processes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prosaas::jobs::{Canceled, JobOptions, JobStore, NewJob, Outcome, Settlement, WorkerInfo};
use redis::Commands;
use serde_json::json;

use crate::support::redis_server::TestDb;
use crate::support::worker::worker_context;
use crate::support::{ProsaasProcess, db, eventually, kwargs, registered_worker};

const FAIR: (&str, &str) = ("PROSAAS__QUEUES__DEFAULT__FAIRNESS", "tenant");

/// A store that knows the `default` queue's fairness (as every prosaas process reads it from
/// its settings), with `extra` settings.
fn fair_store(t: &TestDb, extra: &[(&str, &str)]) -> JobStore {
    let mut env = vec![FAIR];
    env.extend_from_slice(extra);
    worker_context(t, &env).jobs
}

fn job(tenant: Option<&str>, name: &str) -> NewJob {
    let mut j = NewJob::new("default", "diag.noop", kwargs(json!({}))).with_options(JobOptions {
        job_id: Some(name.to_owned()),
        ..Default::default()
    });
    if let Some(t) = tenant {
        j.set_tenant(t).unwrap();
    }
    j
}

fn jobs(tenant: &str, n: usize) -> Vec<NewJob> {
    (1..=n)
        .map(|i| job(Some(tenant), &format!("{tenant}{i}")))
        .collect()
}

async fn claim_ids(store: &JobStore, w: &WorkerInfo, max: usize) -> Vec<String> {
    store
        .workers()
        .claim(w, max, Duration::from_secs(60), 1)
        .await
        .unwrap()
        .jobs
        .into_iter()
        .map(|j| j.execution.id)
        .collect()
}

/// Claims one job at a time until the queue is empty; the ids in the order they came.
async fn drain_one_by_one(store: &JobStore, w: &WorkerInfo) -> Vec<String> {
    let mut order = Vec::new();
    loop {
        let got = claim_ids(store, w, 1).await;
        if got.is_empty() {
            return order;
        }
        order.extend(got);
    }
}

#[tokio::test]
async fn tenants_take_turns_fifo_within_each_and_the_shared_list_is_one_more_tenant() {
    let t = db();
    let store = fair_store(&t, &[]);
    // A floods first, then B, then one job without a tenant.
    store.enqueue_many(&jobs("A", 6)).await.unwrap();
    store.enqueue_many(&jobs("B", 2)).await.unwrap();
    store.enqueue(job(None, "X1")).await.unwrap();
    let mut c = t.connection();
    // Each tenant's jobs wait in a lane of their own, an RQ queue `rq info` counts.
    assert_eq!(c.llen::<_, usize>("rq:queue:default@A").unwrap(), 6);
    assert_eq!(c.llen::<_, usize>("rq:queue:default@B").unwrap(), 2);
    assert_eq!(c.llen::<_, usize>("rq:queue:default").unwrap(), 1);
    let queues: Vec<String> = c.smembers("rq:queues").unwrap();
    assert!(
        queues.contains(&"rq:queue:default@A".to_owned()),
        "{queues:?}"
    );
    let status: String = c.hget("rq:job:A3", "status").unwrap();
    assert_eq!(status, "queued");
    let stats = crate::support::default_queue(&store).await.unwrap();
    assert_eq!(stats.queued, 9, "the queue's depth counts its lanes");
    let tenants = stats.tenants.expect("a fair queue lists its tenants");
    assert_eq!((tenants.with_work, tenants.queued), (2, 8));
    assert_eq!(tenants.busiest[0].tenant, "A");
    assert_eq!(tenants.busiest[0].queued, 6);

    let w = crate::support::registered_worker(&store, "w1", &["default"]).await;
    let order = drain_one_by_one(&store, &w).await;
    assert_eq!(
        order,
        ["X1", "A1", "B1", "A2", "B2", "A3", "A4", "A5", "A6"],
        "round robin across tenants with work, FIFO within each"
    );
    // Emptied lanes leave rq:queues and the ring.
    let queues: Vec<String> = c.smembers("rq:queues").unwrap();
    assert!(!queues.iter().any(|q| q.contains('@')), "{queues:?}");
    assert_eq!(c.zcard::<_, usize>("prosaas:fair:default:ring").unwrap(), 0);
    // Without a cap no counts are kept; health reads what runs from the started registry.
    assert!(!c.exists::<_, bool>("prosaas:fair:default:running").unwrap());
    let stats = crate::support::default_queue(&store).await.unwrap();
    let busiest: Vec<(String, u64, u64)> = stats
        .tenants
        .expect("a fair queue lists its tenants")
        .busiest
        .into_iter()
        .map(|r| (r.tenant, r.queued, r.running))
        .collect();
    assert_eq!(busiest, [("A".into(), 0, 6), ("B".into(), 0, 2)]);
}

#[tokio::test]
async fn weights_give_a_tenant_more_turns() {
    let t = db();
    let store = fair_store(
        &t,
        &[("PROSAAS__QUEUES__DEFAULT__TENANT_WEIGHTS", r#"{"A": 3}"#)],
    );
    store.enqueue_many(&jobs("A", 12)).await.unwrap();
    store.enqueue_many(&jobs("B", 12)).await.unwrap();
    // Registration publishes the weights for every claim to read.
    let w = crate::support::registered_worker(&store, "w1", &["default"]).await;
    let order = drain_one_by_one(&store, &w).await;
    let first16: Vec<&str> = order[..16].iter().map(|id| &id[..1]).collect();
    let a = first16.iter().filter(|t| **t == "A").count();
    // 12 exactly, or 11 when a tie of passes falls the other way in floating point.
    assert!(
        (11..=12).contains(&a),
        "A (weight 3) has 3 turns per B's 1: {order:?}"
    );
    // FIFO within each tenant, whatever the interleaving.
    for tenant in ["A", "B"] {
        let seq: Vec<usize> = order
            .iter()
            .filter(|id| id.starts_with(tenant))
            .map(|id| id[1..].parse().unwrap())
            .collect();
        assert_eq!(seq, (1..=12).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_batched_claim_keeps_the_rotation() {
    let t = db();
    let store = fair_store(&t, &[]);
    store.enqueue_many(&jobs("A", 20)).await.unwrap();
    store.enqueue_many(&jobs("B", 20)).await.unwrap();
    store.enqueue_many(&jobs("C", 20)).await.unwrap();
    let w = crate::support::registered_worker(&store, "w1", &["default"]).await;
    let got = claim_ids(&store, &w, 12).await;
    let mut per: HashMap<char, usize> = HashMap::new();
    for id in &got {
        *per.entry(id.chars().next().unwrap()).or_default() += 1;
    }
    assert_eq!(got.len(), 12);
    assert!(
        per.values().all(|n| (3..=5).contains(n)),
        "one claim of 12 shares the turns: {got:?}"
    );
}

#[tokio::test]
async fn a_tenant_cap_holds_across_claims_and_frees_on_settle() {
    let t = db();
    let store = fair_store(&t, &[("PROSAAS__QUEUES__DEFAULT__TENANT_CONCURRENCY", "2")]);
    store.enqueue_many(&jobs("A", 5)).await.unwrap();
    store.enqueue_many(&jobs("B", 5)).await.unwrap();
    let w1 = crate::support::registered_worker(&store, "w1", &["default"]).await;
    let w2 = crate::support::registered_worker(&store, "w2", &["default"]).await;
    let first = store
        .workers()
        .claim(&w1, 10, Duration::from_secs(60), 1)
        .await
        .unwrap()
        .jobs;
    let mut ids: Vec<&str> = first.iter().map(|j| j.execution.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["A1", "A2", "B1", "B2"], "two of each tenant, no more");
    // Another worker finds both tenants at their cap.
    assert!(claim_ids(&store, &w2, 10).await.is_empty());
    // A's first job ends: A may run one more, on any worker.
    let a1 = first[0].execution.clone();
    let settled = store
        .workers()
        .settle(
            &w1,
            &[Settlement {
                execution: a1,
                started_at: 0.0,
                ended_at: 0.0,
                waited: None,
                outcome: Outcome::Finished {
                    result: None,
                    result_ttl: 60,
                },
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(claim_ids(&store, &w2, 10).await, ["A3"]);
}

#[tokio::test]
async fn a_dead_workers_fair_jobs_go_back_to_their_lane_heads() {
    let t = db();
    let store = fair_store(&t, &[("PROSAAS__QUEUES__DEFAULT__TENANT_CONCURRENCY", "1")]);
    store.enqueue_many(&jobs("A", 3)).await.unwrap();
    let w = crate::support::registered_worker(&store, "w1", &["default"]).await;
    assert_eq!(claim_ids(&store, &w, 5).await, ["A1"]);
    let mut c = t.connection();
    // The worker dies: its registration goes, its job's deadline passes.
    let _: () = c.del("rq:worker:w1").unwrap();
    let members: Vec<String> = c.zrange("rq:wip:default", 0, -1).unwrap();
    let _: () = c.del("rq:wip:default").unwrap();
    for m in members {
        let _: () = c.zadd("rq:wip:default", m, 1).unwrap();
    }
    let recovered = store
        .workers()
        .recover_abandoned("default", "me", Duration::from_secs(5), &|_, _| 1, 60)
        .await
        .unwrap();
    assert_eq!(recovered.requeued, 1);
    let lane: Vec<String> = c.lrange("rq:queue:default@A", 0, -1).unwrap();
    assert_eq!(lane, ["A1", "A2", "A3"], "back at the head of its lane");
    let running: HashMap<String, u64> = c.hgetall("prosaas:fair:default:running").unwrap();
    assert!(running.is_empty(), "its running count dropped: {running:?}");
    // The cap of 1 lets A run again.
    let w2 = crate::support::registered_worker(&store, "w2", &["default"]).await;
    assert_eq!(claim_ids(&store, &w2, 5).await, ["A1"]);
}

#[tokio::test]
async fn running_counts_heal_when_a_tool_drops_started_entries() {
    let t = db();
    let store = fair_store(&t, &[("PROSAAS__QUEUES__DEFAULT__TENANT_CONCURRENCY", "1")]);
    store.enqueue_many(&jobs("A", 2)).await.unwrap();
    let w = crate::support::registered_worker(&store, "w1", &["default"]).await;
    assert_eq!(claim_ids(&store, &w, 5).await, ["A1"]);
    // Python RQ's cleanup fails the job on its own, knowing nothing of prosaas's counts.
    let mut c = t.connection();
    let _: () = c.del("rq:wip:default").unwrap();
    let _: () = c.hset("rq:job:A1", "status", "failed").unwrap();
    assert!(
        claim_ids(&store, &w, 5).await.is_empty(),
        "the stale count still holds A at its cap"
    );
    assert_eq!(store.workers().recount_lanes("default").await.unwrap(), 0);
    assert_eq!(claim_ids(&store, &w, 5).await, ["A2"]);
}

#[tokio::test]
async fn a_queue_without_fairness_keeps_one_list() {
    let t = db();
    let store = t.store();
    store.enqueue_many(&jobs("A", 3)).await.unwrap();
    let mut c = t.connection();
    assert_eq!(c.llen::<_, usize>("rq:queue:default").unwrap(), 3);
    assert!(!c.exists::<_, bool>("prosaas:fair:default:ring").unwrap());
    let lane: Option<String> = c.hget("rq:job:A1", "lane").unwrap();
    assert_eq!(lane, None);
}

fn worker(t: &TestDb, extra: &[(&str, &str)]) -> ProsaasProcess {
    let url = t.url();
    let mut env = vec![("REDIS_URL", url.as_str()), FAIR];
    env.extend_from_slice(extra);
    let p = ProsaasProcess::start("worker", &env);
    p.wait_for_log("worker registered", Duration::from_secs(20));
    p
}

/// Started jobs per tenant right now, read from the started registry and the job hashes (not
/// from prosaas's own counts).
fn started_per_tenant(c: &mut redis::Connection) -> HashMap<String, usize> {
    let members: Vec<String> = c.zrange("rq:wip:default", 0, -1).unwrap();
    let mut per = HashMap::new();
    for m in members {
        let id = m.split(':').next().unwrap_or_default();
        let lane: Option<String> = c.hget(format!("rq:job:{id}"), "lane").unwrap();
        *per.entry(lane.unwrap_or_default()).or_default() += 1;
    }
    per
}

/// What a fair queue holds, for a failure message.
fn fair_state(c: &mut redis::Connection) -> String {
    let ring: Vec<(String, f64)> = c
        .zrange_withscores("prosaas:fair:default:ring", 0, -1)
        .unwrap();
    let running: HashMap<String, u64> = c.hgetall("prosaas:fair:default:running").unwrap();
    let lanes: Vec<(String, usize)> = ["big", "s1", "s2", "s3"]
        .iter()
        .map(|t| {
            let n = c.llen(format!("rq:queue:default@{t}")).unwrap();
            (t.to_string(), n)
        })
        .collect();
    let sizes: Vec<usize> = [
        "rq:wip:default",
        "rq:finished:default",
        "rq:failed:default",
        "rq:scheduled:default",
    ]
    .iter()
    .map(|k| c.zcard(*k).unwrap())
    .collect();
    let plain: usize = c.llen("rq:queue:default").unwrap();
    format!(
        "ring {ring:?} running {running:?} lanes {lanes:?} plain {plain} wip/finished/failed/scheduled {sizes:?}"
    )
}

fn tenant_jobs(tenant: &str, n: usize, ms: u64) -> Vec<NewJob> {
    (0..n)
        .map(|i| {
            let mut j = NewJob::new("default", "diag.count", kwargs(json!({"i": i, "ms": ms})));
            j.set_tenant(tenant).unwrap();
            j
        })
        .collect()
}

fn finished(c: &mut redis::Connection, ids: &[String]) -> usize {
    ids.iter()
        .filter(|id| {
            c.hget::<_, _, Option<String>>(format!("rq:job:{id}"), "status")
                .unwrap()
                .as_deref()
                == Some("finished")
        })
        .count()
}

/// Two worker processes on a fair queue: small tenants' jobs run while another tenant's backlog
/// waits, no tenant runs more than its cap at once across the workers (observed in the started
/// registry, not in prosaas's counts), and a worker killed mid-backlog loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: one observation of the started registry runs through the whole backlog, the kill
// included, so the cap is checked over all of it.
async fn fair_workers_serve_small_tenants_past_a_backlog_within_the_cap_and_survive_a_kill() {
    let t = db();
    let fast = [
        ("PROSAAS__QUEUES__DEFAULT__TENANT_CONCURRENCY", "3"),
        ("PROSAAS__WORKER__CONCURRENCY", "8"),
        ("PROSAAS__WORKER__HEARTBEAT_INTERVAL_MS", "500"),
        ("PROSAAS__WORKER__HEARTBEAT_TTL_MS", "2000"),
        ("PROSAAS__WORKER__MAINTENANCE_INTERVAL_MS", "500"),
    ];
    let store = fair_store(&t, &fast);
    let big_ids = store
        .enqueue_many(&tenant_jobs("big", 600, 20))
        .await
        .unwrap();
    let mut w1 = worker(&t, &fast);
    let w2 = worker(&t, &fast);
    let mut c = t.connection();
    let mut max_seen: HashMap<String, usize> = HashMap::new();
    let mut observe = |c: &mut redis::Connection| {
        for (tenant, n) in started_per_tenant(c) {
            let m = max_seen.entry(tenant).or_default();
            *m = (*m).max(n);
        }
    };
    eventually("the backlog to start", Duration::from_secs(10), || async {
        (finished(&mut t.connection(), &big_ids[..3]) > 0).then_some(())
    })
    .await;
    let mut small_ids = Vec::new();
    for tenant in ["s1", "s2", "s3"] {
        small_ids.extend(
            store
                .enqueue_many(&tenant_jobs(tenant, 5, 20))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    while finished(&mut c, &small_ids) < small_ids.len() {
        observe(&mut c);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the small tenants' jobs did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waited = started.elapsed();
    let big_left: usize = c.llen("rq:queue:default@big").unwrap();
    assert!(
        big_left > 300,
        "the small tenants finished while most of the backlog waited ({big_left} left)"
    );
    the_backlog_shows_per_tenant(&t, &w2).await;
    // A worker dies mid-backlog; another joins. Its jobs come back after its heartbeat TTL.
    w1.signal("KILL");
    let _ = w1.wait_exit(Duration::from_secs(5));
    let w3 = worker(&t, &fast);
    let total = big_ids.len() + small_ids.len();
    let deadline = Instant::now() + Duration::from_secs(90);
    while c.zcard::<_, usize>("rq:finished:default").unwrap() < total {
        observe(&mut c);
        assert!(
            Instant::now() < deadline,
            "not every job finished: {}",
            fair_state(&mut c)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        max_seen.values().all(|n| *n <= 3),
        "a tenant ran more than its cap of 3 at once: {max_seen:?}"
    );
    assert_eq!(max_seen.get("big"), Some(&3), "the cap was reached");
    every_job_ran_and_the_counts_went_back(&store, &mut c, big_ids.iter().chain(&small_ids)).await;
    eprintln!("15 small-tenant jobs finished {waited:?} after arriving behind 600 of another's");
    drop((w2, w3));
}

/// The backlog shows per tenant in the metrics (checked as strict exposition text) and in
/// `jobs stats`.
async fn the_backlog_shows_per_tenant(t: &TestDb, w: &ProsaasProcess) {
    let text =
        crate::support::promtext::scrape_clean(&reqwest::Client::new(), w.url("/metrics")).await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(r#"prosaas_tenant_jobs{queue="default",tenant="big",state="queued"}"#)
        })
        .unwrap_or_else(|| panic!("no tenant series in:\n{text}"));
    let queued: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(queued > 100.0, "{line}");
    assert!(
        text.contains(r#"prosaas_tenant_oldest_job_age_seconds{queue="default",tenant="big"}"#),
        "{text}"
    );
    let url = t.url();
    let out =
        crate::support::process::run(&["jobs", "stats"], &[("REDIS_URL", url.as_str()), FAIR]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("default: 1 tenants with")
            && table.lines().any(|l| l.trim_start().starts_with("big ")),
        "{table}"
    );
}

/// Every job ran once (twice at most: the killed worker's, again), and no tenant is left
/// counted as running.
async fn every_job_ran_and_the_counts_went_back<'a>(
    store: &JobStore,
    c: &mut redis::Connection,
    ids: impl Iterator<Item = &'a String>,
) {
    let counts = store.diag().execution_counts().await.unwrap();
    for id in ids {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!((1..=2).contains(&n), "{id} ran {n} times");
    }
    let running: HashMap<String, u64> = c.hgetall("prosaas:fair:default:running").unwrap();
    assert!(
        running.is_empty(),
        "running counts back to none: {running:?}"
    );
}

/// The job's `rq:job` fields named, as strings.
fn fields(c: &mut redis::Connection, id: &str, names: &[&str]) -> Vec<Option<String>> {
    redis::cmd("HMGET")
        .arg(format!("rq:job:{id}"))
        .arg(names)
        .query(c)
        .unwrap()
}

#[tokio::test]
// Long on purpose: the deferred jobs' slots are read back against the times they started, in one
// run of one worker.
async fn a_rate_limit_defers_jobs_to_their_slots_without_a_retry_and_others_run() {
    let t = db();
    let limits = (
        "PROSAAS__RATE_LIMITS",
        r#"[{"tenant": "A", "rate": "5/s"}]"#,
    );
    let store = fair_store(&t, &[limits]);
    let mut batch = jobs("A", 5);
    batch.extend(jobs("B", 3));
    store.enqueue_many(&batch).await.unwrap();
    let w = crate::support::worker::executor(&t, &[FAIR, limits]);
    let before = store.unix_now();
    let mut ran: Vec<String> = w
        .run_once(10)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    ran.sort();
    assert_eq!(
        ran,
        ["A1", "B1", "B2", "B3"],
        "one of A's, and every other job"
    );
    let mut c = t.connection();
    let scheduled: Vec<(String, f64)> = c.zrange_withscores("rq:scheduled:default", 0, -1).unwrap();
    let ids: Vec<&str> = scheduled.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["A2", "A3", "A4", "A5"], "the rest wait, in order");
    for (k, (id, due)) in scheduled.iter().enumerate() {
        let want = before + 0.2 * (k as f64 + 1.0);
        assert!(
            (due - want).abs() < 0.15,
            "{id} is due at {due}, {} s after the first",
            due - before
        );
        let f = fields(
            &mut c,
            id,
            &[
                "status",
                "attempts",
                "deferred_reason",
                "started_at",
                "worker_name",
            ],
        );
        assert_eq!(f[0].as_deref(), Some("scheduled"));
        assert_eq!(f[1].as_deref(), Some("0"), "a deferral spends no attempt");
        assert_eq!(f[2].as_deref(), Some("rate limit tenant-A"));
        assert_eq!((&f[3], &f[4]), (&None, &None), "not started, by nobody");
    }
    // When its slot comes, promotion puts it back and it runs on the slot it holds.
    tokio::time::sleep(Duration::from_millis(250)).await;
    store
        .workers()
        .promote_due("default", "h", Duration::from_secs(5))
        .await
        .unwrap();
    let again = w.run_once(10).await.unwrap();
    let ids: Vec<&str> = again.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["A2"]);
    let f = fields(&mut c, "A2", &["status", "attempts", "rate_slot"]);
    assert_eq!(f[0].as_deref(), Some("finished"));
    assert_eq!(f[1].as_deref(), Some("1"));
    assert_eq!(f[2], None, "its slot is spent");
}

/// Three worker processes share a 10/s limit on one tenant: its jobs start at that rate in
/// all (within 10 %), while another tenant's jobs keep running at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: three processes share one limit; the start times of both tenants are sampled in
// one loop and judged together.
async fn a_rate_limit_holds_across_three_workers_and_other_tenants_flow() {
    let t = db();
    let env = [
        (
            "PROSAAS__RATE_LIMITS",
            r#"[{"tenant": "*", "rate": "10/s"}]"#,
        ),
        ("PROSAAS__WORKER__PROMOTE_INTERVAL_MS", "50"),
        ("PROSAAS__WORKER__CONCURRENCY", "4"),
    ];
    let store = fair_store(&t, &env);
    let workers: Vec<_> = (0..3).map(|_| worker(&t, &env)).collect();
    let limited = store
        .enqueue_many(&tenant_jobs("big", 41, 1))
        .await
        .unwrap();
    let mut others = Vec::new();
    let started = Instant::now();
    let mut c = t.connection();
    for round in 0..20 {
        // One job each of 20 tenants, one every 100 ms: each tenant's bucket has room.
        let tenant = format!("t{round}");
        others.extend(
            store
                .enqueue_many(&tenant_jobs(&tenant, 1, 1))
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(
        "the other tenants' jobs to finish",
        Duration::from_secs(2),
        || async { (finished(&mut t.connection(), &others) == others.len()).then_some(()) },
    )
    .await;
    assert!(
        finished(&mut c, &limited) < 35,
        "the limited tenant is still held back after {:?}",
        started.elapsed()
    );
    eventually(
        "the limited jobs to finish",
        Duration::from_secs(15),
        || async { (finished(&mut t.connection(), &limited) == limited.len()).then_some(()) },
    )
    .await;
    let mut starts: Vec<f64> = limited
        .iter()
        .map(|id| {
            let at = fields(&mut c, id, &["started_at"])[0].clone().unwrap();
            let t = prosaas::jobs::parse_rq_timestamp(&at).unwrap();
            t.timestamp_millis() as f64 / 1000.0
        })
        .collect();
    starts.sort_by(f64::total_cmp);
    let rate = (starts.len() - 1) as f64 / (starts[starts.len() - 1] - starts[0]);
    assert!(
        (9.0..=11.0).contains(&rate),
        "41 limited starts at {rate:.2}/s, limit 10/s"
    );
    let http = reqwest::Client::new();
    let mut deferred = 0;
    for w in &workers {
        let text = http
            .get(w.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        deferred += text
            .lines()
            .filter(|l| l.starts_with("prosaas_jobs_rate_limited_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>();
    }
    assert!(
        deferred >= 40,
        "every limited job but the first was deferred: {deferred}"
    );
    eprintln!(
        "a 10/s limit across 3 workers: {rate:.2}/s over {} starts",
        starts.len()
    );
}

/// Every id in the queue's list and its lanes, as `rq info` counts them.
fn ids_in_lists(c: &mut redis::Connection) -> u64 {
    let keys: Vec<String> = c.keys("rq:queue:default*").unwrap();
    keys.iter().map(|k| c.llen::<_, u64>(k).unwrap()).sum()
}

#[tokio::test]
async fn a_fair_queue_of_more_lanes_than_any_walk_is_counted_exactly() {
    let t = db();
    let store = fair_store(&t, &[]);
    // 1,500 tenants: more lanes than one read walks (1,000). Jobs arrive by every path that
    // pushes: a MULTI batch, the de-dupe script (ingress), and the queue's own list.
    let batch: Vec<NewJob> = (0..3000)
        .map(|i| job(Some(&format!("t{}", i % 1500)), &format!("j{i}")))
        .collect();
    store.enqueue_many(&batch).await.unwrap();
    for i in 0..10 {
        store
            .enqueue_with_dedupe(
                job(Some(&format!("d{i}")), &format!("d{i}")),
                &format!("e:{i}"),
                60,
            )
            .await
            .unwrap();
    }
    store
        .enqueue_many(&[job(None, "plain1"), job(None, "plain2")])
        .await
        .unwrap();
    let mut c = t.connection();
    let stats = crate::support::default_queue(&store).await.unwrap();
    assert_eq!(ids_in_lists(&mut c), 3012);
    assert_eq!(stats.queued, 3012, "counted as rq info counts");
    let tenants = stats.tenants.unwrap();
    assert_eq!((tenants.with_work, tenants.queued), (1510, 3010));
    assert!(
        !tenants.complete,
        "the listing is bounded, the totals are not"
    );

    // Taken off by claims (across hundreds of lanes) and by a delete: still exact.
    let w = crate::support::registered_worker(&store, "w1", &["default"]).await;
    assert_eq!(claim_ids(&store, &w, 700).await.len(), 700);
    store.admin().delete_job("j2999").await.unwrap();
    let stats = crate::support::default_queue(&store).await.unwrap();
    assert_eq!(stats.queued, ids_in_lists(&mut c));
    assert_eq!(stats.queued, 3012 - 700 - 1);

    // A count that is missing (lanes written by a release that kept none) is counted once by
    // maintenance, and then kept.
    let _: () = c.del("prosaas:fair:default:queued").unwrap();
    let workers = store.workers();
    let counted = workers.count_lanes("default", false).await.unwrap();
    let plain: u64 = c.llen("rq:queue:default").unwrap();
    assert_eq!(counted, Some(ids_in_lists(&mut c) - plain));
    assert_eq!(workers.count_lanes("default", false).await.unwrap(), None);
    let stats = crate::support::default_queue(&store).await.unwrap();
    assert_eq!(stats.queued, ids_in_lists(&mut c));
}

/// A job canceled in its tenant's lane leaves the lane and the lane count, and the rest of the
/// lane runs; canceling again answers that it already was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_job_leaves_its_lane() {
    let t = db();
    let store = fair_store(&t, &[]);
    let w = registered_worker(&store, "w1", &["default"]).await;
    store.enqueue_many(&jobs("acme", 3)).await.unwrap();
    let admin = store.admin();
    assert_eq!(
        admin.cancel_job("acme2").await.unwrap(),
        Canceled::Canceled("queued".into())
    );
    assert_eq!(
        admin.cancel_job("acme2").await.unwrap(),
        Canceled::AlreadyCanceled
    );
    let lanes = store
        .stats()
        .queue_stats(&["default".into()])
        .await
        .unwrap();
    assert_eq!(lanes["default"].queued, 2, "{lanes:?}");
    assert_eq!(drain_one_by_one(&store, &w).await, ["acme1", "acme3"]);
    assert_eq!(admin.cancel_job("acme1").await.unwrap(), Canceled::Running);
    assert_eq!(admin.cancel_job("nope").await.unwrap(), Canceled::Missing);
    let canceled: Vec<String> = t.connection().zrange("rq:canceled:default", 0, -1).unwrap();
    assert_eq!(canceled, ["acme2"]);
}

/// A paused queue is passed over by every claim: its own list, its tenant lanes, and an id of
/// it a wake-up had already moved into the worker's inbox (back to the head of its queue); the
/// claim tells the worker which of its queues are paused. Unpaused, they are served in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_passed_over_lanes_and_inbox_included() {
    let t = db();
    let store = fair_store(&t, &[]);
    let w = registered_worker(&store, "w-pause", &["default", "low"]).await;
    store
        .enqueue_many(&[
            job(None, "plain1"),
            job(Some("t1"), "lane1"),
            job(None, "plain2"),
            NewJob::new("low", "diag.noop", kwargs(json!({}))).with_options(JobOptions {
                job_id: Some("low1".into()),
                ..Default::default()
            }),
        ])
        .await
        .unwrap();
    let mut c = t.connection();
    let inbox = "prosaas:worker:w-pause:inbox";
    let moved: Option<String> = redis::cmd("LMOVE")
        .arg(&["rq:queue:default", inbox, "LEFT", "RIGHT"])
        .query(&mut c)
        .unwrap();
    assert_eq!(moved.as_deref(), Some("plain1"));
    assert!(store.admin().pause_queue("default").await.unwrap());
    assert!(
        !store.admin().pause_queue("default").await.unwrap(),
        "already"
    );
    let claim = store
        .workers()
        .claim(&w, 10, Duration::from_secs(60), 1)
        .await
        .unwrap();
    let ids: Vec<&str> = claim.jobs.iter().map(|j| j.execution.id.as_str()).collect();
    assert_eq!(ids, ["low1"], "only the unpaused queue is served");
    assert_eq!(claim.paused, ["default"]);
    let queue: Vec<String> = redis::Commands::lrange(&mut c, "rq:queue:default", 0, -1).unwrap();
    assert_eq!(
        queue,
        ["plain1", "plain2"],
        "the inbox's id went back to the head"
    );
    let left: usize = redis::Commands::llen(&mut c, inbox).unwrap();
    assert_eq!(left, 0);
    let stats = store.stats().queue_stats(&[]).await.unwrap();
    assert!(stats["default"].paused && !stats["low"].paused);
    assert_eq!(stats["default"].queued, 3);

    assert!(store.admin().unpause_queue("default").await.unwrap());
    let mut ids = claim_ids(&store, &w, 10).await;
    ids.sort();
    assert_eq!(ids, ["lane1", "plain1", "plain2"]);
}
