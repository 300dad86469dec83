//! HTTP targets: a job type whose work is done by the business application over HTTP.
//!
//! The worker POSTs a JSON body to the configured URL with
//! `X-Prosaas-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, the job
//! id (`X-Prosaas-Job-Id`, also as `Idempotency-Key`), its type and attempt. 2xx is success (a
//! JSON answer becomes the job's result); 408, 429, 5xx, connection errors and timeouts are
//! retried; any other 4xx is a permanent failure.

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::input::{HandlerError, HandlerResult, JobInput};
use crate::settings::HttpTargetSettings;

/// One configured target.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub url: String,
    secret: String,
    pub timeout: Duration,
}

/// The configured targets and the one HTTP client they share.
#[derive(Clone, Debug)]
pub struct Delivery {
    client: reqwest::Client,
    targets: HashMap<String, HttpTarget>,
}

/// `t=<unix>,v1=<hex>` for `body` signed at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        crate::hex::hex(&mac(secret, timestamp, body))
    )
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    keyed(secret, timestamp, body)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// The MAC over `<timestamp>.<body>`, as the receiving application computes it.
fn keyed(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let t = timestamp.to_string();
    crate::mac::hmac(secret.as_bytes(), &[t.as_bytes(), b".", body])
}

/// Checks a signature header as the receiving application should: the MAC in constant time, and
/// the timestamp within `tolerance` of `now` (replay protection).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: Duration) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if now.abs_diff(t) > tolerance.as_secs() {
        return false;
    }
    let Ok(expected) = (0..v1.len())
        .step_by(2)
        .map(|i| {
            v1.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
        })
        .collect::<Result<Vec<u8>, ()>>()
    else {
        return false;
    };
    keyed(secret, t, body).verify_slice(&expected).is_ok()
}

impl Delivery {
    pub fn new(targets: &HashMap<String, HttpTargetSettings>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("prosaas/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            targets: targets
                .iter()
                .map(|(name, t)| {
                    (
                        name.clone(),
                        HttpTarget {
                            url: t.url.clone(),
                            secret: t.secret.clone(),
                            timeout: t.timeout_ms.get(),
                        },
                    )
                })
                .collect(),
        })
    }

    /// The shared HTTP client (downloads reuse its connection pool).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn target(&self, job_type: &str) -> Option<&HttpTarget> {
        self.targets.get(job_type)
    }

    /// POSTs `body` to the target configured for `input.handler`, if there is one.
    pub async fn deliver_if_configured(
        &self,
        input: &JobInput,
        body: &Value,
    ) -> Option<HandlerResult> {
        let target = self.target(&input.handler)?;
        Some(self.post(target, input, body).await)
    }

    /// POSTs `body`, signed, and maps the answer to an outcome.
    pub async fn post(&self, target: &HttpTarget, input: &JobInput, body: &Value) -> HandlerResult {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| HandlerError::Permanent(format!("cannot encode the request body: {e}")))?;
        let now = chrono::Utc::now().timestamp();
        let response = self
            .client
            .post(&target.url)
            .timeout(target.timeout)
            .header("content-type", "application/json")
            .header("x-prosaas-signature", sign(&target.secret, now, &bytes))
            .header("x-prosaas-job-id", &input.id)
            .header("idempotency-key", &input.id)
            .header("x-prosaas-job-type", &input.handler)
            .header("x-prosaas-attempt", input.attempt.to_string())
            .body(bytes)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(HandlerError::Retryable(format!(
                    "{} did not answer within {:?}",
                    target.url, target.timeout
                )));
            }
            Err(e) => {
                return Err(HandlerError::Retryable(format!(
                    "cannot reach {}: {e}",
                    target.url
                )));
            }
        };
        let status = response.status();
        // A body is read for the result or the error message; a slow body counts as a timeout.
        let text = response.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(300).collect();
        if status.is_success() {
            let result = serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|_| json!({"status": status.as_u16()}));
            Ok(Some(result))
        } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(HandlerError::Retryable(format!(
                "{} answered {status}: {snippet}",
                target.url
            )))
        } else {
            Err(HandlerError::Permanent(format!(
                "{} answered {status}: {snippet}",
                target.url
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let body = br#"{"a":1}"#;
        let header = sign("s3cret", 1_700_000_000, body);
        let ok =
            |h: &str, b: &[u8], now: i64| verify("s3cret", h, b, now, Duration::from_secs(300));
        assert!(ok(&header, body, 1_700_000_100));
        assert!(!ok(&header, br#"{"a":2}"#, 1_700_000_100), "changed body");
        assert!(!ok(&header, body, 1_700_001_000), "too old: replay");
        assert!(!verify(
            "other",
            &header,
            body,
            1_700_000_000,
            Duration::from_secs(300)
        ));
        assert!(!ok("t=1700000000,v1=zz", body, 1_700_000_000));
        assert!(!ok("garbage", body, 1_700_000_000));
        // The MAC is HMAC-SHA256 over "<t>.<body>", as documented.
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
    }
}
