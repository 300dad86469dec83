//! The `api` role's public routes: webhooks, the internal enqueue and push API, the jobs health
//! and admin API. It never executes jobs and never schedules: the role table gives it no such
//! subsystem.

use axum::Router;

use crate::context::AppContext;

/// Routes of the `PublicApi` subsystem.
pub fn routes() -> Router<AppContext> {
    crate::http::public_api_routes()
}
