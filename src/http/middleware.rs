//! Per-request protection and measurement: a cap on requests in flight (more are answered 503
//! at once rather than queued), a request timeout, and request metrics by route and status.

use std::sync::Arc;
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
}

pub(super) async fn protect(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
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
    let status = response.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(m::HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
}
