//! The supervisor: runs a role's subsystems, and stops them all together.
//!
//! Build, then run: [`App::build`] binds the HTTP listener (port 0 works, and
//! [`App::local_addr`] tells the real port), [`App::run`] spawns every subsystem of the role and
//! waits for the shutdown token **or any subsystem exiting**. Either way it cancels the rest and
//! drains them within the grace period. One role per container means the orchestrator restarts
//! a failed process; nothing is restarted in-process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::AppContext;
use crate::jobs::{Advice, JobError, JobStore};
use crate::roles::{self, Role, Subsystem};
use crate::settings::Settings;

pub struct App {
    ctx: AppContext,
    listener: TcpListener,
    /// The ops-only listener, when `http.ops_port` is set.
    ops_listener: Option<TcpListener>,
}

type TaskResult = (&'static str, anyhow::Result<()>);

impl App {
    /// Checks the open-file limit and binds the HTTP listeners; nothing runs yet.
    pub async fn build(role: Role, settings: Settings, jobs: JobStore) -> anyhow::Result<Self> {
        let h = &settings.http;
        let calls = if role.runs(Subsystem::Calls) {
            settings.calls.max_concurrent_calls.get()
        } else {
            0
        };
        let ops = if h.ops_port == 0 {
            0
        } else {
            h.ops_max_connections
        };
        crate::http::ensure_descriptors(crate::http::descriptors_needed(
            h.max_connections + ops,
            calls,
        ))?;
        let addr = format!("{}:{}", h.host, h.port);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let ops_listener = if h.ops_port == 0 {
            None
        } else {
            let addr = format!("{}:{}", h.host, h.ops_port);
            Some(
                TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("http.ops_port: cannot listen on {addr}"))?,
            )
        };
        Ok(Self {
            ctx: AppContext::new(role, settings, jobs)?,
            listener,
            ops_listener,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Runs until `shutdown` is cancelled (clean exit) or a subsystem exits (an error naming it).
    // Long on purpose: the supervisor's life in order: start every subsystem, wait for a signal or
    // an exit, drain.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let role = self.ctx.role;
        let subsystems = role.subsystems();
        let names: Vec<&str> = subsystems.iter().map(|s| s.name()).collect();
        let addr = self.local_addr()?;
        tracing::info!(role = %role, subsystems = ?names, "{}", role.banner());
        tracing::info!(%addr, "HTTP listening on {addr}");

        // Install the recorder before anything records, so early counts are not lost.
        crate::metrics::handle();
        // A subsystem may ask for the process's shutdown (RQ's `shutdown` command): it then
        // stops as on a signal, not as a subsystem that exited on its own.
        let asked = self.ctx.shutdown.clone();
        let process = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = asked.cancelled() => process.cancel(),
                () = process.cancelled() => {}
            }
        });
        let stop = shutdown.child_token();
        let router = roles::router(self.ctx.clone(), subsystems);
        let h = &self.ctx.settings.http;
        let limits = crate::http::ConnLimits {
            max_connections: h.max_connections,
            header_read: h.header_read_timeout_ms.get(),
            idle: h.idle_timeout_ms.get(),
        };
        let mut tasks: Vec<(&'static str, SubsystemFuture)> = vec![(
            "http",
            Box::pin(crate::http::serve(
                "public",
                self.listener,
                router,
                limits,
                stop.clone(),
            )),
        )];
        if let Some(ops) = self.ops_listener {
            let ops_addr = ops.local_addr()?;
            tracing::info!(%ops_addr, "ops HTTP listening on {ops_addr}");
            let ops_limits = crate::http::ConnLimits {
                max_connections: h.ops_max_connections,
                ..limits
            };
            tasks.push((
                "ops_http",
                Box::pin(crate::http::serve(
                    "ops",
                    ops,
                    crate::http::ops_router(self.ctx.clone()),
                    ops_limits,
                    stop.clone(),
                )),
            ));
        }
        // Histogram samples wait in the recorder until drained; drain them whether or not
        // anyone scrapes, so an unscraped process stays flat.
        tokio::spawn(crate::metrics::upkeep(stop.clone()));
        for &s in subsystems.iter().filter(|s| s.has_task()) {
            let fut = roles::run_subsystem(s, self.ctx.clone(), stop.clone());
            tasks.push((s.name(), Box::pin(fut)));
        }
        // Advisory only, so not supervised: it ends on its own.
        tokio::spawn(report_redis_config(self.ctx.jobs.clone(), stop.clone()));
        tokio::spawn(follow_redis_clock(self.ctx.jobs.clone(), stop.clone()));
        supervise(
            tasks,
            &shutdown,
            &stop,
            self.ctx.settings.shutdown.grace_ms.get(),
        )
        .await?;
        tracing::info!(role = %role, "stopped cleanly");
        Ok(())
    }
}

