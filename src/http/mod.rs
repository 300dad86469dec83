//! The HTTP surface: one listener per process, routes chosen by the role's subsystems.
//!
//! Handlers get [`AppContext`] through axum state and reach Redis only through `ctx.jobs`.

mod admin;
mod api_doc;
mod auth;
mod budget;
pub mod calls;
mod dashboard;
mod error;
mod extract;
mod health;
mod ingress;
mod middleware;
mod ops;
mod serve;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::context::AppContext;

pub use error::ApiError;
pub use serve::{ConnLimits, descriptors_needed, ensure_descriptors, serve};

/// The listener's router: the ops routes, and `public` (the routes of the role's subsystems,
/// chosen by `roles::router`) behind the in-flight cap and the request timeout. `/healthz`,
/// `/readyz` and `/metrics` stay outside the cap, the timeout and the body budget, so they answer
/// while the other routes are saturated.
pub fn router(ctx: AppContext, public: Option<Router<AppContext>>) -> Router {
    let body_limit = ctx.settings.http.body_limit_bytes;
    let limits = middleware::Limits {
        in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(
            ctx.settings.api.max_concurrent_requests.get(),
        )),
        timeout: ctx.settings.api.request_timeout_ms.get(),
        body_limit,
    };
    let mut router = ops::routes();
    if let Some(public) = public {
        // route_layer: only matched public routes count against the cap (a 404 costs nothing).
        router = router.merge(public.route_layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            middleware::protect,
        )));
    }
    router
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            limits,
            middleware::refuse_oversized,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(ctx)
}

/// The router of the separate ops listener (`http.ops_port`): only the ops routes.
pub fn ops_router(ctx: AppContext) -> Router {
    ops::routes()
        .fallback(|| async {
            ApiError::not_found("the ops port serves /healthz, /readyz and /metrics")
        })
        .with_state(ctx)
}

pub use api_doc::openapi;

/// The public API's routes: ingress, jobs health, admin and the OpenAPI document. Mounted by
/// `roles::router` for roles that run the `PublicApi` subsystem.
pub fn public_api_routes() -> Router<AppContext> {
    health::routes()
        .merge(ingress::routes())
        .merge(dashboard::routes())
        .merge(admin::routes())
        .route(
            "/api/openapi.json",
            axum::routing::get(api_doc::openapi_json),
        )
}
