//! Replicated schedulers as real processes: one leads, a killed or paused leader is replaced
//! within lock TTL + renew interval, and no slot is ever enqueued twice.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redis::Commands;

use crate::support::redis_server::TestDb;
use crate::support::{ProsaasProcess, TestRedis, db, eventually};

const TTL_MS: u64 = 1500;
const RENEW_MS: u64 = 500;
const TICK_MS: u64 = 200;
const BOOT: Duration = Duration::from_secs(20);

/// A config overlay: short lock timings and one entry firing every second onto `sched`.
fn config() -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        f.path(),
        format!(
            "[scheduler]\nlock_ttl_ms = {TTL_MS}\nrenew_interval_ms = {RENEW_MS}\ntick_interval_ms = {TICK_MS}\n\
             [[scheduler.entries]]\nname = \"tick\"\nevery = \"1s\"\nqueue = \"sched\"\njob_type = \"diag.noop\"\n"
        ),
    )
    .unwrap();
    f
}

fn scheduler(url: &str, config: &tempfile::NamedTempFile) -> ProsaasProcess {
    let path = config.path().display().to_string();
    let p = ProsaasProcess::start_args(
        &["--role", "scheduler", "--config", &path],
        &[("REDIS_URL", url)],
    );
    p.wait_for_log("scheduler standing by", BOOT);
    p
}

/// The slots enqueued on `sched`, checked: no job id twice, no slot twice. Sorted.
fn fired_slots(c: &mut redis::Connection) -> Vec<DateTime<Utc>> {
    let ids: Vec<String> = c.lrange("rq:queue:sched", 0, -1).unwrap();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "a job id was pushed twice");
    let mut slots: Vec<DateTime<Utc>> = ids
        .iter()
        .map(|id| {
            let meta: String = c.hget(format!("rq:job:{id}"), "meta").unwrap();
            let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
            DateTime::parse_from_rfc3339(meta["scheduled_for"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc)
        })
        .collect();
    slots.sort();
    let unique: BTreeSet<&DateTime<Utc>> = slots.iter().collect();
    assert_eq!(unique.len(), slots.len(), "a slot was enqueued twice");
    slots
}

/// The longest gap between consecutive fired slots must stay within the failover bound.
fn assert_gaps(slots: &[DateTime<Utc>], bound: Duration) {
    let worst = slots
        .windows(2)
        .map(|w| (w[1] - w[0]).to_std().unwrap())
        .max()
        .unwrap_or_default();
    assert!(
        worst <= bound,
        "a gap of {worst:?} between slots exceeds {bound:?}: {slots:?}"
    );
}

/// Slot period + lock TTL + renew interval + tick, plus scheduling slack on a busy machine.
fn gap_bound() -> Duration {
    Duration::from_millis(1000 + TTL_MS + RENEW_MS + TICK_MS + 800)
}

fn leader_of<'a>(t: &TestDb, procs: &'a [ProsaasProcess]) -> &'a ProsaasProcess {
    let holder: String = t.connection().get("prosaas:scheduler:lock").unwrap();
    procs
        .iter()
        .find(|p| p.logs().contains(&holder))
        .unwrap_or_else(|| panic!("no process holds {holder}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_ttl_plus_renew() {
    let t = db();
    let cfg = config();
    let first = scheduler(&t.url(), &cfg);
    first.wait_for_log("Lock acquired for cycle 1", BOOT);
    let second = scheduler(&t.url(), &cfg);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !second.logs().contains("Lock acquired"),
        "exactly one leads"
    );

    let store = t.store();
    let health = store.stats().scheduler_health().await.unwrap();
    assert!(health.lock_held);
    assert!(first.logs().contains(health.holder.as_deref().unwrap()));
    assert_eq!(health.cycle, Some(1));
    assert_eq!(health.entries[0]["name"], "tick");
    assert!(
        health.entries[0]["next_fire"].is_string() && health.entries[0]["last_fire"].is_string()
    );

    first.signal("KILL");
    let killed = Instant::now();
    second.wait_for_log("Lock acquired for cycle 2", Duration::from_secs(10));
    let takeover = killed.elapsed();
    let bound = Duration::from_millis(TTL_MS + RENEW_MS + 300);
    assert!(
        takeover <= bound,
        "takeover after {takeover:?}, bound {bound:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let slots = fired_slots(&mut t.connection());
    assert!(slots.len() >= 4, "{slots:?}");
    assert_gaps(&slots, gap_bound());
    eprintln!("standby took over {takeover:?} after the leader was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_wakes_up_as_a_standby_and_fires_nothing_twice() {
    let t = db();
    let cfg = config();
    let a = scheduler(&t.url(), &cfg);
    a.wait_for_log("Lock acquired for cycle 1", BOOT);
    let b = scheduler(&t.url(), &cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    a.signal("STOP");
    b.wait_for_log("Lock acquired for cycle 2", Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let before = a.logs().lines().count();
    a.signal("CONT");
    a.wait_for_log_after("Lost scheduler lock", before, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !a.logs()
            .lines()
            .skip(before)
            .any(|l| l.contains("Fired tick")),
        "the old leader fired after waking"
    );
    let slots = fired_slots(&mut t.connection());
    assert_gaps(&slots, gap_bound());
    assert!(slots.len() >= 6, "{slots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_restarted_at_random_for_a_minute() {
    let t = db();
    let cfg = config();
    let mut procs: Vec<ProsaasProcess> = (0..3).map(|_| scheduler(&t.url(), &cfg)).collect();
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut restarts = 0;
    while started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(rng.u64(1500..4000))).await;
        // Half the time hit the leader, so failover happens often; kill -9 or SIGTERM.
        let victim = if rng.bool() {
            let holder: Option<String> = t.connection().get("prosaas:scheduler:lock").unwrap();
            holder
                .and_then(|h| procs.iter().position(|p| p.logs().contains(&h)))
                .unwrap_or(0)
        } else {
            rng.usize(0..3)
        };
        let mut old = std::mem::replace(&mut procs[victim], scheduler(&t.url(), &cfg));
        old.signal(if rng.bool() { "KILL" } else { "TERM" });
        old.wait_exit(Duration::from_secs(10));
        restarts += 1;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let slots = fired_slots(&mut t.connection());
    assert_gaps(&slots, gap_bound());
    assert!(
        slots.len() >= 45,
        "only {} slots in a minute: {slots:?}",
        slots.len()
    );
    let leader = leader_of(&t, &procs);
    assert!(
        leader.logs().contains("Lock acquired"),
        "the lock holder is one of the running processes"
    );
    eprintln!(
        "{restarts} restarts in 60 s; {} slots fired, none twice",
        slots.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_comes_back_after_redis_restarts() {
    let mut redis = TestRedis::start();
    let cfg = config();
    let url = redis.url();
    let s = scheduler(&url, &cfg);
    s.wait_for_log("Lock acquired for cycle 1", BOOT);
    let before = s.logs().lines().count();
    redis.restart();
    // The restarted Redis is empty: the lock, the counter and the queue are gone. The cycle
    // counts on from what the scheduler saw: acquisitions never go backwards.
    s.wait_for_log_after("Lock acquired for cycle 2", before, Duration::from_secs(15));
    let mut c = redis.connection(0);
    let counter: u64 = c.get("prosaas:scheduler:cycle").unwrap();
    assert_eq!(counter, 2);
    eventually(
        "slots fired into the new Redis",
        Duration::from_secs(10),
        || {
            let n: usize = c.llen("rq:queue:sched").unwrap_or(0);
            async move { (n >= 2).then_some(()) }
        },
    )
    .await;
}
