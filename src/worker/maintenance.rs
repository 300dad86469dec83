//! The recovery subsystem: promotes due retries and delayed jobs to their queues, recovers jobs
//! whose worker died (heartbeat deadline passed), returns dead workers' inboxes, and prunes what
//! registries hold past its time (`worker.prune_interval_ms`, one worker of the fleet per queue
//! and interval), as Python RQ's workers do in their maintenance.
//!
//! Bound: a job of a killed worker is recovered within `heartbeat_ttl + maintenance_interval`
//! of its last heartbeat (plus one script call), by whichever live worker runs the pass.
//!
//! Recovery runs only once this process has reached Redis without a failure for a whole
//! `heartbeat_ttl`. After an outage every worker reconnects at about the same time; a live one
//! renews its jobs' deadlines at its next heartbeat (within `heartbeat_interval`, shorter than
//! the TTL), so no worker's recovery takes the jobs of a worker that is alive but was cut off
//! from Redis with everyone else. A job whose worker died during the outage is recovered one
//! TTL after Redis returns.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::jobs::{JobError, JobStore, PrunePass};
use crate::settings::WorkerSettings;
use crate::worker::policy::Policies;

pub async fn run(
    store: JobStore,
    owner: String,
    settings: WorkerSettings,
    registry: std::sync::Arc<super::handler::Registry>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let promote_every = settings.promote_interval_ms.get();
    let recover_every = settings.maintenance_interval_ms.get();
    let prune_every = settings.prune_interval_ms.get();
    let settle_for = settings.heartbeat_ttl_ms.get();
    let m = Maintenance {
        hostname: crate::identity::hostname(),
        // Held a little longer than a pass is apart, so that one worker keeps a queue while
        // alive.
        promote_lock: (promote_every * 5).max(Duration::from_secs(5)),
        recover_every,
        policies: Policies::from_settings(&settings),
        store,
        owner,
        settings,
        registry,
    };
    // Since when every Redis call of this loop has succeeded (None: the last one failed).
    let mut reachable_since: Option<tokio::time::Instant> = None;
    let mut promote = tokio::time::interval(promote_every);
    let mut recover = tokio::time::interval(recover_every);
    let mut prune = tokio::time::interval(prune_every);
    for t in [&mut promote, &mut recover, &mut prune] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = promote.tick() => note_reachability(&mut reachable_since, m.promote().await),
            _ = recover.tick() => {
                // Deadlines are on Redis's clock: measure it before comparing.
                let synced = m.store.sync_clock().await.is_ok();
                note_reachability(&mut reachable_since, synced);
                if reachable_since.is_none_or(|t| t.elapsed() < settle_for) {
                    continue;
                }
                if !m.recover().await {
                    note_reachability(&mut reachable_since, false);
                }
            }
            _ = prune.tick() => {
                // Expiry is judged on Redis's clock, as deadlines are.
                if m.store.clock_synced() {
                    note_reachability(&mut reachable_since, m.prune(prune_every).await);
                }
            }
        }
    }
}

/// One process's maintenance passes over the configured queues.
struct Maintenance {
    store: JobStore,
    owner: String,
    hostname: String,
    settings: WorkerSettings,
    registry: std::sync::Arc<super::handler::Registry>,
    policies: Policies,
    promote_lock: Duration,
    recover_every: Duration,
}

impl Maintenance {
    /// Moves due retries and delayed jobs to their queues; `false` if a call failed.
    async fn promote(&self) -> bool {
        let mut ok = true;
        for q in &self.settings.queues {
            match self
                .store
                .workers()
                .promote_due(q, &self.hostname, self.promote_lock)
                .await
            {
                Ok(Some(n)) if n > 0 => {
                    tracing::debug!(queue = %q, promoted = n, "due jobs moved to the queue")
                }
                Ok(_) => {}
                Err(e) => {
                    ok = false;
                    tracing::warn!(queue = %q, error = %e, "promotion of due jobs failed");
                }
            }
        }
        ok
    }

