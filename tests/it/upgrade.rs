//! The upgrade contract: the previous release (the newest `CHANGELOG.md` names, built from this
//! repository's history by `scripts/previous-release.sh` into `target/compat`) and this build run
//! beside each other on one Redis, in both directions (an upgrade, and a rollback).
//!
//! The first release's processes start and leave behind every state they write (queued jobs
//! from Python RQ and from their api, started jobs with their running sets, scheduled retries,
//! fair lanes with running counts, de-dupe locks, the scheduler lock, the per-minute series);
//! then the second release's processes join, the first's worker is stopped with SIGTERM and
//! another with `kill -9`, the scheduler lock changes hands, and each release's api feeds the
//! other's workers. Nothing may be lost, nothing run twice but the killed worker's jobs in
//! flight, no schedule slot fired twice.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use redis::Commands;
use serde_json::{Value, json};

use crate::support::process::{TEST_SECRET, TEST_TOKEN};
use crate::support::redis_server::TestDb;
use crate::support::{ProsaasProcess, db, eventually};

/// This build's binary.
const THIS: &str = crate::support::process::BIN;

/// The previous release's binary and its `<version> <commit>`.
fn previous() -> (String, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/compat");
    let bin = dir.join("prosaas-previous");
    let label = std::fs::read_to_string(dir.join("previous.txt")).unwrap_or_default();
    assert!(
        bin.exists() && !label.is_empty(),
        "no previous release at {}: run `bash scripts/previous-release.sh` (.ci/run does)",
        bin.display()
    );
    (bin.display().to_string(), label.trim().to_owned())
}

/// Settings both releases read the same way: short timings, three queues, a fair one with a
/// tenant cap, a schedule entry every second.
fn overlay() -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        f.path(),
        "[worker]\nqueues = [\"default\", \"fq\", \"sched\"]\nconcurrency = 4\n\
         heartbeat_interval_ms = 500\nheartbeat_ttl_ms = 2000\nmaintenance_interval_ms = 300\n\
         promote_interval_ms = 300\nresult_ttl_secs = 3600\n\
         [queues.fq]\nfairness = \"tenant\"\ntenant_concurrency = 2\n\
         [scheduler]\nlock_ttl_ms = 1500\nrenew_interval_ms = 500\ntick_interval_ms = 200\n\
         [[scheduler.entries]]\nname = \"tick\"\nevery = \"1s\"\nqueue = \"sched\"\n\
         job_type = \"diag.count\"\n",
    )
    .unwrap();
    f
}

/// A process of `bin` with the overlay, on `t`'s database.
fn start(bin: &str, role: &str, t: &TestDb, config: &tempfile::NamedTempFile) -> ProsaasProcess {
    let (url, path) = (t.url(), config.path().display().to_string());
    let p = ProsaasProcess::start_bin(
        bin,
        &["--role", role, "--config", &path],
        &[("REDIS_URL", &url)],
    );
    p.wait_for_log("HTTP listening", Duration::from_secs(20));
    p
}

/// A JSON `POST` to `api`, authenticated as its route needs; the JSON answer.
async fn post(api: &ProsaasProcess, path: &str, body: &Value) -> Value {
    let request = reqwest::Client::new().post(api.url(path)).json(body);
    let request = if path.starts_with("/webhook/") {
        request.header("X-Internal-Secret", TEST_SECRET)
    } else {
        request.bearer_auth(TEST_TOKEN)
    };
    request.send().await.unwrap().json().await.unwrap()
}

/// `n` `diag.count` jobs (`ms` each) through `api`'s enqueue API; their ids.
async fn enqueue(api: &ProsaasProcess, queue: &str, n: usize, ms: u64) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let mut body =
            json!({"job_type": "diag.count", "queue": queue, "args": {"ms": ms, "i": i}});
        if queue == "fq" {
            body["tenant"] = json!(format!("t{}", i % 6));
        }
        let r = post(api, "/api/jobs/enqueue", &body).await;
        ids.push(r["job_id"].as_str().unwrap().to_owned());
    }
    ids
}

