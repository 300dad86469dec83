//! Fairness: tenant A's backlog is queued, one worker starts on it, then tenant B's jobs arrive
//! one every 10 ms. B's enqueue-to-start latency and the whole drain's rate, with the bench
//! queue fair (`fairness = "tenant"`) and plain.

use std::time::Duration;

use serde_json::{Map, json};

use super::load::{fill_with, tenant_job, until_finished, worker};
use super::measure::{Meter, enqueue_to_start_ms, insert_latency};
use super::{BenchArgs, Figure, QUEUE};
use crate::jobs::{FairQueue, JobStore, NewJob};
use crate::settings::Settings;

/// Tenant B's jobs, and the pause between two of them.
const TRICKLE: usize = 50;
const TRICKLE_EVERY: Duration = Duration::from_millis(10);
/// How long each job runs (`diag.sleep`).
const JOB_MS: u64 = 1;

fn job(run: usize, tenant: &str, i: usize) -> anyhow::Result<NewJob> {
    let mut kwargs = Map::new();
    kwargs.insert("ms".into(), json!(JOB_MS));
    tenant_job(&format!("{run}-{tenant}-{i}"), "diag.sleep", kwargs, tenant)
}

// Long on purpose: one scenario's sequence (backlog, worker, trickle, drain, percentiles), run
// twice, as a reader of BENCHMARKS.md follows it.
pub(super) async fn run(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Vec<Figure>> {
    let backlog = a.jobs;
    let c = a.concurrency.unwrap_or(16);
    let mut figures = Vec::new();
    for (run, fair) in [(0, true), (1, false)] {
        store.bench().delete_bench_keys(QUEUE).await?;
        // The same Redis, seen by a store that knows the bench queue's fairness.
        let mut config = settings.store_config().clone();
        if fair {
            config
                .fair_queues
                .insert(QUEUE.into(), FairQueue::default());
        }
        let s = JobStore::connect(&config)?;
        fill_with(&s, backlog, a.batch, move |i| job(run, "A", i)).await?;
        let m = Meter::start(store).await?;
        let (stop, handle) = worker(&s, settings, c)?;
        // B arrives once the worker is well into A's backlog.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut b_ids = Vec::with_capacity(TRICKLE);
        for i in 0..TRICKLE {
            b_ids.push(s.enqueue(job(run, "B", i)?).await?);
            tokio::time::sleep(TRICKLE_EVERY).await;
        }
        let total = backlog + TRICKLE;
        let polls = until_finished(store, total as u64, Duration::from_secs(900)).await?;
        let name = format!(
            "{} queue: tenant A {backlog} jobs queued, then tenant B {TRICKLE} (one per {} ms), {JOB_MS} ms each, concurrency {c}",
            if fair { "fair" } else { "plain" },
            TRICKLE_EVERY.as_millis()
        );
        let mut figure = m.figure(&name, total, polls).await?;
        stop.cancel();
        handle.await??;
        let lat = enqueue_to_start_ms(store, &b_ids).await?;
        insert_latency(&mut figure.extra, "tenant_b_enqueue_to_start_ms", &lat);
        figure
            .extra
            .insert("tenant_b_measured".into(), json!(lat.len()));
        figures.push(figure);
    }
    Ok(figures)
}
