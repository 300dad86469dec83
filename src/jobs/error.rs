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
