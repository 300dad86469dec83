//! The executor: claims jobs, runs up to `concurrency` of them at once, heartbeats them, records
//! their outcomes, and on shutdown finishes or returns every job it holds.
//!
//! Tasks: the claim loop ([`Claimer`]), one waker per queue (a blocking pop for idle times),
//! the heartbeat, the settler (batches outcomes into one script call), and one task per job.
//! Nothing is lost on a clean stop: a job either finishes within the grace period or goes back
//! to the head of its queue; ids the wakers moved aside go back too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handler::{Handler, HandlerContext, HandlerError, JobInput, Registry};
use super::limits::RateLimits;
use super::policy::Policies;
use crate::backoff::Backoff;
use crate::jobs::parse_rq_timestamp;
use crate::jobs::{
    ClaimedJob, Execution, JobStore, Outcome, Settled, Settlement, WorkerInfo, WorkerState,
};
use crate::metrics as m;
use crate::settings::WorkerSettings;

/// How long an idle executor waits before claiming again even without a wake-up (a safety net
/// for a waker whose connection broke).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long a worker must have had nothing to do before `rq info` is told it is idle.
const IDLE_MARK_AFTER: Duration = Duration::from_millis(50);
/// How often `started_entries = "auto"` looks again at the registered workers' RQ versions.
const ENTRY_FORMAT_CHECK: Duration = Duration::from_secs(60);
/// Most outcomes recorded in one script call.
const SETTLE_BATCH: usize = 256;

/// Everything the executor needs, built once by the worker role.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    pub concurrency: usize,
    pub heartbeat_interval: Duration,
    pub heartbeat_ttl: Duration,
    pub shutdown_grace: Duration,
    pub policies: Arc<Policies>,
    /// `worker.started_entries`: "auto", "rq2" or "rq1".
    pub started_entries: StartedEntries,
    /// `[[rate_limits]]`, applied to every claim.
    pub limits: Arc<RateLimits>,
}

/// The started-registry entry format claims write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartedEntries {
    /// RQ 1.x's plain ids while a registered Python worker reports RQ 1.x, else RQ 2's.
    Auto,
    /// `<id>:<execution id>` (RQ 2 and 3).
    Rq2,
    /// Plain ids (RQ 1.x reads them; executions cannot be told apart, see settle.lua).
    Rq1,
}

/// Sets the store's entry format; in `Auto`, from the registered workers' RQ versions.
async fn choose_entry_format(store: &JobStore, format: StartedEntries) {
    let plain = match format {
        StartedEntries::Rq1 => true,
        StartedEntries::Rq2 => false,
        StartedEntries::Auto => match store.workers().rq1_workers_registered().await {
            Ok(found) => found,
            // Keep the current choice until Redis answers.
            Err(_) => return,
        },
    };
    if plain != store.workers().rq1_entries() {
        tracing::info!(
            plain_ids = plain,
            "started-registry entries: {}",
            if plain {
                "plain job ids, as RQ 1.x reads them (a Python RQ 1.x worker is registered)"
            } else {
                "<id>:<execution id>, as RQ 2 and 3 write them"
            }
        );
        store.workers().set_rq1_entries(plain);
    }
}

impl ExecutorConfig {
    pub fn from_settings(w: &WorkerSettings) -> Self {
        Self {
            concurrency: w.concurrency,
            heartbeat_interval: Duration::from_millis(w.heartbeat_interval_ms),
            heartbeat_ttl: Duration::from_millis(w.heartbeat_ttl_ms),
            shutdown_grace: Duration::from_millis(w.shutdown_grace_ms),
            policies: Arc::new(Policies::from_settings(w)),
            started_entries: match w.started_entries.as_str() {
                "rq1" => StartedEntries::Rq1,
                "rq2" => StartedEntries::Rq2,
                _ => StartedEntries::Auto,
            },
            limits: Arc::default(),
        }
    }
}

/// The executions this worker runs, and the numbering of its state decisions.
///
/// `rq info` shows a worker busy or idle. Several tasks decide that (the claim loop, the
/// settler) and their Redis calls can arrive in any order, so each decision is numbered here,
/// under this lock, and the scripts keep the newest.
#[derive(Default)]
struct Inflight {
    executions: HashMap<String, Execution>,
    /// A claim is on its way: its jobs are not in `executions` yet, so "idle" would be wrong.
    claiming: bool,
    seq: u64,
    last: Option<WorkerState>,
}

impl Inflight {
    fn decide(&mut self, state: WorkerState) -> (WorkerState, u64) {
        self.seq += 1;
        self.last = Some(state);
        (state, self.seq)
    }

    /// Before sending a claim: the number its "busy" will carry.
    fn begin_claim(&mut self) -> u64 {
        self.claiming = true;
        self.decide(WorkerState::Busy).1
    }

