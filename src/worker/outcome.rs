//! A claimed job run to its outcome: the handler resolved and called under its timeout, and
//! what a failure becomes (a retry while the job type's policy allows one, else a failure with
//! an RQ-shaped traceback). The policies themselves are in `policy.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::handler::{Handler, HandlerContext, HandlerError, JobInput, Registry};
use super::policy::Policies;
use crate::jobs::{ClaimedJob, Outcome, Repeat};

/// Runs one job to an outcome, and names the handler it ran (the metrics label; `unknown` when
/// none matched). Never panics on bad input: every problem becomes a failure.
pub(super) async fn execute(
    job: &ClaimedJob,
    ctx: HandlerContext,
    registry: &Registry,
    policies: &Policies,
) -> (Outcome, String) {
    let resolved = job
        .call
        .as_ref()
        .ok()
        .and_then(|c| registry.resolve(&c.job_type));
    let label = resolved
        .as_ref()
        .map_or("unknown", |(name, _)| *name)
        .to_owned();
    (run(job, resolved, ctx, registry, policies).await, label)
}

/// After a success (callbacks included, as RQ decides it after them): a job with RQ's Repeat
/// and runs left goes again, after the first of its intervals (0: at once), which is then
/// dropped unless it is the last (RQ 3.0's `Repeat.schedule`).
pub(super) fn then_repeat(job: &ClaimedJob, outcome: Outcome) -> Outcome {
    let Some(repeat) = &job.repeat else {
        return outcome;
    };
    let Outcome::Finished { result, result_ttl } = outcome else {
        return outcome;
    };
    let intervals = &repeat.intervals;
    let next = Repeat {
        left: repeat.left.saturating_sub(1),
        intervals: if intervals.len() > 1 {
            intervals[1..].to_vec()
        } else {
            intervals.clone()
        },
    };
    Outcome::Repeat {
        result,
        result_ttl,
        delay_secs: intervals.first().copied().unwrap_or(0),
        repeat: next,
    }
}

async fn run(
    job: &ClaimedJob,
    resolved: Option<(&str, Arc<dyn Handler>)>,
    ctx: HandlerContext,
    registry: &Registry,
    policies: &Policies,
) -> Outcome {
    let failure_ttl = job.failure_ttl.unwrap_or(policies.failure_ttl);
    let fail = |kind: &str, job_type: &str, msg: &str| Outcome::Failed {
        error: traceback(kind, job_type, job.attempts, msg),
        failure_ttl,
    };
    let call = match &job.call {
        Ok(call) => call,
        Err(reason) => return fail("InvalidJobData", "?", reason),
    };
    let Some((name, handler)) = resolved else {
        let known: Vec<&str> = registry.names().into_iter().collect();
        return fail(
            "UnknownJobType",
            &call.job_type,
            &format!(
                "no handler is registered for job type {:?} (known: {})",
                call.job_type,
                known.join(", ")
            ),
        );
    };
    let input = JobInput {
        id: job.execution.id.clone(),
        job_type: call.job_type.clone(),
        handler: name.to_owned(),
        queue: job.execution.queue.clone(),
        args: call.args.clone(),
        kwargs: call.kwargs.clone(),
        attempt: job.attempts,
    };
    let run = handler.call(ctx, input);
    let result = match policies.timeout(job, name) {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => return timed_out(job, name, policies, limit),
        },
        None => run.await,
    };
    match result {
        Ok(value) => Outcome::Finished {
            result: value,
            result_ttl: job.result_ttl.unwrap_or(policies.result_ttl),
        },
        Err(HandlerError::Permanent(msg)) => fail("PermanentJobError", name, &msg),
        Err(HandlerError::Retryable(msg)) => retry_or_fail(
            job,
            name,
            policies,
            traceback("JobError", name, job.attempts, &msg),
        ),
    }
}

/// A job cut off at its timeout: retried while it has retries, as RQ words it.
fn timed_out(job: &ClaimedJob, name: &str, policies: &Policies, limit: Duration) -> Outcome {
    let msg = format!(
        "Task exceeded maximum timeout value ({} seconds)",
        limit.as_secs()
    );
    let error = traceback("JobTimeoutException", name, job.attempts, &msg);
    retry_or_fail(job, name, policies, error)
}

pub(super) fn retry_or_fail(
    job: &ClaimedJob,
    job_type: &str,
    policies: &Policies,
    error: String,
) -> Outcome {
    match policies.retry(job, job_type) {
        Some((delay, retries_left)) => Outcome::Retry {
            error,
            delay_secs: delay.as_secs(),
            retries_left,
        },
        None => Outcome::Failed {
            error,
            failure_ttl: job.failure_ttl.unwrap_or(policies.failure_ttl),
        },
    }
}

/// Error text in the shape RQ tools show: a traceback whose last line is `Kind: message`.
pub(super) fn traceback(kind: &str, job_type: &str, attempt: u32, msg: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  prosaas worker, job type {job_type}, attempt {attempt}\n{kind}: {msg}\n"
    )
}

/// The last line of an error text: the `Kind: message` line of a traceback.
pub(super) fn last_line(s: &str) -> &str {
    s.trim_end().lines().last().unwrap_or(s)
}
