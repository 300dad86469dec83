//! RQ's job callbacks (`on_success`, `on_failure`, `on_stopped`): Python import paths in the job
//! hash, which prosaas resolves to registered handlers by the rules job types follow (aliases,
//! the longest dotted suffix). A callback runs after the job's own run and before its outcome is
//! recorded, under its timeout (RQ's default: 60 s), and its failure does what RQ 1.16, 2.x and
//! 3.0 all do: a failing success callback fails the job (retried if it has retries, and its
//! failure callback runs); a failing failure callback's error replaces the job's; a failing
//! stopped callback is logged. The failure callback runs after every failed attempt, retried or
//! not, as RQ's does. A name no handler answers is never skipped silently: a warning names the
//! job and the callback, `prosaas_callbacks_unresolved_total{name}` counts it, and the job hash
//! records it (`unresolved_callbacks`).

use std::time::Duration;

use serde_json::{Map, Value};

use super::handler::{HandlerContext, HandlerError, JobInput, Registry};
use super::outcome::{last_line, retry_or_fail, traceback};
use super::policy::Policies;
use crate::jobs::{Callback, ClaimedJob, Outcome};
use crate::metrics as m;

/// RQ's `CALLBACK_TIMEOUT`: how long a callback without a timeout of its own may run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What running a callback takes: a context of its own (cloned only for jobs with callbacks),
/// the handlers, and the retry policies.
pub(super) struct Env<'a> {
    pub(super) ctx: HandlerContext,
    pub(super) registry: &'a Registry,
    pub(super) policies: &'a Policies,
}

/// The outcome after the job's callbacks ran (unchanged for a job without any, which is given
/// no `env`). `job_type` is the handler the job itself ran as (its retry policy applies).
pub(super) async fn apply(
    job: &ClaimedJob,
    job_type: &str,
    outcome: Outcome,
    env: Option<Env<'_>>,
) -> Outcome {
    let (Some(callbacks), Some(env)) = (&job.callbacks, env) else {
        return outcome;
    };
    let env = &env;
    let mut unresolved = Vec::new();
    let outcome = match outcome {
        Outcome::Finished { result, result_ttl } => match &callbacks.success {
            None => Outcome::Finished { result, result_ttl },
            Some(cb) => {
                let kwargs = args(job, "result", result.clone().unwrap_or(Value::Null));
                match run(job, cb, kwargs, env, &mut unresolved).await {
                    Ok(()) => Outcome::Finished { result, result_ttl },
                    // RQ runs the success callback inside the job's try: its exception is the
                    // job's, which then fails (or retries) and gets its failure callback.
                    Err(error) => {
                        let failed = retry_or_fail(job, job_type, env.policies, error);
                        on_failure(job, failed, env, &mut unresolved).await
                    }
                }
            }
        },
        failed @ (Outcome::Failed { .. } | Outcome::Retry { .. }) => {
            on_failure(job, failed, env, &mut unresolved).await
        }
        Outcome::Stopped { failure_ttl } => {
            if let Some(cb) = &callbacks.stopped
                && let Err(error) =
                    run(job, cb, args(job, "", Value::Null), env, &mut unresolved).await
            {
                tracing::warn!(job_id = %job.execution.id, callback = %cb.name, "stopped callback failed: {}", last_line(&error));
            }
            Outcome::Stopped { failure_ttl }
        }
        // A repeat is decided after the callbacks (outcome.rs `then_repeat`); nothing to run.
        other @ (Outcome::Requeue | Outcome::Repeat { .. }) => other,
    };
    if !unresolved.is_empty() {
        let names = unresolved.join(" ");
        if let Err(e) = env
            .ctx
            .jobs
            .workers()
            .note_unresolved_callbacks(&job.execution.id, &names)
            .await
        {
            tracing::warn!(job_id = %job.execution.id, error = %e, "cannot record the unresolved callbacks on the job");
        }
    }
    outcome
}

/// Runs the failure callback of a failed or retried attempt; its error replaces the job's.
async fn on_failure(
    job: &ClaimedJob,
    outcome: Outcome,
    env: &Env<'_>,
    unresolved: &mut Vec<String>,
) -> Outcome {
    let Some(cb) = job.callbacks.as_ref().and_then(|c| c.failure.as_ref()) else {
        return outcome;
    };
    let (Outcome::Failed { error, .. } | Outcome::Retry { error, .. }) = &outcome else {
        return outcome;
    };
    let kwargs = args(job, "error", Value::String(error.clone()));
    match run(job, cb, kwargs, env, unresolved).await {
        Ok(()) => outcome,
        Err(callback_error) => match outcome {
            Outcome::Failed { failure_ttl, .. } => Outcome::Failed {
                error: callback_error,
                failure_ttl,
            },
            Outcome::Retry {
                delay_secs,
                retries_left,
                ..
            } => Outcome::Retry {
                error: callback_error,
                delay_secs,
                retries_left,
            },
            other => other,
        },
    }
}

/// The callback's keyword arguments: the job's id, and `key` (result or error) when given.
fn args(job: &ClaimedJob, key: &str, value: Value) -> Map<String, Value> {
    let mut kwargs = Map::new();
    kwargs.insert("job_id".into(), Value::String(job.execution.id.clone()));
    if !key.is_empty() {
        kwargs.insert(key.into(), value);
    }
    kwargs
}

/// Runs one callback; `Err` with its error as a traceback when it fails or times out. One whose
/// name resolves to no handler is noted in `unresolved` and counted, and does not fail the job.
async fn run(
    job: &ClaimedJob,
    cb: &Callback,
    kwargs: Map<String, Value>,
    env: &Env<'_>,
    unresolved: &mut Vec<String>,
) -> Result<(), String> {
    let Some((name, handler)) = env.registry.resolve(&cb.name) else {
        tracing::warn!(job_id = %job.execution.id, callback = %cb.name, "RQ callback has no handler; skipped (register one under this name or alias it in worker.aliases)");
        metrics::counter!(m::CALLBACKS_UNRESOLVED, "name" => m::job_type_label(&cb.name))
            .increment(1);
        unresolved.push(cb.name.clone());
        return Ok(());
    };
    let input = JobInput {
        id: job.execution.id.clone(),
        job_type: cb.name.clone(),
        handler: name.to_owned(),
        queue: job.execution.queue.clone(),
        args: Vec::new(),
        kwargs,
        attempt: job.attempts,
    };
    let limit = cb.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let failed = |kind: &str, msg: &str| Err(traceback(kind, name, job.attempts, msg));
    match tokio::time::timeout(limit, handler.call(env.ctx.clone(), input)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(HandlerError::Permanent(msg) | HandlerError::Retryable(msg))) => {
            failed("CallbackError", &msg)
        }
        Err(_) => failed(
            "JobTimeoutException",
            &format!(
                "Callback exceeded maximum timeout value ({} seconds)",
                limit.as_secs()
            ),
        ),
    }
}