    /// After a claim: records its jobs. `true` when it got none, nothing runs and "idle" is not
    /// recorded yet; the caller then records it (via [`Self::idle_now`]) if the worker stays idle.
    /// Nothing is decided here: a decision that is never written would block the later one.
    fn end_claim(&mut self, claimed: &[ClaimedJob]) -> bool {
        self.claiming = false;
        for job in claimed {
            self.executions
                .insert(job.execution.member(), job.execution.clone());
        }
        claimed.is_empty() && self.executions.is_empty() && self.last != Some(WorkerState::Idle)
    }

    /// "Idle", numbered, if nothing runs and no claim is under way.
    fn idle_now(&mut self) -> Option<(WorkerState, u64)> {
        (self.executions.is_empty() && !self.claiming && self.last != Some(WorkerState::Idle))
            .then(|| self.decide(WorkerState::Idle))
    }

    /// For a settle call: the state after these outcomes, unless a claim is under way.
    fn after_settle(&mut self) -> Option<(WorkerState, u64)> {
        if self.claiming {
            return None;
        }
        let state = if self.executions.is_empty() {
            WorkerState::Idle
        } else {
            WorkerState::Busy
        };
        Some(self.decide(state))
    }
}

type Running = Arc<Mutex<Inflight>>;

fn lock(r: &Running) -> std::sync::MutexGuard<'_, Inflight> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct Executor {
    pub store: JobStore,
    pub info: WorkerInfo,
    pub registry: Arc<Registry>,
    pub config: ExecutorConfig,
    pub context: HandlerContext,
}

/// What every job task of one executor shares: how to run a job, where its outcome goes, and
/// the signal that returns unfinished jobs at the end of the shutdown grace.
#[derive(Clone)]
struct JobEnv {
    ctx: HandlerContext,
    registry: Arc<Registry>,
    policies: Arc<Policies>,
    settle_tx: mpsc::UnboundedSender<Settlement>,
    running: Running,
    abort: CancellationToken,
}

/// The claim loop's view of the executor: the worker it claims for and what it signals.
struct Claimer<'a> {
    store: &'a JobStore,
    info: &'a WorkerInfo,
    config: &'a ExecutorConfig,
    running: &'a Running,
    slots: Arc<Semaphore>,
    /// Wakers block on the queues only while this is `true` (the executor waits for work).
    wanted: watch::Sender<bool>,
    wake: Arc<Notify>,
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
        let (settle_tx, settle_rx) = mpsc::unbounded_channel::<Settlement>();
        let settler = tokio::spawn(settle_loop(
            store.clone(),
            info.clone(),
            running.clone(),
            settle_rx,
        ));
        let background = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat_loop(
            store.clone(),
            info.clone(),
            running.clone(),
            config.clone(),
            background.clone(),
        ));
        let claimer = Claimer {
            store: &store,
            info: &info,
            config: &config,
            running: &running,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            wanted: watch::channel(false).0,
            wake: Arc::new(Notify::new()),
        };
        // One waker per queue list, and one per fair queue's lane bell.
        let wakers: Vec<_> = info
            .queues
            .iter()
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
                    claimer.wanted.subscribe(),
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
            .await?;
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

