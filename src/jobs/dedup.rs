//! De-duplication of external events and deterministic job ids.
//!
//! A provider (WhatsApp bridge, Twilio) retries an event it thinks we missed. The event's id
//! becomes a de-dupe key (`webhook:baileys:{message_id}`, `push:notification:{id}`,
//! `recording:{call_sid}`, `twilio:{call_sid}:{event}`), and one Lua script takes the lock
//! `job_lock:<key>` with `SET NX EX` and creates the job only if it got the lock. The job id is
//! derived from the key, so the same event always maps to the same job.

use sha2::{Digest, Sha256};

use super::JobStore;
use super::error::JobError;
use super::job::{NewJob, rq_timestamp};
use super::keys::Keys;
use super::scripts::{self, Layout, LuaScript, args, with_lanes};

/// The longest a provider event id is remembered. Providers retry for hours, not weeks, and a
/// bound keeps client input from overflowing Redis's integer arguments.
pub const MAX_DEDUPE_TTL_SECS: u64 = 30 * 24 * 3600;

/// What [`JobStore::enqueue_with_dedupe`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// First sight of the event: this job id was created and queued.
    New(String),
    /// The event was seen within the de-dupe window (or its job is still pending): nothing was
    /// written; this is the job that handles it.
    Duplicate(String),
}

impl Enqueued {
    pub fn job_id(&self) -> &str {
        match self {
            Self::New(id) | Self::Duplicate(id) => id,
        }
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate(_))
    }
}

/// A stable job id for an external event: `<namespace slug>-<32 hex digits>`.
///
/// The hex digits are the first 128 bits of SHA-256 over the namespace's length (8 bytes, little
/// endian), the namespace and the external id; the length prefix keeps `("a:b", "c")` and
/// `("a", "b:c")` apart. The slug (the namespace with every character outside `[A-Za-z0-9_-]`
/// replaced by `-`, at most 40 characters) is only there for humans reading `rq info`. The
/// result always matches RQ's id alphabet `[A-Za-z0-9_-]+`.
pub fn generate_deterministic_job_id(namespace: &str, external_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update((namespace.len() as u64).to_le_bytes());
    hasher.update(namespace.as_bytes());
    hasher.update(external_id.as_bytes());
    let digest = hasher.finalize();
    let mut id: String = namespace
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        id.push_str("event");
    }
    id.push('-');
    // Not `format!` per byte: that was 16 allocations for every webhook event.
    crate::hex::push_hex(&mut id, &digest[..16]);
    id
}

/// The job id for a de-dupe key: the key's last `:`-separated part is the external id, the
/// rest its namespace (`webhook:baileys:ABC` → namespace `webhook:baileys`, id `ABC`).
pub fn job_id_for_dedupe_key(dedupe_key: &str) -> String {
    match dedupe_key.rsplit_once(':') {
        Some((ns, ext)) => generate_deterministic_job_id(ns, ext),
        None => generate_deterministic_job_id("event", dedupe_key),
    }
}

impl JobStore {
    /// Enqueues `job` unless the event named by `dedupe_key` was already admitted within
    /// `ttl_secs`. The lock and the job are written by one script: never one without the other.
    /// Unless the job carries an explicit id, its id is [`job_id_for_dedupe_key`].
    pub async fn enqueue_with_dedupe(
        &self,
        job: NewJob,
        dedupe_key: &str,
        ttl_secs: u64,
    ) -> Result<Enqueued, JobError> {
        match self.admit(job, Some((dedupe_key, ttl_secs)), None).await? {
            Admitted::Done(e) => Ok(e),
            Admitted::Fenced(_) | Admitted::Busy(_) => Err(JobError::Invalid(
                "an unfenced, locked enqueue was refused".into(),
            )),
        }
    }

