//! Typed settings, loaded in layers and validated before anything connects.
//!
//! Layers, later wins: `config/default.toml` (compiled in) → an overlay file (`--config FILE`,
//! or `config/$APP_ENV.toml`) → `PROSAAS__SECTION__KEY` variables → the conventional `REDIS_URL`
//! and `PORT`. The environment is passed in as a map so tests never mutate the process's own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use config::builder::{ConfigBuilder, DefaultState};
use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use crate::jobs::{
    FairQueue, MAX_TTL_SECS, SentinelConfig, StoreConfig, is_valid_queue_name, is_valid_tenant,
    validate_url,
};

const DEFAULTS: &str = include_str!("../config/default.toml");

/// Settings that are lists, and the variables that set them (comma-separated).
const LIST_KEYS: [(&str, &str); 5] = [
    ("PROSAAS__REDIS__SENTINEL__ADDRS", "redis.sentinel.addrs"),
    ("PROSAAS__WORKER__QUEUES", "worker.queues"),
    ("PROSAAS__WORKER__BACKOFF_SECS", "worker.backoff_secs"),
    ("PROSAAS__API__QUEUES", "api.queues"),
    (
        "PROSAAS__RECORDINGS__ALLOWED_HOSTS",
        "recordings.allowed_hosts",
    ),
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub api: ApiSettings,
    pub worker: WorkerSettings,
    pub calls: CallSettings,
    pub recordings: RecordingSettings,
    pub scheduler: SchedulerSettings,
    pub shutdown: ShutdownSettings,
    pub log: LogSettings,
    pub dashboard: DashboardSettings,
    #[serde(default)]
    pub external: Vec<ExternalType>,
    /// Per-queue behaviour: `[queues.<name>]`.
    #[serde(default)]
    pub queues: HashMap<String, QueueSettings>,
    /// `[[rate_limits]]`: starts per second (minute, hour) by tenant, job type or both.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitSettings>,
}

/// One `[[rate_limits]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Names the limit in keys, metrics and a deferred job's reason; derived when empty.
    #[serde(default)]
    pub name: String,
    /// `"*"`: each tenant has its own bucket; a tenant's name: that tenant only; absent: every
    /// job of the type shares one.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The job type it limits (as handlers are named); absent: every type.
    #[serde(default)]
    pub job_type: Option<String>,
    /// `"<n>/s"`, `"<n>/m"` or `"<n>/h"`.
    pub rate: String,
    /// Starts allowed at once after a quiet period.
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl RateLimitSettings {
    /// Milliseconds between starts, from `rate`; `None` when it does not parse.
    pub fn interval_ms(&self) -> Option<f64> {
        let (n, unit) = self.rate.trim().split_once('/')?;
        let n: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
        let unit_ms = match unit.trim() {
            "s" | "sec" | "second" => 1_000.0,
            "m" | "min" | "minute" => 60_000.0,
            "h" | "hour" => 3_600_000.0,
            _ => return None,
        };
        Some(unit_ms / f64::from(n))
    }

    /// The name given, else one made of what it limits (`tenant-*.type-push_send_job`).
    pub fn label(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        let mut parts = Vec::new();
        if let Some(t) = &self.tenant {
            parts.push(format!("tenant-{t}"));
        }
        if let Some(j) = &self.job_type {
            parts.push(format!("type-{j}"));
        }
        parts.join(".")
    }
}

/// `[queues.<name>]`: how one queue shares its workers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    #[serde(default)]
    pub fairness: Fairness,
    /// The most of one tenant's jobs that run at once across all workers (fair queues); 0: any.
    #[serde(default)]
    pub tenant_concurrency: u32,
    /// Tenant → share of turns (fair queues; absent tenants have 1).
    #[serde(default)]
    pub tenant_weights: HashMap<String, u32>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fairness {
    /// One FIFO list, as RQ's.
    #[default]
    None,
    /// Round robin across tenants with work, FIFO within each tenant.
    Tenant,
}

/// A job type that prosaas enqueues but a Python RQ worker runs, on a queue of its own.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalType {
    pub job_type: String,
    pub queue: String,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub ack_replicas: u32,
    pub ack_timeout_ms: u64,
    pub sentinel: SentinelSettings,
    pub local: LocalRedisSettings,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelSettings {
    pub addrs: Vec<String>,
    pub master: String,
    pub db: i64,
    pub username: String,
    pub password: String,
    pub sentinel_username: String,
    pub sentinel_password: String,
    /// TLS to the sentinels and the data nodes (the URL form: `rediss+sentinel://`).
    pub tls: bool,
}

impl std::fmt::Debug for SentinelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords never reach a log line.
        f.debug_struct("SentinelSettings")
            .field("addrs", &self.addrs)
            .field("master", &self.master)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRedisSettings {
    pub port: u16,
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    pub body_limit_bytes: usize,
    pub body_budget_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub ops_port: u16,
    pub ops_max_connections: usize,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub internal_secret: String,
    pub internal_api_token: String,
    pub twilio_auth_token: String,
    pub public_base_url: String,
    pub allow_missing_secrets: bool,
    pub webhook_dedupe_ttl_secs: u64,
    pub twilio_dedupe_ttl_secs: u64,
    pub push_dedupe_ttl_secs: u64,
    pub request_timeout_ms: u64,
    pub max_concurrent_requests: usize,
    pub max_messages_per_request: usize,
    pub queues: Vec<String>,
    pub ingress_queues: IngressQueues,
    pub alerts: AlertSettings,
}

/// The queue each ingress source enqueues to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressQueues {
    pub whatsapp: String,
    pub twilio: String,
    pub push: String,
    pub calls: String,
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line, not even through a Debug print.
        let set = |s: &str| if s.is_empty() { "<unset>" } else { "<set>" };
        f.debug_struct("ApiSettings")
            .field("internal_secret", &set(&self.internal_secret))
            .field("internal_api_token", &set(&self.internal_api_token))
            .field("twilio_auth_token", &set(&self.twilio_auth_token))
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    pub queue_depth: u64,
    pub oldest_job_age_secs: u64,
    pub unserved_secs: u64,
    #[serde(default)]
    pub queues: HashMap<String, QueueAlert>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueAlert {
    pub queue_depth: Option<u64>,
    pub oldest_job_age_secs: Option<u64>,
}

