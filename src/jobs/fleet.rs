//! The registered workers as an operator lists them (prosaas's and Python RQ's): each with its
//! queues, state, version and the jobs it runs now.

use std::collections::HashMap;

use serde::Serialize;

use super::error::JobError;
use super::job::age_secs;
use super::keys::Keys;
use super::stats::Stats;

/// The most workers one read lists (sorted by name), and running jobs listed per worker.
const MAX_LISTED_WORKERS: usize = 200;
const MAX_JOBS_PER_WORKER: usize = 50;
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

impl Stats<'_> {
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
}

fn count(v: Option<&String>) -> u64 {
    v.and_then(|s| s.parse().ok()).unwrap_or(0)
}
