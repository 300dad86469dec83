//! Operator views and actions: failed jobs with their errors, requeue, one job in full.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::Value;

use super::error::JobError;
use super::job::{JobInfo, rq_timestamp};
use super::keys::Keys;
use super::scripts::{Layout, LuaScript, args, plain, query_loading, with_lanes};

/// The latest entry of a job's RQ result stream, decoded.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobResult {
    Finished { return_value: Option<Value> },
    Failed { error: String },
    Other { code: String },
}

/// A job in full, for `jobs show` and the admin API.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub info: JobInfo,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Why a scheduled job waits, when a rate limit deferred it (`rate limit <name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred_reason: Option<String>,
    /// The de-dupe lock that admitted it (`job_lock:<key>`), for a de-duplicated event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedupe_lock: Option<String>,
    /// RQ callbacks of this job that no handler answered, so prosaas skipped them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unresolved_callbacks: Option<String>,
    pub result: Option<JobResult>,
    /// The jobs it waits or waited for (RQ's `depends_on`), with their statuses now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<Linked>,
    /// Jobs that wait for it, with their statuses (at most [`DEPENDENTS_SHOWN`]; the count is
    /// `dependents_total`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<Linked>,
    #[serde(skip_serializing_if = "is_zero")]
    pub dependents_total: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A job linked to another by a dependency, and its status now (`None`: its hash is gone,
/// deleted or expired: a dependent that waits for such a parent waits for nothing that will
/// ever end).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Linked {
    pub id: String,
    pub status: Option<String>,
}

/// The most dependents one job's detail lists.
pub const DEPENDENTS_SHOWN: usize = 100;

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    Missing,
    /// The job is running; it cannot be deleted under its worker.
    Running,
}

/// What a cancel did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Canceled {
    /// It was waiting (the status it had: queued, scheduled, deferred): it is now `canceled`
    /// and never starts.
    Canceled(String),
    AlreadyCanceled,
    /// It had ended (`finished`, `failed`, `stopped`): nothing to cancel.
    AlreadyEnded(String),
    /// It is running: only a stop can end it.
    Running,
    Missing,
}

/// What a stop request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The stop command went to the worker running the job; `listening` is how many
    /// subscribers got it (0: no worker listens on that channel).
    Sent {
        listening: u64,
    },
    /// The job is not running (its status).
    NotRunning(String),
    Missing,
}

/// What [`Admin::all_failed`] does to each failed job.
#[derive(Clone, Copy)]
enum AllFailed {
    Requeue,
    Delete,
}

/// What a requeue did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    Requeued,
    NotFailed,
    Missing,
}

fn decode_result(fields: &HashMap<String, Vec<u8>>) -> Option<JobResult> {
    let text = |k: &str| {
        fields
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Some(match text("type")?.as_str() {
        "1" => JobResult::Finished {
            return_value: text("return_value")
                .and_then(|b| BASE64.decode(b).ok())
                .and_then(|raw| serde_json::from_slice(&raw).ok()),
        },
        "2" => {
            let raw = text("exc_string")
                .and_then(|b| BASE64.decode(b).ok())
                .unwrap_or_default();
            let error = match super::zlib::decompress(&raw).or_raw(&raw) {
                Some(text) => String::from_utf8_lossy(&text).into_owned(),
                None => format!(
                    "(error text inflates past {} MiB; not shown)",
                    super::zlib::MAX_INFLATED >> 20
                ),
            };
            JobResult::Failed { error }
        }
        code => JobResult::Other {
            code: code.to_owned(),
        },
    })
}

type StreamEntries = Vec<(String, HashMap<String, Vec<u8>>)>;

/// One entry of a job's RQ result stream: an outcome that was recorded, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Recorded {
    /// When it was recorded (Unix ms, the stream entry's id).
    pub at_ms: u64,
    /// `finished`, `failed`, `stopped`, `retried`, `retries exhausted` (RQ's types 1-5).
    pub outcome: String,
    pub worker_name: Option<String>,
    /// The execution's start and end (Unix seconds), where the writer recorded them.
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
}

/// The most result entries one job's history shows (RQ keeps about 10).
const MAX_RECORDED: usize = 10;

super::capability! {
    /// Operator views and actions: failed jobs, requeue, delete, one job in full.
    Admin via admin
}

