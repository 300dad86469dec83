//! A worker's blocking wake-up: an idle worker waits on its queue (or its lanes' bell).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value as RedisValue};

use super::super::bounded;
use super::super::error::JobError;
use super::super::keys::Keys;
use super::claim::read_claim;
use super::{Claim, WorkerInfo, Workers};

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
        let mut conn = self
            .store
            .client()
            .await?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // For `CLIENT UNBLOCK` at shutdown (see [`QueueWaker::wait_and_claim`]); a user whose
        // ACL refuses it only waits out the wait (a second at most).
        let client_id: Option<i64> = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .ok();
        Ok(QueueWaker {
            conn,
            client_id,
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
    client_id: Option<i64>,
    watch: Watch,
}

enum Watch {
    List { queue_key: String, inbox: String },
    Bell(String),
}

impl Workers<'_> {
    /// Ends the blocking wait of the waker whose [`QueueWaker::client_id`] this is at once, as
    /// if it had timed out (shutdown).
    pub async fn unblock(&self, client_id: i64) -> Result<(), JobError> {
        let _: i64 = redis::cmd("CLIENT")
            .arg("UNBLOCK")
            .arg(client_id)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }
}

impl QueueWaker {
    /// Its connection's id, for [`Workers::unblock`] (`None` when Redis would not say).
    pub fn client_id(&self) -> Option<i64> {
        self.client_id
    }

    /// For a worker on one plain queue: waits up to `block` for a job and claims right behind
    /// the wait, both sent at once, so a job that wakes an idle worker starts after one round
    /// trip instead of two (a wake-up, then a claim). The claim runs when the wait ends, by
    /// Redis's clock (claim.lua's `now` ''), and takes whatever is there then, like any claim:
    /// nothing when the wait timed out or was ended by [`Workers::unblock`] with nothing queued.
    pub async fn wait_and_claim(
        &mut self,
        workers: &Workers<'_>,
        w: &WorkerInfo,
        (max, job_ttl, state_seq): (usize, Duration, u64),
        block: Duration,
    ) -> Result<Claim, JobError> {
        let Watch::List { queue_key, inbox } = &self.watch else {
            return Err(JobError::Invalid(
                "a claim cannot wait on a lane bell".into(),
            ));
        };
        let invocation = workers.claim_invocation(w, max, job_ttl, state_seq, true);
        let mut pipe = redis::pipe();
        pipe.cmd("BLMOVE")
            .arg(queue_key)
            .arg(inbox)
            .arg("LEFT")
            .arg("RIGHT")
            // 0 would block for ever.
            .arg(block.as_secs_f64().max(0.01))
            .ignore()
            .invoke_script(&invocation);
        let got: Result<(Vec<RedisValue>,), redis::RedisError> =
            bounded(block + Duration::from_secs(5), async {
                Ok(pipe.query_async(&mut self.conn).await)
            })
            .await?;
        match got {
            Ok((reply,)) => read_claim(reply),
            // Redis lost its scripts (a restart): what the wait moved is in the inbox, where
            // a plain claim (which loads the script) takes it.
            Err(e) if e.code() == Some("NOSCRIPT") => {
                workers.claim(w, max, job_ttl, state_seq).await
            }
            Err(e) => Err(e.into()),
        }
    }

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
