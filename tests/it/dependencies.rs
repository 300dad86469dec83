//! RQ's `depends_on` on prosaas's side: chains and fan-ins declared through the Rust API, the CLI
//! and the enqueue API; each kind of parent outcome settled by hand (finished, failed with and
//! without `allow_dependency_failures`, stopped); refusals that write nothing; what health and
//! `jobs show` say about deferred and stranded jobs. Python on either side: rq_interop.rs.

use std::time::Duration;

use prosaas::jobs::{ClaimedJob, JobError, JobOptions, JobStore, NewJob, Outcome, Settlement};
use redis::Commands;
use serde_json::json;

use crate::support::client::TestApi;
use crate::support::worker::InProcWorker;
use crate::support::{ProsaasProcess, db, eventually, kwargs, process, registered_worker};

fn job(id: &str, parents: &[&str]) -> NewJob {
    NewJob::new("default", "diag.count", kwargs(json!({}))).with_options(JobOptions {
        job_id: Some(id.into()),
        depends_on: parents.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    })
}

fn lenient(id: &str, parents: &[&str]) -> NewJob {
    let mut j = job(id, parents);
    j.options.allow_dependency_failures = true;
    j
}

async fn status(store: &JobStore, id: &str) -> String {
    store.fetch_job(id).await.unwrap().unwrap().status
}

/// Claims up to `max` queued jobs of `default` and settles each as `outcome(id)` says; their ids.
async fn run_queued(
    store: &JobStore,
    w: &prosaas::jobs::WorkerInfo,
    max: usize,
    outcome: impl Fn(&str) -> Outcome,
) -> Vec<String> {
    let claim = store
        .workers()
        .claim(w, max, Duration::from_secs(60), 1)
        .await
        .unwrap();
    let batch: Vec<Settlement> = claim
        .jobs
        .iter()
        .map(|j: &ClaimedJob| Settlement {
            execution: j.execution.clone(),
            started_at: 1.0,
            ended_at: 1.5,
            waited: None,
            outcome: outcome(&j.execution.id),
        })
        .collect();
    store.workers().settle(w, &batch, None).await.unwrap();
    claim.jobs.into_iter().map(|j| j.execution.id).collect()
}

fn finished() -> Outcome {
    Outcome::Finished {
        result: None,
        result_ttl: 500,
    }
}

fn failed() -> Outcome {
    Outcome::Failed {
        error: "ValueError: no".into(),
        failure_ttl: 500,
    }
}

