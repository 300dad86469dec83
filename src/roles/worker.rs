//! The `worker` role's subsystems: the executor (job execution) and the recovery loop.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::context::AppContext;
use crate::identity::{hostname, process_name};
use crate::jobs::WorkerInfo;
use crate::worker::config::ExecutorConfig;
use crate::worker::executor::Executor;
use crate::worker::handler::{HandlerContext, RecordingAccess};
use crate::worker::http_target::Delivery;
use crate::worker::limits::RateLimits;
use crate::worker::maintenance;

pub async fn run_executor(ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    executor(&ctx)?.run(shutdown).await
}

/// The executor this process's settings describe, with every built-in job type.
pub fn executor(ctx: &AppContext) -> anyhow::Result<Executor> {
    let w = &ctx.settings.worker;
    Ok(Executor {
        store: ctx.jobs.clone(),
        info: WorkerInfo {
            name: process_name(),
            queues: w.queues.clone(),
            pid: std::process::id(),
            hostname: hostname(),
        },
        registry: Arc::new(crate::handlers::registry(w)),
        config: ExecutorConfig {
            limits: Arc::new(RateLimits::from_settings(&ctx.settings.rate_limits)),
            process_shutdown: ctx.shutdown.clone(),
            ..ExecutorConfig::from_settings(w)
        },
        context: HandlerContext {
            jobs: ctx.jobs.clone(),
            delivery: Arc::new(Delivery::new(&w.http_targets)?),
            recordings: Arc::new(recording_access(&ctx.settings)),
        },
    })
}

fn recording_access(s: &crate::settings::Settings) -> RecordingAccess {
    let r = &s.recordings;
    let token = &s.api.twilio_auth_token;
    RecordingAccess {
        dir: r.dir.clone(),
        allowed_hosts: r.allowed_hosts.clone(),
        max_download_bytes: r.max_download_bytes.get(),
        allow_http: r.allow_http,
        basic_auth: (!r.twilio_account_sid.is_empty() && !token.is_empty())
            .then(|| (r.twilio_account_sid.clone(), token.clone())),
    }
}

pub async fn run_recovery(ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    let owner = format!("maintenance.{}", process_name());
    maintenance::run(
        ctx.jobs.clone(),
        owner,
        ctx.settings.worker.clone(),
        Arc::new(crate::handlers::registry(&ctx.settings.worker)),
        shutdown,
    )
    .await
}
