//! The supervisor: runs a role's subsystems, and stops them all together.
//!
//! Build, then run: [`App::build`] binds the HTTP listener (port 0 works, and
//! [`App::local_addr`] tells the real port), [`App::run`] spawns every subsystem of the role and
//! waits for the shutdown token **or any subsystem exiting**. Either way it cancels the rest and
//! drains them within the grace period. One role per container means the orchestrator restarts
//! a failed process; nothing is restarted in-process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::jobs::JobStore;
use crate::roles::{self, Role, Subsystem};
use crate::settings::Settings;

/// What every subsystem and HTTP handler shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppContext {
    pub role: Role,
    pub settings: Arc<Settings>,
    pub jobs: JobStore,
}

pub struct App {
    ctx: AppContext,
    listener: TcpListener,
}

type TaskResult = (&'static str, anyhow::Result<()>);

impl App {
    /// Binds the HTTP listener; nothing runs yet.
    pub async fn build(role: Role, settings: Settings, jobs: JobStore) -> anyhow::Result<Self> {
        let addr = format!("{}:{}", settings.http.host, settings.http.port);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Self {
            ctx: AppContext {
                role,
                settings: Arc::new(settings),
                jobs,
            },
            listener,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn context(&self) -> &AppContext {
        &self.ctx
    }

    /// Runs until `shutdown` is cancelled (clean exit) or a subsystem exits (an error naming it).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let role = self.ctx.role;
        let subsystems = role.subsystems();
        let names: Vec<&str> = subsystems.iter().map(|s| s.name()).collect();
        let addr = self.local_addr()?;
        tracing::info!(role = %role, subsystems = ?names, "{}", role.banner());
        tracing::info!(%addr, "HTTP listening on {addr}");

        let stop = shutdown.child_token();
        let mut tasks: JoinSet<TaskResult> = JoinSet::new();
        let mut task_names: HashMap<tokio::task::Id, &'static str> = HashMap::new();

        let router = crate::http::router(self.ctx.clone(), subsystems);
        let handle = tasks.spawn(named(
            "http",
            crate::http::serve(self.listener, router, stop.clone()),
        ));
        task_names.insert(handle.id(), "http");
        for &s in subsystems.iter().filter(|s| !s.is_http()) {
            let fut = roles::run_subsystem(s, self.ctx.clone(), stop.clone());
            let handle = tasks.spawn(named(s.name(), fut));
            task_names.insert(handle.id(), s.name());
        }

        // Subsystems stop when the shutdown token fires, so once it has, an exit is expected:
        // check the token first.
        let failure = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            Some(joined) = tasks.join_next_with_id() => Some(describe_exit(joined, &task_names)),
        };
        if let Some(err) = &failure {
            tracing::error!("{err:#}; stopping the other subsystems");
        }
        stop.cancel();

        let grace = self.ctx.settings.shutdown_grace();
        let deadline = tokio::time::Instant::now() + grace;
        let mut errors: Vec<String> = failure.iter().map(|e| format!("{e:#}")).collect();
        loop {
            match tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await {
                Ok(None) => break,
                Ok(Some(Ok((id, (name, Ok(())))))) => {
                    task_names.remove(&id);
                    tracing::debug!(subsystem = name, "stopped");
                }
                Ok(Some(joined)) => {
                    let id = match &joined {
                        Ok((id, _)) => Some(*id),
                        Err(e) => Some(e.id()),
                    };
                    errors.push(format!("{:#}", describe_exit(joined, &task_names)));
                    if let Some(id) = id {
                        task_names.remove(&id);
                    }
                }
                Err(_) => {
                    let mut left: Vec<&str> = task_names.values().copied().collect();
                    left.sort_unstable();
                    errors.push(format!(
                        "still running after the {grace:?} shutdown grace period: {}",
                        left.join(", ")
                    ));
                    tasks.abort_all();
                    break;
                }
            }
        }
        if errors.is_empty() {
            tracing::info!(role = %role, "stopped cleanly");
            Ok(())
        } else {
            Err(anyhow!(errors.join("; ")))
        }
    }
}

async fn named(name: &'static str, fut: impl Future<Output = anyhow::Result<()>>) -> TaskResult {
    (name, fut.await)
}

/// Turns a task's end into an error that names the subsystem (Vector's "component died").
fn describe_exit(
    joined: Result<(tokio::task::Id, TaskResult), tokio::task::JoinError>,
    names: &HashMap<tokio::task::Id, &'static str>,
) -> anyhow::Error {
    match joined {
        Ok((_, (name, Ok(())))) => anyhow!("subsystem {name} exited unexpectedly"),
        Ok((_, (name, Err(e)))) => e.context(format!("subsystem {name} failed")),
        Err(e) => {
            let name = names.get(&e.id()).copied().unwrap_or("unknown");
            if e.is_panic() {
                anyhow!("subsystem {name} panicked")
            } else {
                anyhow!("subsystem {name} was cancelled")
            }
        }
    }
}

/// The subsystems the supervisor will start for `role`, for logs and health output.
pub fn subsystem_names(role: Role) -> Vec<&'static str> {
    role.subsystems()
        .iter()
        .map(|s: &Subsystem| s.name())
        .collect()
}