impl Claimer<'_> {
    /// Claims while slots are free and spawns a task per job, until `shutdown`.
    async fn run(
        &self,
        shutdown: &CancellationToken,
        jobs: &TaskTracker,
        env: &JobEnv,
    ) -> anyhow::Result<()> {
        let mut claim_errors = 0u32;
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                permit = self.slots.clone().acquire_owned() => permit?,
            };
            let want = 1 + self.slots.available_permits();
            let (took, claimed) = match self.claim(want, env).await {
                Ok(c) => {
                    claim_errors = 0;
                    c
                }
                Err(e) => {
                    drop(first);
                    claim_errors += 1;
                    tracing::warn!(error = %e, "claim failed; retrying");
                    let pause = Duration::from_millis(100 * u64::from(claim_errors.min(20)));
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            let may_be_idle = lock(self.running).end_claim(&claimed);
            if claimed.is_empty() && took > 0 {
                // Every job was deferred by a rate limit: others may be queued behind them.
                drop(first);
                continue;
            }
            if claimed.is_empty() {
                drop(first);
                self.wait_for_work(may_be_idle, shutdown).await;
                continue;
            }
            let mut permits = vec![first];
            for _ in 1..claimed.len() {
                // Nobody else takes permits, so the ones counted above are still there.
                permits.push(self.slots.clone().acquire_owned().await?);
            }
            for (job, permit) in claimed.into_iter().zip(permits) {
                jobs.spawn(run_job(job, env.clone(), permit));
            }
        }
    }

    /// Claims up to `want` jobs and applies the rate limits: how many the claim took, and those
    /// to run now. The claim is numbered for the worker's state (see [`Inflight`]); the caller
    /// ends it with the jobs it keeps.
    async fn claim(
        &self,
        want: usize,
        env: &JobEnv,
    ) -> Result<(usize, Vec<ClaimedJob>), crate::jobs::JobError> {
        let seq = lock(self.running).begin_claim();
        let claimed = match self
            .store
            .workers()
            .claim(self.info, want, self.config.heartbeat_ttl, seq)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                lock(self.running).end_claim(&[]);
                return Err(e);
            }
        };
        let took = claimed.len();
        let claimed = self
            .config
            .limits
            .admit(self.store, self.info, &env.registry, claimed)
            .await;
        Ok((took, claimed))
    }

    /// With nothing claimed: lets the wakers block on the queues until one wakes us, the idle
    /// poll lapses or shutdown comes.
    async fn wait_for_work(&self, may_be_idle: bool, shutdown: &CancellationToken) {
        self.wanted.send_replace(true);
        // Record "idle" only once the worker has been idle a moment: a worker woken again
        // within milliseconds (a steady producer) would pay a round trip per job.
        let mut idle_pending = may_be_idle;
        loop {
            let mark_in = if idle_pending {
                IDLE_MARK_AFTER
            } else {
                IDLE_POLL
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => break,
                () = tokio::time::sleep(mark_in) => {}
            }
            if !idle_pending {
                break;
            }
            idle_pending = false;
            let state = lock(self.running).idle_now();
            if let Some(state) = state
                && let Err(e) = self
                    .store
                    .workers()
                    .settle(self.info, &[], Some(state))
                    .await
            {
                tracing::debug!(error = %e, "cannot record the idle state");
            }
        }
        self.wanted.send_replace(false);
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

/// One job's task: runs it (or gives it back when aborted), counts it, hands its outcome to
/// the settler. `_slot` holds its place in the concurrency limit until the task ends.
async fn run_job(job: ClaimedJob, env: JobEnv, _slot: OwnedSemaphorePermit) {
    let store = env.ctx.jobs.clone();
    let started_at = store.unix_now();
    let waited = waited_since_enqueue(&job, started_at);
    if let Some(waited) = waited {
        metrics::histogram!(m::JOB_START_LATENCY, "queue" => job.execution.queue.clone())
            .record(waited);
    }
    let (outcome, job_type) = tokio::select! {
        biased;
        () = env.abort.cancelled() => (Outcome::Requeue, "-".to_owned()),
        done = execute(&job, env.ctx, &env.registry, &env.policies) => done,
    };
    let ended_at = store.unix_now();
    let label = match &outcome {
        Outcome::Finished { .. } => "finished",
        Outcome::Failed { .. } => "failed",
        Outcome::Retry { .. } => "retried",
        Outcome::Requeue => "requeued",
    };
    let job_type = m::job_type_label(&job_type);
    metrics::counter!(m::JOBS_PROCESSED, "queue" => job.execution.queue.clone(), "job_type" => job_type.clone(), "outcome" => label).increment(1);
    metrics::histogram!(m::JOB_DURATION, "job_type" => job_type).record(ended_at - started_at);
    let execution = job.execution;
    lock(&env.running).executions.remove(&execution.member());
    match &outcome {
        Outcome::Failed { error, .. } | Outcome::Retry { error, .. } => {
            tracing::warn!(job_id = %execution.id, attempt = job.attempts, "job failed: {}", last_line(error));
        }
        _ => {}
    }
    // The settler only stops after every job task has ended, so this cannot fail in practice;
    // if it did, the heartbeat deadline lapses and recovery re-runs the job.
    let _ = env.settle_tx.send(Settlement {
        execution,
        started_at,
        ended_at,
        waited,
        outcome,
    });
}

/// Seconds from the job's enqueue to `started_at`, when its `enqueued_at` is readable.
fn waited_since_enqueue(job: &ClaimedJob, started_at: f64) -> Option<f64> {
    let enqueued = job.enqueued_at.as_deref().and_then(parse_rq_timestamp)?;
    Some((started_at - enqueued.timestamp_micros() as f64 / 1e6).max(0.0))
}

fn last_line(s: &str) -> &str {
    s.trim_end().lines().last().unwrap_or(s)
}

/// Runs one job to an outcome, and names the handler it ran (the metrics label; `unknown` when
/// none matched). Never panics on bad input: every problem becomes a failure.
async fn execute(
    job: &ClaimedJob,
    ctx: HandlerContext,
    registry: &Registry,
    policies: &Policies,
) -> (Outcome, String) {
    let resolved = job
        .call
        .as_ref()
        .ok()
        .and_then(|c| registry.resolve(&c.job_type));
    let label = resolved
        .as_ref()
        .map_or("unknown", |(name, _)| *name)
        .to_owned();
    (run(job, resolved, ctx, registry, policies).await, label)
}

async fn run(
    job: &ClaimedJob,
    resolved: Option<(&str, Arc<dyn Handler>)>,
    ctx: HandlerContext,
    registry: &Registry,
    policies: &Policies,
) -> Outcome {
    let failure_ttl = job.failure_ttl.unwrap_or(policies.failure_ttl);
    let fail = |kind: &str, job_type: &str, msg: &str| Outcome::Failed {
        error: traceback(kind, job_type, job.attempts, msg),
        failure_ttl,
    };
    let call = match &job.call {
        Ok(call) => call,
        Err(reason) => return fail("InvalidJobData", "?", reason),
    };
    let Some((name, handler)) = resolved else {
        let known: Vec<&str> = registry.names().into_iter().collect();
        return fail(
            "UnknownJobType",
            &call.job_type,
            &format!(
                "no handler is registered for job type {:?} (known: {})",
                call.job_type,
                known.join(", ")
            ),
        );
    };
    let input = JobInput {
        id: job.execution.id.clone(),
        job_type: call.job_type.clone(),
        handler: name.to_owned(),
        queue: job.execution.queue.clone(),
        args: call.args.clone(),
        kwargs: call.kwargs.clone(),
        attempt: job.attempts,
    };
    let run = handler.call(ctx, input);
    let result = match policies.timeout(job, name) {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => return timed_out(job, name, policies, limit),
        },
        None => run.await,
    };
    match result {
        Ok(value) => Outcome::Finished {
            result: value,
            result_ttl: job.result_ttl.unwrap_or(policies.result_ttl),
        },
        Err(HandlerError::Permanent(msg)) => fail("PermanentJobError", name, &msg),
        Err(HandlerError::Retryable(msg)) => retry_or_fail(
            job,
            name,
            policies,
            traceback("JobError", name, job.attempts, &msg),
        ),
    }
}

