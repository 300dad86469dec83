//! A worker's blocking wake-up: an idle worker waits on its queue (or its lanes' bell).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value as RedisValue};

use super::super::bounded;
use super::super::error::JobError;
use super::super::keys::Keys;
use super::{WorkerInfo, Workers};

impl Workers<'_> {
    /// A dedicated connection that blocks until a job arrives on `queue`, for idle workers: on
    /// the queue's own list, or with `lanes` on the bell of its tenant lanes.
    pub async fn waker(
        &self,
        w: &WorkerInfo,
        queue: &str,
        lanes: bool,
    ) -> Result<QueueWaker, JobError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            // Blocking pops answer after their own timeout; only a dead link needs this.
            .set_response_timeout(Some(WAKER_BLOCK + Duration::from_secs(5)));
        let conn = self
            .store
            .client()
            .await?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(QueueWaker {
            conn,
            watch: if lanes {
                Watch::Bell(Keys::fair_bell(queue))
            } else {
                Watch::List {
                    queue_key: self.keys().queue(queue),
                    inbox: Keys::inbox(&w.name),
                }
            },
        })
    }
}

/// How long one blocking pop waits before the waker re-checks whether it is still wanted.
pub const WAKER_BLOCK: Duration = Duration::from_secs(1);

/// A blocking wake-up on one queue. On the queue's list it moves an arriving id into the
/// worker's inbox (never outside a list, so a crash cannot lose it), where the next claim picks
/// it up first. Tenant lanes come and go, so no pop can wait on them: their bell (a short list of
/// tokens pushed with every lane push, see lanes.lua) is popped instead, and the claim that
/// follows takes the jobs; a lost token only delays a worker to its next idle poll.
pub struct QueueWaker {
    conn: MultiplexedConnection,
    watch: Watch,
}

enum Watch {
    List { queue_key: String, inbox: String },
    Bell(String),
}

impl QueueWaker {
    /// Waits up to [`WAKER_BLOCK`] for a job; `true` when one arrived.
    pub async fn wait(&mut self) -> Result<bool, JobError> {
        let block = WAKER_BLOCK.as_secs_f64();
        let cmd = match &self.watch {
            Watch::List { queue_key, inbox } => {
                let mut cmd = redis::cmd("BLMOVE");
                cmd.arg(queue_key)
                    .arg(inbox)
                    .arg("LEFT")
                    .arg("RIGHT")
                    .arg(block);
                cmd
            }
            Watch::Bell(bell) => {
                let mut cmd = redis::cmd("BLPOP");
                cmd.arg(bell).arg(block);
                cmd
            }
        };
        let got: RedisValue = bounded(WAKER_BLOCK + Duration::from_secs(5), async {
            Ok(cmd.query_async(&mut self.conn).await?)
        })
        .await?;
        Ok(!matches!(got, RedisValue::Nil))
    }
}
