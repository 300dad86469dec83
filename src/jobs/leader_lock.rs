//! The scheduler's leader lock (TTL only, owner token, renewed, never deleted) and the fenced
//! firing of schedule slots.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::Enqueued;
use super::dedup::{Admitted, Fence};
use super::error::JobError;
use super::job::NewJob;
use super::keys::Keys;
use super::scripts::{Layout, LuaScript, args, keys, plain};

/// Where this process stands after one lock attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// We took the lock now; `cycle` counts acquisitions across all schedulers.
    Acquired { cycle: u64 },
    /// We held it and extended it.
    Renewed { cycle: u64 },
    /// Someone else holds it.
    HeldBy(String),
}

/// What firing one slot did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fired {
    /// Enqueued, or found already enqueued (by a previous leader): either way the slot has its job.
    Slot(Enqueued),
    /// The lock is not ours any more: nothing was written.
    Fenced { holder: String },
}

super::capability! {
    /// The scheduler's leader lock and fenced slot firing; only `src/scheduler/` uses it.
    LeaderLock via leader_lock
}

impl LeaderLock<'_> {
    /// `SET NX PX` to take the lock, compare-and-extend to keep it. `seen` is the highest cycle
    /// this scheduler has known: a taken lock's cycle is always past it.
    pub async fn acquire_or_renew_leadership(
        &self,
        token: &str,
        ttl: Duration,
        seen: u64,
    ) -> Result<Leadership, JobError> {
        let mut inv = LEADER_LOCK.prepare_invoke();
        keys!(inv, FIXED_KEYS; Keys::scheduler_lock(), Keys::scheduler_cycle());
        args!(inv, FIXED_ARGS;
            token,
            u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            seen,
        );
        const _: () = assert!(REPLY.len() == 2);
        let (code, value): (i64, String) = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(match code {
            1 => Leadership::Acquired {
                cycle: value.parse().unwrap_or(0),
            },
            2 => Leadership::Renewed {
                cycle: value.parse().unwrap_or(0),
            },
            _ => Leadership::HeldBy(value),
        })
    }

    /// Enqueues `job` for `entry`'s slot at `slot_ms`, exactly once per slot, and only while
    /// `token` holds the leader lock. The slot's de-dupe key is `schedule:<entry>:<slot ms>`,
    /// held for `slot_ttl_secs`.
    pub async fn fire_slot(
        &self,
        token: &str,
        entry: &str,
        slot_ms: i64,
        job: NewJob,
        slot_ttl_secs: u64,
    ) -> Result<Fired, JobError> {
        let fence = Fence {
            token,
            entry,
            slot_ms,
        };
        let key = Keys::schedule_slot(entry, slot_ms);
        Ok(
            match self
                .store
                .admit(job, Some((&key, slot_ttl_secs)), Some(&fence))
                .await?
            {
                Admitted::Done(e) => Fired::Slot(e),
                Admitted::Fenced(holder) => Fired::Fenced { holder },
                Admitted::Busy(status) => {
                    return Err(JobError::Invalid(format!(
                        "a locked enqueue answered busy ({status})"
                    )));
                }
            },
        )
    }

    /// Entry name → newest fired slot (Unix ms), as the leaders recorded it.
    pub async fn schedule_state(&self) -> Result<HashMap<String, i64>, JobError> {
        Ok(redis::cmd("HGETALL")
            .arg(Keys::scheduler_entries())
            .query_async(&mut self.conn().await?)
            .await?)
    }

    /// The leader's tick record for health checks.
    pub async fn record_tick(
        &self,
        holder: &str,
        cycle: u64,
        entries: &Value,
    ) -> Result<(), JobError> {
        let now = self
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        redis::pipe()
            .atomic()
            .hset_multiple(
                Keys::scheduler_health(),
                &[
                    ("last_tick", now),
                    ("holder", holder.to_owned()),
                    ("cycle", cycle.to_string()),
                    ("entries", entries.to_string()),
                ],
            )
            .query_async::<()>(&mut self.conn().await?)
            .await?;
        Ok(())
    }
}

pub(crate) static LEADER_LOCK: LuaScript = LuaScript::new(
    plain!("lua/leader_lock.lua"),
    &[&FIXED_KEYS, &FIXED_ARGS, &REPLY],
);

const FIXED_KEYS: Layout = Layout {
    name: "FIXED_KEYS",
    fields: &["lock", "cycle"],
};

/// leader_lock.lua's arguments.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["token", "ttl_ms", "seen"],
};

/// Acquired, renewed or held by another (the code), and the cycle or the holder.
const REPLY: Layout = Layout {
    name: "REPLY",
    fields: &["code", "value"],
};
