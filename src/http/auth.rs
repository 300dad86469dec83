//! Shared-secret and bearer-token checks, in constant time. A secret that is not configured
//! makes its endpoints answer 503 (the all role in development), never accept anything.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::app::AppContext;

/// A request that carried the internal API token: take it as a handler parameter to require it.
pub(super) struct Bearer;

impl FromRequestParts<AppContext> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &AppContext,
    ) -> Result<Self, Self::Rejection> {
        bearer(&parts.headers, &ctx.settings.api.internal_api_token).map(|()| Bearer)
    }
}

fn equal(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

fn not_configured(variable: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_configured",
        format!("{variable} is not configured on this server"),
    )
}

/// `X-Internal-Secret` must equal the bridge secret.
pub(super) fn internal_secret(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    if expected.is_empty() {
        return Err(not_configured("INTERNAL_SECRET"));
    }
    match headers
        .get("x-internal-secret")
        .and_then(|v| v.to_str().ok())
    {
        Some(given) if equal(given, expected) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "X-Internal-Secret is wrong",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "X-Internal-Secret is missing",
        )),
    }
}

/// `Authorization: Bearer <token>` must carry the internal API token.
pub(super) fn bearer(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    if expected.is_empty() {
        return Err(not_configured("INTERNAL_API_TOKEN"));
    }
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if equal(token.trim(), expected) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization: Bearer <INTERNAL_API_TOKEN> is missing",
        )),
    }
}

pub(super) fn twilio_configured(token: &str, base: &str) -> Result<(), ApiError> {
    if token.is_empty() {
        return Err(not_configured("TWILIO_AUTH_TOKEN"));
    }
    if base.is_empty() {
        return Err(not_configured("PUBLIC_BASE_URL"));
    }
    Ok(())
}
