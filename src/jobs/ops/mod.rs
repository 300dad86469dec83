//! The worker's Redis operations, one file per Lua script (each beside its `.lua`, owning its
//! arguments and reply), plus registration and the blocking wake-up: what a worker process does
//! to Redis, from registering to settling and recovering.
//!
//! Round trips per job on the hot path: one claim call serves up to `concurrency` jobs and one
//! settle call records every outcome that is ready, so under load both are amortised over many
//! jobs; an idle worker pays one of each per job.

pub(super) mod claim;
mod commands;
pub(super) mod heartbeat;
pub(super) mod lane_depth;
pub(super) mod lane_recount;
pub(super) mod promote;
pub(super) mod rate_limit;
pub(super) mod recover;
mod registration;
pub(super) mod release_inbox;
pub(super) mod settle;
mod waker;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use claim::{Callback, Callbacks, Claim, ClaimedJob, Repeat, Webhook};
pub use commands::{CommandChannel, WorkerCommand};
pub use rate_limit::{Deferred, RateBucket};
pub use recover::Recovered;
pub use settle::{Outcome, Settled, Settlement, Tally, WorkerState};
pub use waker::{QueueWaker, WAKER_BLOCK};

/// Who a worker is, as registered in `rq:worker:<name>`.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    pub name: String,
    pub queues: Vec<String>,
    pub pid: u32,
    pub hostname: String,
}

/// One execution of a job: the id, the execution id of this attempt (empty when it was claimed
/// in RQ 1.x's plain-id entry format), the queue, and the slots it holds until it ends: the
/// tenant lane it came from (empty for the queue's own list) and RQ 3.0's rate limit it counts
/// against (empty for none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Execution {
    pub id: String,
    pub execution_id: String,
    pub queue: String,
    pub lane: String,
    pub rate_limit: String,
}

impl Execution {
    /// Its started-registry member: `<id>:<execution id>`, or the plain id in RQ 1.x's format.
    /// Unique among a worker's running executions either way.
    pub fn member(&self) -> String {
        if self.execution_id.is_empty() {
            self.id.clone()
        } else {
            format!("{}:{}", self.id, self.execution_id)
        }
    }
}

/// base64(zlib(text)): how RQ stores `exc_string` in the result stream.
pub(crate) fn encode_exc_string(text: &str) -> String {
    BASE64.encode(super::zlib::compress(text.as_bytes()))
}

super::capability! {
    /// A worker process's steps: register, claim, settle, heartbeat, recover, promote, wait.
    Workers via workers
}

impl Workers<'_> {
    /// Whether claims write RQ 1.x's plain-id started-registry entries.
    pub fn rq1_entries(&self) -> bool {
        self.store
            .rq1_entries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Switches the started-registry entry format of later claims (running executions keep
    /// theirs): plain ids, which RQ 1.x tooling reads, or RQ 2's `<id>:<execution id>`.
    pub fn set_rq1_entries(&self, plain: bool) {
        self.store
            .rq1_entries
            .store(plain, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `queue` has tenant lanes to wake workers for.
    pub fn has_lanes(&self, queue: &str) -> bool {
        self.store.fairness(queue).is_some()
    }

    /// Whether `queue` caps each tenant's running jobs (and so keeps their counts).
    pub fn caps_tenants(&self, queue: &str) -> bool {
        self.store
            .fairness(queue)
            .is_some_and(|f| f.tenant_concurrency > 0)
    }
}

/// A duration as Redis's whole seconds, rounded up and at least one.
fn ttl_secs(d: Duration) -> i64 {
    i64::try_from(d.as_millis().div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn exc_string_is_base64_of_zlib() {
        let enc = encode_exc_string("ValueError: bad 1");
        let raw = BASE64.decode(enc).unwrap();
        let mut text = String::new();
        flate2::read::ZlibDecoder::new(raw.as_slice())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "ValueError: bad 1");
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::ZERO), 1);
    }
}
