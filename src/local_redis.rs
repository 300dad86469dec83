//! A private `redis-server` for the `all` role's zero-setup local run.
//!
//! Only when the Redis URL was not configured at all, the role is `all`, and nothing answers on
//! the local default address, prosaas starts `redis-server` from `PATH` there, with append-only
//! persistence under `redis.local.dir`, and stops it on exit (via `SHUTDOWN`, so the
//! append-only file is flushed). If prosaas is killed with SIGKILL the server outlives it; the
//! next start finds it answering and simply uses it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::jobs::{self, JobStore};
use crate::settings::Settings;

/// A running private server; call [`LocalRedis::stop`] on the way out.
pub struct LocalRedis {
    child: Child,
    url: String,
}

/// Starts the private server if nothing answers at the local default address, which `store`
/// (the process's one connection, made before the server exists) reaches once it does.
// Long on purpose: the steps of starting a private server (probe, spawn, wait, verify) read best in
// sequence.
pub async fn ensure(settings: &Settings, store: &JobStore) -> anyhow::Result<Option<LocalRedis>> {
    if store.ping(Duration::from_secs(1)).await.is_ok() {
        tracing::info!(
            url = store.redacted_url(),
            "using the Redis already answering at the local default address"
        );
        return Ok(None);
    }
    let port = settings.redis.local.port;
    let binary = find_on_path("redis-server").with_context(|| {
        format!(
            "no Redis answers at 127.0.0.1:{port} and redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL"
        )
    })?;
    let dir = &settings.redis.local.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the local Redis directory {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let log = dir.join("redis.log");
    let child = Command::new(&binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--appendonly", "yes", "--save", ""])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut local = LocalRedis {
        child,
        url: format!("redis://127.0.0.1:{port}"),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if store.ping(Duration::from_millis(500)).await.is_ok() {
            break;
        }
        if let Some(status) = local.child.try_wait()? {
            bail!(
                "redis-server exited during startup ({status}); see {}",
                log.display()
            );
        }
        if tokio::time::Instant::now() > deadline {
            let _ = local.child.start_kill();
            bail!(
                "redis-server did not answer within 10 s; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(
        port,
        dir = %dir.display(),
        "Started a private redis-server on 127.0.0.1:{port} (append-only data in {}); it stops when prosaas exits",
        dir.display()
    );
    Ok(Some(local))
}

impl LocalRedis {
    /// Asks the server to save and exit; kills it if it does not within a few seconds.
    pub async fn stop(mut self) {
        if let Err(e) = jobs::shutdown_server(&self.url, Duration::from_secs(3)).await {
            tracing::warn!(error = %e, "private redis-server did not take SHUTDOWN; killing it");
        }
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(_) => tracing::info!("private redis-server stopped"),
            Err(_) => {
                let _ = self.child.kill().await;
                tracing::warn!("private redis-server killed after not stopping in 5 s");
            }
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
