//! What each command line does: serve a role, `check`, the operator `jobs` commands and
//! `migrate audit`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::cli::{EnqueueArgs, JobsCommand, MigrateCommand};
use crate::jobs::{
    Canceled, Enqueued, JobDetail, JobOptions, JobResult, JobStore, NewJob, QueueStats, Requeue,
    Stop,
};
use crate::local_redis;
use crate::roles::{Role, Subsystem};
use crate::settings::{RedisUrlSource, Settings};

/// Serves `role` until SIGTERM/SIGINT.
pub async fn serve(role: Role, settings: Settings) -> anyhow::Result<()> {
    if role.runs(Subsystem::PublicApi) || role.runs(Subsystem::Calls) {
        let missing = settings.api.missing_secrets();
        if !missing.is_empty() {
            tracing::warn!(
                "{} not set: the endpoints that need them answer 503 until they are",
                missing.join(", ")
            );
        }
    }
    // One connection for the whole process; it reconnects by itself, so it is made before a
    // local server exists and reaches it once it answers.
    let jobs = JobStore::connect(settings.store_config())?;
    let local = if role == Role::All && settings.redis.url().1 == RedisUrlSource::LocalDefault {
        local_redis::ensure(&settings, &jobs).await?
    } else {
        None
    };
    tracing::info!(url = jobs.redacted_url(), "Redis");
    let result = async {
        let app = App::build(role, settings, jobs).await?;
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            crate::shutdown::signal().await;
            trigger.cancel();
        });
        app.run(shutdown).await
    }
    .await;
    if let Some(local) = local {
        local.stop().await;
    }
    result
}

/// `prosaas bench`.
pub async fn bench(b: crate::cli::BenchCli, settings: &Settings) -> anyhow::Result<()> {
    let json = b.json;
    let report = crate::bench::run(
        crate::bench::BenchArgs {
            scenario: b.scenario,
            jobs: b.jobs,
            concurrency: b.concurrency,
            batch: b.batch,
            rate: b.rate,
            duration: b.duration,
            force: b.force,
        },
        settings,
    )
    .await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(out, "{}", crate::bench::render(&report))?;
    }
    Ok(())
}

/// `prosaas check`: the configuration already loaded; now Redis must answer.
pub async fn check(settings: &Settings) -> anyhow::Result<()> {
    let jobs = JobStore::connect(settings.store_config())?;
    jobs.ping(Duration::from_secs(3))
        .await
        .with_context(|| format!("Redis at {} does not answer", jobs.redacted_url()))?;
    println!(
        "ok: configuration valid, Redis at {} answers",
        jobs.redacted_url()
    );
    Ok(())
}

/// `GET /readyz` (or `/healthz`) of the process serving on this host's configured port.
pub async fn probe(settings: &Settings, live: bool) -> anyhow::Result<()> {
    let h = &settings.http;
    let port = if h.ops_port == 0 { h.port } else { h.ops_port };
    let path = if live { "/healthz" } else { "/readyz" };
    let url = format!("http://127.0.0.1:{port}{path}");
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    println!("ok: {url} answered {status}");
    Ok(())
}

