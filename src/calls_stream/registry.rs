//! Live calls of this process: admission (a maximum, none while shutting down, none while the
//! recordings disk is low), the call SIDs streaming here (one stream per call), their count and
//! ages for health and metrics, and the tracker that lets shutdown wait for them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::disk::RecordingDisk;

#[derive(Default, Debug)]
struct Live {
    /// Slot id → when the stream was admitted.
    since: HashMap<u64, Instant>,
    /// Call SIDs bound to a live stream of this process.
    sids: HashSet<String>,
}

#[derive(Debug)]
pub struct CallRegistry {
    active: Mutex<Live>,
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
    /// The recordings directory's free space against its floor.
    pub disk: RecordingDisk,
}

/// Counts of live calls, for `/api/jobs/health` and `/metrics`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CallsSnapshot {
    pub active: usize,
    pub max: usize,
    pub oldest_secs: u64,
}

/// A live call's place in the registry; leaving drops it (and frees its call SID).
pub struct CallSlot {
    registry: Arc<CallRegistry>,
    id: u64,
    sid: Option<String>,
}

impl CallSlot {
    /// Binds the slot to `call_sid`; `false` when another live stream of this process has it.
    pub fn bind(&mut self, call_sid: &str) -> bool {
        if self.sid.is_some() {
            return false;
        }
        if !self.registry.lock().sids.insert(call_sid.to_owned()) {
            return false;
        }
        self.sid = Some(call_sid.to_owned());
        true
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        let mut live = self.registry.lock();
        live.since.remove(&self.id);
        if let Some(sid) = &self.sid {
            live.sids.remove(sid);
        }
    }
}

impl CallRegistry {
    /// A registry with no greeting whose disk is never measured (so it admits no stream): for
    /// processes and tests that serve no calls.
    pub fn new(max: usize) -> Self {
        Self::with(max, None, RecordingDisk::new(Path::new("recordings"), 0))
    }

    pub fn with(max: usize, greeting: Option<Vec<u8>>, disk: RecordingDisk) -> Self {
        Self {
            greeting: greeting.map(Arc::new),
            disk,
            active: Mutex::default(),
            next: AtomicU64::new(0),
            max,
            tracker: TaskTracker::new(),
            closing: CancellationToken::new(),
            end_all: CancellationToken::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new call, or why not.
    pub fn admit(self: &Arc<Self>) -> Result<CallSlot, &'static str> {
        if self.closing.is_cancelled() {
            return Err("shutting down: not accepting new streams");
        }
        let mut active = self.lock();
        if active.since.len() >= self.max {
            return Err("at the maximum number of concurrent calls");
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        active.since.insert(id, Instant::now());
        Ok(CallSlot {
            registry: self.clone(),
            id,
            sid: None,
        })
    }

    pub fn snapshot(&self) -> CallsSnapshot {
        let active = self.lock();
        CallsSnapshot {
            active: active.since.len(),
            max: self.max,
            oldest_secs: active
                .since
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
            .since
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_sid_streams_once_at_a_time() {
        let calls = Arc::new(CallRegistry::new(3));
        let mut a = calls.admit().unwrap();
        let mut b = calls.admit().unwrap();
        assert!(a.bind("CA1"));
        assert!(!a.bind("CA2"), "a slot binds one call");
        assert!(!b.bind("CA1"), "CA1 is live on a");
        assert!(b.bind("CA2"));
        drop(a);
        let mut c = calls.admit().unwrap();
        assert!(c.bind("CA1"), "free again once a ended");
        assert_eq!(calls.snapshot().active, 2);
    }
}
