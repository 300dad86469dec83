//! Rate limit: three in-process workers share one tenant's limit of 5 jobs/s while that tenant
//! has far more queued and another tenant's jobs arrive every 50 ms. Reports the limited
//! tenant's start rate over the run (from its jobs' own `started_at`) against the limit, and the
//! other tenant's enqueue-to-start latency. Promotion runs at `worker.promote_interval_ms`.

use std::time::{Duration, Instant};

use serde_json::{Map, json};

use super::load::{fill_with, limited_worker, maintenance, tenant_job};
use super::measure::{Meter, enqueue_to_start_ms, insert_latency};
use super::{BenchArgs, Figure, QUEUE};
use crate::jobs::{JobStore, NewJob, parse_rq_timestamp};
use crate::settings::{RateLimitSettings, Settings};
use crate::worker::limits::RateLimits;

const LIMIT_PER_SEC: f64 = 5.0;
const WORKERS: usize = 3;
const OTHER_EVERY: Duration = Duration::from_millis(50);

fn job(tenant: &str, i: usize) -> anyhow::Result<NewJob> {
    tenant_job(&format!("{tenant}-{i}"), "diag.noop", Map::new(), tenant)
}

// Long on purpose: one scenario's sequence (backlog, workers, paced other tenant, start times),
// as a reader of BENCHMARKS.md follows it.
pub(super) async fn run(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Figure> {
    let secs = a.duration.max(1);
    let c = a.concurrency.unwrap_or(4);
    let limits = RateLimits::from_settings(&[RateLimitSettings {
        name: format!("{QUEUE}-limit"),
        tenant: Some("A".into()),
        job_type: None,
        rate: format!("{LIMIT_PER_SEC}/s"),
        burst: 1,
    }]);
    // Twice what the limit lets start in the run: the tenant always has work waiting.
    let backlog = (LIMIT_PER_SEC as usize) * secs as usize * 2;
    fill_with(store, backlog, 500, |i| job("A", i)).await?;
    let m = Meter::start(store).await?;
    let mut workers = (0..WORKERS)
        .map(|_| limited_worker(store, settings, c, limits.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Deferred jobs come back through promotion, every worker.promote_interval_ms.
    workers.push(maintenance(store, settings));
    let started = Instant::now();
    let mut others = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        others.push(store.enqueue(job("B", others.len())?).await?);
        tokio::time::sleep(OTHER_EVERY).await;
    }
    // The other tenant's last jobs start at once; give them a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ids: Vec<String> = (0..backlog).map(|i| format!("bench-A-{i}")).collect();
    let stamps = store.bench().job_timestamps(&ids).await?;
    let mut starts: Vec<f64> = stamps
        .values()
        .filter_map(|(_, s)| parse_rq_timestamp(s.as_deref()?))
        .map(|t| t.timestamp_micros() as f64 / 1e6)
        .collect();
    starts.sort_by(f64::total_cmp);
    let first = starts.first().copied().unwrap_or(0.0);
    // Starts within `secs` of the first: the burst of 1 plus one per interval.
    let within = starts.iter().filter(|t| **t - first < secs as f64).count();
    let mut figure = m
        .figure(
            &format!(
                "tenant A limited to {LIMIT_PER_SEC}/s across {WORKERS} workers (concurrency {c}) for {secs} s, tenant B one job per {} ms",
                OTHER_EVERY.as_millis()
            ),
            within + others.len(),
            0,
        )
        .await?;
    for (stop, handle) in workers {
        stop.cancel();
        handle.await??;
    }
    let rate = within as f64 / secs as f64;
    figure
        .extra
        .insert("limited_starts_per_sec".into(), json!(rate));
    figure.extra.insert(
        "limited_vs_limit".into(),
        json!((rate / LIMIT_PER_SEC * 1000.0).round() / 1000.0),
    );
    figure.extra.insert("limited_starts".into(), json!(within));
    let lat = enqueue_to_start_ms(store, &others).await?;
    insert_latency(&mut figure.extra, "tenant_b_enqueue_to_start_ms", &lat);
    figure
        .extra
        .insert("tenant_b_measured".into(), json!(lat.len()));
    Ok(figure)
}