/// A chain enqueued in one batch waits link by link, runs in order on a real worker, and leaves
/// RQ's keys as RQ leaves them: the parents' dependents sets gone, the dependencies sets kept as
/// long as their jobs.
// Long on purpose: one chain followed from its enqueue to its end, RQ's keys checked at each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_enqueued_in_one_batch_runs_in_order() {
    let t = db();
    let store = t.store();
    store
        .enqueue_many(&[
            job("fetch", &[]),
            job("transform", &["fetch"]),
            job("notify", &["transform"]),
        ])
        .await
        .unwrap();
    let mut c = t.connection();
    assert_eq!(status(&store, "fetch").await, "queued");
    assert_eq!(status(&store, "transform").await, "deferred");
    let deferred: Vec<String> = c.zrange("rq:deferred:default", 0, -1).unwrap();
    assert_eq!(deferred.len(), 2, "{deferred:?}");
    let waits: Vec<String> = c.smembers("rq:job::notify:dependencies").unwrap();
    assert_eq!(waits, ["transform"], "RQ's double-colon key");
    let dependents: Vec<String> = c.smembers("rq:job:fetch:dependents").unwrap();
    assert_eq!(dependents, ["transform"]);
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&[
            "rq:job:transform",
            "dependency_ids",
            "dependency_id",
            "enqueued_at",
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        fields,
        [
            Some(r#"["fetch"]"#.to_owned()),
            Some("fetch".to_owned()),
            None
        ]
    );
    let queued: usize = c.llen("rq:queue:default").unwrap();
    assert_eq!(queued, 1, "only the head of the chain is on the queue");

    let w = InProcWorker::start(&t, &[]);
    crate::support::status_becomes(&store, "notify", "finished").await;
    w.stop().await;
    let at = |c: &mut redis::Connection, id: &str, field: &str| {
        let v: String = c.hget(format!("rq:job:{id}"), field).unwrap();
        prosaas::jobs::parse_rq_timestamp(&v).unwrap()
    };
    assert!(
        at(&mut c, "transform", "started_at") >= at(&mut c, "fetch", "ended_at"),
        "transform ran before fetch ended"
    );
    assert!(
        at(&mut c, "notify", "started_at") >= at(&mut c, "transform", "ended_at"),
        "notify ran before transform ended"
    );
    for parent in ["fetch", "transform"] {
        let left: bool = c.exists(format!("rq:job:{parent}:dependents")).unwrap();
        assert!(
            !left,
            "{parent}'s dependents set is deleted once all moved on"
        );
    }
    let ttl: i64 = c.ttl("rq:job::notify:dependencies").unwrap();
    assert!(
        (1..=500).contains(&ttl),
        "the dependencies set expires with its finished job (result_ttl 500): {ttl}"
    );
    let deferred: usize = c.zcard("rq:deferred:default").unwrap();
    assert_eq!(deferred, 0);
    let detail = store
        .admin()
        .job_detail("transform")
        .await
        .unwrap()
        .unwrap();
    let linked = |l: &[prosaas::jobs::Linked]| {
        l.iter()
            .map(|j| (j.id.clone(), j.status.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        linked(&detail.parents),
        [("fetch".to_owned(), "finished".to_owned())]
    );
    assert!(
        detail.dependents.is_empty(),
        "its dependents set went when notify moved on"
    );
}

/// Several parents: a dependent moves when the last one ends, as RQ's rules say for each kind
/// of outcome: a failure releases only those that allow it, a stopped parent none.
// Long on purpose: one scenario, settled step by step, each step's effect checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_parent_outcome_releases_what_rq_releases() {
    let t = db();
    let store = t.store();
    let w = registered_worker(&store, "w-deps", &["default"]).await;
    store
        .enqueue_many(&[
            job("a", &[]),
            job("b", &[]),
            job("s", &[]),
            job("both", &["a", "b"]),
            lenient("lenient", &["a", "b"]),
            job("strict", &["b"]),
            lenient("after-stop", &["s"]),
        ])
        .await
        .unwrap();
    let ran = run_queued(&store, &w, 100, |id| match id {
        "a" => finished(),
        "b" => failed(),
        _ => Outcome::Stopped { failure_ttl: 500 },
    })
    .await;
    assert_eq!(ran, ["a", "b", "s"]);
    assert_eq!(
        status(&store, "lenient").await,
        "queued",
        "a failed parent releases a dependent that allows failures"
    );
    for (id, why) in [
        (
            "both",
            "a failed parent holds a dependent that does not allow failures",
        ),
        ("strict", "likewise with one parent"),
        (
            "after-stop",
            "a stopped parent holds even a lenient dependent (RQ 2.x, 3.0)",
        ),
    ] {
        assert_eq!(status(&store, id).await, "deferred", "{id}: {why}");
    }
    let mut c = t.connection();
    let left: Vec<String> = c.smembers("rq:job:b:dependents").unwrap();
    let mut left = left;
    left.sort();
    assert_eq!(
        left,
        ["both", "strict"],
        "only the moved dependent leaves b's set"
    );
    let deferred: Vec<String> = c.zrange("rq:deferred:default", 0, -1).unwrap();
    assert_eq!(deferred.len(), 3, "{deferred:?}");

    // All three can never run now: health says so and names one.
    let stats = store.stats().queue_stats(&[]).await.unwrap();
    let q = &stats["default"];
    assert_eq!((q.deferred, q.stranded), (3, 3), "{q:?}");
    assert!(q.oldest_deferred_secs.is_some(), "{q:?}");
    assert!(q.stranded_example.is_some(), "{q:?}");

    // A fan-in whose first parent ends waits for the second.
    store
        .enqueue_many(&[job("c", &[]), job("d", &[]), job("fan-in", &["c", "d"])])
        .await
        .unwrap();
    run_queued(&store, &w, 100, |_| finished()).await;
    assert_eq!(status(&store, "lenient").await, "finished");
    assert_eq!(status(&store, "fan-in").await, "queued");
}

/// A fan-in's first parent ending leaves it waiting; only the last one moves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_in_waits_for_its_last_parent() {
    let t = db();
    let store = t.store();
    let w = registered_worker(&store, "w-fan", &["default"]).await;
    let e = store
        .enqueue_many(&[job("p1", &[]), job("fan", &["p1", "p2"])])
        .await
        .unwrap_err();
    assert!(
        matches!(e, JobError::Invalid(_)),
        "p2 does not exist yet: {e}"
    );
    let written: bool = t.connection().exists("rq:job:p1").unwrap();
    assert!(!written, "a refused batch writes none of its jobs");
    store.enqueue(job("p1", &[])).await.unwrap();
    store.enqueue(job("p2", &[])).await.unwrap();
    store.enqueue(job("fan", &["p1", "p2"])).await.unwrap();
    assert_eq!(run_queued(&store, &w, 1, |_| finished()).await, ["p1"]);
    assert_eq!(status(&store, "fan").await, "deferred");
    let stats = store.stats().queue_stats(&[]).await.unwrap();
    assert_eq!(
        stats["default"].stranded, 0,
        "p2 is queued: fan still waits for something"
    );
    run_queued(&store, &w, 100, |_| finished()).await;
    assert_eq!(status(&store, "fan").await, "queued");
}

