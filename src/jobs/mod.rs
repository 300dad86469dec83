//! The jobs module: **the only code in prosaas that talks to Redis.**
//!
//! Everything else (roles, HTTP, the CLI) goes through [`JobStore`]. Its invariants:
//! - the Redis layout is Python RQ's (JSON serializer), built in [`keys`] and nowhere else;
//! - every multi-step change is one Lua script (`lua/*.lua`) or one `MULTI` with no reads, so a
//!   crash between two commands can never leave a job half-written or half-moved;
//! - one handle per process: a lazily connected, auto-reconnecting multiplexed connection, cheap to
//!   clone; blocking commands get connections of their own.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "this module is the Redis boundary that clippy.toml fences everything else from"
)]

mod admin;
mod audit;
mod bench;
mod call_status;
mod clock;
mod dedup;
mod dependencies;
mod diag;
mod error;
mod fleet;
mod job;
mod keys;
mod leader_lock;
mod listing;
mod ops;
mod prune;
mod queue;
mod redis_config;
mod scripts;
mod sentinel;
mod series;
mod sessions;
mod stats;
mod zlib;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use admin::{
    Admin, Canceled, DEPENDENTS_SHOWN, Deleted, JobDetail, JobResult, Linked, Recorded, Requeue,
    Stop,
};
pub use audit::{Audit, AuditedJob, Waiting};
pub use bench::{Bench, Footprint, RedisCounters};
pub use call_status::{CallState, CallStatus, CallUpdate, StreamClaim};
pub use dedup::{
    Enqueued, MAX_DEDUPE_TTL_SECS, generate_deterministic_job_id, job_id_for_dedupe_key,
};
pub use diag::Diag;
pub use error::JobError;
pub use fleet::{RunningJob, WorkerRow};
pub use job::{
    DEFAULT_TIMEOUT_SECS, DataProblem, JobCall, JobInfo, JobOptions, MAX_TTL_SECS, NewJob, TENANT,
    age_secs, check_job, is_valid_job_id, is_valid_queue_name, is_valid_tenant, parse_rq_timestamp,
    rq_timestamp,
};
pub use leader_lock::{Fired, LeaderLock, Leadership};
pub use listing::{FilteredPage, IdMatches, JobFilter, Listed, ListedJob, ListedPage, ListedState};
pub use ops::{
    Callback, Callbacks, Claim, ClaimedJob, CommandChannel, Deferred, Execution, Outcome,
    QueueWaker, RateBucket, Recovered, Repeat, Settled, Settlement, Tally, WAKER_BLOCK, Webhook,
    WorkerCommand, WorkerInfo, WorkerState, Workers,
};
pub use prune::{Prune, PrunePass, Pruned};
pub use redis_config::{Advice, RedisConfig};
pub use sentinel::{SentinelConfig, is_sentinel_url};
pub use series::{Minute, WAIT_BUCKETS_MS};
pub use sessions::Sessions;
pub use stats::{
    DEFERRED_CHECKED, MAX_LISTED_TENANTS, QueueListing, QueueStats, SchedulerHealth, Snapshot,
    Stats, Suspension, TenantRow, TenantStats,
};

use keys::Keys;

/// Declares a capability: a borrowed view of the store holding one caller's operations, so that
/// a subsystem's calls say which part of the store they use and the handle stays small.
macro_rules! capability {
    ($(#[$doc:meta])* $name:ident via $accessor:ident) => {
        $(#[$doc])*
        pub struct $name<'a> {
            store: &'a $crate::jobs::JobStore,
        }

        impl $crate::jobs::JobStore {
            #[doc = concat!("The [`", stringify!($name), "`] capability.")]
            pub fn $accessor(&self) -> $name<'_> {
                $name { store: self }
            }
        }

        // Visible to the whole jobs module: a capability's reads can live in the files of the
        // data they read (the series, the worker listing), not only where it is declared.
        #[allow(dead_code, reason = "not every capability reads the clock or the keys")]
        impl $name<'_> {
            pub(super) async fn conn(
                &self,
            ) -> Result<redis::aio::ConnectionManager, $crate::jobs::error::JobError> {
                self.store.conn().await
            }

            pub(super) fn keys(&self) -> &$crate::jobs::keys::Keys {
                &self.store.keys
            }

            pub(super) fn now(&self) -> chrono::DateTime<chrono::Utc> {
                self.store.now()
            }
        }
    };
}
use capability;

