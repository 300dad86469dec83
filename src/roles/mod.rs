//! Each role's wiring: the HTTP router and the long-running tasks of the subsystems the role
//! runs. Which subsystems those are is decided in one table, `crate::role`; the supervisor
//! (`app.rs`) starts exactly these.

pub mod api;
pub mod calls;
pub mod scheduler;
pub mod worker;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::context::AppContext;
pub use crate::role::{Role, Subsystem, UnknownRole};

/// The HTTP router for a set of subsystems: the ops routes always, the public API and the calls
/// endpoints when the role runs them.
pub fn router(ctx: AppContext, subsystems: &[Subsystem]) -> Router {
    let mut public: Option<Router<AppContext>> = None;
    if subsystems.contains(&Subsystem::PublicApi) {
        public = Some(api::routes());
    }
    if subsystems.contains(&Subsystem::Calls) {
        public = Some(public.unwrap_or_default().merge(calls::routes()));
    }
    crate::http::router(ctx, public)
}

/// Runs a subsystem's task until `shutdown`. Routes are mounted by [`router`].
pub async fn run_subsystem(
    subsystem: Subsystem,
    ctx: AppContext,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match subsystem {
        Subsystem::JobExecution => worker::run_executor(ctx, shutdown).await,
        Subsystem::Recovery => worker::run_recovery(ctx, shutdown).await,
        Subsystem::Scheduler => scheduler::run(ctx, shutdown).await,
        Subsystem::Calls => calls::run(ctx, shutdown).await,
        Subsystem::OpsHttp | Subsystem::PublicApi => {
            anyhow::bail!("{subsystem} is served as HTTP routes, not as a task")
        }
    }
}
