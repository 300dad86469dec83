//! A test client for the HTTP API of a running process: each call sends the credentials its
//! route needs and returns the status with the JSON body (`Null` when there is none), so tests
//! read as requests and answers rather than request-building chains. Every answer is checked
//! against the OpenAPI document the code generates (`support::schema`).

use reqwest::StatusCode;
use serde_json::Value;

use super::ProsaasProcess;
use super::process::{TEST_PUBLIC_URL, TEST_SECRET, TEST_TOKEN, TEST_TWILIO_TOKEN};

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
        Self::checked(request).await.unwrap()
    }

    /// Sends, checks the answer against its documented schema, and returns it; `None` when the
    /// request could not be sent (the process is not listening).
    async fn checked(request: reqwest::RequestBuilder) -> Option<Answer> {
        let (client, request) = request.build_split();
        let request = request.unwrap();
        let (method, path) = (
            request.method().to_string(),
            request.url().path().to_owned(),
        );
        let r = client.execute(request).await.ok()?;
        let status = r.status();
        let content_type = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = r.bytes().await.unwrap_or_default();
        super::schema::check_answer(&method, &path, status.as_u16(), &content_type, &body);
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
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
        Self::checked(self.http.get(self.url(path)).bearer_auth(TEST_TOKEN)).await
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

    /// A form posted to `path` as Twilio would, signed for the public URL.
    pub async fn twilio(&self, path: &str, params: &[(&str, &str)]) -> Answer {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let url = format!("{TEST_PUBLIC_URL}{path}");
        let signature = prosaas::webhooks::twilio::signature(TEST_TWILIO_TOKEN, &url, &owned);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        Self::answer(
            self.http
                .post(self.url(path))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("X-Twilio-Signature", signature)
                .body(body),
        )
        .await
    }

    /// `DELETE` with the internal API token.
    pub async fn delete(&self, path: &str) -> Answer {
        Self::answer(self.http.delete(self.url(path)).bearer_auth(TEST_TOKEN)).await
    }
}
