//! Drain: a filled queue emptied by one in-process worker, at each concurrency of a sweep.

use std::time::Duration;

use super::load::{fill, until_finished, worker};
use super::measure::Meter;
use super::{BenchArgs, Figure, QUEUE};
use crate::jobs::JobStore;
use crate::settings::Settings;

pub(super) async fn run(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Vec<Figure>> {
    let n = a.jobs;
    let mut figures = Vec::new();
    let sweep = a
        .concurrency
        .map_or_else(|| vec![1, 16, 64, 256], |c| vec![c]);
    for (run, c) in sweep.into_iter().enumerate() {
        store.bench().delete_bench_keys(QUEUE).await?;
        fill(store, n, run, 1000).await?;
        let m = Meter::start(store).await?;
        let (stop, handle) = worker(store, settings, c)?;
        let polls = until_finished(store, n as u64, Duration::from_secs(600)).await?;
        let figure = m
            .figure(&format!("drain, one worker, concurrency {c}"), n, polls)
            .await?;
        stop.cancel();
        handle.await??;
        figures.push(figure);
    }
    Ok(figures)
}
