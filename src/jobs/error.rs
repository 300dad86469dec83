//! Typed errors of the jobs module, for the callers that branch on what went wrong.

/// What can go wrong in the jobs module. Messages have no trailing period and never contain
/// secrets (Redis URLs are redacted before they get here).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The caller asked for something RQ readers would choke on or that makes no sense.
    #[error("invalid job: {0}")]
    Invalid(String),
    /// A job hash in Redis that cannot be decoded (not ours, or damaged).
    #[error("job {id} cannot be decoded: {reason}")]
    Corrupt { id: String, reason: String },
    /// The Redis URL in the configuration is unusable.
    #[error("invalid Redis URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    /// Redis did not answer or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered with something of an unexpected shape.
    #[error("unexpected reply from Redis: {0}")]
    Reply(#[from] redis::ParsingError),
    /// Sentinel names no reachable master (yet): the service is failing over or unreachable.
    #[error("no Redis master: {0}")]
    NoMaster(String),
    /// The write was applied on the master but fewer replicas than `redis.ack_replicas`
    /// confirmed it in time: it could be lost in a failover, so it is not acknowledged.
    #[error("the write reached {got} of {wanted} required replicas in time")]
    NotReplicated { wanted: u32, got: u32 },
    /// Redis did not answer within the caller's deadline.
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl JobError {
    /// Whether the error says Redis could not do it now, not that it cannot be done: an
    /// outage, a timeout, a failover in progress (no master, a read-only former master, a
    /// loading replica) or a write not yet replicated. Retrying later can succeed; callers
    /// answer "unavailable", not "internal error".
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NoMaster(_) | Self::NotReplicated { .. } | Self::Timeout(_) => true,
            Self::Redis(e) => {
                // Codes a failover, a restart or a full server answer with.
                const TRANSIENT_CODES: [&str; 8] = [
                    "READONLY",
                    "LOADING",
                    "MASTERDOWN",
                    "TRYAGAIN",
                    "BUSY",
                    "CLUSTERDOWN",
                    "NOREPLICAS",
                    "OOM",
                ];
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
                    || !matches!(
                        e.retry_method(),
                        redis::RetryMethod::NoRetry | redis::RetryMethod::Reconnect
                    )
            }
            Self::Invalid(_) | Self::Corrupt { .. } | Self::BadUrl { .. } | Self::Reply(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_failovers_are_transient_and_bugs_are_not() {
        let io = |kind| JobError::Redis(std::io::Error::new(kind, "x").into());
        assert!(io(std::io::ErrorKind::ConnectionRefused).is_transient());
        assert!(io(std::io::ErrorKind::TimedOut).is_transient());
        assert!(io(std::io::ErrorKind::BrokenPipe).is_transient());
        // As Redis answers: a RESP error line, parsed by the client.
        let server = |code: &str| {
            let line = format!("-{code} detail\r\n");
            let value = redis::parse_redis_value(line.as_bytes()).unwrap();
            JobError::Redis(value.extract_error().unwrap_err())
        };
        assert!(server("READONLY").is_transient());
        assert!(server("LOADING").is_transient());
        assert!(server("BUSY").is_transient());
        assert!(!server("WRONGTYPE").is_transient());
        assert!(!server("ERR").is_transient());
        assert!(JobError::NoMaster("x".into()).is_transient());
        assert!(JobError::Timeout(std::time::Duration::from_secs(1)).is_transient());
        assert!(!JobError::Invalid("x".into()).is_transient());
    }
}
