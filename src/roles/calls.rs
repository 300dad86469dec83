//! The `calls` role: Twilio's voice webhook and Media Streams (routes in `http::calls`), and this
//! task, which on shutdown stops new streams, gives live calls `calls.shutdown_grace_ms`, then
//! finalizes every recording and enqueues its jobs before the process exits. Meanwhile it tells
//! the dashboard, through Redis, which calls this process holds (the api role cannot see them).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use axum::Router;

use crate::context::AppContext;

pub async fn run(ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(
        max_calls = ctx.settings.calls.max_concurrent_calls,
        path = crate::http::calls::STREAM_PATH,
        "calls: accepting Twilio media streams"
    );
    let process = format!("{}:{}", crate::worker::hostname(), std::process::id());
    let mut report = tokio::time::interval(REPORT_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = report.tick() => publish(&ctx, &process).await,
        }
    }
    crate::http::calls::drain(
        ctx.calls.clone(),
        Duration::from_millis(ctx.settings.calls.shutdown_grace_ms),
    )
    .await;
    let dashboard = ctx.jobs.dashboard();
    if !matches!(
        tokio::time::timeout(REPORT_EVERY, dashboard.withdraw_calls(&process)).await,
        Ok(Ok(()))
    ) {
        tracing::debug!("cannot withdraw the live-calls report; it goes stale");
    }
    Ok(())
}

/// How often the live calls are reported (the dashboard drops a report 20 s old).
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// The most calls one report lists by age (the count covers them all).
const REPORTED_AGES: usize = 100;

async fn publish(ctx: &AppContext, process: &str) {
    let snapshot = ctx.calls.snapshot();
    let calls = serde_json::json!({
        "active": snapshot.active,
        "max": snapshot.max,
        "ages_secs": ctx.calls.ages(REPORTED_AGES),
    });
    // Bounded, so that a Redis outage never holds up shutdown behind a report.
    let dashboard = ctx.jobs.dashboard();
    match tokio::time::timeout(REPORT_EVERY, dashboard.publish_calls(process, &calls)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "cannot report live calls to the dashboard"),
        Err(_) => tracing::debug!("reporting live calls to the dashboard timed out"),
    }
}

/// Routes of the `Calls` subsystem: Twilio's voice webhook and the Media Streams WebSocket.
pub fn routes() -> Router<AppContext> {
    crate::http::calls::routes()
}
