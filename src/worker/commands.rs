//! The worker's ear for RQ's commands (`send_stop_job_command` and the others, on
//! `rq:pubsub:<worker>`): a stop ends the job's task, which is recorded `stopped`; `kill-horse`
//! ends every job it runs as a killed work-horse (failed, or retried); `shutdown` stops the
//! process as SIGTERM does (jobs in flight finish within the grace, or go back).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::inflight::{Running, lock};
use crate::jobs::{JobStore, WorkerCommand, WorkerInfo};

/// How long to wait before subscribing again after the channel's connection was lost.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Listens until `stop`, subscribing again whenever the connection drops (a failover, a Redis
/// restart): a command sent meanwhile is lost, as it is for RQ's own workers.
pub(super) async fn command_loop(
    store: JobStore,
    info: Arc<WorkerInfo>,
    (running, process): (Running, CancellationToken),
    stop: CancellationToken,
) {
    let workers = store.workers();
    while !stop.is_cancelled() {
        let subscribed = tokio::select! {
            () = stop.cancelled() => return,
            c = workers.commands(&info) => c,
        };
        match subscribed {
            Ok(mut channel) => loop {
                let command = tokio::select! {
                    () = stop.cancelled() => return,
                    c = channel.next() => c,
                };
                match command {
                    Some(command) => obey(command, &running, &process),
                    None => break,
                }
            },
            Err(e) => tracing::debug!(error = %e, "cannot subscribe to the command channel"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
        }
    }
}

fn obey(command: WorkerCommand, running: &Running, process: &CancellationToken) {
    match command {
        WorkerCommand::Shutdown => {
            tracing::warn!("shutting down: an RQ shutdown command asks (as SIGTERM would)");
            process.cancel();
        }
        WorkerCommand::StopJob {
            job_id,
            execution_id,
        } => {
            let inflight = lock(running);
            // RQ 3.0 names the execution: a stop meant for an earlier run of the job is not ours.
            let this_run = execution_id
                .is_none_or(|eid| inflight.executions.contains_key(&format!("{job_id}:{eid}")));
            match inflight.stops.get(&job_id).filter(|_| this_run) {
                Some(token) => {
                    tracing::warn!(job_id = %job_id.escape_debug(), "stopping the job: an RQ stop command asks");
                    token.stop();
                }
                None => tracing::info!(
                    job_id = %job_id.escape_debug(),
                    "a stop command for a job this worker does not run; ignored"
                ),
            }
        }
        WorkerCommand::KillHorse => {
            let inflight = lock(running);
            // A Python worker's work-horse is whatever it runs; a prosaas worker's is every job
            // it runs now.
            tracing::warn!(
                jobs = inflight.stops.len(),
                "killing every running job: an RQ kill-horse command asks"
            );
            for halt in inflight.stops.values() {
                halt.kill();
            }
        }
        WorkerCommand::Other(name) => tracing::warn!(
            command = %name.escape_debug(),
            "an RQ command prosaas workers do not carry out; ignored"
        ),
    }
}
