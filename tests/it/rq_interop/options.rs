//! The job options a Python producer sets that act on the worker, on a prosaas worker: callbacks
//! for each RQ version (one whose name resolves to a handler runs, a failing success callback
//! fails the job, one that resolves to nothing is skipped loudly: recorded on the job, counted,
//! read by Python); RQ 2.x/3.0's `Retry(enqueue_at_front=True)` honoured, and `Repeat` refused
//! with a failure that names it rather than run once silently.

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
/// (RQ 2.x, 3.0), and a job with `Repeat` fails at once naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_at_front_is_honoured_and_repeat_is_refused_by_name() {
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
             q.enqueue('diag.count', job_id='repeat', repeat=Repeat(times=2))\n\
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
        crate::support::status_becomes(&store, "repeat", "failed").await;
        worker.stop().await;
        let d = store.admin().job_detail("repeat").await.unwrap().unwrap();
        let Some(prosaas::jobs::JobResult::Failed { error }) = d.result else {
            panic!("rq {version}: {d:?}")
        };
        assert!(
            error.contains("UnsupportedJobOption: RQ's Repeat is not supported"),
            "rq {version}: {error}"
        );
        let runs = store.diag().execution_counts().await.unwrap();
        assert_eq!(runs.get("repeat"), None, "rq {version}: never run");
    }
}
