//! The accept loop: a cap on open connections, a header read timeout and an idle keep-alive
//! timeout, so half-open, slow and idle connections cannot pile up until the process runs out of
//! file descriptors and health becomes unreachable.
//!
//! `axum::serve` has none of these (hyper's header timeout needs a timer it does not set), and
//! hyper's own header timeout starts when the connection waits for the next request, so it would
//! also be the keep-alive timeout. Load balancers want the backend's keep-alive longer than their
//! own (60 s on the common ones) while a request head must arrive in seconds, so the two are
//! watched here separately: after a response, a connection is idle until the next request's
//! first byte arrives, and from that byte its head must be complete within the header timeout.
//! A new connection gets the header timeout from its accept.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::metrics as m;

/// The connection limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// From a request's first byte to its complete head.
    pub header_read: Duration,
    /// A connection with no request in progress and no bytes arriving is closed after this.
    pub idle: Duration,
}

impl ConnLimits {
    /// Above this many open connections, idle ones get only the header timeout: under pressure
    /// a keep-alive connection must not hold a slot that a new client could use.
    fn pressure_mark(&self) -> usize {
        self.max_connections - self.max_connections / 4
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish (the
/// supervisor bounds how long). `name` labels the metrics and logs (`public`, `ops`).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(AtomicUsize::new(0));
    let tracker = TaskTracker::new();
    let open_gauge = metrics::gauge!(m::HTTP_CONNECTIONS_OPEN, "listener" => name);
    let refused = metrics::counter!(m::HTTP_CONNECTIONS_REFUSED, "listener" => name);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: the connection stays in the backlog; back off briefly
                    // instead of spinning on the same error.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused.increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let now_open = open.fetch_add(1, Ordering::Relaxed) + 1;
        open_gauge.set(now_open as f64);
        let (router, open, open_gauge, stop) = (
            router.clone(),
            open.clone(),
            open_gauge.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            serve_connection(stream, peer, router, limits, &open, &stop).await;
            let left = open.fetch_sub(1, Ordering::Relaxed) - 1;
            open_gauge.set(left as f64);
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// What the I/O wrapper and the service share about one connection.
struct ConnState {
    started: Instant,
    /// Requests handed to the router and not yet answered.
    busy: AtomicUsize,
    /// Milliseconds after `started` when the connection last became idle.
    idle_since: AtomicU64,
    /// Milliseconds after `started` + 1 when a request head's first byte arrived; 0 for none.
    head_since: AtomicU64,
    /// A request has been answered on this connection.
    served: std::sync::atomic::AtomicBool,
}

impl ConnState {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

enum Verdict {
    Fine(Duration),
    Idle,
    SlowHead,
}

fn judge(state: &ConnState, limits: &ConnLimits, open: usize) -> Verdict {
    let tick = (limits.header_read.min(limits.idle) / 4)
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    if state.busy.load(Ordering::Acquire) > 0 {
        return Verdict::Fine(tick);
    }
    let now = state.now_ms();
    let head = state.head_since.load(Ordering::Acquire);
    if head > 0 {
        if now.saturating_sub(head - 1) >= limits.header_read.as_millis() as u64 {
            return Verdict::SlowHead;
        }
        return Verdict::Fine(tick);
    }
    // A connection that has never sent a request gets the header timeout from its accept:
    // keep-alive is earned by a request, not by opening a socket.
    if !state.served.load(Ordering::Acquire) {
        if now >= limits.header_read.as_millis() as u64 {
            return Verdict::SlowHead;
        }
        return Verdict::Fine(tick);
    }
    let idle = if open > limits.pressure_mark() {
        limits.idle.min(limits.header_read)
    } else {
        limits.idle
    };
    if now.saturating_sub(state.idle_since.load(Ordering::Acquire)) >= idle.as_millis() as u64 {
        Verdict::Idle
    } else {
        Verdict::Fine(tick)
    }
}

// Long on purpose: one connection's whole timeline (header deadline, serving, idle close, shutdown)
// in one select loop.
async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: ConnLimits,
    open: &AtomicUsize,
    shutdown: &CancellationToken,
) {
    let state = Arc::new(ConnState {
        started: Instant::now(),
        busy: AtomicUsize::new(0),
        idle_since: AtomicU64::new(0),
        head_since: AtomicU64::new(0),
        served: std::sync::atomic::AtomicBool::new(false),
    });
    let io = TokioIo::new(Watched::new(stream, state.clone()));
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = service_state.clone();
        state.busy.fetch_add(1, Ordering::AcqRel);
        state.head_since.store(0, Ordering::Release);
        let router = router.clone();
        async move {
            let _done = Answered(state);
            let mut req = req.map(Body::new);
            // The client's address, for limits kept per client (the dashboard's sign-in).
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            router.oneshot(req).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our watcher times heads; hyper's timer would also cut idle keep-alive connections.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .max_headers(100);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let wait = match closing {
            Some(deadline) => deadline,
            None => match judge(&state, &limits, open.load(Ordering::Relaxed)) {
                Verdict::Fine(tick) => tokio::time::Instant::now() + tick,
                Verdict::SlowHead => {
                    tracing::debug!("closing a connection whose request head is too slow");
                    return;
                }
                Verdict::Idle => {
                    conn.as_mut().graceful_shutdown();
                    // A response still being written to a slow reader gets one more header
                    // timeout; after that the connection is dropped.
                    let deadline = tokio::time::Instant::now() + limits.header_read;
                    closing = Some(deadline);
                    deadline
                }
            },
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                // In-flight requests finish; the supervisor's grace period bounds the wait.
                closing = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
            () = tokio::time::sleep_until(wait) => {
                if closing.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return;
                }
            }
        }
    }
}

/// Marks a request answered (or abandoned) when its future ends.
struct Answered(Arc<ConnState>);

impl Drop for Answered {
    fn drop(&mut self) {
        let state = &self.0;
        state.idle_since.store(state.now_ms(), Ordering::Release);
        state.served.store(true, Ordering::Release);
        state.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The TCP stream, noting when bytes of a new request head start to arrive, and giving the
/// answers hyper writes by itself the API's JSON error shape.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
    /// A rewritten refusal still being written: the bytes and how many went out.
    rewritten: Option<(Vec<u8>, usize)>,
}

impl Watched {
    fn new(inner: TcpStream, state: Arc<ConnState>) -> Self {
        Self {
            inner,
            state,
            rewritten: None,
        }
    }

    /// Writes what is left of a rewritten refusal.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, at)) = &mut self.rewritten {
            if *at >= bytes.len() {
                self.rewritten = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*at..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as written: as itself, or as the JSON refusal it is rewritten into.
    fn write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<std::io::Result<usize>>> {
        let json = hyper_refusal(buf)?;
        self.rewritten = Some((json, 0));
        // Whatever does not go out now goes with the flush and shutdown hyper does next.
        Some(match self.drain(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(buf.len())),
        })
    }
}

/// hyper answers a request head it cannot parse (400), a URI too long (414) or headers past
/// its limits (431) by itself, with an empty body, then closes the connection. No handler
/// answers with an empty body, so such a head is hyper's: it becomes the API's JSON error.
fn hyper_refusal(head: &[u8]) -> Option<Vec<u8>> {
    // Every response is written through here: the common ones are passed at the first byte.
    if !head.starts_with(b"HTTP/1.1 4") || head.len() > 512 || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let (error, detail) = match rest.get(..3)? {
        "400" => (
            "malformed_request",
            "the request line or a header is not valid HTTP/1.1",
        ),
        "414" => ("uri_too_long", "the request URI is too long"),
        "431" => (
            "headers_too_large",
            "the request's headers are too large or too many (at most 64 KiB and 100 headers)",
        ),
        _ => return None,
    };
    let lines: Vec<&str> = rest.trim_end().split("\r\n").collect();
    if !lines
        .iter()
        .any(|l| l.eq_ignore_ascii_case("content-length: 0"))
    {
        return None;
    }
    let status_line = lines.first()?;
    let date = lines
        .iter()
        .find(|l| l.len() > 5 && l[..5].eq_ignore_ascii_case("date:"))
        .map_or(String::new(), |d| format!("{d}\r\n"));
    let body = serde_json::json!({"error": error, "detail": detail}).to_string();
    Some(
        format!(
            "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{date}\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let s = &self.state;
            if s.busy.load(Ordering::Acquire) == 0 && s.head_since.load(Ordering::Acquire) == 0 {
                s.head_since.store(s.now_ms() + 1, Ordering::Release);
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        if this.rewritten.is_some() {
            return Poll::Pending;
        }
        if let Some(done) = this.write(cx, buf) {
            return done;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        if this.rewritten.is_some() {
            return Poll::Pending;
        }
        // hyper's own refusal is a head alone, in one slice.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && let Some(done) = this.write(cx, only)
        {
            return done;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The file descriptors a process with these limits may need at once, with room for Redis
/// connections, recordings and logs.
pub fn descriptors_needed(connections: usize, calls: usize) -> u64 {
    // Each live call holds its WebSocket and two track files.
    (connections + calls * 3 + 128) as u64
}

/// Checks the open-file limit against `needed`, raising the soft limit towards the hard one
/// when that is enough. The error names the limit and the settings that size the need.
pub fn ensure_descriptors(needed: u64) -> anyhow::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(soft);
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if hard >= needed {
        let raised = rustix::process::Rlimit {
            current: Some(needed),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            tracing::info!(from = soft, to = needed, "raised the open-file limit");
            return Ok(needed);
        }
    }
    anyhow::bail!(
        "the open-file limit ({soft}, hard {hard}) is below the {needed} descriptors that \
         http.max_connections, http.ops_max_connections and calls.max_concurrent_calls need; \
         raise `ulimit -n` or lower those settings"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_bodiless_refusals_are_rewritten() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 07:00:00 GMT\r\n\r\n";
        let json = String::from_utf8(hyper_refusal(hyper).unwrap()).unwrap();
        assert!(json.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(json.contains("\r\ncontent-type: application/json\r\n"));
        assert!(json.contains("\r\ndate: Mon, 07 Dec 2026 07:00:00 GMT\r\n"));
        let (head, body) = json.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "headers_too_large");
        let bad = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(hyper_refusal(bad).is_some());
        // A handler's answers carry bodies, and other statuses are left alone.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n";
        assert!(hyper_refusal(ours).is_none());
        let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert!(hyper_refusal(ok).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx";
        assert!(hyper_refusal(with_body).is_none());
    }
}