/// How to reach Redis. Built from the `[redis]` settings, once, when they load (the `Default`
/// exists for that: a `Settings` field skipped by serde and filled in after validation).
#[derive(Clone, Default)]
pub struct StoreConfig {
    /// `redis://`, `rediss://`, `redis+unix://`, or `redis+sentinel://` (then `sentinel`
    /// below is built from it unless given).
    pub url: String,
    /// Redis behind Sentinel; wins over `url`.
    pub sentinel: Option<SentinelConfig>,
    /// Replicas that must confirm an enqueue (`WAIT`) before it counts as done; 0: none.
    pub ack_replicas: u32,
    pub ack_timeout: Duration,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Queues whose jobs wait in per-tenant lanes (`[queues.<name>] fairness = "tenant"`).
    pub fair_queues: std::collections::BTreeMap<String, FairQueue>,
    /// Claims write RQ's `current_job` on the worker's registration (`worker.record_current_job`).
    pub record_current_job: bool,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords never reach a log line: the URL is redacted, Sentinel shown by its service.
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field(
                "sentinel",
                &self.sentinel.as_ref().map(|s| (&s.addrs, &s.master)),
            )
            .field("key_prefix", &self.key_prefix)
            .field("ack_replicas", &self.ack_replicas)
            .finish_non_exhaustive()
    }
}

/// How a fair queue shares its workers among tenants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FairQueue {
    /// The most jobs of one tenant that run at once across all workers; 0: no cap.
    pub tenant_concurrency: u32,
    /// Tenant → its share of turns (absent: 1).
    pub weights: std::collections::BTreeMap<String, u32>,
}

/// The process's handle on Redis. Cheap to clone: clones share one multiplexed connection.
#[derive(Clone)]
pub struct JobStore {
    /// The master: fixed, or followed through Sentinel. Behind `Arc`s, like the rest: the store
    /// is cloned per HTTP request (the app state) and per job.
    endpoint: Endpoint,
    /// `(replicas, timeout)` each acknowledged enqueue waits for; `None`: no waiting.
    ack: Option<(u32, Duration)>,
    keys: Keys,
    redacted_url: Arc<str>,
    clock: Arc<clock::RedisClock>,
    /// Claims write started-registry members as plain ids, RQ 1.x's format (see claim.lua).
    rq1_entries: Arc<std::sync::atomic::AtomicBool>,
    fair: Arc<std::collections::BTreeMap<String, FairQueue>>,
    record_current_job: bool,
}

#[derive(Clone)]
enum Endpoint {
    Fixed(Arc<sentinel::Target>),
    Sentinel(Arc<sentinel::Follower>),
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore")
            .field("url", &self.redacted_url)
            .finish_non_exhaustive()
    }
}

