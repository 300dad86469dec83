//! Enqueueing: one `MULTI` per call (or per batch), exactly the writes RQ's `Queue.enqueue`
//! makes (`shared/rq-protocol.md` §3.1.1, §6.3 (b)), so a Python RQ worker can run the job.

use super::JobStore;
use super::error::JobError;
use super::job::{Field, JobInfo, NewJob, rq_timestamp};
use super::keys::Keys;

/// The ids of one batch bound for one list: (queue, tenant lane, indexes to `RPUSH`, to `LPUSH`).
type Push<'a> = (&'a str, Option<&'a str>, Vec<usize>, Vec<usize>);

/// How many wake-up tokens a fair queue's bell holds at most (lanes.lua's LANE_BELL_TOKENS).
const LANE_BELL_TOKENS: isize = 16;

/// `HSET key field value ...`, sized up front: built per job, so growing its buffers
/// argument by argument showed in profiles of enqueue.
fn hset(key: &str, fields: &[(&'static str, Field<'_>)]) -> redis::Cmd {
    let size = 4
        + key.len()
        + fields
            .iter()
            .map(|(f, v)| f.len() + v.as_bytes().len())
            .sum::<usize>();
    let mut cmd = redis::Cmd::with_capacity(2 + 2 * fields.len(), size);
    cmd.arg("HSET").arg(key);
    for (field, value) in fields {
        cmd.arg(*field).arg(value.as_bytes());
    }
    cmd
}

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
            .query_async(&mut self.conn().await?)
            .await?;
        JobInfo::from_hash(id, hash)
    }

    /// Enqueues a batch in one round trip and one transaction: all of them or none. A batch in
    /// which a job names parents (`depends_on`) goes through one script instead (dependencies.rs).
    ///
    /// Per job the transaction holds just its hash write (plus `EXPIRE` when it has a TTL):
    /// explicit ids are cleared by one variadic `DEL` up front, and the pushes go out as one
    /// `RPUSH` (and one `LPUSH` for `at_front`) per queue in batch order, which leaves each list
    /// exactly as job-by-job pushes would. On a fair queue a job with a tenant goes to its
    /// tenant's lane instead, which joins the round robin (as lanes.lua's `push_job` does; with no
    /// read involved, a transaction is enough).
    // Long on purpose: one MULTI whose commands must stay in the order the comment above describes.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<String>, JobError> {
        let ts = rq_timestamp(self.now());
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            job.validate()?;
            ids.push(
                job.options
                    .job_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            );
        }
        if jobs.iter().any(|j| !j.options.depends_on.is_empty()) {
            self.enqueue_dependent(jobs, &ids, false)
                .await?
                .map_err(|status| {
                    JobError::Invalid(format!("enqueue_dependent refused a job as {status}"))
                })?;
            return Ok(ids);
        }
        let job_keys: Vec<String> = ids.iter().map(|id| self.keys.job(id)).collect();
        let mut pipe = redis::pipe();
        pipe.atomic();
        // A reused explicit id must not inherit fields (status, ended_at, results) of an earlier
        // run; a fresh UUID cannot collide, so it needs no DEL. A key named twice in one DEL is
        // harmless.
        let explicit: Vec<&String> = jobs
            .iter()
            .zip(&job_keys)
            .filter(|(job, _)| job.options.job_id.is_some())
            .map(|(_, key)| key)
            .collect();
        if !explicit.is_empty() {
            pipe.del(&explicit).ignore();
        }
        // Only a batch with two or more explicit ids can hold one twice.
        let mut seen =
            (explicit.len() > 1).then(|| std::collections::HashSet::with_capacity(explicit.len()));
        // Batches rarely span more than a few lists.
        let mut pushes: Vec<Push<'_>> = Vec::new();
        for (i, (job, job_key)) in jobs.iter().zip(&job_keys).enumerate() {
            // The same id twice in one batch: the later job replaces the earlier one's hash.
            if job.options.job_id.is_some()
                && seen
                    .as_mut()
                    .is_some_and(|seen| !seen.insert(ids[i].as_str()))
            {
                pipe.del(job_key).ignore();
            }
            let (lane, fields) = self.new_job_fields(job, &ts)?;
            pipe.add_command(hset(job_key, &fields)).ignore();
            if let Some(ttl) = job.options.ttl {
                pipe.expire(job_key, ttl).ignore();
            }
            let slot = match pushes
                .iter()
                .position(|(q, l, _, _)| *q == job.queue && *l == lane)
            {
                Some(slot) => slot,
                None => {
                    pushes.push((&job.queue, lane, Vec::new(), Vec::new()));
                    pushes.len() - 1
                }
            };
            let (_, _, back, front) = &mut pushes[slot];
            if job.options.at_front {
                front.push(i);
            } else {
                back.push(i);
            }
        }
        for (queue, lane, back, front) in &pushes {
            let key = match lane {
                Some(tenant) => self.keys.lane(queue, tenant),
                None => self.keys.queue(queue),
            };
            if !back.is_empty() {
                pipe.rpush(&key, back.iter().map(|&i| &ids[i]).collect::<Vec<_>>())
                    .ignore();
            }
            if !front.is_empty() {
                pipe.lpush(&key, front.iter().map(|&i| &ids[i]).collect::<Vec<_>>())
                    .ignore();
            }
            // Registered once per queue in the batch, inside the same transaction.
            pipe.sadd(self.keys.queues(), key).ignore();
            if let Some(tenant) = lane {
                // The queue itself stays listed too: `rq info` shows its registries.
                pipe.sadd(self.keys.queues(), self.keys.queue(queue))
                    .ignore();
                pipe.cmd("ZADD")
                    .arg(Keys::fair_ring(queue))
                    .arg("NX")
                    .arg(0)
                    .arg(tenant)
                    .ignore();
                pipe.incr(Keys::fair_queued(queue), back.len() + front.len())
                    .ignore();
                let bell = Keys::fair_bell(queue);
                pipe.rpush(&bell, "1")
                    .ignore()
                    .ltrim(&bell, -LANE_BELL_TOKENS, -1)
                    .ignore();
            }
        }
        if !ids.is_empty() {
            let mut conn = self.write_conn().await?;
            pipe.query_async::<()>(&mut conn).await?;
            // WAIT cannot run inside the transaction (it would not block there): it follows on
            // the same connection, and counts this client's writes up to the transaction.
            if let Some((wanted, wait)) = self.wait_cmd() {
                let got: u32 = wait.query_async(&mut conn).await?;
                if got < wanted {
                    return Err(JobError::NotReplicated { wanted, got });
                }
            }
        }
        Ok(ids)
    }
}