impl AlertSettings {
    /// (depth, age) thresholds for a queue.
    pub fn for_queue(&self, queue: &str) -> (u64, u64) {
        let o = self.queues.get(queue);
        (
            o.and_then(|q| q.queue_depth).unwrap_or(self.queue_depth),
            o.and_then(|q| q.oldest_job_age_secs)
                .unwrap_or(self.oldest_job_age_secs),
        )
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub queues: Vec<String>,
    pub concurrency: usize,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_ttl_ms: u64,
    pub maintenance_interval_ms: u64,
    pub promote_interval_ms: u64,
    pub prune_interval_ms: u64,
    pub shutdown_grace_ms: u64,
    pub max_retries: u32,
    pub retry_rq_jobs: bool,
    pub started_entries: String,
    /// Claims write RQ's `current_job` field on the worker's registration.
    pub record_current_job: bool,
    pub backoff_secs: Vec<u64>,
    pub backoff_jitter: f64,
    pub timeout_secs: i64,
    pub result_ttl_secs: i64,
    pub failure_ttl_secs: i64,
    pub resolve_dotted_names: bool,
    pub diagnostic_handlers: bool,
    #[serde(default)]
    pub aliases: Vec<AliasSettings>,
    #[serde(default)]
    pub types: HashMap<String, JobTypeSettings>,
    #[serde(default)]
    pub http_targets: HashMap<String, HttpTargetSettings>,
}

/// A job type delivered over HTTP.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTargetSettings {
    pub url: String,
    pub secret: String,
    #[serde(default = "default_target_timeout_ms")]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for HttpTargetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTargetSettings")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &crate::jobs::redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("ack_replicas", &self.ack_replicas)
            .field("sentinel", &self.sentinel)
            .finish_non_exhaustive()
    }
}

fn default_target_timeout_ms() -> u64 {
    10_000
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSettings {
    pub max_concurrent_calls: usize,
    pub idle_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub greeting_path: String,
    pub max_timestamp_lead_ms: u64,
    pub max_call_secs: u64,
    pub max_message_bytes: usize,
    pub require_stream_token: bool,
}

impl CallSettings {
    /// The greeting's μ-law audio, if one is configured; the error names what is wrong with it.
    pub fn greeting(&self) -> anyhow::Result<Option<Vec<u8>>> {
        if self.greeting_path.is_empty() {
            return Ok(None);
        }
        let file = std::fs::File::open(&self.greeting_path)
            .with_context(|| format!("calls.greeting_path: cannot open {}", self.greeting_path))?;
        let wav = crate::audio::read_wav(std::io::BufReader::new(file)).with_context(|| {
            format!(
                "calls.greeting_path: {} is not a WAV file",
                self.greeting_path
            )
        })?;
        if wav.format != crate::audio::WavFormat::MULAW_8K_MONO {
            bail!(
                "calls.greeting_path: {} must be μ-law 8 kHz mono, as Twilio plays it",
                self.greeting_path
            );
        }
        Ok(Some(wav.data))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSettings {
    pub dir: PathBuf,
    pub allowed_hosts: Vec<String>,
    pub max_download_bytes: u64,
    pub allow_http: bool,
    pub twilio_account_sid: String,
    pub min_free_bytes: u64,
}

/// A job type name that runs another type's handler.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasSettings {
    pub from: String,
    pub to: String,
}

/// Per job type overrides of the worker defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTypeSettings {
    pub timeout_secs: Option<i64>,
    pub max_retries: Option<u32>,
    pub backoff_secs: Option<Vec<u64>>,
    pub retry_rq_jobs: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    pub lock_ttl_ms: u64,
    pub renew_interval_ms: u64,
    pub tick_interval_ms: u64,
    #[serde(default)]
    pub entries: Vec<EntrySettings>,
}

/// One periodic job: `every` or `cron` (with `timezone`), and the job to enqueue.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySettings {
    pub name: String,
    pub every: Option<String>,
    pub cron: Option<String>,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_queue")]
    pub queue: String,
    pub job_type: String,
    #[serde(default)]
    pub args: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub options: crate::jobs::JobOptions,
}

fn default_timezone() -> String {
    "UTC".into()
}

fn default_queue() -> String {
    "default".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    pub grace_ms: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The operator dashboard (`/dashboard` on the api and all roles).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSettings {
    /// Signs operators in instead of `INTERNAL_API_TOKEN` when set. Env: `DASHBOARD_PASSWORD`.
    pub password: String,
    /// How long a sign-in lasts.
    pub session_ttl_secs: u64,
    /// Failed sign-ins one client address may make per minute before it gets 429s.
    pub login_failures_per_minute: u32,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Off only for plain-HTTP setups.
    pub secure_cookie: bool,
}

impl std::fmt::Debug for DashboardSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardSettings")
            .field(
                "password",
                &if self.password.is_empty() {
                    "<unset>"
                } else {
                    "<set>"
                },
            )
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("login_failures_per_minute", &self.login_failures_per_minute)
            .field("secure_cookie", &self.secure_cookie)
            .finish()
    }
}

