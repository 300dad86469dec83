//! `prosaas bench`: measures what operators size Redis and workers with, against the configured
//! Redis. It refuses a database that holds keys (unless `--force`), writes only `bench`-named
//! keys and deletes them afterwards. Every scenario reports Redis commands per job (from
//! `INFO commandstats` deltas) and this process's peak RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::jobs::{JobOptions, JobStore, NewJob, RedisCounters, WorkerInfo, parse_rq_timestamp};
use crate::settings::Settings;
use crate::worker::executor::{Executor, ExecutorConfig};
use crate::worker::handler::HandlerContext;
use crate::worker::handler::RecordingAccess;
use crate::worker::http_target::Delivery;

pub const QUEUE: &str = "bench";

#[derive(Clone, Debug)]
pub struct BenchArgs {
    pub scenario: String,
    pub jobs: usize,
    pub concurrency: Option<usize>,
    pub batch: usize,
    pub rate: u64,
    pub duration: u64,
    pub force: bool,
}

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub jobs: usize,
    pub seconds: f64,
    pub per_sec: f64,
    pub redis_commands_per_job: f64,
    pub scripts_per_job: f64,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub figures: Vec<Figure>,
    pub peak_rss_mb: f64,
}

/// Peak and current resident memory of a process, in MiB, from /proc.
pub fn rss_mb(pid: &str) -> (f64, f64) {
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
pub fn cpu_secs(pid: &str) -> f64 {
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

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn job(i: usize, run: usize) -> NewJob {
    let mut args = Map::new();
    args.insert("i".into(), json!(i));
    NewJob::new(QUEUE, "diag.noop", args).with_options(JobOptions {
        job_id: Some(format!("bench-{run}-{i}")),
        ..Default::default()
    })
}

struct Meter<'a> {
    store: &'a JobStore,
    started: Instant,
    redis: RedisCounters,
    cpu: f64,
}

impl<'a> Meter<'a> {
    async fn start(store: &'a JobStore) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            redis: store.bench().command_totals().await?,
            cpu: cpu_secs("self"),
            started: Instant::now(),
        })
    }

    /// Stops the clock; `overhead` commands the bench itself sent (polls) are not counted.
    async fn figure(self, name: &str, jobs: usize, overhead: u64) -> anyhow::Result<Figure> {
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

/// Runs `jobs` calls of `f` with `concurrency` in flight.
async fn in_flight<F, Fut>(jobs: usize, concurrency: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, f) = (next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return Ok::<(), anyhow::Error>(());
                }
                f(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Batches in flight at once: enough that building the next batch overlaps Redis applying the
/// last one, as a producer with more than one batch to send would do.
const BATCHES_IN_FLIGHT: usize = 4;

async fn fill(store: &JobStore, jobs: usize, run: usize, batch: usize) -> anyhow::Result<()> {
    let batch = batch.max(1);
    let s = store.clone();
    in_flight(jobs.div_ceil(batch), BATCHES_IN_FLIGHT, move |b| {
        let s = s.clone();
        async move {
            let chunk: Vec<NewJob> = (b * batch..((b + 1) * batch).min(jobs))
                .map(|i| job(i, run))
                .collect();
            s.enqueue_many(&chunk).await?;
            Ok(())
        }
    })
    .await
}

/// An in-process worker on the bench queue, running `diag.noop`.
fn worker(
    store: &JobStore,
    settings: &Settings,
    concurrency: usize,
) -> anyhow::Result<(
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let mut w = settings.worker.clone();
    w.concurrency = concurrency;
    w.queues = vec![QUEUE.to_owned()];
    let executor = Executor {
        store: store.clone(),
        info: WorkerInfo {
            name: format!("bench-{}-{concurrency}", std::process::id()),
            queues: w.queues.clone(),
            pid: std::process::id(),
            hostname: crate::worker::hostname(),
        },
        registry: Arc::new(crate::handlers::registry(&w)),
        config: ExecutorConfig::from_settings(&w),
        context: HandlerContext {
            jobs: store.clone(),
            delivery: Arc::new(Delivery::new(&w.http_targets)?),
            recordings: Arc::new(RecordingAccess::local(std::env::temp_dir())),
        },
    };
    let stop = CancellationToken::new();
    let handle = tokio::spawn(executor.run(stop.clone()));
    Ok((stop, handle))
}

/// Waits until `target` jobs have finished; returns how many polls it took.
async fn until_finished(store: &JobStore, target: u64, within: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + within;
    let mut polls = 0;
    loop {
        polls += 1;
        if store.bench().finished_count(QUEUE).await? >= target {
            return Ok(polls);
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {target} jobs finished within {within:?}",
                store.bench().finished_count(QUEUE).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(args: BenchArgs, settings: &Settings) -> anyhow::Result<Report> {
    let store = JobStore::connect(&settings.store_config())?;
    let keys = store
        .bench()
        .key_count()
        .await
        .with_context(|| format!("Redis at {} does not answer", store.redacted_url()))?;
    if keys > 0 && !args.force {
        bail!(
            "the Redis database at {} holds {keys} keys; prosaas bench runs only on an empty database (--force runs anyway, writing and deleting only bench keys)",
            store.redacted_url()
        );
    }
    store.bench().delete_bench_keys(QUEUE).await?;
    let result = scenario(&args, settings, &store).await;
    store.bench().delete_bench_keys(QUEUE).await?;
    let figures = result?;
    Ok(Report {
        scenario: args.scenario.clone(),
        figures,
        peak_rss_mb: rss_mb("self").0,
    })
}

async fn scenario(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Vec<Figure>> {
    let n = a.jobs;
    let mut figures = Vec::new();
    match a.scenario.as_str() {
        "enqueue" => {
            let c = a.concurrency.unwrap_or(64);
            let m = Meter::start(store).await?;
            let s = store.clone();
            in_flight(n, c, move |i| {
                let s = s.clone();
                async move { Ok(s.enqueue(job(i, 0)).await.map(|_| ())?) }
            })
            .await?;
            figures.push(
                m.figure(&format!("single calls, {c} in flight"), n, 0)
                    .await?,
            );
            store.bench().delete_bench_keys(QUEUE).await?;
            let m = Meter::start(store).await?;
            fill(store, n, 1, a.batch).await?;
            figures.push(
                m.figure(
                    &format!(
                        "enqueue_many, batches of {}, {BATCHES_IN_FLIGHT} in flight",
                        a.batch
                    ),
                    n,
                    0,
                )
                .await?,
            );
        }
        "enqueue-dedupe" => {
            let c = a.concurrency.unwrap_or(64);
            for (label, pass) in [("all new keys", 0), ("all duplicate keys", 1)] {
                let m = Meter::start(store).await?;
                let s = store.clone();
                in_flight(n, c, move |i| {
                    let s = s.clone();
                    async move {
                        let r = s
                            .enqueue_with_dedupe(job(i, 0), &format!("bench:event:{i}"), 600)
                            .await?;
                        if r.is_duplicate() != (pass == 1) {
                            bail!("bench: unexpected de-dupe outcome for event {i}");
                        }
                        Ok(())
                    }
                })
                .await?;
                figures.push(
                    m.figure(&format!("{label}, single calls, {c} in flight"), n, 0)
                        .await?,
                );
            }
        }
        "drain" => {
            let sweep = a
                .concurrency
                .map_or_else(|| vec![1, 16, 64, 256], |c| vec![c]);
            for (run, c) in sweep.into_iter().enumerate() {
                store.bench().delete_bench_keys(QUEUE).await?;
                fill(store, n, run, 1000).await?;
                let m = Meter::start(store).await?;
                let (stop, handle) = worker(store, settings, c)?;
                let polls = until_finished(store, n as u64, Duration::from_secs(600)).await?;
                let figure = m
                    .figure(&format!("drain, one worker, concurrency {c}"), n, polls)
                    .await?;
                stop.cancel();
                handle.await??;
                figures.push(figure);
            }
        }
        "e2e" => {
            let c = a.concurrency.unwrap_or(64);
            let m = Meter::start(store).await?;
            let (stop, handle) = worker(store, settings, c)?;
            let s = store.clone();
            in_flight(n, c, move |i| {
                let s = s.clone();
                async move { Ok(s.enqueue(job(i, 0)).await.map(|_| ())?) }
            })
            .await?;
            let polls = until_finished(store, n as u64, Duration::from_secs(600)).await?;
            figures.push(
                m.figure(
                    &format!("producer ({c} in flight) and worker (concurrency {c}) at once"),
                    n,
                    polls,
                )
                .await?,
            );
            stop.cancel();
            handle.await??;
        }
        "latency" => {
            let c = a.concurrency.unwrap_or(64);
            let total = (a.rate * a.duration) as usize;
            let (stop, handle) = worker(store, settings, c)?;
            // Let the worker register and block before the clock starts.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let m = Meter::start(store).await?;
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut sends = tokio::task::JoinSet::new();
            for i in 0..total {
                tick.tick().await;
                let s = store.clone();
                sends.spawn(async move { s.enqueue(job(i, 0)).await.map(|_| ()) });
            }
            while let Some(r) = sends.join_next().await {
                r??;
            }
            let polls = until_finished(store, total as u64, Duration::from_secs(120)).await?;
            let mut figure = m
                .figure(
                    &format!(
                        "{} jobs/s for {} s, worker concurrency {c}",
                        a.rate, a.duration
                    ),
                    total,
                    polls,
                )
                .await?;
            stop.cancel();
            handle.await??;
            let ids: Vec<String> = (0..total).map(|i| format!("bench-0-{i}")).collect();
            let stamps = store.bench().job_timestamps(&ids).await?;
            let mut lat: Vec<f64> = stamps
                .values()
                .filter_map(|(e, s)| {
                    let e = parse_rq_timestamp(e.as_deref()?)?;
                    let s = parse_rq_timestamp(s.as_deref()?)?;
                    Some((s - e).num_microseconds()? as f64 / 1000.0)
                })
                .collect();
            lat.sort_by(f64::total_cmp);
            let pct = |p: f64| {
                lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
                    .copied()
                    .unwrap_or(0.0)
            };
            figure
                .extra
                .insert("enqueue_to_start_ms_p50".into(), json!(pct(0.50)));
            figure
                .extra
                .insert("enqueue_to_start_ms_p99".into(), json!(pct(0.99)));
            figure.extra.insert(
                "enqueue_to_start_ms_max".into(),
                json!(lat.last().copied().unwrap_or(0.0)),
            );
            figure
                .extra
                .insert("measured_jobs".into(), json!(lat.len()));
            figures.push(figure);
        }
        "webhook" => figures.extend(webhook(a, settings, store).await?),
        "calls" => figures.push(calls(a, settings, store).await?),
        other => bail!(
            "unknown scenario {other:?}; scenarios: enqueue, enqueue-dedupe, drain, e2e, latency, webhook, calls"
        ),
    }
    Ok(figures)
}

fn percentile_ms(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0)
        * 1000.0
}

/// HTTP load on the WhatsApp webhook of an in-process api, with unique and repeated message ids.
async fn webhook(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Vec<Figure>> {
    let c = a.concurrency.unwrap_or(64);
    let default_was_listed = store.bench().queue_registered("default").await?;
    let mut s = settings.clone();
    s.http.host = "127.0.0.1".into();
    s.http.port = 0;
    s.api.internal_secret = "bench-secret".into();
    s.api.max_concurrent_requests = s.api.max_concurrent_requests.max(c * 2);
    let app = crate::app::App::build(crate::roles::Role::Api, s, store.clone()).await?;
    let addr = app.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run(stop.clone()));
    let mut figures = Vec::new();
    for (label, repeated) in [
        ("unique message ids", false),
        ("one repeated message id", true),
    ] {
        let m = Meter::start(store).await?;
        let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(a.jobs)));
        let written = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..c {
            let (next, latencies, written, jobs) =
                (next.clone(), latencies.clone(), written.clone(), a.jobs);
            tasks.push(tokio::spawn(async move {
                let mut conn = HttpConn::connect(addr).await?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let id = if repeated { "bench-repeated".to_owned() } else { format!("bench-{i}") };
                    let body = json!({"tenantId": "bench", "payload": {"messages": [{"key": {"id": id, "remoteJid": "1@s.whatsapp.net"}, "message": {"conversation": "hi"}}]}});
                    let t = Instant::now();
                    let (status, answer) = conn
                        .post("/webhook/whatsapp/incoming", &serde_json::to_vec(&body)?)
                        .await?;
                    if !(200..300).contains(&status) {
                        bail!("webhook answered {status}: {}", String::from_utf8_lossy(&answer));
                    }
                    latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(t.elapsed().as_secs_f64());
                    let answer: Value = serde_json::from_slice(&answer)?;
                    if let Some(id) = answer["jobs"][0]["job_id"].as_str() {
                        written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_owned());
                    }
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let mut figure = m
            .figure(&format!("{label}, {c} connections"), a.jobs, 0)
            .await?;
        let mut l = std::mem::take(
            &mut *latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        l.sort_by(f64::total_cmp);
        figure
            .extra
            .insert("p50_ms".into(), json!(percentile_ms(&l, 0.50)));
        figure
            .extra
            .insert("p99_ms".into(), json!(percentile_ms(&l, 0.99)));
        figures.push(figure);
        // These jobs sit on the real `default` queue with real-looking ids: delete exactly the
        // ones this run wrote, and the de-dupe locks of its own `bench-` message ids.
        let ids: Vec<String> = written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .collect();
        store.bench().delete_jobs("default", &ids).await?;
        store
            .bench()
            .delete_matching(&["job_lock:webhook:baileys:bench-*".to_owned()])
            .await?;
    }
    stop.cancel();
    server.await??;
    if !default_was_listed {
        store.bench().forget_queue_if_empty("default").await?;
    }
    Ok(figures)
}

/// A keep-alive HTTP/1.1 connection that sends fixed-shape POSTs, as `wrk` does: the load
/// generator shares this machine's two cores with the server and Redis, so it must cost far less
/// per request than what it measures (a general-purpose client cost ~70 us per request here,
/// about as much as the server it was measuring).
struct HttpConn {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    request: Vec<u8>,
    line: String,
}

impl HttpConn {
    async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: tokio::io::BufReader::new(stream),
            request: Vec::with_capacity(1024),
            line: String::new(),
        })
    }

    /// Sends one POST with a JSON body; returns the status and the body (Content-Length framed,
    /// which is how axum answers a JSON body).
    async fn post(&mut self, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        use std::io::Write;
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: bench\r\nX-Internal-Secret: bench-secret\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        self.request.extend_from_slice(body);
        self.stream.get_mut().write_all(&self.request).await?;
        let mut status = None;
        let mut length = None;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                bail!("the server closed the connection");
            }
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if status.is_none() {
                status = line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let status = status.context("no HTTP status line")?;
        let mut answer = vec![0; length.context("no Content-Length in the answer")?];
        self.stream.read_exact(&mut answer).await?;
        Ok((status, answer))
    }
}

/// N concurrent simulated calls at real-time pace (50 frames/s each) against a separate
/// `prosaas --role calls` process; reports its frame handling p99 (from its own histogram),
/// CPU and memory per call.
async fn calls(a: &BenchArgs, settings: &Settings, store: &JobStore) -> anyhow::Result<Figure> {
    use futures_util::SinkExt;
    let n = a.concurrency.unwrap_or(100);
    let default_was_listed = store.bench().queue_registered("default").await?;
    let dir = std::env::temp_dir().join(format!("prosaas-bench-calls-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["--role", "calls"])
        .env("REDIS_URL", settings.redis_url().0)
        .env("PORT", port.to_string())
        .env("PROSAAS__HTTP__HOST", "127.0.0.1")
        .env("PROSAAS__RECORDINGS__DIR", &dir)
        .env("PROSAAS__CALLS__MAX_CONCURRENT_CALLS", (n + 10).to_string())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child
        .id()
        .context("the calls process has no pid")?
        .to_string();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("the calls process did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, rss_before) = rss_mb(&pid);
    let cpu_before = cpu_secs(&pid);
    let frames = (a.duration * 50) as u32;
    let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xFFu8; 160]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for call in 0..n {
        let url = format!("ws://127.0.0.1:{port}/ws/twilio/media");
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
            let sid = format!("CABENCH{call}");
            let send = |v: Value| tokio_tungstenite::tungstenite::Message::text(v.to_string());
            ws.send(send(json!({"event": "start", "start": {"callSid": sid, "streamSid": format!("MZ{call}"),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))).await?;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for f in 0..frames {
                tick.tick().await;
                ws.send(send(json!({"event": "media", "media": {"track": "inbound", "timestamp": (f * 20).to_string(), "payload": payload}}))).await?;
            }
            ws.send(send(json!({"event": "stop"}))).await?;
            ws.close(None).await.ok();
            Ok::<(), anyhow::Error>(())
        }));
    }
    // Memory with every call live, half way through.
    tokio::time::sleep(Duration::from_secs(a.duration / 2)).await;
    let (_, rss_live) = rss_mb(&pid);
    for t in tasks {
        t.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(&pid) - cpu_before;
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    // The post-call jobs of the simulated calls: ids derived from their de-dupe keys.
    let ids: Vec<String> = (0..n)
        .flat_map(|i| {
            [
                crate::jobs::job_id_for_dedupe_key(&format!("recording:CABENCH{i}")),
                crate::jobs::job_id_for_dedupe_key(&format!("twilio:CABENCH{i}:completed")),
            ]
        })
        .collect();
    store.bench().delete_jobs("default", &ids).await?;
    store
        .bench()
        .delete_matching(&[
            "job_lock:recording:CABENCH*".to_owned(),
            "job_lock:twilio:CABENCH*".to_owned(),
        ])
        .await?;
    if !default_was_listed {
        store.bench().forget_queue_if_empty("default").await?;
    }
    let (p99, count) = histogram_quantile(&metrics, "prosaas_call_frame_seconds", 0.99);
    let mut figure = Figure {
        name: format!("{n} concurrent calls, 50 frames/s each, {} s", a.duration),
        jobs: count as usize,
        seconds,
        per_sec: count / seconds,
        redis_commands_per_job: 0.0,
        scripts_per_job: 0.0,
        extra: Map::new(),
    };
    figure
        .extra
        .insert("frame_handling_p99_ms_at_most".into(), json!(p99 * 1000.0));
    figure.extra.insert(
        "cpu_percent_of_one_core".into(),
        json!(cpu / seconds * 100.0),
    );
    figure.extra.insert(
        "cpu_ms_per_call_second".into(),
        json!(cpu * 1000.0 / (n as f64 * seconds)),
    );
    figure.extra.insert("rss_mb_live".into(), json!(rss_live));
    figure.extra.insert(
        "rss_kb_per_call".into(),
        json!((rss_live - rss_before) * 1024.0 / n as f64),
    );
    Ok(figure)
}

/// The upper bound of the bucket holding quantile `q` of a Prometheus histogram, and its count.
fn histogram_quantile(text: &str, name: &str, q: f64) -> (f64, f64) {
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

/// The report as text, one line per figure.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "scenario {}: peak RSS of this process {:.1} MiB\n",
        report.scenario, report.peak_rss_mb
    );
    for f in &report.figures {
        let extra: Vec<String> = f.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "  {}: {} in {:.2} s = {:.0}/s; {:.2} Redis commands/job ({:.2} scripts){}{}\n",
            f.name,
            f.jobs,
            f.seconds,
            f.per_sec,
            f.redis_commands_per_job,
            f.scripts_per_job,
            if extra.is_empty() { "" } else { "; " },
            extra.join(" ")
        ));
    }
    out
}
