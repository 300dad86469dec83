//! The executor: claims jobs, runs up to `concurrency` of them at once, heartbeats them, records
//! their outcomes, and on shutdown finishes or returns every job it holds.
//!
//! Tasks: the claim loop (`claimer.rs`, with one task per job whose outcome `outcome.rs`
//! decides), one waker per queue (a blocking pop for idle times), the heartbeat and the settler
//! (batches outcomes into one script call), here; what runs now is kept in `inflight.rs`.
//! Nothing is lost on a clean stop: a job either finishes within the grace period or goes back
//! to the head of its queue; ids the wakers moved aside go back too.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::claimer::{Claimer, JobEnv, ToSettle, waited_since_enqueue};
use super::config::{ExecutorConfig, choose_entry_format};
use super::handler::{HandlerContext, Registry};
use super::inflight::{Running, lock};
use super::outcome::execute;
use crate::backoff::Backoff;
use crate::jobs::{Execution, JobStore, Outcome, Settled, Settlement, Tally, WorkerInfo};

/// How often `started_entries = "auto"` looks again at the registered workers' RQ versions.
const ENTRY_FORMAT_CHECK: Duration = Duration::from_secs(60);
/// Most outcomes recorded in one script call.
const SETTLE_BATCH: usize = 256;

pub struct Executor {
    pub store: JobStore,
    pub info: WorkerInfo,
    pub registry: Arc<Registry>,
    pub config: ExecutorConfig,
    pub context: HandlerContext,
}

impl Executor {
    /// Runs until `shutdown`: registers, claims while there are free slots, runs each job in
    /// its own task, then drains (within the grace), returns what it could not finish and
    /// unregisters. An error names a helper task that failed.
    // Long on purpose: the executor's life in order (start the helper tasks, claim, drain, stop
    // them), each step a call.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            store,
            info,
            registry,
            config,
            context: ctx,
        } = self;
        let info = Arc::new(info);
        if !register(&store, &info, &config, &shutdown).await {
            return Ok(());
        }
        tracing::info!(worker = %info.name, queues = ?info.queues, concurrency = config.concurrency, "worker registered");
        choose_entry_format(&store, config.started_entries).await;

        let running: Running = Arc::default();
        let (settle_tx, settle_rx) = mpsc::unbounded_channel::<ToSettle>();
        let settler = tokio::spawn(settle_loop(store.clone(), info.clone(), settle_rx));
        let background = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat_loop(
            store.clone(),
            info.clone(),
            running.clone(),
            config.clone(),
            background.clone(),
        ));
        let commands = tokio::spawn(super::commands::command_loop(
            store.clone(),
            info.clone(),
            (running.clone(), config.process_shutdown.clone()),
            background.clone(),
        ));
        let claimer = Claimer {
            store: &store,
            info: &info,
            config: &config,
            running: &running,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            wanted: watch::channel(false).0,
            paused: watch::channel(Vec::new()).0,
            wake: Arc::new(Notify::new()),
            fused: fused_queue(&store, &info),
        };
        // One waker per queue list, and one per fair queue's lane bell; none for a single plain
        // queue, which the claim loop waits on itself.
        let wakers: Vec<_> = info
            .queues
            .iter()
            .filter(|q| claimer.fused.as_ref() != Some(*q))
            .flat_map(|q| {
                let lanes = store.workers().has_lanes(q);
                [(q, false), (q, true)]
                    .into_iter()
                    .filter(move |&(_, bell)| !bell || lanes)
            })
            .map(|(q, bell)| {
                tokio::spawn(waker_loop(
                    store.clone(),
                    info.clone(),
                    (q.clone(), bell),
                    claimer.wake.clone(),
                    (claimer.wanted.subscribe(), claimer.paused.subscribe()),
                    shutdown.clone(),
                ))
            })
            .collect();
        let env = JobEnv {
            ctx,
            registry,
            policies: config.policies.clone(),
            settle_tx,
            running: running.clone(),
            abort: CancellationToken::new(),
        };
        let jobs = TaskTracker::new();
        let claimed = claimer.run(&shutdown, &jobs, &env).await;

        // Stop claiming: wakers stop with the shutdown token; ids they moved aside go back below.
        for w in wakers {
            let _ = w.await;
        }
        drain(&jobs, config.shutdown_grace, &env.abort).await;
        drop(env);
        let settled = settler.await;
        background.cancel();
        let beat = heartbeat.await;
        let _ = commands.await;
        leave(&store, &info).await;
        claimed?;
        settled.context("the settler task failed; outcomes may be unrecorded")?;
        beat.context("the heartbeat task failed")?;
        Ok(())
    }

    /// One deterministic step, for tests and tools: registers, claims up to `max` jobs, runs
    /// them to their outcomes and records them in one settle call, with no background task.
    /// Returns each claimed job's id and what became of it.
    pub async fn run_once(&self, max: usize) -> anyhow::Result<Vec<(String, Settled, Outcome)>> {
        let workers = self.store.workers();
        workers
            .register_worker(&self.info, self.config.heartbeat_ttl)
            .await?;
        // State decisions are numbered so that the newest wins; without the claim loop's
        // counter, the clock's milliseconds order them.
        let seq = (self.store.unix_now() * 1000.0) as u64;
        let claimed = workers
            .claim(&self.info, max, self.config.heartbeat_ttl, seq)
            .await?
            .jobs;
        let claimed = self
            .config
            .limits
            .admit(&self.store, &self.info, &self.registry, claimed)
            .await;
        let runs = claimed.iter().map(|job| async {
            let started_at = self.store.unix_now();
            let (outcome, _) = execute(
                job,
                self.context.clone(),
                &self.registry,
                &self.config.policies,
            )
            .await;
            Settlement {
                execution: job.execution.clone(),
                started_at,
                ended_at: self.store.unix_now(),
                waited: waited_since_enqueue(job, started_at),
                outcome,
            }
        });
        let batch = futures_util::future::join_all(runs).await;
        let settled = workers.settle(&self.info, &batch, None).await?;
        Ok(batch
            .into_iter()
            .zip(settled)
            .map(|(s, r)| (s.execution.id, r, s.outcome))
            .collect())
    }
}

