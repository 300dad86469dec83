//! How much of the body budget (`crate::context::BodyBudget`) a request reserves before its body
//! is read: its declared length, or the body limit when it declares none. When the budget is
//! spent the request is answered 503 at once, so a flood of large bodies costs a bounded amount
//! of memory. Unauthenticated requests never reach a body extractor, so they cannot spend it.

use axum::http::{HeaderMap, StatusCode, header};
use tokio::sync::OwnedSemaphorePermit;

use super::ApiError;
use crate::context::BodyBudget;

/// Reserves room for a body of `bytes`, or the 503 that says the budget is spent.
pub(super) fn reserve(budget: &BodyBudget, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
    budget.reserve(bytes).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "request bodies in flight use the whole http.body_budget_bytes ({} bytes); retry shortly",
                budget.total()
            ),
        )
    })
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

    #[test]
    fn a_spent_budget_is_a_503_naming_the_setting() {
        let b = BodyBudget::new(1024);
        let _all = reserve(&b, 1024).unwrap();
        let e = reserve(&b, 1).unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.detail.contains("http.body_budget_bytes"), "{}", e.detail);
    }
}