/// A parent that does not exist, or ended in a way that can never release the job, refuses the
/// whole batch and writes nothing: through the Rust API, the CLI and the enqueue API (a 400 that
/// says which parent and why).
// Long on purpose: the same refusals through each of the three ways to enqueue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_that_could_never_release_is_refused_and_nothing_is_written() {
    let t = db();
    let store = t.store();
    let w = registered_worker(&store, "w-ref", &["default"]).await;
    store.enqueue(job("bad", &[])).await.unwrap();
    run_queued(&store, &w, 100, |_| failed()).await;
    let err = store
        .enqueue_many(&[job("x", &[]), job("y", &["x"]), job("z", &["nope"])])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("\"nope\", which does not exist"),
        "{err}"
    );
    let err = store.enqueue(job("z", &["bad"])).await.unwrap_err();
    assert!(err.to_string().contains("which is failed"), "{err}");
    store
        .enqueue(lenient("ok-after-bad", &["bad"]))
        .await
        .unwrap();
    assert_eq!(
        status(&store, "ok-after-bad").await,
        "queued",
        "a failed parent is met for a lenient job: queued at once"
    );
    let mut c = t.connection();
    for key in ["rq:job:x", "rq:job:y", "rq:job:z", "rq:job::y:dependencies"] {
        let there: bool = c.exists(key).unwrap();
        assert!(!there, "{key} was written by a refused batch");
    }

    let url = t.url();
    let env = [("REDIS_URL", url.as_str())];
    let out = process::run(
        &["jobs", "enqueue", "diag.count", "--depends-on", "nope"],
        &env,
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("\"nope\", which does not exist"), "{said}");
    let out = process::run(
        &[
            "jobs",
            "enqueue",
            "diag.count",
            "--options",
            r#"{"job_id":"cli-parent"}"#,
        ],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let out = process::run(
        &[
            "jobs",
            "enqueue",
            "diag.count",
            "--depends-on",
            "cli-parent",
        ],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let child = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(status(&store, &child).await, "deferred");
    let shown = process::run(&["jobs", "show", "cli-parent"], &env);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("dependents:  {child} (deferred)")),
        "{shown}"
    );

    let p = ProsaasProcess::start("api", &[("REDIS_URL", &url)]);
    let api = TestApi::new(&p);
    let enqueue =
        |options: serde_json::Value| json!({"job_type": "diag.count", "options": options});
    let (code, body) = api
        .post(
            "/api/jobs/enqueue",
            Some(&enqueue(
                json!({"job_id": "api-child", "depends_on": ["nope"]}),
            )),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|m| m.contains("\"nope\", which does not exist")),
        "{body}"
    );
    let (code, body) = api
        .post(
            "/api/jobs/enqueue",
            Some(&enqueue(
                json!({"job_id": "api-child", "depends_on": ["cli-parent"]}),
            )),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(status(&store, "api-child").await, "deferred");
    let (code, body) = api
        .post(
            "/api/jobs/enqueue",
            Some(&enqueue(
                json!({"job_id": "api-child", "depends_on": ["cli-parent"]}),
            )),
        )
        .await;
    assert_eq!(code, 409, "a deferred job of that id waits already: {body}");
    let (code, body) = api.get("/api/jobs/cli-parent").await;
    assert_eq!(code, 200);
    let mut dependents: Vec<&str> = body["dependents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    dependents.sort();
    let mut expected = vec!["api-child", child.as_str()];
    expected.sort();
    assert_eq!(dependents, expected, "{body}");
}

/// A deferred job whose parent was deleted waits for nothing that will end: health reports it
/// (degraded, naming one), the metric counts it, and the job stays for an operator to decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_of_a_deleted_parent_is_reported_not_silent() {
    let t = db();
    let store = t.store();
    store
        .enqueue_many(&[job("gone", &[]), job("orphan", &["gone"])])
        .await
        .unwrap();
    let stats = store.stats().queue_stats(&[]).await.unwrap();
    assert_eq!(stats["default"].stranded, 0, "its parent is queued");
    store.admin().delete_job("gone").await.unwrap();
    let p = ProsaasProcess::start("api", &[("REDIS_URL", &t.url())]);
    let api = TestApi::new(&p);
    let body = eventually(
        "health to name the orphan",
        Duration::from_secs(10),
        || async {
            let (_, body) = api.try_get("/api/jobs/health").await?;
            (body["queues"]["default"]["stranded"] == 1).then_some(body)
        },
    )
    .await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["queues"]["default"]["stranded_example"], "orphan");
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("prosaas jobs show orphan"), "{reasons}");
    let metrics = api.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"prosaas_queue_stranded_jobs{queue="default"} 1"#),
        "{metrics}"
    );
    let detail = store.admin().job_detail("orphan").await.unwrap().unwrap();
    assert_eq!(detail.parents[0].status, None, "its parent shows as gone");
}