    /// Enqueues a batch of events, each under its own de-dupe key, in one round trip. Each
    /// event is admitted atomically on its own (as by [`JobStore::enqueue_with_dedupe`]); the
    /// batch as a whole is not one transaction. Every job is validated before anything is sent.
    pub async fn enqueue_many_with_dedupe(
        &self,
        events: Vec<(NewJob, String)>,
        ttl_secs: u64,
    ) -> Result<Vec<Enqueued>, JobError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (job, key) in events {
            pipe.add_command(self.dedupe_cmd(job, Some((&key, ttl_secs)), None)?);
        }
        let replies: Vec<(i64, String)> = self.admit_acknowledged(pipe).await?;
        Ok(replies
            .into_iter()
            .map(|(code, id)| {
                if code == 1 {
                    Enqueued::New(id)
                } else {
                    Enqueued::Duplicate(id)
                }
            })
            .collect())
    }

    /// The de-dupe script (see `lua/enqueue_dedupe.lua`) under `lock` (de-dupe key, TTL), or
    /// without one for an explicit id (`None`), optionally fenced by the scheduler leader lock.
    pub(crate) async fn admit(
        &self,
        job: NewJob,
        lock: Option<(&str, u64)>,
        fence: Option<&Fence<'_>>,
    ) -> Result<Admitted, JobError> {
        let mut pipe = redis::pipe();
        pipe.add_command(self.dedupe_cmd(job, lock, fence)?);
        const _: () = assert!(REPLY.len() == 2);
        let (code, value): (i64, String) = self
            .admit_acknowledged::<(i64, String)>(pipe)
            .await?
            .pop()
            .ok_or_else(|| JobError::Invalid("the de-dupe script returned nothing".into()))?;
        Ok(match code {
            1 => Admitted::Done(Enqueued::New(value)),
            0 => Admitted::Done(Enqueued::Duplicate(value)),
            -2 => Admitted::Busy(value),
            _ => Admitted::Fenced(value),
        })
    }

    /// Runs a pipeline of de-dupe script calls and, with `redis.ack_replicas`, a `WAIT` behind
    /// them in the same request on the same connection, so that it counts exactly their writes.
    /// A batch that too few replicas confirmed is an error ([`JobError::NotReplicated`]): it
    /// stands, and the caller's retry is de-duplicated.
    async fn admit_acknowledged<T: redis::FromRedisValue>(
        &self,
        mut pipe: redis::Pipeline,
    ) -> Result<Vec<T>, JobError> {
        let mut conn = self.write_conn().await?;
        let Some((wanted, wait)) = self.wait_cmd() else {
            return Ok(scripts::query_loading(&mut conn, &ENQUEUE_DEDUPE, &pipe).await?);
        };
        pipe.add_command(wait);
        let mut replies: Vec<redis::Value> =
            scripts::query_loading(&mut conn, &ENQUEUE_DEDUPE, &pipe).await?;
        let got: u32 = match replies.pop() {
            Some(v) => redis::from_redis_value(v)?,
            None => 0,
        };
        if got < wanted {
            return Err(JobError::NotReplicated { wanted, got });
        }
        Ok(replies
            .into_iter()
            .map(redis::from_redis_value)
            .collect::<Result<_, _>>()?)
    }

    /// Enqueues a job with an explicit id unless a job of that id is queued, scheduled, started
    /// or deferred: `Ok(Err(status))` then, and nothing is written. A finished or failed job of
    /// that id is replaced. One script, so two concurrent calls cannot both push it.
    pub async fn enqueue_unique(&self, job: NewJob) -> Result<Result<String, String>, JobError> {
        if !job.options.depends_on.is_empty() {
            job.validate()?;
            let Some(id) = job.options.job_id.clone() else {
                return Err(JobError::Invalid("a unique enqueue needs a job id".into()));
            };
            let ids = [id];
            return Ok(self
                .enqueue_dependent(std::slice::from_ref(&job), &ids, true)
                .await?
                .map(|()| ids[0].clone()));
        }
        match self.admit(job, None, None).await? {
            Admitted::Done(Enqueued::New(id)) => Ok(Ok(id)),
            Admitted::Busy(status) => Ok(Err(status)),
            Admitted::Done(Enqueued::Duplicate(_)) | Admitted::Fenced(_) => Err(JobError::Invalid(
                "the unique enqueue answered as a de-dupe".into(),
            )),
        }
    }

    /// One `EVALSHA` of the de-dupe script for `job`.
    // Long on purpose: one script call, its arguments in enqueue_dedupe.lua's order.
    fn dedupe_cmd(
        &self,
        mut job: NewJob,
        lock: Option<(&str, u64)>,
        fence: Option<&Fence<'_>>,
    ) -> Result<redis::Cmd, JobError> {
        // Without a lock (`enqueue_unique`) the job names its own id and nothing is locked.
        let (lock_key, ttl_secs, id) = match (lock, &job.options.job_id) {
            (Some((key, ttl_secs)), given) => {
                if key.is_empty() || key.len() > 512 {
                    return Err(JobError::Invalid(
                        "dedupe key must be 1-512 characters".into(),
                    ));
                }
                if !(1..=MAX_DEDUPE_TTL_SECS).contains(&ttl_secs) {
                    return Err(JobError::Invalid(format!(
                        "dedupe TTL {ttl_secs} must be 1 to {MAX_DEDUPE_TTL_SECS} seconds (30 days)"
                    )));
                }
                let id = given.clone().unwrap_or_else(|| job_id_for_dedupe_key(key));
                (Keys::dedupe_lock(key), ttl_secs, id)
            }
            (None, Some(id)) => (String::new(), 0, id.clone()),
            (None, None) => {
                return Err(JobError::Invalid(
                    "an enqueue without a de-dupe key needs an explicit job id".into(),
                ));
            }
        };
        job.options.job_id = Some(id.clone());
        job.validate()?;
        if !job.options.depends_on.is_empty() {
            // One event, one job: a chain of jobs is enqueued with `enqueue_many`.
            return Err(JobError::Invalid(
                "depends_on is not supported on a de-duplicated enqueue".into(),
            ));
        }
        let ts = rq_timestamp(self.now());
        let (lane, fields) = self.new_job_fields(&job, &ts)?;
        let keys = &self.keys;
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(ENQUEUE_DEDUPE.get_hash()).arg(FIXED_KEYS.len());
        args!(cmd, FIXED_KEYS;
            &lock_key,
            keys.job(&id),
            match lane {
                Some(tenant) => keys.lane(&job.queue, tenant),
                None => keys.queue(&job.queue),
            },
            keys.queues(),
            Keys::scheduler_lock(),
            Keys::scheduler_entries(),
            Keys::unstarted(&id),
        );
        let (token, entry, slot_ms) = fence.map_or(("", "", 0), |f| (f.token, f.entry, f.slot_ms));
        args!(cmd, FIXED_ARGS;
            &id,
            ttl_secs,
            if job.options.at_front { "L" } else { "R" },
            job.options.ttl.unwrap_or(0),
            keys.rq_prefix(),
            token,
            entry,
            slot_ms,
            &job.queue,
            lane.unwrap_or(""),
        );
        for (field, value) in &fields {
            cmd.arg(*field).arg(value.as_bytes());
        }
        // A scheduler slot's lock is not released by deleting its job: slots fire forward only.
        if lock.is_some() && fence.is_none() {
            cmd.arg("dedupe_lock").arg(&lock_key);
        }
        Ok(cmd)
    }
}

