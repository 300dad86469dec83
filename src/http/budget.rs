//! The memory that request bodies being read may hold together. Each authenticated body
//! reserves its declared length (or the body limit when it declares none) before a byte of it is
//! read, and gives it back once parsed; when the budget is spent the request is answered 503 at
//! once, so a flood of large bodies costs a bounded amount of memory. Unauthenticated requests
//! never reach a body extractor, so they cannot spend it.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// Budget units are KiB: a semaphore acquires at most `u32::MAX` permits at once.
const UNIT: usize = 1024;

#[derive(Debug)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    pub fn new(total_bytes: usize) -> Self {
        let units = total_bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(units)),
            total: total_bytes,
        }
    }

    /// Reserves room for a body of `bytes`; the room is free again when the permit drops.
    pub(super) fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        self.permits
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    format!(
                        "request bodies in flight use the whole http.body_budget_bytes ({} bytes); retry shortly",
                        self.total
                    ),
                )
            })
    }

    /// Bytes free right now (for tests and diagnostics).
    pub fn available(&self) -> usize {
        self.permits.available_permits() * UNIT
    }
}

/// The body length a request declares, if it declares a valid one.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What a body of a request with these headers may reserve: its declared length, else the limit.
pub(super) fn reservation(headers: &HeaderMap, limit: usize) -> usize {
    declared_length(headers).unwrap_or(limit).min(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_returned() {
        let b = BodyBudget::new(10 * 1024);
        let first = b.reserve(6 * 1024).unwrap();
        assert!(b.reserve(5 * 1024).is_err(), "over the budget");
        let small = b.reserve(1).unwrap();
        assert_eq!(b.available(), 3 * 1024);
        drop(first);
        drop(small);
        assert_eq!(b.available(), 10 * 1024);
    }

    #[test]
    fn a_missing_or_bad_length_reserves_the_limit() {
        let mut h = HeaderMap::new();
        assert_eq!(reservation(&h, 100), 100);
        h.insert(header::CONTENT_LENGTH, "40".parse().unwrap());
        assert_eq!(reservation(&h, 100), 40);
        h.insert(header::CONTENT_LENGTH, "4000".parse().unwrap());
        assert_eq!(reservation(&h, 100), 100);
        h.insert(header::CONTENT_LENGTH, "x".parse().unwrap());
        assert_eq!(declared_length(&h), None);
    }
}