/// A parent whose worker is killed mid-run and that has no retries left is failed as abandoned
/// by another worker's recovery, and that same step moves its lenient dependents on: nothing
/// waits for a parent that will never end. (A finished parent releases in the step that records
/// it, so no kill can fall between the two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_parent_failed_by_recovery_releases_its_lenient_dependents() {
    let t = db();
    let store = t.store();
    let mut parent = NewJob::new("default", "diag.count", kwargs(json!({"ms": 10_000})));
    parent.options.job_id = Some("victim".into());
    parent.options.max_retries = Some(0);
    store
        .enqueue_many(&[
            parent,
            lenient("after", &["victim"]),
            job("held", &["victim"]),
        ])
        .await
        .unwrap();
    let url = t.url();
    let fast = [
        ("REDIS_URL", url.as_str()),
        ("PROSAAS__WORKER__HEARTBEAT_INTERVAL_MS", "500"),
        ("PROSAAS__WORKER__HEARTBEAT_TTL_MS", "2000"),
        ("PROSAAS__WORKER__MAINTENANCE_INTERVAL_MS", "500"),
    ];
    let victim = ProsaasProcess::start("worker", &fast);
    crate::support::status_becomes(&store, "victim", "started").await;
    victim.signal("KILL");
    let mut rescuer = ProsaasProcess::start("worker", &fast);
    eventually(
        "the lenient dependent to run",
        Duration::from_secs(20),
        || async { (status(&store, "after").await == "finished").then_some(()) },
    )
    .await;
    assert_eq!(status(&store, "victim").await, "failed");
    assert_eq!(status(&store, "held").await, "deferred");
    assert!(rescuer.stop().success());
}