pub async fn jobs(cmd: JobsCommand, settings: &Settings) -> anyhow::Result<()> {
    let jobs = JobStore::connect(settings.store_config())?;
    // Timestamps it writes (enqueued_at) and ages it shows are on Redis's clock; an
    // unreachable Redis is reported by the command itself.
    let _ = jobs.sync_clock().await;
    let configured = || settings.worker.queues.clone();
    match cmd {
        JobsCommand::Stats { json } => {
            let stats = jobs.stats().queue_stats(&settings.worker.queues).await?;
            print_json_or(json, &stats, || stats_table(&stats))
        }
        JobsCommand::Enqueue(args) => {
            let (job, dedupe) = parse_enqueue(args, settings)?;
            let line = match dedupe {
                Some((key, ttl)) => match jobs.enqueue_with_dedupe(job, &key, ttl).await? {
                    Enqueued::New(id) => id,
                    Enqueued::Duplicate(id) => format!("duplicate of {id}"),
                },
                None => jobs.enqueue(job).await?,
            };
            println!("{line}");
            Ok(())
        }
        JobsCommand::Failed { queue, limit, json } => {
            let queues = queue.map_or_else(configured, |q| vec![q]);
            let mut all = Vec::new();
            for q in &queues {
                all.extend(jobs.admin().failed_jobs(q, 0, limit).await?);
            }
            print_json_or(json, &all, || failed_text(&all, &queues))
        }
        JobsCommand::Requeue {
            all_failed: true,
            queue,
            ..
        } => {
            let mut n = 0;
            for q in &queue.map_or_else(configured, |q| vec![q]) {
                n += jobs.admin().requeue_all_failed(q).await?;
            }
            println!("requeued {n} failed jobs");
            Ok(())
        }
        JobsCommand::Requeue { id, .. } => {
            requeue_one(&jobs, &id.context("a job id or --all-failed is required")?).await
        }
        JobsCommand::Show { id, json } => {
            let Some(d) = jobs.admin().job_detail(&id).await? else {
                bail!("no job {id}");
            };
            print_json_or(json, &d, || show_text(&d))
        }
        JobsCommand::Suspend { duration } => suspend(&jobs, duration).await,
        JobsCommand::Resume => resume(&jobs).await,
        JobsCommand::Pause { queue } => pause(&jobs, &queue, true).await,
        JobsCommand::Unpause { queue } => pause(&jobs, &queue, false).await,
        JobsCommand::Cancel { id } => cancel(&jobs, &id).await,
        JobsCommand::Stop { id } => stop(&jobs, &id).await,
    }
}

/// `jobs cancel`: one line saying what happened; a running or unknown job is an error.
/// `migrate audit`: prints the report; not ready is an error, so the exit status is 1.
pub async fn migrate(cmd: MigrateCommand, settings: &Settings) -> anyhow::Result<()> {
    let MigrateCommand::Audit(args) = cmd;
    let jobs = JobStore::connect(settings.store_config())?;
    let queues = if args.all_queues {
        None
    } else if args.queues.is_empty() {
        Some(settings.worker.queues.clone())
    } else {
        Some(args.queues)
    };
    let scope = crate::migrate::Scope {
        queues,
        max_jobs: usize::try_from(args.max_jobs).unwrap_or(usize::MAX),
    };
    let registry = crate::handlers::registry(&settings.worker);
    let report = crate::migrate::run(&jobs, &registry, &scope)
        .await
        .context("auditing")?;
    print_json_or(args.json, &report, || crate::migrate::report::text(&report))?;
    if !report.ready {
        bail!(
            "not ready for prosaas workers: {} problem(s), listed above",
            report.problems.len()
        );
    }
    Ok(())
}

async fn cancel(jobs: &JobStore, id: &str) -> anyhow::Result<()> {
    match jobs.admin().cancel_job(id).await? {
        Canceled::Canceled(was) => println!("canceled {id} (it was {was}): it will not start"),
        Canceled::AlreadyCanceled => println!("{id} was already canceled"),
        Canceled::AlreadyEnded(status) => {
            println!("{id} already ended ({status}): nothing to cancel")
        }
        Canceled::Running => bail!("{id} is running: a cancel cannot end it"),
        Canceled::Missing => bail!("no job {id}"),
    }
    Ok(())
}

/// `jobs stop`: one line saying what happened; an unknown job is an error.
async fn stop(jobs: &JobStore, id: &str) -> anyhow::Result<()> {
    match jobs.admin().stop_job(id).await? {
        Stop::Sent { listening: 0 } => {
            bail!("{id} is started, but its worker does not listen: recovery will handle it")
        }
        Stop::Sent { .. } => println!("stopping {id}: its worker was told"),
        Stop::NotRunning(status) => println!("{id} is not running ({status}): nothing to stop"),
        Stop::Missing => bail!("no job {id}"),
    }
    Ok(())
}

