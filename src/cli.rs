//! The command line. With no subcommand, prosaas serves its role.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "prosaas",
    version = crate::version::DESCRIBE,
    about = "Background-job backbone, wire-compatible with Python RQ"
)]
pub struct Cli {
    /// Role to run: api, worker, scheduler, calls or all. Overrides SERVICE_ROLE; default all.
    #[arg(long, global = true)]
    pub role: Option<String>,
    /// Overlay configuration file (TOML) on top of the built-in defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the role's subsystems until SIGTERM/SIGINT (the default).
    Serve,
    /// Check that the configuration is valid and Redis answers; exit 0 or 1.
    Check,
    /// Ask this host's running prosaas whether it is ready (`/readyz` on the ops port when one is
    /// set, else the main port); exit 0 or 1. For container healthchecks: the image has no curl.
    Probe {
        /// Ask `/healthz` (alive) instead of `/readyz` (alive and Redis answers).
        #[arg(long)]
        live: bool,
    },
    /// Operator commands on queues and jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Moving a Python RQ app's queues onto prosaas workers.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Measure throughput and latency against the configured Redis (an empty database, unless
    /// --force; only bench keys are written, and deleted afterwards).
    Bench(BenchCli),
}

#[derive(Debug, Args)]
pub struct BenchCli {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: BenchScenario,
    /// Jobs (or requests) per figure.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// In-flight calls, worker concurrency or connections (drain sweeps 1, 16, 64, 256 without
    /// it; calls: concurrent calls).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Batch size for enqueue_many.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Jobs per second (latency, soak).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds (latency, calls, rate-limit, soak).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Run on a database that holds keys (only bench keys are written and deleted).
    #[arg(long)]
    pub force: bool,
}

/// The scenarios of `prosaas bench`, one file each under `src/bench/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchScenario {
    /// Enqueue throughput: single calls, then batches.
    Enqueue,
    /// De-duplicated enqueue: new keys, then duplicates.
    EnqueueDedupe,
    /// A filled queue drained by one worker, over a concurrency sweep.
    Drain,
    /// A producer and a worker at once.
    E2e,
    /// Enqueue-to-start latency at a fixed rate.
    Latency,
    /// HTTP load on the WhatsApp webhook.
    Webhook,
    /// Concurrent simulated Media Streams calls.
    Calls,
    /// Tenant A's backlog, then tenant B's trickle: B's enqueue-to-start latency, fair and plain.
    Fairness,
    /// One tenant limited to 5/s across three workers, another tenant's jobs flowing (--duration).
    RateLimit,
    /// A mixed load (--rate jobs/s of webhooks and enqueues, --duration s) through an api and two
    /// workers with this configuration's TTLs: Redis memory and keys, each process's RSS and
    /// expired registry entries, sampled every minute.
    Soak,
}

impl BenchScenario {
    /// The name the command line takes.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Per-queue counts: queued, started, finished, failed, scheduled, deferred.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Enqueue one job; prints its id, or `duplicate of <id>`.
    Enqueue(EnqueueArgs),
    /// Failed jobs with their errors (all worker queues unless --queue).
    Failed {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Put failed jobs back on their queue: one by id, or every one with --all-failed.
    Requeue {
        /// The job id (its queue is read from the job).
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        id: Option<String>,
        #[arg(long)]
        all_failed: bool,
        /// With --all-failed: only this queue (default: every worker queue).
        #[arg(long, requires = "all_failed")]
        queue: Option<String>,
    },
    /// One job: status, attempts, timestamps, arguments, result or error.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop every worker (prosaas's and Python RQ's) from starting jobs, as `rq suspend` does;
    /// jobs in flight finish.
    Suspend {
        /// Seconds until workers resume by themselves (default: until `jobs resume`).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        duration: Option<u64>,
    },
    /// Let workers start jobs again, as `rq resume` does.
    Resume,
    /// Stop every prosaas worker from starting jobs of one queue (its tenant lanes included);
    /// jobs in flight finish. Python RQ's workers do not know about it.
    Pause { queue: String },
    /// Let prosaas workers take a paused queue's jobs again.
    Unpause { queue: String },
    /// Cancel a job that has not started, as RQ's `job.cancel()` does (idempotent).
    Cancel { id: String },
    /// Stop a running job, as RQ's `send_stop_job_command` does (it ends `stopped`).
    Stop { id: String },
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Survey the jobs waiting in Redis (queued, scheduled, deferred, started) and the
    /// registered Python RQ workers, and report what a prosaas worker with this configuration
    /// could not run as the app expects; exit 0 when ready, 1 when not.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// A queue to audit (repeat for several; default: worker.queues).
    #[arg(long = "queue", value_name = "QUEUE", conflicts_with = "all_queues")]
    pub queues: Vec<String>,
    /// Audit every queue Redis knows (`rq:queues`).
    #[arg(long)]
    pub all_queues: bool,
    /// Jobs read at most per queue and place; the report says where it stopped short.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_jobs: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Job type (the RQ function name), e.g. webhook_process_job.
    pub job_type: String,
    /// Keyword arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Queue (default: the external type's queue, else `default`).
    #[arg(long)]
    pub queue: Option<String>,
    /// De-duplicate on this key (e.g. webhook:baileys:MSGID).
    #[arg(long)]
    pub dedupe_key: Option<String>,
    /// Seconds the de-dupe key is held.
    #[arg(long, default_value_t = 600, requires = "dedupe_key")]
    pub dedupe_ttl: u64,
    /// The tenant the job belongs to (stored as meta.tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Job options as a JSON object (job_id, at_front, timeout, result_ttl, failure_ttl, ttl,
    /// max_retries, retry_intervals, meta, depends_on, allow_dependency_failures).
    #[arg(long)]
    pub options: Option<String>,
    /// Wait for this job to finish first (repeat for several parents): the job is deferred
    /// until each one has finished, as RQ's `depends_on`.
    #[arg(
        long = "depends-on",
        value_name = "JOB_ID",
        conflicts_with = "dedupe_key"
    )]
    pub depends_on: Vec<String>,
    /// Run after the parents even if some failed (RQ's `Dependency(allow_failure=True)`).
    #[arg(long, requires = "depends_on")]
    pub allow_dependency_failures: bool,
}
