//! App JWTs end to end: the real `chat-local` binary with `CHAT_AUTH_JWKS_URL` pointing at a
//! JWKS the test serves on 127.0.0.1, and `POST /sessions` with `Authorization: Bearer`.
//! RS256 and ES256 tokens from the "identity provider" open user sessions; every kind of bad
//! token is refused with its status and code; a JWKS that is down is a 503; no token is logged.

mod common;
#[path = "../../chat-core/tests/support/jwt_keys.rs"]
mod jwt_keys;

use common::{Server, unix_now};
use jwt_keys::{RSA_A_PUBLIC_PEM, TestKey, hs256, unsigned};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const APP_SECRET: &str = "integration-app-jwt-secret";
const AUD: &str = "chat-api";
const ISS: &str = "https://idp.test/";

/// A JWKS endpoint on 127.0.0.1 that counts its requests and can be taken down (500).
#[derive(Default)]
struct Idp {
    doc: Mutex<String>,
    down: AtomicBool,
    hits: AtomicU32,
}

impl Idp {
    /// Serves `/.well-known/jwks.json` until the test's runtime ends; returns it and its URL.
    async fn start(doc: String) -> (Arc<Idp>, String) {
        use axum::http::StatusCode;
        let idp = Arc::new(Idp::default());
        *idp.doc.lock().unwrap() = doc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let i = idp.clone();
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let i = i.clone();
                async move {
                    i.hits.fetch_add(1, Ordering::SeqCst);
                    if i.down.load(Ordering::SeqCst) {
                        (StatusCode::INTERNAL_SERVER_ERROR, "down".to_string())
                    } else {
                        (StatusCode::OK, i.doc.lock().unwrap().clone())
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (idp, url)
    }

    fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An identity provider with an RSA key (`rsa-1`) and a P-256 key (`ec-1`), and a server
/// that trusts it (audience and issuer required) beside its own HS256 secret.
async fn setup() -> (Server, tempfile::TempDir, Arc<Idp>) {
    let doc = jwt_keys::jwks(&[&TestKey::rsa_a("rsa-1"), &TestKey::ec_p256("ec-1")]);
    let (idp, url) = Idp::start(doc).await;
    let (server, dir) = Server::start(&[
        ("CHAT_AUTH_JWKS_URL", &url),
        ("CHAT_AUTH_JWT_AUDIENCE", AUD),
        ("CHAT_AUTH_JWT_ISSUER", ISS),
        ("CHAT_AUTH_JWT_SECRET", APP_SECRET),
        ("CHAT_RATE_SESSIONS_PER_5MIN", "1000"),
    ])
    .await;
    (server, dir, idp)
}

fn claims(sub: &str) -> Value {
    let now = unix_now();
    json!({"sub": sub, "aud": AUD, "iss": ISS, "iat": now, "exp": now + 600})
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

/// `POST /sessions` with the app token: status, body and `Retry-After`.
async fn open(server: &Server, token: &str) -> (u16, Value, Option<String>) {
    let (status, body, headers) = server
        .request("POST", "/sessions", Some(token), Some(b"".to_vec()), &[])
        .await;
    let retry_after = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    (status, body, retry_after)
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_the_jwks_open_user_sessions() {
    let (server, _dir, idp) = setup().await;
    assert_eq!(
        idp.hits(),
        0,
        "the JWKS is fetched on first use, not at start"
    );

    let (status, v, _) = open(&server, &TestKey::rsa_a("rsa-1").sign(&claims("alice"))).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["userId"], "alice");
    let (status, s, _) = server
        .request(
            "GET",
            &format!("/sessions/{}", v["sessionId"].as_str().unwrap()),
            v["token"].as_str(),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["session"]["kind"], "user");
    assert_eq!(s["session"]["userId"], "alice");

    let (status, v, _) = open(&server, &TestKey::ec_p256("ec-1").sign(&claims("bob"))).await;
    assert_eq!((status, v["userId"].as_str()), (201, Some("bob")), "{v}");
    let hs = hs256(APP_SECRET.as_bytes(), None, &claims("carol"));
    let (status, v, _) = open(&server, &hs).await;
    assert_eq!((status, v["userId"].as_str()), (201, Some("carol")), "{v}");
    assert_eq!(idp.hits(), 1, "one fetch, then the cached key set");
}

#[tokio::test]
async fn bad_app_tokens_are_refused_with_their_status_and_code() {
    let (server, _dir, idp) = setup().await;
    let rsa = TestKey::rsa_a("rsa-1");
    let now = unix_now();
    let no = |c: Value, k: &str| {
        let mut c = c;
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let cases = [
        (
            "wrong aud",
            rsa.sign(&with(claims("u"), "aud", json!("other"))),
            "401 invalid_auth",
        ),
        (
            "no aud",
            rsa.sign(&no(claims("u"), "aud")),
            "401 invalid_auth",
        ),
        (
            "wrong iss",
            rsa.sign(&with(claims("u"), "iss", json!("https://evil.test/"))),
            "401 invalid_auth",
        ),
        (
            "no iss",
            rsa.sign(&no(claims("u"), "iss")),
            "401 invalid_auth",
        ),
        (
            "nbf in 5 minutes",
            rsa.sign(&with(claims("u"), "nbf", json!(now + 300))),
            "401 auth_not_yet_valid",
        ),
        (
            "expired 5 minutes ago",
            rsa.sign(&with(claims("u"), "exp", json!(now - 300))),
            "401 auth_expired",
        ),
        (
            "exp i64::MIN",
            rsa.sign(&with(claims("u"), "exp", json!(i64::MIN))),
            "401 auth_expired",
        ),
        (
            "signed by another key",
            TestKey::rsa_b("rsa-1").sign(&claims("u")),
            "401 invalid_auth",
        ),
        (
            "alg none",
            unsigned("rsa-1", &claims("u")),
            "401 invalid_auth",
        ),
        (
            "HS256 with the public key",
            hs256(RSA_A_PUBLIC_PEM, Some("rsa-1"), &claims("u")),
            "401 invalid_auth",
        ),
        (
            "HS256 with another secret",
            hs256(b"guessed", None, &claims("u")),
            "401 invalid_auth",
        ),
        ("not a JWT", "garbage".to_string(), "401 invalid_auth"),
    ];
    for (what, token, want) in &cases {
        let (status, v, _) = open(&server, token).await;
        let code = v["error"]["code"].as_str().unwrap_or("<none>");
        assert_eq!(format!("{status} {code}"), *want, "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(idp.hits(), 1, "known kids never refetch");

    // An unknown kid refetches the JWKS once (a rotation?), then is refused; more unknown
    // kids within the minute do not fetch again.
    let stranger = TestKey::rsa_b("unknown-kid").sign(&claims("u"));
    let (status, v, _) = open(&server, &stranger).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_auth")),
        "{v}"
    );
    assert_eq!(idp.hits(), 2, "one refetch for the unknown kid");
    for i in 0..5 {
        let t = TestKey::rsa_b(&format!("random-{i}")).sign(&claims("u"));
        assert_eq!(open(&server, &t).await.0, 401);
    }
    assert_eq!(idp.hits(), 2, "refetches are rate-limited");

    // The log has the refusals' causes but never a token.
    let log = server.log();
    assert!(log.contains("unknown key id"), "{log}");
    for (what, token, _) in &cases {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            signature.is_empty() || !log.contains(signature),
            "{what}: token in the log"
        );
    }
    assert!(!log.contains(&stranger));
}

#[tokio::test]
async fn a_jwks_that_is_down_is_503_for_tokens_that_need_it_only() {
    let (server, _dir, idp) = setup().await;
    idp.down.store(true, Ordering::SeqCst);
    let token = TestKey::rsa_a("rsa-1").sign(&claims("u"));
    let (status, v, retry_after) = open(&server, &token).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{v}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(idp.hits(), 1);

    // Guests and the app's own HS256 tokens do not need the JWKS.
    let guest = server.create_session().await;
    assert_eq!(guest.body["userId"], Value::Null);
    let hs = hs256(APP_SECRET.as_bytes(), None, &claims("carol"));
    assert_eq!(open(&server, &hs).await.0, 201);

    let log = server.log();
    assert!(log.contains("JWKS fetch failed"), "{log}");
    assert!(
        !log.contains(token.rsplit('.').next().unwrap()),
        "token in the log"
    );
}
