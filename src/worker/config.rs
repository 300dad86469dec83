//! How the executor is configured: concurrency, heartbeat timing, the shutdown grace, the
//! retry and timeout policies, the rate limits, and which started-registry entry format claims
//! write (RQ 2's, or RQ 1.x's plain ids while a Python RQ 1.x worker is registered).

use std::sync::Arc;
use std::time::Duration;

use super::limits::RateLimits;
use super::policy::Policies;
use crate::jobs::JobStore;
use crate::settings::WorkerSettings;

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
    /// The whole process's shutdown, which RQ's `shutdown` command asks for (as SIGTERM does):
    /// the worker role passes its own; a fresh one (nobody watching) stops nothing.
    pub process_shutdown: tokio_util::sync::CancellationToken,
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
pub(super) async fn choose_entry_format(store: &JobStore, format: StartedEntries) {
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
            concurrency: w.concurrency.get(),
            heartbeat_interval: w.heartbeat_interval_ms.get(),
            heartbeat_ttl: w.heartbeat_ttl_ms.get(),
            shutdown_grace: w.shutdown_grace_ms.get(),
            policies: Arc::new(Policies::from_settings(w)),
            started_entries: match w.started_entries.as_str() {
                "rq1" => StartedEntries::Rq1,
                "rq2" => StartedEntries::Rq2,
                _ => StartedEntries::Auto,
            },
            limits: Arc::default(),
            process_shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }
}
