//! RQ's `depends_on` across the two runtimes, for each RQ version: chains Python declares and
//! prosaas runs (several parents, `allow_failure`, `enqueue_at_front`), and chains prosaas
//! declares and Python's worker runs.

use std::time::Duration;

use prosaas::jobs::{Outcome, Settlement};
use redis::Commands;

use super::{VERSIONS, python, python_modules, rq_worker};
use crate::support::worker::InProcWorker;
use crate::support::{db, eventually, process, registered_worker};

/// Python's chain: a → b → c; `lenient` waits for a and a failing f with `allow_failure`,
/// `strict` for f alone; `front` for a, at the front; `tail` is a plain job queued before them.
const PYTHON_CHAIN: &str = r#"
import json, sys
from redis import Redis
from rq import Queue
from rq.job import Dependency
from rq.serializers import JSONSerializer
q = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)
a = q.enqueue('diag.count', job_id='a')
f = q.enqueue('diag.fail', message='no', permanent=True, job_id='f')
tail = q.enqueue('diag.count', job_id='tail')
b = q.enqueue('diag.count', depends_on=a, job_id='b')
c = q.enqueue('diag.count', depends_on=b, job_id='c')
lenient = q.enqueue('diag.count', depends_on=Dependency(jobs=[a, f], allow_failure=True), job_id='lenient')
strict = q.enqueue('diag.count', depends_on=[f], job_id='strict')
front = q.enqueue('diag.count', depends_on=Dependency(jobs=[a], enqueue_at_front=True), job_id='front')
print(json.dumps({j.id: j.get_status(refresh=True) for j in [a, f, b, c, lenient, strict, front]}))
"#;

/// Each job's status as RQ reads it, and what waits in the deferred and (3.0) ready registries.
const STATUSES: &str = r#"
import json, sys
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import DeferredJobRegistry
from rq.serializers import JSONSerializer
r = Redis.from_url(sys.argv[1])
out = {}
for jid in sys.argv[2:]:
    s = Job.fetch(jid, connection=r, serializer=JSONSerializer).get_status(refresh=True)
    out[jid] = getattr(s, "value", s)
out["_deferred"] = sorted(DeferredJobRegistry('default', connection=r).get_job_ids())
out["_ready"] = r.zrange('rq:ready:default', 0, -1)
print(json.dumps(out, default=str))
"#;

// Long on purpose: one chain, its first outcomes settled by hand (to see where each dependent
// lands), then run to its end and read back by Python.
async fn python_declares_prosaas_runs(version: &str) {
    let t = db();
    let m = python_modules();
    let url = t.url();
    let enqueued = python(version, m.path(), PYTHON_CHAIN, &[&url]);
    assert_eq!(enqueued["b"], "deferred", "rq {version}: {enqueued}");
    let store = t.store();
    let w = registered_worker(&store, "w-chain", &["default"]).await;
    let claim = store
        .workers()
        .claim(&w, 2, Duration::from_secs(60), 1)
        .await
        .unwrap();
    let ids: Vec<&str> = claim.jobs.iter().map(|j| j.execution.id.as_str()).collect();
    assert_eq!(ids, ["a", "f"], "rq {version}");
    let batch: Vec<Settlement> = claim
        .jobs
        .iter()
        .map(|j| Settlement {
            execution: j.execution.clone(),
            started_at: 1.0,
            ended_at: 1.5,
            waited: None,
            outcome: if j.execution.id == "a" {
                Outcome::Finished {
                    result: None,
                    result_ttl: 500,
                }
            } else {
                Outcome::Failed {
                    error: "PermanentJobError: no".into(),
                    failure_ttl: 500,
                }
            },
        })
        .collect();
    store.workers().settle(&w, &batch, None).await.unwrap();
    let mut c = t.connection();
    let queue: Vec<String> = c.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(
        queue.first().map(String::as_str),
        Some("front"),
        "rq {version}: enqueue_at_front puts it first: {queue:?}"
    );
    let mut rest = queue[1..].to_vec();
    rest.sort();
    assert_eq!(rest, ["b", "lenient", "tail"], "rq {version}");

    let worker = InProcWorker::start(&t, &[]);
    eventually(
        &format!("rq {version}: the chain to finish"),
        Duration::from_secs(15),
        || async {
            let s = store.fetch_job("c").await.ok()??.status;
            (s == "finished").then_some(())
        },
    )
    .await;
    crate::support::status_becomes(&store, "lenient", "finished").await;
    worker.stop().await;
    let seen = python(
        version,
        m.path(),
        STATUSES,
        &[&url, "a", "b", "c", "f", "lenient", "strict", "front"],
    );
    for id in ["a", "b", "c", "lenient", "front"] {
        assert_eq!(seen[id], "finished", "rq {version}: {id}: {seen}");
    }
    assert_eq!(seen["f"], "failed", "rq {version}: {seen}");
    assert_eq!(
        seen["strict"], "deferred",
        "rq {version}: a failed parent holds a dependent without allow_failure: {seen}"
    );
    assert_eq!(seen["_deferred"], serde_json::json!(["strict"]), "{seen}");
    assert_eq!(seen["_ready"], serde_json::json!([]), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_3_chains_run_on_prosaas() {
    python_declares_prosaas_runs("3.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_2_chains_run_on_prosaas() {
    python_declares_prosaas_runs("2.12.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_1_chains_run_on_prosaas() {
    python_declares_prosaas_runs("1.16.2").await;
}

/// A chain prosaas declares (`jobs enqueue --depends-on`) runs in order on each RQ version's
/// worker, which reads prosaas's dependency keys as its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosaas_chains_run_on_python() {
    let m = python_modules();
    let cfg = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        cfg.path(),
        "external = [{ job_type = \"interop_jobs.add\", queue = \"python\" }]\n",
    )
    .unwrap();
    let cfg_path = cfg.path().display().to_string();
    for version in VERSIONS {
        let t = db();
        let url = t.url();
        let enqueue = |args: &[&str]| {
            let mut full = vec!["--config", &cfg_path, "jobs", "enqueue", "interop_jobs.add"];
            full.extend_from_slice(args);
            let out = process::run(&full, &[("REDIS_URL", &url)]);
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let first = enqueue(&["--args", r#"{"a": 1, "b": 1}"#]);
        let second = enqueue(&["--args", r#"{"a": 2, "b": 2}"#, "--depends-on", &first]);
        let third = enqueue(&["--args", r#"{"a": 3, "b": 3}"#, "--depends-on", &second]);
        let mut c = t.connection();
        let queued: usize = c.llen("rq:queue:python").unwrap();
        assert_eq!(queued, 1, "rq {version}: only the head waits on the queue");
        // A burst worker, waited for by its jobs rather than its exit: rq 2.12's sometimes
        // lingers a minute after "done, quitting" (its pub/sub thread's join).
        let mut worker = rq_worker(version, m.path(), &url, "python", true);
        let store = t.store();
        eventually(
            &format!("rq {version}: the chain to finish"),
            Duration::from_secs(20),
            || async { (store.fetch_job(&third).await.ok()??.status == "finished").then_some(()) },
        )
        .await;
        let _ = worker.kill();
        let _ = worker.wait();
        for (id, sum) in [(&first, 2), (&second, 4), (&third, 6)] {
            let d = store.admin().job_detail(id).await.unwrap().unwrap();
            assert_eq!(d.info.status, "finished", "rq {version}: {id}");
            assert_eq!(
                d.result,
                Some(prosaas::jobs::JobResult::Finished {
                    return_value: Some(serde_json::json!(sum))
                }),
                "rq {version}"
            );
        }
    }
}
