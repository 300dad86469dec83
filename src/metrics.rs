//! Prometheus metrics: one recorder per process, rendered at `GET /metrics` on every role.
//!
//! Counters and histograms are recorded where things happen (HTTP middleware, ingress, worker,
//! scheduler). Queue and scheduler gauges are read from Redis at scrape time (one health
//! snapshot per scrape), so every process reports the same cluster-wide numbers and none has to
//! poll in the background.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::calls_stream::registry::CallsSnapshot;
use crate::jobs::{JobStore, Snapshot};

pub const JOBS_ENQUEUED: &str = "prosaas_jobs_enqueued_total";
pub const JOBS_DEDUPLICATED: &str = "prosaas_jobs_deduplicated_total";
pub const JOBS_PROCESSED: &str = "prosaas_jobs_processed_total";
pub const JOB_DURATION: &str = "prosaas_job_duration_seconds";
pub const JOB_START_LATENCY: &str = "prosaas_job_start_latency_seconds";
pub const HTTP_REQUESTS: &str = "prosaas_http_requests_total";
pub const HTTP_DURATION: &str = "prosaas_http_request_duration_seconds";
pub const QUEUE_JOBS: &str = "prosaas_queue_jobs";
pub const QUEUE_OLDEST_AGE: &str = "prosaas_queue_oldest_job_age_seconds";
pub const SCHEDULER_LEADER: &str = "prosaas_scheduler_leader";
pub const SCHEDULER_LOCK_HELD: &str = "prosaas_scheduler_lock_held";
pub const SCHEDULER_LAST_TICK: &str = "prosaas_scheduler_last_tick_timestamp_seconds";
pub const SCHEDULER_SKIPPED_SLOTS: &str = "prosaas_scheduler_skipped_slots_total";
pub const REDIS_UP: &str = "prosaas_redis_up";
pub const CALLS_ACTIVE: &str = "prosaas_calls_active";
pub const CALLS_OLDEST_AGE: &str = "prosaas_calls_oldest_age_seconds";
pub const CALL_FRAME_SECONDS: &str = "prosaas_call_frame_seconds";
pub const HTTP_CONNECTIONS_OPEN: &str = "prosaas_http_connections_open";
pub const HTTP_CONNECTIONS_REFUSED: &str = "prosaas_http_connections_refused_total";
pub const REDIS_MASTER: &str = "prosaas_redis_master";
pub const REDIS_FAILOVERS: &str = "prosaas_redis_failovers_total";
pub const TENANT_JOBS: &str = "prosaas_tenant_jobs";
pub const JOBS_RATE_LIMITED: &str = "prosaas_jobs_rate_limited_total";
pub const TENANT_OLDEST_AGE: &str = "prosaas_tenant_oldest_job_age_seconds";
pub const CALL_FRAMES_DROPPED: &str = "prosaas_calls_frames_dropped_total";
pub const CALL_STREAMS_REFUSED: &str = "prosaas_calls_streams_refused_total";
pub const RECORDINGS_FREE_BYTES: &str = "prosaas_recordings_free_bytes";
pub const BUILD_INFO: &str = "prosaas_build_info";
pub const WORKERS_SUSPENDED: &str = "prosaas_workers_suspended";
pub const QUEUE_OLDEST_DEFERRED: &str = "prosaas_queue_oldest_deferred_age_seconds";
pub const QUEUE_STRANDED: &str = "prosaas_queue_stranded_jobs";
pub const QUEUE_PAUSED: &str = "prosaas_queue_paused";
pub const CALLBACKS_UNRESOLVED: &str = "prosaas_callbacks_unresolved_total";

/// Every metric prosaas exports (the alert rules may name only these).
pub const ALL: [&str; 33] = [
    JOBS_ENQUEUED,
    JOBS_DEDUPLICATED,
    JOBS_PROCESSED,
    JOB_DURATION,
    JOB_START_LATENCY,
    HTTP_REQUESTS,
    HTTP_DURATION,
    QUEUE_JOBS,
    QUEUE_OLDEST_AGE,
    SCHEDULER_LEADER,
    SCHEDULER_LOCK_HELD,
    SCHEDULER_LAST_TICK,
    SCHEDULER_SKIPPED_SLOTS,
    REDIS_UP,
    CALLS_ACTIVE,
    CALLS_OLDEST_AGE,
    CALL_FRAME_SECONDS,
    HTTP_CONNECTIONS_OPEN,
    HTTP_CONNECTIONS_REFUSED,
    REDIS_MASTER,
    REDIS_FAILOVERS,
    TENANT_JOBS,
    TENANT_OLDEST_AGE,
    JOBS_RATE_LIMITED,
    CALL_FRAMES_DROPPED,
    CALL_STREAMS_REFUSED,
    RECORDINGS_FREE_BYTES,
    BUILD_INFO,
    WORKERS_SUSPENDED,
    QUEUE_OLDEST_DEFERRED,
    QUEUE_STRANDED,
    QUEUE_PAUSED,
    CALLBACKS_UNRESOLVED,
];

