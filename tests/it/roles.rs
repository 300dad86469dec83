//! Each role boots exactly its subsystems (the table in `src/roles/mod.rs`), proven with the
//! real binary; bad roles and bad configuration stop the process before it connects.

use std::time::Duration;

use prosaas::roles::Role;
use redis::Commands;

use crate::support::client::TestApi;
use crate::support::{ProsaasProcess, db, process};

const BOOT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_boots_only_its_subsystems() {
    let t = db();
    let url = t.url();
    for role in Role::ALL {
        let mut p = ProsaasProcess::start(role.name(), &[("REDIS_URL", &url)]);
        let banner = p.wait_for_log(role.banner(), BOOT);
        for s in role.subsystems() {
            assert!(
                banner.contains(s.name()),
                "{role}: banner {banner:?} lacks {s}"
            );
        }
        let api = TestApi::new(&p);
        assert_eq!(api.status("/healthz").await, 200, "{role} /healthz");
        assert_eq!(api.status("/readyz").await, 200, "{role} /readyz");

        let (status, body) = api.get("/api/jobs/health").await;
        if role.runs(prosaas::roles::Subsystem::PublicApi) {
            assert_eq!(status, 200, "{role}");
            assert_eq!(body["role"], role.name());
            let expected: Vec<&str> = role.subsystems().iter().map(|s| s.name()).collect();
            assert_eq!(body["subsystems"], serde_json::json!(expected));
            assert_eq!(body["status"], "healthy");
            // The dashboard comes with the public API: its sign-in form is served.
            assert_eq!(api.status("/dashboard/login").await, 200, "{role}");
        } else {
            assert_eq!(status, 404, "{role} must not serve the jobs API");
            assert_eq!(body["error"], "not_found");
            assert_eq!(
                api.status("/dashboard/login").await,
                404,
                "{role}: no dashboard"
            );
        }
        let status = p.stop();
        assert!(status.success(), "{role} exit {status:?}");
        p.wait_for_log("stopped cleanly", BOOT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_role_never_executes_jobs() {
    let t = db();
    let store = t.store();
    let id = store
        .enqueue(prosaas::jobs::NewJob::new(
            "default",
            "anything",
            Default::default(),
        ))
        .await
        .unwrap();
    let mut p = ProsaasProcess::start("api", &[("REDIS_URL", &t.url())]);
    p.wait_for_log("API mode: no background processing", BOOT);
    // Give a (wrongly started) executor ample time to claim it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = t.connection();
    let queued: Vec<String> = c.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(queued, std::slice::from_ref(&id));
    let status: String = c.hget(format!("rq:job:{id}"), "status").unwrap();
    assert_eq!(status, "queued");
    let workers: Vec<String> = c.smembers("rq:workers").unwrap();
    assert!(
        workers.is_empty(),
        "the api role registers no worker: {workers:?}"
    );
    assert!(p.stop().success());
}

#[test]
fn role_comes_from_the_flag_then_the_environment() {
    let bad_flag = process::run(&["--role", "wrker", "check"], &[("SERVICE_ROLE", "api")]);
    assert_eq!(bad_flag.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad_flag.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("invalid role \"wrker\"")
            && err.contains("api, worker, scheduler, calls, all"),
        "{err}"
    );
    assert!(err.contains("--role"), "{err}");

    let bad_env = process::run(&["check"], &[("SERVICE_ROLE", "cron")]);
    assert_eq!(bad_env.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad_env.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("SERVICE_ROLE"), "{err}");

    // The flag wins over a bad environment value.
    let t = db();
    let ok = process::run(
        &["--role", "worker", "check"],
        &[("SERVICE_ROLE", "cron"), ("REDIS_URL", &t.url())],
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn bad_configuration_exits_2_with_one_line_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[scheduler]\nlock_ttl_ms = 1000\nrenew_interval_ms = 1000\n",
    )
    .unwrap();
    let file = file.display().to_string();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--role", "api"],
            vec![("REDIS_URL", "http://localhost")],
            "redis.url",
        ),
        (
            vec!["--role", "worker"],
            vec![("PROSAAS__WORKER__CONCURRENCY", "0")],
            "worker.concurrency",
        ),
        (
            vec!["--role", "scheduler", "--config", &file],
            vec![],
            "scheduler.lock_ttl_ms",
        ),
        (
            vec!["--role", "api"],
            vec![("APP_ENV", "nowhere")],
            "config/nowhere.toml",
        ),
        (
            vec!["--role", "api"],
            vec![("PROSAAS__HTTP__PORTT", "1")],
            "portt",
        ),
    ];
    for (args, env, needle) in cases {
        let out = process::run(&args, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.starts_with("prosaas: invalid configuration"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_startup_failure_not_a_hang() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let t = db();
    let out = process::run(
        &["--role", "worker"],
        &[
            ("REDIS_URL", &t.url()),
            ("PORT", &port),
            ("PROSAAS__HTTP__HOST", "127.0.0.1"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
}
