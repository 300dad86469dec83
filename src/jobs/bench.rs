//! Redis-side helpers for `prosaas bench`: an emptiness guard, command counters, and cleanup
//! of the bench's own keys (never anything else).

use std::collections::HashMap;

use super::JobStore;
use super::error::JobError;

impl JobStore {
    /// Keys in the current database (the bench refuses to run on a database that holds any,
    /// unless forced, so it cannot pollute production data).
    pub async fn key_count(&self) -> Result<u64, JobError> {
        Ok(redis::cmd("DBSIZE").query_async(&mut self.conn()).await?)
    }

    /// Total commands Redis has executed, from `INFO commandstats`, and `EVALSHA` calls alone.
    /// Deltas of these give the commands (and scripts) a scenario cost per job; commands run
    /// inside scripts are counted by Redis too.
    pub async fn command_totals(&self) -> Result<(u64, u64), JobError> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn())
            .await?;
        let mut total = 0;
        let mut evalsha = 0;
        for line in info.lines() {
            let Some((name, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let calls: u64 = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            // INFO itself is the measurement, not the workload.
            if name != "info" {
                total += calls;
            }
            if name == "evalsha" {
                evalsha = calls;
            }
        }
        Ok((total, evalsha))
    }

    /// Deletes every key matching one of `patterns` (SCAN + UNLINK); returns how many.
    pub async fn delete_matching(&self, patterns: &[String]) -> Result<u64, JobError> {
        let mut conn = self.conn();
        let mut deleted = 0;
        for pattern in patterns {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                if !keys.is_empty() {
                    deleted += redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async::<u64>(&mut conn)
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }

    /// Finished jobs of one queue, in one command (the bench polls it while a drain runs).
    pub async fn finished_count(&self, queue: &str) -> Result<u64, JobError> {
        Ok(redis::cmd("ZCARD")
            .arg(self.keys.finished(queue))
            .query_async(&mut self.conn())
            .await?)
    }

    /// The bench's keys: its queue and registries, its jobs and results (ids `bench-*`), its
    /// de-dupe locks and workers. Everything else is left alone.
    pub async fn delete_bench_keys(&self, queue: &str) -> Result<u64, JobError> {
        let p = self.keys.rq_prefix();
        let patterns = vec![
            format!("{p}*:{queue}"),
            format!("{p}job:bench-*"),
            format!("{p}results:bench-*"),
            format!("{p}worker:bench-*"),
            format!("{p}scheduler:{}", std::process::id()),
            "job_lock:bench:*".to_owned(),
            format!("prosaas:maintenance:{queue}"),
            "prosaas:worker:bench-*".to_owned(),
        ];
        let n = self.delete_matching(&patterns).await?;
        redis::cmd("SREM")
            .arg(self.keys.queues())
            .arg(self.keys.queue(queue))
            .query_async::<()>(&mut self.conn())
            .await?;
        // Bench workers stay listed for recovery after they stop; they had nothing left over.
        let listed: Vec<String> = redis::cmd("SMEMBERS")
            .arg(super::worker::INBOXES)
            .query_async(&mut self.conn())
            .await?;
        let ours: Vec<&String> = listed.iter().filter(|w| w.starts_with("bench-")).collect();
        if !ours.is_empty() {
            redis::cmd("SREM")
                .arg(super::worker::INBOXES)
                .arg(&ours)
                .query_async::<()>(&mut self.conn())
                .await?;
        }
        Ok(n)
    }

    /// Whether `queue` is listed in `rq:queues`.
    pub async fn queue_registered(&self, queue: &str) -> Result<bool, JobError> {
        Ok(redis::cmd("SISMEMBER")
            .arg(self.keys.queues())
            .arg(self.keys.queue(queue))
            .query_async(&mut self.conn())
            .await?)
    }

    /// Unlists `queue` from `rq:queues` if it holds no jobs (after a bench listed it).
    pub async fn forget_queue_if_empty(&self, queue: &str) -> Result<(), JobError> {
        let len: u64 = redis::cmd("LLEN")
            .arg(self.keys.queue(queue))
            .query_async(&mut self.conn())
            .await?;
        if len == 0 {
            redis::cmd("SREM")
                .arg(self.keys.queues())
                .arg(self.keys.queue(queue))
                .query_async::<()>(&mut self.conn())
                .await?;
        }
        Ok(())
    }

    /// Deletes exactly these jobs (hash, results, their place on `queue`): for bench jobs that
    /// share a queue and an id scheme with real ones, so no pattern may be used.
    pub async fn delete_jobs(&self, queue: &str, ids: &[String]) -> Result<(), JobError> {
        for chunk in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.lrem(self.keys.queue(queue), 0, id)
                    .ignore()
                    .del(self.keys.job(id))
                    .ignore()
                    .del(self.keys.results(id))
                    .ignore();
            }
            pipe.query_async::<()>(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// `enqueued_at` and `started_at` of each job, for latency measured from the jobs' own
    /// timestamps.
    pub async fn job_timestamps(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, (Option<String>, Option<String>)>, JobError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HMGET")
                    .arg(self.keys.job(id))
                    .arg("enqueued_at")
                    .arg("started_at");
            }
            let rows: Vec<(Option<String>, Option<String>)> =
                pipe.query_async(&mut self.conn()).await?;
            out.extend(chunk.iter().cloned().zip(rows));
        }
        Ok(out)
    }
}
