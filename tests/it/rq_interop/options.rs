//! The job options a Python producer sets that act on the worker, on a prosaas worker: callbacks
//! for each RQ version (one whose name resolves to a handler runs, a failing success callback
//! fails the job, one that resolves to nothing is skipped loudly: recorded on the job, counted,
//! read by Python); RQ 2.x/3.0's `Retry(enqueue_at_front=True)` and `Repeat` honoured.

use std::time::Duration;

use prosaas::jobs::{Outcome, Settlement};

use super::{VERSIONS, python, python_modules};
use crate::support::worker::InProcWorker;
use crate::support::{db, eventually, registered_worker};

/// Jobs with callbacks, by RQ's `Callback(<import path>)`. `diag.count` counts its runs per job
/// id, so a callback resolved to it shows as a second execution of the job it reports on.
const WITH_CALLBACKS: &str = r#"
import json, sys
from redis import Redis
from rq import Queue
from rq.job import Callback
from rq.serializers import JSONSerializer
q = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)
q.enqueue('diag.count', job_id='ok', on_success=Callback('app.hooks.diag.count'))
q.enqueue('diag.count', job_id='missing', on_success=Callback('app.hooks.notify_crm'))
q.enqueue('diag.fail', permanent=True, message='no', job_id='failed',
          on_failure=Callback('diag.count', timeout=5))
q.enqueue('diag.count', job_id='bad-hook', on_success=Callback('diag.fail'))
print(json.dumps({}))
"#;

// Long on purpose: one Redis per RQ version, each kind of callback checked on it in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_callbacks_run_when_they_resolve_and_are_reported_when_not() {
    let m = python_modules();
    for version in VERSIONS {
        let t = db();
        let url = t.url();
        python(version, m.path(), WITH_CALLBACKS, &[&url]);
        let store = t.store();
        let w = InProcWorker::start(&t, &[]);
        for id in ["ok", "missing", "failed", "bad-hook"] {
            eventually(
                &format!("rq {version}: {id} to end"),
                Duration::from_secs(15),
                || async {
                    let s = store.fetch_job(id).await.ok()??.status;
                    (s == "finished" || s == "failed").then_some(())
                },
            )
            .await;
        }
        w.stop().await;
        let runs = store.diag().execution_counts().await.unwrap();
        let status = |id: &str| {
            let store = store.clone();
            let id = id.to_owned();
            async move { store.admin().job_detail(&id).await.unwrap().unwrap() }
        };
        assert_eq!(
            runs.get("ok"),
            Some(&2),
            "rq {version}: the job and its success callback: {runs:?}"
        );
        assert_eq!(status("ok").await.info.status, "finished");
        assert_eq!(
            runs.get("failed"),
            Some(&1),
            "rq {version}: the failure callback ran: {runs:?}"
        );
        let missing = status("missing").await;
        assert_eq!(missing.info.status, "finished", "rq {version}");
        assert_eq!(
            missing.unresolved_callbacks.as_deref(),
            Some("app.hooks.notify_crm"),
            "rq {version}"
        );
        let bad = status("bad-hook").await;
        assert_eq!(
            bad.info.status, "failed",
            "rq {version}: a failing success callback fails the job"
        );
        let Some(prosaas::jobs::JobResult::Failed { error }) = bad.result else {
            panic!("rq {version}: {bad:?}")
        };
        assert!(
            error
                .trim_end()
                .ends_with("CallbackError: diag.fail was asked to fail"),
            "{error}"
        );
        // Python reads the skipped callback's name off the job.
        let seen = python(
            version,
            m.path(),
            "import json, sys\nfrom redis import Redis\n\
             r = Redis.from_url(sys.argv[1])\n\
             print(json.dumps(r.hget('rq:job:missing', 'unresolved_callbacks').decode()))\n",
            &[&url],
        );
        assert_eq!(seen, "app.hooks.notify_crm", "rq {version}");
    }
}

