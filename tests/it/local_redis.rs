//! With no Redis configured, the `all` role starts (and stops) a private redis-server; an
//! explicit URL or any other role never does.

use std::time::Duration;

use crate::support::{ProsaasProcess, redis_server::free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_role_starts_and_stops_a_private_redis() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("redis-data");
    let port = free_port().to_string();
    let data_s = data.display().to_string();
    let env = [
        ("PROSAAS__REDIS__LOCAL__PORT", port.as_str()),
        ("PROSAAS__REDIS__LOCAL__DIR", data_s.as_str()),
    ];
    let mut p = ProsaasProcess::start("all", &env);
    p.wait_for_log("Started a private redis-server", Duration::from_secs(20));
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(p.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let url = format!("redis://127.0.0.1:{port}");
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let aof: String = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query::<Vec<String>>(&mut c)
        .unwrap()[1]
        .clone();
    assert_eq!(
        aof, "yes",
        "the private server persists with an append-only file"
    );
    drop(c);

    assert!(p.stop().success());
    p.wait_for_log("private redis-server stopped", Duration::from_secs(10));
    let gone = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection_with_timeout(Duration::from_millis(300));
    assert!(gone.is_err(), "the private server must stop with prosaas");
    assert!(data.join("appendonlydir").exists() || data.join("appendonly.aof").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_roles_and_explicit_urls_never_start_one() {
    let port = free_port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data_s = dir.path().display().to_string();
    let http = reqwest::Client::new();

    let local = [
        ("PROSAAS__REDIS__LOCAL__PORT", port.as_str()),
        ("PROSAAS__REDIS__LOCAL__DIR", data_s.as_str()),
    ];
    let mut worker = ProsaasProcess::start("worker", &local);
    worker.wait_for_log("Worker mode", Duration::from_secs(20));
    assert_eq!(
        http.get(worker.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert!(!worker.logs().contains("private redis-server"));
    assert!(worker.stop().success());

    let explicit_url = format!("redis://127.0.0.1:{port}");
    let mut all = ProsaasProcess::start("all", &[("REDIS_URL", explicit_url.as_str())]);
    all.wait_for_log("All mode", Duration::from_secs(20));
    assert_eq!(
        http.get(all.url("/readyz")).send().await.unwrap().status(),
        503
    );
    assert!(!all.logs().contains("private redis-server"));
    assert!(all.stop().success());
}
