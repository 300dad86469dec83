//! The one JSON error shape every endpoint answers with: `{"error": ..., "detail": ...}`, and
//! the one policy that turns a jobs error into it: bad input is 400, a Redis outage, timeout or
//! failover is 503 with `Retry-After` (the client should retry; a retried event is
//! de-duplicated), and anything else is a 500 whose detail stays in the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToResponse;

use crate::jobs::JobError;

/// How long a client is asked to wait before retrying a 503: failovers settle in seconds.
pub(super) const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
    /// `Retry-After` (seconds), for answers that say "not now".
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        let retry_after = (status == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_AFTER_SECS);
        Self {
            status,
            error,
            detail: detail.into(),
            retry_after,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    /// Redis cannot do it now: 503 `unavailable`, to be retried.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// A 500 for an unexpected failure (a bug, data we cannot read): the detail is logged, the
    /// client gets a generic message.
    pub fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be completed; see the server log",
        )
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Invalid(msg) => Self::invalid(msg),
            e if e.is_transient() => {
                tracing::warn!(error = %e, "Redis unavailable; answered 503");
                Self::unavailable(e.to_string())
            }
            other => Self::internal(&other),
        }
    }
}

/// Every error answer's body.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(super) struct ErrorBody {
    /// A stable code (`invalid_request`, `not_found`, `unavailable`, ...).
    error: &'static str,
    /// What was wrong, for a person.
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error,
            detail: self.detail,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

// The error answers the OpenAPI document names by reference (`response = BadRequest`).

/// The request was malformed or named something invalid.
#[derive(ToResponse)]
#[response(description = "invalid request")]
#[allow(dead_code)]
pub(super) struct BadRequest(ErrorBody);

/// Credentials missing or wrong.
#[derive(ToResponse)]
#[response(description = "missing or wrong credentials")]
#[allow(dead_code)]
pub(super) struct Unauthorized(ErrorBody);

#[derive(ToResponse)]
#[response(description = "no such job")]
#[allow(dead_code)]
pub(super) struct NotFound(ErrorBody);

#[derive(ToResponse)]
#[response(
    description = "Redis unavailable, or the API at its limit of requests in flight, its body budget or its timeout; retry after Retry-After seconds (a retried event is de-duplicated)"
)]
#[allow(dead_code)]
pub(super) struct Unavailable(ErrorBody);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_503_with_retry_after_and_bugs_are_500() {
        let refused = JobError::Redis(
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down").into(),
        );
        let r = ApiError::from(refused).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let corrupt = JobError::Corrupt {
            id: "j".into(),
            reason: "x".into(),
        };
        let r = ApiError::from(corrupt).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        let r = ApiError::from(JobError::Invalid("bad".into())).into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
