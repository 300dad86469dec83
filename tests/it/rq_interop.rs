//! Python RQ and prosaas on the same Redis, against the real `rq` package: 3.0.0 (newest), 2.12.0
//! (newest 2.x) and 1.16.2, each in its own virtual environment made by `scripts/rq-venvs.sh`
//! (which `.ci/run` runs; the tests run it too when a venv is missing, never a system install).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::Duration;

use prosaas::jobs::{JobOptions, JobResult, JobStore, NewJob};
use redis::Commands;
use serde_json::{Value, json};

use crate::support::redis_server::TestDb;
use crate::support::worker::InProcWorker;
use crate::support::{ProsaasProcess, db, eventually, kwargs, process, status_becomes};

mod audit;
mod dependencies;
mod options;

const VERSIONS: [&str; 3] = ["3.0.0", "2.12.0", "1.16.2"];

pub fn venv(version: &str) -> PathBuf {
    static SETUP: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    SETUP.call_once(|| {
        let status = Command::new("bash")
            .arg(root.join("scripts/rq-venvs.sh"))
            .status()
            .expect("run scripts/rq-venvs.sh");
        assert!(
            status.success(),
            "scripts/rq-venvs.sh failed: Python RQ venvs are required for these tests"
        );
    });
    root.join("target/rq-venvs").join(version)
}

/// Job functions for the Python side: `interop_jobs.*` run only in Python; `diag.count` is the
/// same job type prosaas's worker runs, so both fleets can share a queue.
fn python_modules() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("interop_jobs.py"),
        "def add(a, b):\n    return a + b\n\ndef boom():\n    raise ValueError('bad 1')\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("diag.py"),
        "from rq import get_current_job\n\n\
         def count(**kwargs):\n    job = get_current_job()\n    n = job.connection.hincrby('prosaas:diag:executions', job.id, 1)\n    job.connection.hincrby('prosaas:diag:python', 'runs', 1)\n    return {'executions': n}\n",
    )
    .unwrap();
    dir
}

