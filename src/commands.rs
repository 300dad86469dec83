//! What each command line does: serve a role, `check`, and the operator `jobs` commands.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::cli::{EnqueueArgs, JobsCommand};
use crate::jobs::{Enqueued, JobOptions, JobStore, NewJob, QueueStats};
use crate::local_redis;
use crate::roles::Role;
use crate::settings::{RedisUrlSource, Settings};

/// Serves `role` until SIGTERM/SIGINT.
pub async fn serve(role: Role, settings: Settings) -> anyhow::Result<()> {
    let local = if role == Role::All && settings.redis_url().1 == RedisUrlSource::LocalDefault {
        local_redis::ensure(&settings).await?
    } else {
        None
    };
    let jobs = JobStore::connect(&settings.store_config())?;
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

/// `prosaas check`: the configuration already loaded; now Redis must answer.
pub async fn check(settings: &Settings) -> anyhow::Result<()> {
    let jobs = JobStore::connect(&settings.store_config())?;
    jobs.ping(Duration::from_secs(3))
        .await
        .with_context(|| format!("Redis at {} does not answer", jobs.redacted_url()))?;
    println!(
        "ok: configuration valid, Redis at {} answers",
        jobs.redacted_url()
    );
    Ok(())
}

pub async fn jobs(cmd: JobsCommand, settings: &Settings) -> anyhow::Result<()> {
    let jobs = JobStore::connect(&settings.store_config())?;
    match cmd {
        JobsCommand::Stats { json } => {
            let stats = jobs.queue_stats(&settings.worker.queues).await?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
            } else {
                write!(out, "{}", stats_table(&stats))?;
            }
            Ok(())
        }
        JobsCommand::Enqueue(args) => {
            let (job, dedupe) = parse_enqueue(args)?;
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
    }
}

fn parse_enqueue(a: EnqueueArgs) -> anyhow::Result<(NewJob, Option<(String, u64)>)> {
    let args: Map<String, Value> = match serde_json::from_str(&a.args)
        .with_context(|| format!("--args is not JSON: {}", a.args))?
    {
        Value::Object(m) => m,
        other => bail!("--args must be a JSON object of keyword arguments, not {other}"),
    };
    let options: JobOptions = match &a.options {
        Some(text) => serde_json::from_str(text).context("--options")?,
        None => JobOptions::default(),
    };
    let job = NewJob::new(a.queue, a.job_type, args).with_options(options);
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
    s
}
