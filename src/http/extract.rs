//! Body (and query) extractors whose rejections are the API's JSON errors: malformed JSON, a
//! wrong content type, an oversized body or a malformed query each get a 4xx naming the problem. Both reserve the body's room in
//! the body budget before reading it; take them as a handler's last parameter, after the
//! extractor that authenticates the request, so nothing is read for an unauthenticated client.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use tokio::sync::OwnedSemaphorePermit;

use super::ApiError;
use super::budget::{reservation, reserve};
use crate::context::AppContext;

/// A JSON body as `T`, and its room in the body budget, held until the handler returns: what a
/// handler builds from its body (a parsed tree, the jobs of a batch) is a small multiple of it,
/// so the budget bounds that memory too.
pub(super) struct JsonBody<T>(pub(super) T, pub(super) OwnedSemaphorePermit);

/// The query string as `T`; a malformed one is a 400 JSON error (axum's own is plain text).
pub(super) struct JsonQuery<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for JsonQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| JsonQuery(q))
            // axum's text names the parameter and the problem; it echoes no more than the query.
            .map_err(|r| ApiError::invalid(r.body_text()))
    }
}

/// A path parameter as `T`; one that is not UTF-8 (`%ff`) or does not parse is a 400 JSON
/// error (axum's own is plain text).
pub(super) struct JsonPath<T>(pub(super) T);

impl<T, S> axum::extract::FromRequestParts<S> for JsonPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| JsonPath(p))
            .map_err(|r| ApiError::invalid(r.body_text()))
    }
}

/// A body read within the budget, as bytes (the Twilio forms, whose signature covers them).
pub(super) struct RawBody(pub(super) Bytes);

/// The body, read within the budget; the room stays reserved while the permit lives.
async fn read_bytes(
    req: Request,
    ctx: &AppContext,
) -> Result<(Bytes, OwnedSemaphorePermit), ApiError> {
    let room = reservation(req.headers(), ctx.settings.http.body_limit_bytes);
    let permit = reserve(&ctx.body_budget, room)?;
    let bytes = Bytes::from_request(req, ctx).await.map_err(|r| {
        // Reading failed (a bad chunk size, a connection cut short): not a parse error.
        let error = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "unreadable_body"
        };
        ApiError::new(r.status(), error, r.body_text())
    })?;
    Ok((bytes, permit))
}

impl FromRequest<AppContext> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &AppContext) -> Result<Self, Self::Rejection> {
        read_bytes(req, ctx).await.map(|(bytes, _)| RawBody(bytes))
    }
}

impl<T> FromRequest<AppContext> for JsonBody<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &AppContext) -> Result<Self, Self::Rejection> {
        // The checks and messages are axum's `Json`, but a body is parsed directly first:
        // axum deserializes through serde_path_to_error, whose path tracking made about 30
        // allocations per webhook request. Only a body that fails goes through axum again, for
        // its message naming the position or field.
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let (bytes, room) = read_bytes(req, ctx).await?;
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(JsonBody(v, room)),
            Err(_) => match Json::<T>::from_bytes(&bytes) {
                Ok(Json(v)) => Ok(JsonBody(v, room)),
                Err(rejection) => Err(rejection_error(&rejection)),
            },
        }
    }
}

/// `application/json` or `application/<anything>+json`, parameters allowed: what axum accepts.
pub(super) fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let json = |s: &str| s.eq_ignore_ascii_case("json");
    kind.eq_ignore_ascii_case("application")
        && (json(subtype)
            || subtype
                .rsplit_once('+')
                .is_some_and(|(_, suffix)| json(suffix)))
}

pub(super) fn rejection_error(r: &JsonRejection) -> ApiError {
    let status = r.status();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        _ => "malformed_json",
    };
    // axum's text names the JSON position or the missing field; it never echoes the body.
    ApiError::new(status, error, r.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_as_axum_accepts_them() {
        let accepts = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            json_content_type(&h)
        };
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
            "application/cloudevents+json; charset=UTF-8",
        ] {
            assert!(accepts(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "text/json",
            "application",
            "application/x-www-form-urlencoded",
            "",
        ] {
            assert!(!accepts(bad), "{bad}");
        }
        assert!(!json_content_type(&HeaderMap::new()));
    }
}
