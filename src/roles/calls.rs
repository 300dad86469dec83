//! The `calls` role's routes: the realtime Twilio Media Streams side.
//!
//! Not built yet (issue #6): the role boots its ops endpoints only, and says so at startup.

use axum::Router;

use crate::app::AppContext;

/// Routes of the `Calls` subsystem; empty until the media-stream server lands.
pub fn routes() -> Router<AppContext> {
    tracing::warn!("calls subsystem: the media-stream server is not built yet (issue #6)");
    Router::new()
}
