//! The operator commands against a real Redis.

use serde_json::Value;

use crate::support::{TestRedis, db, process};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn enqueue_dedupe_and_stats() {
    let t = db();
    let url = t.url();
    let env = [("REDIS_URL", url.as_str())];
    let out = process::run(
        &[
            "jobs",
            "enqueue",
            "webhook_process_job",
            "--args",
            r#"{"tenant_id":"1"}"#,
            "--queue",
            "high",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout(&out);
    assert!(prosaas::jobs::is_valid_job_id(&id), "{id}");

    let args = [
        "jobs",
        "enqueue",
        "push_send_job",
        "--dedupe-key",
        "push:notification:9",
        "--dedupe-ttl",
        "60",
    ];
    let first = stdout(&process::run(&args, &env));
    let second = stdout(&process::run(&args, &env));
    assert_eq!(
        first,
        prosaas::jobs::job_id_for_dedupe_key("push:notification:9")
    );
    assert_eq!(second, format!("duplicate of {first}"));

    let stats = process::run(&["jobs", "stats", "--json"], &env);
    assert!(stats.status.success());
    let v: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["high"]["queued"], 1);
    assert_eq!(v["default"]["queued"], 1);
    assert_eq!(v["low"]["queued"], 0);

    let table = stdout(&process::run(&["jobs", "stats"], &env));
    let default_row = table.lines().find(|l| l.starts_with("default")).unwrap();
    assert_eq!(
        default_row.split_whitespace().collect::<Vec<_>>(),
        ["default", "1", "0", "0", "0", "0", "0"]
    );
}

#[test]
fn bad_enqueue_input_changes_nothing() {
    let t = db();
    let url = t.url();
    let env = [("REDIS_URL", url.as_str())];
    for (args, needle) in [
        (
            vec!["jobs", "enqueue", "t", "--args", "{not json"],
            "--args is not JSON",
        ),
        (
            vec!["jobs", "enqueue", "t", "--args", "[1,2]"],
            "JSON object",
        ),
        (
            vec!["jobs", "enqueue", "t", "--options", r#"{"job_id":"a.b"}"#],
            "job id",
        ),
        (
            vec!["jobs", "enqueue", "t", "--options", r#"{"nope":1}"#],
            "unknown field",
        ),
        (
            vec!["jobs", "enqueue", "t", "--queue", "bad queue"],
            "queue name",
        ),
    ] {
        let out = process::run(&args, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut t.connection())
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn check_reports_redis_reachability() {
    let mut redis = TestRedis::start();
    let url = redis.url();
    let ok = process::run(&["check"], &[("REDIS_URL", &url)]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(stdout(&ok).starts_with("ok: configuration valid"));
    redis.kill();
    let down = process::run(&["check"], &[("REDIS_URL", &url)]);
    assert_eq!(down.status.code(), Some(1));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(err.contains("does not answer"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn probe_asks_the_running_process_for_its_health() {
    let mut redis = TestRedis::start();
    let url = redis.url();
    let worker = crate::support::ProsaasProcess::start("worker", &[("REDIS_URL", &url)]);
    let port = worker.http_addr().port().to_string();
    let env = [("REDIS_URL", url.as_str()), ("PORT", port.as_str())];
    let ready = process::run(&["probe"], &env);
    assert_eq!(ready.status.code(), Some(0), "{}", stdout(&ready));
    assert!(stdout(&ready).contains("/readyz answered 200"));
    redis.kill();
    let unready = process::run(&["probe"], &env);
    assert_eq!(unready.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unready.stderr);
    assert!(err.contains("503"), "{err}");
    let live = process::run(&["probe", "--live"], &env);
    assert_eq!(live.status.code(), Some(0), "alive while Redis is down");
    drop(worker);
    let gone = process::run(&["probe", "--live"], &env);
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn secrets_in_the_redis_url_are_never_printed() {
    let mut redis = TestRedis::start();
    let url = format!("redis://:hunter2@127.0.0.1:{}", redis.port());
    redis.kill();
    let out = process::run(&["check"], &[("REDIS_URL", &url)]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("hunter2"), "{all}");
    assert!(all.contains("***@127.0.0.1"), "{all}");
}

#[test]
fn the_version_names_the_release_and_the_commit() {
    let out = crate::support::process::run(&["--version"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = format!("prosaas {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let commit = text
        .trim()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap();
    assert!(
        commit == "unknown" || (commit.len() == 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
}

/// `prosaas jobs suspend` writes what `rq suspend` writes (with `--duration`, its TTL), health
/// names the suspension, and `jobs resume` ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_suspend_and_resume_as_rq_does() {
    let t = db();
    let url = t.url();
    let env = [("REDIS_URL", url.as_str())];
    let mut c = t.connection();
    let out = process::run(&["jobs", "suspend", "--duration", "300"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (value, ttl): (Option<String>, i64) = redis::pipe()
        .get("rq:suspended")
        .ttl("rq:suspended")
        .query(&mut c)
        .unwrap();
    assert_eq!(value.as_deref(), Some("1"));
    assert!((290..=300).contains(&ttl), "ttl {ttl}");

    let store = t.store();
    let snapshot = store
        .stats()
        .health_snapshot(&["default".into()], std::time::Duration::from_secs(2))
        .await
        .unwrap();
    let left = snapshot.suspension.and_then(|s| s.seconds_left);
    assert!(left.is_some_and(|s| s > 280), "{left:?}");

    assert_eq!(
        stdout(&process::run(&["jobs", "resume"], &env)),
        "workers resumed"
    );
    let exists: bool = redis::Commands::exists(&mut c, "rq:suspended").unwrap();
    assert!(!exists);
    assert_eq!(
        stdout(&process::run(&["jobs", "resume"], &env)),
        "workers were not suspended"
    );
    let out = process::run(&["jobs", "suspend", "--duration", "0"], &env);
    assert!(!out.status.success(), "a zero duration is refused");
}

/// `prosaas jobs pause` holds a running worker's claims on the queue without busy polling (on a
/// Redis of its own, so its command counts are this worker's), health says so, and `jobs
/// unpause` lets the waiting job run within the worker's idle poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_pause_holds_a_queue_without_spinning() {
    let redis = TestRedis::start();
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str())];
    let out = process::run(&["jobs", "pause", "default"], &env);
    assert_eq!(
        stdout(&out),
        "queue default paused: prosaas workers start none of its jobs"
    );
    let mut w = crate::support::ProsaasProcess::start(
        "worker",
        &[
            ("REDIS_URL", url.as_str()),
            ("PROSAAS__WORKER__QUEUES", "default"),
        ],
    );
    w.wait_for_log("worker registered", std::time::Duration::from_secs(20));
    let store = crate::support::redis_server::TestDb::store_for(&url);
    let id = store
        .enqueue(prosaas::jobs::NewJob::new(
            "default",
            "diag.noop",
            serde_json::Map::new(),
        ))
        .await
        .unwrap();
    let mut c = redis.connection(0);
    let calls = |c: &mut redis::Connection, cmd: &str| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (claims, blocks) = (calls(&mut c, "evalsha"), calls(&mut c, "blmove"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let claims = calls(&mut c, "evalsha") - claims;
    let blocks = calls(&mut c, "blmove") - blocks;
    // Idle: a claim per second (the idle poll), the queue's promotion every second, and a
    // heartbeat; a spin would be thousands. No blocking wake-up on the paused queue.
    assert!(claims <= 10, "{claims} scripts in 3 s while paused");
    assert_eq!(blocks, 0, "a waker blocked on the paused queue");
    assert_eq!(
        store.fetch_job(&id).await.unwrap().unwrap().status,
        "queued"
    );
    let stats = stdout(&process::run(&["jobs", "stats"], &env));
    assert!(stats.contains("default: paused"), "{stats}");
    let out = process::run(&["jobs", "unpause", "default"], &env);
    assert_eq!(stdout(&out), "queue default unpaused");
    crate::support::status_becomes(&store, &id, "finished").await;
    assert_eq!(
        stdout(&process::run(&["jobs", "unpause", "default"], &env)),
        "queue default was not paused"
    );
    assert!(w.stop().success());
}

/// `prosaas jobs stop` reaches the worker running the job (RQ's stop-job command): the job ends
/// `stopped`; asking again says there is nothing to stop; an unknown id is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_stop_reaches_the_worker_running_it() {
    let t = db();
    let url = t.url();
    let env = [("REDIS_URL", url.as_str())];
    let store = t.store();
    let mut w = crate::support::ProsaasProcess::start("worker", &env);
    w.wait_for_log("worker registered", std::time::Duration::from_secs(20));
    let long = prosaas::jobs::NewJob::new(
        "default",
        "diag.sleep",
        crate::support::kwargs(serde_json::json!({"ms": 60_000})),
    );
    let id = store.enqueue(long).await.unwrap();
    crate::support::status_becomes(&store, &id, "started").await;
    let out = process::run(&["jobs", "stop", &id], &env);
    assert!(stdout(&out).starts_with("stopping"), "{out:?}");
    crate::support::status_becomes(&store, &id, "stopped").await;
    let again = stdout(&process::run(&["jobs", "stop", &id], &env));
    assert!(again.contains("not running (stopped)"), "{again}");
    assert!(
        !process::run(&["jobs", "stop", "nope"], &env)
            .status
            .success()
    );
    w.stop();
}
