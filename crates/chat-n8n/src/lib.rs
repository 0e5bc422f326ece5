//! The HTTP client side of the n8n contract.
//!
//! [`N8nClient`] is the [`Agent`] every deployment uses to hand a user message to n8n: it
//! POSTs the exact signed body with `X-Chat-Timestamp` / `X-Chat-Signature`, bounded by the
//! dispatch timeout. Any non-2xx answer, connection error or timeout is a failure for the
//! dispatcher to retry. The client (and its TLS roots) is built once and reused.

// The identity provider's key set for app JWTs (`CHAT_AUTH_JWKS_URL`), fetched over HTTPS.
pub mod jwks;

use async_trait::async_trait;
use chat_core::ports::{Agent, AgentError, SignedRequest};
use chat_core::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use std::time::Duration;

/// Posts signed requests to one n8n webhook URL.
#[derive(Clone, Debug)]
pub struct N8nClient {
    http: reqwest::Client,
    url: String,
}

impl N8nClient {
    /// A client for `url` whose every call gives up after `timeout`.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // Servers close idle keep-alive connections (Node, so n8n, after 5 s; chat-local
            // after its header timeout): reusing one they are closing fails a call. Let idle
            // connections go first.
            .pool_idle_timeout(Duration::from_secs(4))
            .user_agent(concat!("chat-backend/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            url: url.into(),
        })
    }

    /// The shared HTTP client, for other signed calls (the dev bot's callbacks).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

#[async_trait]
impl Agent for N8nClient {
    async fn deliver(&self, request: SignedRequest) -> Result<(), AgentError> {
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, request.timestamp)
            .header(SIGNATURE_HEADER, request.signature)
            .body(request.body)
            .send()
            .await
            // reqwest errors name the URL, which may carry a token in its query: drop it.
            .map_err(|e| AgentError(describe(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(AgentError(format!("n8n answered {status}")))
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        e.to_string()
    }
}
