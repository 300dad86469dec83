//! The worker runtime: handlers and their registry, execution policy, the executor and the
//! recovery/maintenance loop. Redis access goes through [`crate::jobs`]; this module decides
//! what to do, `jobs` makes each step atomic.

pub mod executor;
pub mod handler;
pub mod http_target;
pub mod input;
pub mod maintenance;
pub mod policy;

use crate::handlers;
use crate::settings::WorkerSettings;
use handler::Registry;

/// The registry for a worker: every built-in job type, a generic HTTP handler for each
/// configured target without a built-in one, the diagnostic types if enabled, and the aliases.
pub fn registry(settings: &WorkerSettings) -> Registry {
    let mut r = Registry::new(settings.resolve_dotted_names);
    handlers::register_builtin(&mut r);
    for name in settings.http_targets.keys() {
        if r.resolve(name).is_none_or(|(found, _)| found != name) {
            r.register(name.clone(), handlers::http_forward);
        }
    }
    if settings.diagnostic_handlers {
        handlers::diag::register(&mut r);
    }
    for a in &settings.aliases {
        r.alias(&a.from, &a.to);
    }
    r
}

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