/// Each metric's `# HELP` text, in the order of [`ALL`].
const HELP: [&str; 33] = [
    "Jobs enqueued, by source and job type.",
    "Events refused as duplicates of one already admitted, by source.",
    "Jobs run to an outcome, by queue, job type and outcome.",
    "Time a job's handler ran, in seconds.",
    "Time from enqueue to a worker starting the job, in seconds.",
    "HTTP requests answered, by route and status.",
    "Time to answer an HTTP request, in seconds, by route.",
    "Jobs in each queue's states, read from Redis at scrape time.",
    "Age of each queue's oldest queued job, in seconds.",
    "1 while this process leads the scheduler.",
    "1 while some scheduler holds the leader lock.",
    "Unix time of the scheduler's last tick, in seconds.",
    "Schedule slots skipped (missed while no leader could fire them).",
    "1 when Redis answered this scrape, else 0.",
    "Live calls on this process.",
    "Age of this process's oldest live call, in seconds.",
    "Time to handle one Media Streams frame, in seconds.",
    "HTTP connections open, by listener.",
    "HTTP connections closed at accept because the listener's connection cap was reached.",
    "1 for the Redis master this process sends commands to, 0 for one it left (label addr: host:port behind Sentinel, else the configured URL without its password).",
    "Redis master changes this process followed (Sentinel failovers) since it started.",
    "Jobs of the busiest tenants of each fair queue (at most 10 per queue, by queued + running), by state, read from Redis at scrape time.",
    "Age of the oldest queued job of a fair queue's busiest tenants and of its longest-waiting tenant, in seconds.",
    "Claimed jobs a rate limit deferred to the scheduled registry, by queue and limit.",
    "Media Streams frames dropped unrecorded, by reason (timestamp_lead: stamped further ahead of the stream's elapsed time than calls.max_timestamp_lead_ms).",
    "Media streams refused, by reason: at the upgrade (unsigned, bad_signature, not_configured, busy, disk_low) or at their start (token_missing, token_malformed, token_expired, token_mismatch, live, finalized, no_start: none within 10 s).",
    "Free bytes on the recordings directory's file system, as this calls process last measured them (every second).",
    "1, labelled with the version and commit this process runs (two label sets across a fleet mid-deploy).",
    "1 while workers are suspended (rq:suspended exists: `rq suspend`, `prosaas jobs suspend`), read from Redis at scrape time.",
    "Time the longest-deferred job of each queue has waited for its dependencies, in seconds.",
    "Deferred jobs of each queue none of whose parents can still end (gone, canceled, stopped, failed without allow_dependency_failures): nothing will run them. Counted among the 20 oldest deferrals.",
    "1 while the queue is paused (`prosaas jobs pause`): no prosaas worker starts its jobs.",
    "RQ callbacks (on_success, on_failure, on_stopped) skipped because no handler answers their name, by name.",
];

/// Distinct `job_type` label values a process exports; later ones are counted as `other`.
/// Job types come from clients (the enqueue API, Python RQ): each new value would be a new
/// series in memory and in Prometheus.
const MAX_JOB_TYPE_LABELS: usize = 200;

/// The `job_type` label for `job_type`: itself while the set of seen types is small, else
/// `other`.
pub fn job_type_label(job_type: &str) -> String {
    static SEEN: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::LazyLock::new(Default::default);
    // A poisoned lock only means a panic mid-insert elsewhere; the set is still whole.
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.contains(job_type) {
        return job_type.to_owned();
    }
    if seen.len() < MAX_JOB_TYPE_LABELS {
        seen.insert(job_type.to_owned());
        return job_type.to_owned();
    }
    "other".to_owned()
}

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        // Only one recorder can be global; a second prosaas in one process (tests) shares it.
        let _ = metrics::set_global_recorder(recorder);
        for (name, help) in ALL.into_iter().zip(HELP) {
            describe(name, help);
        }
        metrics::gauge!(BUILD_INFO, "version" => crate::version::VERSION, "commit" => crate::version::COMMIT)
            .set(1.0);
        handle
    })
}

fn describe(name: &'static str, help: &'static str) {
    let histogram = [
        JOB_DURATION,
        JOB_START_LATENCY,
        HTTP_DURATION,
        CALL_FRAME_SECONDS,
    ];
    if histogram.contains(&name) {
        metrics::describe_histogram!(name, help);
    } else if name.ends_with("_total") {
        metrics::describe_counter!(name, help);
    } else {
        metrics::describe_gauge!(name, help);
    }
}

