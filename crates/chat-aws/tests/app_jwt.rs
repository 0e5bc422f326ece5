//! App JWTs through the `session` Lambda handler: the App built from a Lambda environment with
//! `CHAT_AUTH_JWKS_URL` (a JWKS the test serves on 127.0.0.1) opens user sessions for RS256
//! tokens of the sample event, without fetching anything at cold start, and answers 503 when
//! the JWKS is down. Storage is the emulator, as in the other handler tests.

#[path = "../../chat-core/tests/support/jwt_keys.rs"]
mod jwt_keys;
mod world;

use jwt_keys::TestKey;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use world::*;

/// A JWKS on 127.0.0.1 that counts requests and answers 500 while `down`.
#[derive(Default)]
struct Idp {
    down: AtomicBool,
    hits: AtomicU32,
}

async fn idp(doc: String) -> (Arc<Idp>, String) {
    let idp = Arc::new(Idp::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let i = idp.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (i, doc) = (i.clone(), doc.clone());
            async move {
                i.hits.fetch_add(1, Ordering::SeqCst);
                let status = if i.down.load(Ordering::SeqCst) {
                    500
                } else {
                    200
                };
                (axum::http::StatusCode::from_u16(status).unwrap(), doc)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (idp, url)
}

fn user_event(token: &str) -> Value {
    let mut e = event("session-create-user");
    e["headers"]["authorization"] = json!(format!("Bearer {token}"));
    e["requestContext"]["http"]["sourceIp"] = json!(format!("198.51.100.{}", rand_octet()));
    e
}

#[tokio::test]
async fn the_session_function_verifies_rs256_tokens_with_the_jwks_fetched_on_first_use() {
    let key = TestKey::rsa_a("rsa-1");
    let (idp, url) = idp(jwt_keys::jwks(&[&key])).await;
    let w = world_with(
        None,
        &[
            ("CHAT_AUTH_JWKS_URL", &url),
            ("CHAT_AUTH_JWT_AUDIENCE", "chat-api"),
            ("CHAT_AUTH_JWT_ISSUER", "https://idp.test/"),
        ],
    )
    .await;
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        0,
        "nothing fetched at cold start"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": "cognito-user", "aud": "chat-api", "iss": "https://idp.test/",
        "exp": now + 600});

    let (status, body) = w.http(user_event(&key.sign(&claims))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["userId"], "cognito-user");
    assert_eq!(idp.hits.load(Ordering::SeqCst), 1);

    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("another-app");
    let (status, body) = w.http(user_event(&key.sign(&wrong_aud))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_auth")),
        "{body}"
    );

    // Another cold start while the provider is down.
    idp.down.store(true, Ordering::SeqCst);
    let w = world_with(None, &[("CHAT_AUTH_JWKS_URL", &url)]).await;
    let (status, body) = w.http(user_event(&key.sign(&claims))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
}
