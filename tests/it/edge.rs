//! The public edge under hostile and overloaded clients, with the real binary: bodies are not
//! read before authentication, a declared oversize is refused at once, the body budget holds,
//! health answers while the request cap is saturated, slow and idle connections are closed, and
//! the connection cap leaves the ops port answerable.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::process::{TEST_SECRET, TEST_TOKEN};
use crate::support::redis_server::{TestDb, TestRedis};
use crate::support::{ProsaasProcess, db};

fn api(t: &TestDb, extra: &[(&str, &str)]) -> ProsaasProcess {
    api_at(&t.url(), extra)
}

fn api_at(url: &str, extra: &[(&str, &str)]) -> ProsaasProcess {
    let mut env = vec![("REDIS_URL", url)];
    env.extend_from_slice(extra);
    let p = ProsaasProcess::start("api", &env);
    p.wait_for_log("API mode", Duration::from_secs(20));
    p
}

/// Resident memory of a process, in KiB, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A request head for `path` with these extra header lines.
fn head(path: &str, headers: &[&str], content_length: usize) -> String {
    let mut h = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n"
    );
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

/// A connection that has sent a request head (and `then`, the start of its body).
async fn sent_head(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
    content_length: usize,
    then: &[u8],
) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(head(path, headers, content_length).as_bytes())
        .await
        .unwrap();
    c.write_all(then).await.unwrap();
    c
}

