//! Calls: concurrent simulated Media Streams calls against a separate `--role calls` process.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::measure::{cpu_secs, histogram_quantile, rss_mb};
use super::{BenchArgs, Figure};
use crate::jobs::{JobStore, job_id_for_dedupe_key};
use crate::settings::Settings;
use crate::webhooks::twilio;
use crate::webhooks::twilio::stream::{self, STREAM_PATH, StreamTokens};

/// N concurrent simulated calls at real-time pace (50 frames/s each) against a separate
/// `prosaas --role calls` process; reports its frame handling p99 (from its own histogram),
/// CPU and memory per call.
pub(super) async fn run(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Figure> {
    let n = a.concurrency.unwrap_or(100);
    let default_was_listed = store.bench().queue_registered("default").await?;
    let server = CallsProcess::start(settings, n).await?;
    let (_, rss_before) = rss_mb(&server.pid);
    let cpu_before = cpu_secs(&server.pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for call in 0..n {
        tasks.push(tokio::spawn(one_call(server.port, call, a.duration * 50)));
    }
    // Memory with every call live, half way through.
    tokio::time::sleep(Duration::from_secs(a.duration / 2)).await;
    let (_, rss_live) = rss_mb(&server.pid);
    for t in tasks {
        t.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(&server.pid) - cpu_before;
    let metrics = server.metrics().await?;
    server.stop().await;
    forget_post_call_jobs(store, n, default_was_listed).await?;

    let (p99, count) = histogram_quantile(&metrics, "prosaas_call_frame_seconds", 0.99);
    let mut extra = Map::new();
    extra.insert("frame_handling_p99_ms_at_most".into(), json!(p99 * 1000.0));
    extra.insert(
        "cpu_percent_of_one_core".into(),
        json!(cpu / seconds * 100.0),
    );
    extra.insert(
        "cpu_ms_per_call_second".into(),
        json!(cpu * 1000.0 / (n as f64 * seconds)),
    );
    extra.insert("rss_mb_live".into(), json!(rss_live));
    extra.insert(
        "rss_kb_per_call".into(),
        json!((rss_live - rss_before) * 1024.0 / n as f64),
    );
    Ok(Figure {
        name: format!("{n} concurrent calls, 50 frames/s each, {} s", a.duration),
        jobs: count as usize,
        seconds,
        per_sec: count / seconds,
        redis_commands_per_job: 0.0,
        scripts_per_job: 0.0,
        extra,
    })
}

/// The `--role calls` process under test, on a free port with its own recordings directory.
struct CallsProcess {
    child: tokio::process::Child,
    pid: String,
    port: u16,
    dir: std::path::PathBuf,
    http: reqwest::Client,
}

impl CallsProcess {
    async fn start(settings: &Settings, calls: usize) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("prosaas-bench-calls-{}", std::process::id()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["--role", "calls"])
            .env("REDIS_URL", settings.redis.url().0)
            .env("PORT", port.to_string())
            .env("PROSAAS__HTTP__HOST", "127.0.0.1")
            .env("PROSAAS__RECORDINGS__DIR", &dir)
            .env(
                "PROSAAS__CALLS__MAX_CONCURRENT_CALLS",
                (calls + 10).to_string(),
            )
            // Streams are signed and carry tokens, as Twilio's do, under a key of the bench's.
            .env("TWILIO_AUTH_TOKEN", BENCH_TWILIO_TOKEN)
            .env("PUBLIC_BASE_URL", BENCH_PUBLIC_URL)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let pid = child
            .id()
            .context("the calls process has no pid")?
            .to_string();
        let process = Self {
            child,
            pid,
            port,
            dir,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while process.get("/healthz").await.is_err() {
            if Instant::now() > deadline {
                bail!("the calls process did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(process)
    }

    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        Ok(self.http.get(url).send().await?.text().await?)
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        self.get("/metrics").await
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The calls process's Twilio secrets: the bench signs its streams as Twilio would.
const BENCH_TWILIO_TOKEN: &str = "bench-twilio-token";
const BENCH_PUBLIC_URL: &str = "https://bench.invalid";

/// One simulated call, opened as Twilio opens one (a signed upgrade, a start with the call's
/// stream token): start, `frames` media frames at 20 ms pace, stop.
async fn one_call(port: u16, call: usize, frames: u64) -> anyhow::Result<()> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xFFu8; 160]);
    let mut request = format!("ws://127.0.0.1:{port}{STREAM_PATH}").into_client_request()?;
    let signed = stream::stream_url(BENCH_PUBLIC_URL, STREAM_PATH).context("the bench's URL")?;
    let signature = twilio::signature(BENCH_TWILIO_TOKEN, &signed, &[]);
    request
        .headers_mut()
        .insert("X-Twilio-Signature", signature.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let send = |v: Value| tokio_tungstenite::tungstenite::Message::text(v.to_string());
    let sid = format!("CABENCH{call}");
    let expires = chrono::Utc::now().timestamp().unsigned_abs() + stream::TOKEN_TTL_SECS;
    let token = StreamTokens::new(BENCH_TWILIO_TOKEN).issue(&sid, "", expires);
    let start = json!({"event": "start", "start": {"callSid": sid,
        "streamSid": format!("MZ{call}"), "customParameters": {stream::TOKEN_PARAMETER: token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}});
    ws.send(send(start)).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for f in 0..frames {
        tick.tick().await;
        let media = json!({"event": "media", "media": {"track": "inbound",
            "timestamp": (f * 20).to_string(), "payload": payload}});
        ws.send(send(media)).await?;
    }
    ws.send(send(json!({"event": "stop"}))).await?;
    ws.close(None).await.ok();
    Ok(())
}

/// Deletes the post-call jobs the simulated calls enqueued (ids derived from their de-dupe
/// keys) and their de-dupe locks, and unlists `default` if the run created it.
async fn forget_post_call_jobs(
    store: &JobStore,
    calls: usize,
    default_was_listed: bool,
) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..calls)
        .flat_map(|i| {
            [
                job_id_for_dedupe_key(&twilio::recording_key(&format!("CABENCH{i}"))),
                job_id_for_dedupe_key(&twilio::status_key(&format!("CABENCH{i}"), "completed")),
            ]
        })
        .collect();
    store.bench().delete_jobs("default", &ids).await?;
    store
        .bench()
        .delete_matching(&[
            "job_lock:recording:CABENCH*".to_owned(),
            "job_lock:twilio:CABENCH*".to_owned(),
            "prosaas:call:CABENCH*".to_owned(),
            // The killed server's live-calls report (the bench runs only on an empty database).
            "prosaas:calls:live".to_owned(),
        ])
        .await?;
    if !default_was_listed {
        store.bench().forget_queue_if_empty("default").await?;
    }
    Ok(())
}
