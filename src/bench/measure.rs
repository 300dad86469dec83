//! Figures from counters: Redis's commands and CPU (`INFO`), this process's CPU and memory
//! (`/proc`), percentiles and Prometheus histogram bounds.

use std::time::Instant;

use serde_json::{Map, json};

use super::Figure;
use crate::jobs::{JobStore, RedisCounters};

/// Peak and current resident memory of a process, in MiB, from /proc.
pub(super) fn rss_mb(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU seconds (user + system) a process has used, from /proc.
pub(super) fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let ticks = 100.0; // USER_HZ on Linux
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / ticks
}

/// Enqueue-to-start latency of each job that started, in ms, sorted, from the jobs' own RQ
/// timestamps.
pub(super) async fn enqueue_to_start_ms(
    store: &JobStore,
    ids: &[String],
) -> anyhow::Result<Vec<f64>> {
    let stamps = store.bench().job_timestamps(ids).await?;
    let mut lat: Vec<f64> = stamps
        .values()
        .filter_map(|(e, s)| {
            let e = crate::jobs::parse_rq_timestamp(e.as_deref()?)?;
            let s = crate::jobs::parse_rq_timestamp(s.as_deref()?)?;
            Some((s - e).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

/// The `p` quantile (nearest rank) of sorted values; 0 for none.
pub(super) fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0)
}

/// p50, p99 and max of sorted latencies, as a figure's extra fields named `<prefix>_p50` etc.
pub(super) fn insert_latency(
    extra: &mut Map<String, serde_json::Value>,
    prefix: &str,
    sorted: &[f64],
) {
    extra.insert(format!("{prefix}_p50"), json!(quantile(sorted, 0.50)));
    extra.insert(format!("{prefix}_p99"), json!(quantile(sorted, 0.99)));
    extra.insert(
        format!("{prefix}_max"),
        json!(sorted.last().copied().unwrap_or(0.0)),
    );
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(super) struct Meter<'a> {
    store: &'a JobStore,
    started: Instant,
    redis: RedisCounters,
    cpu: f64,
}

impl<'a> Meter<'a> {
    pub(super) async fn start(store: &'a JobStore) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            redis: store.bench().command_totals().await?,
            cpu: cpu_secs("self"),
            started: Instant::now(),
        })
    }

    /// Stops the clock; `overhead` commands the bench itself sent (polls) are not counted.
    pub(super) async fn figure(
        self,
        name: &str,
        jobs: usize,
        overhead: u64,
    ) -> anyhow::Result<Figure> {
        let seconds = self.started.elapsed().as_secs_f64();
        let cpu = cpu_secs("self") - self.cpu;
        let r = self.store.bench().command_totals().await?;
        let n = jobs.max(1) as f64;
        let mut extra = Map::new();
        // Where the time went: the CPU both sides spent per job tells whether Redis or this
        // process bounds the figure (each has at most one of the machine's cores to give).
        extra.insert(
            "redis_cpu_us_per_job".into(),
            json!(round1((r.cpu_secs - self.redis.cpu_secs) * 1e6 / n)),
        );
        extra.insert("bench_cpu_us_per_job".into(), json!(round1(cpu * 1e6 / n)));
        Ok(Figure {
            name: name.to_owned(),
            jobs,
            seconds,
            per_sec: jobs as f64 / seconds,
            redis_commands_per_job: (r.commands - self.redis.commands).saturating_sub(overhead)
                as f64
                / n,
            scripts_per_job: (r.scripts - self.redis.scripts) as f64 / n,
            extra,
        })
    }
}

pub(super) fn percentile_ms(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0)
        * 1000.0
}

/// The upper bound of the bucket holding quantile `q` of a Prometheus histogram, and its count.
pub(super) fn histogram_quantile(text: &str, name: &str, q: f64) -> (f64, f64) {
    let bucket = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&bucket)?;
            let (le, value) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    let target = total * q;
    let bound = buckets
        .iter()
        .find(|(_, c)| *c >= target)
        .map_or(f64::INFINITY, |b| b.0);
    (bound, total)
}
