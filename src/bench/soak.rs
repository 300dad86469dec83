//! Soak: a mixed load for `--duration` seconds against separate api and worker processes with
//! this process's settings (result and failure TTLs, pruning interval), sampling what would grow
//! if something were never cleaned: Redis's used memory and keys, each process's RSS, and the
//! finished and failed registries' expired entries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::measure::rss_mb;
use super::{BenchArgs, Figure, QUEUE};
use crate::jobs::{JobOptions, JobStore, NewJob};
use crate::settings::Settings;

/// Of the jobs each second: webhooks (one message each, a twentieth of them repeats of an
/// earlier id), and direct enqueues of which a tenth fail for good.
const WEBHOOK_SHARE: f64 = 2.0 / 3.0;

// Long on purpose: one scenario's sequence (start the processes, drive the load second by
// second, sample at each interval, stop and clean up), as a reader of BENCHMARKS.md follows it.
pub(super) async fn run(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Figure> {
    let secret = "bench-soak-secret";
    let api = Child::start("api", settings, secret).await?;
    let workers = [
        Child::start("worker", settings, secret).await?,
        Child::start("worker", settings, secret).await?,
    ];
    let http = reqwest::Client::new();
    let every = Duration::from_secs(60).min(Duration::from_secs((a.duration / 10).max(5)));
    let started = Instant::now();
    let mut next_sample = started;
    let mut samples = Vec::new();
    let (mut enqueued, mut webhooks) = (0usize, 0usize);
    let written = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sequence = Arc::new(AtomicUsize::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while started.elapsed() < Duration::from_secs(a.duration) {
        tick.tick().await;
        if Instant::now() >= next_sample {
            let sample = sample(store, started, &api, &workers, enqueued + webhooks).await?;
            eprintln!("soak: {sample}");
            samples.push(sample);
            next_sample += every;
        }
        let hooks = (a.rate as f64 * WEBHOOK_SHARE).round() as usize;
        let direct = a.rate as usize - hooks;
        let jobs: Vec<NewJob> = (0..direct)
            .map(|_| soak_job(sequence.fetch_add(1, Ordering::Relaxed)))
            .collect();
        store.enqueue_many(&jobs).await?;
        enqueued += direct;
        let mut sends = Vec::with_capacity(hooks);
        for _ in 0..hooks {
            let n = sequence.fetch_add(1, Ordering::Relaxed);
            // A provider retry now and then: the same message id as one sent before.
            let id = if n.is_multiple_of(20) && n > 0 {
                n - 1
            } else {
                n
            };
            sends.push(webhook(&http, &api, secret, id, written.clone()));
        }
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
        webhooks += hooks;
    }
    // Let the last jobs run and their TTLs and a pruning pass go by before the final sample.
    tokio::time::sleep(every).await;
    let last = sample(store, started, &api, &workers, enqueued + webhooks).await?;
    eprintln!("soak: {last}");
    samples.push(last);
    let mut pids = Vec::new();
    for p in std::iter::once(api).chain(workers) {
        pids.extend(p.stop().await);
    }
    store.bench().forget_processes(&pids).await?;
    let ids = std::mem::take(&mut *written.lock().unwrap_or_else(|e| e.into_inner()));
    store.bench().delete_jobs(QUEUE, &ids).await?;
    store
        .bench()
        .delete_matching(&["job_lock:webhook:baileys:soak-*".to_owned()])
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let total = enqueued + webhooks;
    let mut extra = Map::new();
    extra.insert("samples".into(), Value::Array(samples));
    extra.insert("webhooks".into(), json!(webhooks));
    extra.insert("enqueued".into(), json!(enqueued));
    Ok(Figure {
        name: format!(
            "soak: {} jobs/s for {} s (webhooks and enqueues), api and two workers",
            a.rate, a.duration
        ),
        jobs: total,
        seconds,
        per_sec: total as f64 / seconds,
        redis_commands_per_job: 0.0,
        scripts_per_job: 0.0,
        extra,
    })
}

/// A direct enqueue of the soak: `diag.noop`, or one in ten `diag.fail` for good.
fn soak_job(n: usize) -> NewJob {
    let mut args = Map::new();
    let kind = if n.is_multiple_of(10) {
        args.insert("permanent".into(), json!(true));
        args.insert("message".into(), json!("soak"));
        "diag.fail"
    } else {
        "diag.noop"
    };
    NewJob::new(QUEUE, kind, args).with_options(JobOptions {
        job_id: Some(format!("bench-soak-{n}")),
        ..Default::default()
    })
}

async fn webhook(
    http: &reqwest::Client,
    api: &Child,
    secret: &str,
    id: usize,
    written: Arc<std::sync::Mutex<Vec<String>>>,
) -> anyhow::Result<()> {
    let body = json!({"tenantId": "soak", "payload": {"messages": [
        {"key": {"id": format!("soak-{id}"), "remoteJid": "972500000000@s.whatsapp.net"},
         "message": {"conversation": "a soak message"}}]}});
    let r = http
        .post(format!(
            "http://127.0.0.1:{}/webhook/whatsapp/incoming",
            api.port
        ))
        .header("X-Internal-Secret", secret)
        .json(&body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("the soak's webhook answered {}", r.status());
    }
    let answer: Value = r.json().await?;
    if let Some(jobs) = answer["jobs"].as_array() {
        let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
        w.extend(
            jobs.iter()
                .filter_map(|j| j["job_id"].as_str().map(str::to_owned)),
        );
    }
    Ok(())
}

/// One line of the report: time, Redis's memory and keys, each process's RSS, the registries.
async fn sample(
    store: &JobStore,
    started: Instant,
    api: &Child,
    workers: &[Child],
    jobs: usize,
) -> anyhow::Result<Value> {
    let f = store.bench().footprint(QUEUE).await?;
    let rss = |c: &Child| (rss_mb(&c.pid).1 * 10.0).round() / 10.0;
    Ok(json!({
        "t_s": started.elapsed().as_secs(),
        "jobs": jobs,
        "redis_used_mb": (f.used_memory as f64 / 1048576.0 * 10.0).round() / 10.0,
        "redis_keys": f.keys,
        "registry_entries": f.registered,
        "expired_entries": f.expired,
        "rss_mb": {"api": rss(api), "worker_1": rss(&workers[0]), "worker_2": rss(&workers[1]),
                   "bench": (rss_mb("self").1 * 10.0).round() / 10.0},
    }))
}

/// A `prosaas` process of the soak, on the bench's Redis and queue.
struct Child {
    child: tokio::process::Child,
    pid: String,
    port: u16,
}

impl Child {
    async fn start(role: &str, settings: &Settings, secret: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let w = &settings.worker;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["--role", role])
            .env("REDIS_URL", settings.redis.url().0)
            .env("PORT", port.to_string())
            .env("PROSAAS__HTTP__HOST", "127.0.0.1")
            .env("INTERNAL_SECRET", secret)
            .env("PROSAAS__API__ALLOW_MISSING_SECRETS", "true")
            .env("PROSAAS__API__INGRESS_QUEUES__WHATSAPP", QUEUE)
            .env("PROSAAS__WORKER__QUEUES", QUEUE)
            // The operator's own settings are what the soak is for.
            .env(
                "PROSAAS__WORKER__RESULT_TTL_SECS",
                w.result_ttl_secs.to_string(),
            )
            .env(
                "PROSAAS__WORKER__FAILURE_TTL_SECS",
                w.failure_ttl_secs.to_string(),
            )
            .env(
                "PROSAAS__WORKER__PRUNE_INTERVAL_MS",
                w.prune_interval_ms.as_millis().to_string(),
            )
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let pid = child.id().context("a soak process has no pid")?.to_string();
        let process = Self { child, pid, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://127.0.0.1:{port}/healthz");
        while reqwest::get(&url).await.is_err() {
            if Instant::now() > deadline {
                bail!("the soak's {role} process did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(process)
    }

    /// SIGTERM, so that workers unregister as in production; SIGKILL after 30 s. Returns the
    /// process's pid.
    async fn stop(mut self) -> Option<u32> {
        let id = self.child.id();
        if let Some(pid) = id.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        id
    }
}
