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
use crate::jobs::JobStore;

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

/// Every metric prosaas exports (the alert rules may name only these).
pub const ALL: [&str; 17] = [
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
];

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
        handle
    })
}

/// Refreshes the Redis-backed gauges and the live-call gauges, and renders the exposition text.
pub async fn render(store: &JobStore, queues: &[String], calls: CallsSnapshot) -> String {
    let handle = handle();
    metrics::gauge!(CALLS_ACTIVE).set(calls.active as f64);
    metrics::gauge!(CALLS_OLDEST_AGE).set(calls.oldest_secs as f64);
    match store.health_snapshot(queues, Duration::from_secs(2)).await {
        Ok((stats, scheduler)) => {
            metrics::gauge!(REDIS_UP).set(1.0);
            for (q, s) in stats {
                for (state, n) in [
                    ("queued", s.queued),
                    ("started", s.started),
                    ("finished", s.finished),
                    ("failed", s.failed),
                    ("scheduled", s.scheduled),
                    ("deferred", s.deferred),
                ] {
                    metrics::gauge!(QUEUE_JOBS, "queue" => q.clone(), "state" => state)
                        .set(n as f64);
                }
                metrics::gauge!(QUEUE_OLDEST_AGE, "queue" => q.clone())
                    .set(s.oldest_queued_secs.unwrap_or(0) as f64);
            }
            metrics::gauge!(SCHEDULER_LOCK_HELD).set(if scheduler.lock_held { 1.0 } else { 0.0 });
            if let Some(t) = scheduler
                .last_tick
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                metrics::gauge!(SCHEDULER_LAST_TICK).set(t.timestamp_millis() as f64 / 1000.0);
            }
        }
        Err(_) => metrics::gauge!(REDIS_UP).set(0.0),
    }
    handle.render()
}
