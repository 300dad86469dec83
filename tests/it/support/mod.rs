//! Shared test helpers: private Redis servers, the real binary as a process, and the worker in
//! this process.

pub mod client;
pub mod process;
pub mod promtext;
pub mod redis_server;
pub mod schema;
pub mod sentinel;
pub mod worker;

use std::time::{Duration, Instant};

pub use process::ProsaasProcess;
pub use redis_server::{TestRedis, db};

/// Polls `f` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A JSON object literal as keyword arguments.
/// Waits up to 10 s for the job's status to be `status`.
pub async fn status_becomes(store: &prosaas::jobs::JobStore, id: &str, status: &str) {
    eventually(
        &format!("{id} to be {status}"),
        Duration::from_secs(10),
        || async { (store.fetch_job(id).await.ok()??.status == status).then_some(()) },
    )
    .await;
}

pub fn kwargs(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        other => panic!("kwargs must be an object, got {other}"),
    }
}

/// The counts of the `default` queue; `None` while Redis does not answer.
pub async fn default_queue(store: &prosaas::jobs::JobStore) -> Option<prosaas::jobs::QueueStats> {
    store
        .stats()
        .queue_stats(&[])
        .await
        .ok()?
        .get("default")
        .cloned()
}

/// A worker registered on `queues` (not running), for tests that drive claims and settles by
/// hand.
pub async fn registered_worker(
    store: &prosaas::jobs::JobStore,
    name: &str,
    queues: &[&str],
) -> prosaas::jobs::WorkerInfo {
    let w = prosaas::jobs::WorkerInfo {
        name: name.into(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        pid: 1,
        hostname: "h".into(),
    };
    store
        .workers()
        .register_worker(&w, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    w
}
