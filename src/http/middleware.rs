//! Per-request protection and measurement: a body declared over the limit is refused before it
//! is read, a cap on requests in flight (more are answered 503 at once rather than queued), a
//! request timeout, and request metrics by route and status.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;
use crate::metrics as m;

#[derive(Clone)]
pub(super) struct Limits {
    pub(super) in_flight: Arc<Semaphore>,
    pub(super) timeout: Duration,
    pub(super) body_limit: usize,
}

/// A `Content-Length` over the body limit gets 413 at once, on every route: the body is never
/// read and the request holds no slot.
pub(super) async fn refuse_oversized(
    State(limits): State<Limits>,
    req: Request,
    next: Next,
) -> Response {
    match super::budget::declared_length(req.headers()) {
        Some(n) if n > limits.body_limit => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the body declares {n} bytes; http.body_limit_bytes is {}",
                limits.body_limit
            ),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

pub(super) async fn protect(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let response = match limits.in_flight.clone().try_acquire_owned() {
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry shortly",
        )
        .into_response(),
        Ok(_permit) => match tokio::time::timeout(limits.timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("the request took longer than {:?}", limits.timeout),
            )
            .into_response(),
        },
    };
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (requests, duration) = request_metrics(route, response.status().as_u16());
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    response
}

type RequestMetrics = (metrics::Counter, metrics::Histogram);

/// The request counter and duration histogram of one route and status, registered once.
/// Registering per request (`counter!` with owned labels) cost about ten allocations and a
/// registry lookup for every request; the routes and statuses seen are few.
fn request_metrics(route: &str, status: u16) -> RequestMetrics {
    static SEEN: LazyLock<Mutex<HashMap<u16, HashMap<String, RequestMetrics>>>> =
        LazyLock::new(Default::default);
    // A poisoned lock only means another request panicked mid-insert; the map is still whole.
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = seen.get(&status).and_then(|by_route| by_route.get(route)) {
        return found.clone();
    }
    m::handle();
    let made = (
        metrics::counter!(m::HTTP_REQUESTS, "route" => route.to_owned(), "status" => status.to_string()),
        metrics::histogram!(m::HTTP_DURATION, "route" => route.to_owned()),
    );
    seen.entry(status)
        .or_default()
        .insert(route.to_owned(), made.clone());
    made
}