/// A failing job with `Retry(max=1, enqueue_at_front=True)` goes back to the head of its queue
/// (RQ 2.x, 3.0); a job with `Repeat(times=2)` runs three times, once at once and once after
/// its interval, and ends finished as Python reads it.
// Long on purpose: one Redis per RQ version, the retry and then the repeat checked on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_at_front_and_repeat_are_honoured() {
    let m = python_modules();
    for version in ["3.0.0", "2.12.0"] {
        let t = db();
        let url = t.url();
        python(
            version,
            m.path(),
            "import json, sys\nfrom redis import Redis\nfrom rq import Queue, Repeat, Retry\n\
             from rq.serializers import JSONSerializer\n\
             q = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)\n\
             q.enqueue('diag.fail', job_id='again', retry=Retry(max=1, enqueue_at_front=True))\n\
             q.enqueue('diag.count', job_id='behind')\n\
             q.enqueue('diag.count', job_id='repeat', repeat=Repeat(times=2, interval=[0, 1]))\n\
             print(json.dumps({}))\n",
            &[&url],
        );
        let store = t.store();
        let w = registered_worker(&store, "w-front", &["default"]).await;
        let claim = store
            .workers()
            .claim(&w, 1, Duration::from_secs(60), 1)
            .await
            .unwrap();
        assert_eq!(claim.jobs[0].execution.id, "again");
        let retry = Settlement {
            execution: claim.jobs[0].execution.clone(),
            started_at: 1.0,
            ended_at: 1.5,
            waited: None,
            outcome: Outcome::Retry {
                error: "JobError: again".into(),
                delay_secs: 0,
                retries_left: 0,
            },
        };
        store.workers().settle(&w, &[retry], None).await.unwrap();
        let queue: Vec<String> =
            redis::Commands::lrange(&mut t.connection(), "rq:queue:default", 0, -1).unwrap();
        assert_eq!(queue, ["again", "behind", "repeat"], "rq {version}");

        let worker = InProcWorker::start(&t, &[]);
        eventually(
            &format!("rq {version}: the repeating job's three runs"),
            Duration::from_secs(15),
            || async {
                let runs = store.diag().execution_counts().await.ok()?;
                let job = store.fetch_job("repeat").await.ok()??;
                (runs.get("repeat") == Some(&3) && job.status == "finished").then_some(())
            },
        )
        .await;
        // No fourth run: the last one ended the repeats.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        worker.stop().await;
        let runs = store.diag().execution_counts().await.unwrap();
        assert_eq!(runs.get("repeat"), Some(&3), "rq {version}");
        let seen = python(
            version,
            m.path(),
            "import json, sys\nfrom redis import Redis\nfrom rq.job import Job\n\
             from rq.registry import FinishedJobRegistry\n\
             from rq.serializers import JSONSerializer\n\
             r = Redis.from_url(sys.argv[1])\n\
             j = Job.fetch('repeat', connection=r, serializer=JSONSerializer)\n\
             s = j.get_status()\n\
             print(json.dumps({'status': getattr(s, 'value', s), 'left': j.repeats_left,\n\
                 'result': j.return_value(), 'ttl': r.ttl(j.key),\n\
                 'finished': FinishedJobRegistry('default', connection=r).get_job_ids()}))\n",
            &[&url],
        );
        assert_eq!(seen["status"], "finished", "rq {version}: {seen}");
        assert_eq!(seen["left"], 0, "rq {version}: {seen}");
        assert_eq!(seen["result"]["executions"], 3, "rq {version}: {seen}");
        assert!(
            seen["finished"]
                .as_array()
                .unwrap()
                .iter()
                .any(|id| id == "repeat"),
            "rq {version}: {seen}"
        );
        // The last run expires the job as any success does; the runs before it did not.
        assert!(seen["ttl"].as_i64().unwrap() > 0, "rq {version}: {seen}");
    }
}

/// RQ 3.0's rate limits: jobs enqueued with `RateLimit(key, 1)` wait for the one slot; each
/// that ends on a prosaas worker (finished, failed, retried later) frees it for the next, so all
/// run, one at a time, and the limit's sets end empty as RQ's own workers leave them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_3_rate_limits_are_released_by_prosaas_workers() {
    let m = python_modules();
    let t = db();
    let url = t.url();
    let seeded = python(
        "3.0.0",
        m.path(),
        "import json, sys\nfrom redis import Redis\nfrom rq import Queue, RateLimit, Retry\n\
         from rq.serializers import JSONSerializer\n\
         r = Redis.from_url(sys.argv[1])\n\
         q = Queue('default', connection=r, serializer=JSONSerializer)\n\
         one = RateLimit('crm', 1)\n\
         q.enqueue('diag.count', job_id='rl-0', rate_limit=one)\n\
         q.enqueue('diag.fail', permanent=True, message='no', job_id='rl-1', rate_limit=one)\n\
         q.enqueue('diag.fail', message='later', job_id='rl-2', rate_limit=one,\n\
                   retry=Retry(max=1, interval=1))\n\
         q.enqueue('diag.count', job_id='rl-3', rate_limit=one)\n\
         print(json.dumps({'queued': q.count, 'waiting': r.zcard('rq:rl:crm:rate_limited')}))\n",
        &[&url],
    );
    assert_eq!(seeded, serde_json::json!({"queued": 1, "waiting": 3}));
    let store = t.store();
    let worker = InProcWorker::start(&t, &[]);
    for (id, status) in [
        ("rl-0", "finished"),
        ("rl-1", "failed"),
        ("rl-2", "failed"),
        ("rl-3", "finished"),
    ] {
        crate::support::status_becomes(&store, id, status).await;
    }
    worker.stop().await;
    let mut c = t.connection();
    let allowed: u64 = redis::Commands::zcard(&mut c, "rq:rl:crm:allowed").unwrap();
    let waiting: u64 = redis::Commands::zcard(&mut c, "rq:rl:crm:rate_limited").unwrap();
    assert_eq!((allowed, waiting), (0, 0));
    let runs = store.diag().execution_counts().await.unwrap();
    assert_eq!(runs.get("rl-0"), Some(&1));
    assert_eq!(runs.get("rl-3"), Some(&1));
}