impl DashboardSettings {
    /// What signs an operator in: the dashboard password, else the internal API token; `None`
    /// when neither is set (the dashboard then answers 503).
    pub fn secret<'a>(&'a self, api: &'a ApiSettings) -> Option<&'a str> {
        [self.password.as_str(), api.internal_api_token.as_str()]
            .into_iter()
            .find(|s| !s.is_empty())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// Where the Redis URL came from: it decides whether the `all` role may start a local server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisUrlSource {
    /// Set by `REDIS_URL`, `PROSAAS__REDIS__URL` or a config file: used as given, never replaced.
    Explicit,
    /// Not set: the local default address `redis://127.0.0.1:<redis.local.port>`.
    LocalDefault,
}

impl Settings {
    /// Loads and validates. `overlay` is `--config FILE`; without it `config/$APP_ENV.toml` is
    /// read when `APP_ENV` is set. Errors are one line, naming the setting at fault.
    pub fn load(overlay: Option<&Path>, env: &HashMap<String, String>) -> anyhow::Result<Self> {
        let overlay: Option<PathBuf> = match overlay {
            Some(p) => Some(p.to_path_buf()),
            None => env
                .get("APP_ENV")
                .filter(|e| !e.is_empty())
                .map(|e| PathBuf::from(format!("config/{e}.toml"))),
        };
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = &overlay {
            if !path.is_file() {
                bail!("config file {} does not exist", path.display());
            }
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
        }
        builder = with_prosaas_env(builder, env)?;
        builder = with_plain_env(builder, env)?;
        let settings: Settings = builder
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Every rule, section by section; the first broken one is the error.
    fn validate(&self) -> anyhow::Result<()> {
        self.validate_redis()?;
        self.validate_worker()?;
        self.validate_worker_types()?;
        self.validate_external()?;
        self.validate_calls()?;
        self.validate_scheduler()?;
        self.validate_api()?;
        self.validate_recordings()?;
        self.validate_queues()?;
        self.validate_rate_limits()?;
        self.validate_dashboard()?;
        self.validate_http()
    }

    /// `[[rate_limits]]`: what each limits, its rate and burst, unique names.
    fn validate_dashboard(&self) -> anyhow::Result<()> {
        let d = &self.dashboard;
        if !(60..=30 * 86_400).contains(&d.session_ttl_secs) {
            bail!("dashboard.session_ttl_secs must be 60 to 2592000 seconds (30 days)");
        }
        if d.login_failures_per_minute == 0 {
            bail!("dashboard.login_failures_per_minute must be positive");
        }
        Ok(())
    }

    fn validate_rate_limits(&self) -> anyhow::Result<()> {
        if self.rate_limits.len() > 100 {
            bail!("rate_limits: at most 100 limits");
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rate_limits.iter().enumerate() {
            let at = format!("rate_limits[{i}]");
            if r.tenant.is_none() && r.job_type.is_none() {
                bail!("{at}: set tenant (a name, or \"*\" for each tenant), job_type, or both");
            }
            if let Some(t) = &r.tenant
                && t != "*"
                && !is_valid_tenant(t)
            {
                bail!("{at}.tenant: {t:?} is neither \"*\" nor a valid tenant name");
            }
            if r.job_type
                .as_deref()
                .is_some_and(|j| j.is_empty() || j.len() > 256)
            {
                bail!("{at}.job_type: must be 1-256 characters");
            }
            match r.interval_ms() {
                Some(ms) if ms >= 1.0 => {}
                Some(_) => bail!("{at}.rate: {:?} is more than 1000/s", r.rate),
                None => bail!(
                    "{at}.rate: {:?} must be <n>/s, <n>/m or <n>/h with n > 0",
                    r.rate
                ),
            }
            if !(1..=10_000).contains(&r.burst) {
                bail!("{at}.burst: {} must be 1 to 10000", r.burst);
            }
            let label = r.label();
            if label.len() > 200
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:@*-".contains(&b))
            {
                bail!("{at}.name: {label:?} must be 1-200 characters of [A-Za-z0-9_.:@*-]");
            }
            if !names.insert(label.clone()) {
                bail!("{at}.name: {label:?} is used twice");
            }
        }
        Ok(())
    }

    /// `[queues.<name>]`: names, and settings that only mean something on a fair queue.
    fn validate_queues(&self) -> anyhow::Result<()> {
        let mut names: Vec<&String> = self.queues.keys().collect();
        names.sort();
        for name in names {
            let q = &self.queues[name];
            if !is_valid_queue_name(name) {
                bail!("queues.{name}: not a valid queue name ([A-Za-z0-9_.-], 1-128 characters)");
            }
            if q.fairness != Fairness::Tenant
                && (q.tenant_concurrency > 0 || !q.tenant_weights.is_empty())
            {
                bail!(
                    "queues.{name}: tenant_concurrency and tenant_weights need fairness = \"tenant\""
                );
            }
            if let Some((t, _)) = q.tenant_weights.iter().find(|(t, _)| !is_valid_tenant(t)) {
                bail!("queues.{name}.tenant_weights: {t:?} is not a valid tenant name");
            }
            if let Some((t, w)) = q
                .tenant_weights
                .iter()
                .find(|(_, w)| !(1..=1000).contains(*w))
            {
                bail!("queues.{name}.tenant_weights.{t}: {w} must be 1 to 1000");
            }
        }
        Ok(())
    }

    /// `[redis]`: the URL, the key prefix RQ shares, timeouts.
    fn validate_redis(&self) -> anyhow::Result<()> {
        if !self.redis.url.is_empty() {
            validate_url(&self.redis.url).context("redis.url")?;
        }
        if self.redis.key_prefix.is_empty()
            || !self
                .redis
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:{}-".contains(&b))
        {
            bail!(
                "redis.key_prefix must be non-empty and use only [A-Za-z0-9_.:{{}}-], as RQ_KEY_PREFIX"
            );
        }
        if self.redis.connect_timeout_ms == 0 || self.redis.response_timeout_ms == 0 {
            bail!("redis.connect_timeout_ms and redis.response_timeout_ms must be positive");
        }
        let s = &self.redis.sentinel;
        if !s.addrs.is_empty() && s.master.is_empty() {
            bail!("redis.sentinel.master must name the service the sentinels monitor");
        }
        if s.addrs.is_empty()
            && !s.master.is_empty()
            && !crate::jobs::is_sentinel_url(&self.redis.url)
        {
            bail!("redis.sentinel.master is set but redis.sentinel.addrs is empty");
        }
        if self.redis.ack_replicas > 0 && self.redis.ack_timeout_ms == 0 {
            bail!("redis.ack_timeout_ms must be positive when redis.ack_replicas is set");
        }
        Ok(())
    }

    /// `[worker]`: queues, timings that keep live jobs from being recovered, retries, TTLs, types and HTTP targets, the started-registry format.
    fn validate_worker(&self) -> anyhow::Result<()> {
        if self.worker.concurrency == 0 {
            bail!("worker.concurrency must be at least 1");
        }
        if self.worker.queues.is_empty() {
            bail!("worker.queues must name at least one queue");
        }
        if let Some(q) = self.worker.queues.iter().find(|q| !is_valid_queue_name(q)) {
            bail!(
                "worker.queues: {q:?} is not a valid queue name ([A-Za-z0-9_.-], 1-128 characters)"
            );
        }
        let w = &self.worker;
        if w.heartbeat_interval_ms == 0
            || w.maintenance_interval_ms == 0
            || w.promote_interval_ms == 0
            || w.prune_interval_ms == 0
        {
            bail!(
                "worker.heartbeat_interval_ms, worker.maintenance_interval_ms, worker.promote_interval_ms and worker.prune_interval_ms must be positive"
            );
        }
        if w.heartbeat_ttl_ms < 2 * w.heartbeat_interval_ms {
            bail!(
                "worker.heartbeat_ttl_ms ({}) must be at least twice worker.heartbeat_interval_ms ({}), or one late heartbeat gets a live job recovered",
                w.heartbeat_ttl_ms,
                w.heartbeat_interval_ms
            );
        }
        if w.shutdown_grace_ms >= self.shutdown.grace_ms {
            bail!(
                "worker.shutdown_grace_ms ({}) must be shorter than shutdown.grace_ms ({}), to leave time to put unfinished jobs back",
                w.shutdown_grace_ms,
                self.shutdown.grace_ms
            );
        }
        check_timeout("worker.timeout_secs", w.timeout_secs)?;
        if w.backoff_secs.is_empty() {
            bail!("worker.backoff_secs must list at least one delay");
        }
        if !(0.0..=1.0).contains(&w.backoff_jitter) {
            bail!("worker.backoff_jitter must be between 0 and 1");
        }
        let ttl_ok = |v: i64| (-1..=MAX_TTL_SECS).contains(&v);
        if !ttl_ok(w.result_ttl_secs) || !ttl_ok(w.failure_ttl_secs) {
            bail!(
                "worker.result_ttl_secs and worker.failure_ttl_secs must be -1 (forever), 0 or positive up to {MAX_TTL_SECS}"
            );
        }
        if !["auto", "rq1", "rq2"].contains(&self.worker.started_entries.as_str()) {
            bail!(
                "worker.started_entries must be auto, rq1 or rq2, not {:?}",
                self.worker.started_entries
            );
        }
        Ok(())
    }

    /// `[worker.types]` and `[worker.http_targets]`: per-type timeouts and backoffs, each
    /// target's URL, secret and timeout.
    fn validate_worker_types(&self) -> anyhow::Result<()> {
        let w = &self.worker;
        for (name, t) in &w.types {
            if let Some(timeout) = t.timeout_secs {
                check_timeout(&format!("worker.types.{name}.timeout_secs"), timeout)?;
            }
            if t.backoff_secs.as_ref().is_some_and(Vec::is_empty) {
                bail!("worker.types.{name}.backoff_secs must list at least one delay");
            }
        }
        for (name, t) in &w.http_targets {
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                bail!("worker.http_targets.{name}.url must be an http:// or https:// URL");
            }
            if t.secret.is_empty() {
                bail!(
                    "worker.http_targets.{name}.secret must be set: the target verifies requests with it"
                );
            }
            if t.timeout_ms == 0 {
                bail!("worker.http_targets.{name}.timeout_ms must be positive");
            }
        }
        Ok(())
    }

    /// `external`: each type's queue is its own, and scheduler entries for it use that queue.
    fn validate_external(&self) -> anyhow::Result<()> {
        for e in &self.external {
            if !is_valid_queue_name(&e.queue) {
                bail!("external: {:?} is not a valid queue name", e.queue);
            }
            if self.worker.queues.contains(&e.queue) {
                bail!(
                    "worker.queues includes {}, the queue of the external job type {}: prosaas workers would take jobs only Python RQ can run",
                    e.queue,
                    e.job_type
                );
            }
            // Scheduler entries are enqueued on their own queue, not routed: one for an external
            // type must name that type's queue, or a prosaas worker takes it and fails it.
            if let Some(entry) = self
                .scheduler
                .entries
                .iter()
                .find(|en| en.job_type == e.job_type && en.queue != e.queue)
            {
                bail!(
                    "scheduler.entries.{}: job type {} runs outside prosaas on queue {}, so the entry must set queue = {:?}",
                    entry.name,
                    e.job_type,
                    e.queue,
                    e.queue
                );
            }
        }
        Ok(())
    }

    /// `[calls]`: limits, the greeting file, the shutdown grace.
    fn validate_calls(&self) -> anyhow::Result<()> {
        let c = &self.calls;
        if c.max_concurrent_calls == 0 || c.idle_timeout_ms == 0 {
            bail!("calls.max_concurrent_calls and calls.idle_timeout_ms must be positive");
        }
        c.greeting()?;
        let longest = crate::audio::MAX_TRACK_SECS;
        if c.max_call_secs == 0 || c.max_call_secs > longest {
            bail!("calls.max_call_secs must be between 1 and {longest} (6 hours)");
        }
        if c.max_timestamp_lead_ms == 0 {
            bail!("calls.max_timestamp_lead_ms must be positive");
        }
        // Twilio's messages are a few hundred bytes; the start carries the call's parameters.
        if !(4096..=16 << 20).contains(&c.max_message_bytes) {
            bail!("calls.max_message_bytes must be between 4096 and 16777216 (16 MiB)");
        }
        if c.shutdown_grace_ms >= self.shutdown.grace_ms {
            bail!(
                "calls.shutdown_grace_ms ({}) must be shorter than shutdown.grace_ms ({}), to leave time to finalize recordings",
                c.shutdown_grace_ms,
                self.shutdown.grace_ms
            );
        }
        Ok(())
    }

    /// `[scheduler]`: timings (the entries themselves are the scheduler's, checked by `scheduler::entries`).
    fn validate_scheduler(&self) -> anyhow::Result<()> {
        let s = &self.scheduler;
        if s.renew_interval_ms == 0 || s.tick_interval_ms == 0 {
            bail!("scheduler.renew_interval_ms and scheduler.tick_interval_ms must be positive");
        }
        if s.lock_ttl_ms <= s.renew_interval_ms {
            bail!(
                "scheduler.lock_ttl_ms ({}) must be larger than scheduler.renew_interval_ms ({}), or the leader loses its lock between renewals",
                s.lock_ttl_ms,
                s.renew_interval_ms
            );
        }
        Ok(())
    }

    /// `[api]`: limits, de-dupe TTLs, queues, the public base URL.
    fn validate_api(&self) -> anyhow::Result<()> {
        let a = &self.api;
        if a.request_timeout_ms == 0 || a.max_concurrent_requests == 0 {
            bail!("api.request_timeout_ms and api.max_concurrent_requests must be positive");
        }
        if !(1..=100_000).contains(&a.max_messages_per_request) {
            bail!("api.max_messages_per_request must be between 1 and 100000");
        }
        let max_ttl = crate::jobs::MAX_DEDUPE_TTL_SECS;
        for (name, ttl) in [
            ("webhook", a.webhook_dedupe_ttl_secs),
            ("twilio", a.twilio_dedupe_ttl_secs),
            ("push", a.push_dedupe_ttl_secs),
        ] {
            if !(1..=max_ttl).contains(&ttl) {
                bail!("api.{name}_dedupe_ttl_secs must be 1 to {max_ttl} seconds (30 days)");
            }
        }
        let iq = &a.ingress_queues;
        for (source, q) in [
            ("whatsapp", &iq.whatsapp),
            ("twilio", &iq.twilio),
            ("push", &iq.push),
            ("calls", &iq.calls),
        ] {
            if !crate::jobs::is_valid_queue_name(q) {
                bail!(
                    "api.ingress_queues.{source}: {q:?} must be 1-128 characters of [A-Za-z0-9_.-]"
                );
            }
        }
        if let Some(q) = a
            .queues
            .iter()
            .find(|q| !crate::jobs::is_valid_queue_name(q))
        {
            bail!("api.queues: {q:?} must be 1-128 characters of [A-Za-z0-9_.-]");
        }
        let url = &a.public_base_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            bail!("api.public_base_url (PUBLIC_BASE_URL) must start with https:// or http://");
        }
        Ok(())
    }