    /// Returns dead workers' inboxes and recovers abandoned jobs; `false` if a recovery call
    /// failed.
    async fn recover(&self) -> bool {
        // First: dead workers' inboxes go back to their queues, and their orphaned jobs
        // (started, but dropped from the started registry by RQ 1.x tooling) get an expired
        // entry again, so the recovery below takes them.
        let workers = self.store.workers();
        match workers.release_dead_inboxes(&self.settings.queues[0]).await {
            Ok(n) if n > 0 => tracing::warn!(
                returned = n,
                "returned ids from dead workers' inboxes and orphaned jobs to recovery"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "inbox recovery failed"),
        }
        let retries_for = |job_type: &str, by_prosaas: bool| self.retries_for(job_type, by_prosaas);
        let mut ok = true;
        for q in &self.settings.queues {
            let pass = workers
                .recover_abandoned(
                    q,
                    &self.owner,
                    self.recover_every,
                    &retries_for,
                    self.settings.failure_ttl_secs,
                )
                .await;
            match pass {
                Ok(r) if r.requeued + r.failed > 0 => tracing::warn!(
                    queue = %q, requeued = r.requeued, failed = r.failed,
                    "recovered jobs of a dead worker"
                ),
                Ok(_) => {}
                Err(e) => {
                    ok = false;
                    tracing::warn!(queue = %q, error = %e, "recovery pass failed");
                }
            }
            if workers.has_lanes(q) {
                match workers.count_lanes(q, false).await {
                    Ok(Some(n)) => {
                        tracing::info!(queue = %q, queued = n, "counted the jobs in a fair queue's lanes")
                    }
                    Ok(None) => {}
                    Err(e) => {
                        ok = false;
                        tracing::warn!(queue = %q, error = %e, "counting a fair queue's lanes failed");
                    }
                }
            }
            if workers.caps_tenants(q)
                && let Err(e) = workers.recount_lanes(q).await
            {
                ok = false;
                tracing::warn!(queue = %q, error = %e, "recount of tenants' running jobs failed");
            }
        }
        ok
    }

    /// Prunes the configured queues' registries and the shared sets, each by one worker of the
    /// fleet per interval, and recounts fair queues' lanes; `false` if a call failed.
    async fn prune(&self, every: Duration) -> bool {
        let prune = self.store.prune();
        let mut ok = true;
        let mut note = |what: &str, pass: Result<PrunePass, JobError>| match pass {
            Ok(PrunePass::Done(p)) if p.total() > 0 || p.unfinished => tracing::info!(
                what, removed = ?p.removed, unfinished = p.unfinished,
                "pruned expired registry entries"
            ),
            Ok(_) => {}
            Err(e) => {
                ok = false;
                tracing::warn!(what, error = %e, "pruning failed");
            }
        };
        for q in &self.settings.queues {
            note(q, prune.queue(q, every).await);
        }
        note(
            "rq:queues and rq:workers",
            prune.shared(&self.settings.queues, every).await,
        );
        let workers = self.store.workers();
        for q in self.settings.queues.iter().filter(|q| workers.has_lanes(q)) {
            if let Err(e) = workers.count_lanes(q, true).await {
                ok = false;
                tracing::warn!(queue = %q, error = %e, "recounting a fair queue's lanes failed");
            }
        }
        ok
    }

    /// Retries a recovered job has, looked up by handler name as the executor looks them up
    /// for a failure.
    fn retries_for(&self, job_type: &str, by_prosaas: bool) -> u32 {
        let name = self
            .registry
            .resolve(job_type)
            .map_or(job_type, |(name, _)| name);
        self.policies.retries_for(name, by_prosaas)
    }
}

fn note_reachability(since: &mut Option<tokio::time::Instant>, ok: bool) {
    if !ok {
        *since = None;
    } else if since.is_none() {
        *since = Some(tokio::time::Instant::now());
    }
}