/// WhatsApp webhooks with message ids `W<from>..W<to>` through `api`: how many were new.
async fn webhooks(api: &ProsaasProcess, from: usize, to: usize) -> u64 {
    let mut new = 0;
    for i in from..to {
        let body = json!({"tenantId": "1", "payload": {"messages": [{"key": {"id": format!("W{i}"),
            "remoteJid": "972500000000@s.whatsapp.net"}, "message": {"conversation": "hi"}}]}});
        new += post(api, "/webhook/whatsapp/incoming", &body).await["enqueued"]
            .as_u64()
            .unwrap();
    }
    new
}

/// `n` `diag.count` jobs enqueued by Python RQ 3.0 (JSON serializer) on `default`; their ids.
fn python_enqueue(t: &TestDb, n: usize) -> Vec<String> {
    let script = "import json, sys\nfrom redis import Redis\nfrom rq import Queue\n\
        from rq.serializers import JSONSerializer\n\
        q = Queue('default', connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)\n\
        ids = [q.enqueue('diag.count', ms=20).id for _ in range(int(sys.argv[2]))]\n\
        print(json.dumps(ids))\n";
    let out = std::process::Command::new(crate::rq_interop::venv("3.0.0").join("bin/python"))
        .args(["-c", script, &t.url(), &n.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The ids of jobs a worker (named in their hash) is running now.
fn running_on(c: &mut redis::Connection, worker: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for q in ["default", "fq", "sched"] {
        let members: Vec<String> = c.zrange(format!("rq:wip:{q}"), 0, -1).unwrap();
        for m in members {
            let id = m.split(':').next().unwrap().to_owned();
            let w: Option<String> = c.hget(format!("rq:job:{id}"), "worker_name").unwrap();
            if w.as_deref() == Some(worker) {
                ids.insert(id);
            }
        }
    }
    ids
}

fn worker_name(p: &ProsaasProcess) -> String {
    let line = p.wait_for_log("worker registered", Duration::from_secs(20));
    let at = line.find(" worker=").unwrap() + 8;
    line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

/// One release's fleet, then the other's joining it; every invariant checked at the end.
// Long on purpose: one deploy in order (the first fleet and its state, the second joining, the
// first leaving), then every check of what the contract promises.
async fn mixed_fleet(first: &str, second: &str) {
    let t = db();
    let cfg = overlay();
    let mut c = t.connection();
    // The first release alone: its api, two workers, its scheduler, and every state they write.
    let api1 = start(first, "api", &t, &cfg);
    let sched1 = start(first, "scheduler", &t, &cfg);
    sched1.wait_for_log("Lock acquired", Duration::from_secs(10));
    // Retries first (they fail at once and wait 6 s in the scheduled registry), then enough
    // long jobs to keep every worker busy past them.
    let mut retried = Vec::new();
    for i in 0..4 {
        let body = json!({"job_type": "diag.fail", "queue": "default", "args": {"i": i},
            "options": {"max_retries": 1, "retry_intervals": [6]}});
        let r = post(&api1, "/api/jobs/enqueue", &body).await;
        retried.push(r["job_id"].as_str().unwrap().to_owned());
    }
    let mut counted = enqueue(&api1, "default", 200, 100).await;
    counted.extend(python_enqueue(&t, 100));
    counted.extend(enqueue(&api1, "fq", 60, 40).await);
    let mut new_events = webhooks(&api1, 0, 30).await;
    let mut stopped = start(first, "worker", &t, &cfg);
    let killed = start(first, "worker", &t, &cfg);
    let killed_name = worker_name(&killed);
    eventually("the first fleet busy", Duration::from_secs(30), || {
        let started: usize = c.zcard("rq:wip:default").unwrap();
        let retries: usize = c.zcard("rq:scheduled:default").unwrap();
        async move { (started > 0 && retries > 0).then_some(()) }
    })
    .await;

    // The second release joins; the first's workers leave, one gracefully, one killed.
    let api2 = start(second, "api", &t, &cfg);
    let sched2 = start(second, "scheduler", &t, &cfg);
    let w2 = [
        start(second, "worker", &t, &cfg),
        start(second, "worker", &t, &cfg),
    ];
    counted.extend(enqueue(&api2, "default", 100, 20).await);
    // Mid-deploy, this build's health shows both releases at work, and which is which.
    let this_api = if first == THIS { &api1 } else { &api2 };
    let health: Value = reqwest::Client::new()
        .get(this_api.url("/api/jobs/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions = health["worker_versions"].as_object().unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(
        versions.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        4
    );
    assert_eq!(health["build"]["version"], env!("CARGO_PKG_VERSION"));
    killed.signal("KILL");
    // What the dead worker held (it can claim nothing more; recovery waits a heartbeat TTL):
    // these alone may run twice.
    let in_flight = running_on(&mut c, &killed_name);
    stopped.signal("TERM");
    assert!(stopped.wait_exit(Duration::from_secs(30)).success());
    sched1.signal("TERM");
    sched2.wait_for_log("Lock acquired", Duration::from_secs(10));
    // Each api feeds the other release's workers; repeated events are duplicates across them.
    counted.extend(enqueue(&api1, "default", 50, 10).await);
    new_events += webhooks(&api2, 15, 45).await;
    counted.extend(enqueue(&api2, "fq", 30, 10).await);
    drop(api1);
    // Past a few more schedule slots from the new leader.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(sched2);

    let store = t.store();
    eventually("everything drained", Duration::from_secs(90), || async {
        let stats = store.stats().queue_stats(&[]).await.ok()?;
        let idle = ["default", "fq", "sched"].iter().all(|q| {
            stats
                .get(*q)
                .is_none_or(|s| s.queued == 0 && s.started == 0 && s.scheduled == 0)
        });
        idle.then_some(())
    })
    .await;
    let counts = store.diag().execution_counts().await.unwrap();
    let mut lost = Vec::new();
    let mut twice = Vec::new();
    for id in &counted {
        match counts.get(id).copied().unwrap_or(0) {
            0 => lost.push(id),
            1 => {}
            n if n == 2 && in_flight.contains(id) => {}
            _ => twice.push(id),
        }
        let status: String = c.hget(format!("rq:job:{id}"), "status").unwrap();
        assert_eq!(status, "finished", "{id}");
    }
    assert!(lost.is_empty(), "never run: {lost:?}");
    assert!(twice.is_empty(), "run twice: {twice:?}");
    // The retries the first release scheduled ran their second attempt and failed for good.
    for id in &retried {
        let (status, attempts): (String, u32) = redis::cmd("HMGET")
            .arg(format!("rq:job:{id}"))
            .arg(&["status", "attempts"])
            .query(&mut c)
            .unwrap();
        assert_eq!((status.as_str(), attempts), ("failed", 2), "{id}");
    }
    // 45 distinct message ids over two apis: 45 jobs, the overlap refused as duplicates.
    assert_eq!(new_events, 45);
    // Each schedule slot fired once, whichever release led.
    let slots: Vec<String> = c.lrange("rq:queue:sched", 0, -1).unwrap();
    assert!(slots.is_empty());
    let fired: Vec<String> = c.zrange("rq:finished:sched", 0, -1).unwrap();
    assert!(fired.len() >= 3, "{} slots fired", fired.len());
    for id in &fired {
        assert_eq!(counts.get(id), Some(&1), "slot job {id}");
    }
    // The fair queue's running counts came back to nothing, its lanes are empty.
    let running: HashMap<String, i64> = c.hgetall("prosaas:fair:fq:running").unwrap();
    assert!(running.values().all(|n| *n <= 0), "{running:?}");
    // Both releases counted into the same per-minute series.
    let minutes: Vec<String> = c.keys("prosaas:minute:*").unwrap();
    let mut ok = 0;
    for m in minutes {
        let fields: HashMap<String, u64> = c.hgetall(&m).unwrap();
        ok += fields
            .iter()
            .filter(|(k, _)| k.starts_with("ok:"))
            .map(|(_, v)| v)
            .sum::<u64>();
    }
    assert!(ok >= counted.len() as u64, "{ok} counted finishes");
    eprintln!(
        "{} jobs, {} slots, {} retried, {} run twice (in flight on the killed worker, of {})",
        counted.len(),
        fired.len(),
        retried.len(),
        counts.values().filter(|n| **n == 2).count(),
        in_flight.len()
    );
    drop((api2, w2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_from_the_previous_release_loses_nothing() {
    let (old, label) = previous();
    eprintln!("upgrade: {label} -> this build");
    mixed_fleet(&old, THIS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_back_to_the_previous_release_loses_nothing() {
    let (old, label) = previous();
    eprintln!("rollback: this build -> {label}");
    mixed_fleet(THIS, &old).await;
}
