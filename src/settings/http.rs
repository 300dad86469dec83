//! `[http]`: the listeners, their body limits and budget, connection limits and timeouts.

use anyhow::bail;
use serde::Deserialize;

use super::units::PositiveMillis;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    pub body_limit_bytes: usize,
    pub body_budget_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout_ms: PositiveMillis,
    pub idle_timeout_ms: PositiveMillis,
    pub ops_port: u16,
    pub ops_max_connections: usize,
}

impl HttpSettings {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        if self.body_limit_bytes == 0 || self.body_limit_bytes > 1 << 30 {
            bail!("http.body_limit_bytes must be between 1 and 1073741824 (1 GiB)");
        }
        if self.body_budget_bytes < self.body_limit_bytes {
            bail!(
                "http.body_budget_bytes ({}) must be at least http.body_limit_bytes ({}), or no body of the largest size could ever be read",
                self.body_budget_bytes,
                self.body_limit_bytes
            );
        }
        if self.max_connections < 4 || self.ops_max_connections == 0 {
            bail!("http.max_connections must be at least 4 and http.ops_max_connections positive");
        }
        if self.ops_port != 0 && self.ops_port == self.port {
            bail!("http.ops_port must differ from http.port (0 turns the ops listener off)");
        }
        Ok(())
    }
}
