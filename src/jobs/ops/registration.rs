//! A worker's registration as RQ records it: register, find RQ 1.x peers, unregister.

use std::time::Duration;

use super::super::error::JobError;
use super::super::job::rq_timestamp;
use super::super::keys::Keys;
use super::{WorkerInfo, Workers, ttl_secs};

impl Workers<'_> {
    /// Registers the worker as RQ does (`rq:worker:<w>`, `rq:workers`, `rq:workers:<q>`).
    pub async fn register_worker(&self, w: &WorkerInfo, ttl: Duration) -> Result<(), JobError> {
        // Deadlines are about to be written: on Redis's clock, not this host's.
        self.store.sync_clock().await?;
        let k = &self.keys();
        let wkey = k.worker(&w.name);
        let now = rq_timestamp(self.now());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&wkey)
            .hset_multiple(
                &wkey,
                &[
                    ("birth", now.as_str()),
                    ("last_heartbeat", now.as_str()),
                    ("queues", &w.queues.join(",")),
                    ("pid", &w.pid.to_string()),
                    ("hostname", &w.hostname),
                    ("ip_address", "unknown"),
                    // `prosaas 0.2.0 (commit 1a2b3c4)`: `rq info`, the dashboard and health
                    // show which build each worker of a mixed fleet runs.
                    ("version", &format!("prosaas {}", crate::version::DESCRIBE)),
                    (
                        "python_version",
                        concat!("rust (prosaas ", env!("CARGO_PKG_VERSION"), ")"),
                    ),
                    ("state", "idle"),
                    ("successful_job_count", "0"),
                    ("failed_job_count", "0"),
                    ("total_working_time", "0"),
                ],
            )
            .expire(&wkey, ttl_secs(ttl))
            .sadd(k.workers(), &wkey)
            .sadd(Keys::inboxes(), &w.name);
        for q in &w.queues {
            pipe.sadd(k.workers_of(q), &wkey);
            // The weights this worker was configured with, for every claim to read: the last
            // worker to register wins, so a rolling change settles once every worker runs it.
            if let Some(fair) = self.store.fairness(q) {
                let weights = Keys::fair_weights(q);
                pipe.del(&weights);
                if !fair.weights.is_empty() {
                    pipe.hset_multiple(&weights, &fair.weights.iter().collect::<Vec<_>>());
                }
            }
        }
        pipe.query_async::<()>(&mut self.conn().await?).await?;
        Ok(())
    }

    /// Whether a registered worker reports an RQ 1.x version (RQ writes `version` on its
    /// registration; prosaas writes `prosaas <version>`).
    pub async fn rq1_workers_registered(&self) -> Result<bool, JobError> {
        let workers: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().workers())
            .query_async(&mut self.conn().await?)
            .await?;
        if workers.is_empty() {
            return Ok(false);
        }
        let mut pipe = redis::pipe();
        for w in &workers {
            pipe.hget(w, "version");
        }
        let versions: Vec<Option<String>> = pipe.query_async(&mut self.conn().await?).await?;
        Ok(versions.iter().flatten().any(|v| v.starts_with("1.")))
    }

    /// Removes the worker from RQ's sets and marks its hash dead, as RQ's `register_death`.
    pub async fn unregister_worker(&self, w: &WorkerInfo) -> Result<(), JobError> {
        let k = &self.keys();
        let wkey = k.worker(&w.name);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(Keys::running(&w.name))
            .srem(k.workers(), &wkey)
            .hset_multiple(
                &wkey,
                &[
                    ("death", rq_timestamp(self.now())),
                    ("state", "dead".to_owned()),
                ],
            )
            .expire(&wkey, 60);
        for q in &w.queues {
            pipe.srem(k.workers_of(q), &wkey);
        }
        pipe.query_async::<()>(&mut self.conn().await?).await?;
        Ok(())
    }
}
