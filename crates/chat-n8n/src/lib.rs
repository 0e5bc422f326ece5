//! The HTTP client side of the n8n contract.
//!
//! [`N8nClient`] is the [`Agent`] every deployment uses to hand a user message to n8n: it
//! POSTs the exact signed body with `X-Chat-Timestamp` / `X-Chat-Signature` (and the
//! configured `CHAT_N8N_AUTH_HEADER`, marked sensitive so it is never printed). n8n must
//! answer with a status within the dispatch timeout; any non-2xx answer, connection error or
//! timeout is a failure for the dispatcher to retry. A 2xx body is handed over as it arrives
//! (n8n may stream its answer), bounded by the stream timeout counted from the request, with
//! an empty chunk after each 50 ms of silence so the service can push what it coalesced. The
//! client (and its TLS roots) is built once and reused.

// The identity provider's key set for app JWTs (`CHAT_AUTH_JWKS_URL`), fetched over HTTPS.
pub mod jwks;

use async_trait::async_trait;
use chat_core::config::AuthHeader;
use chat_core::ports::{Agent, AgentBody, AgentError, SignedRequest};
use chat_core::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use reqwest::header::{HeaderName, HeaderValue};
use std::time::Duration;
use tokio::time::Instant;

/// How long the body may be silent before an empty chunk is yielded.
const IDLE_TICK: Duration = Duration::from_millis(50);

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("CHAT_N8N_AUTH_HEADER is not a valid header")]
    AuthHeader,
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Posts signed requests to one n8n webhook URL.
#[derive(Clone, Debug)]
pub struct N8nClient {
    http: reqwest::Client,
    url: String,
    /// Until n8n's status and headers.
    timeout: Duration,
    /// Until the body's end, counted from the request.
    body_timeout: Duration,
    auth: Option<(HeaderName, HeaderValue)>,
}

impl N8nClient {
    /// A client for `url` that waits `timeout` for n8n's status and the body's end until
    /// `timeout` (the same: a client without streamed answers).
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, ClientError> {
        Self::with_options(url, timeout, timeout, None)
    }

    /// A client for `url`: n8n's status within `timeout`, its whole body within
    /// `body_timeout` of the request (at least `timeout`), `auth` sent with every call.
    pub fn with_options(
        url: impl Into<String>,
        timeout: Duration,
        body_timeout: Duration,
        auth: Option<&AuthHeader>,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // Servers close idle keep-alive connections (Node, so n8n, after 5 s; chat-local
            // after its header timeout): reusing one they are closing fails a call. Let idle
            // connections go first.
            .pool_idle_timeout(Duration::from_secs(4))
            .user_agent(concat!("chat-backend/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let auth = auth
            .map(|a| {
                let name = HeaderName::from_bytes(a.name.as_bytes()).ok()?;
                let mut value = HeaderValue::from_str(a.value.expose()).ok()?;
                value.set_sensitive(true);
                Some((name, value))
            })
            .map(|a| a.ok_or(ClientError::AuthHeader))
            .transpose()?;
        Ok(Self {
            http,
            url: url.into(),
            timeout,
            body_timeout: body_timeout.max(timeout),
            auth,
        })
    }

    /// The shared HTTP client, for other signed calls (the dev bot's callbacks).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

#[async_trait]
impl Agent for N8nClient {
    async fn deliver(&self, request: SignedRequest) -> Result<AgentBody, AgentError> {
        let started = Instant::now();
        let mut call = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, request.timestamp)
            .header(SIGNATURE_HEADER, request.signature);
        if let Some((name, value)) = &self.auth {
            call = call.header(name.clone(), value.clone());
        }
        let response = tokio::time::timeout(self.timeout, call.body(request.body).send())
            .await
            .map_err(|_| AgentError("timed out waiting for n8n's answer".into()))?
            // reqwest errors name the URL, which may carry a token in its query: drop it.
            .map_err(|e| AgentError(describe(&e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(AgentError(format!("n8n answered {status}")));
        }
        Ok(body(
            response,
            started + self.body_timeout,
            self.body_timeout,
        ))
    }
}

/// The response body as chunks, an empty one after each [`IDLE_TICK`] of silence, ending
/// with an error at `deadline`.
fn body(response: reqwest::Response, deadline: Instant, limit: Duration) -> AgentBody {
    let state = Some(response);
    Box::pin(futures_util::stream::unfold(
        state,
        move |state| async move {
            let mut response = state?;
            let wake = (Instant::now() + IDLE_TICK).min(deadline);
            match tokio::time::timeout_at(wake, response.chunk()).await {
                Ok(Ok(Some(bytes))) => Some((Ok(bytes.to_vec()), Some(response))),
                Ok(Ok(None)) => None,
                Ok(Err(e)) => Some((
                    Err(AgentError(format!(
                        "the answer broke off: {}",
                        describe(&e.without_url())
                    ))),
                    None,
                )),
                Err(_) if Instant::now() >= deadline => Some((
                    Err(AgentError(format!(
                        "timed out: the answer did not end within {} ms",
                        limit.as_millis()
                    ))),
                    None,
                )),
                Err(_) => Some((Ok(Vec::new()), Some(response))),
            }
        },
    ))
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