    /// `[recordings]`: the download cap and the host allow-list.
    fn validate_recordings(&self) -> anyhow::Result<()> {
        let r = &self.recordings;
        if r.max_download_bytes == 0 {
            bail!("recordings.max_download_bytes must be positive");
        }
        if let Some(h) = r.allowed_hosts.iter().find(|h| {
            let name = h.strip_prefix("*.").unwrap_or(h);
            name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }) {
            bail!("recordings.allowed_hosts: {h:?} must be a host name, or *. and a domain");
        }
        Ok(())
    }

    /// `[http]`: body limits and budget, connection limits and timeouts, the ops port.
    fn validate_http(&self) -> anyhow::Result<()> {
        let h = &self.http;
        if h.body_limit_bytes == 0 || h.body_limit_bytes > 1 << 30 {
            bail!("http.body_limit_bytes must be between 1 and 1073741824 (1 GiB)");
        }
        if h.body_budget_bytes < h.body_limit_bytes {
            bail!(
                "http.body_budget_bytes ({}) must be at least http.body_limit_bytes ({}), or no body of the largest size could ever be read",
                h.body_budget_bytes,
                h.body_limit_bytes
            );
        }
        if h.max_connections < 4 || h.ops_max_connections == 0 {
            bail!("http.max_connections must be at least 4 and http.ops_max_connections positive");
        }
        if h.header_read_timeout_ms == 0 || h.idle_timeout_ms == 0 {
            bail!("http.header_read_timeout_ms and http.idle_timeout_ms must be positive");
        }
        if h.ops_port != 0 && h.ops_port == h.port {
            bail!("http.ops_port must differ from http.port (0 turns the ops listener off)");
        }
        Ok(())
    }

