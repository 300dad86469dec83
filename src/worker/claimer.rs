//! The claim loop: claims while there are free slots (applying the rate limits), spawns one
//! task per job, and, with nothing to claim, lets the wakers block on the queues and records the
//! worker idle once it has been a moment. Each job's task runs it to its outcome and hands that
//! to the settler.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ExecutorConfig;
use super::handler::{HandlerContext, Registry};
use super::http_target::Delivery;
use super::inflight::{Halt, Running, lock};
use super::outcome::{execute, last_line, retry_or_fail, then_repeat, traceback};
use super::policy::Policies;
use super::webhooks;
use crate::jobs::{
    Claim, ClaimedJob, JobStore, Outcome, QueueWaker, Settled, Settlement, WorkerInfo,
    parse_rq_timestamp,
};
use crate::metrics as m;

/// How long an idle executor waits before claiming again even without a wake-up (a safety net
/// for a waker whose connection broke).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often a suspended worker checks whether it was resumed (RQ's workers: every second).
const SUSPENDED_POLL: Duration = Duration::from_secs(1);
/// An outcome for the settler, and where to say whether it was recorded when the job's task
/// waits for that (to send RQ's webhooks after it, as RQ does).
pub(super) type ToSettle = (Settlement, Option<oneshot::Sender<Settled>>);

/// What every job task of one executor shares: how to run a job, where its outcome goes, and
/// the signal that returns unfinished jobs at the end of the shutdown grace.
#[derive(Clone)]
pub(super) struct JobEnv {
    pub(super) ctx: HandlerContext,
    pub(super) registry: Arc<Registry>,
    pub(super) policies: Arc<Policies>,
    pub(super) settle_tx: mpsc::UnboundedSender<ToSettle>,
    pub(super) running: Running,
    pub(super) abort: CancellationToken,
}

/// The claim loop's view of the executor: the worker it claims for and what it signals.
pub(super) struct Claimer<'a> {
    pub(super) store: &'a JobStore,
    pub(super) info: &'a WorkerInfo,
    pub(super) config: &'a ExecutorConfig,
    pub(super) running: &'a Running,
    pub(super) slots: Arc<Semaphore>,
    /// Wakers block on the queues only while this is `true` (the executor waits for work).
    pub(super) wanted: watch::Sender<bool>,
    /// The worker's queues that are paused, as the last claim found them: their wakers do not
    /// block (a wake-up would move an id the claim then puts back, again and again).
    pub(super) paused: watch::Sender<Vec<String>>,
    pub(super) wake: Arc<Notify>,
    /// The worker's one queue when it has a single plain one: then no waker runs, and the claim
    /// loop waits on the queue itself with a claim sent right behind the wait (one round trip
    /// from an arriving job to its start instead of two).
    pub(super) fused: Option<String>,
}

/// How a claim is sent: at once, or behind a blocking wait on the worker's one queue for up to
/// the given time (see [`Claimer::fused`]).
enum ClaimWhen<'w> {
    Now,
    AfterWait(&'w mut Option<QueueWaker>, Duration),
}

