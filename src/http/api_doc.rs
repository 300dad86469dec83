//! The OpenAPI document of the machine API, generated from the handlers' `#[utoipa::path]`
//! annotations and the types they answer with, so a response's shape is written once: in the
//! type the handler returns. Served at `/api/openapi.json`; tests check that it lists exactly the
//! served routes and that served answers match their schemas. The dashboard's own routes
//! (`dashboard/`) serve its pages and are not part of it.

use std::sync::OnceLock;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{BadRequest, NotFound, Unauthorized, Unavailable};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "prosaas",
        description = "Webhook ingress, internal enqueue and push API, jobs health and admin API. Errors are {\"error\": code, \"detail\": text}; a 503 carries Retry-After."
    ),
    paths(
        super::ingress::whatsapp_incoming,
        super::ingress::twilio_status,
        super::ingress::twilio_recording,
        super::ingress::push_notification,
        super::ingress::enqueue,
        super::health::jobs_health,
        super::admin::failed,
        super::admin::requeue_all,
        super::admin::requeue,
        super::admin::show,
        super::admin::delete,
        super::admin::cancel,
        super::admin::stop,
        super::admin::pause,
        super::admin::unpause,
        openapi_json,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        super::calls::voice,
        super::calls::media_stream,
    ),
    components(responses(BadRequest, Unauthorized, NotFound, Unavailable)),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// The document, built once.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as served.
fn openapi_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        // Serializing a document of plain maps and strings cannot fail; an empty object would
        // still be valid JSON if it ever did.
        openapi()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".to_owned())
    })
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "ops",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
pub(super) async fn openapi_json() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_text(),
    )
}

/// How each caller proves who it is.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("INTERNAL_API_TOKEN"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "internalSecret",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Internal-Secret",
                "INTERNAL_SECRET",
            ))),
        );
        components.add_security_scheme(
            "twilioSignature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Twilio-Signature",
                "HMAC-SHA1 of the public URL and the sorted form parameters, keyed with TWILIO_AUTH_TOKEN",
            ))),
        );
    }
}
