//! A fake n8n on 127.0.0.1, for tests that need the other end of the n8n contract without a
//! real n8n: it checks our signature on every dispatch, records the payloads (and the
//! `Authorization` header), answers with a status the test sets and a body it sets (nothing,
//! a whole answer, or lines streamed as n8n streams them, maybe never ending), and (when told
//! to) calls the webhook back signed, as the shipped workflow does. The real n8n runs in its
//! own lane (`tests/n8n/run`).

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The fake; cheap to clone (every field is shared with the running server).
#[derive(Clone)]
pub struct FakeN8n {
    /// Every dispatch whose signature checked, in order.
    pub received: Arc<Mutex<Vec<Value>>>,
    /// What it answers (200 unless a test changes it).
    pub status: Arc<Mutex<u16>>,
    /// Whether a 200 is followed by a signed callback to the payload's `callbackUrl`.
    pub reply: Arc<Mutex<bool>>,
    /// Dispatches refused for a bad signature.
    pub bad_signatures: Arc<Mutex<u32>>,
    /// The body of its answers.
    pub answer: Arc<Mutex<Answer>>,
    /// The `Authorization` header of every signed dispatch.
    pub auth: Arc<Mutex<Vec<Option<String>>>>,
    /// Whether its callback downloads the dispatch's attachments (by their `url`, as a
    /// workflow reading them would) and names each with the bytes it got.
    pub fetch_files: Arc<Mutex<bool>>,
    secret: Arc<str>,
}

/// The body the fake answers with.
#[derive(Clone, Debug, Default)]
pub enum Answer {
    /// No body.
    #[default]
    Empty,
    /// This body, all at once.
    Body(Vec<u8>),
    /// These lines (each sent with a newline), one every `gap_ms`; then the body ends, or
    /// with `hang` never does (the connection stays open).
    Stream {
        lines: Vec<String>,
        gap_ms: u64,
        hang: bool,
    },
}

/// The lines n8n streams for an agent writing `tokens`: `begin`, one `item` each, `end`.
pub fn n8n_stream(tokens: &[&str]) -> Vec<String> {
    let meta = json!({"nodeId": "agent-1", "nodeName": "AI Agent", "itemIndex": 0, "runIndex": 0});
    let mut lines = vec![json!({"type": "begin", "metadata": meta}).to_string()];
    lines.extend(
        tokens
            .iter()
            .map(|t| json!({"type": "item", "content": t, "metadata": meta}).to_string()),
    );
    lines.push(json!({"type": "end", "metadata": meta}).to_string());
    lines
}

impl FakeN8n {
    /// Serves on 127.0.0.1:`port` (0: any free port), checking signatures with `secret`;
    /// returns the fake and its URL (`http://127.0.0.1:<port>/webhook/chat`). It replies by
    /// callback until told otherwise.
    pub async fn start_on(port: u16, secret: &str) -> (FakeN8n, String) {
        use axum::routing::post;
        let fake = FakeN8n {
            received: Arc::default(),
            status: Arc::new(Mutex::new(200)),
            reply: Arc::new(Mutex::new(true)),
            bad_signatures: Arc::default(),
            answer: Arc::default(),
            auth: Arc::default(),
            fetch_files: Arc::default(),
            secret: secret.into(),
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("fake n8n binds");
        let url = format!("http://{}/webhook/chat", listener.local_addr().unwrap());
        let f = fake.clone();
        let app = axum::Router::new().route(
            "/webhook/chat",
            post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let f = f.clone();
                    async move { f.handle(headers, body).await }
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    async fn handle(
        &self,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let status = self.status_and_callback(&headers, body).await;
        if !status.is_success() {
            return status.into_response();
        }
        match self.answer.lock().unwrap().clone() {
            Answer::Empty => status.into_response(),
            Answer::Body(b) => (status, b).into_response(),
            Answer::Stream {
                lines,
                gap_ms,
                hang,
            } => {
                let lines = futures_util::StreamExt::then(
                    futures_util::stream::iter(lines),
                    move |l| async move {
                        tokio::time::sleep(std::time::Duration::from_millis(gap_ms)).await;
                        Ok::<_, std::convert::Infallible>(format!("{l}\n"))
                    },
                );
                let body: std::pin::Pin<
                    Box<
                        dyn futures_util::Stream<Item = Result<String, std::convert::Infallible>>
                            + Send,
                    >,
                > = if hang {
                    Box::pin(futures_util::StreamExt::chain(
                        lines,
                        futures_util::stream::pending(),
                    ))
                } else {
                    Box::pin(lines)
                };
                (
                    status,
                    [("content-type", "application/json; charset=utf-8")],
                    axum::body::Body::from_stream(body),
                )
                    .into_response()
            }
        }
    }

    async fn status_and_callback(
        &self,
        headers: &axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        if chat_core::signature::verify(
            self.secret.as_bytes(),
            h("x-chat-timestamp"),
            h("x-chat-signature"),
            &body,
            unix_now(),
        )
        .is_err()
        {
            *self.bad_signatures.lock().unwrap() += 1;
            return axum::http::StatusCode::UNAUTHORIZED;
        }
        let v: Value = serde_json::from_slice(&body).expect("dispatch body is JSON");
        self.received.lock().unwrap().push(v.clone());
        self.auth
            .lock()
            .unwrap()
            .push(h("authorization").map(str::to_string));
        let status = *self.status.lock().unwrap();
        if status == 200 && *self.reply.lock().unwrap() {
            let secret = self.secret.clone();
            let fetch = *self.fetch_files.lock().unwrap();
            tokio::spawn(async move {
                let mut content = format!("fake n8n got: {}", v["content"].as_str().unwrap());
                if fetch {
                    for file in v["attachments"].as_array().into_iter().flatten() {
                        let name = file["name"].as_str().unwrap_or("?");
                        let got = match reqwest::get(file["url"].as_str().unwrap_or("")).await {
                            Ok(r) if r.status().is_success() => r
                                .bytes()
                                .await
                                .map_or("unreadable".into(), |b| format!("{} bytes", b.len())),
                            Ok(r) => format!("HTTP {}", r.status().as_u16()),
                            Err(_) => "unreachable".into(),
                        };
                        content.push_str(&format!(" [{name}: {got}]"));
                    }
                }
                let reply = json!({
                    "sessionId": v["sessionId"],
                    "replyTo": v["messageId"],
                    "eventId": format!("evt-{}", v["messageId"].as_str().unwrap()),
                    "content": content,
                });
                post_signed(
                    &reqwest::Client::new(),
                    v["callbackUrl"].as_str().unwrap(),
                    &reply.to_string(),
                    &secret,
                    unix_now(),
                )
                .await;
            });
        }
        axum::http::StatusCode::from_u16(status).unwrap()
    }

    /// How many signed dispatches arrived.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// POSTs `body` to `url` signed with `secret` at `timestamp`, as n8n calls the webhook;
/// returns the status and the JSON answer (`Null` if not JSON).
pub async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    secret: &str,
    timestamp: i64,
) -> (u16, Value) {
    let ts = timestamp.to_string();
    let sig = chat_core::signature::sign(secret.as_bytes(), &ts, body.as_bytes());
    let res = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-chat-timestamp", ts)
        .header("x-chat-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .expect("webhook reachable");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