/// Logs the Redis settings that jobs depend on ([`crate::jobs::RedisConfig`]) once Redis
/// answers, warning about each one to change. A Redis that is not up yet is asked again for
/// about a minute; one that refuses `CONFIG GET` (managed services may) is only noted.
async fn report_redis_config(jobs: JobStore, stop: CancellationToken) {
    for _ in 0..30 {
        match jobs.redis_config().await {
            Ok(config) => {
                for advice in config.advice() {
                    match advice {
                        Advice::Risk(text) => tracing::warn!("{text}"),
                        Advice::Cost(text) => tracing::info!("{text}"),
                    }
                }
                tracing::info!(
                    maxmemory_policy = config.maxmemory_policy.as_deref().unwrap_or("?"),
                    stream_node_max_bytes = ?config.stream_node_max_bytes,
                    "Redis configuration checked"
                );
                return;
            }
            Err(JobError::Redis(e))
                if !(e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()) =>
            {
                tracing::info!(error = %e, "cannot read the Redis configuration; not checked");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "Redis configuration not readable yet"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Keeps this process's offset from Redis's clock current (timestamps it writes, such as
/// `enqueued_at`, are read by other hosts), and warns when this host's clock is far off.
async fn follow_redis_clock(jobs: JobStore, stop: CancellationToken) {
    let mut warned = false;
    loop {
        match jobs.sync_clock().await {
            Ok(offset_ms) if offset_ms.abs() > 1000 && !warned => {
                warned = true;
                tracing::warn!(
                    offset_ms,
                    "this host's clock differs from Redis's; prosaas uses Redis's for every deadline, but check NTP"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read Redis's clock yet"),
        }
        let pause = if jobs.clock_synced() { 30 } else { 2 };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(pause)) => {}
        }
    }
}

/// A subsystem's long-running task.
pub type SubsystemFuture = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Runs `tasks` until `shutdown` fires or one of them exits, then cancels `stop` (which every
/// task watches) and waits up to `grace` for the rest. Returns an error naming every subsystem
/// that failed, exited on its own, or was still running at the deadline.
pub async fn supervise(
    tasks: Vec<(&'static str, SubsystemFuture)>,
    shutdown: &CancellationToken,
    stop: &CancellationToken,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    let mut set: JoinSet<TaskResult> = JoinSet::new();
    let mut task_names: HashMap<tokio::task::Id, &'static str> = HashMap::new();
    for (name, fut) in tasks {
        let handle = set.spawn(named(name, fut));
        task_names.insert(handle.id(), name);
    }

    // Subsystems stop when the shutdown token fires, so once it has, an exit is expected:
    // check the token first.
    let failure = tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        Some(joined) = set.join_next_with_id() => Some(describe_exit(joined, &mut task_names)),
    };
    if let Some(err) = &failure {
        tracing::error!("{err:#}; stopping the other subsystems");
    }
    stop.cancel();

    let deadline = tokio::time::Instant::now() + grace;
    let mut errors: Vec<String> = failure.iter().map(|e| format!("{e:#}")).collect();
    loop {
        match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
            Ok(None) => break,
            Ok(Some(Ok((id, (name, Ok(())))))) => {
                task_names.remove(&id);
                tracing::debug!(subsystem = name, "stopped");
            }
            Ok(Some(joined)) => {
                errors.push(format!("{:#}", describe_exit(joined, &mut task_names)))
            }
            Err(_) => {
                let mut left: Vec<&str> = task_names.values().copied().collect();
                left.sort_unstable();
                errors.push(format!(
                    "still running after the {grace:?} shutdown grace period: {}",
                    left.join(", ")
                ));
                set.abort_all();
                break;
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}

async fn named(name: &'static str, fut: impl Future<Output = anyhow::Result<()>>) -> TaskResult {
    (name, fut.await)
}

/// Turns a task's end into an error that names the subsystem (Vector's "component died"),
/// and forgets the task.
fn describe_exit(
    joined: Result<(tokio::task::Id, TaskResult), tokio::task::JoinError>,
    names: &mut HashMap<tokio::task::Id, &'static str>,
) -> anyhow::Error {
    match joined {
        Ok((id, (name, result))) => {
            names.remove(&id);
            match result {
                Ok(()) => anyhow!("subsystem {name} exited unexpectedly"),
                Err(e) => e.context(format!("subsystem {name} failed")),
            }
        }
        Err(e) => {
            let name = names.remove(&e.id()).unwrap_or("unknown");
            if e.is_panic() {
                anyhow!("subsystem {name} panicked")
            } else {
                anyhow!("subsystem {name} was cancelled")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn until_stopped(stop: &CancellationToken) -> SubsystemFuture {
        let stop = stop.clone();
        Box::pin(async move {
            stop.cancelled().await;
            Ok(())
        })
    }

    #[tokio::test]
    async fn a_clean_shutdown_is_ok() {
        let (shutdown, stop) = (CancellationToken::new(), CancellationToken::new());
        let tasks = vec![("a", until_stopped(&stop)), ("b", until_stopped(&stop))];
        shutdown.cancel();
        supervise(tasks, &shutdown, &stop, Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_failing_subsystem_stops_the_others_and_is_named() {
        let (shutdown, stop) = (CancellationToken::new(), CancellationToken::new());
        let tasks: Vec<(&'static str, SubsystemFuture)> = vec![
            ("steady", until_stopped(&stop)),
            ("broken", Box::pin(async { Err(anyhow!("disk full")) })),
        ];
        let err = supervise(tasks, &shutdown, &stop, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(format!("{err:#}"), "subsystem broken failed: disk full");
        assert!(stop.is_cancelled());
    }

    #[tokio::test]
    async fn an_early_exit_or_panic_is_a_failure() {
        let (shutdown, stop) = (CancellationToken::new(), CancellationToken::new());
        let tasks: Vec<(&'static str, SubsystemFuture)> =
            vec![("quitter", Box::pin(async { Ok(()) }))];
        let err = supervise(tasks, &shutdown, &stop, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "subsystem quitter exited unexpectedly");

        let (shutdown, stop) = (CancellationToken::new(), CancellationToken::new());
        let tasks: Vec<(&'static str, SubsystemFuture)> =
            vec![("bomb", Box::pin(async { panic!("boom") }))];
        let err = supervise(tasks, &shutdown, &stop, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "subsystem bomb panicked");
    }

    #[tokio::test]
    async fn the_grace_deadline_names_what_is_still_running() {
        let (shutdown, stop) = (CancellationToken::new(), CancellationToken::new());
        let tasks: Vec<(&'static str, SubsystemFuture)> = vec![
            ("polite", until_stopped(&stop)),
            ("stubborn", Box::pin(std::future::pending())),
        ];
        shutdown.cancel();
        let err = supervise(tasks, &shutdown, &stop, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("grace period: stubborn"), "{err}");
    }
}
