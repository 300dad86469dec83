//! Enqueueing: one `MULTI` per call (or per batch), exactly the writes RQ's `Queue.enqueue`
//! makes (`shared/rq-protocol.md` §3.1.1, §6.3 (b)), so a Python RQ worker can run the job.

use chrono::Utc;
use redis::Pipeline;

use super::error::JobError;
use super::job::{JobInfo, NewJob};
use super::{JobStore, keys::Keys};

impl JobStore {
    /// Writes the job hash and pushes its id, atomically; returns the job id.
    ///
    /// An explicit `job_id` that already exists is replaced, as RQ does without `unique`;
    /// use [`JobStore::enqueue_with_dedupe`] for events that may arrive twice.
    pub async fn enqueue(&self, job: NewJob) -> Result<String, JobError> {
        let mut ids = self.enqueue_many(std::slice::from_ref(&job)).await?;
        ids.pop()
            .ok_or_else(|| JobError::Invalid("enqueue produced no id".into()))
    }

    /// The job with this id, decoded; `None` if there is none (or its TTL lapsed).
    pub async fn fetch_job(&self, id: &str) -> Result<Option<JobInfo>, JobError> {
        let hash: std::collections::HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.keys.job(id))
            .query_async(&mut self.conn())
            .await?;
        JobInfo::from_hash(id, hash)
    }

    /// Enqueues a batch in one round trip and one transaction: all of them or none.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<String>, JobError> {
        let now = Utc::now();
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut ids = Vec::with_capacity(jobs.len());
        let mut queues: Vec<&str> = Vec::new();
        for job in jobs {
            job.validate()?;
            let id = job
                .options
                .job_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            push_job(&mut pipe, &self.keys, job, &id, &job.hash_fields(now)?);
            if !queues.contains(&job.queue.as_str()) {
                queues.push(&job.queue);
            }
            ids.push(id);
        }
        // Registered once per queue in the batch, inside the same transaction.
        for q in queues {
            pipe.sadd(self.keys.queues(), self.keys.queue(q)).ignore();
        }
        if !ids.is_empty() {
            pipe.query_async::<()>(&mut self.conn()).await?;
        }
        Ok(ids)
    }
}

fn push_job(pipe: &mut Pipeline, keys: &Keys, job: &NewJob, id: &str, fields: &[(&str, Vec<u8>)]) {
    let queue_key = keys.queue(&job.queue);
    let job_key = keys.job(id);
    // A reused explicit id must not inherit fields (status, ended_at, results) of an earlier
    // run; a fresh UUID cannot collide, so it skips the DEL.
    if job.options.job_id.is_some() {
        pipe.del(&job_key).ignore();
    }
    pipe.hset_multiple(&job_key, fields).ignore();
    if let Some(ttl) = job.options.ttl {
        pipe.expire(&job_key, ttl).ignore();
    }
    if job.options.at_front {
        pipe.lpush(&queue_key, id).ignore();
    } else {
        pipe.rpush(&queue_key, id).ignore();
    }
}
