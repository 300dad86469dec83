//! This process as other processes see it in Redis: its host, and the name it goes by there (a
//! worker's registration, a scheduler's lock token, a maintenance lock's owner), unique among
//! live processes.

/// A name unique among live processes: host, pid and a random suffix (RQ refuses to start a
/// second worker under a live name).
pub fn process_name() -> String {
    let host: String = hostname()
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

/// The host's name (`/proc/sys/kernel/hostname`, else `HOSTNAME`), or `unknown`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