/// `jobs resume`: what `rq resume` does.
async fn resume(jobs: &JobStore) -> anyhow::Result<()> {
    let was = jobs.admin().resume().await?;
    let what = if was { "resumed" } else { "were not suspended" };
    println!("workers {what}");
    Ok(())
}

/// `jobs pause` / `unpause`: one line saying what changed.
async fn pause(jobs: &JobStore, queue: &str, paused: bool) -> anyhow::Result<()> {
    if !crate::jobs::is_valid_queue_name(queue) {
        bail!("queue name {queue:?} must be 1-128 characters of [A-Za-z0-9_.-]");
    }
    let admin = jobs.admin();
    let line = if paused {
        if admin.pause_queue(queue).await? {
            format!("queue {queue} paused: prosaas workers start none of its jobs")
        } else {
            format!("queue {queue} was already paused")
        }
    } else if admin.unpause_queue(queue).await? {
        format!("queue {queue} unpaused")
    } else {
        format!("queue {queue} was not paused")
    };
    println!("{line}");
    Ok(())
}

/// `jobs suspend`: what `rq suspend` writes.
async fn suspend(jobs: &JobStore, duration: Option<u64>) -> anyhow::Result<()> {
    jobs.admin().suspend(duration).await?;
    match duration {
        Some(secs) => println!("workers suspended for {secs}s: no job starts until then"),
        None => println!("workers suspended: no job starts until `prosaas jobs resume`"),
    }
    Ok(())
}

/// Prints `value` as pretty JSON, or the text `render` makes of it.
fn print_json_or<T: serde::Serialize>(
    json: bool,
    value: &T,
    render: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    } else {
        write!(out, "{}", render())?;
    }
    Ok(())
}

fn failed_text(all: &[JobDetail], queues: &[String]) -> String {
    if all.is_empty() {
        return format!("no failed jobs in {}\n", queues.join(", "));
    }
    let mut out = String::new();
    for d in all {
        let error = match &d.result {
            Some(JobResult::Failed { error }) => last_line(error),
            _ => "",
        };
        out.push_str(&format!(
            "{}  {}  {}  attempts={}  {}\n",
            d.info.id, d.info.origin, d.info.job_type, d.attempts, error
        ));
    }
    out
}

async fn requeue_one(jobs: &JobStore, id: &str) -> anyhow::Result<()> {
    let Some(job) = jobs.fetch_job(id).await? else {
        bail!("no job {id}");
    };
    match jobs.admin().requeue_failed(&job.origin, id).await? {
        Requeue::Requeued => println!("requeued {id} on {}", job.origin),
        Requeue::NotFailed => bail!(
            "job {id} is {}, not in the failed registry of {}",
            job.status,
            job.origin
        ),
        Requeue::Missing => bail!("job {id} disappeared while being requeued"),
    }
    Ok(())
}

fn last_line(s: &str) -> &str {
    s.trim_end().lines().last().unwrap_or(s)
}