    /// The queue a job of `job_type` goes to: the external type's own queue, else `requested`,
    /// else `default`. An explicit queue that contradicts an external type's is an error.
    pub fn route(&self, job_type: &str, requested: Option<&str>) -> Result<String, String> {
        match (
            self.external.iter().find(|e| e.job_type == job_type),
            requested,
        ) {
            (Some(e), Some(q)) if q != e.queue => Err(format!(
                "job type {job_type} runs outside prosaas, on queue {}, not {q}",
                e.queue
            )),
            (Some(e), _) => Ok(e.queue.clone()),
            (None, Some(q)) => Ok(q.to_owned()),
            (None, None) => Ok("default".to_owned()),
        }
    }

    /// The queues the enqueue API may push to: `api.queues`, or when that is empty the worker
    /// queues and the external types' queues.
    pub fn enqueue_queues(&self) -> Vec<&str> {
        if !self.api.queues.is_empty() {
            return self.api.queues.iter().map(String::as_str).collect();
        }
        let mut qs: Vec<&str> = self.worker.queues.iter().map(String::as_str).collect();
        for e in &self.external {
            if !qs.contains(&e.queue.as_str()) {
                qs.push(&e.queue);
            }
        }
        qs
    }

    /// The settings the public API cannot run without, by the variable that sets each.
    /// What the calls role needs to tell Twilio's streams from anyone else's, when unset.
    pub fn missing_calls_secrets(&self) -> Vec<&'static str> {
        let a = &self.api;
        unset(&[
            ("TWILIO_AUTH_TOKEN", &a.twilio_auth_token),
            ("PUBLIC_BASE_URL", &a.public_base_url),
        ])
    }

