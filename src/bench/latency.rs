//! Latency: jobs enqueued at a fixed rate for a fixed time; enqueue-to-start percentiles from
//! the jobs' own RQ timestamps.

use std::time::Duration;

use serde_json::json;

use super::load::{job, until_finished, worker};
use super::measure::{Meter, enqueue_to_start_ms, insert_latency};
use super::{BenchArgs, Figure};
use crate::jobs::JobStore;
use crate::settings::Settings;

// Long on purpose: one scenario's sequence (paced producer, drain, percentiles), as a reader of
// BENCHMARKS.md follows it.
pub(super) async fn run(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Figure> {
    let c = a.concurrency.unwrap_or(64);
    let total = (a.rate * a.duration) as usize;
    let (stop, handle) = worker(store, settings, c)?;
    // Let the worker register and block before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = Meter::start(store).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let s = store.clone();
        sends.spawn(async move { s.enqueue(job(i, 0)).await.map(|_| ()) });
    }
    while let Some(r) = sends.join_next().await {
        r??;
    }
    let polls = until_finished(store, total as u64, Duration::from_secs(120)).await?;
    let mut figure = m
        .figure(
            &format!(
                "{} jobs/s for {} s, worker concurrency {c}",
                a.rate, a.duration
            ),
            total,
            polls,
        )
        .await?;
    stop.cancel();
    handle.await??;
    let ids: Vec<String> = (0..total).map(|i| format!("bench-0-{i}")).collect();
    let lat = enqueue_to_start_ms(store, &ids).await?;
    insert_latency(&mut figure.extra, "enqueue_to_start_ms", &lat);
    figure
        .extra
        .insert("measured_jobs".into(), json!(lat.len()));
    Ok(figure)
}
