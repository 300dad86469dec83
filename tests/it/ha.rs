//! Redis behind Sentinel (issue #18): under webhook load, with a worker draining and two
//! schedulers contending, the master is killed (and later failed over gracefully); every role
//! follows the new master without a restart, and with `redis.ack_replicas = 1` every webhook
//! answered 200 has its job, which ends finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::client::TestApi;
use crate::support::redis_server::TestDb;
use crate::support::sentinel::Sentinels;
use crate::support::{ProsaasProcess, eventually};

const BOOT: Duration = Duration::from_secs(20);
/// Master death to every role ready again: Sentinel's down-after (1 s here) and election, the
/// store's watcher (0.25 s), with room for a loaded 2-core machine.
const READY_WITHIN: Duration = Duration::from_secs(20);

fn webhook(id: &str) -> Value {
    json!({"tenantId": "1", "payload": {"messages": [{"key": {"id": id,
        "remoteJid": "972500000000@s.whatsapp.net", "fromMe": false},
        "message": {"conversation": "hello"}, "messageTimestamp": 1732800000}]}})
}

fn scheduler_config() -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        f.path(),
        "[scheduler]\nlock_ttl_ms = 3000\nrenew_interval_ms = 500\ntick_interval_ms = 200\n\
         [[scheduler.entries]]\nname = \"ha-tick\"\nevery = \"1s\"\nqueue = \"default\"\njob_type = \"diag.count\"\n",
    )
    .unwrap();
    f
}

/// The roles, all on the Sentinel URL.
struct Fleet {
    api: ProsaasProcess,
    others: Vec<ProsaasProcess>,
    _config: tempfile::NamedTempFile,
}

fn fleet(url: &str, ack_replicas: &str) -> Fleet {
    let env = [
        ("REDIS_URL", url),
        ("PROSAAS__REDIS__ACK_REPLICAS", ack_replicas),
        ("PROSAAS__REDIS__CONNECT_TIMEOUT_MS", "500"),
        ("PROSAAS__REDIS__RESPONSE_TIMEOUT_MS", "1500"),
        ("PROSAAS__WORKER__HEARTBEAT_INTERVAL_MS", "500"),
        ("PROSAAS__WORKER__HEARTBEAT_TTL_MS", "3000"),
        ("PROSAAS__WORKER__MAINTENANCE_INTERVAL_MS", "500"),
    ];
    let api = ProsaasProcess::start("api", &env);
    api.wait_for_log("API mode", BOOT);
    let worker = ProsaasProcess::start("worker", &env);
    worker.wait_for_log("worker registered", BOOT);
    let config = scheduler_config();
    let path = config.path().display().to_string();
    let mut others = vec![worker];
    for _ in 0..2 {
        let s = ProsaasProcess::start_args(&["--role", "scheduler", "--config", &path], &env);
        s.wait_for_log("scheduler standing by", BOOT);
        others.push(s);
    }
    Fleet {
        api,
        others,
        _config: config,
    }
}

