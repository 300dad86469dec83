//! What the supervisor builds once and every subsystem receives: the role, the settings, the
//! jobs handle, the live-call registry and the request-body budget. Below every subsystem in the
//! stack, so HTTP handlers, workers and the scheduler share it without importing the supervisor.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::calls_stream::disk::RecordingDisk;
use crate::calls_stream::registry::CallRegistry;
use crate::jobs::JobStore;
use crate::role::Role;
use crate::settings::Settings;

/// What every subsystem and HTTP handler shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppContext {
    pub role: Role,
    pub settings: Arc<Settings>,
    pub jobs: JobStore,
    /// This process's live calls (the calls subsystem; empty elsewhere).
    pub calls: Arc<CallRegistry>,
    /// Memory that request bodies being read may hold together (`http.body_budget_bytes`).
    pub body_budget: Arc<BodyBudget>,
    /// Cancelled to stop the whole process gracefully, as SIGTERM does: what RQ's `shutdown`
    /// command on a worker's channel asks for. The supervisor watches it ([`crate::app::App::run`]).
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl AppContext {
    /// The context of a process of `role`: what the supervisor builds (and tests build the same
    /// way). Fails only on a greeting file that cannot be read.
    pub fn new(role: Role, settings: Settings, jobs: JobStore) -> anyhow::Result<Self> {
        let calls = CallRegistry::with(
            settings.calls.max_concurrent_calls.get(),
            settings.calls.greeting()?,
            RecordingDisk::new(&settings.recordings.dir, settings.recordings.min_free_bytes),
        );
        Ok(Self {
            role,
            calls: Arc::new(calls),
            body_budget: Arc::new(BodyBudget::new(settings.http.body_budget_bytes)),
            settings: Arc::new(settings),
            jobs,
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }
}

/// The memory that request bodies being read may hold together. Each authenticated body
/// reserves its declared length (or the body limit when it declares none) before a byte of it is
/// read, and gives it back once parsed (see `http/extract.rs`).
#[derive(Debug)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

/// Budget units are KiB: a semaphore acquires at most `u32::MAX` permits at once.
const UNIT: usize = 1024;

impl BodyBudget {
    pub fn new(total_bytes: usize) -> Self {
        let units = total_bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(units)),
            total: total_bytes,
        }
    }

    /// Room for a body of `bytes`, free again when the permit drops; `None` when the budget is
    /// spent (the caller answers at once rather than wait).
    pub fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        self.permits.clone().try_acquire_many_owned(units).ok()
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes free right now (for tests and diagnostics).
    pub fn available(&self) -> usize {
        self.permits.available_permits() * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_returned() {
        let b = BodyBudget::new(10 * 1024);
        let first = b.reserve(6 * 1024).unwrap();
        assert!(b.reserve(5 * 1024).is_none(), "over the budget");
        let small = b.reserve(1).unwrap();
        assert_eq!(b.available(), 3 * 1024);
        drop(first);
        drop(small);
        assert_eq!(b.available(), 10 * 1024);
    }
}
