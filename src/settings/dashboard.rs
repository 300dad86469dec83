//! `[dashboard]`: how operators sign in to `/dashboard`.

use std::num::NonZeroU32;

use anyhow::bail;
use serde::Deserialize;

use super::api::ApiSettings;

/// The operator dashboard (`/dashboard` on the api and all roles).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSettings {
    /// Signs operators in instead of `INTERNAL_API_TOKEN` when set. Env: `DASHBOARD_PASSWORD`.
    pub password: String,
    /// How long a sign-in lasts.
    pub session_ttl_secs: u64,
    /// Failed sign-ins one client address may make per minute before it gets 429s.
    pub login_failures_per_minute: NonZeroU32,
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

    pub(super) fn check(&self) -> anyhow::Result<()> {
        if !(60..=30 * 86_400).contains(&self.session_ttl_secs) {
            bail!("dashboard.session_ttl_secs must be 60 to 2592000 seconds (30 days)");
        }
        Ok(())
    }
}