/// A job cut off at its timeout: retried while it has retries, as RQ words it.
fn timed_out(job: &ClaimedJob, name: &str, policies: &Policies, limit: Duration) -> Outcome {
    let msg = format!(
        "Task exceeded maximum timeout value ({} seconds)",
        limit.as_secs()
    );
    let error = traceback("JobTimeoutException", name, job.attempts, &msg);
    retry_or_fail(job, name, policies, error)
}

fn retry_or_fail(job: &ClaimedJob, job_type: &str, policies: &Policies, error: String) -> Outcome {
    match policies.retry(job, job_type) {
        Some((delay, retries_left)) => Outcome::Retry {
            error,
            delay_secs: delay.as_secs(),
            retries_left,
        },
        None => Outcome::Failed {
            error,
            failure_ttl: job.failure_ttl.unwrap_or(policies.failure_ttl),
        },
    }
}

/// Error text in the shape RQ tools show: a traceback whose last line is `Kind: message`.
fn traceback(kind: &str, job_type: &str, attempt: u32, msg: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  prosaas worker, job type {job_type}, attempt {attempt}\n{kind}: {msg}\n"
    )
}

/// Records outcomes, batching whatever is ready into one script call. Retries while Redis is
/// unreachable: an outcome is never dropped (re-applying one is a no-op: it finds its
/// started-registry entry gone and reports a conflict).
async fn settle_loop(
    store: JobStore,
    info: Arc<WorkerInfo>,
    running: Running,
    mut rx: mpsc::UnboundedReceiver<Settlement>,
) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < SETTLE_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let state = lock(&running).after_settle();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            match store.workers().settle(&info, &batch, state).await {
                Ok(results) => {
                    for (s, r) in batch.iter().zip(results) {
                        if r == Settled::Conflict {
                            tracing::warn!(
                                job_id = %s.execution.id,
                                "outcome not recorded: the job was taken away meanwhile (recovered as abandoned or failed by a cleanup)"
                            );
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, outcomes = batch.len(), "cannot record outcomes yet; retrying");
                    backoff.sleep().await;
                }
            }
        }
        batch.clear();
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

/// While the executor waits for work, blocks on one queue (moving an arriving id into the
/// worker's inbox) or on its lanes' bell, then wakes the executor.
async fn waker_loop(
    store: JobStore,
    info: Arc<WorkerInfo>,
    (queue, bell): (String, bool),
    wake: Arc<Notify>,
    mut wanted: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let mut waker = None;
    loop {
        while !*wanted.borrow_and_update() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = wanted.changed() => if changed.is_err() { return },
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