impl Admin<'_> {
    /// One job with its attempts, last retried error and latest result; `None` if absent.
    /// With its parents and dependents: two more round trips.
    pub async fn job_detail(&self, id: &str) -> Result<Option<JobDetail>, JobError> {
        let Some(mut detail) = self.job_details(&[id.to_owned()]).await?.pop().flatten() else {
            return Ok(None);
        };
        let k = self.keys();
        let (parents, total, dependents): (Option<String>, u64, Vec<String>) = redis::pipe()
            .hget(k.job(id), "dependency_ids")
            .scard(k.dependents(id))
            .srandmember_multiple(k.dependents(id), DEPENDENTS_SHOWN as isize)
            .query_async(&mut self.conn().await?)
            .await?;
        // Python may have written anything: a field that is not a list of strings lists nothing.
        let parents: Vec<String> = parents
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default();
        let mut dependents = dependents;
        dependents.sort();
        if parents.is_empty() && dependents.is_empty() {
            return Ok(Some(detail));
        }
        let mut pipe = redis::pipe();
        for linked in parents.iter().chain(&dependents) {
            pipe.hget(k.job(linked), "status");
        }
        let statuses: Vec<Option<String>> = pipe.query_async(&mut self.conn().await?).await?;
        let mut statuses = statuses.into_iter();
        let mut link = |ids: Vec<String>| -> Vec<Linked> {
            ids.into_iter()
                .map(|id| Linked {
                    id,
                    status: statuses.next().flatten(),
                })
                .collect()
        };
        detail.parents = link(parents);
        detail.dependents = link(dependents);
        detail.dependents_total = total;
        Ok(Some(detail))
    }

    /// Several jobs in one round trip (hash and latest result of each).
    pub async fn job_details(&self, ids: &[String]) -> Result<Vec<Option<JobDetail>>, JobError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys().job(id))
                .cmd("XREVRANGE")
                .arg(self.keys().results(id))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        let replies: Vec<(HashMap<String, Vec<u8>>, StreamEntries)> = {
            let flat: Vec<redis::Value> = pipe.query_async(&mut self.conn().await?).await?;
            let mut pairs = Vec::with_capacity(ids.len());
            let mut it = flat.into_iter();
            while let (Some(h), Some(x)) = (it.next(), it.next()) {
                pairs.push((redis::from_redis_value(h)?, redis::from_redis_value(x)?));
            }
            pairs
        };
        let mut out = Vec::with_capacity(ids.len());
        for (id, (mut hash, latest)) in ids.iter().zip(replies) {
            let attempts = hash
                .remove("attempts")
                .and_then(|v| String::from_utf8_lossy(&v).parse().ok())
                .unwrap_or(0);
            let mut text = |field| {
                hash.remove(field)
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            };
            let last_error = text("last_error");
            let deferred_reason = text("deferred_reason");
            let dedupe_lock = text("dedupe_lock");
            let unresolved_callbacks = text("unresolved_callbacks");
            out.push(JobInfo::from_hash(id, hash)?.map(|info| JobDetail {
                info,
                attempts,
                last_error,
                deferred_reason,
                dedupe_lock,
                unresolved_callbacks,
                result: latest.first().and_then(|(_, f)| decode_result(f)),
                parents: Vec::new(),
                dependents: Vec::new(),
                dependents_total: 0,
            }));
        }
        Ok(out)
    }

    /// Failed jobs of `queue`, oldest failure first, `limit` from `offset`: two round trips.
    pub async fn failed_jobs(
        &self,
        queue: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobDetail>, JobError> {
        let stop = isize::try_from(offset.saturating_add(limit)).unwrap_or(isize::MAX) - 1;
        let start = isize::try_from(offset).unwrap_or(isize::MAX);
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys().failed(queue))
            .arg(start)
            .arg(stop)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(self
            .job_details(&ids)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Puts failed jobs of `queue` back on it, in one script call; one outcome per id.
    async fn requeue_many(&self, queue: &str, ids: &[String]) -> Result<Vec<Requeue>, JobError> {
        let mut inv = REQUEUE_FAILED.prepare_invoke();
        args!(inv, REQUEUE_ARGS; self.keys().rq_prefix(), queue, rq_timestamp(self.now()));
        inv.arg(ids);
        let codes: Vec<i64> = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(codes
            .into_iter()
            .map(|c| match c {
                1 => Requeue::Requeued,
                0 => Requeue::NotFailed,
                _ => Requeue::Missing,
            })
            .collect())
    }

    /// Puts one failed job back on its queue.
    pub async fn requeue_failed(&self, queue: &str, id: &str) -> Result<Requeue, JobError> {
        let mut r = self.requeue_many(queue, &[id.to_owned()]).await?;
        r.pop()
            .ok_or_else(|| JobError::Invalid("the requeue script returned nothing".into()))
    }

    /// Deletes a job from its queue, its registries, its hash and its results.
    pub async fn delete_job(&self, id: &str) -> Result<Deleted, JobError> {
        let mut inv = DELETE_JOB.prepare_invoke();
        args!(inv, DELETE_ARGS; self.keys().rq_prefix(), id);
        let r: i64 = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(match r {
            1 => Deleted::Deleted,
            -2 => Deleted::Running,
            _ => Deleted::Missing,
        })
    }

    /// Cancels a job that has not started, as RQ's `job.cancel()` does; idempotent.
    pub async fn cancel_job(&self, id: &str) -> Result<Canceled, JobError> {
        let mut inv = CANCEL_JOB.prepare_invoke();
        args!(inv, CANCEL_ARGS; self.keys().rq_prefix(), id, self.now().timestamp());
        let (code, status): (i64, String) = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(match code {
            1 => Canceled::Canceled(status),
            2 => Canceled::AlreadyCanceled,
            3 => Canceled::AlreadyEnded(status),
            -2 => Canceled::Running,
            _ => Canceled::Missing,
        })
    }

    /// Asks the worker running `id` to stop it, as RQ's `send_stop_job_command` does; the job
    /// then ends `stopped` (its worker records it).
    pub async fn stop_job(&self, id: &str) -> Result<Stop, JobError> {
        if !super::is_valid_job_id(id) {
            return Err(JobError::Invalid(format!("{id:?} is not a valid job id")));
        }
        let mut inv = STOP_JOB.prepare_invoke();
        args!(inv, STOP_ARGS; self.keys().rq_prefix(), id);
        let (code, status, listening): (i64, String, u64) =
            inv.invoke_async(&mut self.conn().await?).await?;
        Ok(match code {
            1 => Stop::Sent { listening },
            3 => Stop::NotRunning(status),
            _ => Stop::Missing,
        })
    }

    /// `rq suspend [--duration S]`: no worker (prosaas's or RQ's) starts a job until [`Self::resume`]
    /// or, with a duration, until it lapses. Jobs in flight finish.
    pub async fn suspend(&self, duration_secs: Option<u64>) -> Result<(), JobError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys().suspended()).arg(1);
        if let Some(secs) = duration_secs {
            cmd.arg("EX").arg(secs);
        }
        let () = cmd.query_async(&mut self.conn().await?).await?;
        Ok(())
    }

    /// `rq resume`: workers start jobs again. `false` when they were not suspended.
    pub async fn resume(&self) -> Result<bool, JobError> {
        let removed: u64 = redis::cmd("DEL")
            .arg(self.keys().suspended())
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(removed > 0)
    }

    /// Pauses `queue` for every prosaas worker: no claim takes from it (its tenant lanes
    /// included) until [`Admin::unpause_queue`]; jobs in flight finish. `false` when it already
    /// was. Python RQ's workers do not know about it.
    pub async fn pause_queue(&self, queue: &str) -> Result<bool, JobError> {
        let added: u64 = redis::cmd("SADD")
            .arg(Keys::paused())
            .arg(queue)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(added > 0)
    }

    /// Whether `queue` is paused ([`Admin::pause_queue`]).
    pub async fn is_paused(&self, queue: &str) -> Result<bool, JobError> {
        Ok(redis::cmd("SISMEMBER")
            .arg(Keys::paused())
            .arg(queue)
            .query_async(&mut self.conn().await?)
            .await?)
    }

    /// Claims take from `queue` again. `false` when it was not paused.
    pub async fn unpause_queue(&self, queue: &str) -> Result<bool, JobError> {
        let removed: u64 = redis::cmd("SREM")
            .arg(Keys::paused())
            .arg(queue)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(removed > 0)
    }

    /// Puts every failed job of `queue` back, 500 per script call; returns how many went back.
    pub async fn requeue_all_failed(&self, queue: &str) -> Result<u64, JobError> {
        self.all_failed(queue, AllFailed::Requeue).await
    }

    /// Deletes every failed job of `queue` (hash, results, registry entry), 500 per round trip;
    /// returns how many were deleted. An entry whose hash is already gone leaves the registry
    /// too, uncounted.
    pub async fn delete_all_failed(&self, queue: &str) -> Result<u64, JobError> {
        self.all_failed(queue, AllFailed::Delete).await
    }

    /// Does `what` to the failed registry of `queue` a page at a time from its head (each page
    /// leaves it: requeued, deleted, or dropped when its hash is gone), never all ids at once,
    /// and to at most as many as it held when asked, so jobs that fail again meanwhile are not
    /// chased; returns how many were requeued or deleted.
    async fn all_failed(&self, queue: &str, what: AllFailed) -> Result<u64, JobError> {
        const PAGE: isize = 500;
        let failed = self.keys().failed(queue);
        let held: u64 = redis::cmd("ZCARD")
            .arg(&failed)
            .query_async(&mut self.conn().await?)
            .await?;
        let (mut seen, mut n) = (0u64, 0u64);
        while seen < held {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&failed)
                .arg(0)
                .arg(PAGE - 1)
                .query_async(&mut self.conn().await?)
                .await?;
            if ids.is_empty() {
                break;
            }
            seen += ids.len() as u64;
            n += match what {
                AllFailed::Requeue => self
                    .requeue_many(queue, &ids)
                    .await?
                    .into_iter()
                    .filter(|r| *r == Requeue::Requeued)
                    .count() as u64,
                AllFailed::Delete => self.delete_many(&failed, &ids).await?,
            };
        }
        Ok(n)
    }

    /// Deletes these jobs of the registry `registry`, one script call each in one pipeline;
    /// returns how many were deleted.
    async fn delete_many(&self, registry: &str, ids: &[String]) -> Result<u64, JobError> {
        let mut pipe = redis::pipe();
        for id in ids {
            let mut inv = DELETE_JOB.prepare_invoke();
            args!(inv, DELETE_ARGS; self.keys().rq_prefix(), id);
            pipe.invoke_script(&inv);
        }
        // Each delete is atomic on its own; this drops the entries of hashes already gone.
        pipe.zrem(registry, ids).ignore();
        let codes: Vec<i64> = query_loading(&mut self.conn().await?, &DELETE_JOB, &pipe).await?;
        Ok(codes.iter().filter(|c| **c == 1).count() as u64)
    }

    /// The outcomes recorded in a job's result stream, oldest first (at most
    /// [`MAX_RECORDED`]): with the job's timestamps, its history across requeues.
    pub async fn recorded(&self, id: &str) -> Result<Vec<Recorded>, JobError> {
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(self.keys().results(id))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(MAX_RECORDED)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(entries
            .into_iter()
            .rev()
            .map(|(entry, fields)| Recorded {
                at_ms: entry
                    .split('-')
                    .next()
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0),
                outcome: match fields.get("type").map(String::as_str) {
                    Some("1") => "finished".into(),
                    Some("2") => "failed".into(),
                    Some("3") => "stopped".into(),
                    Some("4") => "retried".into(),
                    Some("5") => "retries exhausted".into(),
                    other => format!("type {}", other.unwrap_or("?")),
                },
                worker_name: fields.get("worker_name").cloned(),
                started_at: fields
                    .get("execution_started_at")
                    .and_then(|v| v.parse().ok()),
                ended_at: fields
                    .get("execution_ended_at")
                    .and_then(|v| v.parse().ok()),
            })
            .collect())
    }
}

pub(crate) static REQUEUE_FAILED: LuaScript =
    LuaScript::new(with_lanes!("lua/requeue_failed.lua"), &[&REQUEUE_ARGS]);

/// requeue_failed.lua's arguments before its job ids.
const REQUEUE_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "queue", "now"],
};

pub(crate) static STOP_JOB: LuaScript = LuaScript::new(plain!("lua/stop_job.lua"), &[&STOP_ARGS]);

/// stop_job.lua's arguments.
const STOP_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "id"],
};

pub(crate) static CANCEL_JOB: LuaScript =
    LuaScript::new(with_lanes!("lua/cancel_job.lua"), &[&CANCEL_ARGS]);

/// cancel_job.lua's arguments.
const CANCEL_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "id", "now"],
};

pub(crate) static DELETE_JOB: LuaScript =
    LuaScript::new(with_lanes!("lua/delete_job.lua"), &[&DELETE_ARGS]);

/// delete_job.lua's arguments.
const DELETE_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "id"],
};
