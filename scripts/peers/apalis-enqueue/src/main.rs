//! apalis-redis 1.0's `push` with one call in flight and `push_bulk` in batches of 1,000, on the
//! Redis at argv[1] (a port on 127.0.0.1); prints one JSON line per figure with the same fields
//! `prosaas bench --json` reports (jobs/s, this process's and Redis's CPU per job, commands per
//! job), so scripts/peer-enqueue.sh can set them side by side.

// The repository's clippy.toml fences Redis into prosaas's src/jobs/; this program is a peer
// measured beside prosaas, not part of it, and reads Redis's counters itself.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]
use std::time::Instant;

use apalis_core::backend::TaskSink;
use apalis_redis::{Config, RedisStorage};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Noop {
    i: usize,
}

/// Redis's CPU seconds (user + sys) and commands executed so far, counted as prosaas's bench
/// counts them: `INFO commandstats`, commands run inside scripts included, `INFO` left out.
async fn redis_counters(conn: &mut redis::aio::MultiplexedConnection) -> (f64, f64) {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap_or_default();
    let (mut cpu, mut commands) = (0.0, 0.0);
    for line in info.lines() {
        if let Some(v) = line
            .strip_prefix("used_cpu_user:")
            .or_else(|| line.strip_prefix("used_cpu_sys:"))
        {
            cpu += v.trim().parse::<f64>().unwrap_or(0.0);
        } else if let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        {
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if name != "info" {
                commands += calls;
            }
        }
    }
    (cpu, commands)
}

fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we hand it and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

struct Meter {
    at: Instant,
    own: f64,
    redis: (f64, f64),
}

impl Meter {
    async fn start(conn: &mut redis::aio::MultiplexedConnection) -> Meter {
        Meter {
            redis: redis_counters(conn).await,
            own: own_cpu_seconds(),
            at: Instant::now(),
        }
    }

    async fn print(self, conn: &mut redis::aio::MultiplexedConnection, figure: &str, n: usize) {
        let secs = self.at.elapsed().as_secs_f64();
        let own = own_cpu_seconds() - self.own;
        let (cpu, cmds) = redis_counters(conn).await;
        let (cpu, cmds) = (cpu - self.redis.0, cmds - self.redis.1);
        println!(
            "{}",
            serde_json::json!({
                "peer": "apalis-redis 1.0.0",
                "figure": figure,
                "per_sec": n as f64 / secs,
                "client_cpu_us_per_job": own * 1e6 / n as f64,
                "redis_cpu_us_per_job": cpu * 1e6 / n as f64,
                "commands_per_job": cmds / n as f64,
            })
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: apalis-enqueue PORT [JOBS]")?
        .parse()?;
    let n: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let url = format!("redis://127.0.0.1:{port}/0");
    let mut probe = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let conn = apalis_redis::connect(url.as_str()).await?;
    let mut storage = RedisStorage::<Noop>::new(conn).with_config(Config::default().queue("bench"));

    let m = Meter::start(&mut probe).await;
    for i in 0..n {
        storage.push(Noop { i }).await?;
    }
    m.print(&mut probe, "one in flight", n).await;

    // Four batches in flight, as prosaas's bench keeps them.
    let m = Meter::start(&mut probe).await;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (mut storage, next) = (storage.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(1000, std::sync::atomic::Ordering::Relaxed);
                if from >= n {
                    return Ok::<(), String>(());
                }
                let batch = (from..(from + 1000).min(n)).map(|i| Noop { i }).collect();
                storage.push_bulk(batch).await.map_err(|e| e.to_string())?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    m.print(&mut probe, "batches of 1000, 4 in flight", n).await;
    Ok(())
}
