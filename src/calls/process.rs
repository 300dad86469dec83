//! What a calls process does beside its calls: it says whether streams are verified, measures
//! the recordings disk every second, tells the dashboard through Redis which calls it holds
//! (the api role cannot see them), and on shutdown stops new streams, gives live calls
//! `calls.shutdown_grace_ms`, then finalizes every recording and enqueues its jobs.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::calls_stream::registry::CallRegistry;
use crate::context::AppContext;

pub async fn run(ctx: AppContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    let missing = ctx.settings.api.missing_calls_secrets();
    if !missing.is_empty() {
        if ctx.settings.api.allow_missing_secrets {
            tracing::warn!(
                ?missing,
                "calls: media streams are NOT verified (api.allow_missing_secrets, for development): anyone who can reach the stream URL can open one"
            );
        } else {
            tracing::warn!(
                ?missing,
                "calls: media streams are refused with 503 until Twilio's secrets are set"
            );
        }
    }
    if missing.is_empty() && !ctx.settings.calls.require_stream_token {
        tracing::warn!(
            "calls: starts without a stream token are accepted (calls.require_stream_token = false, for upgrading from 0.1.0): turn it back on once every calls process answers /twilio/voice with tokens"
        );
    }
    if let Err(e) = ctx.calls.disk.measure() {
        tracing::error!(error = %e, "cannot measure the recordings disk");
    }
    let free_gauge = metrics::gauge!(crate::metrics::RECORDINGS_FREE_BYTES);
    free_gauge.set(ctx.calls.disk.free_bytes() as f64);
    tracing::info!(
        max_calls = ctx.settings.calls.max_concurrent_calls,
        path = crate::webhooks::twilio::stream::STREAM_PATH,
        free_bytes = ctx.calls.disk.free_bytes(),
        "calls: accepting Twilio media streams"
    );
    let process = format!("{}:{}", crate::identity::hostname(), std::process::id());
    let mut report = tokio::time::interval(REPORT_EVERY);
    let mut disk = tokio::time::interval(DISK_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = report.tick() => publish(&ctx, &process).await,
            _ = disk.tick() => {
                // statvfs is one quick system call, but it may block on a network file system.
                let calls = ctx.calls.clone();
                let _ = tokio::task::spawn_blocking(move || calls.disk.measure()).await;
                free_gauge.set(ctx.calls.disk.free_bytes() as f64);
            }
        }
    }
    drain(&ctx.calls, ctx.settings.calls.shutdown_grace_ms.get()).await;
    let dashboard = ctx.jobs.call_status();
    if !matches!(
        tokio::time::timeout(REPORT_EVERY, dashboard.withdraw_calls(&process)).await,
        Ok(Ok(()))
    ) {
        tracing::debug!("cannot withdraw the live-calls report; it goes stale");
    }
    Ok(())
}

/// How often the recordings disk's free space is measured: at 1,000 calls of two tracks, 16 MB
/// are written between two measurements.
const DISK_EVERY: Duration = Duration::from_secs(1);
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
    let dashboard = ctx.jobs.call_status();
    match tokio::time::timeout(REPORT_EVERY, dashboard.publish_calls(process, &calls)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "cannot report live calls to the dashboard"),
        Err(_) => tracing::debug!("reporting live calls to the dashboard timed out"),
    }
}

/// For shutdown: stop admitting, let live calls run up to `grace`, then end them (each
/// finalizes and enqueues) and wait until all have.
async fn drain(calls: &CallRegistry, grace: Duration) {
    calls.close();
    let live = calls.snapshot().active;
    if live > 0 {
        tracing::info!(live, ?grace, "letting live calls finish");
    }
    if tokio::time::timeout(grace, calls.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            live = calls.snapshot().active,
            "grace period over; finalizing live calls"
        );
        calls.end_all.cancel();
        calls.tracker.wait().await;
    }
}
