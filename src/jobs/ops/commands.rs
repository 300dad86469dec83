//! The commands RQ's tools send a worker over pub/sub (`rq/command.py`: `send_stop_job_command`,
//! `send_shutdown_command`, `send_kill_horse_command`), on `rq:pubsub:<worker>`.

use futures_util::StreamExt;
use serde::Deserialize;

use super::super::error::JobError;
use super::{WorkerInfo, Workers};

/// One command, as its JSON payload names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerCommand {
    /// `stop-job` (RQ ≤ 2.x) or `stop-execution` (3.0, with the execution's id).
    StopJob {
        job_id: String,
        execution_id: Option<String>,
    },
    /// `shutdown`: the worker stops as on SIGTERM.
    Shutdown,
    /// `kill-horse`: what the worker runs now is killed, as RQ kills its work-horse.
    KillHorse,
    /// A command this version does not know: named, for the log.
    Other(String),
}

#[derive(Deserialize)]
struct Payload {
    command: String,
    job_id: Option<String>,
    execution_id: Option<String>,
}

impl WorkerCommand {
    /// Reads a payload; `None` when it is not one of RQ's commands at all.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let p: Payload = serde_json::from_slice(payload).ok()?;
        Some(match (p.command.as_str(), p.job_id) {
            ("stop-job" | "stop-execution", Some(job_id)) => Self::StopJob {
                job_id,
                execution_id: p.execution_id,
            },
            ("shutdown", _) => Self::Shutdown,
            ("kill-horse", _) => Self::KillHorse,
            _ => Self::Other(p.command),
        })
    }
}

/// A worker's subscription to its command channel, on a connection of its own.
pub struct CommandChannel {
    messages: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl Workers<'_> {
    /// Subscribes to `w`'s command channel on the current master.
    pub async fn commands(&self, w: &WorkerInfo) -> Result<CommandChannel, JobError> {
        let mut pubsub = self.store.client().await?.get_async_pubsub().await?;
        pubsub.subscribe(self.keys().pubsub(&w.name)).await?;
        Ok(CommandChannel {
            messages: Box::pin(pubsub.into_on_message()),
        })
    }
}

impl CommandChannel {
    /// The next command; `None` when the connection closed (subscribe again). Payloads that
    /// are not commands are skipped.
    pub async fn next(&mut self) -> Option<WorkerCommand> {
        loop {
            let msg = self.messages.next().await?;
            if let Some(c) = WorkerCommand::parse(msg.get_payload_bytes()) {
                return Some(c);
            }
            tracing::warn!("a message on the worker's command channel is not an RQ command");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rq_payloads_of_each_version() {
        assert_eq!(
            WorkerCommand::parse(br#"{"command": "stop-job", "job_id": "j1"}"#),
            Some(WorkerCommand::StopJob {
                job_id: "j1".into(),
                execution_id: None
            })
        );
        assert_eq!(
            WorkerCommand::parse(
                br#"{"command": "stop-execution", "job_id": "j1", "execution_id": "e1"}"#
            ),
            Some(WorkerCommand::StopJob {
                job_id: "j1".into(),
                execution_id: Some("e1".into())
            })
        );
        assert_eq!(
            WorkerCommand::parse(br#"{"command": "shutdown"}"#),
            Some(WorkerCommand::Shutdown)
        );
        assert_eq!(
            WorkerCommand::parse(br#"{"command": "kill-horse"}"#),
            Some(WorkerCommand::KillHorse)
        );
        assert_eq!(
            WorkerCommand::parse(br#"{"command": "dance"}"#),
            Some(WorkerCommand::Other("dance".into()))
        );
        assert_eq!(WorkerCommand::parse(b"not json"), None);
    }
}
