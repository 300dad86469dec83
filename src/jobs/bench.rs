//! Redis-side helpers for `prosaas bench`: an emptiness guard, command counters, and cleanup
//! of the bench's own keys (never anything else).

use std::collections::HashMap;

use super::JobStore;
use super::error::JobError;
use super::keys::Keys;

/// What a long run watches for growth (see [`Bench::footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub used_memory: u64,
    pub keys: u64,
    /// Entries in the queue's finished and failed registries.
    pub registered: u64,
    /// Of those, entries already past their TTL.
    pub expired: u64,
}

/// Counters read by [`Bench::command_totals`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RedisCounters {
    pub commands: u64,
    pub scripts: u64,
    pub cpu_secs: f64,
}

/// The bench's view of the store: `JobStore::bench()`. Kept apart from the handle the roles
/// use, so that bulk deletes by pattern and counters are reachable only from `prosaas bench`.
pub struct Bench<'a> {
    store: &'a JobStore,
}

impl JobStore {
    /// The bench's helpers (see [`Bench`]).
    pub fn bench(&self) -> Bench<'_> {
        Bench { store: self }
    }
}

impl Bench<'_> {
    async fn conn(&self) -> Result<redis::aio::ConnectionManager, JobError> {
        self.store.conn().await
    }

    /// Keys in the current database (the bench refuses to run on a database that holds any,
    /// unless forced, so it cannot pollute production data).
    pub async fn key_count(&self) -> Result<u64, JobError> {
        Ok(redis::cmd("DBSIZE")
            .query_async(&mut self.conn().await?)
            .await?)
    }

    /// Redis's counters for a scenario's deltas, from one `INFO cpu commandstats`: total commands
    /// executed (commands run inside scripts included), `EVALSHA` calls alone, and the CPU
    /// seconds (user + system) the Redis process has used.
    pub async fn command_totals(&self) -> Result<RedisCounters, JobError> {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .arg("commandstats")
            .query_async(&mut self.conn().await?)
            .await?;
        let mut c = RedisCounters::default();
        for line in info.lines() {
            if let Some(v) = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))
            {
                c.cpu_secs += v.trim().parse::<f64>().unwrap_or(0.0);
                continue;
            }
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
                c.commands += calls;
            }
            if name == "evalsha" {
                c.scripts = calls;
            }
        }
        Ok(c)
    }

    /// Deletes every key matching one of `patterns` (SCAN + UNLINK); returns how many.
    pub async fn delete_matching(&self, patterns: &[String]) -> Result<u64, JobError> {
        let mut conn = self.conn().await?;
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

    /// What a long run watches for growth, in one round trip: Redis's used memory (bytes), the
    /// database's keys, and `queue`'s finished and failed registries (entries, and entries already
    /// expired: score in [0, now]).
    pub async fn footprint(&self, queue: &str) -> Result<Footprint, JobError> {
        let now = self.store.now().timestamp();
        let (info, keys, finished, finished_expired, failed, failed_expired): (
            String,
            u64,
            u64,
            u64,
            u64,
            u64,
        ) = redis::pipe()
            .cmd("INFO")
            .arg("memory")
            .cmd("DBSIZE")
            .zcard(self.store.keys.finished(queue))
            .zcount(self.store.keys.finished(queue), 0, now)
            .zcard(self.store.keys.failed(queue))
            .zcount(self.store.keys.failed(queue), 0, now)
            .query_async(&mut self.conn().await?)
            .await?;
        let used_memory = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok(Footprint {
            used_memory,
            keys,
            registered: finished + failed,
            expired: finished_expired + failed_expired,
        })
    }

    /// What stopped processes of the bench (workers of `prosaas bench soak`) leave behind by
    /// design: their names in the inbox set (kept for recovery) and their RQ scheduler record.
    pub async fn forget_processes(&self, pids: &[u32]) -> Result<(), JobError> {
        let listed: Vec<String> = redis::cmd("SMEMBERS")
            .arg(Keys::inboxes())
            .query_async(&mut self.conn().await?)
            .await?;
        let ours: Vec<&String> = listed
            .iter()
            .filter(|w| pids.iter().any(|p| w.contains(&format!(".{p}."))))
            .collect();
        let mut pipe = redis::pipe();
        if !ours.is_empty() {
            pipe.srem(Keys::inboxes(), &ours).ignore();
        }
        for p in pids {
            pipe.del(self.store.keys.rq_scheduler(&p.to_string()))
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn().await?).await?;
        Ok(())
    }

    /// Finished jobs of one queue, in one command (the bench polls it while a drain runs).
    pub async fn finished_count(&self, queue: &str) -> Result<u64, JobError> {
        Ok(redis::cmd("ZCARD")
            .arg(self.store.keys.finished(queue))
            .query_async(&mut self.conn().await?)
            .await?)
    }

    /// The bench's keys: its queue and registries, its jobs and results (ids `bench-*`), its
    /// de-dupe locks and workers. Everything else is left alone.
    pub async fn delete_bench_keys(&self, queue: &str) -> Result<u64, JobError> {
        let patterns = self.store.keys.bench_patterns(queue, std::process::id());
        let n = self.delete_matching(&patterns).await?;
        let lanes = format!("{}@", self.store.keys.queue(queue));
        let mut listed: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.store.keys.queues())
            .query_async(&mut self.conn().await?)
            .await?;
        listed.retain(|q| q.starts_with(&lanes));
        listed.push(self.store.keys.queue(queue));
        redis::cmd("SREM")
            .arg(self.store.keys.queues())
            .arg(&listed)
            .query_async::<()>(&mut self.conn().await?)
            .await?;
        // Bench workers stay listed for recovery after they stop; they had nothing left over.
        let listed: Vec<String> = redis::cmd("SMEMBERS")
            .arg(Keys::inboxes())
            .query_async(&mut self.conn().await?)
            .await?;
        let ours: Vec<&String> = listed.iter().filter(|w| w.starts_with("bench-")).collect();
        if !ours.is_empty() {
            redis::cmd("SREM")
                .arg(Keys::inboxes())
                .arg(&ours)
                .query_async::<()>(&mut self.conn().await?)
                .await?;
        }
        Ok(n)
    }

    /// Whether `queue` is listed in `rq:queues`.
    pub async fn queue_registered(&self, queue: &str) -> Result<bool, JobError> {
        Ok(redis::cmd("SISMEMBER")
            .arg(self.store.keys.queues())
            .arg(self.store.keys.queue(queue))
            .query_async(&mut self.conn().await?)
            .await?)
    }

    /// Unlists `queue` from `rq:queues` if it holds no jobs (after a bench listed it).
    pub async fn forget_queue_if_empty(&self, queue: &str) -> Result<(), JobError> {
        let len: u64 = redis::cmd("LLEN")
            .arg(self.store.keys.queue(queue))
            .query_async(&mut self.conn().await?)
            .await?;
        if len == 0 {
            redis::cmd("SREM")
                .arg(self.store.keys.queues())
                .arg(self.store.keys.queue(queue))
                .query_async::<()>(&mut self.conn().await?)
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
                pipe.lrem(self.store.keys.queue(queue), 0, id)
                    .ignore()
                    .del(self.store.keys.job(id))
                    .ignore()
                    .del(self.store.keys.results(id))
                    .ignore();
            }
            pipe.query_async::<()>(&mut self.conn().await?).await?;
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
                    .arg(self.store.keys.job(id))
                    .arg("enqueued_at")
                    .arg("started_at");
            }
            let rows: Vec<(Option<String>, Option<String>)> =
                pipe.query_async(&mut self.conn().await?).await?;
            out.extend(chunk.iter().cloned().zip(rows));
        }
        Ok(out)
    }
}