fn python(version: &str, modules: &Path, script: &str, args: &[&str]) -> Value {
    let out = Command::new(venv(version).join("bin/python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", modules)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python ({version}) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn rq_cli(version: &str, modules: &Path, args: &[&str]) -> Output {
    Command::new(venv(version).join("bin/rq"))
        .args(args)
        .env("PYTHONPATH", modules)
        .stdin(Stdio::null())
        .output()
        .expect("run rq")
}

/// A Python RQ worker (non-forking, JSON serializer) on `queue`; `burst` stops it when the
/// queue is empty.
fn rq_worker(
    version: &str,
    modules: &Path,
    url: &str,
    queue: &str,
    burst: bool,
) -> std::process::Child {
    let mut args = vec!["worker"];
    if burst {
        args.push("-b");
    }
    args.extend([
        "-w",
        "rq.worker.SimpleWorker",
        "-S",
        "rq.serializers.JSONSerializer",
        "-u",
        url,
        queue,
    ]);
    Command::new(venv(version).join("bin/rq"))
        .args(args)
        .env("PYTHONPATH", modules)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

const STATUS_OF: &str = r#"
import json, sys
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
r = Redis.from_url(sys.argv[1])
out = {}
for jid in sys.argv[2:]:
    j = Job.fetch(jid, connection=r, serializer=JSONSerializer)
    s = j.get_status()
    res = j.latest_result()
    out[jid] = {"status": getattr(s, "value", s), "return_value": j.return_value(),
                "exc": res.exc_string if res is not None and res.exc_string else None}
print(json.dumps(out))
"#;

// Long on purpose: one Python RQ producer's jobs, every shape it enqueues, run by prosaas and read
// back through RQ.
async fn python_enqueues_and_prosaas_runs(version: &str) {
    let t = db();
    let m = python_modules();
    let ids = python(
        version,
        m.path(),
        r#"
import json, sys
from redis import Redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer
q = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)
msg = {"key": {"id": "PY-1", "remoteJid": "1@s.whatsapp.net"}, "message": {"conversation": "from python"}}
ok = q.enqueue('webhook_process_job', tenant_id='1', business_id=1, messages=[msg])
dotted = q.enqueue('server.jobs.webhook_process_job', tenant_id='2', business_id=2, messages=[])
bad = q.enqueue('diag.fail', message='bad 1', permanent=True)
retried = q.enqueue('diag.fail', message='flaky', retry=Retry(max=2))
print(json.dumps({"ok": ok.id, "dotted": dotted.id, "bad": bad.id, "retried": retried.id}))
"#,
        &[&t.url()],
    );
    let id = |k: &str| ids[k].as_str().unwrap().to_owned();
    let w = InProcWorker::start(&t, &[]);
    let store = t.store();
    for k in ["ok", "dotted", "bad", "retried"] {
        eventually(
            &format!("{version}: job {k} done"),
            Duration::from_secs(15),
            || async {
                let s = store.fetch_job(&id(k)).await.ok()??.status;
                (s == "finished" || s == "failed").then_some(())
            },
        )
        .await;
    }
    w.stop().await;
    let seen = python(
        version,
        m.path(),
        STATUS_OF,
        &[
            &t.url(),
            &id("ok"),
            &id("dotted"),
            &id("bad"),
            &id("retried"),
        ],
    );
    let ok = &seen[id("ok")];
    assert_eq!(ok["status"], "finished", "{version}: {seen}");
    assert_eq!(
        ok["return_value"]["messages"][0]["text"], "from python",
        "{version}: the handler's result, read by Python"
    );
    assert_eq!(
        seen[id("dotted")]["status"],
        "finished",
        "{version}: dotted RQ names resolve"
    );
    let bad = &seen[id("bad")];
    assert_eq!(bad["status"], "failed");
    assert!(
        bad["exc"]
            .as_str()
            .unwrap()
            .trim_end()
            .ends_with("PermanentJobError: bad 1"),
        "{version}: {bad}"
    );
    let retried = &seen[id("retried")];
    assert_eq!(retried["status"], "failed");
    assert_eq!(
        store
            .admin()
            .job_detail(&id("retried"))
            .await
            .unwrap()
            .unwrap()
            .attempts,
        3,
        "{version}: Retry(max=2) set by Python is honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_3_enqueues_prosaas_runs() {
    python_enqueues_and_prosaas_runs("3.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_2_enqueues_prosaas_runs() {
    python_enqueues_and_prosaas_runs("2.12.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_1_enqueues_prosaas_runs() {
    python_enqueues_and_prosaas_runs("1.16.2").await;
}

// Long on purpose: prosaas's jobs, every shape, run by each RQ version's worker and read back by
// both sides.
async fn prosaas_enqueues_and_python_runs(version: &str) {
    let t = db();
    let m = python_modules();
    let cfg = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        cfg.path(),
        "external = [{ job_type = \"interop_jobs.add\", queue = \"python\" }, { job_type = \"interop_jobs.boom\", queue = \"python\" }]\n",
    )
    .unwrap();
    let cfg_path = cfg.path().display().to_string();
    let url = t.url();
    let enqueue = |ty: &str, args: &str| {
        let out = process::run(
            &[
                "--config", &cfg_path, "jobs", "enqueue", ty, "--args", args, "--tenant", "acme-1",
            ],
            &[("REDIS_URL", &url)],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let add = enqueue("interop_jobs.add", r#"{"a": 2, "b": 3}"#);
    let boom = enqueue("interop_jobs.boom", "{}");
    // The tenant is where Python code reads it: job.meta["tenant"].
    let meta = python(
        version,
        m.path(),
        "import json, sys\nfrom redis import Redis\nfrom rq.job import Job\n\
         from rq.serializers import JSONSerializer\n\
         j = Job.fetch(sys.argv[2], connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)\n\
         print(json.dumps({'tenant': j.meta.get('tenant')}))\n",
        &[&url, &add],
    );
    assert_eq!(meta["tenant"], "acme-1", "{version}");
    let mut c = t.connection();
    let on_python: usize = c.llen("rq:queue:python").unwrap();
    assert_eq!(on_python, 2, "external types are routed to their own queue");

    let out = rq_cli(
        version,
        m.path(),
        &[
            "worker",
            "-b",
            "-S",
            "rq.serializers.JSONSerializer",
            "-u",
            &url,
            "python",
        ],
    );
    assert!(
        out.status.success(),
        "rq worker ({version}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = t.store();
    let done = store.admin().job_detail(&add).await.unwrap().unwrap();
    assert_eq!(done.info.status, "finished", "{version}");
    assert_eq!(
        done.result,
        Some(JobResult::Finished {
            return_value: Some(json!(5))
        }),
        "{version}"
    );
    let failed = store.admin().job_detail(&boom).await.unwrap().unwrap();
    assert_eq!(failed.info.status, "failed");
    let Some(JobResult::Failed { error }) = failed.result else {
        panic!("{version}: {failed:?}")
    };
    assert!(
        error.trim_end().ends_with("ValueError: bad 1"),
        "{version}: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosaas_enqueues_rq_3_runs() {
    prosaas_enqueues_and_python_runs("3.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosaas_enqueues_rq_2_runs() {
    prosaas_enqueues_and_python_runs("2.12.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosaas_enqueues_rq_1_runs() {
    prosaas_enqueues_and_python_runs("1.16.2").await;
}

/// `rq info --raw`: `queue <name> <queued>, <n> executing, <n> finished, <n> failed` and
/// `worker <name> (...) <state> <queues>...` lines.
/// Prints the first registered worker's current job as Python RQ reads it.
const CURRENT_JOB: &str = "import sys, json\n\
from redis import Redis\n\
from rq import Worker\n\
from rq.serializers import JSONSerializer\n\
w = Worker.all(connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)[0]\n\
job = w.get_current_job()\n\
print(json.dumps({'id': w.get_current_job_id(), 'func': job.func_name if job else None}))\n";

fn rq_info(version: &str, modules: &Path, url: &str) -> (Vec<u64>, Vec<String>) {
    let out = rq_cli(version, modules, &["info", "-u", url, "--raw", "default"]);
    assert!(
        out.status.success(),
        "rq info ({version}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let queue = text
        .lines()
        .find(|l| l.starts_with("queue default "))
        .unwrap_or_else(|| panic!("{text}"));
    let numbers: Vec<u64> = queue
        .trim_start_matches("queue default ")
        .split(", ")
        .map(|part| part.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let workers = text
        .lines()
        .filter(|l| l.starts_with("worker "))
        .map(str::to_owned)
        .collect();
    (numbers, workers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rqs_tools_agree_with_prosaas() {
    let t = db();
    let m = python_modules();
    let url = t.url();
    let store = t.store();
    let long = NewJob::new("default", "diag.sleep", kwargs(json!({"ms": 4000})));
    let longs = store.enqueue_many(&[long.clone(), long]).await.unwrap();
    let mut w = ProsaasProcess::start(
        "worker",
        &[
            ("REDIS_URL", &url),
            ("PROSAAS__WORKER__CONCURRENCY", "2"),
            ("PROSAAS__WORKER__RECORD_CURRENT_JOB", "true"),
        ],
    );
    w.wait_for_log("worker registered", Duration::from_secs(20));
    let failing = NewJob::new("default", "diag.fail", kwargs(json!({"permanent": true})));
    let queued: Vec<NewJob> = (0..3)
        .map(|i| NewJob::new("default", "diag.echo", kwargs(json!({"i": i}))))
        .collect();
    eventually(
        "both long jobs running",
        Duration::from_secs(10),
        || async { (crate::support::default_queue(&store).await?.started == 2).then_some(()) },
    )
    .await;
    // While both slots are busy, these wait on the queue.
    store.enqueue_many(&queued).await.unwrap();
    let failed_id = store.enqueue(failing).await.unwrap();
    every_rq_info_counts_what_prosaas_counts(&store, m.path(), &url, &longs).await;
    every_job_ends_as_rq_info_expects(&store, m.path(), &url, &longs, &failed_id).await;
    pythons_requeue_runs_the_job_again(&store, m.path(), &url, &failed_id).await;
    assert!(w.stop().success());
    rq_requeue_and_empty_work_on_prosaas_queues(&t, m.path());
}

/// rq info cleaned the registries on every run; the long jobs it saw running still finish, the
/// failing one fails, and the worker is shown idle once it has had nothing to do for a moment.
async fn every_job_ends_as_rq_info_expects(
    store: &JobStore,
    modules: &Path,
    url: &str,
    longs: &[String],
    failed_id: &str,
) {
    for id in longs {
        eventually(
            "a long job to finish despite rq info",
            Duration::from_secs(15),
            || async { (store.fetch_job(id).await.ok()??.status == "finished").then_some(()) },
        )
        .await;
    }
    eventually(
        "the failing job to fail",
        Duration::from_secs(10),
        || async { (store.fetch_job(failed_id).await.ok()??.status == "failed").then_some(()) },
    )
    .await;
    let (numbers, _) = rq_info("3.0.0", modules, url);
    assert_eq!(numbers, [0, 0, 5, 1], "after: 5 finished, 1 failed");
    // A worker is recorded idle once it has had nothing to do for a moment (50 ms).
    eventually(
        "rq info to show the worker idle",
        Duration::from_secs(3),
        || {
            let (_, workers) = rq_info("3.0.0", modules, url);
            async move {
                workers
                    .first()
                    .is_some_and(|w| w.contains(" idle "))
                    .then_some(())
            }
        },
    )
    .await;
}

/// While two long jobs run and four wait, every RQ version's `rq info` counts what prosaas
/// counts, and sees the worker busy on one of the long jobs.
async fn every_rq_info_counts_what_prosaas_counts(
    store: &JobStore,
    modules: &Path,
    url: &str,
    longs: &[String],
) {
    for version in VERSIONS {
        let (numbers, workers) = rq_info(version, modules, url);
        let stats = &store.stats().queue_stats(&[]).await.unwrap()["default"];
        assert_eq!(
            numbers,
            [stats.queued, stats.started, stats.finished, stats.failed],
            "{version}: rq info vs prosaas"
        );
        assert_eq!(numbers[..2], [4, 2], "{version}");
        assert_eq!(workers.len(), 1, "{version}: {workers:?}");
        assert!(workers[0].contains(" busy "), "{version}: {workers:?}");
        // RQ's `current_job` (`worker.record_current_job`): up to 2.12, Python reads one of the
        // long jobs as the worker's current job; 3.0 reads its own executions set instead, which
        // prosaas does not write, and sees none.
        let current = python(version, modules, CURRENT_JOB, &[url]);
        if version == "3.0.0" {
            assert_eq!(current, json!({"id": null, "func": null}), "{version}");
        } else {
            assert!(
                longs.iter().any(|id| current["id"] == id.as_str()),
                "{version}: {current}"
            );
            assert_eq!(current["func"], "diag.sleep", "{version}: {current}");
        }
    }
}

/// FailedJobRegistry.requeue from Python runs the job again under prosaas.
async fn pythons_requeue_runs_the_job_again(
    store: &JobStore,
    modules: &Path,
    url: &str,
    failed_id: &str,
) {
    let requeued = python(
        "3.0.0",
        modules,
        r#"
import json, sys
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
q = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)
reg = FailedJobRegistry(queue=q)
ids = reg.get_job_ids()
for jid in ids:
    reg.requeue(jid)
print(json.dumps(ids))
"#,
        &[url],
    );
    assert_eq!(requeued, json!([failed_id]));
    eventually(
        "the requeued job to run again",
        Duration::from_secs(10),
        || async {
            let d = store.admin().job_detail(failed_id).await.ok()??;
            (d.attempts == 2 && d.info.status == "failed").then_some(())
        },
    )
    .await;
}

/// rq requeue --all and rq empty behave on prosaas's queues as on RQ's own.
fn rq_requeue_and_empty_work_on_prosaas_queues(t: &TestDb, modules: &Path) {
    let url = t.url();
    let out = rq_cli(
        "3.0.0",
        modules,
        &[
            "requeue",
            "-u",
            &url,
            "-S",
            "rq.serializers.JSONSerializer",
            "--queue",
            "default",
            "--all",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let len: usize = t.connection().llen("rq:queue:default").unwrap();
    assert_eq!(len, 1, "rq requeue --all put the failed job back");
    let out = rq_cli("3.0.0", modules, &["empty", "-u", &url, "default"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let len: usize = t.connection().llen("rq:queue:default").unwrap();
    assert_eq!(len, 0, "rq empty emptied it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_drains_two_thousand_jobs_once_each() {
    let t = db();
    let m = python_modules();
    let url = t.url();
    let store = t.store();
    let jobs: Vec<NewJob> = (0..2000)
        .map(|i| NewJob::new("default", "diag.count", kwargs(json!({"i": i}))))
        .collect();
    let mut ids = Vec::new();
    for chunk in jobs.chunks(500) {
        ids.extend(store.enqueue_many(chunk).await.unwrap());
    }
    // Two Python RQ workers (non-forking, as fast as RQ gets) start first; prosaas joins.
    let py: Vec<std::process::Child> = (0..2)
        .map(|_| rq_worker("3.0.0", m.path(), &url, "default", true))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut w = ProsaasProcess::start(
        "worker",
        &[("REDIS_URL", &url), ("PROSAAS__WORKER__CONCURRENCY", "8")],
    );
    eventually("2,000 jobs finished", Duration::from_secs(90), || async {
        (crate::support::default_queue(&store).await?.finished == 2000).then_some(())
    })
    .await;
    for mut p in py {
        let _ = p.wait();
    }
    assert!(w.stop().success());
    let counts = store.diag().execution_counts().await.unwrap();
    assert_eq!(counts.len(), 2000, "none lost");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "run twice: {twice:?}");
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1));
    }
    let mut c = t.connection();
    let by_python: u64 = c.hget("prosaas:diag:python", "runs").unwrap_or(0);
    assert!(
        by_python > 0 && by_python < 2000,
        "both fleets worked: Python ran {by_python}"
    );
    let (queued, wip, failed): (usize, usize, usize) = (
        c.llen("rq:queue:default").unwrap(),
        c.zcard("rq:wip:default").unwrap(),
        c.zcard("rq:failed:default").unwrap(),
    );
    assert_eq!((queued, wip, failed), (0, 0, 0));
    eprintln!("mixed fleet: Python RQ ran {by_python} of 2,000 jobs, prosaas the rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: every kind of key prosaas writes is made by one `all` process, then each RQ
// version's tools run over all of them.
async fn prosaas_keys_never_confuse_rq() {
    let t = db();
    let m = python_modules();
    let url = t.url();
    let store = t.store();
    // De-dupe locks, a scheduler lock and tick, maintenance locks, inboxes, call state: all of it.
    store
        .enqueue_with_dedupe(
            NewJob::new("default", "diag.echo", kwargs(json!({}))),
            "webhook:baileys:K1",
            60,
        )
        .await
        .unwrap();
    let cfg = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(cfg.path(), "[scheduler]\nlock_ttl_ms = 1500\nrenew_interval_ms = 500\ntick_interval_ms = 200\n[[scheduler.entries]]\nname = \"t\"\nevery = \"1s\"\njob_type = \"diag.echo\"\n").unwrap();
    let path = cfg.path().display().to_string();
    let mut all = ProsaasProcess::start_args(
        &["--role", "all", "--config", &path],
        &[("REDIS_URL", &url)],
    );
    all.wait_for_log("Fired t", Duration::from_secs(20));
    let keys: Vec<String> = t.connection().keys("*").unwrap();
    let ours_in_rq_namespace: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("rq:"))
        .filter(|k| {
            ![
                "rq:queues",
                "rq:queue:",
                "rq:job:",
                "rq:results:",
                "rq:wip:",
                "rq:finished:",
                "rq:failed:",
                "rq:scheduled:",
                "rq:workers",
                "rq:worker:",
                "rq:scheduler-lock:",
                "rq:scheduler:",
            ]
            .iter()
            .any(|p| k.starts_with(p))
        })
        .collect();
    assert!(
        ours_in_rq_namespace.is_empty(),
        "keys RQ does not define: {ours_in_rq_namespace:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("rq:job::")),
        "prosaas writes no dependency keys"
    );
    for version in VERSIONS {
        let (numbers, _) = rq_info(version, m.path(), &url);
        assert_eq!(numbers.len(), 4, "{version}");
        let pid = python(
            version,
            m.path(),
            "import json, sys\nfrom redis import Redis\nfrom rq import Queue\nprint(json.dumps(Queue('default', connection=Redis.from_url(sys.argv[1])).scheduler_pid))",
            &[&url],
        );
        assert_eq!(
            pid.as_u64(),
            Some(u64::from(all.pid())),
            "{version}: RQ resolves the promotion lock to prosaas's pid"
        );
    }
    assert!(all.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_rq_key_prefix_is_shared_through_rq_key_prefix() {
    let t = db();
    let m = python_modules();
    let url = t.url();
    let ids = Command::new(venv("3.0.0").join("bin/python"))
        .arg("-c")
        .arg("import json, sys\nfrom redis import Redis\nfrom rq import Queue\nfrom rq.serializers import JSONSerializer\nq = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)\nprint(json.dumps(q.enqueue('diag.echo', x=1).id))")
        .arg(&url)
        .env("PYTHONPATH", m.path())
        .env("RQ_KEY_PREFIX", "tenant7")
        .output()
        .unwrap();
    assert!(
        ids.status.success(),
        "{}",
        String::from_utf8_lossy(&ids.stderr)
    );
    let id: String = serde_json::from_slice(&ids.stdout).unwrap();
    let queued: usize = t.connection().llen("tenant7:queue:default").unwrap();
    assert_eq!(queued, 1, "RQ 3.0 honoured RQ_KEY_PREFIX");
    let mut w = ProsaasProcess::start(
        "worker",
        &[("REDIS_URL", &url), ("RQ_KEY_PREFIX", "tenant7")],
    );
    eventually(
        "prosaas to run it under the same prefix",
        Duration::from_secs(10),
        || {
            let status: Option<String> = t
                .connection()
                .hget(format!("tenant7:job:{id}"), "status")
                .unwrap();
            async move { (status.as_deref() == Some("finished")).then_some(()) }
        },
    )
    .await;
    assert!(w.stop().success());
}

/// Trap 3 of rq-protocol.md §6.5: when a heartbeat gap lets `rq info` fail a job prosaas is
/// still running, prosaas's outcome must not overwrite RQ's verdict, nor list the job twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failed_by_rq_info_during_a_heartbeat_gap_is_not_overwritten() {
    let t = db();
    let m = python_modules();
    let url = t.url();
    let store = t.store();
    let id = store
        .enqueue(
            NewJob::new("default", "diag.sleep", kwargs(json!({"ms": 2500}))).with_options(
                prosaas::jobs::JobOptions {
                    max_retries: Some(0),
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    let mut w = ProsaasProcess::start("worker", &[("REDIS_URL", &url)]);
    status_becomes(&store, &id, "started").await;
    // A real stall (SIGSTOP): no heartbeat can renew the deadline we then move into the past,
    // however slowly `rq info` starts on a loaded machine.
    w.signal("STOP");
    let mut c = t.connection();
    let members: Vec<String> = c.zrange("rq:wip:default", 0, -1).unwrap();
    assert_eq!(members.len(), 1);
    let _: () = c
        .zadd(
            "rq:wip:default",
            &members[0],
            chrono::Utc::now().timestamp() - 100,
        )
        .unwrap();
    let (numbers, _) = rq_info("3.0.0", m.path(), &url);
    w.signal("CONT");
    assert_eq!(numbers[3], 1, "rq info failed the stalled job: {numbers:?}");
    w.wait_for_log("outcome not recorded", Duration::from_secs(10));
    let job = store.admin().job_detail(&id).await.unwrap().unwrap();
    assert_eq!(job.info.status, "failed", "RQ's verdict stands");
    let Some(JobResult::Failed { error }) = job.result else {
        panic!("{job:?}")
    };
    assert!(error.contains("AbandonedJobError"), "{error}");
    let finished: usize = c.zcard("rq:finished:default").unwrap();
    assert_eq!(finished, 0, "not listed as finished as well");
    assert!(w.stop().success());
}

/// RQ 1.x cannot parse prosaas's `<id>:<execution id>` started-registry entries: its cleanup
/// (`rq info`) drops a dead prosaas worker's entry without touching the job, which used to stay
/// `started` forever. The dead worker's own running set still names it, so recovery finds the
/// orphan and runs it again; with RQ 2.x and 3.0 (which parse the entries) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: a kill, RQ 1.x's cleanup and the recovery that follows are one sequence on the
// same queue, for each RQ version.
async fn rq_tooling_cleaning_a_dead_workers_entries_loses_no_job() {
    let m = python_modules();
    let fast = [
        ("PROSAAS__WORKER__HEARTBEAT_INTERVAL_MS", "500"),
        ("PROSAAS__WORKER__HEARTBEAT_TTL_MS", "2000"),
        ("PROSAAS__WORKER__MAINTENANCE_INTERVAL_MS", "300"),
    ];
    for version in VERSIONS {
        let t = db();
        let url = t.url();
        let store = t.store();
        let id = store
            .enqueue(NewJob::new(
                "default",
                "diag.count",
                kwargs(json!({"ms": 4000})),
            ))
            .await
            .unwrap();
        let mut env = vec![("REDIS_URL", url.as_str())];
        env.extend_from_slice(&fast);
        let victim = ProsaasProcess::start("worker", &env);
        status_becomes(&store, &id, "started").await;
        victim.signal("KILL");
        // Past the deadline and the registration's TTL, RQ's cleanup runs first.
        tokio::time::sleep(Duration::from_millis(3200)).await;
        let _ = rq_info(version, m.path(), &url);
        let mut c = t.connection();
        let left: usize = c.zcard("rq:wip:default").unwrap();
        let status = store.fetch_job(&id).await.unwrap().unwrap().status;
        eprintln!("rq {version}: after rq info, {left} started entries, job {status}");

        // RQ 2.x and 3.0 parse the entry and fail the abandoned job themselves (it has no
        // retries); RQ 1.x drops the entry and leaves the job `started`: prosaas recovers it and
        // a live worker runs it again.
        let rescuer = ProsaasProcess::start("worker", &env);
        if version.starts_with('1') {
            assert_eq!(left, 0, "RQ 1.x dropped the entry it could not parse");
            assert_eq!(status, "started", "and left the job as it was");
            eventually(
                &format!("rq {version}: the orphan to run again"),
                Duration::from_secs(20),
                || async {
                    (store.diag().execution_counts().await.ok()?.get(&id) == Some(&2)).then_some(())
                },
            )
            .await;
            rescuer.wait_for_log("orphaned jobs to recovery", Duration::from_secs(5));
            eventually(
                &format!("rq {version}: the recovered job to finish"),
                Duration::from_secs(20),
                || async { (store.fetch_job(&id).await.ok()??.status == "finished").then_some(()) },
            )
            .await;
        } else {
            assert_eq!(
                status, "failed",
                "RQ {version} failed the abandoned job itself"
            );
        }
        drop(rescuer);
    }
}

/// The same with a bystander: a live prosaas worker on another queue sweeps the dead worker's
/// record as soon as its registration expires, before RQ 1.x drops the entries it cannot parse.
/// The record must outlive that sweep (its jobs are still started by the dead worker), so that
/// once a worker serves the queue again both jobs are recovered: the one without retries failed
/// as abandoned, the other run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: the kill, the bystander's sweep, RQ 1.x's cleanup and the recovery are one
// sequence.
async fn a_bystander_worker_never_lets_rq_1_tooling_strand_a_dead_workers_jobs() {
    let m = python_modules();
    let t = db();
    let url = t.url();
    let store = t.store();
    let fast = [
        ("REDIS_URL", url.as_str()),
        ("PROSAAS__WORKER__HEARTBEAT_INTERVAL_MS", "500"),
        ("PROSAAS__WORKER__HEARTBEAT_TTL_MS", "2000"),
        ("PROSAAS__WORKER__MAINTENANCE_INTERVAL_MS", "300"),
    ];
    let on = |queue: &'static str| {
        let mut env = fast.to_vec();
        env.push(("PROSAAS__WORKER__QUEUES", queue));
        env
    };
    let long = |retries: u32| {
        NewJob::new("kq", "diag.count", kwargs(json!({"ms": 4000}))).with_options(JobOptions {
            max_retries: Some(retries),
            ..Default::default()
        })
    };
    let once = store.enqueue(long(0)).await.unwrap();
    let again = store.enqueue(long(1)).await.unwrap();
    let victim = ProsaasProcess::start("worker", &on("kq"));
    let bystander = ProsaasProcess::start("worker", &on("other"));
    eventually("both jobs to start", Duration::from_secs(10), || async {
        for id in [&once, &again] {
            (store.fetch_job(id).await.ok()??.status == "started").then_some(())?;
        }
        Some(())
    })
    .await;
    let mut c = t.connection();
    let dead: String = c.hget(format!("rq:job:{once}"), "worker_name").unwrap();
    let record = format!("prosaas:worker:{dead}:running");
    victim.signal("KILL");
    // Past the deadlines and the registration's TTL, and several of the bystander's sweeps.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let out = rq_cli("1.16.2", m.path(), &["info", "-u", &url, "--raw", "kq"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in [&once, &again] {
        let status = store.fetch_job(id).await.unwrap().unwrap().status;
        assert_eq!(status, "started", "RQ 1.x left the job as it was");
    }
    let kept: usize = c.scard(&record).unwrap();
    assert_eq!(
        kept, 2,
        "the dead worker's record outlived the bystander's sweeps"
    );
    // Whatever RQ 1.x dropped, the bystander's next sweeps put back.
    eventually("the entries put back", Duration::from_secs(5), || {
        let entries: usize = c.zcard("rq:wip:kq").unwrap();
        async move { (entries == 2).then_some(()) }
    })
    .await;

    let rescuer = ProsaasProcess::start("worker", &on("kq"));
    eventually("both jobs recovered", Duration::from_secs(20), || async {
        let failed = store.fetch_job(&once).await.ok()??.status == "failed";
        let ran = store.diag().execution_counts().await.ok()?.get(&again) == Some(&2);
        let finished = store.fetch_job(&again).await.ok()??.status == "finished";
        (failed && ran && finished).then_some(())
    })
    .await;
    // Nothing needs the record now: the next sweep removes it, and the worker's name with it.
    eventually(
        "the dead worker's record gone",
        Duration::from_secs(5),
        || {
            let left: bool = c.exists(&record).unwrap();
            let listed: bool = c.sismember("prosaas:inboxes", &dead).unwrap();
            async move { (!left && !listed).then_some(()) }
        },
    )
    .await;
    drop((bystander, rescuer));
}

/// With a Python RQ 1.16 worker registered, prosaas writes started-registry entries as plain job
/// ids ("auto"), so RQ 1.x lists the jobs prosaas runs, prosaas still records their outcomes, and
/// RQ 1.x's own cleanup handles a killed prosaas worker's job instead of dropping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: a Python RQ 1.16 worker stays registered through the whole run: listing,
// outcomes and its cleanup of a kill.
async fn with_an_rq_1_worker_registered_entries_are_plain_ids() {
    let t = db();
    let m = python_modules();
    let url = t.url();
    let store = t.store();
    // An RQ 1.16 worker on a queue of its own: it only has to be registered.
    let mut py = rq_worker("1.16.2", m.path(), &url, "python", false);
    let mut c = t.connection();
    eventually(
        "the RQ 1.16 worker to register",
        Duration::from_secs(20),
        || async {
            let workers: Vec<String> = t.connection().smembers("rq:workers").ok()?;
            (!workers.is_empty()).then_some(())
        },
    )
    .await;
    let fast = [
        ("REDIS_URL", url.as_str()),
        ("PROSAAS__WORKER__HEARTBEAT_INTERVAL_MS", "500"),
        ("PROSAAS__WORKER__HEARTBEAT_TTL_MS", "2000"),
    ];
    let w = ProsaasProcess::start("worker", &fast);
    w.wait_for_log("plain job ids", Duration::from_secs(20));
    let id = store
        .enqueue(NewJob::new(
            "default",
            "diag.sleep",
            kwargs(json!({"ms": 2500})),
        ))
        .await
        .unwrap();
    status_becomes(&store, &id, "started").await;
    let members: Vec<String> = c.zrange("rq:wip:default", 0, -1).unwrap();
    assert_eq!(
        members,
        std::slice::from_ref(&id),
        "a plain id, as RQ 1.x writes it"
    );
    let listed = python(
        "1.16.2",
        m.path(),
        r#"
import json, sys
from redis import Redis
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
r = Redis.from_url(sys.argv[1])
reg = StartedJobRegistry("default", connection=r, serializer=JSONSerializer)
print(json.dumps({i: Job.fetch(i, connection=r, serializer=JSONSerializer).get_status() for i in reg.get_job_ids()}))
"#,
        &[&url],
    );
    assert_eq!(
        listed[&id], "started",
        "RQ 1.16 lists the running prosaas job: {listed}"
    );
    eventually("the job to finish", Duration::from_secs(15), || async {
        (store.fetch_job(&id).await.ok()??.status == "finished").then_some(())
    })
    .await;

    // A killed prosaas worker's job: RQ 1.16's cleanup now parses the entry and fails it.
    let long = store
        .enqueue(NewJob::new(
            "default",
            "diag.sleep",
            kwargs(json!({"ms": 60_000})),
        ))
        .await
        .unwrap();
    status_becomes(&store, &long, "started").await;
    w.signal("KILL");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let _ = rq_info("1.16.2", m.path(), &url);
    let status = store.fetch_job(&long).await.unwrap().unwrap().status;
    assert_eq!(status, "failed", "RQ 1.16 handled the abandoned job");
    let _ = py.kill();
    let _ = py.wait();
}

/// A fair queue's tenant lanes are RQ queues of their own: `rq info` counts every queued job
/// (each lane on its line), Python reads each job's status and origin truthfully before and after
/// a prosaas worker runs it, and finished jobs land in the queue's own registry.
async fn a_fair_queues_lanes_are_what_rq_counts(version: &str) {
    let t = db();
    let m = python_modules();
    let url = t.url();
    let fair = [("PROSAAS__QUEUES__DEFAULT__FAIRNESS", "tenant")];
    let store = crate::support::worker::worker_context(&t, &fair).jobs;
    let job = |tenant: &str| {
        let mut j = NewJob::new("default", "diag.noop", kwargs(json!({})));
        j.set_tenant(tenant).unwrap();
        j
    };
    let mut ids = store
        .enqueue_many(&[job("acme"), job("acme"), job("acme")])
        .await
        .unwrap();
    ids.extend(
        store
            .enqueue_many(&[job("beta"), job("beta")])
            .await
            .unwrap(),
    );
    let script = "import json, sys\nfrom redis import Redis\nfrom rq import Queue\nfrom rq.job import Job\n\
         from rq.serializers import JSONSerializer\n\
         r = Redis.from_url(sys.argv[1])\n\
         jobs = [Job.fetch(i, connection=r, serializer=JSONSerializer) for i in sys.argv[2:]]\n\
         print(json.dumps({'status': [j.get_status() for j in jobs], 'origin': [j.origin for j in jobs],\n\
           'counts': {q.name: q.count for q in Queue.all(connection=r)}}))\n";
    let mut args = vec![url.as_str()];
    args.extend(ids.iter().map(String::as_str));
    let before = python(version, m.path(), script, &args);
    assert_eq!(before["status"], json!(vec!["queued"; 5]), "{version}");
    assert_eq!(before["origin"], json!(vec!["default"; 5]), "{version}");
    assert_eq!(
        before["counts"],
        json!({"default": 0, "default@acme": 3, "default@beta": 2}),
        "{version}: rq counts every queued job"
    );
    let out = rq_cli(version, m.path(), &["info", "-u", &url, "--raw"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("queue default@acme 3") && text.contains("queue default@beta 2"),
        "{version}: {text}"
    );
    let w = InProcWorker::start(&t, &fair);
    eventually("the jobs to finish", Duration::from_secs(20), || async {
        let stats = store.stats().queue_stats(&[]).await.ok()?;
        (stats.get("default")?.finished == 5).then_some(())
    })
    .await;
    w.stop().await;
    let after = python(version, m.path(), script, &args);
    assert_eq!(after["status"], json!(vec!["finished"; 5]), "{version}");
    assert_eq!(
        after["counts"],
        json!({"default": 0}),
        "{version}: emptied lanes leave rq:queues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_3_counts_a_fair_queues_lanes() {
    a_fair_queues_lanes_are_what_rq_counts("3.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_1_counts_a_fair_queues_lanes() {
    a_fair_queues_lanes_are_what_rq_counts("1.16.2").await;
}

/// `rq suspend` stops prosaas workers too: a job enqueued while suspended is not started, the
/// worker says `suspended` where `rq info` reads it, and `rq resume` lets the job run; each RQ
/// version's CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_suspend_and_resume_hold_prosaas_workers() {
    let m = python_modules();
    for version in VERSIONS {
        let t = db();
        let url = t.url();
        let store = t.store();
        let mut w = ProsaasProcess::start("worker", &[("REDIS_URL", &url)]);
        w.wait_for_log("worker registered", Duration::from_secs(20));
        let out = rq_cli(version, m.path(), &["suspend", "-u", &url]);
        assert!(out.status.success(), "rq {version} suspend: {out:?}");
        let id = store
            .enqueue(NewJob::new("default", "diag.count", kwargs(json!({}))))
            .await
            .unwrap();
        let mut c = t.connection();
        let name: String = eventually(
            "the worker to say suspended",
            Duration::from_secs(10),
            || {
                let workers: Vec<String> = c.smembers("rq:workers").unwrap();
                let state: Option<String> = workers
                    .first()
                    .and_then(|key| c.hget(key, "state").unwrap());
                let ready = state.as_deref() == Some("suspended");
                async move { ready.then(|| workers[0].clone()) }
            },
        )
        .await;
        // Two more of the worker's one-second checks: still not started.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let job = store.fetch_job(&id).await.unwrap().unwrap();
        assert_eq!(
            job.status, "queued",
            "rq {version}: started while suspended"
        );
        let out = rq_cli(version, m.path(), &["resume", "-u", &url]);
        assert!(out.status.success(), "rq {version} resume: {out:?}");
        status_becomes(&store, &id, "finished").await;
        let state: Option<String> = c.hget(&name, "state").unwrap();
        assert_ne!(state.as_deref(), Some("suspended"), "rq {version}");
        w.stop();
    }
}

const CANCEL: &str = r#"
import json, sys
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
r = Redis.from_url(sys.argv[1])
job = Job.fetch(sys.argv[2], connection=r, serializer=JSONSerializer)
job.cancel()
s = job.get_status(refresh=True)
print(json.dumps({"status": getattr(s, "value", s)}))
"#;

/// A job Python canceled never starts on prosaas, even when a wake-up had already moved its id
/// into a worker's inbox, out of reach of `job.cancel()`'s `LREM` (each RQ version's cancel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_python_canceled_never_starts_even_from_an_inbox() {
    let m = python_modules();
    for version in VERSIONS {
        let t = db();
        let url = t.url();
        let store = t.store();
        let w = crate::support::registered_worker(&store, "w-cancel", &["default"]).await;
        let id = store
            .enqueue(NewJob::new("default", "diag.count", kwargs(json!({}))))
            .await
            .unwrap();
        let mut c = t.connection();
        let inbox = "prosaas:worker:w-cancel:inbox";
        let moved: Option<String> = redis::cmd("LMOVE")
            .arg(&["rq:queue:default", inbox, "LEFT", "RIGHT"])
            .query(&mut c)
            .unwrap();
        assert_eq!(moved.as_deref(), Some(id.as_str()));
        let canceled = python(version, m.path(), CANCEL, &[&url, &id]);
        assert_eq!(canceled["status"], "canceled", "rq {version}");
        let claim = store
            .workers()
            .claim(&w, 10, Duration::from_secs(60), 1)
            .await
            .unwrap();
        assert!(
            claim.jobs.is_empty(),
            "rq {version}: a canceled job was claimed"
        );
        let left: usize = c.llen(inbox).unwrap();
        assert_eq!(
            left, 0,
            "rq {version}: the id stays nowhere to be claimed later"
        );
        let job = store.fetch_job(&id).await.unwrap().unwrap();
        assert_eq!(job.status, "canceled", "rq {version}");
        let in_registry: Option<f64> = c.zscore("rq:canceled:default", &id).unwrap();
        assert!(
            in_registry.is_some(),
            "rq {version}: the canceled registry keeps it"
        );
    }
}

/// A job as each RQ version reads it: its status, its queue's length, and the ids in its
/// queue's canceled and failed registries.
const JOB_AS_RQ_SEES_IT: &str = r#"
import json, sys
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import CanceledJobRegistry, FailedJobRegistry
from rq.serializers import JSONSerializer
r = Redis.from_url(sys.argv[1])
job = Job.fetch(sys.argv[2], connection=r, serializer=JSONSerializer)
s = job.get_status(refresh=True)
q = Queue(job.origin, connection=r, serializer=JSONSerializer)
print(json.dumps({"status": getattr(s, "value", s), "queued": q.count,
    "canceled": CanceledJobRegistry(job.origin, connection=r).get_job_ids(),
    "failed": FailedJobRegistry(job.origin, connection=r).get_job_ids()}))
"#;

/// `prosaas jobs cancel` leaves what RQ's `job.cancel()` leaves: status `canceled`, the job in
/// the canceled registry and off the queue, for each RQ version's reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_prosaas_canceled_is_canceled_for_rq() {
    let m = python_modules();
    for version in VERSIONS {
        let t = db();
        let url = t.url();
        let store = t.store();
        let id = store
            .enqueue(NewJob::new("default", "diag.count", kwargs(json!({}))))
            .await
            .unwrap();
        let env = [("REDIS_URL", url.as_str())];
        let out = process::run(&["jobs", "cancel", &id], &env);
        assert!(out.status.success(), "{out:?}");
        let seen = python(version, m.path(), JOB_AS_RQ_SEES_IT, &[&url, &id]);
        assert_eq!(seen["status"], "canceled", "rq {version}: {seen}");
        assert_eq!(seen["queued"], 0, "rq {version}: {seen}");
        assert_eq!(seen["canceled"], json!([id]), "rq {version}: {seen}");
        let again = process::run(&["jobs", "cancel", &id], &env);
        let said = String::from_utf8_lossy(&again.stdout);
        assert!(said.contains("already canceled"), "{said}");
    }
}

const STOP: &str = r#"
import json, sys
from redis import Redis
from rq.command import send_stop_job_command
from rq.serializers import JSONSerializer
r = Redis.from_url(sys.argv[1])
send_stop_job_command(r, sys.argv[2], serializer=JSONSerializer)
print(json.dumps({"sent": True}))
"#;

/// `send_shutdown_command` stops a prosaas worker as SIGTERM does: the job it runs finishes,
/// and the process exits cleanly (each RQ version's sender).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rqs_shutdown_command_stops_a_prosaas_worker_cleanly() {
    let m = python_modules();
    for version in VERSIONS {
        let t = db();
        let url = t.url();
        let mut w = ProsaasProcess::start("worker", &[("REDIS_URL", &url)]);
        w.wait_for_log("worker registered", Duration::from_secs(20));
        let store = t.store();
        let id = store
            .enqueue(NewJob::new(
                "default",
                "diag.count",
                kwargs(json!({"ms": 1500})),
            ))
            .await
            .unwrap();
        status_becomes(&store, &id, "started").await;
        let workers: Vec<String> = t.connection().smembers("rq:workers").unwrap();
        let name = workers[0].trim_start_matches("rq:worker:").to_owned();
        python(
            version,
            m.path(),
            "import json, sys\nfrom redis import Redis\nfrom rq.command import send_shutdown_command\n\
             send_shutdown_command(Redis.from_url(sys.argv[1]), sys.argv[2])\n\
             print(json.dumps({}))\n",
            &[&url, &name],
        );
        let exit = w.wait_exit(Duration::from_secs(20));
        assert!(exit.success(), "rq {version}: {exit:?}\n{}", w.logs());
        assert!(
            w.logs().contains("an RQ shutdown command asks"),
            "rq {version}"
        );
        assert_eq!(
            store.fetch_job(&id).await.unwrap().unwrap().status,
            "finished",
            "rq {version}: the job in flight finished first"
        );
    }
}

/// `send_stop_job_command` stops a job a prosaas worker runs: it ends `stopped` in the failed
/// registry with RQ's message, is not retried though it has retries left, and the worker goes on
/// (each RQ version's sender and reader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rqs_stop_command_stops_a_prosaas_job() {
    let m = python_modules();
    for version in VERSIONS {
        let t = db();
        let url = t.url();
        let store = t.store();
        let mut w = ProsaasProcess::start("worker", &[("REDIS_URL", &url)]);
        w.wait_for_log("worker registered", Duration::from_secs(20));
        let long = NewJob::new("default", "diag.sleep", kwargs(json!({"ms": 60_000})))
            .with_options(JobOptions {
                max_retries: Some(3),
                ..Default::default()
            });
        let id = store.enqueue(long).await.unwrap();
        status_becomes(&store, &id, "started").await;
        python(version, m.path(), STOP, &[&url, &id]);
        status_becomes(&store, &id, "stopped").await;
        let seen = python(version, m.path(), JOB_AS_RQ_SEES_IT, &[&url, &id]);
        assert_eq!(seen["status"], "stopped", "rq {version}: {seen}");
        assert_eq!(seen["failed"], json!([id]), "rq {version}: {seen}");
        let detail = store.admin().job_detail(&id).await.unwrap().unwrap();
        let Some(JobResult::Failed { error }) = detail.result else {
            panic!("rq {version}: no failure recorded: {detail:?}");
        };
        assert!(error.contains("stopped by user"), "{error}");
        // Retries were left; a stop is not retried.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let job = store.fetch_job(&id).await.unwrap().unwrap();
        assert_eq!(job.status, "stopped", "rq {version}: retried after a stop");
        let next = store
            .enqueue(NewJob::new("default", "diag.count", kwargs(json!({}))))
            .await
            .unwrap();
        status_becomes(&store, &next, "finished").await;
        w.stop();
    }
}

const KILL_HORSE: &str = r#"
import json, sys
from redis import Redis
from rq.command import send_kill_horse_command
r = Redis.from_url(sys.argv[1])
names = sorted(k.decode().split('rq:worker:', 1)[1] for k in r.smembers('rq:workers'))
for name in names:
    send_kill_horse_command(r, name)
print(json.dumps({"workers": names}))
"#;

/// `send_kill_horse_command` kills what a prosaas worker runs, as RQ kills its work-horse: each
/// running job fails as a killed horse's does, or is retried when its policy allows; a Python
/// job's failure callback does not run (it would have run in the dead horse); the worker goes on
/// (each RQ version's sender).
// Long on purpose: one worker process per RQ version, three jobs killed and each outcome checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rqs_kill_horse_command_kills_the_running_jobs() {
    let m = python_modules();
    for version in VERSIONS {
        let t = db();
        let url = t.url();
        let store = t.store();
        // The retried job still sleeps when the worker stops: it goes back at once.
        let mut w = ProsaasProcess::start(
            "worker",
            &[
                ("REDIS_URL", &url),
                ("PROSAAS__WORKER__SHUTDOWN_GRACE_MS", "200"),
            ],
        );
        w.wait_for_log("worker registered", Duration::from_secs(20));
        let sleep = |retries| {
            NewJob::new("default", "diag.sleep", kwargs(json!({"ms": 60_000}))).with_options(
                JobOptions {
                    max_retries: Some(retries),
                    retry_intervals: Some(vec![0]),
                    ..Default::default()
                },
            )
        };
        let once = store.enqueue(sleep(0)).await.unwrap();
        let again = store.enqueue(sleep(1)).await.unwrap();
        python(
            version,
            m.path(),
            "import json, sys\nfrom redis import Redis\nfrom rq import Queue\nfrom rq.job import Callback\n\
             from rq.serializers import JSONSerializer\n\
             q = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)\n\
             q.enqueue('diag.sleep', ms=60000, job_id='py-sleep', on_failure=Callback('diag.count'))\n\
             print(json.dumps({}))\n",
            &[&url],
        );
        for id in [once.as_str(), again.as_str(), "py-sleep"] {
            status_becomes(&store, id, "started").await;
        }
        let sent = python(version, m.path(), KILL_HORSE, &[&url]);
        assert_eq!(sent["workers"].as_array().map(Vec::len), Some(1), "{sent}");
        status_becomes(&store, &once, "failed").await;
        status_becomes(&store, "py-sleep", "failed").await;
        let runs = store.diag().execution_counts().await.unwrap();
        assert_eq!(
            runs.get("py-sleep"),
            None,
            "rq {version}: no callback after a kill"
        );
        let seen = python(version, m.path(), JOB_AS_RQ_SEES_IT, &[&url, &once]);
        assert_eq!(seen["status"], "failed", "rq {version}: {seen}");
        let mut failed: Vec<&str> = seen["failed"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        failed.sort();
        let mut expected = vec![once.as_str(), "py-sleep"];
        expected.sort();
        assert_eq!(failed, expected, "rq {version}: {seen}");
        let detail = store.admin().job_detail(&once).await.unwrap().unwrap();
        let Some(JobResult::Failed { error }) = detail.result else {
            panic!("rq {version}: no failure recorded: {detail:?}");
        };
        assert!(
            error.contains("WorkHorseKilled: Work-horse terminated unexpectedly"),
            "{error}"
        );
        // The job with a retry left runs again at once (interval 0), with none left.
        eventually(
            &format!("rq {version}: the killed job with a retry to run again"),
            Duration::from_secs(15),
            || async {
                let job = store.fetch_job(&again).await.ok()??;
                (job.status == "started" && job.retries_left == Some(0)).then_some(())
            },
        )
        .await;
        let next = store
            .enqueue(NewJob::new("default", "diag.count", kwargs(json!({}))))
            .await
            .unwrap();
        status_becomes(&store, &next, "finished").await;
        w.stop();
    }
}
