//! The Redis settings that decide whether jobs survive and what they cost, read at startup and
//! logged by every role (`App::run`).
//!
//! - An evicting `maxmemory-policy` lets Redis drop queued jobs, registries and de-duplication
//!   keys once it reaches `maxmemory`; a provider's retry would then run twice. Sidekiq and
//!   BullMQ warn about it the same way.
//! - Redis reserves `stream-node-max-bytes` (up to 4,096 bytes; 0 means that too) for every new
//!   stream since redis/redis#6281, and every finished job gets one for its RQ result: measured
//!   on Redis 7.0 (`scripts/capacity.py`), a retained finished job takes 5.2 KB at the default
//!   against 1.6 KB at 512, a failed one 5.9 KB against 2.3 KB (docs/BENCHMARKS.md).

use std::collections::HashMap;

use super::{JobError, JobStore};

/// Above this, the per-result reservation is worth a word (512 is what docker-compose.yml sets).
const STREAM_NODE_ADVISE_ABOVE: u64 = 1024;

/// The settings read, each `None` when Redis did not report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisConfig {
    pub maxmemory: Option<u64>,
    pub maxmemory_policy: Option<String>,
    pub stream_node_max_bytes: Option<u64>,
}

/// One thing an operator should change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advice {
    /// Jobs can be lost.
    Risk(String),
    /// Redis spends more memory or CPU than it needs to.
    Cost(String),
}

impl RedisConfig {
    /// What an operator should change, one sentence each; empty when nothing.
    pub fn advice(&self) -> Vec<Advice> {
        let mut advice = Vec::new();
        if let Some(policy) = &self.maxmemory_policy
            && policy != "noeviction"
        {
            let limit = match self.maxmemory {
                Some(0) | None => "not set now".to_owned(),
                Some(n) => format!("{n} bytes"),
            };
            advice.push(Advice::Risk(format!(
                "Redis maxmemory-policy is {policy}: once Redis reaches maxmemory ({limit}) it \
                 evicts keys, and queued jobs, registries and de-duplication keys can vanish; \
                 set maxmemory-policy noeviction"
            )));
        }
        if let Some(bytes) = self.stream_node_max_bytes
            && (bytes == 0 || bytes > STREAM_NODE_ADVISE_ABOVE)
        {
            advice.push(Advice::Cost(format!(
                "Redis stream-node-max-bytes is {bytes}: Redis reserves up to 4096 bytes of it \
                 for every new stream, so each retained finished job (hash, RQ result, registry \
                 entry) takes about 5.2 KB against 1.6 KB at 512, about 360 MB more per 100,000 \
                 jobs kept by result_ttl or failure_ttl; consider CONFIG SET \
                 stream-node-max-bytes 512"
            )));
        }
        advice
    }
}

impl JobStore {
    /// Reads [`RedisConfig`] with `CONFIG GET` (one round trip). Managed Redis services may
    /// refuse the command; that is an error here, and the caller only notes it.
    pub async fn redis_config(&self) -> Result<RedisConfig, JobError> {
        let mut pipe = redis::pipe();
        // One name per CONFIG GET: several in one call need Redis 7.
        for name in ["maxmemory", "maxmemory-policy", "stream-node-max-bytes"] {
            pipe.cmd("CONFIG").arg("GET").arg(name);
        }
        let replies: Vec<HashMap<String, String>> =
            pipe.query_async(&mut self.conn().await?).await?;
        let get = |name: &str| replies.iter().find_map(|m| m.get(name)).cloned();
        let number = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        Ok(RedisConfig {
            maxmemory: number("maxmemory"),
            maxmemory_policy: get("maxmemory-policy"),
            stream_node_max_bytes: number("stream-node-max-bytes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(policy: &str, maxmemory: u64, stream: u64) -> RedisConfig {
        RedisConfig {
            maxmemory: Some(maxmemory),
            maxmemory_policy: Some(policy.into()),
            stream_node_max_bytes: Some(stream),
        }
    }

    #[test]
    fn a_safe_lean_configuration_needs_no_advice() {
        assert!(config("noeviction", 0, 512).advice().is_empty());
        assert!(config("noeviction", 1 << 30, 1024).advice().is_empty());
        assert!(
            RedisConfig::default().advice().is_empty(),
            "nothing read, nothing said"
        );
    }

    fn only(mut advice: Vec<Advice>) -> Advice {
        assert_eq!(advice.len(), 1, "{advice:?}");
        advice.remove(0)
    }

    #[test]
    fn every_evicting_policy_is_a_risk_named_with_the_limit() {
        for policy in [
            "allkeys-lru",
            "volatile-lru",
            "allkeys-random",
            "volatile-ttl",
        ] {
            let Advice::Risk(text) = only(config(policy, 1 << 30, 512).advice()) else {
                panic!("{policy}: not a risk");
            };
            assert!(text.contains(policy), "{text}");
            assert!(text.contains("1073741824 bytes"), "{text}");
            assert!(text.contains("noeviction"), "{text}");
        }
        let Advice::Risk(text) = only(config("allkeys-lru", 0, 512).advice()) else {
            panic!("not a risk");
        };
        assert!(text.contains("not set now"), "{text}");
    }

    #[test]
    fn a_large_or_unlimited_stream_node_is_a_cost() {
        for bytes in [0, 1025, 4096] {
            let Advice::Cost(text) = only(config("noeviction", 0, bytes).advice()) else {
                panic!("{bytes}: not a cost");
            };
            assert!(
                text.contains(&format!("stream-node-max-bytes is {bytes}")),
                "{text}"
            );
        }
        assert_eq!(config("allkeys-lru", 0, 4096).advice().len(), 2);
    }
}