    pub fn missing_api_secrets(&self) -> Vec<&'static str> {
        let a = &self.api;
        unset(&[
            ("INTERNAL_SECRET", &a.internal_secret),
            ("INTERNAL_API_TOKEN", &a.internal_api_token),
            ("TWILIO_AUTH_TOKEN", &a.twilio_auth_token),
            ("PUBLIC_BASE_URL", &a.public_base_url),
        ])
    }

    /// The Redis URL to use and where it came from.
    pub fn redis_url(&self) -> (String, RedisUrlSource) {
        if self.redis.url.is_empty() {
            (
                format!("redis://127.0.0.1:{}", self.redis.local.port),
                RedisUrlSource::LocalDefault,
            )
        } else {
            (self.redis.url.clone(), RedisUrlSource::Explicit)
        }
    }

    /// How the jobs module should reach Redis.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            url: self.redis_url().0,
            sentinel: self.sentinel_config(),
            ack_replicas: self.redis.ack_replicas,
            ack_timeout: Duration::from_millis(self.redis.ack_timeout_ms),
            key_prefix: self.redis.key_prefix.clone(),
            connect_timeout: Duration::from_millis(self.redis.connect_timeout_ms),
            response_timeout: Duration::from_millis(self.redis.response_timeout_ms),
            fair_queues: self
                .queues
                .iter()
                .filter(|(_, q)| q.fairness == Fairness::Tenant)
                .map(|(name, q)| {
                    let fair = FairQueue {
                        tenant_concurrency: q.tenant_concurrency,
                        weights: q
                            .tenant_weights
                            .iter()
                            .map(|(t, w)| (t.clone(), *w))
                            .collect(),
                    };
                    (name.clone(), fair)
                })
                .collect(),
            record_current_job: self.worker.record_current_job,
        }
    }

    /// The Sentinel service, from `[redis.sentinel]` or the `redis+sentinel://` URL (whose
    /// sentinel credentials come from `[redis.sentinel]`); `None` without Sentinel.
    fn sentinel_config(&self) -> Option<SentinelConfig> {
        let s = &self.redis.sentinel;
        let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let mut config = if s.addrs.is_empty() {
            SentinelConfig::from_url(&self.redis.url).ok()?
        } else {
            SentinelConfig {
                addrs: s.addrs.clone(),
                master: s.master.clone(),
                db: s.db,
                username: some(&s.username),
                password: some(&s.password),
                sentinel_username: None,
                sentinel_password: None,
                tls: s.tls,
            }
        };
        config.tls |= s.tls;
        config.sentinel_username = some(&s.sentinel_username);
        config.sentinel_password = some(&s.sentinel_password);
        Some(config)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown.grace_ms)
    }
}

/// A timeout setting: positive seconds, or -1 for no limit.
/// Adds the `PROSAAS__SECTION__KEY` variables. List settings are split here: the config crate
/// turns a one-element list from the environment (`PROSAAS__WORKER__QUEUES=default`) into a
/// scalar. A value that starts with `[` or `{` is JSON, for list and table settings a flat
/// variable cannot express (`PROSAAS__EXTERNAL='[{"job_type": "x", "queue": "python"}]'`).
fn with_prosaas_env(
    mut builder: ConfigBuilder<DefaultState>,
    env: &HashMap<String, String>,
) -> anyhow::Result<ConfigBuilder<DefaultState>> {
    let mut prosaas_env: HashMap<String, String> = HashMap::new();
    let mut lists: Vec<(String, config::Value)> = Vec::new();
    for (k, v) in env.iter().filter(|(k, _)| k.starts_with("PROSAAS__")) {
        let trimmed = v.trim_start();
        if trimmed.starts_with('[') || trimmed.starts_with('{') {
            let parsed: serde_json::Value =
                serde_json::from_str(v).with_context(|| format!("{k} is not valid JSON"))?;
            let key = k["PROSAAS__".len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            lists.push((key, json_to_config(parsed)));
            continue;
        }
        match LIST_KEYS.iter().find(|(var, _)| var == k) {
            Some((_, key)) => lists.push((
                (*key).to_owned(),
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<String>>()
                    .into(),
            )),
            None => {
                prosaas_env.insert(k.clone(), v.clone());
            }
        }
    }
    builder = builder.add_source(
        Environment::with_prefix("PROSAAS")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(prosaas_env)),
    );
    for (key, value) in lists {
        builder = builder.set_override(key, value)?;
    }
    Ok(builder)
}

/// Adds the conventional variables (`REDIS_URL`, `PORT`, the secrets, `RQ_KEY_PREFIX`), which
/// win over every file and `PROSAAS__` variable.
fn with_plain_env(
    mut builder: ConfigBuilder<DefaultState>,
    env: &HashMap<String, String>,
) -> anyhow::Result<ConfigBuilder<DefaultState>> {
    if let Some(url) = env.get("REDIS_URL").filter(|u| !u.is_empty()) {
        builder = builder.set_override("redis.url", url.as_str())?;
    }
    for (var, key) in [
        ("INTERNAL_SECRET", "api.internal_secret"),
        ("INTERNAL_API_TOKEN", "api.internal_api_token"),
        ("DASHBOARD_PASSWORD", "dashboard.password"),
        ("TWILIO_AUTH_TOKEN", "api.twilio_auth_token"),
        ("TWILIO_ACCOUNT_SID", "recordings.twilio_account_sid"),
        ("PUBLIC_BASE_URL", "api.public_base_url"),
        // RQ 3.0's own variable: prosaas and Python RQ must agree on the prefix.
        ("RQ_KEY_PREFIX", "redis.key_prefix"),
    ] {
        if let Some(v) = env.get(var).filter(|v| !v.is_empty()) {
            builder = builder.set_override(key, v.as_str())?;
        }
    }
    if let Some(port) = env.get("PORT").filter(|p| !p.is_empty()) {
        let port: u16 = port
            .parse()
            .with_context(|| format!("PORT={port:?} is not a port number"))?;
        builder = builder.set_override("http.port", port)?;
    }
    Ok(builder)
}

fn check_timeout(name: &str, t: i64) -> anyhow::Result<()> {
    if t == -1 || t > 0 {
        Ok(())
    } else {
        bail!("{name} must be positive seconds, or -1 for no limit")
    }
}

/// A JSON value as the config crate's, for settings given as JSON in the environment.
fn json_to_config(v: serde_json::Value) -> config::Value {
    use config::ValueKind;
    let kind = match v {
        serde_json::Value::Null => ValueKind::Nil,
        serde_json::Value::Bool(b) => ValueKind::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => ValueKind::I64(i),
            None => n.as_u64().map_or_else(
                || ValueKind::Float(n.as_f64().unwrap_or_default()),
                ValueKind::U64,
            ),
        },
        serde_json::Value::String(s) => ValueKind::String(s),
        serde_json::Value::Array(items) => {
            ValueKind::Array(items.into_iter().map(json_to_config).collect())
        }
        serde_json::Value::Object(map) => ValueKind::Table(
            map.into_iter()
                .map(|(k, v)| (k, json_to_config(v)))
                .collect(),
        ),
    };
    config::Value::new(None, kind)
}

