//! The worker runtime: the handler trait and registry type, execution policy, the executor and
//! the recovery/maintenance loop. It knows no job type: `handlers::registry` fills the registry
//! and the worker role hands it in. Redis access goes through [`crate::jobs`]; this module decides
//! what to do, `jobs` makes each step atomic.

pub mod executor;
pub mod handler;
pub mod http_target;
pub mod input;
pub mod limits;
pub mod maintenance;
pub mod policy;

/// A worker name unique among live workers: host, pid and a random suffix (RQ refuses to start
/// a second worker under a live name).
pub fn worker_name() -> String {
    let host = hostname();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{host}.{}.{:04x}", std::process::id(), fastrand::u16(..))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
