//! Load for the scenarios: bench jobs (`diag.noop`, ids `bench-<run>-<i>`), producers with a
//! fixed number of calls in flight, an in-process worker, and the wait for a drain to finish.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;

use super::QUEUE;
use crate::jobs::{JobOptions, JobStore, NewJob, WorkerInfo};
use crate::settings::Settings;
use crate::worker::config::ExecutorConfig;
use crate::worker::executor::Executor;
use crate::worker::handler::HandlerContext;
use crate::worker::handler::RecordingAccess;
use crate::worker::http_target::Delivery;
use crate::worker::limits::RateLimits;

/// Bench workers started by this process, for their names.
static WORKERS: AtomicUsize = AtomicUsize::new(0);

pub(super) fn job(i: usize, run: usize) -> NewJob {
    let mut args = Map::new();
    args.insert("i".into(), json!(i));
    NewJob::new(QUEUE, "diag.noop", args).with_options(JobOptions {
        job_id: Some(format!("bench-{run}-{i}")),
        ..Default::default()
    })
}

/// Runs `jobs` calls of `f` with `concurrency` in flight.
pub(super) async fn in_flight<F, Fut>(jobs: usize, concurrency: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, f) = (next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return Ok::<(), anyhow::Error>(());
                }
                f(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Batches in flight at once: enough that building the next batch overlaps Redis applying the
/// last one, as a producer with more than one batch to send would do.
pub(super) const BATCHES_IN_FLIGHT: usize = 4;

/// Enqueues `jobs` bench jobs in batches; with `tenants` > 0, job `i` belongs to tenant
/// `t<i % tenants>`.
pub(super) async fn fill(
    store: &JobStore,
    jobs: usize,
    run: usize,
    batch: usize,
    tenants: usize,
) -> anyhow::Result<()> {
    fill_with(store, jobs, batch, move |i| {
        let mut j = job(i, run);
        if tenants > 0 {
            j.set_tenant(&format!("t{}", i % tenants))?;
        }
        Ok(j)
    })
    .await
}

/// Enqueues the jobs `make(0..jobs)` in batches of `batch`, [`BATCHES_IN_FLIGHT`] at once.
pub(super) async fn fill_with<F>(
    store: &JobStore,
    jobs: usize,
    batch: usize,
    make: F,
) -> anyhow::Result<()>
where
    F: Fn(usize) -> anyhow::Result<NewJob> + Send + Sync + 'static,
{
    let batch = batch.max(1);
    let s = store.clone();
    let make = Arc::new(make);
    in_flight(jobs.div_ceil(batch), BATCHES_IN_FLIGHT, move |b| {
        let (s, make) = (s.clone(), make.clone());
        async move {
            let chunk = (b * batch..((b + 1) * batch).min(jobs))
                .map(|i| make(i))
                .collect::<anyhow::Result<Vec<_>>>()?;
            s.enqueue_many(&chunk).await?;
            Ok(())
        }
    })
    .await
}

/// A bench job of `tenant`, with the id `bench-<name>`.
pub(super) fn tenant_job(
    name: &str,
    job_type: &str,
    kwargs: Map<String, serde_json::Value>,
    tenant: &str,
) -> anyhow::Result<NewJob> {
    let mut job = NewJob::new(QUEUE, job_type, kwargs).with_options(JobOptions {
        job_id: Some(format!("bench-{name}")),
        ..Default::default()
    });
    job.set_tenant(tenant)?;
    Ok(job)
}

/// An in-process worker on the bench queue, running `diag.noop`.
pub(super) fn worker(
    store: &JobStore,
    settings: &Settings,
    concurrency: usize,
) -> anyhow::Result<(
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    limited_worker(store, settings, concurrency, RateLimits::default())
}

/// An in-process worker on the bench queue that applies `limits` (never the configured ones:
/// a bench job must not be slowed by an operator's limits). Each has a name of its own, so
/// several can run at once.
pub(super) fn limited_worker(
    store: &JobStore,
    settings: &Settings,
    concurrency: usize,
    limits: RateLimits,
) -> anyhow::Result<(
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let mut w = settings.worker.clone();
    w.concurrency = NonZeroUsize::new(concurrency).unwrap_or(NonZeroUsize::MIN);
    w.queues = vec![QUEUE.to_owned()];
    let executor = Executor {
        store: store.clone(),
        info: WorkerInfo {
            name: format!(
                "bench-{}-{concurrency}-{}",
                std::process::id(),
                WORKERS.fetch_add(1, Ordering::Relaxed)
            ),
            queues: w.queues.clone(),
            pid: std::process::id(),
            hostname: crate::identity::hostname(),
        },
        registry: Arc::new(crate::handlers::registry(&w)),
        config: ExecutorConfig {
            limits: Arc::new(limits),
            ..ExecutorConfig::from_settings(&w)
        },
        context: HandlerContext {
            jobs: store.clone(),
            delivery: Arc::new(Delivery::new(&w.http_targets)?),
            recordings: Arc::new(RecordingAccess::local(std::env::temp_dir())),
        },
    };
    let stop = CancellationToken::new();
    let handle = tokio::spawn(executor.run(stop.clone()));
    Ok((stop, handle))
}

/// The maintenance loop on the bench queue (promotion of due scheduled jobs, recovery), as a
/// worker process runs it beside its executor.
pub(super) fn maintenance(
    store: &JobStore,
    settings: &Settings,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let mut w = settings.worker.clone();
    w.queues = vec![QUEUE.to_owned()];
    let stop = CancellationToken::new();
    let handle = tokio::spawn(crate::worker::maintenance::run(
        store.clone(),
        format!("maintenance.bench-{}", std::process::id()),
        w.clone(),
        Arc::new(crate::handlers::registry(&w)),
        stop.clone(),
    ));
    (stop, handle)
}

/// Waits until `target` jobs have finished; returns how many polls it took.
pub(super) async fn until_finished(
    store: &JobStore,
    target: u64,
    within: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + within;
    let mut polls = 0;
    loop {
        polls += 1;
        if store.bench().finished_count(QUEUE).await? >= target {
            return Ok(polls);
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {target} jobs finished within {within:?}",
                store.bench().finished_count(QUEUE).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
