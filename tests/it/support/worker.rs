//! The worker in this test process: its context (built as the app builds it), its executor for
//! one deterministic step at a time, and a running worker (executor and recovery) stopped on
//! drop.

use std::collections::HashMap;

use prosaas::context::AppContext;
use prosaas::jobs::JobStore;
use prosaas::roles::{Role, worker};
use prosaas::settings::Settings;
use prosaas::worker::executor::Executor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::redis_server::TestDb;

/// A worker (executor + recovery) running in this process until dropped or stopped.
pub struct InProcWorker {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// The worker role's context for a private database, with settings overrides.
pub fn worker_context(t: &TestDb, overrides: &[(&str, &str)]) -> AppContext {
    let mut env: HashMap<String, String> = HashMap::from([
        ("REDIS_URL".into(), t.url()),
        ("PROSAAS__WORKER__PROMOTE_INTERVAL_MS".into(), "100".into()),
    ]);
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let settings = Settings::load(None, &env).unwrap();
    let jobs = JobStore::connect(settings.store_config()).unwrap();
    AppContext::new(Role::Worker, settings, jobs).unwrap()
}

/// The worker role's executor, not running: for [`prosaas::worker::executor::Executor::run_once`].
pub fn executor(t: &TestDb, overrides: &[(&str, &str)]) -> Executor {
    worker::executor(&worker_context(t, overrides)).unwrap()
}

impl InProcWorker {
    pub fn start(t: &TestDb, overrides: &[(&str, &str)]) -> Self {
        let ctx = worker_context(t, overrides);
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(worker::run_executor(ctx.clone(), stop.clone())),
            tokio::spawn(worker::run_recovery(ctx, stop.clone())),
        ];
        Self { stop, tasks }
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for InProcWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
