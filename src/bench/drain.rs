//! Drain: a filled queue emptied by one in-process worker, at each concurrency of a sweep; each
//! plain run is followed by the same drain of a fair queue whose jobs belong to 100 tenants
//! (every claim then walks the lanes), with its rate against the plain one.

use std::time::Duration;

use serde_json::json;

use super::load::{fill, until_finished, worker};
use super::measure::Meter;
use super::{BenchArgs, Figure, QUEUE};
use crate::jobs::{FairQueue, JobStore};
use crate::settings::Settings;

/// Tenants of the fair runs.
const TENANTS: usize = 100;

pub(super) async fn run(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let sweep = a
        .concurrency
        .map_or_else(|| vec![1, 16, 64, 256], |c| vec![c]);
    // The same Redis, seen by a store that knows the bench queue is fair.
    let mut fair_config = settings.store_config().clone();
    fair_config
        .fair_queues
        .insert(QUEUE.into(), FairQueue::default());
    let fair = JobStore::connect(&fair_config)?;
    for (run, c) in sweep.into_iter().enumerate() {
        let plain = drain_once(a.jobs, store, store, settings, (c, 2 * run), 0).await?;
        let mut figure =
            drain_once(a.jobs, store, &fair, settings, (c, 2 * run + 1), TENANTS).await?;
        figure.extra.insert(
            "rate_vs_plain".into(),
            json!((figure.per_sec / plain.per_sec * 100.0).round() / 100.0),
        );
        figures.push(plain);
        figures.push(figure);
    }
    Ok(figures)
}

/// One drain of `n` jobs: filled through `through` (plain or fair) with `tenants` tenants,
/// drained by one worker of concurrency `c` that sees the queue as `through` does, measured on
/// `store`.
async fn drain_once(
    n: usize,
    store: &JobStore,
    through: &JobStore,
    settings: &Settings,
    (c, run): (usize, usize),
    tenants: usize,
) -> anyhow::Result<Figure> {
    store.bench().delete_bench_keys(QUEUE).await?;
    fill(through, n, run, 1000, tenants).await?;
    let m = Meter::start(store).await?;
    let (stop, handle) = worker(through, settings, c)?;
    let polls = until_finished(store, n as u64, Duration::from_secs(600)).await?;
    let name = if tenants > 0 {
        format!("drain, fair queue of {tenants} tenants, one worker, concurrency {c}")
    } else {
        format!("drain, one worker, concurrency {c}")
    };
    let figure = m.figure(&name, n, polls).await?;
    stop.cancel();
    handle.await??;
    Ok(figure)
}