/// The scheduler's fence: its lock token, and the entry and slot being fired.
pub(crate) struct Fence<'a> {
    pub(crate) token: &'a str,
    pub(crate) entry: &'a str,
    pub(crate) slot_ms: i64,
}

/// What the (possibly fenced) de-dupe script did.
pub(crate) enum Admitted {
    Done(Enqueued),
    /// The leader lock is not (or no longer) the fence's: nothing was written. Holds the
    /// current holder, empty when nobody holds it.
    Fenced(String),
    /// Without a lock: a job of that id is active (its status); nothing was written.
    Busy(String),
}

pub(crate) static ENQUEUE_DEDUPE: LuaScript = LuaScript::new(
    with_lanes!("lua/enqueue_dedupe.lua"),
    &[&FIXED_KEYS, &FIXED_ARGS, &REPLY],
);

/// enqueue_dedupe.lua's keys.
const FIXED_KEYS: Layout = Layout {
    name: "FIXED_KEYS",
    fields: &[
        "lock",
        "job",
        "list",
        "queues",
        "leader_lock",
        "entries",
        "unstarted",
    ],
};

/// enqueue_dedupe.lua's arguments before the job hash's fields.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &[
        "id", "lock_ttl", "side", "wait_ttl", "prefix", "fence", "entry", "slot_ms", "queue",
        "lane",
    ],
};

/// Enqueued, duplicate, fenced out or busy (the code), and the id, holder or status.
const REPLY: Layout = Layout {
    name: "REPLY",
    fields: &["code", "value"],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::is_valid_job_id;

    #[test]
    fn ids_are_stable_distinct_and_rq_safe() {
        let a = generate_deterministic_job_id("webhook:baileys", "3EB0C767D71D");
        assert_eq!(
            a,
            generate_deterministic_job_id("webhook:baileys", "3EB0C767D71D")
        );
        // Pinned: a provider's retry that arrives after an upgrade must map to the same id.
        // (Python: sha256(struct.pack("<Q", 15) + b"webhook:baileys" + b"3EB0C767D71D"))
        assert_eq!(a, "webhook-baileys-fdda32973b86b12a4876901626fc460c");
        assert!(is_valid_job_id(&a));
        assert_ne!(
            a,
            generate_deterministic_job_id("webhook:baileys", "3EB0C767D71E")
        );
        // Length-prefixing keeps namespace/id splits apart.
        assert_ne!(
            generate_deterministic_job_id("a:b", "c"),
            generate_deterministic_job_id("a", "b:c")
        );
        // Hostile input still yields a valid id.
        let weird = generate_deterministic_job_id("ns/../\u{1F600} x", "id with spaces\n");
        assert!(is_valid_job_id(&weird), "{weird}");
        assert!(is_valid_job_id(&generate_deterministic_job_id("", "")));
    }

    #[test]
    fn dedupe_key_splits_at_the_last_colon() {
        assert_eq!(
            job_id_for_dedupe_key("webhook:baileys:ABC"),
            generate_deterministic_job_id("webhook:baileys", "ABC")
        );
        assert_eq!(
            job_id_for_dedupe_key("plain"),
            generate_deterministic_job_id("event", "plain")
        );
    }
}
