//! Typed settings, loaded in layers and validated before anything connects.
//!
//! Layers, later wins: `config/default.toml` (compiled in) → an overlay file (`--config FILE`,
//! or `config/$APP_ENV.toml`) → `PROSAAS__SECTION__KEY` variables → the conventional `REDIS_URL`
//! and `PORT`. The environment is passed in as a map so tests never mutate the process's own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use crate::jobs::{StoreConfig, is_valid_queue_name, validate_url};

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub scheduler: SchedulerSettings,
    pub shutdown: ShutdownSettings,
    pub log: LogSettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub local: LocalRedisSettings,
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
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub queues: Vec<String>,
    pub concurrency: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    pub lock_ttl_ms: u64,
    pub renew_interval_ms: u64,
    pub tick_interval_ms: u64,
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
        let prosaas_env: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("PROSAAS__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("PROSAAS")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("worker.queues")
                .try_parsing(true)
                .source(Some(prosaas_env)),
        );
        if let Some(url) = env.get("REDIS_URL").filter(|u| !u.is_empty()) {
            builder = builder.set_override("redis.url", url.as_str())?;
        }
        if let Some(port) = env.get("PORT").filter(|p| !p.is_empty()) {
            let port: u16 = port
                .parse()
                .with_context(|| format!("PORT={port:?} is not a port number"))?;
            builder = builder.set_override("http.port", port)?;
        }
        let settings: Settings = builder
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
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
        if self.http.body_limit_bytes == 0 {
            bail!("http.body_limit_bytes must be positive");
        }
        Ok(())
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
            key_prefix: self.redis.key_prefix.clone(),
            connect_timeout: Duration::from_millis(self.redis.connect_timeout_ms),
            response_timeout: Duration::from_millis(self.redis.response_timeout_ms),
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown.grace_ms)
    }
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
        ];
        for (k, v, needle) in cases {
            let err = format!("{:#}", Settings::load(None, &env(&[(k, v)])).unwrap_err());
            assert!(err.contains(needle), "{k}={v}: {err}");
            assert!(!err.contains('\n'), "{k}={v}: multi-line error: {err}");
        }
    }
}
