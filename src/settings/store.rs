//! `[redis]`: how every role reaches the store: where Redis is, the key prefix RQ shares,
//! timeouts, Sentinel, the local server.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::queues::{Fairness, QueueSettings};
use super::units::{Millis, PositiveMillis};
use crate::jobs::{FairQueue, SentinelConfig, StoreConfig, validate_url};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    pub connect_timeout_ms: PositiveMillis,
    pub response_timeout_ms: PositiveMillis,
    pub ack_replicas: u32,
    pub ack_timeout_ms: Millis,
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

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRedisSettings {
    pub port: u16,
    pub dir: PathBuf,
}

/// Where the Redis URL came from: it decides whether the `all` role may start a local server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisUrlSource {
    /// Set by `REDIS_URL`, `PROSAAS__REDIS__URL` or a config file: used as given, never replaced.
    Explicit,
    /// Not set: the local default address `redis://127.0.0.1:<redis.local.port>`.
    LocalDefault,
}

impl RedisSettings {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        if !self.url.is_empty() {
            validate_url(&self.url).context("redis.url")?;
        }
        if self.key_prefix.is_empty()
            || !self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:{}-".contains(&b))
        {
            bail!(
                "redis.key_prefix must be non-empty and use only [A-Za-z0-9_.:{{}}-], as RQ_KEY_PREFIX"
            );
        }
        let s = &self.sentinel;
        if !s.addrs.is_empty() && s.master.is_empty() {
            bail!("redis.sentinel.master must name the service the sentinels monitor");
        }
        if s.addrs.is_empty() && !s.master.is_empty() && !crate::jobs::is_sentinel_url(&self.url) {
            bail!("redis.sentinel.master is set but redis.sentinel.addrs is empty");
        }
        if self.ack_replicas > 0 && self.ack_timeout_ms.get().is_zero() {
            bail!("redis.ack_timeout_ms must be positive when redis.ack_replicas is set");
        }
        Ok(())
    }

    /// The Redis URL to use and where it came from.
    pub fn url(&self) -> (String, RedisUrlSource) {
        if self.url.is_empty() {
            (
                format!("redis://127.0.0.1:{}", self.local.port),
                RedisUrlSource::LocalDefault,
            )
        } else {
            (self.url.clone(), RedisUrlSource::Explicit)
        }
    }

    /// How the jobs module reaches Redis; built once, by `Settings::load`.
    pub(super) fn store_config(
        &self,
        queues: &HashMap<String, QueueSettings>,
        record_current_job: bool,
    ) -> StoreConfig {
        StoreConfig {
            url: self.url().0,
            sentinel: self.sentinel_config(),
            ack_replicas: self.ack_replicas,
            ack_timeout: self.ack_timeout_ms.get(),
            key_prefix: self.key_prefix.clone(),
            connect_timeout: self.connect_timeout_ms.get(),
            response_timeout: self.response_timeout_ms.get(),
            fair_queues: queues
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
            record_current_job,
        }
    }

    /// The Sentinel service, from `[redis.sentinel]` or the `redis+sentinel://` URL (whose
    /// sentinel credentials come from `[redis.sentinel]`); `None` without Sentinel.
    fn sentinel_config(&self) -> Option<SentinelConfig> {
        let s = &self.sentinel;
        let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let mut config = if s.addrs.is_empty() {
            SentinelConfig::from_url(&self.url).ok()?
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
