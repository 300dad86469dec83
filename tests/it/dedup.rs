//! De-duplication is atomic: one job per external event, under concurrency and across TTLs.

use std::collections::HashSet;
use std::time::Duration;

use prosaas::jobs::{Enqueued, NewJob, job_id_for_dedupe_key};
use redis::Commands;
use serde_json::json;

use crate::support::{db, kwargs};

fn job() -> NewJob {
    NewJob::new(
        "default",
        "webhook_process_job",
        kwargs(json!({"tenant_id": "1"})),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_retries_make_one_job() {
    let t = db();
    // Ten connections, ten callers each: the race is real, not serialised on one socket.
    let stores: Vec<_> = (0..10).map(|_| t.store()).collect();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = stores[i % 10].clone();
        tasks.push(tokio::spawn(async move {
            store
                .enqueue_with_dedupe(job(), "webhook:baileys:MSG-1", 600)
                .await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap());
    }
    let new: Vec<&Enqueued> = results.iter().filter(|r| !r.is_duplicate()).collect();
    assert_eq!(new.len(), 1, "exactly one caller enqueues");
    let ids: HashSet<&str> = results.iter().map(Enqueued::job_id).collect();
    assert_eq!(ids.len(), 1, "every duplicate names the same job");
    assert_eq!(
        new[0].job_id(),
        job_id_for_dedupe_key("webhook:baileys:MSG-1")
    );
    let mut c = t.connection();
    let len: usize = c.llen("rq:queue:default").unwrap();
    assert_eq!(len, 1);
    let lock: String = c.get("job_lock:webhook:baileys:MSG-1").unwrap();
    assert_eq!(lock, new[0].job_id());
    let ttl: i64 = c.ttl("job_lock:webhook:baileys:MSG-1").unwrap();
    assert!((590..=600).contains(&ttl), "lock ttl {ttl}");
}

#[tokio::test]
async fn after_the_ttl_a_finished_event_can_run_again() {
    let t = db();
    let store = t.store();
    let key = "push:notification:42";
    let first = store.enqueue_with_dedupe(job(), key, 1).await.unwrap();
    let Enqueued::New(id) = first else {
        panic!("first sight must enqueue")
    };
    assert_eq!(
        store.enqueue_with_dedupe(job(), key, 1).await.unwrap(),
        Enqueued::Duplicate(id.clone())
    );

    // The lock lapses while the job still waits: a retry must not queue a second copy.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut c = t.connection();
    let lock: Option<String> = c.get(format!("job_lock:{key}")).unwrap();
    assert_eq!(lock, None, "lock expired");
    assert_eq!(
        store.enqueue_with_dedupe(job(), key, 1).await.unwrap(),
        Enqueued::Duplicate(id.clone()),
        "a pending job's event stays de-duplicated after its lock lapsed"
    );
    let len: usize = c.llen("rq:queue:default").unwrap();
    assert_eq!(len, 1);

    // A worker runs it to completion (as RQ records it) and the lock lapses again.
    let popped: String = c.lpop("rq:queue:default", None).unwrap();
    assert_eq!(popped, id);
    let now = chrono::Utc::now().timestamp();
    let _: () = redis::pipe()
        .hset(format!("rq:job:{id}"), "status", "finished")
        .hset(
            format!("rq:job:{id}"),
            "ended_at",
            "2026-11-28T10:00:00.000000Z",
        )
        .zadd("rq:finished:default", &id, now + 500)
        .query(&mut c)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        store.enqueue_with_dedupe(job(), key, 1).await.unwrap(),
        Enqueued::New(id.clone()),
        "past the window, the same event id is admitted again under the same job id"
    );
    let status: String = c.hget(format!("rq:job:{id}"), "status").unwrap();
    assert_eq!(status, "queued");
    let ended: Option<String> = c.hget(format!("rq:job:{id}"), "ended_at").unwrap();
    assert_eq!(ended, None, "the new run starts from a clean hash");
    let finished: Option<f64> = c.zscore("rq:finished:default", &id).unwrap();
    assert_eq!(
        finished, None,
        "the new run is not also counted as finished"
    );
    let len: usize = c.llen("rq:queue:default").unwrap();
    assert_eq!(len, 1);
}

#[tokio::test]
async fn distinct_events_and_bad_keys() {
    let t = db();
    let store = t.store();
    let a = store
        .enqueue_with_dedupe(job(), "twilio:CA1:completed", 60)
        .await
        .unwrap();
    let b = store
        .enqueue_with_dedupe(job(), "twilio:CA1:ringing", 60)
        .await
        .unwrap();
    assert!(!a.is_duplicate() && !b.is_duplicate());
    assert_ne!(a.job_id(), b.job_id());
    assert!(store.enqueue_with_dedupe(job(), "", 60).await.is_err());
    assert!(store.enqueue_with_dedupe(job(), "k", 0).await.is_err());
    let len: usize = t.connection().llen("rq:queue:default").unwrap();
    assert_eq!(len, 2);
}

/// A de-dupe lock ends with its job: deleting the job releases it, and a job whose wait TTL ran
/// out before it started leaves the event admissible again (it was never processed); a job
/// that did start stays a duplicate even once its hash is gone (it was processed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: three lives of one de-dupe lock (deleted job, expired wait, started job) on the
// same key.
async fn a_lock_ends_with_its_job() {
    use prosaas::jobs::{Deleted, JobOptions};
    let t = db();
    let store = t.store();
    let mut c = t.connection();

    let first = store
        .enqueue_with_dedupe(job(), "webhook:baileys:DEL-1", 600)
        .await
        .unwrap();
    assert!(!first.is_duplicate());
    assert_eq!(
        store.admin().delete_job(first.job_id()).await.unwrap(),
        Deleted::Deleted
    );
    let again = store
        .enqueue_with_dedupe(job(), "webhook:baileys:DEL-1", 600)
        .await
        .unwrap();
    assert!(!again.is_duplicate(), "deleting the job released its lock");

    let waits_1s = || {
        job().with_options(JobOptions {
            ttl: Some(1),
            ..Default::default()
        })
    };
    let expiring = store
        .enqueue_with_dedupe(waits_1s(), "webhook:baileys:TTL-1", 600)
        .await
        .unwrap();
    assert!(!expiring.is_duplicate());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let exists: bool = c.exists(format!("rq:job:{}", expiring.job_id())).unwrap();
    assert!(
        !exists,
        "the wait TTL expired the job before any worker took it"
    );
    let readmitted = store
        .enqueue_with_dedupe(waits_1s(), "webhook:baileys:TTL-1", 600)
        .await
        .unwrap();
    assert!(
        !readmitted.is_duplicate(),
        "an event never processed is admitted again"
    );
    let queued: Vec<String> = c.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(
        queued.iter().filter(|id| *id == expiring.job_id()).count(),
        1,
        "the expired id is not left in the queue beside the new one"
    );

    // Started, then its hash gone (result_ttl 0 deletes it on success): still a duplicate.
    let w = crate::support::registered_worker(&store, "dedupe-w", &["default"]).await;
    let _: () = c.del("rq:queue:default").unwrap();
    let _: () = c.rpush("rq:queue:default", readmitted.job_id()).unwrap();
    let claimed = store
        .workers()
        .claim(&w, 1, Duration::from_secs(60), 1)
        .await
        .unwrap()
        .jobs;
    assert_eq!(claimed.len(), 1);
    let _: () = c.del(format!("rq:job:{}", readmitted.job_id())).unwrap();
    let later = store
        .enqueue_with_dedupe(waits_1s(), "webhook:baileys:TTL-1", 600)
        .await
        .unwrap();
    assert!(later.is_duplicate(), "a started event stays processed");
}
