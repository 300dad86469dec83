//! What the operator dashboard reads and keeps beyond the other views: its sessions, the
//! per-minute series that settle.lua counts, the workers with the jobs they run, and the live
//! calls that each calls process publishes.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::error::JobError;
use super::job::age_secs;
use super::keys::Keys;
use super::scripts;

/// Upper bounds (ms) of the enqueue→start wait buckets `w0`..`w11`; `w12` is everything longer.
pub const WAIT_BUCKETS_MS: [u64; 12] = [
    10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
];
/// Minutes of the overview's charts.
const SERIES_MINUTES: i64 = 60;
/// The most workers one read lists (sorted by name), and running jobs listed per worker.
const MAX_LISTED_WORKERS: usize = 200;
const MAX_JOBS_PER_WORKER: usize = 50;
/// A calls process's report older than this is from a process that is gone.
const LIVE_CALLS_STALE_SECS: f64 = 20.0;

/// The bucket of an enqueue→start wait of `secs`: the first whose bound it does not exceed, or
/// the open last one. settle.lua counts each execution under `<outcome>:<bucket>`.
pub(crate) fn wait_bucket(secs: f64) -> usize {
    let ms = (secs.max(0.0) * 1000.0) as u64;
    WAIT_BUCKETS_MS
        .iter()
        .position(|bound| ms <= *bound)
        .unwrap_or(WAIT_BUCKETS_MS.len())
}

/// One minute of the series.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Minute {
    /// Its start, Unix seconds.
    pub at: i64,
    pub finished: u64,
    /// Failed for good (retries are counted apart).
    pub failed: u64,
    pub retried: u64,
    /// Settled executions whose wait is known, and their median and 95th percentile (ms; a
    /// percentile is its bucket's upper bound, [`WAIT_BUCKETS_MS`], so it says "at most"; the
    /// open last bucket shows as the last bound).
    pub starts: u64,
    pub wait_p50_ms: Option<u64>,
    pub wait_p95_ms: Option<u64>,
}

impl Minute {
    /// From settle.lua's fields, `<outcome>:<wait bucket or ->` → executions.
    fn from_hash(at: i64, h: &HashMap<String, u64>) -> Self {
        let mut m = Self {
            at,
            ..Self::default()
        };
        let mut buckets = [0u64; WAIT_BUCKETS_MS.len() + 1];
        for (field, n) in h {
            let Some((kind, bucket)) = field.split_once(':') else {
                continue;
            };
            match kind {
                "ok" => m.finished += n,
                "fail" => m.failed += n,
                "retry" => m.retried += n,
                _ => {}
            }
            if let Some(b) = bucket
                .parse::<usize>()
                .ok()
                .and_then(|i| buckets.get_mut(i))
            {
                *b += n;
            }
        }
        m.starts = buckets.iter().sum();
        let quantile = |q: f64| -> Option<u64> {
            let rank = ((q * m.starts as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in buckets.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Some(WAIT_BUCKETS_MS[i.min(WAIT_BUCKETS_MS.len() - 1)]);
                }
            }
            None
        };
        if m.starts > 0 {
            m.wait_p50_ms = quantile(0.5);
            m.wait_p95_ms = quantile(0.95);
        }
        m
    }
}

/// A registered worker as the dashboard shows it (prosaas's or Python RQ's).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WorkerRow {
    pub name: String,
    pub hostname: Option<String>,
    pub pid: Option<String>,
    pub queues: Vec<String>,
    pub state: Option<String>,
    pub version: Option<String>,
    pub birth: Option<String>,
    pub last_heartbeat: Option<String>,
    /// Seconds since the last heartbeat, on Redis's clock.
    pub heartbeat_age_secs: Option<u64>,
    pub successful_job_count: u64,
    pub failed_job_count: u64,
    /// RQ's `current_job` field: what rq-dashboard and `rq info` show.
    pub current_job: Option<String>,
    /// The jobs it runs now (prosaas: its running set; Python RQ: its current job), at most
    /// 50, and how many there are in all.
    pub jobs: Vec<RunningJob>,
    pub running: u64,
}

/// A job a worker runs now.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunningJob {
    pub id: String,
    pub queue: Option<String>,
    pub description: Option<String>,
    pub started_at: Option<String>,
    pub age_secs: Option<u64>,
}

