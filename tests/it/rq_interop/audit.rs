//! `prosaas migrate audit` on a Redis a Python app (rq 3.0.0) filled with each kind of problem,
//! beside jobs whose options prosaas carries out (Repeat, webhooks): what it reports (kinds,
//! counts, examples, the Python workers), its exit status, and `ready` once the problems are
//! gone.

use serde_json::Value;

use super::{python, python_modules};
use crate::support::{db, process};

/// Every kind of job a prosaas worker would not run as the app expects, beside one it would;
/// two Python workers (one of a version prosaas is not tested with).
const SEED: &str = r#"
import json, sys, zlib
from datetime import timedelta
from redis import Redis
from rq import Queue, Repeat, Worker
from rq.job import Callback
from rq.webhook import Webhook
from rq.serializers import JSONSerializer
r = Redis.from_url(sys.argv[1])
q = Queue('default', connection=r, serializer=JSONSerializer)
q.enqueue('app.jobs.diag.count', job_id='fine')
q.enqueue('app.jobs.resize', job_id='nohandler-1')
q.enqueue('app.jobs.resize', job_id='nohandler-2')
q.enqueue('diag.count', job_id='hooked', on_success=Callback('app.hooks.notify_crm'),
          on_failure=Callback('diag.count'))
q.enqueue('diag.count', job_id='repeat', repeat=Repeat(times=2))
q.enqueue('diag.count', job_id='webhooked', webhooks=[Webhook('http://127.0.0.1:9/x', 'finished')])
Queue('default', connection=r).enqueue('interop_jobs.add', 1, 2, job_id='pickled')
parent = q.enqueue_in(timedelta(hours=1), 'app.jobs.resize', job_id='parent')
q.enqueue('diag.count', job_id='child-1', depends_on=parent)
q.enqueue('diag.count', job_id='child-2', depends_on=parent)
r.hset('rq:job:bound', mapping={
    'data': zlib.compress(json.dumps(['resize', {'id': 3}, [], {}]).encode()),
    'status': 'queued', 'origin': 'default', 'created_at': '2026-12-07T00:00:00.000000Z'})
r.rpush('rq:queue:default', 'bound')
Queue('reports', connection=r).enqueue('interop_jobs.add', 1, 2, job_id='report')
Worker([q], connection=r, name='py-current').register_birth()
r.hset('rq:worker:py-old', mapping={'version': '1.10.1', 'queues': 'default',
       'birth': '2026-12-07T00:00:00.000000Z', 'state': 'idle'})
r.sadd('rq:workers', 'rq:worker:py-old')
print(json.dumps({}))
"#;

fn audit(url: &str, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["migrate", "audit", "--json"];
    all.extend(args);
    let out = process::run(&all, &[("REDIS_URL", url)]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// (kind, subject, count, examples, dependents) of each problem in `queue`.
fn problems(report: &Value, queue: Option<&str>) -> Vec<(String, Value, u64, Value, u64)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["queue"].as_str() == queue)
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["subject"].clone(),
                p["count"].as_u64().unwrap(),
                p["examples"].clone(),
                p["dependents"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

// Long on purpose: one seeded Redis, read three ways (default scope, --all-queues, text), then
// cleaned and read again.
#[test]
fn the_audit_names_each_kind_of_problem_and_passes_once_they_are_gone() {
    let m = python_modules();
    let t = db();
    let url = t.url();
    python("3.0.0", m.path(), SEED, &[&url]);

    let (code, report) = audit(&url, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["ready"], false);
    let s = |v: &str| Value::from(v);
    assert_eq!(
        problems(&report, Some("default")),
        vec![
            (
                "pickled".into(),
                Value::Null,
                1,
                serde_json::json!(["pickled"]),
                0
            ),
            (
                "bound_method".into(),
                Value::Null,
                1,
                serde_json::json!(["bound"]),
                0
            ),
            (
                "no_handler".into(),
                s("app.jobs.resize"),
                3,
                serde_json::json!(["nohandler-1", "nohandler-2", "parent"]),
                0
            ),
            (
                "unresolved_callback".into(),
                s("on_success app.hooks.notify_crm"),
                1,
                serde_json::json!(["hooked"]),
                0
            ),
            (
                "chain_through_python_only".into(),
                Value::Null,
                1,
                serde_json::json!(["parent"]),
                2
            ),
        ],
        "{report:#}"
    );
    assert_eq!(
        problems(&report, None),
        vec![(
            "untested_rq_version".into(),
            s("1.10.1"),
            1,
            serde_json::json!(["py-old"]),
            0
        )]
    );
    let default = report["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap();
    let totals: Vec<(&str, u64)> = default["places"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["place"].as_str().unwrap(), p["total"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        totals,
        [
            ("queued", 8),
            ("scheduled", 1),
            ("deferred", 2),
            ("started", 0)
        ]
    );
    let workers: Vec<(&str, &str)> = report["python_workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["version"].as_str().unwrap(),
                w["examples"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(workers, [("1.10.1", "py-old"), ("3.0.0", "py-current")]);
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("not audited") && notes.contains("reports"),
        "{notes}"
    );

    // --all-queues reads `reports` too; --max-jobs bounds each place and says so.
    let (_, all) = audit(&url, &["--all-queues", "--max-jobs", "2"]);
    assert_eq!(
        problems(&all, Some("reports")),
        vec![(
            "pickled".into(),
            Value::Null,
            1,
            serde_json::json!(["report"]),
            0
        )]
    );
    let default = all["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap();
    assert_eq!(default["places"][0]["total"], 8);
    assert_eq!(default["places"][0]["scanned"], 2);

    let text = process::run(&["migrate", "audit"], &[("REDIS_URL", url.as_str())]);
    let text_out = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(1));
    for expected in [
        "NOT READY",
        "no handler",
        "app.jobs.resize  3 jobs  e.g. nohandler-1, nohandler-2, parent",
        "2 waiting on them",
        "rq 3.0.0 on default: 1 worker (e.g. py-current)",
    ] {
        assert!(text_out.contains(expected), "{expected:?} in\n{text_out}");
    }
    assert!(
        String::from_utf8_lossy(&text.stderr).contains("not ready for prosaas workers"),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );

    // With the problems gone, and the old worker with them, the same audit passes.
    let mut c = t.connection();
    for id in [
        "nohandler-1",
        "nohandler-2",
        "hooked",
        "repeat",
        "pickled",
        "bound",
    ] {
        let _: () = redis::Commands::lrem(&mut c, "rq:queue:default", 0, id).unwrap();
    }
    let _: () = redis::Commands::zrem(&mut c, "rq:scheduled:default", "parent").unwrap();
    let _: () = redis::Commands::srem(&mut c, "rq:workers", "rq:worker:py-old").unwrap();
    let (code, report) = audit(&url, &[]);
    assert_eq!(
        (code, &report["ready"]),
        (0, &Value::Bool(true)),
        "{report:#}"
    );
}