impl JobStore {
    /// Builds the handle without touching the network: the first command connects, and a lost
    /// connection is re-established by the next command. A process can therefore start while
    /// Redis is down and report itself unready until it returns.
    pub fn connect(config: &StoreConfig) -> Result<Self, JobError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            // Few, quick reconnect attempts per failure: a caller waiting on a dead Redis
            // should get an error in about a second, not after a long backoff ladder.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let endpoint = match sentinel_config(config)? {
            Some(s) => Endpoint::Sentinel(Arc::new(sentinel::Follower::new(
                s,
                manager_config,
                config.connect_timeout,
            ))),
            None => {
                open_client(&config.url)?;
                let addr = redact_url(&config.url);
                Endpoint::Fixed(Arc::new(sentinel::Target::open(
                    &config.url,
                    &addr,
                    &manager_config,
                )?))
            }
        };
        Ok(Self {
            endpoint,
            ack: (config.ack_replicas > 0).then_some((config.ack_replicas, config.ack_timeout)),
            keys: Keys::new(&config.key_prefix),
            redacted_url: redact_url(&config.url).into(),
            clock: Arc::new(clock::RedisClock::from_env()),
            rq1_entries: Arc::default(),
            fair: Arc::new(config.fair_queues.clone()),
            record_current_job: config.record_current_job,
        })
    }

    /// A new job's hash fields as every enqueue writes them (`ts`: [`rq_timestamp`] of now), with
    /// the `lane` field when it waits in a tenant lane; and that lane.
    #[expect(
        clippy::type_complexity,
        reason = "a pair every enqueue path destructures"
    )]
    pub(crate) fn new_job_fields<'j>(
        &self,
        job: &'j NewJob,
        ts: &'j str,
    ) -> Result<(Option<&'j str>, Vec<(&'static str, job::Field<'j>)>), JobError> {
        let lane = self.lane_of(job);
        let mut fields = job.hash_fields(ts)?;
        if let Some(tenant) = lane {
            fields.push(("lane", job::Field::Borrowed(tenant.as_bytes())));
        }
        Ok((lane, fields))
    }

    /// The lane a new job waits in: its tenant's, on a fair queue; `None` for the queue's list.
    fn lane_of<'j>(&self, job: &'j NewJob) -> Option<&'j str> {
        if self.fair.contains_key(&job.queue) {
            job.tenant()
        } else {
            None
        }
    }

    /// The fairness of a queue, when it is a fair one.
    pub(crate) fn fairness(&self, queue: &str) -> Option<&FairQueue> {
        self.fair.get(queue)
    }

    /// The master in use: fixed, or as Sentinel last named it (discovered on first use).
    async fn target(&self) -> Result<Arc<sentinel::Target>, JobError> {
        match &self.endpoint {
            Endpoint::Fixed(t) => Ok(t.clone()),
            Endpoint::Sentinel(f) => f.target().await,
        }
    }

    /// The shared connection to the master.
    pub(crate) async fn conn(&self) -> Result<ConnectionManager, JobError> {
        Ok(self.target().await?.conn.clone())
    }

    /// The connection for a write that `wait_cmd` will follow: one of the master's connections
    /// for acknowledged writes when `redis.ack_replicas` is set, else the shared one.
    pub(crate) async fn write_conn(&self) -> Result<ConnectionManager, JobError> {
        let target = self.target().await?;
        Ok(if self.ack.is_some() {
            target.acked_conn()
        } else {
            target.conn.clone()
        })
    }

    /// A client of the master, for connections of their own (blocking pops).
    pub(crate) async fn client(&self) -> Result<Arc<redis::Client>, JobError> {
        Ok(self.target().await?.client.clone())
    }

    /// Where the master is, for health and logs: the Sentinel-named address (`None` until
    /// found), or the configured URL, redacted.
    pub fn redis_master(&self) -> Option<String> {
        match &self.endpoint {
            Endpoint::Fixed(t) => Some(t.addr.to_string()),
            Endpoint::Sentinel(f) => f.master(),
        }
    }

    /// Master changes followed since this process started (always 0 without Sentinel).
    pub fn redis_failovers(&self) -> u64 {
        match &self.endpoint {
            Endpoint::Fixed(_) => 0,
            Endpoint::Sentinel(f) => f.failovers(),
        }
    }

    /// With `redis.ack_replicas`: the `WAIT` that makes a write acknowledged only once that
    /// many replicas hold it, so that it survives a failover, and how many it needs.
    pub(crate) fn wait_cmd(&self) -> Option<(u32, redis::Cmd)> {
        let (wanted, timeout) = self.ack?;
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(wanted).arg(
            u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        Some((wanted, cmd))
    }

    /// Now on Redis's clock (see [`clock`]): what every deadline, due time and age is computed
    /// from. This host's own clock until the first [`Self::sync_clock`].
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// [`Self::now`] as fractional Unix seconds.
    pub fn unix_now(&self) -> f64 {
        self.now().timestamp_micros() as f64 / 1e6
    }

    /// Whether the offset from Redis's clock has been measured.
    pub fn clock_synced(&self) -> bool {
        self.clock.is_synced()
    }

    /// Measures this process's offset from Redis's clock with one `TIME`; returns it in
    /// milliseconds (positive: Redis is ahead).
    pub async fn sync_clock(&self) -> Result<i64, JobError> {
        let mut conn = self.conn().await?;
        // The reading taken in the quickest of a few round trips: the offset is off by up to
        // half of it, and one slow trip (a busy runtime, a new connection) would put this
        // process's timestamps that much off those a worker's claim takes from Redis's clock
        // itself (claim.lua behind a wait).
        let mut best: Option<(
            i64,
            i64,
            chrono::DateTime<chrono::Utc>,
            chrono::DateTime<chrono::Utc>,
        )> = None;
        for _ in 0..CLOCK_SAMPLES {
            let sent = self.clock.host_now();
            let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
            let received = self.clock.host_now();
            if best.is_none_or(|(_, _, s, r)| received - sent < r - s) {
                best = Some((secs, micros, sent, received));
            }
        }
        let (secs, micros, sent, received) =
            best.ok_or_else(|| JobError::Invalid("no clock reading".into()))?;
        Ok(self.clock.record(secs, micros, sent, received) / 1000)
    }

    /// The Redis URL with any password replaced, safe to log.
    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// One `PING`, bounded by `within`.
    pub async fn ping(&self, within: Duration) -> Result<(), JobError> {
        bounded(within, async move {
            let mut conn = self.conn().await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            Ok(())
        })
        .await
    }
}

