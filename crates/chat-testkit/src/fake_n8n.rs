//! A fake n8n on 127.0.0.1, for tests that need the other end of the n8n contract without a
//! real n8n: it checks our signature on every dispatch, records the payloads, answers with a
//! status the test sets, and (when told to) calls the webhook back signed, as the shipped
//! workflow does. The real n8n runs in its own lane (`tests/n8n/run`).

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
    secret: Arc<str>,
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
        let status = *self.status.lock().unwrap();
        if status == 200 && *self.reply.lock().unwrap() {
            let secret = self.secret.clone();
            tokio::spawn(async move {
                let reply = json!({
                    "sessionId": v["sessionId"],
                    "replyTo": v["messageId"],
                    "eventId": format!("evt-{}", v["messageId"].as_str().unwrap()),
                    "content": format!("fake n8n got: {}", v["content"].as_str().unwrap()),
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