impl WorkerRow {
    /// A worker from its registration hash and its running set (`<id>:<execution id>`).
    fn read(
        name: String,
        mut h: HashMap<String, String>,
        running: &[String],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let current_job = h.remove("current_job").filter(|s| !s.is_empty());
        let mut ids: Vec<String> = running
            .iter()
            .map(|m| m.split(':').next().unwrap_or(m).to_owned())
            .collect();
        // A Python RQ worker has no running set: its current job is what it runs.
        if ids.is_empty()
            && let Some(c) = &current_job
        {
            ids.push(c.clone());
        }
        ids.sort();
        ids.dedup();
        let running = ids.len() as u64;
        ids.truncate(MAX_JOBS_PER_WORKER);
        let last_heartbeat = h.remove("last_heartbeat");
        Self {
            heartbeat_age_secs: last_heartbeat.as_deref().and_then(|t| age_secs(t, now)),
            last_heartbeat,
            hostname: h.remove("hostname"),
            pid: h.remove("pid"),
            queues: h
                .remove("queues")
                .map(|q| {
                    q.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            state: h.remove("state"),
            version: h.remove("version"),
            birth: h.remove("birth"),
            successful_job_count: count(h.get("successful_job_count")),
            failed_job_count: count(h.get("failed_job_count")),
            current_job,
            jobs: ids
                .into_iter()
                .map(|id| RunningJob {
                    id,
                    ..RunningJob::default()
                })
                .collect(),
            running,
            name,
        }
    }
}

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
    /// The operator dashboard's sessions, series, workers and live calls.
    Dashboard via dashboard
}

impl Dashboard<'_> {
    /// Records a signed-in session for `ttl_secs`.
    pub async fn open_session(&self, id: &str, ttl_secs: u64) -> Result<(), JobError> {
        redis::cmd("SET")
            .arg(Keys::dashboard_session(id))
            .arg(1)
            .arg("EX")
            .arg(ttl_secs)
            .query_async::<()>(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// Whether a session is still signed in (not signed out, not expired).
    pub async fn session_open(&self, id: &str) -> Result<bool, JobError> {
        let n: i64 = redis::cmd("EXISTS")
            .arg(Keys::dashboard_session(id))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(n == 1)
    }

    /// Signs a session out: its cookie is refused from now on, wherever it was copied to.
    pub async fn close_session(&self, id: &str) -> Result<(), JobError> {
        redis::cmd("DEL")
            .arg(Keys::dashboard_session(id))
            .query_async::<()>(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// The last [`SERIES_MINUTES`] minutes, oldest first, the current one included: one
    /// pipelined round trip.
    pub async fn series(&self) -> Result<Vec<Minute>, JobError> {
        let this_minute = self.now().timestamp().div_euclid(60);
        let minutes: Vec<i64> = (this_minute - SERIES_MINUTES + 1..=this_minute).collect();
        let mut pipe = redis::pipe();
        for m in &minutes {
            pipe.hgetall(Keys::minute(*m));
        }
        let hashes: Vec<HashMap<String, u64>> = pipe.query_async(&mut self.conn().await?).await?;
        Ok(minutes
            .iter()
            .zip(&hashes)
            .map(|(m, h)| Minute::from_hash(m * 60, h))
            .collect())
    }

    /// Registered workers with the jobs they run: two pipelined round trips after listing
    /// them, bounded ([`MAX_LISTED_WORKERS`], [`MAX_JOBS_PER_WORKER`]).
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, JobError> {
        let mut conn = self.conn().await?;
        let mut keys: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().workers())
            .query_async(&mut conn)
            .await?;
        keys.sort();
        keys.truncate(MAX_LISTED_WORKERS);
        let prefix = self.keys().worker("");
        let names: Vec<String> = keys
            .iter()
            .map(|k| k.strip_prefix(&prefix).unwrap_or(k).to_owned())
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (key, name) in keys.iter().zip(&names) {
            pipe.hgetall(key).smembers(Keys::running(name));
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        let now = self.now();
        let mut rows = Vec::with_capacity(names.len());
        let mut replies = replies.into_iter();
        for name in names {
            let (Some(hash), Some(running)) = (replies.next(), replies.next()) else {
                break;
            };
            let running: Vec<String> = redis::from_redis_value(running)?;
            rows.push(WorkerRow::read(
                name,
                redis::from_redis_value(hash)?,
                &running,
                now,
            ));
        }
        self.describe_running(&mut conn, &mut rows, now).await?;
        Ok(rows)
    }

    /// Fills in each listed running job's queue, description and age: one pipelined round trip.
    async fn describe_running(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        rows: &mut [WorkerRow],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), JobError> {
        if rows.iter().all(|r| r.jobs.is_empty()) {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for job in rows.iter().flat_map(|r| &r.jobs) {
            pipe.cmd("HMGET").arg(self.keys().job(&job.id)).arg(&[
                "origin",
                "description",
                "started_at",
            ]);
        }
        let fields: Vec<(Option<String>, Option<String>, Option<String>)> =
            pipe.query_async(conn).await?;
        let mut fields = fields.into_iter();
        for job in rows.iter_mut().flat_map(|r| &mut r.jobs) {
            if let Some((queue, description, started_at)) = fields.next() {
                job.age_secs = started_at.as_deref().and_then(|t| age_secs(t, now));
                (job.queue, job.description, job.started_at) = (queue, description, started_at);
            }
        }
        // Longest-running first (RQ timestamps sort as text).
        for row in rows.iter_mut() {
            row.jobs.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        }
        Ok(())
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

    /// Publishes this calls process's live calls (`calls`: JSON), replacing its last report.
    pub async fn publish_calls(&self, process: &str, calls: &Value) -> Result<(), JobError> {
        let report = serde_json::json!({
            "process": process,
            "at": self.store.unix_now(),
            "calls": calls,
        });
        let _dropped: u64 = scripts::LIVE_CALLS
            .key(Keys::live_calls())
            .arg(process)
            .arg(report.to_string())
            .arg(self.store.unix_now())
            .arg(LIVE_CALLS_STALE_SECS)
            .arg(60)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// Withdraws this process's report (it stops taking calls).
    pub async fn withdraw_calls(&self, process: &str) -> Result<(), JobError> {
        redis::cmd("HDEL")
            .arg(Keys::live_calls())
            .arg(process)
            .query_async::<()>(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// The current report of every calls process, with `age_secs` (how old the report is);
    /// reports of processes that stopped reporting are left out.
    pub async fn live_calls(&self) -> Result<Vec<Value>, JobError> {
        let reports: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(Keys::live_calls())
            .query_async(&mut self.conn().await?)
            .await?;
        let now = self.store.unix_now();
        let mut out: Vec<Value> = reports
            .values()
            .filter_map(|r| serde_json::from_str::<Value>(r).ok())
            .filter_map(|mut r| {
                let age = now - r.get("at")?.as_f64()?;
                (age <= LIVE_CALLS_STALE_SECS).then(|| {
                    r["age_secs"] = Value::from(age.max(0.0).round());
                    r
                })
            })
            .collect();
        out.sort_by(|a, b| a["process"].as_str().cmp(&b["process"].as_str()));
        Ok(out)
    }
}

fn count(v: Option<&String>) -> u64 {
    v.and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_bucketed_for_the_settle_script() {
        assert_eq!(wait_bucket(0.002), 0);
        assert_eq!(wait_bucket(0.010), 0);
        assert_eq!(wait_bucket(0.011), 1);
        assert_eq!(wait_bucket(0.2), 3);
        assert_eq!(wait_bucket(400.0), WAIT_BUCKETS_MS.len());
        assert_eq!(wait_bucket(-1.0), 0, "a clock step back is no wait");
    }

    #[test]
    fn a_minute_reads_its_counts_and_percentiles_from_the_fields() {
        let h: HashMap<String, u64> = [
            ("ok:0", 80),
            ("ok:5", 10),
            ("fail:0", 1),
            ("retry:0", 9),
            ("requeue:-", 3),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let m = Minute::from_hash(60, &h);
        assert_eq!((m.finished, m.failed, m.retried, m.starts), (90, 1, 9, 100));
        assert_eq!(m.wait_p50_ms, Some(10));
        assert_eq!(m.wait_p95_ms, Some(1_000));
        let empty = Minute::from_hash(0, &HashMap::new());
        assert_eq!((empty.starts, empty.wait_p95_ms), (0, None));
    }
}
