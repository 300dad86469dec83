//! End to end: a producer and a worker at once.

use std::time::Duration;

use super::load::{in_flight, job, until_finished, worker};
use super::measure::Meter;
use super::{BenchArgs, Figure};
use crate::jobs::JobStore;
use crate::settings::Settings;

pub(super) async fn run(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Figure> {
    let n = a.jobs;
    let c = a.concurrency.unwrap_or(64);
    let m = Meter::start(store).await?;
    let (stop, handle) = worker(store, settings, c)?;
    let s = store.clone();
    in_flight(n, c, move |i| {
        let s = s.clone();
        async move { Ok(s.enqueue(job(i, 0)).await.map(|_| ())?) }
    })
    .await?;
    let polls = until_finished(store, n as u64, Duration::from_secs(600)).await?;
    let figure = m
        .figure(
            &format!("producer ({c} in flight) and worker (concurrency {c}) at once"),
            n,
            polls,
        )
        .await?;
    stop.cancel();
    handle.await??;
    Ok(figure)
}
