//! The worker in-process against a private database: outcomes as RQ records them, retries with
//! backoff, timeouts, unknown types, promotion of delayed jobs, registration.

use std::time::{Duration, Instant};

use prosaas::jobs::{JobOptions, JobResult, JobStore, NewJob, Outcome, Settled};
use redis::Commands;
use serde_json::json;

use crate::support::worker::{InProcWorker, executor};
use crate::support::{db, eventually, kwargs, process};

async fn wait_status(store: &JobStore, id: &str, status: &str, within: Duration) {
    eventually(&format!("job {id} to be {status}"), within, || async {
        let info = store.fetch_job(id).await.ok()??;
        (info.status == status).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_recorded_as_rq_records_it() {
    let t = db();
    let store = t.store();
    let w = InProcWorker::start(&t, &[]);
    let id = store
        .enqueue(NewJob::new("high", "diag.echo", kwargs(json!({"x": 1}))))
        .await
        .unwrap();
    wait_status(&store, &id, "finished", Duration::from_secs(10)).await;

    let mut c = t.connection();
    let wip: usize = c.zcard("rq:wip:high").unwrap();
    assert_eq!(wip, 0, "the started registry is empty again");
    let finished: f64 = c.zscore("rq:finished:high", &id).unwrap();
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now + 490.0..=now + 501.0).contains(&finished),
        "finished score is now + result_ttl"
    );
    let ttl: i64 = c.ttl(format!("rq:job:{id}")).unwrap();
    assert!(
        (490..=500).contains(&ttl),
        "job hash kept for result_ttl: {ttl}"
    );
    let detail = store.admin().job_detail(&id).await.unwrap().unwrap();
    assert_eq!(
        detail.result,
        Some(JobResult::Finished {
            return_value: Some(json!({"args": [], "kwargs": {"x": 1}}))
        })
    );
    assert_eq!(detail.attempts, 1);
    assert!(detail.info.started_at.is_some() && detail.info.ended_at.is_some());

    let workers: Vec<String> = c.smembers("rq:workers").unwrap();
    assert_eq!(workers.len(), 1);
    let on_queue: Vec<String> = c.smembers("rq:workers:high").unwrap();
    assert_eq!(
        on_queue, workers,
        "registered per queue too, which rq info reads"
    );
    let count: String = c.hget(&workers[0], "successful_job_count").unwrap();
    assert_eq!(count, "1");
    let worked: f64 = c.hget(&workers[0], "total_working_time").unwrap();
    assert!(
        worked > 0.0 && worked < 5.0,
        "the job's working time is counted: {worked}"
    );
    counts_of_later_jobs_arrive_within_a_second(&t, &store, &workers[0]).await;
    w.stop().await;
    let workers: Vec<String> = c.smembers("rq:workers").unwrap();
    assert!(workers.is_empty(), "unregistered on stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_backoff_then_fail_and_requeue_runs_again() {
    let t = db();
    let store = t.store();
    let w = InProcWorker::start(
        &t,
        &[
            ("PROSAAS__WORKER__MAX_RETRIES", "2"),
            ("PROSAAS__WORKER__BACKOFF_SECS", "1"),
            ("PROSAAS__WORKER__BACKOFF_JITTER", "0"),
        ],
    );
    let started = Instant::now();
    let id = store
        .enqueue(NewJob::new(
            "default",
            "diag.fail",
            kwargs(json!({"message": "flaky upstream"})),
        ))
        .await
        .unwrap();
    wait_status(&store, &id, "failed", Duration::from_secs(15)).await;
    let took = started.elapsed();
    // Two retries, each due one second after the failure before it.
    assert!(
        took >= Duration::from_secs(2),
        "retries waited their backoff: {took:?}"
    );
    let detail = store.admin().job_detail(&id).await.unwrap().unwrap();
    assert_eq!(detail.attempts, 3, "first attempt + 2 retries");
    let Some(JobResult::Failed { error }) = &detail.result else {
        panic!("no failure recorded: {detail:?}")
    };
    assert!(
        error.trim_end().ends_with("JobError: flaky upstream"),
        "{error}"
    );
    assert!(error.starts_with("Traceback"), "{error}");
    let failed: usize = t.connection().zcard("rq:failed:default").unwrap();
    assert_eq!(failed, 1);

    // An operator requeues it from the CLI: it runs again (and, out of retries, fails again).
    let out = process::run(&["jobs", "requeue", &id], &[("REDIS_URL", &t.url())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        "the requeued job to run again",
        Duration::from_secs(10),
        || async {
            let d = store.admin().job_detail(&id).await.ok()??;
            (d.attempts == 4 && d.info.status == "failed").then_some(())
        },
    )
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: one deterministic claim-run-settle step runs all three jobs; the checks read
// what that one step recorded.
async fn timeouts_unknown_types_and_permanent_errors_fail_clearly() {
    let t = db();
    let store = t.store();
    let w = executor(&t, &[]);
    let no_retry = |timeout: Option<i64>| JobOptions {
        timeout,
        max_retries: Some(0),
        ..Default::default()
    };
    let slow = store
        .enqueue(
            NewJob::new("default", "diag.sleep", kwargs(json!({"ms": 20_000})))
                .with_options(no_retry(Some(1))),
        )
        .await
        .unwrap();
    let unknown = store
        .enqueue(NewJob::new(
            "default",
            "billing.charge_card",
            kwargs(json!({})),
        ))
        .await
        .unwrap();
    let permanent = store
        .enqueue(NewJob::new(
            "default",
            "diag.fail",
            kwargs(json!({"message": "bad input", "permanent": true})),
        ))
        .await
        .unwrap();
    // One deterministic step: all three are claimed, run to their outcomes and recorded.
    let started = Instant::now();
    let ran = w.run_once(10).await.unwrap();
    let mut ids: Vec<&str> = ran.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort_unstable();
    let mut want = [slow.as_str(), unknown.as_str(), permanent.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    for (id, settled, outcome) in &ran {
        assert_eq!(*settled, Settled::Applied, "{id}");
        assert!(
            matches!(outcome, Outcome::Failed { .. }),
            "{id}: {outcome:?}"
        );
        assert_eq!(store.fetch_job(id).await.unwrap().unwrap().status, "failed");
    }
    assert!(
        w.run_once(10).await.unwrap().is_empty(),
        "nothing is left to run"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the sleeper was cut off at its timeout"
    );
    for (id, says) in [
        (
            &slow,
            "JobTimeoutException: Task exceeded maximum timeout value (1 seconds)",
        ),
        (
            &unknown,
            "UnknownJobType: no handler is registered for job type \"billing.charge_card\"",
        ),
        (&permanent, "PermanentJobError: bad input"),
    ] {
        let error = failure_of(&store, id).await;
        assert!(error.contains(says), "{error}");
    }
    // RQ leaves a failed job's result stream without a TTL when failure_ttl is unset (trap 7);
    // prosaas gives it the job's failure TTL so failed results do not pile up forever.
    let stream_ttl: i64 = t
        .connection()
        .ttl(format!("rq:results:{permanent}"))
        .unwrap();
    assert!(stream_ttl > 31_000_000, "result stream TTL {stream_ttl}");
    // Neither unknown types nor permanent errors are retried.
    for id in [&unknown, &permanent] {
        let detail = store.admin().job_detail(id).await.unwrap().unwrap();
        assert_eq!(detail.attempts, 1);
    }
}

/// The error a failed job's latest result records.
async fn failure_of(store: &JobStore, id: &str) -> String {
    match store.admin().job_detail(id).await.unwrap().unwrap().result {
        Some(JobResult::Failed { error }) => error,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: the order in which one worker takes jobs across priorities and delays is the
// subject: one run.
async fn priorities_delayed_jobs_and_dotted_names() {
    let t = db();
    let store = t.store();
    let low = store
        .enqueue(NewJob::new("low", "diag.echo", kwargs(json!({}))))
        .await
        .unwrap();
    let high = store
        .enqueue(NewJob::new("high", "diag.echo", kwargs(json!({}))))
        .await
        .unwrap();
    let dotted = store
        .enqueue(NewJob::new(
            "default",
            "server.jobs.diag.echo",
            kwargs(json!({})),
        ))
        .await
        .unwrap();
    // A delayed job as RQ's enqueue_in writes it: status scheduled, in the scheduled registry.
    let delayed = store
        .enqueue(NewJob::new("default", "diag.echo", kwargs(json!({}))))
        .await
        .unwrap();
    let mut c = t.connection();
    let _: () = redis::pipe()
        .lrem("rq:queue:default", 1, &delayed)
        .hset(format!("rq:job:{delayed}"), "status", "scheduled")
        .zadd(
            "rq:scheduled:default",
            &delayed,
            chrono::Utc::now().timestamp() + 1,
        )
        .query(&mut c)
        .unwrap();

    let w = InProcWorker::start(&t, &[("PROSAAS__WORKER__CONCURRENCY", "1")]);
    for id in [&high, &low, &dotted, &delayed] {
        wait_status(&store, id, "finished", Duration::from_secs(10)).await;
    }
    let started = |id: &str| {
        let store = store.clone();
        let id = id.to_owned();
        async move {
            store
                .fetch_job(&id)
                .await
                .unwrap()
                .unwrap()
                .started_at
                .unwrap()
        }
    };
    assert!(
        started(&high).await <= started(&low).await,
        "high runs before low"
    );
    let scheduled: usize = c.zcard("rq:scheduled:default").unwrap();
    assert_eq!(scheduled, 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_page_and_requeue_in_batches() {
    let t = db();
    let store = t.store();
    let w = InProcWorker::start(&t, &[]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let job = NewJob::new(
            "default",
            "diag.fail",
            kwargs(json!({"permanent": true, "message": format!("bad {i}")})),
        );
        ids.push(store.enqueue(job).await.unwrap());
    }
    for id in &ids {
        wait_status(&store, id, "failed", Duration::from_secs(10)).await;
    }
    w.stop().await;
    let first = store.admin().failed_jobs("default", 0, 2).await.unwrap();
    let rest = store.admin().failed_jobs("default", 2, 2).await.unwrap();
    assert_eq!((first.len(), rest.len()), (2, 1));
    let mut listed: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|d| d.info.id.clone())
        .collect();
    listed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected, "paging covers every failed job once");
    assert!(first.iter().chain(&rest).all(|d| matches!(&d.result, Some(JobResult::Failed { error }) if error.contains("PermanentJobError: bad"))));
    let details = store
        .admin()
        .job_details(&[ids[0].clone(), "missing".into()])
        .await
        .unwrap();
    assert!(details[0].is_some() && details[1].is_none());

    assert_eq!(
        store.admin().requeue_all_failed("default").await.unwrap(),
        3
    );
    for id in &ids {
        assert_eq!(store.fetch_job(id).await.unwrap().unwrap().status, "queued");
    }
    let queued: usize = t.connection().llen("rq:queue:default").unwrap();
    assert_eq!(queued, 3);
    assert_eq!(
        store.admin().requeue_all_failed("default").await.unwrap(),
        0,
        "nothing left to requeue"
    );
}

/// A busy worker writes its counts once a second rather than with every job: three more jobs
/// right after the first are counted in the worker's hash and the minute series within that.
async fn counts_of_later_jobs_arrive_within_a_second(
    t: &crate::support::redis_server::TestDb,
    store: &JobStore,
    worker_key: &str,
) {
    for i in 0..3 {
        let id = store
            .enqueue(NewJob::new("high", "diag.echo", kwargs(json!({"i": i}))))
            .await
            .unwrap();
        wait_status(store, &id, "finished", Duration::from_secs(10)).await;
    }
    eventually(
        "the worker's counts of four jobs",
        Duration::from_secs(3),
        || async {
            let series = store.stats().series().await.ok()?;
            let finished: u64 = series.iter().map(|m| m.finished).sum();
            let count: String = t
                .connection()
                .hget(worker_key, "successful_job_count")
                .ok()?;
            (count == "4" && finished == 4).then_some(())
        },
    )
    .await;
}

/// A worker named `name` registered on `high` and `low` (not running), and one job per entry
/// of `queues`, with ids `{prefix}0`, `{prefix}1`, ...
async fn worker_with_jobs(
    store: &JobStore,
    name: &str,
    prefix: &str,
    queues: &[&str],
) -> prosaas::jobs::WorkerInfo {
    let w = crate::support::registered_worker(store, name, &["high", "low"]).await;
    let jobs: Vec<NewJob> = queues
        .iter()
        .enumerate()
        .map(|(i, q)| {
            NewJob::new(*q, "t", kwargs(json!({}))).with_options(JobOptions {
                job_id: Some(format!("{prefix}{i}")),
                ..Default::default()
            })
        })
        .collect();
    store.enqueue_many(&jobs).await.unwrap();
    w
}

/// One claim and one settle over two queues, with a job taken away in between (as recovery or
/// `rq info` would): the claim enters every job in its queue's started registry, and the settle
/// applies exactly the outcomes whose entries it still finds, leaving the taken job alone.
#[tokio::test]
// Long on purpose: one claim and one settle, with a job taken away between them: the batch is the
// subject.
async fn a_batched_claim_and_settle_across_queues_apply_per_job() {
    use prosaas::jobs::Settlement;
    let t = db();
    let store = t.store();
    let w = worker_with_jobs(&store, "batch-w", "j", &["high", "low", "high", "low"]).await;
    let claimed = store
        .workers()
        .claim(&w, 10, Duration::from_secs(60), 1)
        .await
        .unwrap()
        .jobs;
    let order: Vec<&str> = claimed.iter().map(|c| c.execution.id.as_str()).collect();
    assert_eq!(order, ["j0", "j2", "j1", "j3"], "queues in priority order");
    let mut c = t.connection();
    for q in ["high", "low"] {
        let n: usize = c.zcard(format!("rq:wip:{q}")).unwrap();
        assert_eq!(n, 2, "both {q} jobs are in its started registry");
    }
    // j2 is taken away before its outcome arrives.
    let taken = &claimed[1].execution;
    let removed: usize = c
        .zrem(
            "rq:wip:high",
            format!("{}:{}", taken.id, taken.execution_id),
        )
        .unwrap();
    assert_eq!(removed, 1);
    let outcomes = [
        Outcome::Finished {
            result: None,
            result_ttl: 100,
        },
        Outcome::Finished {
            result: Some(json!(2)),
            result_ttl: 100,
        },
        Outcome::Failed {
            error: "boom".into(),
            failure_ttl: -1,
        },
        Outcome::Finished {
            result: None,
            result_ttl: -1,
        },
    ];
    let batch: Vec<Settlement> = claimed
        .iter()
        .zip(outcomes)
        .map(|(cj, outcome)| Settlement {
            execution: cj.execution.clone(),
            started_at: 1.0,
            ended_at: 1.5,
            waited: None,
            outcome,
        })
        .collect();
    let settled = store.workers().settle(&w, &batch, None).await.unwrap();
    assert_eq!(
        settled,
        [
            Settled::Applied,
            Settled::Conflict,
            Settled::Applied,
            Settled::Applied
        ]
    );
    each_outcome_is_recorded_as_rq_records_it(&mut c);
    the_worker_counts_only_what_applied(&mut c);
}

/// A settler's counts: its first call writes them at once; later ones within a second hold
/// them (the outcomes themselves are recorded at once) and the next call that writes, here the
/// empty one a settler sends when they are due, adds them all, the conflict left out.
#[tokio::test]
// Long on purpose: three settle calls sharing one tally, each followed by what Redis holds.
async fn held_counts_are_written_together_and_leave_out_conflicts() {
    use prosaas::jobs::{Settlement, Tally};
    let t = db();
    let store = t.store();
    let w = worker_with_jobs(&store, "tally-w", "k", &["high", "high", "high"]).await;
    let claimed = store
        .workers()
        .claim(&w, 10, Duration::from_secs(60), 1)
        .await
        .unwrap()
        .jobs;
    let settle = |i: usize, outcome: Outcome| Settlement {
        execution: claimed[i].execution.clone(),
        started_at: 1.0,
        ended_at: 1.5,
        waited: Some(0.001),
        outcome,
    };
    let ok = || Outcome::Finished {
        result: None,
        result_ttl: 100,
    };
    let mut c = t.connection();
    let counts = |c: &mut redis::Connection| -> (u64, u64, f64) {
        redis::cmd("HMGET")
            .arg("rq:worker:tally-w")
            .arg("successful_job_count")
            .arg("failed_job_count")
            .arg("total_working_time")
            .query(c)
            .unwrap()
    };
    let finished = || async {
        let series = store.stats().series().await.unwrap();
        let sum = |f: fn(&prosaas::jobs::Minute) -> u64| series.iter().map(f).sum::<u64>();
        (sum(|m| m.finished), sum(|m| m.failed))
    };
    let mut tally = Tally::default();
    let workers = store.workers();
    let first = workers
        .settle_counting(&w, &[settle(0, ok())], None, &mut tally)
        .await
        .unwrap();
    assert_eq!(first, [Settled::Applied]);
    assert_eq!(counts(&mut c), (1, 0, 0.5), "a first call writes at once");
    assert_eq!(finished().await, (1, 0));
    assert!(tally.due_at().is_none(), "nothing held");

    let taken = &claimed[1].execution;
    let _: usize = c
        .zrem(
            "rq:wip:high",
            format!("{}:{}", taken.id, taken.execution_id),
        )
        .unwrap();
    let failed = Outcome::Failed {
        error: "boom".into(),
        failure_ttl: 100,
    };
    let second = workers
        .settle_counting(&w, &[settle(1, ok()), settle(2, failed)], None, &mut tally)
        .await
        .unwrap();
    assert_eq!(second, [Settled::Conflict, Settled::Applied]);
    let status: String = c.hget("rq:job:k2", "status").unwrap();
    assert_eq!(status, "failed", "the outcome itself is recorded at once");
    assert_eq!(counts(&mut c), (1, 0, 0.5), "its counts are held");
    assert_eq!(finished().await, (1, 0));
    assert!(tally.due_at().is_some(), "held, to be written when due");

    workers
        .settle_counting(&w, &[], None, &mut tally)
        .await
        .unwrap();
    assert_eq!(
        counts(&mut c),
        (1, 1, 1.0),
        "the failure and its working time; the conflict counted nowhere"
    );
    assert_eq!(finished().await, (1, 1));
    assert!(tally.due_at().is_none());
}

/// Applied outcomes in their registries with RQ's scores and TTLs; the taken job left alone.
fn each_outcome_is_recorded_as_rq_records_it(c: &mut redis::Connection) {
    let status = |c: &mut redis::Connection, id: &str| -> String {
        c.hget(format!("rq:job:{id}"), "status").unwrap()
    };
    assert_eq!(status(c, "j0"), "finished");
    assert_eq!(status(c, "j2"), "started", "the taken job is left alone");
    assert_eq!(status(c, "j1"), "failed");
    assert_eq!(status(c, "j3"), "finished");
    let finished_high: Vec<String> = c.zrange("rq:finished:high", 0, -1).unwrap();
    assert_eq!(finished_high, ["j0"]);
    let finished_low: Vec<(String, f64)> = c.zrange_withscores("rq:finished:low", 0, -1).unwrap();
    assert_eq!(finished_low, [("j3".to_owned(), f64::INFINITY)]);
    let failed_low: Vec<(String, f64)> = c.zrange_withscores("rq:failed:low", 0, -1).unwrap();
    assert_eq!(failed_low, [("j1".to_owned(), -1.0)]);
    let ttl: i64 = c.ttl("rq:job:j0").unwrap();
    assert!((95..=100).contains(&ttl), "ttl {ttl}");
    for q in ["high", "low"] {
        let n: usize = c.zcard(format!("rq:wip:{q}")).unwrap();
        assert_eq!(n, 0, "{q}: settled entries left the started registry");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let score: f64 = c.zscore("rq:finished:high", "j0").unwrap();
    assert!(
        (now + 95.0..=now + 100.0).contains(&score),
        "finished score is now + result_ttl: {score} at {now}"
    );
}

/// The worker's counts and working time hold the applied outcomes, not the conflict.
fn the_worker_counts_only_what_applied(c: &mut redis::Connection) {
    let done: (u64, u64) = redis::cmd("HMGET")
        .arg("rq:worker:batch-w")
        .arg("successful_job_count")
        .arg("failed_job_count")
        .query(c)
        .unwrap();
    assert_eq!(done, (2, 1), "the conflict is counted nowhere");
    let worked: f64 = c.hget("rq:worker:batch-w", "total_working_time").unwrap();
    assert!(
        (worked - 1.5).abs() < 1e-9,
        "three applied outcomes of 0.5 s each; the conflict's time is not counted: {worked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: one heartbeat after the registry was changed under the worker, checked entry by
// entry.
async fn a_heartbeat_refreshes_only_the_jobs_the_worker_still_holds() {
    let t = db();
    let store = t.store();
    let w = worker_with_jobs(&store, "beat-w", "b", &["high", "low", "high"]).await;
    let claimed = store
        .workers()
        .claim(&w, 10, Duration::from_secs(30), 1)
        .await
        .unwrap()
        .jobs;
    assert_eq!(claimed.len(), 3);
    let member = |i: usize| {
        let e = &claimed[i].execution;
        (
            format!("rq:wip:{}", e.queue),
            format!("{}:{}", e.id, e.execution_id),
        )
    };
    let mut c = t.connection();
    let old = "2000-01-01T00:00:00.000000Z";
    for id in ["b0", "b1", "b2"] {
        let _: () = c
            .hset(format!("rq:job:{id}"), "last_heartbeat", old)
            .unwrap();
    }
    // b1 was taken away (recovered); b2 was settled with result_ttl 0, which deletes its hash.
    let (wip1, m1) = member(1);
    let _: () = c.zrem(&wip1, &m1).unwrap();
    let (wip2, m2) = member(2);
    let _: () = c.zrem(&wip2, &m2).unwrap();
    let _: () = c.del("rq:job:b2").unwrap();
    let _: () = c.srem("rq:workers", "rq:worker:beat-w").unwrap();

    let executions: Vec<_> = claimed.iter().map(|j| j.execution.clone()).collect();
    let refreshed = store
        .workers()
        .heartbeat(&w, &executions, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(refreshed, Some(1));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let (wip0, m0) = member(0);
    let deadline: f64 = c.zscore(&wip0, &m0).unwrap();
    assert!(
        (now + 290.0..=now + 301.0).contains(&deadline),
        "the held job's deadline moved to now + ttl: {deadline} at {now}"
    );
    let beat: String = c.hget("rq:job:b0", "last_heartbeat").unwrap();
    assert_ne!(
        beat, old,
        "the held job's last_heartbeat is written, as RQ does"
    );
    assert_eq!(beat.len(), old.len(), "an RQ timestamp: {beat}");
    let beat1: String = c.hget("rq:job:b1", "last_heartbeat").unwrap();
    assert_eq!(beat1, old, "a job taken away is not touched");
    let back: Option<f64> = c.zscore(&wip1, &m1).unwrap();
    assert_eq!(back, None, "nor re-entered in the started registry");
    let exists: bool = c.exists("rq:job:b2").unwrap();
    assert!(!exists, "a deleted job's hash is not re-created");

    let ttl: i64 = c.ttl("rq:worker:beat-w").unwrap();
    assert!((290..=300).contains(&ttl), "registration TTL {ttl}");
    let listed: bool = c.sismember("rq:workers", "rq:worker:beat-w").unwrap();
    assert!(listed, "a registration a cleanup removed is healed");
    for q in ["high", "low"] {
        let listed: bool = c
            .sismember(format!("rq:workers:{q}"), "rq:worker:beat-w")
            .unwrap();
        assert!(listed, "{q}");
    }
    let inbox: bool = c.sismember("prosaas:inboxes", "beat-w").unwrap();
    assert!(inbox);
}

/// TTLs in a job hash come from anyone (Python RQ, a hand-made job). One Redis would refuse
/// (`EXPIRE` past its clock) used to fail the whole settle or recovery script, on every retry,
/// holding up every outcome behind it; it is now cut to `MAX_TTL_SECS`, and a negative one
/// means "no expiry", as in RQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: a table of hostile TTLs, each through a settle and a recovery of the same
// worker.
async fn ttls_written_by_others_cannot_wedge_a_settle_or_a_recovery() {
    use prosaas::jobs::{MAX_TTL_SECS, Settlement};
    let t = db();
    let store = t.store();
    let w = worker_with_jobs(&store, "ttl-w", "t", &["high", "high"]).await;
    let mut c = t.connection();
    let huge = i64::MAX.to_string();
    let _: () = c
        .hset_multiple(
            "rq:job:t0",
            &[("result_ttl", huge.as_str()), ("failure_ttl", "-5")],
        )
        .unwrap();
    let _: () = c
        .hset_multiple(
            "rq:job:t1",
            &[("failure_ttl", huge.as_str()), ("retries_left", "0")],
        )
        .unwrap();
    // A deadline already past, so that recovery takes t1 below.
    let claimed = store
        .workers()
        .claim(&w, 10, Duration::ZERO, 1)
        .await
        .unwrap()
        .jobs;
    assert_eq!(claimed.len(), 2);
    let kept_longest = |c: &mut redis::Connection, id: &str, status: &str| {
        let key = format!("rq:job:{id}");
        let now: String = c.hget(&key, "status").unwrap();
        assert_eq!(now, status, "{id}");
        let ttl: i64 = c.ttl(&key).unwrap();
        assert!(
            (MAX_TTL_SECS - 60..=MAX_TTL_SECS).contains(&ttl),
            "{id} kept for the longest TTL: {ttl}"
        );
    };
    let t0 = claimed.iter().find(|j| j.execution.id == "t0").unwrap();
    assert_eq!(t0.result_ttl, Some(MAX_TTL_SECS));
    assert_eq!(t0.failure_ttl, Some(-1));

    let settled = store
        .workers()
        .settle(
            &w,
            &[Settlement {
                execution: t0.execution.clone(),
                started_at: 1.0,
                ended_at: 1.5,
                waited: None,
                outcome: Outcome::Finished {
                    result: None,
                    result_ttl: t0.result_ttl.unwrap(),
                },
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(settled, [Settled::Applied]);
    kept_longest(&mut c, "t0", "finished");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Its worker is registered and has not heartbeated since the claim: it may be about to
    // renew (just back from an outage), so the job stays.
    let workers = store.workers();
    let recover =
        || workers.recover_abandoned("high", "ttl-test", Duration::from_secs(5), &|_, _| 0, 100);
    let recovered = recover().await.unwrap();
    assert_eq!(recovered.failed + recovered.requeued, 0, "{recovered:?}");
    // The worker heartbeats without renewing t1: t1 is truly stalled, and recovery takes it.
    assert_eq!(
        store
            .workers()
            .heartbeat(&w, &[], Duration::from_secs(30))
            .await
            .unwrap(),
        Some(0)
    );
    let recovered = recover().await.unwrap();
    assert_eq!(recovered.failed, 1, "{recovered:?}");
    kept_longest(&mut c, "t1", "failed");
}

/// In RQ 1.x's plain-id entry format, executions cannot be told apart by their entry: an
/// outcome applies only while the job still names the worker (a recovered job re-claimed by
/// another worker is not overwritten by the stalled first one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_id_entries_settle_only_for_the_worker_the_job_names() {
    use prosaas::jobs::Settlement;
    let t = db();
    let store = t.store();
    store.workers().set_rq1_entries(true);
    let w = worker_with_jobs(&store, "plain-w", "p", &["high", "high"]).await;
    let claimed = store
        .workers()
        .claim(&w, 10, Duration::from_secs(60), 1)
        .await
        .unwrap()
        .jobs;
    assert_eq!(claimed.len(), 2);
    let mut c = t.connection();
    let members: Vec<String> = c.zrange("rq:wip:high", 0, -1).unwrap();
    assert_eq!(members, ["p0", "p1"]);
    assert!(claimed.iter().all(|j| j.execution.execution_id.is_empty()));
    // p1 was recovered and claimed by another worker meanwhile.
    let _: () = c.hset("rq:job:p1", "worker_name", "other-w").unwrap();
    let ok = |j: &prosaas::jobs::ClaimedJob| Settlement {
        execution: j.execution.clone(),
        started_at: 1.0,
        ended_at: 2.0,
        waited: None,
        outcome: Outcome::Finished {
            result: None,
            result_ttl: 60,
        },
    };
    let settled = store
        .workers()
        .settle(&w, &[ok(&claimed[0]), ok(&claimed[1])], None)
        .await
        .unwrap();
    assert_eq!(settled, [Settled::Applied, Settled::Conflict]);
    let p1: String = c.hget("rq:job:p1", "status").unwrap();
    assert_eq!(p1, "started", "the other worker's execution is untouched");
    let left: Vec<String> = c.zrange("rq:wip:high", 0, -1).unwrap();
    assert_eq!(left, ["p1"]);
}

/// A failure kept forever keeps its result stream forever too, even a stream an earlier failure
/// gave an expiry (the job was failed, requeued, and failed again): before, only the hash was
/// made permanent and the error vanished with the old expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_kept_forever_keeps_its_result_forever() {
    use prosaas::jobs::Settlement;
    let t = db();
    let store = t.store();
    let w = worker_with_jobs(&store, "forever-w", "f", &["high"]).await;
    let mut c = t.connection();
    // The first failure's stream, with the expiry that failure gave it.
    let _: String = c
        .xadd(
            "rq:results:f0",
            "*",
            &[("type", "2"), ("exc_string", "old")],
        )
        .unwrap();
    let _: () = c.expire("rq:results:f0", 300).unwrap();
    let claimed = store
        .workers()
        .claim(&w, 1, Duration::from_secs(60), 1)
        .await
        .unwrap()
        .jobs;
    let settled = store
        .workers()
        .settle(
            &w,
            &[Settlement {
                execution: claimed[0].execution.clone(),
                started_at: 1.0,
                ended_at: 2.0,
                waited: None,
                outcome: Outcome::Failed {
                    error: "boom".into(),
                    failure_ttl: -1,
                },
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(settled, [Settled::Applied]);
    let job_ttl: i64 = c.ttl("rq:job:f0").unwrap();
    let result_ttl: i64 = c.ttl("rq:results:f0").unwrap();
    assert_eq!((job_ttl, result_ttl), (-1, -1), "both kept forever");
}

/// A worker on one plain queue waits on it with its claim sent right behind the wait: the job
/// that ends the wait is claimed in the same round trip, stamped by Redis's clock when the claim
/// ran (not when it was sent); a wait that times out, or is ended early by `CLIENT UNBLOCK`
/// (shutdown), claims nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: the three ways a wait ends, each with what it claimed.
async fn a_claim_behind_a_wait_takes_the_job_that_ends_it() {
    let t = db();
    let store = t.store();
    let w = crate::support::registered_worker(&store, "fused-w", &["high"]).await;
    let workers = store.workers();
    let mut waker = workers.waker(&w, "high", false).await.unwrap();
    let producer = store.clone();
    let enqueue = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let job = NewJob::new("high", "diag.echo", kwargs(json!({}))).with_options(JobOptions {
            job_id: Some("f1".into()),
            ..Default::default()
        });
        producer.enqueue(job).await.unwrap();
    });
    let claim = (10, Duration::from_secs(60), 1);
    let got = waker
        .wait_and_claim(&workers, &w, claim, Duration::from_secs(10))
        .await
        .unwrap();
    enqueue.await.unwrap();
    let ids: Vec<&str> = got.jobs.iter().map(|j| j.execution.id.as_str()).collect();
    assert_eq!(ids, ["f1"]);
    let info = store.fetch_job("f1").await.unwrap().unwrap();
    assert_eq!(info.status, "started");
    let parse = |ts: Option<String>| prosaas::jobs::parse_rq_timestamp(&ts.unwrap()).unwrap();
    let (enqueued, started) = (parse(info.enqueued_at), parse(info.started_at));
    // Two clocks: `started_at` is Redis's own (TIME in the claim), `enqueued_at` the producer's
    // reading of it, off by up to half the round trip of its sync (well under a millisecond).
    assert!(
        started >= enqueued - chrono::TimeDelta::milliseconds(1),
        "started {started} by the clock at the claim's run, after enqueued {enqueued}"
    );
    let now = chrono::Utc::now();
    assert!(
        (now - started).num_seconds().abs() <= 2,
        "{started} vs {now}"
    );
    let mut c = t.connection();
    let deadline: f64 = c
        .zscore("rq:wip:high", got.jobs[0].execution.member())
        .unwrap();
    let expected = (started.timestamp() + 60) as f64;
    assert!(
        (deadline - expected).abs() <= 1.0,
        "{deadline} vs {expected}"
    );

    let waited = Instant::now();
    let none = waker
        .wait_and_claim(&workers, &w, claim, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(none.jobs.is_empty());
    assert!(waited.elapsed() >= Duration::from_millis(250), "it waited");

    let id = waker.client_id().expect("CLIENT ID answered");
    let unblocker = store.clone();
    let unblock = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        unblocker.workers().unblock(id).await.unwrap();
    });
    let waited = Instant::now();
    let none = waker
        .wait_and_claim(&workers, &w, claim, Duration::from_secs(30))
        .await
        .unwrap();
    unblock.await.unwrap();
    assert!(none.jobs.is_empty());
    assert!(
        waited.elapsed() < Duration::from_secs(10),
        "ended early, not after its 30 s"
    );
}
