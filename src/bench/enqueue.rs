//! Enqueue throughput: single calls with a number in flight, then `enqueue_many` batches, and
//! last the floor of a single call: a bare `PING` through the same connection, as many in flight.

use super::load::{BATCHES_IN_FLIGHT, fill, in_flight, job};
use super::measure::Meter;
use super::{BenchArgs, Figure, QUEUE};
use crate::jobs::JobStore;
use std::time::Duration;

pub(super) async fn run(a: &BenchArgs, store: &JobStore) -> anyhow::Result<Vec<Figure>> {
    let n = a.jobs;
    let mut figures = Vec::new();
    let c = a.concurrency.unwrap_or(64);
    let m = Meter::start(store).await?;
    let s = store.clone();
    in_flight(n, c, move |i| {
        let s = s.clone();
        async move { Ok(s.enqueue(job(i, 0)).await.map(|_| ())?) }
    })
    .await?;
    figures.push(
        m.figure(&format!("single calls, {c} in flight"), n, 0)
            .await?,
    );
    store.bench().delete_bench_keys(QUEUE).await?;
    let m = Meter::start(store).await?;
    fill(store, n, 1, a.batch, 0).await?;
    figures.push(
        m.figure(
            &format!(
                "enqueue_many, batches of {}, {BATCHES_IN_FLIGHT} in flight",
                a.batch
            ),
            n,
            0,
        )
        .await?,
    );
    let m = Meter::start(store).await?;
    let s = store.clone();
    in_flight(n, c, move |_| {
        let s = s.clone();
        async move { Ok(s.ping(Duration::from_secs(5)).await?) }
    })
    .await?;
    figures.push(
        m.figure(
            &format!("PING, {c} in flight (one round trip, nothing written)"),
            n,
            0,
        )
        .await?,
    );
    Ok(figures)
}