/// The names of the settings in `named` that are empty.
fn unset(named: &[(&'static str, &String)]) -> Vec<&'static str> {
    named
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sentinel_settings_in_either_form() {
        let s = Settings::load(
            None,
            &env(&[
                (
                    "PROSAAS__REDIS__SENTINEL__ADDRS",
                    "10.0.0.1:26379, 10.0.0.2:26379",
                ),
                ("PROSAAS__REDIS__SENTINEL__MASTER", "jobs"),
                ("PROSAAS__REDIS__SENTINEL__PASSWORD", "n0de-pw"),
                ("PROSAAS__REDIS__SENTINEL__SENTINEL_PASSWORD", "s3ntinel-pw"),
                ("PROSAAS__REDIS__ACK_REPLICAS", "1"),
            ]),
        )
        .unwrap();
        let c = s.store_config();
        let sentinel = c.sentinel.unwrap();
        assert_eq!(sentinel.addrs, ["10.0.0.1:26379", "10.0.0.2:26379"]);
        assert_eq!(sentinel.master, "jobs");
        assert_eq!(sentinel.password.as_deref(), Some("n0de-pw"));
        assert_eq!(sentinel.sentinel_password.as_deref(), Some("s3ntinel-pw"));
        assert_eq!(c.ack_replicas, 1);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("n0de-pw") && !shown.contains("s3ntinel-pw"),
            "passwords stay out of logs: {shown}"
        );

        let s = Settings::load(
            None,
            &env(&[
                ("REDIS_URL", "redis+sentinel://:pw@h1:26379,h2:26379/jobs/3"),
                ("PROSAAS__REDIS__SENTINEL__SENTINEL_PASSWORD", "sp"),
            ]),
        )
        .unwrap();
        let sentinel = s.store_config().sentinel.unwrap();
        assert_eq!((sentinel.master.as_str(), sentinel.db), ("jobs", 3));
        assert_eq!(sentinel.password.as_deref(), Some("pw"));
        assert_eq!(sentinel.sentinel_password.as_deref(), Some("sp"));

        let e = Settings::load(None, &env(&[("PROSAAS__REDIS__SENTINEL__ADDRS", "h:1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("redis.sentinel.master"), "{e}");
        let e = format!(
            "{:#}",
            Settings::load(None, &env(&[("REDIS_URL", "redis+sentinel://h1:26379")])).unwrap_err()
        );
        assert!(e.contains("master name is missing"), "{e}");
        assert!(
            Settings::load(None, &env(&[]))
                .unwrap()
                .store_config()
                .sentinel
                .is_none()
        );
    }

    #[test]
    fn fair_queues_from_the_environment_and_their_rules() {
        let s = Settings::load(
            None,
            &env(&[
                ("PROSAAS__QUEUES__DEFAULT__FAIRNESS", "tenant"),
                ("PROSAAS__QUEUES__DEFAULT__TENANT_CONCURRENCY", "4"),
                ("PROSAAS__QUEUES__DEFAULT__TENANT_WEIGHTS", r#"{"acme": 3}"#),
            ]),
        )
        .unwrap();
        let fair = &s.store_config().fair_queues["default"];
        assert_eq!(fair.tenant_concurrency, 4);
        assert_eq!(fair.weights["acme"], 3);
        assert!(
            Settings::load(None, &env(&[]))
                .unwrap()
                .store_config()
                .fair_queues
                .is_empty()
        );
        for (bad, says) in [
            (
                vec![("PROSAAS__QUEUES__DEFAULT__TENANT_CONCURRENCY", "4")],
                "need fairness",
            ),
            (
                vec![
                    ("PROSAAS__QUEUES__DEFAULT__FAIRNESS", "tenant"),
                    ("PROSAAS__QUEUES__DEFAULT__TENANT_WEIGHTS", r#"{"acme": 0}"#),
                ],
                "must be 1 to 1000",
            ),
            (
                vec![
                    ("PROSAAS__QUEUES__DEFAULT__FAIRNESS", "tenant"),
                    ("PROSAAS__QUEUES__DEFAULT__TENANT_WEIGHTS", r#"{"a b": 2}"#),
                ],
                "not a valid tenant",
            ),
        ] {
            let e = Settings::load(None, &env(&bad)).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn rate_limits_parse_and_refuse_what_cannot_work() {
        let s = Settings::load(
            None,
            &env(&[(
                "PROSAAS__RATE_LIMITS",
                r#"[{"tenant": "*", "rate": "20/s", "burst": 5}, {"job_type": "x", "rate": "3/m"}]"#,
            )]),
        )
        .unwrap();
        assert_eq!(s.rate_limits[0].interval_ms(), Some(50.0));
        assert_eq!(s.rate_limits[0].label(), "tenant-*");
        assert_eq!(s.rate_limits[1].interval_ms(), Some(20_000.0));
        for (bad, says) in [
            (r#"[{"rate": "5/s"}]"#, "set tenant"),
            (r#"[{"tenant": "*", "rate": "5 per s"}]"#, "must be <n>/s"),
            (r#"[{"tenant": "*", "rate": "0/s"}]"#, "must be <n>/s"),
            (r#"[{"tenant": "*", "rate": "5000/s"}]"#, "more than 1000/s"),
            (r#"[{"tenant": "*", "rate": "5/s", "burst": 0}]"#, "burst"),
            (r#"[{"tenant": "a b", "rate": "5/s"}]"#, "valid tenant"),
            (
                r#"[{"tenant": "*", "rate": "5/s"}, {"tenant": "*", "rate": "6/s"}]"#,
                "used twice",
            ),
        ] {
            let e = Settings::load(None, &env(&[("PROSAAS__RATE_LIMITS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(s.worker.queues, ["high", "default", "low"]);
        assert_eq!(s.http.port, 8080);
        assert_eq!(
            s.redis_url(),
            (
                "redis://127.0.0.1:6379".to_string(),
                RedisUrlSource::LocalDefault
            )
        );
    }

    #[test]
    fn environment_overrides_in_order() {
        let s = Settings::load(
            None,
            &env(&[
                ("PROSAAS__WORKER__CONCURRENCY", "32"),
                ("PROSAAS__WORKER__QUEUES", "a,b"),
                ("PROSAAS__REDIS__URL", "redis://10.0.0.1:6379"),
                ("REDIS_URL", "redis://127.0.0.1:7000/3"),
                ("PORT", "9000"),
            ]),
        )
        .unwrap();
        assert_eq!(s.worker.concurrency, 32);
        assert_eq!(s.worker.queues, ["a", "b"]);
        let one = Settings::load(
            None,
            &env(&[
                ("PROSAAS__WORKER__QUEUES", "default"),
                ("PROSAAS__WORKER__BACKOFF_SECS", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(
            one.worker.queues,
            ["default"],
            "a one-element list stays a list"
        );
        assert_eq!(one.worker.backoff_secs, [5]);
        assert_eq!(s.http.port, 9000);
        assert_eq!(
            s.redis_url(),
            (
                "redis://127.0.0.1:7000/3".to_string(),
                RedisUrlSource::Explicit
            )
        );
    }

    #[test]
    fn lists_and_tables_come_from_json_in_the_environment() {
        let s = Settings::load(
            None,
            &env(&[
                (
                    "PROSAAS__EXTERNAL",
                    r#"[{"job_type": "server.jobs.report", "queue": "python"}]"#,
                ),
                ("PROSAAS__WORKER__QUEUES", r#"["default"]"#),
                (
                    "PROSAAS__WORKER__TYPES",
                    r#"{"recording_job": {"max_retries": 5, "backoff_secs": [30, 120]}}"#,
                ),
            ]),
        )
        .unwrap();
        assert_eq!(s.external.len(), 1);
        assert_eq!(s.external[0].queue, "python");
        assert_eq!(s.worker.queues, ["default"]);
        let t = &s.worker.types["recording_job"];
        assert_eq!(t.max_retries, Some(5));
        assert_eq!(t.backoff_secs.as_deref(), Some(&[30, 120][..]));
        let err = format!(
            "{:#}",
            Settings::load(None, &env(&[("PROSAAS__EXTERNAL", "[{oops")])).unwrap_err()
        );
        assert!(err.contains("PROSAAS__EXTERNAL is not valid JSON"), "{err}");
    }

    #[test]
    fn overlay_file_applies_and_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging.toml");
        std::fs::write(&path, "[worker]\nconcurrency = 3\n").unwrap();
        let s = Settings::load(Some(&path), &env(&[])).unwrap();
        assert_eq!(s.worker.concurrency, 3);
        let err = Settings::load(Some(&dir.path().join("nope.toml")), &env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("does not exist"));
    }

    #[test]
    fn external_types_keep_their_queue_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.toml");
        std::fs::write(
            &path,
            "external = [{ job_type = \"legacy.report\", queue = \"python\" }]\n\
             [[scheduler.entries]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\njob_type = \"legacy.report\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Settings::load(Some(&path), &env(&[])).unwrap_err());
        assert!(
            err.contains("scheduler.entries.nightly") && err.contains("queue = \"python\""),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Settings::load(
                Some(&path),
                &env(&[("PROSAAS__WORKER__QUEUES", "default,python")])
            )
            .unwrap_err()
        );
        assert!(err.contains("worker.queues includes python"), "{err}");
        std::fs::write(
            &path,
            "external = [{ job_type = \"legacy.report\", queue = \"python\" }]\n\
             [[scheduler.entries]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\njob_type = \"legacy.report\"\nqueue = \"python\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path), &env(&[])).unwrap();
        assert_eq!(s.route("legacy.report", None).unwrap(), "python");
        assert!(s.route("legacy.report", Some("default")).is_err());
        assert_eq!(s.route("diag.echo", None).unwrap(), "default");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let s = Settings::load(
            None,
            &env(&[
                ("REDIS_URL", "redis://:redispass@127.0.0.1:6379/0"),
                ("INTERNAL_SECRET", "bridgepass"),
                ("INTERNAL_API_TOKEN", "tokenpass"),
                (
                    "PROSAAS__WORKER__HTTP_TARGETS__CRM__URL",
                    "https://crm.example.com",
                ),
                ("PROSAAS__WORKER__HTTP_TARGETS__CRM__SECRET", "hmacpass"),
                ("DASHBOARD_PASSWORD", "dashpass"),
            ]),
        )
        .unwrap();
        let text = format!("{s:?}");
        for secret in [
            "redispass",
            "bridgepass",
            "tokenpass",
            "hmacpass",
            "dashpass",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("crm.example.com"));
    }

    #[test]
    fn the_dashboard_signs_in_with_its_password_else_the_api_token() {
        let token_only = Settings::load(None, &env(&[("INTERNAL_API_TOKEN", "t")])).unwrap();
        assert_eq!(token_only.dashboard.secret(&token_only.api), Some("t"));
        let both = Settings::load(
            None,
            &env(&[("INTERNAL_API_TOKEN", "t"), ("DASHBOARD_PASSWORD", "p")]),
        )
        .unwrap();
        assert_eq!(both.dashboard.secret(&both.api), Some("p"));
        let neither = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(neither.dashboard.secret(&neither.api), None);
    }

    #[test]
    fn invalid_settings_name_the_key() {
        let cases = [
            ("PROSAAS__WORKER__CONCURRENCY", "0", "worker.concurrency"),
            ("REDIS_URL", "http://nope", "redis.url"),
            (
                "PROSAAS__SCHEDULER__LOCK_TTL_MS",
                "5000",
                "scheduler.lock_ttl_ms",
            ),
            ("PORT", "eighty", "PORT"),
            ("PROSAAS__WORKER__QUEUES", "ok,bad queue", "worker.queues"),
            ("PROSAAS__LOG__FORMAT", "xml", "xml"),
            (
                "PROSAAS__DASHBOARD__SESSION_TTL_SECS",
                "10",
                "dashboard.session_ttl_secs",
            ),
            (
                "PROSAAS__DASHBOARD__LOGIN_FAILURES_PER_MINUTE",
                "0",
                "dashboard.login_failures_per_minute",
            ),
        ];
        for (k, v, needle) in cases {
            let err = format!("{:#}", Settings::load(None, &env(&[(k, v)])).unwrap_err());
            assert!(err.contains(needle), "{k}={v}: {err}");
            assert!(!err.contains('\n'), "{k}={v}: multi-line error: {err}");
        }
    }
}
