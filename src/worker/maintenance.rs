//! The recovery subsystem: promotes due retries and delayed jobs to their queues, recovers jobs
//! whose worker died (heartbeat deadline passed), and returns dead workers' inboxes.
//!
//! Bound: a job of a killed worker is recovered within `heartbeat_ttl + maintenance_interval`
//! of its last heartbeat (plus one script call), by whichever live worker runs the pass.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::jobs::JobStore;
use crate::settings::WorkerSettings;

pub async fn run(
    store: JobStore,
    owner: String,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let hostname = super::hostname();
    let promote_every = Duration::from_millis(settings.promote_interval_ms);
    let recover_every = Duration::from_millis(settings.maintenance_interval_ms);
    // Held a little longer than a pass is apart, so that one worker keeps a queue while alive.
    let promote_lock = (promote_every * 5).max(Duration::from_secs(5));
    let mut promote = tokio::time::interval(promote_every);
    let mut recover = tokio::time::interval(recover_every);
    for t in [&mut promote, &mut recover] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = promote.tick() => {
                for q in &settings.queues {
                    match store.promote_due(q, &hostname, promote_lock).await {
                        Ok(Some(n)) if n > 0 => tracing::debug!(queue = %q, promoted = n, "due jobs moved to the queue"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(queue = %q, error = %e, "promotion of due jobs failed"),
                    }
                }
            }
            _ = recover.tick() => {
                for q in &settings.queues {
                    match store
                        .recover_abandoned(q, &owner, recover_every, settings.max_retries, settings.failure_ttl_secs)
                        .await
                    {
                        Ok(r) if r.requeued + r.failed > 0 => tracing::warn!(
                            queue = %q, requeued = r.requeued, failed = r.failed,
                            "recovered jobs of a dead worker"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(queue = %q, error = %e, "recovery pass failed"),
                    }
                }
                match store.release_dead_inboxes(&settings.queues[0]).await {
                    Ok(n) if n > 0 => tracing::warn!(returned = n, "returned ids from dead workers' inboxes"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "inbox recovery failed"),
                }
            }
        }
    }
}