/// Waits for the jobs in flight for up to `grace`; then tells the rest to stop, which returns
/// them to their queues.
async fn drain(jobs: &TaskTracker, grace: Duration, abort: &CancellationToken) {
    jobs.close();
    let in_flight = jobs.len();
    if in_flight > 0 {
        tracing::info!(in_flight, ?grace, "waiting for jobs in flight");
    }
    if tokio::time::timeout(grace, jobs.wait()).await.is_err() {
        tracing::warn!(
            still_running = jobs.len(),
            "grace period over; returning unfinished jobs to their queues"
        );
        abort.cancel();
        jobs.wait().await;
    }
}

/// Returns the inbox's unclaimed ids to their queues and unregisters; a failure of either is
/// only logged, since recovery and the registration's TTL do the same later.
async fn leave(store: &JobStore, info: &WorkerInfo) {
    match store
        .workers()
        .release_inbox(&info.name, &info.queues[0], true)
        .await
    {
        Ok(Some(n)) if n > 0 => {
            tracing::info!(returned = n, "returned unclaimed ids to their queues")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not return the inbox; recovery will"),
    }
    if let Err(e) = store.workers().unregister_worker(info).await {
        tracing::warn!(error = %e, "could not unregister; the registration expires by itself");
    }
    tracing::info!(worker = %info.name, "worker stopped");
}

/// Registers, retrying while Redis is unreachable. `false` if shutdown came first.
async fn register(
    store: &JobStore,
    info: &WorkerInfo,
    config: &ExecutorConfig,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match store
            .workers()
            .register_worker(info, config.heartbeat_ttl)
            .await
        {
            Ok(()) => return true,
            Err(e) => tracing::warn!(error = %e, "cannot register the worker yet; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = backoff.sleep() => {}
        }
    }
}

/// The worker's queue when it has exactly one and that one has no tenant lanes: the claim loop
/// then waits on it with its claim sent behind the wait (claimer.rs, `Claimer::fused`).
fn fused_queue(store: &JobStore, info: &WorkerInfo) -> Option<String> {
    match info.queues.as_slice() {
        [q] if !store.workers().has_lanes(q) => Some(q.clone()),
        _ => None,
    }
}

/// Records outcomes, batching whatever is ready into one script call. Retries while Redis is
/// unreachable: an outcome is never dropped (re-applying one is a no-op: it finds its
/// started-registry entry gone and reports a conflict).
async fn settle_loop(
    store: JobStore,
    info: Arc<WorkerInfo>,
    mut rx: mpsc::UnboundedReceiver<ToSettle>,
) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    let mut waiting = Vec::new();
    let mut tally = Tally::default();
    loop {
        // Counts held back from earlier calls are written when due, even if no outcome comes.
        let next = match tally.due_at() {
            Some(due) => tokio::select! {
                next = rx.recv() => next,
                () = tokio::time::sleep_until(due.into()) => {
                    write_counts(&store, &info, &mut tally).await;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = next else { break };
        let mut take = |(settlement, recorded): ToSettle, batch: &mut Vec<Settlement>| {
            if let Some(tx) = recorded {
                waiting.push((batch.len(), tx));
            }
            batch.push(settlement);
        };
        take(first, &mut batch);
        while batch.len() < SETTLE_BATCH {
            match rx.try_recv() {
                Ok(s) => take(s, &mut batch),
                Err(_) => break,
            }
        }
        record(&store, &info, &batch, &mut waiting, &mut tally).await;
        batch.clear();
    }
    // Every job task has ended: what the counts still hold goes in before the worker leaves.
    if tally.due_at().is_some() {
        write_counts(&store, &info, &mut tally).await;
    }
}

/// Records one batch, retrying until Redis takes it; tells the job tasks that wait for it
/// whether their outcome was recorded.
async fn record(
    store: &JobStore,
    info: &WorkerInfo,
    batch: &[Settlement],
    waiting: &mut Vec<(usize, oneshot::Sender<Settled>)>,
    tally: &mut Tally,
) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        // No state with the outcomes: the claim that took jobs writes "busy", and the claim
        // loop "idle" once nothing has run for a moment.
        match store
            .workers()
            .settle_counting(info, batch, None, tally)
            .await
        {
            Ok(results) => {
                for (i, tx) in waiting.drain(..) {
                    let _ = tx.send(results.get(i).copied().unwrap_or(Settled::Conflict));
                }
                for (s, r) in batch.iter().zip(results) {
                    if r == Settled::Conflict {
                        tracing::warn!(
                            job_id = %s.execution.id,
                            "outcome not recorded: the job was taken away meanwhile (recovered as abandoned or failed by a cleanup)"
                        );
                    }
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, outcomes = batch.len(), "cannot record outcomes yet; retrying");
                backoff.sleep().await;
            }
        }
    }
}

/// Writes the counts the settler holds (an empty settle call); on failure they stay held and
/// are tried again a period later.
async fn write_counts(store: &JobStore, info: &WorkerInfo, tally: &mut Tally) {
    if let Err(e) = store
        .workers()
        .settle_counting(info, &[], None, tally)
        .await
    {
        tracing::debug!(error = %e, "cannot write the worker's counts yet");
        tally.postpone();
    }
}

async fn heartbeat_loop(
    store: JobStore,
    info: Arc<WorkerInfo>,
    running: Running,
    config: ExecutorConfig,
    stop: CancellationToken,
) {
    // After a failure the next try comes soon, not a whole interval later: once Redis is back,
    // the jobs' deadlines must be renewed before any worker's recovery looks at them (it waits a
    // whole heartbeat TTL of reachability first).
    let retry =
        (config.heartbeat_interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut wait = config.heartbeat_interval;
    // The claim loop chose the format at registration.
    let mut format_checked = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let executions: Vec<Execution> = lock(&running).executions.values().cloned().collect();
        wait = match store
            .workers()
            .heartbeat(&info, &executions, config.heartbeat_ttl)
            .await
        {
            Ok(Some(_)) => {
                // Reading every registration is O(workers); once a minute is soon enough.
                if format_checked.elapsed() >= ENTRY_FORMAT_CHECK {
                    format_checked = tokio::time::Instant::now();
                    choose_entry_format(&store, config.started_entries).await;
                }
                config.heartbeat_interval
            }
            Ok(None) => {
                // The registration expired (an outage longer than its TTL): register whole
                // again, as at startup, then renew the jobs right away.
                tracing::warn!("the worker's registration had expired; registering again");
                lock(&running).forget_written();
                match store
                    .workers()
                    .register_worker(&info, config.heartbeat_ttl)
                    .await
                {
                    Ok(()) => Duration::ZERO,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register the worker again yet");
                        retry
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                retry
            }
        };
    }
}

/// While the executor waits for work and its queue is not paused, blocks on one queue (moving
/// an arriving id into the worker's inbox) or on its lanes' bell, then wakes the executor.
async fn waker_loop(
    store: JobStore,
    info: Arc<WorkerInfo>,
    (queue, bell): (String, bool),
    wake: Arc<Notify>,
    (mut wanted, mut paused): (watch::Receiver<bool>, watch::Receiver<Vec<String>>),
    shutdown: CancellationToken,
) {
    let mut waker = None;
    loop {
        while !*wanted.borrow_and_update() || paused.borrow_and_update().contains(&queue) {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = wanted.changed() => if changed.is_err() { return },
                changed = paused.changed() => if changed.is_err() { return },
            }
        }
        let w = match &mut waker {
            Some(w) => w,
            None => match store.workers().waker(&info, &queue, bell).await {
                Ok(w) => waker.insert(w),
                Err(e) => {
                    tracing::debug!(error = %e, queue, "waker cannot connect; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let got = tokio::select! {
            () = shutdown.cancelled() => return,
            got = w.wait() => got,
        };
        match got {
            Ok(true) => wake.notify_one(),
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = %e, queue, "waker connection lost; reconnecting");
                waker = None;
            }
        }
    }
}