/// A rate-limited job whose worker died, failed by recovery (RQ's job without retries), frees
/// its slot for the next waiting job in the same step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_job_failed_by_recovery_frees_its_slot() {
    let m = python_modules();
    let t = db();
    let url = t.url();
    python(
        "3.0.0",
        m.path(),
        "import json, sys\nfrom redis import Redis\nfrom rq import Queue, RateLimit\n\
         from rq.serializers import JSONSerializer\n\
         q = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)\n\
         q.enqueue('diag.count', job_id='held', rate_limit=RateLimit('crm', 1))\n\
         q.enqueue('diag.count', job_id='next', rate_limit=RateLimit('crm', 1))\n\
         print(json.dumps({}))\n",
        &[&url],
    );
    let store = t.store();
    let w = registered_worker(&store, "w-dies", &["default"]).await;
    let claim = store
        .workers()
        .claim(&w, 5, Duration::from_secs(60), 1)
        .await
        .unwrap();
    assert_eq!(claim.jobs.len(), 1, "one slot: one job on the queue");
    assert_eq!(claim.jobs[0].execution.rate_limit, "crm");
    // The worker dies: its registration goes, its job's deadline passes.
    let mut c = t.connection();
    let _: () = redis::Commands::del(&mut c, "rq:worker:w-dies").unwrap();
    let members: Vec<String> = redis::Commands::zrange(&mut c, "rq:wip:default", 0, -1).unwrap();
    for member in members {
        let _: () = redis::Commands::zadd(&mut c, "rq:wip:default", member, 1).unwrap();
    }
    let recovered = store
        .workers()
        .recover_abandoned("default", "me", Duration::from_secs(5), &|_, _| 0, 60)
        .await
        .unwrap();
    assert_eq!(recovered.failed, 1);
    let queue: Vec<String> = redis::Commands::lrange(&mut c, "rq:queue:default", 0, -1).unwrap();
    assert_eq!(queue, ["next"], "the waiting job got the freed slot");
    let allowed: Vec<String> = redis::Commands::zrange(&mut c, "rq:rl:crm:allowed", 0, -1).unwrap();
    assert_eq!(allowed, ["next"]);
}

/// RQ 3.0's webhooks on a prosaas worker: a finished job's `finished` webhook is requested (GET
/// with its headers), a failed job's `failed` one is POSTed with RQ's payload, each once its
/// outcome is recorded; a webhook for the other status is not sent.
// Long on purpose: the receiving server, the Python producer and the checks of what arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_3_webhooks_are_sent_after_the_outcome() {
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value, Option<String>)>>>;
    let seen: Seen = Arc::default();
    let store_url = db();
    let store = store_url.store();
    let record = {
        let seen = seen.clone();
        let store = store.clone();
        move |method: axum::http::Method,
              axum::extract::Path(name): axum::extract::Path<String>,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let seen = seen.clone();
            let store = store.clone();
            async move {
                // The outcome is recorded before the webhook goes out.
                let id = if name == "ok" {
                    "hooked-ok"
                } else {
                    "hooked-fail"
                };
                let status = store.fetch_job(id).await.ok().flatten().map(|j| j.status);
                let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let token = headers
                    .get("x-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock().unwrap().push((
                    format!("{method} {name} {}", status.unwrap_or_default()),
                    name,
                    body,
                    token,
                ));
                "ok"
            }
        }
    };
    let app = axum::Router::new().route("/hook/{name}", axum::routing::any(record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let m = python_modules();
    let url = store_url.url();
    python(
        "3.0.0",
        m.path(),
        "import json, sys\nfrom redis import Redis\nfrom rq import Queue\nfrom rq.webhook import Webhook\n\
         from rq.serializers import JSONSerializer\n\
         q = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)\n\
         base = sys.argv[2]\n\
         q.enqueue('diag.count', job_id='hooked-ok', webhooks=[\n\
             Webhook(base + '/hook/ok', 'finished', headers={'X-Token': 't1'}),\n\
             Webhook(base + '/hook/never', 'failed', method='POST')])\n\
         q.enqueue('diag.fail', permanent=True, message='boom', job_id='hooked-fail',\n\
                   webhooks=[Webhook(base + '/hook/fail', 'failed', method='POST')])\n\
         print(json.dumps({}))\n",
        &[&url, &base],
    );
    let worker = InProcWorker::start(&store_url, &[]);
    eventually("both webhooks", Duration::from_secs(15), || async {
        (seen.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.stop().await;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    let lines: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(lines, ["POST fail failed", "GET ok finished"], "{seen:?}");
    let (_, _, fail_body, _) = &seen[0];
    assert_eq!(fail_body["job_id"], "hooked-fail");
    assert_eq!(fail_body["func_name"], "diag.fail");
    assert_eq!(fail_body["status"], "failed");
    assert!(
        fail_body["exc_info"]
            .as_str()
            .unwrap_or_default()
            .contains("boom"),
        "{fail_body}"
    );
    assert!(
        fail_body["ended_at"]
            .as_str()
            .unwrap_or_default()
            .ends_with("+00:00")
    );
    assert_eq!(seen[1].3.as_deref(), Some("t1"), "the webhook's headers");
}
