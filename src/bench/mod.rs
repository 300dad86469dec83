//! `prosaas bench`: measures what operators size Redis and workers with, against the configured
//! Redis. It refuses a database that holds keys (unless `--force`), writes only `bench`-named
//! keys and deletes them afterwards. Every scenario reports Redis commands per job (from
//! `INFO commandstats` deltas) and this process's peak RSS. One file per scenario; `load.rs`
//! drives jobs and workers, `measure.rs` turns counters into figures.

mod calls;
mod drain;
mod e2e;
mod enqueue;
mod enqueue_dedupe;
mod fairness;
mod latency;
mod load;
mod measure;
mod rate_limit;
mod soak;
mod webhook;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::cli::BenchScenario as Scenario;
use crate::jobs::JobStore;
use crate::settings::Settings;

pub const QUEUE: &str = "bench";

#[derive(Clone, Debug)]
pub struct BenchArgs {
    pub scenario: Scenario,
    pub jobs: usize,
    pub concurrency: Option<usize>,
    pub batch: usize,
    pub rate: u64,
    pub duration: u64,
    pub force: bool,
}

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub jobs: usize,
    pub seconds: f64,
    pub per_sec: f64,
    pub redis_commands_per_job: f64,
    pub scripts_per_job: f64,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub figures: Vec<Figure>,
    pub peak_rss_mb: f64,
}

pub async fn run(args: BenchArgs, settings: &Settings) -> anyhow::Result<Report> {
    let store = JobStore::connect(settings.store_config())?;
    let keys = store
        .bench()
        .key_count()
        .await
        .with_context(|| format!("Redis at {} does not answer", store.redacted_url()))?;
    if keys > 0 && !args.force {
        bail!(
            "the Redis database at {} holds {keys} keys; prosaas bench runs only on an empty database (--force runs anyway, writing and deleting only bench keys)",
            store.redacted_url()
        );
    }
    store.bench().delete_bench_keys(QUEUE).await?;
    let result = scenario(&args, settings, &store).await;
    store.bench().delete_bench_keys(QUEUE).await?;
    let figures = result?;
    Ok(Report {
        scenario: args.scenario,
        figures,
        peak_rss_mb: measure::rss_mb("self").0,
    })
}

async fn scenario(
    a: &BenchArgs,
    settings: &Settings,
    store: &JobStore,
) -> anyhow::Result<Vec<Figure>> {
    Ok(match a.scenario {
        Scenario::Enqueue => enqueue::run(a, store).await?,
        Scenario::EnqueueDedupe => enqueue_dedupe::run(a, store).await?,
        Scenario::Drain => drain::run(a, settings, store).await?,
        Scenario::E2e => vec![e2e::run(a, settings, store).await?],
        Scenario::Latency => vec![latency::run(a, settings, store).await?],
        Scenario::Webhook => webhook::run(a, settings, store).await?,
        Scenario::Calls => vec![calls::run(a, settings, store).await?],
        Scenario::Fairness => fairness::run(a, settings, store).await?,
        Scenario::RateLimit => vec![rate_limit::run(a, settings, store).await?],
        Scenario::Soak => vec![soak::run(a, settings, store).await?],
    })
}

/// The report as text, one line per figure.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "scenario {}: peak RSS of this process {:.1} MiB\n",
        report.scenario.name(),
        report.peak_rss_mb
    );
    for f in &report.figures {
        let extra: Vec<String> = f.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "  {}: {} in {:.2} s = {:.0}/s; {:.2} Redis commands/job ({:.2} scripts){}{}\n",
            f.name,
            f.jobs,
            f.seconds,
            f.per_sec,
            f.redis_commands_per_job,
            f.scripts_per_job,
            if extra.is_empty() { "" } else { "; " },
            extra.join(" ")
        ));
    }
    out
}