/// `TIME` readings per clock sync (the quickest is kept).
const CLOCK_SAMPLES: usize = 5;

/// Runs `fut` with a deadline, mapping the lapse to [`JobError::Timeout`].
pub(crate) async fn bounded<T>(
    within: Duration,
    fut: impl Future<Output = Result<T, JobError>>,
) -> Result<T, JobError> {
    tokio::time::timeout(within, fut)
        .await
        .unwrap_or(Err(JobError::Timeout(within)))
}

/// The Sentinel service `config` names, if any: given whole, or in a `redis+sentinel://` URL.
fn sentinel_config(config: &StoreConfig) -> Result<Option<SentinelConfig>, JobError> {
    let bad = |reason: String| JobError::BadUrl {
        url: redact_url(&config.url),
        reason,
    };
    let sentinel = match &config.sentinel {
        Some(s) => s.clone(),
        None if is_sentinel_url(&config.url) => {
            SentinelConfig::from_url(&config.url).map_err(bad)?
        }
        None => return Ok(None),
    };
    // The watcher picks sentinels by index, and a service needs a name.
    if sentinel.addrs.is_empty() || sentinel.master.is_empty() {
        return Err(bad(
            "a Sentinel service needs at least one sentinel and a master name".into(),
        ));
    }
    Ok(Some(sentinel))
}

fn open_client(url: &str) -> Result<redis::Client, JobError> {
    let bad = |reason: String| JobError::BadUrl {
        url: redact_url(url),
        reason,
    };
    let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err(bad(
            "expected redis://, rediss://, redis+unix://, redis+sentinel:// or rediss+sentinel:// (e.g. redis://127.0.0.1:6379/0)".into(),
        ));
    }
    redis::Client::open(url).map_err(|e| bad(e.to_string()))
}

/// Checks that `url` is a usable Redis URL without connecting.
pub fn validate_url(url: &str) -> Result<(), JobError> {
    if is_sentinel_url(url) {
        return SentinelConfig::from_url(url)
            .map(|_| ())
            .map_err(|reason| JobError::BadUrl {
                url: redact_url(url),
                reason,
            });
    }
    open_client(url).map(|_| ())
}

/// Replaces the password in a Redis URL so it can be logged or printed.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Asks the Redis server at `url` to shut down (saving its append-only file first). Used only
/// for the private `redis-server` that the `all` role starts for local development.
pub async fn shutdown_server(url: &str, within: Duration) -> Result<(), JobError> {
    let client = open_client(url)?;
    bounded(within, async move {
        let mut conn = client.get_multiplexed_async_connection().await?;
        // The server closes the connection instead of answering, so an I/O error is success.
        match redis::cmd("SHUTDOWN").query_async::<()>(&mut conn).await {
            Ok(()) => Ok(()),
            Err(e)
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("redis://user:secret@host:6379/2"),
            "redis://***@host:6379/2"
        );
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("rediss://:p@w@h/0"), "rediss://***@h/0");
    }

    #[test]
    fn a_sentinel_service_needs_sentinels_and_a_name() {
        let mut config = StoreConfig {
            url: String::new(),
            sentinel: SentinelConfig::from_url("redis+sentinel://h:26379/m").ok(),
            ack_replicas: 0,
            ack_timeout: Duration::from_millis(500),
            key_prefix: "rq".into(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            fair_queues: Default::default(),
            record_current_job: false,
        };
        assert!(JobStore::connect(&config).is_ok());
        if let Some(s) = config.sentinel.as_mut() {
            s.addrs.clear();
        }
        let e = JobStore::connect(&config).unwrap_err().to_string();
        assert!(e.contains("at least one sentinel"), "{e}");
    }

    #[test]
    fn url_validation_names_the_scheme() {
        assert!(validate_url("redis://127.0.0.1:6379/3").is_ok());
        assert!(validate_url("rediss://example.com:6380").is_ok());
        assert!(validate_url("redis+unix:///tmp/redis.sock").is_ok());
        let err = validate_url("http://x").unwrap_err().to_string();
        assert!(err.contains("expected redis://"), "{err}");
        assert!(validate_url("127.0.0.1:6379").is_err());
    }
}
