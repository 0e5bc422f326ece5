//! The built-in dev bot: a stand-in for n8n when `CHAT_N8N_WEBHOOK_URL` is unset.
//!
//! It is reached exactly as n8n would be: `dispatch` POSTs the signed payload to
//! `/dev/n8n` on this same server over HTTP; the bot verifies the signature, answers 200, then
//! POSTs a signed reply to the payload's `callbackUrl` (our `/webhook`) with `replyTo` and an
//! `eventId`. So the whole production path runs locally, both signatures included.
//!
//! A callback answered 429 or 5xx (or not at all) is retried with backoff, honouring
//! `Retry-After`, as the shipped n8n workflow does.
//!
//! The reply contains the user's text verbatim. A message starting with `/<type>` (for
//! example `/confirmation Book it?`) gets a reply of that type, to try the widget's rendering.

use chat_core::config::Secret;
use chat_core::model::MessageType;
use chat_core::signature;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// The dev bot's HTTP side.
#[derive(Clone)]
pub struct DevBot {
    secret: Secret,
    http: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dispatch {
    session_id: String,
    message_id: String,
    content: String,
    callback_url: String,
}

impl DevBot {
    pub fn new(secret: Secret, http: reqwest::Client) -> Self {
        Self { secret, http }
    }

    /// Handles one signed dispatch; returns the HTTP status to answer.
    pub fn receive(&self, timestamp: Option<&str>, sig: Option<&str>, body: &[u8]) -> u16 {
        let now = chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000;
        if signature::verify(self.secret.expose().as_bytes(), timestamp, sig, body, now).is_err() {
            tracing::warn!("dev bot: rejected a request with a bad signature");
            return 401;
        }
        let Ok(d) = serde_json::from_slice::<Dispatch>(body) else {
            return 400;
        };
        let bot = self.clone();
        tokio::spawn(async move { bot.reply(d).await });
        200
    }

    async fn reply(&self, d: Dispatch) {
        let (kind, text) = match d.content.strip_prefix('/').and_then(|r| r.split_once(' ')) {
            Some((t, rest)) if MessageType::parse(t).is_some() => (t.to_string(), rest.to_string()),
            _ => ("text".to_string(), d.content.clone()),
        };
        let body = json!({
            "sessionId": d.session_id,
            "replyTo": d.message_id,
            "eventId": format!("devbot-{}", d.message_id),
            "type": kind,
            "content": format!("You said: {text}"),
            "data": { "bot": "chat-local dev bot" },
        })
        .to_string();
        for attempt in 1..=CALLBACK_ATTEMPTS {
            let ts = (chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000)
                .to_string();
            let sig = signature::sign(self.secret.expose().as_bytes(), &ts, body.as_bytes());
            let sent = self
                .http
                .post(&d.callback_url)
                .header("content-type", "application/json")
                .header(signature::TIMESTAMP_HEADER, &ts)
                .header(signature::SIGNATURE_HEADER, sig)
                .body(body.clone())
                .send()
                .await;
            let wait = match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    tracing::warn!(
                        status = r.status().as_u16(),
                        attempt,
                        "dev bot: callback refused for now; will retry"
                    );
                    retry_after(&r).unwrap_or_else(|| backoff(attempt))
                }
                Ok(r) => {
                    // Another 4xx will not change by retrying.
                    tracing::warn!(
                        status = r.status().as_u16(),
                        "dev bot: callback refused; giving up"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e.without_url(), attempt, "dev bot: callback failed; will retry");
                    backoff(attempt)
                }
            };
            if attempt < CALLBACK_ATTEMPTS {
                tokio::time::sleep(wait.min(MAX_WAIT)).await;
            }
        }
        tracing::warn!(
            attempts = CALLBACK_ATTEMPTS,
            "dev bot: gave up on a callback; the message's reply deadline will tell the user"
        );
    }
}

/// Callback attempts before the dev bot gives up, and the longest wait between two.
const CALLBACK_ATTEMPTS: u32 = 8;
const MAX_WAIT: Duration = Duration::from_secs(30);

/// 250 ms, doubled each attempt, at most 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.saturating_sub(1).min(5))
}

/// The server's `Retry-After` in seconds (the only form this server sends).
fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = r
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    /// A callback endpoint that answers 429 (`Retry-After: 1`), then 503, then 200, and
    /// records when each signed call came.
    async fn flaky_webhook() -> (String, Arc<Mutex<Vec<(Instant, bool)>>>) {
        let calls: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
        let seen = calls.clone();
        let app = axum::Router::new().route(
            "/webhook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let seen = seen.clone();
                    async move {
                        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                        let now =
                            chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000;
                        let signed = signature::verify(
                            b"s3cret",
                            h(signature::TIMESTAMP_HEADER),
                            h(signature::SIGNATURE_HEADER),
                            &body,
                            now,
                        )
                        .is_ok();
                        let mut calls = seen.lock().unwrap();
                        calls.push((Instant::now(), signed));
                        match calls.len() {
                            1 => (
                                axum::http::StatusCode::TOO_MANY_REQUESTS,
                                [("retry-after", "1")],
                            )
                                .into_response(),
                            2 => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
                            _ => axum::http::StatusCode::OK.into_response(),
                        }
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, calls)
    }

    use axum::response::IntoResponse;

    #[tokio::test]
    async fn a_refused_callback_is_retried_honouring_retry_after() {
        let (url, calls) = flaky_webhook().await;
        let bot = DevBot::new(Secret::new("s3cret"), reqwest::Client::new());
        bot.reply(Dispatch {
            session_id: "01HZZZZZZZZZZZZZZZZZZZZZZZ".into(),
            message_id: "01HZZZZZZZZZZZZZZZZZZZZZZY".into(),
            content: "hi".into(),
            callback_url: url,
        })
        .await;
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3, "429, 503, then 200");
        assert!(
            calls.iter().all(|(_, signed)| *signed),
            "every attempt signed afresh"
        );
        assert!(
            calls[1].0 - calls[0].0 >= Duration::from_secs(1),
            "the second attempt waited for Retry-After"
        );
    }
}