fn show_text(d: &JobDetail) -> String {
    let i = &d.info;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut s = format!(
        "id:          {}\nstatus:      {}\nqueue:       {}\ntype:        {}\nkwargs:      {}\nattempts:    {}\nenqueued_at: {}\nstarted_at:  {}\nended_at:    {}\nworker:      {}\n",
        i.id,
        i.status,
        i.origin,
        i.job_type,
        Value::Object(i.kwargs.clone()),
        d.attempts,
        opt(&i.enqueued_at),
        opt(&i.started_at),
        opt(&i.ended_at),
        opt(&i.worker_name),
    );
    if let Some(t) = i.tenant() {
        s.push_str(&format!("tenant:      {t}\n"));
    }
    if let Some(e) = &d.last_error {
        s.push_str(&format!("last_error:  {}\n", last_line(e)));
    }
    if let Some(r) = &d.deferred_reason {
        s.push_str(&format!("deferred:    {r}\n"));
    }
    if let Some(names) = &d.unresolved_callbacks {
        s.push_str(&format!("skipped callbacks (no handler): {names}\n"));
    }
    let links = |l: &[crate::jobs::Linked]| {
        l.iter()
            .map(|j| format!("{} ({})", j.id, j.status.as_deref().unwrap_or("gone")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !d.parents.is_empty() {
        s.push_str(&format!("waits for:   {}\n", links(&d.parents)));
    }
    if !d.dependents.is_empty() {
        let more = d.dependents_total.saturating_sub(d.dependents.len() as u64);
        s.push_str(&format!("dependents:  {}", links(&d.dependents)));
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s.push('\n');
    }
    match &d.result {
        Some(JobResult::Finished { return_value }) => s.push_str(&format!(
            "result:      {}\n",
            return_value
                .as_ref()
                .map_or_else(|| "null".into(), Value::to_string)
        )),
        Some(JobResult::Failed { error }) => s.push_str(&format!("error:\n{error}")),
        _ => {}
    }
    s
}

fn parse_enqueue(
    a: EnqueueArgs,
    settings: &Settings,
) -> anyhow::Result<(NewJob, Option<(String, u64)>)> {
    let args: Map<String, Value> = match serde_json::from_str(&a.args)
        .with_context(|| format!("--args is not JSON: {}", a.args))?
    {
        Value::Object(m) => m,
        other => bail!("--args must be a JSON object of keyword arguments, not {other}"),
    };
    let mut options: JobOptions = match &a.options {
        Some(text) => serde_json::from_str(text).context("--options")?,
        None => JobOptions::default(),
    };
    options.depends_on.extend(a.depends_on);
    options.allow_dependency_failures |= a.allow_dependency_failures;
    let queue = settings
        .route(&a.job_type, a.queue.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut job = NewJob::new(queue, a.job_type, args).with_options(options);
    if let Some(tenant) = &a.tenant {
        job.set_tenant(tenant)?;
    }
    Ok((job, a.dedupe_key.map(|k| (k, a.dedupe_ttl))))
}

fn stats_table(stats: &std::collections::BTreeMap<String, QueueStats>) -> String {
    let width = stats.keys().map(String::len).max().unwrap_or(5).max(5);
    let mut s = format!(
        "{:<width$}  {:>8} {:>8} {:>9} {:>8} {:>9} {:>8}\n",
        "queue", "queued", "started", "finished", "failed", "scheduled", "deferred"
    );
    for (q, c) in stats {
        s.push_str(&format!(
            "{q:<width$}  {:>8} {:>8} {:>9} {:>8} {:>9} {:>8}\n",
            c.queued, c.started, c.finished, c.failed, c.scheduled, c.deferred
        ));
    }
    for (q, c) in stats {
        if c.paused {
            s.push_str(&format!("{q}: paused (`prosaas jobs unpause {q}`)\n"));
        }
        if let Some(age) = c.oldest_deferred_secs {
            s.push_str(&format!("{q}: longest deferral {age}s\n"));
        }
        if let Some(id) = &c.stranded_example {
            s.push_str(&format!(
                "{q}: {} deferred jobs can never run (no parent can still end), e.g. {id}\n",
                c.stranded
            ));
        }
    }
    for (q, c) in stats {
        let Some(t) = &c.tenants else { continue };
        let oldest = match (&t.oldest_tenant, t.oldest_queued_secs) {
            (Some(tenant), Some(age)) => format!(", longest wait {tenant} ({age}s)"),
            _ => String::new(),
        };
        let partial = if t.complete {
            ""
        } else {
            " (first lanes only)"
        };
        s.push_str(&format!(
            "\n{q}: {} tenants with {} queued jobs{oldest}{partial}\n  {:<32} {:>8} {:>8} {:>10}\n",
            t.with_work, t.queued, "tenant", "queued", "running", "oldest (s)"
        ));
        for r in &t.busiest {
            let age = r.oldest_queued_secs.map_or("-".into(), |a| a.to_string());
            s.push_str(&format!(
                "  {:<32} {:>8} {:>8} {:>10}\n",
                r.tenant, r.queued, r.running, age
            ));
        }
    }
    s
}
