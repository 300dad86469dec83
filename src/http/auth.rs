//! Shared-secret and bearer-token checks, in constant time. A secret that is not configured
//! makes its endpoints answer 503 (the all role in development), never accept anything.
//!
//! Each check is an extractor over the request head: a handler takes it before its body
//! extractor, so an unauthenticated request is refused before a byte of its body is read.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::context::AppContext;
use crate::webhooks::twilio;

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

/// A request that carried the bridge's `X-Internal-Secret`.
pub(super) struct InternalSecret;

impl FromRequestParts<AppContext> for InternalSecret {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &AppContext,
    ) -> Result<Self, Self::Rejection> {
        internal_secret(&parts.headers, &ctx.settings.api.internal_secret).map(|()| InternalSecret)
    }
}

/// A request that may be Twilio's: Twilio is configured, the body is a form (or JSON whose hash
/// the URL carries as `bodySHA256`) and it carries a signature. The signature covers the body,
/// so it is checked once the body is read ([`super::ingress::twilio_form`]); this only keeps
/// unsigned requests from being read at all.
pub(super) struct TwilioSigned {
    pub(super) signature: String,
    pub(super) algorithm: twilio::Algorithm,
    /// The body is JSON, signed through `bodySHA256`, not as form parameters.
    pub(super) json: bool,
}

impl FromRequestParts<AppContext> for TwilioSigned {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &AppContext,
    ) -> Result<Self, Self::Rejection> {
        let api = &ctx.settings.api;
        twilio_configured(&api.twilio_auth_token, &api.public_base_url)?;
        let content_type = parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let body_hashed = parts
            .uri
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "bodySHA256"));
        let json = super::extract::json_content_type(&parts.headers);
        if !(content_type.starts_with("application/x-www-form-urlencoded") || json && body_hashed) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Twilio callbacks must be application/x-www-form-urlencoded, or JSON with bodySHA256 in the URL",
            ));
        }
        let signature = signature_headers(&parts.headers).map_err(|(_, e)| e)?;
        Ok(TwilioSigned {
            signature: signature.header.to_owned(),
            algorithm: signature.algorithm,
            json,
        })
    }
}

/// The signature a Twilio request carries (`X-Twilio-Signature` and the algorithm its
/// settings header names), or the 403 refusing it with a metric's reason.
fn signature_headers(
    headers: &HeaderMap,
) -> Result<twilio::Signature<'_>, (&'static str, ApiError)> {
    let forbidden = |why: &str| ApiError::new(StatusCode::FORBIDDEN, "forbidden", why);
    let header = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ("unsigned", forbidden("X-Twilio-Signature is missing")))?;
    let settings = headers
        .get("x-twilio-webhooks-signature-settings")
        .and_then(|v| v.to_str().ok());
    let algorithm = twilio::Algorithm::from_settings_header(settings).ok_or_else(|| {
        (
            "bad_signature",
            forbidden("X-Twilio-Webhooks-Signature-Settings names an unknown algorithm"),
        )
    })?;
    Ok(twilio::Signature { header, algorithm })
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

fn twilio_configured(token: &str, base: &str) -> Result<(), ApiError> {
    if token.is_empty() {
        return Err(not_configured("TWILIO_AUTH_TOKEN"));
    }
    if base.is_empty() {
        return Err(not_configured("PUBLIC_BASE_URL"));
    }
    Ok(())
}

/// A Media Stream's WebSocket upgrade, checked before it is upgraded: Twilio's signature over
/// the stream URL as Twilio requested it (no parameters), or, only while Twilio's secrets are
/// not configured and `api.allow_missing_secrets` says this is development, nothing.
pub(super) enum TwilioStream {
    Verified,
    Unverified,
}

impl FromRequestParts<AppContext> for TwilioStream {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &AppContext,
    ) -> Result<Self, Self::Rejection> {
        let api = &ctx.settings.api;
        let refuse = |reason: &'static str, error: ApiError| {
            metrics::counter!(crate::metrics::CALL_STREAMS_REFUSED, "reason" => reason)
                .increment(1);
            error
        };
        if let Err(e) = twilio_configured(&api.twilio_auth_token, &api.public_base_url) {
            if api.allow_missing_secrets {
                return Ok(TwilioStream::Unverified);
            }
            return Err(refuse("not_configured", e));
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = twilio::stream::stream_url(&api.public_base_url, path).ok_or_else(|| {
            refuse(
                "not_configured",
                not_configured("PUBLIC_BASE_URL (http or https)"),
            )
        })?;
        let signature =
            signature_headers(&parts.headers).map_err(|(reason, e)| refuse(reason, e))?;
        if !twilio::stream::verify_upgrade(&api.twilio_auth_token, &url, signature) {
            return Err(refuse(
                "bad_signature",
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "X-Twilio-Signature does not match the stream URL: only Twilio opens media streams",
                ),
            ));
        }
        Ok(TwilioStream::Verified)
    }
}
