//! The `api` role's public routes: the jobs health API (webhooks and the enqueue API join here).
//! It never executes jobs and never schedules: the role table gives it no such subsystem.

use axum::Router;

use crate::app::AppContext;

/// Routes of the `PublicApi` subsystem.
pub fn routes() -> Router<AppContext> {
    crate::http::jobs_health_routes()
}
