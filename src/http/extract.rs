//! A JSON body extractor whose rejections are the API's JSON errors: malformed JSON, a wrong
//! content type or an oversized body each get a 4xx naming the problem.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;

pub(super) struct JsonBody<T>(pub(super) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(rejection_error(&rejection)),
        }
    }
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