/// Folds recorded histogram samples into their buckets every few seconds until `stop`. The
/// recorder keeps each sample until then: a process nobody scrapes would grow by every job.
pub async fn upkeep(stop: tokio_util::sync::CancellationToken) {
    let handle = handle();
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// The master in use as a labelled gauge; the one left at a failover drops to 0 (one series
/// per master this process has used: a handful over its life).
fn record_master(store: &JobStore) {
    static LAST: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    metrics::counter!(REDIS_FAILOVERS).absolute(store.redis_failovers());
    let Some(addr) = store.redis_master() else {
        return;
    };
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.as_deref() != Some(addr.as_str()) {
        if let Some(old) = last.take() {
            metrics::gauge!(REDIS_MASTER, "addr" => old).set(0.0);
        }
        metrics::gauge!(REDIS_MASTER, "addr" => addr.clone()).set(1.0);
        *last = Some(addr);
    }
}

/// The gauges read from Redis at scrape time; the fair queues' tenant lines go to `tenants`.
fn record_snapshot(snapshot: Snapshot, tenants: &mut (String, String)) {
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    metrics::gauge!(REDIS_UP).set(1.0);
    metrics::gauge!(WORKERS_SUSPENDED).set(flag(snapshot.suspension.is_some()));
    for (q, s) in snapshot.queues {
        for (state, n) in [
            ("queued", s.queued),
            ("started", s.started),
            ("finished", s.finished),
            ("failed", s.failed),
            ("scheduled", s.scheduled),
            ("deferred", s.deferred),
        ] {
            metrics::gauge!(QUEUE_JOBS, "queue" => q.clone(), "state" => state).set(n as f64);
        }
        metrics::gauge!(QUEUE_OLDEST_AGE, "queue" => q.clone())
            .set(s.oldest_queued_secs.unwrap_or(0) as f64);
        metrics::gauge!(QUEUE_OLDEST_DEFERRED, "queue" => q.clone())
            .set(s.oldest_deferred_secs.unwrap_or(0) as f64);
        metrics::gauge!(QUEUE_STRANDED, "queue" => q.clone()).set(s.stranded as f64);
        metrics::gauge!(QUEUE_PAUSED, "queue" => q.clone()).set(flag(s.paused));
        if let Some(t) = &s.tenants {
            tenant_series(tenants, &q, t);
        }
    }
    let scheduler = snapshot.scheduler;
    metrics::gauge!(SCHEDULER_LOCK_HELD).set(flag(scheduler.lock_held));
    if let Some(t) = scheduler
        .last_tick
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        metrics::gauge!(SCHEDULER_LAST_TICK).set(t.timestamp_millis() as f64 / 1000.0);
    }
}

/// Refreshes the Redis-backed gauges and the live-call gauges, and renders the exposition text.
pub async fn render(store: &JobStore, queues: &[String], calls: CallsSnapshot) -> String {
    let handle = handle();
    metrics::gauge!(CALLS_ACTIVE).set(calls.active as f64);
    metrics::gauge!(CALLS_OLDEST_AGE).set(calls.oldest_secs as f64);
    record_master(store);
    // Tenant series are written here, not recorded: the exporter keeps every label set it has
    // seen, and the busiest tenants change, so recorded gauges would grow with every tenant
    // that was ever busy. Rendered from this scrape's snapshot, the set stays bounded.
    let mut tenants = (String::new(), String::new());
    // Bounded well inside a scrape timeout: a stalled Redis reports prosaas_redis_up 0 quickly.
    match store
        .stats()
        .health_snapshot(queues, Duration::from_millis(750))
        .await
    {
        Ok(snapshot) => record_snapshot(snapshot, &mut tenants),
        Err(_) => metrics::gauge!(REDIS_UP).set(0.0),
    }
    let mut text = handle.render();
    for (name, lines) in [(TENANT_JOBS, &tenants.0), (TENANT_OLDEST_AGE, &tenants.1)] {
        if !lines.is_empty() {
            let help = HELP[ALL.iter().position(|n| *n == name).unwrap_or(0)];
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{lines}"
            ));
        }
    }
    text
}

/// One fair queue's tenant series (jobs, ages): each busiest tenant's queued and running jobs
/// and oldest job's age, and the longest-waiting tenant's age (which the alert rule watches).
fn tenant_series(out: &mut (String, String), queue: &str, t: &crate::jobs::TenantStats) {
    use std::fmt::Write;
    let q = label(queue);
    let mut aged = std::collections::BTreeMap::new();
    for row in &t.busiest {
        let tenant = label(&row.tenant);
        for (state, n) in [("queued", row.queued), ("running", row.running)] {
            let _ = writeln!(
                out.0,
                "{TENANT_JOBS}{{queue=\"{q}\",tenant=\"{tenant}\",state=\"{state}\"}} {n}"
            );
        }
        if let Some(age) = row.oldest_queued_secs {
            aged.insert(row.tenant.clone(), age);
        }
    }
    if let (Some(tenant), Some(age)) = (&t.oldest_tenant, t.oldest_queued_secs) {
        aged.insert(tenant.clone(), age);
    }
    for (tenant, age) in aged {
        let tenant = label(&tenant);
        let _ = writeln!(
            out.1,
            "{TENANT_OLDEST_AGE}{{queue=\"{q}\",tenant=\"{tenant}\"}} {age}"
        );
    }
}

/// A label value as the text format escapes it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
