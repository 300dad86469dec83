//! One `Script` per atomic multi-step operation, each kept as a `.lua` file beside this one.
//!
//! `redis::Script` sends `EVALSHA` and falls back to loading the body on `NOSCRIPT`, so a
//! restarted Redis (empty script cache) costs one extra round trip, not an error.
//!
//! The worker scripts derive job and registry keys from the RQ prefix inside Lua instead of
//! declaring them in KEYS: which jobs a claim touches is only known once it pops them. That
//! limits prosaas to standalone Redis (no Cluster), as RQ itself is.

use std::sync::LazyLock;

use redis::Script;

/// A script that puts jobs on queues or takes them off, with the lane helpers of lanes.lua in
/// front: every such script must agree on where a tenant's jobs wait.
macro_rules! with_lanes {
    ($path:literal) => {
        concat!(include_str!("lua/lanes.lua"), include_str!($path))
    };
}

pub(crate) const ENQUEUE_DEDUPE_SRC: &str = with_lanes!("lua/enqueue_dedupe.lua");
pub(crate) static ENQUEUE_DEDUPE: LazyLock<Script> =
    LazyLock::new(|| Script::new(ENQUEUE_DEDUPE_SRC));
pub(crate) static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/claim.lua")));
pub(crate) static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/settle.lua")));
pub(crate) static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));
pub(crate) static RECOVER: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/recover.lua")));
pub(crate) static LANE_RECOUNT: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/lane_recount.lua")));
pub(crate) static LANE_DEPTH: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/lane_depth.lua")));
pub(crate) const LANE_STATS_SRC: &str = with_lanes!("lua/lane_stats.lua");
pub(crate) static LANE_STATS: LazyLock<Script> = LazyLock::new(|| Script::new(LANE_STATS_SRC));
pub(crate) static RATE_LIMIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/rate_limit.lua")));
pub(crate) static PROMOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/promote.lua")));
pub(crate) static RELEASE_INBOX: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/release_inbox.lua")));
pub(crate) static REQUEUE_FAILED: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/requeue_failed.lua")));
pub(crate) static CALL_STATUS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/call_status.lua")));
pub(crate) static CALL_STREAM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/call_stream.lua")));
pub(crate) static LIVE_CALLS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/live_calls.lua")));
pub(crate) static PRUNE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/prune.lua")));
pub(crate) static LEADER_LOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/leader_lock.lua")));
pub(crate) const QUEUE_HEAD_SRC: &str = include_str!("lua/queue_head.lua");
pub(crate) static QUEUE_HEAD: LazyLock<Script> = LazyLock::new(|| Script::new(QUEUE_HEAD_SRC));
pub(crate) static DELETE_JOB: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_lanes!("lua/delete_job.lua")));

/// Runs a pipeline of `EVALSHA` calls of one script, loading the script and running the
/// pipeline again if Redis answers `NOSCRIPT` (a restarted Redis): every call of the first run
/// then failed, so nothing ran twice.
pub(crate) async fn query_loading<T: redis::FromRedisValue>(
    conn: &mut redis::aio::ConnectionManager,
    source: &str,
    pipe: &redis::Pipeline,
) -> redis::RedisResult<T> {
    match pipe.query_async(conn).await {
        Err(e) if e.code() == Some("NOSCRIPT") => {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(source)
                .query_async::<String>(conn)
                .await?;
            pipe.query_async(conn).await
        }
        other => other,
    }
}