/// Reads a response's status line, or `None` when the connection closes first.
async fn status_of(conn: &mut TcpStream, within: Duration) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(line) = buf
                .split(|&b| b == b'\n')
                .next()
                .filter(|_| buf.contains(&b'\n'))
            {
                let line = String::from_utf8_lossy(line);
                return line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// Whether the server has closed `conn` (a read sees the end or an error) within `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn get_status(http: &reqwest::Client, url: String) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

fn client() -> reqwest::Client {
    client_with_timeout(Duration::from_secs(5))
}

fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: a table of unauthenticated requests against one api process, its memory read
// before and after.
async fn unauthenticated_bodies_are_refused_unread_and_cost_no_memory() {
    let t = db();
    let p = api(&t, &[]);
    let addr = p.http_addr();

    // The head alone gets the answer: the body is never waited for.
    let mut conn = sent_head(addr, "/webhook/whatsapp/incoming", &[], 1_000_000, b"").await;
    assert_eq!(
        status_of(&mut conn, Duration::from_secs(2)).await,
        Some(401)
    );
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let form_head = head("/webhook/twilio/status", &[], 1_000)
        .replace("application/json", "application/x-www-form-urlencoded");
    conn.write_all(form_head.as_bytes()).await.unwrap();
    assert_eq!(
        status_of(&mut conn, Duration::from_secs(2)).await,
        Some(403)
    );
    let mut conn = sent_head(
        addr,
        "/api/jobs/enqueue",
        &["Authorization: Bearer wrong"],
        1_000,
        b"",
    )
    .await;
    assert_eq!(
        status_of(&mut conn, Duration::from_secs(2)).await,
        Some(401)
    );

    // 300 anonymous clients each pushing a whole 1 MB body at once (the attack took the api past
    // 600 MB before the check moved ahead of the read).
    let before = rss_kib(p.pid());
    let body = vec![b'x'; 1_000_000];
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let h = head("/webhook/whatsapp/incoming", &[], body.len());
            let _ = conn.write_all(h.as_bytes()).await;
            // The server answers and closes mid-body; a failed write is the expected end.
            let _ = conn.write_all(&body).await;
            status_of(&mut conn, Duration::from_secs(10)).await
        }));
    }
    let mut answered_401 = 0;
    for task in tasks {
        if task.await.unwrap() == Some(401) {
            answered_401 += 1;
        }
    }
    let after = rss_kib(p.pid());
    assert!(
        answered_401 >= 250,
        "{answered_401} of 300 were answered 401"
    );
    assert!(
        after < before + 60 * 1024,
        "RSS grew from {before} KiB to {after} KiB under unauthenticated bodies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: the budget is held by slow bodies in flight while the oversize requests are
// refused: one process, one sequence.
async fn a_declared_oversize_is_refused_at_once_and_the_body_budget_holds() {
    let t = db();
    // Room for two 1 MB bodies in flight.
    let p = api(
        &t,
        &[
            ("PROSAAS__HTTP__BODY_LIMIT_BYTES", "1048576"),
            ("PROSAAS__HTTP__BODY_BUDGET_BYTES", "2097152"),
        ],
    );
    let addr = p.http_addr();
    let secret = format!("X-Internal-Secret: {TEST_SECRET}");

    let started = Instant::now();
    let mut conn = sent_head(
        addr,
        "/webhook/whatsapp/incoming",
        &[&secret],
        1_048_577,
        b"",
    )
    .await;
    assert_eq!(
        status_of(&mut conn, Duration::from_secs(2)).await,
        Some(413)
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    // Two authenticated slow bodies hold the whole budget...
    let mut slow = Vec::new();
    for _ in 0..2 {
        let c = sent_head(
            addr,
            "/webhook/whatsapp/incoming",
            &[&secret],
            1_048_576,
            br#"{"tenantId":"#,
        )
        .await;
        slow.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...so a third is answered 503 at once, a small one too, while health is untouched.
    let mut third = sent_head(addr, "/webhook/whatsapp/incoming", &[&secret], 100, b"").await;
    assert_eq!(
        status_of(&mut third, Duration::from_secs(2)).await,
        Some(503)
    );
    let http = client();
    assert_eq!(get_status(&http, p.url("/healthz")).await, 200);
    assert_eq!(get_status(&http, p.url("/readyz")).await, 200);

    // Once they are gone, the budget is whole again.
    drop(slow);
    let ok = crate::support::eventually("the budget to come back", Duration::from_secs(15), || {
        let http = http.clone();
        let url = p.url("/webhook/whatsapp/incoming");
        async move {
            let r = http
                .post(url)
                .header("X-Internal-Secret", TEST_SECRET)
                .json(&serde_json::json!({"tenantId": "1", "payload": {"messages": []}}))
                .send()
                .await
                .ok()?;
            (r.status() != 503).then_some(r.status().as_u16())
        }
    })
    .await;
    assert_eq!(ok, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_the_request_cap_is_saturated() {
    let t = db();
    let p = api(
        &t,
        &[
            ("PROSAAS__API__MAX_CONCURRENT_REQUESTS", "20"),
            ("PROSAAS__API__REQUEST_TIMEOUT_MS", "30000"),
        ],
    );
    let addr = p.http_addr();
    let auth = format!("Authorization: Bearer {TEST_TOKEN}");
    let mut slow = Vec::new();
    for _ in 0..20 {
        let c = sent_head(addr, "/api/jobs/enqueue", &[&auth], 1_000, b"{").await;
        slow.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = sent_head(addr, "/api/jobs/enqueue", &[&auth], 2, b"{}").await;
    assert_eq!(
        status_of(&mut over, Duration::from_secs(2)).await,
        Some(503),
        "the cap is saturated"
    );
    let http = client();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let started = Instant::now();
        assert_eq!(get_status(&http, p.url(path)).await, 200, "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: raw sockets in three states at once against one api process, each timed against
// the same limits.
async fn slow_heads_and_idle_connections_are_closed() {
    let t = db();
    let p = api(
        &t,
        &[
            ("PROSAAS__HTTP__HEADER_READ_TIMEOUT_MS", "500"),
            ("PROSAAS__HTTP__IDLE_TIMEOUT_MS", "1500"),
        ],
    );
    let addr = p.http_addr();
    let mut half_line = Vec::new();
    let mut half_headers = Vec::new();
    let mut silent = Vec::new();
    for _ in 0..100 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /heal").await.unwrap();
        half_line.push(c);
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        half_headers.push(c);
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // A keep-alive client that finished a request is idle, not slow.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        status_of(&mut kept, Duration::from_secs(2)).await,
        Some(200)
    );

    // Half a head, or nothing at all from a new connection: closed by the header timeout.
    for c in half_line
        .iter_mut()
        .chain(half_headers.iter_mut())
        .chain(silent.iter_mut())
    {
        assert!(
            closed_within(c, Duration::from_secs(3)).await,
            "a half-sent or never-sent head outlived the header timeout"
        );
    }
    // Past the header timeout but inside the idle one, the served connection is still open,
    // and keeps serving.
    assert!(!closed_within(&mut kept, Duration::from_millis(300)).await);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        status_of(&mut kept, Duration::from_secs(2)).await,
        Some(200)
    );
    let idle_from = Instant::now();
    assert!(!closed_within(&mut kept, Duration::from_millis(900)).await);
    assert!(
        closed_within(&mut kept, Duration::from_secs(3)).await,
        "an idle keep-alive connection outlived the idle timeout"
    );
    assert!(idle_from.elapsed() >= Duration::from_millis(1400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_the_ops_port_still_answers() {
    let t = db();
    let ops_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ops = ops_port.to_string();
    let p = api(
        &t,
        &[
            ("PROSAAS__HTTP__MAX_CONNECTIONS", "16"),
            ("PROSAAS__HTTP__OPS_PORT", &ops),
        ],
    );
    let addr = p.http_addr();
    p.wait_for_log("ops HTTP listening on", Duration::from_secs(5));
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The 17th is accepted by the kernel and closed by the server at once.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(status_of(&mut extra, Duration::from_secs(2)).await, None);

    let ops_addr = SocketAddr::from(([127, 0, 0, 1], ops_port));
    let http = client();
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            get_status(&http, format!("http://{ops_addr}{path}")).await,
            200,
            "{path} on the ops port"
        );
    }
    assert_eq!(
        get_status(&http, format!("http://{ops_addr}/api/jobs/health")).await,
        404,
        "the ops port serves only the ops routes"
    );
    let metrics =
        crate::support::promtext::scrape_clean(&http, format!("http://{ops_addr}/metrics")).await;
    let refused = metrics
        .lines()
        .find(|l| {
            l.starts_with("prosaas_http_connections_refused_total")
                && l.contains("listener=\"public\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(refused.is_some_and(|n| n >= 1.0), "{metrics}");
    // Freed slots are usable again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_status(&http, p.url("/healthz")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_cannot_forge_a_text_log_line() {
    let t = db();
    let p = api(&t, &[("PROSAAS__LOG__FORMAT", "pretty")]);
    let http = client();
    let body = serde_json::json!({"tenantId": "1", "payload": {"messages": [
        {"key": {"id": "M1\nFORGED level=ERROR admin logged in", "remoteJid": "972500000000@s.whatsapp.net"},
         "message": {"conversation": "hi"}}]}});
    for _ in 0..2 {
        let r = http
            .post(p.url("/webhook/whatsapp/incoming"))
            .header("X-Internal-Secret", TEST_SECRET)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let line = p.wait_for_log("Skipped duplicate webhook", Duration::from_secs(5));
    assert!(line.contains("msg_id=M1\\nFORGED"), "{line}");
    assert!(
        !p.logs().lines().any(|l| l.starts_with("FORGED")),
        "{}",
        p.logs()
    );
}

#[test]
fn too_low_an_open_file_limit_refuses_to_start_with_one_line() {
    let t = db();
    let url = t.url();
    // `ulimit -n` in sh sets the soft and the hard limit: nothing can be raised.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -n 256 && exec \"$0\" --role api",
            crate::support::process::BIN,
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("REDIS_URL", url.as_str()),
            ("PORT", "0"),
            ("PROSAAS__HTTP__HOST", "127.0.0.1"),
            ("PROSAAS__API__ALLOW_MISSING_SECRETS", "true"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("open-file limit (256") && last.contains("http.max_connections"),
        "{err}"
    );
    // Sized to fit the limit, the same process starts and serves.
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -n 256 && exec \"$0\" --role api",
            crate::support::process::BIN,
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("REDIS_URL", url.as_str()),
            ("PORT", "0"),
            ("PROSAAS__HTTP__HOST", "127.0.0.1"),
            ("PROSAAS__API__ALLOW_MISSING_SECRETS", "true"),
            ("PROSAAS__HTTP__MAX_CONNECTIONS", "64"),
        ])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "an api sized to the limit must keep running");
}

/// Sends `request` raw on a new connection and reads the whole answer until the server closes
/// it or 5 s pass: `(status, content type, JSON body)`.
async fn raw_answer(addr: SocketAddr, request: &[u8]) -> (u16, String, serde_json::Value) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything sent.
    let _ = c.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (
        status,
        content_type,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json_even_the_ones_hyper_makes() {
    let t = db();
    let p = api(&t, &[]);
    let addr = p.http_addr();
    let huge = format!(
        "GET /api/jobs/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /api/jobs/health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let bad_path = format!(
        "GET /api/jobs/%00%ff HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let bad_chunk = format!(
        "POST /webhook/whatsapp/incoming HTTP/1.1\r\nHost: x\r\nX-Internal-Secret: {TEST_SECRET}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    );
    for (what, request, status, error) in [
        ("a 1 MiB header", huge.as_bytes(), 431, "headers_too_large"),
        ("10,000 headers", many.as_bytes(), 431, "headers_too_large"),
        (
            "a request line that is not HTTP",
            &b"GARBAGE\r\n\r\n"[..],
            400,
            "malformed_request",
        ),
        (
            "a path that is not UTF-8",
            bad_path.as_bytes(),
            400,
            "invalid_request",
        ),
        (
            "a bad chunk size",
            bad_chunk.as_bytes(),
            400,
            "unreadable_body",
        ),
    ] {
        let (got, content_type, body) = raw_answer(addr, request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(content_type, "application/json", "{what}");
        assert_eq!(body["error"], error, "{what}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}"
        );
    }
    // The process is unharmed.
    assert_eq!(get_status(&client(), p.url("/healthz")).await, 200);
}

/// A WhatsApp webhook of `n` messages with ids `<tag>-<i>`, each with `text` bytes of text.
fn batch_body(n: usize, text: usize, tag: &str) -> serde_json::Value {
    let messages: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"key": {"id": format!("{tag}-{i}"), "remoteJid": "972500000000@s.whatsapp.net"},
                "message": {"conversation": "x".repeat(text)}})
        })
        .collect();
    serde_json::json!({"tenantId": "1", "payload": {"messages": messages}})
}

async fn post_batch(
    http: &reqwest::Client,
    p: &ProsaasProcess,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = http
        .post(p.url("/webhook/whatsapp/incoming"))
        .header("X-Internal-Secret", TEST_SECRET)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_bounded_by_its_messages_and_its_memory_by_its_body() {
    let t = db();
    let p = api(&t, &[]);
    let http = client();
    // Over api.max_messages_per_request (1,000): refused whole, before any job is built.
    for n in [1_001, 10_000] {
        let (status, body) = post_batch(&http, &p, &batch_body(n, 0, "big")).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["error"], "too_many_messages");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("api.max_messages_per_request")
        );
    }
    let mut c = t.connection();
    let queued = |c: &mut redis::Connection| -> usize {
        redis::Commands::llen(c, "rq:queue:default").unwrap()
    };
    assert_eq!(queued(&mut c), 0);

    // 16 webhooks at the limit at once (1,000 messages, ~0.6 MB each): all written, and the
    // process holds a small multiple of the bodies it is given.
    let pid = p.pid();
    let before = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (peak, watching) = (peak.clone(), watching.clone());
        std::thread::spawn(move || {
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let bodies: Vec<serde_json::Value> = (0..16)
        .map(|j| batch_body(1_000, 520, &format!("b{j}")))
        .collect();
    let answers =
        futures_util::future::join_all(bodies.iter().map(|b| post_batch(&http, &p, b))).await;
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{}", body["detail"]);
        assert_eq!(body["enqueued"], 1_000);
    }
    assert_eq!(queued(&mut c), 16_000);
    let grew_mib = (peak.load(std::sync::atomic::Ordering::Relaxed) - before) / 1024;
    eprintln!("16 webhooks of 1,000 messages: RSS +{grew_mib} MiB at the peak");
    assert!(grew_mib < 100, "RSS grew {grew_mib} MiB");
}

/// A request cut by its deadline between two pieces of a batch answers 503, and the provider's
/// retry writes exactly what is missing. The cut is made, not raced for: once the first piece
/// has landed, Redis stops taking writes (`CLIENT PAUSE ... WRITE`) until the 503 is back,
/// whatever this machine's speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_short_answers_503_and_its_retry_completes_it_once() {
    // A server of its own: the pause below must not stall other tests.
    let redis = TestRedis::start();
    let large = [
        ("PROSAAS__API__MAX_MESSAGES_PER_REQUEST", "20000"),
        ("PROSAAS__HTTP__BODY_LIMIT_BYTES", "4194304"),
    ];
    let mut env = large.to_vec();
    env.push(("PROSAAS__API__REQUEST_TIMEOUT_MS", "2000"));
    let hurried = api_at(&redis.url(), &env);
    // 20,000 messages can take a debug build on a busy machine past `client()`'s 5 s.
    let http = client_with_timeout(Duration::from_secs(60));
    let total = 20_000u64;
    let body = batch_body(total as usize, 0, "cut");
    let mut c = redis.connection(0);
    let cut = async {
        loop {
            let landed: u64 = redis::Commands::llen(&mut c, "rq:queue:default").unwrap();
            if landed > 0 {
                let _: () = redis::cmd("CLIENT")
                    .arg("PAUSE")
                    .arg(30_000)
                    .arg("WRITE")
                    .query(&mut c)
                    .unwrap();
                return landed;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let ((status, answer), landed) = tokio::join!(post_batch(&http, &hurried, &body), cut);
    assert_eq!((status, answer["error"].as_str()), (503, Some("timeout")));
    assert!(landed < total, "all {total} landed before the pause");
    let mut c = redis.connection(0);
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut c).unwrap();
    // The piece in flight at the cut may still land: wait until nothing moves.
    let mut written: u64 = redis::Commands::llen(&mut c, "rq:queue:default").unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now: u64 = redis::Commands::llen(&mut c, "rq:queue:default").unwrap();
        if now == written {
            break;
        }
        written = now;
    }
    eprintln!("{written} of {total} written before the cut");
    assert!(
        written > 0 && written < total,
        "{written} written before the cut"
    );
    // The provider retries (here on another api process): the pieces written are duplicates,
    // the rest is written, nothing twice.
    let patient = api_at(&redis.url(), &large);
    let (status, answer) = post_batch(&http, &patient, &body).await;
    assert_eq!(status, 200, "{}", answer["detail"]);
    assert_eq!(answer["duplicates"].as_u64(), Some(written));
    assert_eq!(answer["enqueued"].as_u64(), Some(total - written));
    let queued: u64 = redis::Commands::llen(&mut c, "rq:queue:default").unwrap();
    assert_eq!(queued, total, "every message once");
}