impl Claimer<'_> {
    /// Claims while slots are free and spawns a task per job, until `shutdown`.
    // Long on purpose: the loop's one sequence (a slot, a claim sent now or behind a wait, its
    // outcome, the jobs started, then waiting when the queues ran dry) reads best whole.
    pub(super) async fn run(
        &self,
        shutdown: &CancellationToken,
        jobs: &TaskTracker,
        env: &JobEnv,
    ) -> anyhow::Result<()> {
        let mut claim_errors = 0u32;
        let mut suspended = false;
        // The last claim found nothing more to take: the next one waits for work first.
        let mut dry = false;
        let mut waker = None;
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                permit = self.slots.clone().acquire_owned() => permit?,
            };
            let want = 1 + self.slots.available_permits();
            let send = match self.fused_wait(dry) {
                Some(block) => ClaimWhen::AfterWait(&mut waker, block),
                None => ClaimWhen::Now,
            };
            let behind = matches!(send, ClaimWhen::AfterWait(..));
            let (took, claimed) = match self.claim(want, env, send, shutdown).await {
                Ok(None) => {
                    drop(first);
                    dry = false;
                    if self.hold_while_suspended(&mut suspended, shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
                Ok(Some(c)) => {
                    claim_errors = 0;
                    note_resumed(&mut suspended);
                    c
                }
                Err(e) => {
                    drop(first);
                    if behind {
                        // Its connection may be what failed: the next wait opens a new one.
                        waker = None;
                    }
                    claim_errors += 1;
                    tracing::warn!(error = %e, "claim failed; retrying");
                    if back_off(claim_errors, shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            let stops = lock(self.running).end_claim(&claimed);
            if claimed.is_empty() && took > 0 {
                // Every job was deferred by a rate limit: others may be queued behind them.
                drop(first);
                dry = false;
                continue;
            }
            // Fewer than asked: the claim found the inbox and every queue it may take from
            // empty, so another one now would find nothing (a wasted round trip per job at an
            // everyday rate); the next one waits for work first.
            dry = took < want;
            self.start(claimed, stops, first, jobs, env).await?;
            if !dry {
                continue;
            }
            if behind {
                self.mark_idle_if_due().await;
            } else if self.fused_wait(true).is_none() {
                self.wait_for_work(shutdown).await;
            }
        }
    }

    /// How long a claim sent behind a wait on the worker's one queue may wait, when the loop
    /// waits for work that way (`dry`, a single plain queue, not paused): until "idle" is due
    /// for a worker with nothing running, else the idle poll.
    fn fused_wait(&self, dry: bool) -> Option<Duration> {
        let queue = self.fused.as_ref().filter(|_| dry)?;
        if self.paused.borrow().contains(queue) {
            return None;
        }
        // While jobs run the wait is not cut short for the idle mark (a claim per 50 ms): a job
        // that ends during it is marked idle when it ends, within the idle poll.
        let due = lock(self.running).idle_due_at();
        Some(due.map_or(IDLE_POLL, |at| {
            at.saturating_duration_since(std::time::Instant::now())
                .min(IDLE_POLL)
        }))
    }

    /// Records the worker idle if nothing has run for a moment (see [`Inflight::idle_now`]).
    async fn mark_idle_if_due(&self) {
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

    /// Spawns a task per claimed job, each holding a slot (`first` is the one already taken).
    async fn start(
        &self,
        claimed: Vec<ClaimedJob>,
        stops: Vec<Halt>,
        first: OwnedSemaphorePermit,
        jobs: &TaskTracker,
        env: &JobEnv,
    ) -> anyhow::Result<()> {
        let mut permits = vec![first];
        for _ in 1..claimed.len() {
            // Nobody else takes permits, so the ones counted above are still there.
            permits.push(self.slots.clone().acquire_owned().await?);
        }
        for ((job, permit), stop) in claimed.into_iter().zip(permits).zip(stops) {
            jobs.spawn(run_job(job, env.clone(), permit, stop));
        }
        Ok(())
    }

    /// Claims up to `want` jobs and applies the rate limits: how many the claim took, and those
    /// to run now; `None` while workers are suspended. The claim is numbered for the worker's
    /// state (see [`Inflight`]); the caller ends it with the jobs it keeps.
    async fn claim(
        &self,
        want: usize,
        env: &JobEnv,
        send: ClaimWhen<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Option<(usize, Vec<ClaimedJob>)>, crate::jobs::JobError> {
        let seq = lock(self.running).begin_claim();
        let ttl = self.config.heartbeat_ttl;
        let claim = match send {
            ClaimWhen::Now => self.store.workers().claim(self.info, want, ttl, seq).await,
            ClaimWhen::AfterWait(waker, block) => {
                self.claim_behind_wait(waker, (want, ttl, seq), block, shutdown)
                    .await
            }
        };
        let claimed = match claim {
            Ok(c) if c.suspended => return Ok(None),
            Ok(c) => {
                self.note_paused(c.paused);
                if !c.jobs.is_empty() {
                    lock(self.running).wrote_busy(seq);
                }
                c.jobs
            }
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
        Ok(Some((took, claimed)))
    }

    /// A claim sent behind a wait of up to `block` on the worker's one queue (opening the
    /// waiting connection first if needed). Shutdown ends the wait at once (`CLIENT UNBLOCK`)
    /// and still takes the claim's reply: what it claimed is started and then drained as any
    /// claimed job is, never left claimed by nobody.
    async fn claim_behind_wait(
        &self,
        waker: &mut Option<QueueWaker>,
        claim: (usize, Duration, u64),
        block: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Claim, crate::jobs::JobError> {
        let workers = self.store.workers();
        let queue = self.fused.as_deref().unwrap_or_default();
        let waker = match waker {
            Some(w) => w,
            None => waker.insert(workers.waker(self.info, queue, false).await?),
        };
        let client_id = waker.client_id();
        let call = waker.wait_and_claim(&workers, self.info, claim, block);
        tokio::pin!(call);
        tokio::select! {
            biased;
            got = &mut call => got,
            () = shutdown.cancelled() => {
                let unblocked = match client_id {
                    Some(id) => workers.unblock(id).await,
                    None => Err(crate::jobs::JobError::Invalid("no client id".into())),
                };
                if let Err(e) = unblocked {
                    tracing::debug!(error = %e, "cannot end the idle wait early; it ends within a second");
                }
                call.await
            }
        }
    }

    /// Tells the wakers which queues are paused, and the log when that changes.
    fn note_paused(&self, paused: Vec<String>) {
        self.paused.send_if_modified(|known| {
            if *known == paused {
                return false;
            }
            for q in paused.iter().filter(|q| !known.contains(q)) {
                tracing::warn!(queue = %q, "queue paused (`prosaas jobs pause`): no job of it starts until it is unpaused");
            }
            for q in known.iter().filter(|q| !paused.contains(q)) {
                tracing::info!(queue = %q, "queue unpaused");
            }
            *known = paused;
            true
        });
    }

    /// Suspended: nothing was taken, and jobs in flight finish on their own. Says so once, then
    /// waits a check's interval; `true` when shutdown came meanwhile.
    async fn hold_while_suspended(&self, said: &mut bool, shutdown: &CancellationToken) -> bool {
        {
            let mut inflight = lock(self.running);
            inflight.end_claim(&[]);
            // The next claim writes `suspended` once nothing runs: it must carry a decision.
            inflight.forget_written();
        }
        if !std::mem::replace(said, true) {
            tracing::warn!(
                "workers are suspended (rq:suspended, set by `rq suspend` or `prosaas jobs suspend`): no new job starts until it is removed"
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(SUSPENDED_POLL) => false,
        }
    }

    /// With nothing left to claim: lets the wakers block on the queues until one wakes us, the
    /// idle poll lapses or shutdown comes, and records the worker idle once it has had nothing
    /// to run for a moment.
    async fn wait_for_work(&self, shutdown: &CancellationToken) {
        self.wanted.send_replace(true);
        let poll_at = tokio::time::Instant::now() + IDLE_POLL;
        loop {
            let mark_at = lock(self.running)
                .idle_mark_at()
                .map(tokio::time::Instant::from_std);
            let until = mark_at.map_or(poll_at, |t| t.min(poll_at));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => break,
                () = tokio::time::sleep_until(until) => {}
            }
            if tokio::time::Instant::now() >= poll_at {
                break;
            }
            self.mark_idle_if_due().await;
        }
        self.wanted.send_replace(false);
    }
}

/// Says once that a suspension ended.
fn note_resumed(suspended: &mut bool) {
    if std::mem::take(suspended) {
        tracing::info!("workers resumed: claiming again");
    }
}

/// Waits longer after each failed claim in a row (0.1 s more each, up to 2 s); `true` when
/// shutdown came meanwhile.
async fn back_off(failures: u32, shutdown: &CancellationToken) -> bool {
    let pause = Duration::from_millis(100 * u64::from(failures.min(20)));
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}

/// One job's task: runs it (or gives it back when aborted, or ends it when halted from outside),
/// counts it, hands its outcome to the settler. `_slot` holds its place in the concurrency
/// limit until the task ends.
async fn run_job(mut job: ClaimedJob, env: JobEnv, _slot: OwnedSemaphorePermit, halt: Halt) {
    let store = env.ctx.jobs.clone();
    let started_at = store.unix_now();
    let waited = waited_since_enqueue(&job, started_at);
    if let Some(waited) = waited {
        metrics::histogram!(m::JOB_START_LATENCY, "queue" => job.execution.queue.clone())
            .record(waited);
    }
    // Only a job with RQ callbacks needs a context after its run (the run takes this one), and
    // only one with RQ webhooks an HTTP client.
    let callback_ctx = job.callbacks.as_ref().map(|_| env.ctx.clone());
    let delivery = (!job.webhooks.is_empty()).then(|| env.ctx.delivery.clone());
    let (outcome, job_type, killed) = tokio::select! {
        biased;
        () = env.abort.cancelled() => (Outcome::Requeue, "-".to_owned(), false),
        // Dropping the handler's future stops it at its next await.
        killed = halt.halted() => {
            let (outcome, job_type) = halted(&job, &env.registry, &env.policies, killed);
            (outcome, job_type, killed)
        }
        (outcome, job_type) = execute(&job, env.ctx, &env.registry, &env.policies) => (outcome, job_type, false),
    };
    // RQ runs no callback for a killed work-horse: they ran in the horse, which died.
    let outcome = if killed {
        outcome
    } else {
        let callbacks = callback_ctx.map(|ctx| super::callbacks::Env {
            ctx,
            registry: &env.registry,
            policies: &env.policies,
        });
        then_repeat(
            &job,
            super::callbacks::apply(&job, &job_type, outcome, callbacks).await,
        )
    };
    let ended_at = store.unix_now();
    count(&job, &job_type, &outcome, ended_at - started_at);
    let execution = std::mem::take(&mut job.execution);
    lock(&env.running).ended(&execution);
    if let Outcome::Failed { error, .. } | Outcome::Retry { error, .. } = &outcome {
        tracing::warn!(job_id = %execution.id, attempt = job.attempts, "job failed: {}", last_line(error));
    }
    let settlement = Settlement {
        execution,
        started_at,
        ended_at,
        waited,
        outcome,
    };
    hand_over(&job, &env.settle_tx, settlement, delivery).await;
}

/// Gives the outcome to the settler; for a job with RQ webhooks for it, waits until it is
/// recorded and then sends them (the job's slot is held meanwhile, as RQ's worker holds it).
async fn hand_over(
    job: &ClaimedJob,
    settle_tx: &mpsc::UnboundedSender<ToSettle>,
    settlement: Settlement,
    delivery: Option<Arc<Delivery>>,
) {
    let webhook = delivery.and_then(|d| {
        webhooks::status_of(&settlement.outcome)
            .map(|(status, exc)| (d, status, exc.map(str::to_owned)))
    });
    let Some((delivery, status, exc)) = webhook else {
        // The settler only stops after every job task has ended, so this cannot fail in
        // practice; if it did, the heartbeat deadline lapses and recovery re-runs the job.
        let _ = settle_tx.send((settlement, None));
        return;
    };
    let (id, ended_at) = (settlement.execution.id.clone(), settlement.ended_at);
    let (recorded, is_recorded) = oneshot::channel();
    let _ = settle_tx.send((settlement, Some(recorded)));
    if is_recorded.await == Ok(Settled::Applied) {
        webhooks::send(
            delivery.client(),
            job,
            &id,
            status,
            exc.as_deref(),
            ended_at,
        )
        .await;
    }
}

/// The job's outcome and duration in the metrics.
fn count(job: &ClaimedJob, job_type: &str, outcome: &Outcome, secs: f64) {
    let label = match outcome {
        Outcome::Finished { .. } | Outcome::Repeat { .. } => "finished",
        Outcome::Failed { .. } => "failed",
        Outcome::Retry { .. } => "retried",
        Outcome::Requeue => "requeued",
        Outcome::Stopped { .. } => "stopped",
    };
    let job_type = m::job_type_label(job_type);
    metrics::counter!(m::JOBS_PROCESSED, "queue" => job.execution.queue.clone(), "job_type" => job_type.clone(), "outcome" => label).increment(1);
    metrics::histogram!(m::JOB_DURATION, "job_type" => job_type).record(secs);
}

/// The outcome of a job halted from outside: `stopped` (stop-job), or a killed work-horse's
/// failure, retried as the job type's policy allows (kill-horse); and the job type's label.
fn halted(
    job: &ClaimedJob,
    registry: &Registry,
    policies: &Policies,
    killed: bool,
) -> (Outcome, String) {
    if !killed {
        let failure_ttl = job.failure_ttl.unwrap_or(policies.failure_ttl);
        return (Outcome::Stopped { failure_ttl }, "-".to_owned());
    }
    let name = job
        .call
        .as_ref()
        .ok()
        .and_then(|c| registry.resolve(&c.job_type))
        .map_or("unknown", |(name, _)| name)
        .to_owned();
    let error = traceback(
        "WorkHorseKilled",
        &name,
        job.attempts,
        "Work-horse terminated unexpectedly (an RQ kill-horse command)",
    );
    (retry_or_fail(job, &name, policies, error), name)
}

/// Seconds from the job's enqueue to `started_at`, when its `enqueued_at` is readable.
pub(super) fn waited_since_enqueue(job: &ClaimedJob, started_at: f64) -> Option<f64> {
    let enqueued = job.enqueued_at.as_deref().and_then(parse_rq_timestamp)?;
    Some((started_at - enqueued.timestamp_micros() as f64 / 1e6).max(0.0))
}
