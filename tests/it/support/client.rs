//! A test client for the HTTP API of a running process: each call sends the credentials its
//! route needs and returns the status with the JSON body (`Null` when there is none), so tests
//! read as requests and answers rather than request-building chains.

use reqwest::StatusCode;
use serde_json::Value;

use super::ProsaasProcess;
use super::process::{TEST_SECRET, TEST_TOKEN};

pub struct TestApi {
    http: reqwest::Client,
    base: String,
}

/// One answer: the status and the JSON body.
pub type Answer = (StatusCode, Value);

impl TestApi {
    pub fn new(p: &ProsaasProcess) -> Self {
        Self {
            // A bound on every call, so a hung server fails the test instead of stalling it.
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap(),
            base: p.url(""),
        }
    }

    async fn answer(request: reqwest::RequestBuilder) -> Answer {
        let r = request.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The WhatsApp bridge's webhook, with its secret.
    pub async fn webhook(&self, body: &Value) -> Answer {
        Self::answer(
            self.http
                .post(self.url("/webhook/whatsapp/incoming"))
                .header("X-Internal-Secret", TEST_SECRET)
                .json(body),
        )
        .await
    }

    /// `GET` with the internal API token.
    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(self.http.get(self.url(path)).bearer_auth(TEST_TOKEN)).await
    }

    /// `GET` that may fail to connect (the process is still starting or going away).
    pub async fn try_get(&self, path: &str) -> Option<Answer> {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .ok()?;
        let status = r.status();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// The status of an unauthenticated `GET` (probes).
    pub async fn status(&self, path: &str) -> StatusCode {
        self.http.get(self.url(path)).send().await.unwrap().status()
    }

    /// `/metrics` as text, `None` while the process does not answer.
    pub async fn metrics(&self) -> Option<String> {
        let r = self.http.get(self.url("/metrics")).send().await.ok()?;
        r.text().await.ok()
    }

    /// `POST` with the internal API token, and a JSON body when given.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Answer {
        let mut request = self.http.post(self.url(path)).bearer_auth(TEST_TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        Self::answer(request).await
    }

    /// `DELETE` with the internal API token.
    pub async fn delete(&self, path: &str) -> Answer {
        Self::answer(self.http.delete(self.url(path)).bearer_auth(TEST_TOKEN)).await
    }
}