/// Posts webhooks with unique ids until `stop`; returns the job ids of those answered 200.
async fn load(api: TestApi, prefix: &'static str, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let (status, body) = api.webhook(&webhook(&format!("{prefix}-{i}"))).await;
        if status == 200 {
            let id = body["jobs"][0]["job_id"].as_str().unwrap().to_owned();
            acknowledged.push(id);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    acknowledged
}

async fn all_ready(fleet: &Fleet, since: Instant) {
    for p in std::iter::once(&fleet.api).chain(&fleet.others) {
        let api = TestApi::new(p);
        eventually(
            "every role ready on the new master",
            READY_WITHIN,
            || async { (api.status("/readyz").await == 200).then_some(()) },
        )
        .await;
    }
    let took = since.elapsed();
    assert!(took < READY_WITHIN, "ready again after {took:?}");
    eprintln!(
        "every role ready {:.1} s after the master died",
        took.as_secs_f64()
    );
}

/// Runs the load through one failover (`kill -9` of the master, or a graceful one) and returns
/// the acknowledged job ids and how long the roles took to be ready.
async fn through_failover(
    sentinels: &mut Sentinels,
    fleet: &Fleet,
    prefix: &'static str,
    kill: bool,
) -> Vec<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(load(TestApi::new(&fleet.api), prefix, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old = sentinels.master_port();
    let at = Instant::now();
    if kill {
        sentinels.kill_master();
        // Until Sentinel promotes a replica there is no master: not ready.
        let api = TestApi::new(&fleet.api);
        eventually(
            "the api unready without a master",
            Duration::from_secs(2),
            || async { (api.status("/readyz").await == 503).then_some(()) },
        )
        .await;
    } else {
        sentinels.failover();
    }
    let sentinels_ref = &*sentinels;
    let new = tokio::task::block_in_place(|| sentinels_ref.wait_for_new_master(old, READY_WITHIN));
    eprintln!(
        "{}: master {old} -> {new} in {:.1} s",
        if kill { "kill -9" } else { "SENTINEL FAILOVER" },
        at.elapsed().as_secs_f64()
    );
    all_ready(fleet, at).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: webhooks are sent across two failovers of the same Sentinel set; every
// acknowledged one is then looked for.
async fn failovers_lose_no_acknowledged_webhook_and_every_role_follows() {
    let mut sentinels = Sentinels::start(2);
    let url = sentinels.url();
    let fleet = fleet(&url, "1");
    let store = TestDb::store_for(&url);

    let mut acknowledged = through_failover(&mut sentinels, &fleet, "killed", true).await;
    acknowledged.extend(through_failover(&mut sentinels, &fleet, "graceful", false).await);
    assert!(
        acknowledged.len() > 100,
        "the load ran: {}",
        acknowledged.len()
    );

    // Every acknowledged event has its job, and it ends finished; nothing is left anywhere else.
    for id in &acknowledged {
        eventually(
            &format!("job {id} finished"),
            Duration::from_secs(60),
            || async {
                let job = store.fetch_job(id).await.ok()??;
                (job.status == "finished").then_some(())
            },
        )
        .await;
    }
    eventually("the queues drained", Duration::from_secs(30), || async {
        let q = crate::support::default_queue(&store).await?;
        (q.queued == 0 && q.started == 0 && q.failed == 0).then_some(())
    })
    .await;
    // No slot was fired twice: a second firing would run the slot's job again with its attempts
    // starting over, so its executions would outnumber its attempts (a re-run after a lost
    // outcome counts an attempt too, which at-least-once allows).
    let executions = store.diag().execution_counts().await.unwrap();
    assert!(
        executions.len() >= 5,
        "slots fired throughout: {executions:?}"
    );
    for (id, count) in &executions {
        let attempts = store
            .admin()
            .job_detail(id)
            .await
            .unwrap()
            .map_or(0, |d| d.attempts);
        assert!(
            u64::from(attempts) >= *count,
            "slot job {id} ran {count} times in {attempts} attempts: fired twice"
        );
    }
    // The scheduler lock lives on the new master, and its leader ticks there.
    let health = store.stats().scheduler_health().await.unwrap();
    assert!(health.lock_held, "{health:?}");
    let (_, body) = TestApi::new(&fleet.api).get("/api/jobs/health").await;
    // Two failovers were asked for; on a loaded machine the sentinels can make one more of their
    // own (a new master briefly judged down): the api follows each switch they made.
    let switches = sentinels.switches();
    assert!(switches >= 2, "{}", sentinels.logs());
    assert_eq!(body["redis"]["failovers"], switches, "{body}");
    assert_eq!(
        body["redis"]["master"],
        format!("127.0.0.1:{}", sentinels.master_port()),
        "{body}"
    );
    let metrics = TestApi::new(&fleet.api).metrics().await.unwrap();
    assert!(
        metrics.contains(&format!("prosaas_redis_failovers_total {switches}")),
        "{metrics}"
    );
    assert!(
        fleet
            .api
            .logs()
            .contains("Redis failover: following the new master")
    );
}

/// Without `ack_replicas` the newest acknowledged writes can vanish with the master: measured
/// and reported (the README's figure), not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_acknowledgement_a_killed_master_can_lose_events_reported() {
    let mut sentinels = Sentinels::start(1);
    let url = sentinels.url();
    let fleet = fleet(&url, "0");
    let store = TestDb::store_for(&url);
    let acknowledged = through_failover(&mut sentinels, &fleet, "unacked", true).await;
    let mut lost = 0;
    for id in &acknowledged {
        if store.fetch_job(id).await.unwrap().is_none() {
            lost += 1;
        }
    }
    eprintln!(
        "ack_replicas = 0: {lost} of {} acknowledged webhooks lost through a kill -9 of the master",
        acknowledged.len()
    );
}

/// Passwords on both layers: the data nodes' from the URL, the sentinels' from settings. The
/// store finds the master, follows a failover, and what it wrote before is there after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_passwords_follows_a_failover() {
    use prosaas::jobs::{JobStore, NewJob, SentinelConfig, StoreConfig};
    // Two replicas: after the failover one is left to confirm writes (`ack_replicas = 1`).
    let mut sentinels = Sentinels::start_with_passwords(2, "data-pw", "sentinel-pw");
    let mut sentinel = SentinelConfig::from_url(&sentinels.url()).unwrap();
    let config = |sentinel: SentinelConfig| StoreConfig {
        url: String::new(),
        sentinel: Some(sentinel),
        ack_replicas: 1,
        ack_timeout: Duration::from_secs(1),
        key_prefix: "rq".into(),
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_millis(1500),
        fair_queues: Default::default(),
        record_current_job: false,
    };
    // Without the sentinels' password, no master can be found.
    let refused = JobStore::connect(&config(sentinel.clone())).unwrap();
    let e = refused
        .ping(Duration::from_secs(3))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no Redis master"), "{e}");

    sentinel.sentinel_password = Some("sentinel-pw".into());
    let store = JobStore::connect(&config(sentinel)).unwrap();
    let job = || NewJob::new("default", "diag.noop", Default::default());
    let before = store.enqueue(job()).await.unwrap();
    let old = sentinels.master_port();
    assert_eq!(store.redis_master(), Some(format!("127.0.0.1:{old}")));
    sentinels.kill_master();
    let new = tokio::task::block_in_place(|| sentinels.wait_for_new_master(old, READY_WITHIN));
    let after = eventually("an enqueue on the new master", READY_WITHIN, || async {
        store.enqueue(job()).await.ok()
    })
    .await;
    assert_eq!(store.redis_master(), Some(format!("127.0.0.1:{new}")));
    assert_eq!(store.redis_failovers(), 1);
    for id in [&before, &after] {
        assert!(
            store.fetch_job(id).await.unwrap().is_some(),
            "{id} survived"
        );
    }
}
