//! Operator views and actions: failed jobs with their errors, requeue, one job in full.

use std::collections::HashMap;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use super::error::JobError;
use super::job::{JobInfo, rq_timestamp};
use super::{JobStore, scripts};

/// The latest entry of a job's RQ result stream, decoded.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobResult {
    Finished { return_value: Option<Value> },
    Failed { error: String },
    Other { code: String },
}

/// A job in full, for `jobs show` and the admin API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub info: JobInfo,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub result: Option<JobResult>,
}

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    Missing,
    /// The job is running; it cannot be deleted under its worker.
    Running,
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
            let mut error = String::new();
            if flate2::read::ZlibDecoder::new(raw.as_slice())
                .read_to_string(&mut error)
                .is_err()
            {
                error = String::from_utf8_lossy(&raw).into_owned();
            }
            JobResult::Failed { error }
        }
        code => JobResult::Other {
            code: code.to_owned(),
        },
    })
}

type StreamEntries = Vec<(String, HashMap<String, Vec<u8>>)>;

impl JobStore {
    /// One job with its attempts, last retried error and latest result; `None` if absent.
    pub async fn job_detail(&self, id: &str) -> Result<Option<JobDetail>, JobError> {
        let (mut hash, latest): (HashMap<String, Vec<u8>>, StreamEntries) = redis::pipe()
            .hgetall(self.keys.job(id))
            .cmd("XREVRANGE")
            .arg(self.keys.results(id))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await?;
        let attempts = hash
            .remove("attempts")
            .and_then(|v| String::from_utf8_lossy(&v).parse().ok())
            .unwrap_or(0);
        let last_error = hash
            .remove("last_error")
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let Some(info) = JobInfo::from_hash(id, hash)? else {
            return Ok(None);
        };
        Ok(Some(JobDetail {
            info,
            attempts,
            last_error,
            result: latest.first().and_then(|(_, f)| decode_result(f)),
        }))
    }

    /// Failed jobs of `queue`, oldest failure first, `limit` from `offset`.
    pub async fn failed_jobs(
        &self,
        queue: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobDetail>, JobError> {
        let stop = isize::try_from(offset + limit).unwrap_or(isize::MAX) - 1;
        let start = isize::try_from(offset).unwrap_or(isize::MAX);
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.failed(queue))
            .arg(start)
            .arg(stop)
            .query_async(&mut self.conn())
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(d) = self.job_detail(&id).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Puts one failed job back on its queue.
    pub async fn requeue_failed(&self, queue: &str, id: &str) -> Result<Requeue, JobError> {
        let r: i64 = scripts::REQUEUE_FAILED
            .arg(self.keys.rq_prefix())
            .arg(queue)
            .arg(id)
            .arg(rq_timestamp(Utc::now()))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match r {
            1 => Requeue::Requeued,
            0 => Requeue::NotFailed,
            _ => Requeue::Missing,
        })
    }

    /// Deletes a job from its queue, its registries, its hash and its results.
    pub async fn delete_job(&self, id: &str) -> Result<Deleted, JobError> {
        let r: i64 = scripts::DELETE_JOB
            .arg(self.keys.rq_prefix())
            .arg(id)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match r {
            1 => Deleted::Deleted,
            -2 => Deleted::Running,
            _ => Deleted::Missing,
        })
    }

    /// Puts every failed job of `queue` back; returns how many went back.
    pub async fn requeue_all_failed(&self, queue: &str) -> Result<u64, JobError> {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.failed(queue))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await?;
        let mut n = 0;
        for id in ids {
            if self.requeue_failed(queue, &id).await? == Requeue::Requeued {
                n += 1;
            }
        }
        Ok(n)
    }
}
