//! Webhook: HTTP load on the WhatsApp webhook of an in-process api, with unique and repeated
//! message ids, from a load generator far cheaper per request than the server it measures.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::measure::{Meter, percentile_ms};
use super::{BenchArgs, Figure};
use crate::jobs::JobStore;
use crate::settings::Settings;

/// HTTP load on the WhatsApp webhook of an in-process api, with unique and repeated message ids.
// Long on purpose: one scenario's sequence (start an api, two passes, clean up), as a reader of
// BENCHMARKS.md follows it.
pub(super) async fn run(
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
    s.api.max_concurrent_requests = s
        .api
        .max_concurrent_requests
        .max(NonZeroUsize::new(c * 2).unwrap_or(NonZeroUsize::MIN));
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
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..c {
            tasks.push(tokio::spawn(one_connection(
                addr,
                next.clone(),
                a.jobs,
                repeated,
            )));
        }
        let (mut latencies, mut written) = (Vec::with_capacity(a.jobs), Vec::new());
        for t in tasks {
            let (l, w) = t.await??;
            latencies.extend(l);
            written.extend(w);
        }
        let mut figure = m
            .figure(&format!("{label}, {c} connections"), a.jobs, 0)
            .await?;
        latencies.sort_by(f64::total_cmp);
        figure
            .extra
            .insert("p50_ms".into(), json!(percentile_ms(&latencies, 0.50)));
        figure
            .extra
            .insert("p99_ms".into(), json!(percentile_ms(&latencies, 0.99)));
        figures.push(figure);
        // These jobs sit on the real `default` queue with real-looking ids: delete exactly the
        // ones this run wrote, and the de-dupe locks of its own `bench-` message ids.
        written.sort_unstable();
        written.dedup();
        store.bench().delete_jobs("default", &written).await?;
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

/// One keep-alive connection posting webhooks until `jobs` have been sent by all connections;
/// returns each request's latency in seconds and the job ids the answers named.
async fn one_connection(
    addr: std::net::SocketAddr,
    next: Arc<AtomicUsize>,
    jobs: usize,
    repeated: bool,
) -> anyhow::Result<(Vec<f64>, Vec<String>)> {
    let mut conn = HttpConn::connect(addr).await?;
    let (mut latencies, mut written) = (Vec::new(), Vec::new());
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= jobs {
            return Ok((latencies, written));
        }
        let id = if repeated {
            "bench-repeated".to_owned()
        } else {
            format!("bench-{i}")
        };
        let body = json!({"tenantId": "bench", "payload": {"messages": [{"key": {"id": id,
            "remoteJid": "1@s.whatsapp.net"}, "message": {"conversation": "hi"}}]}});
        let t = Instant::now();
        let (status, answer) = conn
            .post("/webhook/whatsapp/incoming", &serde_json::to_vec(&body)?)
            .await?;
        if !(200..300).contains(&status) {
            bail!(
                "webhook answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        latencies.push(t.elapsed().as_secs_f64());
        let answer: Value = serde_json::from_slice(&answer)?;
        if let Some(id) = answer["jobs"][0]["job_id"].as_str() {
            written.push(id.to_owned());
        }
    }
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
