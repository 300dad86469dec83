//! Diagnostic job types for smoke tests, benchmarks and operators' checks:
//! `diag.noop` (does nothing), `diag.echo` (returns its arguments), `diag.sleep` (`ms`),
//! `diag.fail` (`message`, `permanent`), `diag.count` (counts its executions per job id).

use std::time::Duration;

use serde_json::{Value, json};

use crate::worker::handler::{HandlerContext, HandlerError, HandlerResult, JobInput, Registry};

pub fn register(r: &mut Registry) {
    r.register("diag.noop", noop);
    r.register("diag.echo", echo);
    r.register("diag.sleep", sleep);
    r.register("diag.fail", fail);
    r.register("diag.count", count);
}

async fn noop(_: HandlerContext, _: JobInput) -> HandlerResult {
    Ok(None)
}

async fn echo(_: HandlerContext, input: JobInput) -> HandlerResult {
    Ok(Some(json!({"args": input.args, "kwargs": input.kwargs})))
}

async fn sleep(_: HandlerContext, input: JobInput) -> HandlerResult {
    let ms = input
        .kwargs
        .get("ms")
        .and_then(Value::as_u64)
        .unwrap_or(1000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(Some(json!({"slept_ms": ms})))
}

async fn fail(_: HandlerContext, input: JobInput) -> HandlerResult {
    let message = input
        .kwargs
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("diag.fail was asked to fail")
        .to_owned();
    if input.kwargs.get("permanent").and_then(Value::as_bool) == Some(true) {
        Err(HandlerError::Permanent(message))
    } else {
        Err(HandlerError::Retryable(message))
    }
}

async fn count(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let ms = input.kwargs.get("ms").and_then(Value::as_u64).unwrap_or(0);
    let n = ctx
        .jobs
        .diag()
        .count_execution(&input.id)
        .await
        .map_err(|e| HandlerError::Retryable(e.to_string()))?;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(Some(json!({"executions": n})))
}
