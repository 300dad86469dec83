//! Live calls of this process: admission (a maximum, and none while shutting down), their
//! count and ages for health and metrics, and the tracker that lets shutdown wait for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug)]
pub struct CallRegistry {
    active: Mutex<HashMap<u64, Instant>>,
    next: AtomicU64,
    max: usize,
    /// Live call tasks; shutdown waits on it.
    pub tracker: TaskTracker,
    /// Set when shutdown begins: new streams are refused.
    closing: CancellationToken,
    /// Set when the grace period is over: every live call finalizes and ends.
    pub end_all: CancellationToken,
    /// μ-law audio played to each caller when its stream starts.
    pub greeting: Option<Arc<Vec<u8>>>,
}

/// Counts of live calls, for `/api/jobs/health` and `/metrics`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct CallsSnapshot {
    pub active: usize,
    pub max: usize,
    pub oldest_secs: u64,
}

/// A live call's place in the registry; leaving drops it.
pub struct CallSlot {
    registry: Arc<CallRegistry>,
    id: u64,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl CallRegistry {
    pub fn new(max: usize) -> Self {
        Self::with_greeting(max, None)
    }

    pub fn with_greeting(max: usize, greeting: Option<Vec<u8>>) -> Self {
        Self {
            greeting: greeting.map(Arc::new),
            active: Mutex::default(),
            next: AtomicU64::new(0),
            max,
            tracker: TaskTracker::new(),
            closing: CancellationToken::new(),
            end_all: CancellationToken::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Instant>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new call, or why not.
    pub fn admit(self: &Arc<Self>) -> Result<CallSlot, &'static str> {
        if self.closing.is_cancelled() {
            return Err("shutting down: not accepting new streams");
        }
        let mut active = self.lock();
        if active.len() >= self.max {
            return Err("at the maximum number of concurrent calls");
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        active.insert(id, Instant::now());
        Ok(CallSlot {
            registry: self.clone(),
            id,
        })
    }

    pub fn snapshot(&self) -> CallsSnapshot {
        let active = self.lock();
        CallsSnapshot {
            active: active.len(),
            max: self.max,
            oldest_secs: active
                .values()
                .map(|t| t.elapsed().as_secs())
                .max()
                .unwrap_or(0),
        }
    }

    /// The ages (seconds) of the `most` longest-running live calls, oldest first.
    pub fn ages(&self, most: usize) -> Vec<u64> {
        let mut ages: Vec<u64> = self
            .lock()
            .values()
            .map(|t| t.elapsed().as_secs())
            .collect();
        ages.sort_unstable_by(|a, b| b.cmp(a));
        ages.truncate(most);
        ages
    }

    /// Stops admitting; live calls go on.
    pub fn close(&self) {
        self.closing.cancel();
        self.tracker.close();
    }
}
