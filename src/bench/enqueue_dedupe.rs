//! De-duplicated enqueue: every key new, then every key a duplicate.

use anyhow::bail;

use super::load::{in_flight, job};
use super::measure::Meter;
use super::{BenchArgs, Figure};
use crate::jobs::JobStore;

pub(super) async fn run(a: &BenchArgs, store: &JobStore) -> anyhow::Result<Vec<Figure>> {
    let n = a.jobs;
    let mut figures = Vec::new();
    let c = a.concurrency.unwrap_or(64);
    for (label, pass) in [("all new keys", 0), ("all duplicate keys", 1)] {
        let m = Meter::start(store).await?;
        let s = store.clone();
        in_flight(n, c, move |i| {
            let s = s.clone();
            async move {
                let r = s
                    .enqueue_with_dedupe(job(i, 0), &format!("bench:event:{i}"), 600)
                    .await?;
                if r.is_duplicate() != (pass == 1) {
                    bail!("bench: unexpected de-dupe outcome for event {i}");
                }
                Ok(())
            }
        })
        .await?;
        figures.push(
            m.figure(&format!("{label}, single calls, {c} in flight"), n, 0)
                .await?,
        );
    }
    Ok(figures)
}
