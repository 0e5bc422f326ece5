//! Every parser of outside input under property tests: signature headers, session tokens and
//! app JWTs, JSON bodies of every route, WebSocket frames, query strings and path ids. Whatever
//! arrives, the answer is a 2xx or a 4xx in the contract's shape, never a panic or a 5xx.
//!
//! The inputs mix random bytes with near-valid ones (real field names, extreme numbers, the
//! right signature over random bodies), where parsers break in practice.

use chat_core::api::{self, Response};
use chat_core::model::Connection;
use chat_core::service::{ChatService, Ports};
use chat_core::{signature, token};
use chat_testkit::memory::{ManualClock, MemoryQueue, MemoryStore, RecordingPush};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

const T0: i64 = 1_700_000_100_000;
const WEBHOOK_SECRET: &[u8] = b"test-webhook-secret";

fn service() -> ChatService {
    let mut config = chat_testkit::config();
    // Limits are not what is tested here; every case must reach the parsers.
    config.limits.messages_per_minute = 1_000_000;
    config.limits.sessions_per_5min = 1_000_000;
    config.limits.webhooks_per_minute = 1_000_000;
    ChatService::new(
        Ports {
            store: Arc::new(MemoryStore::new()),
            queue: Arc::new(MemoryQueue::default()),
            push: Arc::new(RecordingPush::default()),
            clock: Arc::new(ManualClock::new(T0)),
            limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
        },
        config,
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A 2xx, or a 4xx whose body is `{"error":{"code","message"}}`.
fn well_formed(r: &Response) -> Result<(), TestCaseError> {
    prop_assert!(
        (200..300).contains(&r.status) || (400..500).contains(&r.status),
        "status {} for {}",
        r.status,
        r.body
    );
    let v: Value = serde_json::from_str(&r.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    if r.status >= 400 {
        prop_assert!(v["error"]["code"].is_string(), "{}", r.body);
        prop_assert!(v["error"]["message"].is_string(), "{}", r.body);
    }
    Ok(())
}

/// Strings that look like what a parser expects, and strings that do not.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        Just(String::new()),
        Just(i64::MIN.to_string()),
        Just(i64::MAX.to_string()),
        Just(u64::MAX.to_string()),
        Just("-0".into()),
        Just("+1".into()),
        Just("1e9".into()),
        Just("\u{0}".into()),
        Just("\u{200B}".into()),
        Just("01HZZZZZZZZZZZZZZZZZZZZZZZ".into()),
        Just("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".into()),
    ]
}

/// JSON values with the contract's field names and awkward contents.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("content".to_string()),
                        Just("clientMessageId".to_string()),
                        Just("metadata".to_string()),
                        Just("upTo".to_string()),
                        Just("action".to_string()),
                        Just("isTyping".to_string()),
                        Just("sessionId".to_string()),
                        Just("replyTo".to_string()),
                        Just("type".to_string()),
                        Just("data".to_string()),
                        Just("eventId".to_string()),
                        "[a-z]{1,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Body bytes: JSON of the contract's shapes, random JSON, or random bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..200),
        text().prop_map(String::into_bytes),
        (
            prop_oneof![
                Just("sendMessage"),
                Just("typing"),
                Just("read"),
                Just("ping"),
                Just("x")
            ],
            json_value()
        )
            .prop_map(|(a, v)| {
                let mut o = v.as_object().cloned().unwrap_or_default();
                o.insert("action".into(), json!(a));
                Value::Object(o).to_string().into_bytes()
            }),
    ]
}

/// `Authorization` header values.
fn authorization(valid: String) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(format!("Bearer {valid}"))),
        text().prop_map(Some),
        text().prop_map(|t| Some(format!("Bearer {t}"))),
        // A token with a payload of extreme claims, unsigned or signed with another key.
        (any::<i64>(), any::<i64>()).prop_map(|(exp, iat)| {
            let claims =
                json!({"sid": "01HZZZZZZZZZZZZZZZZZZZZZZZ", "exp": exp, "iat": iat, "sub": "u"});
            Some(format!("Bearer {}", forged(&claims)))
        }),
    ]
}

/// A JWT with these claims, signed HS256 with a key the server does not have.
fn forged(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn signature_headers_never_panic(ts in text(), sig in text(), body in body(), now in any::<i64>()) {
        let r = signature::verify(WEBHOOK_SECRET, Some(&ts), Some(&sig), &body, now);
        prop_assert!(r.is_err());
        prop_assert_eq!(r.unwrap_err().status(), 401);
        // The right signature with any timestamp: accepted only within 300 s of now.
        let good = signature::sign(WEBHOOK_SECRET, &ts, &body);
        let r = signature::verify(WEBHOOK_SECRET, Some(&ts), Some(&good), &body, now);
        if let Err(e) = r {
            prop_assert_eq!(e.status(), 401);
        }
    }

    #[test]
    fn session_tokens_and_app_jwts_never_panic(t in text(), now in any::<i64>(), exp in any::<i64>()) {
        let tokens = token::SessionTokens::new(b"test-session-secret");
        if let Err(e) = tokens.verify(&t, now) {
            prop_assert_eq!(e.status(), 401);
        }
        prop_assert!(token::bearer(Some(&t)).is_none_or(|b| !b.is_empty()));
        // A correctly signed token with an extreme expiry.
        let claims = token::SessionClaims { sid: chat_core::model::SessionId::new(), sub: None, exp, iat: exp };
        let signed = tokens.issue(&claims);
        if let Err(e) = tokens.verify(&signed, now) {
            prop_assert_eq!(e.status(), 401);
        }
    }

    #[test]
    fn every_route_answers_2xx_or_4xx(
        body in body(),
        query in text(),
        id in text(),
        auth_kind in 0..3u8,
        auth in authorization(String::new()),
    ) {
        runtime().block_on(async {
            let svc = service();
            let created = svc.create_session("192.0.2.1", None).await.unwrap();
            let sid = created.session_id.to_string();
            let good = format!("Bearer {}", created.token);
            let (path, auth) = match auth_kind {
                0 => (sid.clone(), Some(good)),
                1 => (sid.clone().to_lowercase(), auth),
                _ => (id.clone(), auth),
            };
            let auth = auth.as_deref();
            well_formed(&api::create_session(&svc, "192.0.2.2", auth, &body).await)?;
            well_formed(&api::get_session(&svc, &path, auth).await)?;
            well_formed(&api::list_messages(&svc, &path, auth, Some(&query)).await)?;
            well_formed(&api::post_message(&svc, &path, auth, &body).await)?;
            well_formed(&api::mark_read(&svc, &path, auth, &body).await)?;
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn webhook_bodies_answer_2xx_or_4xx(body in body(), ts in text(), signed in any::<bool>()) {
        runtime().block_on(async {
            let svc = service();
            let ts = if signed { (T0 / 1000).to_string() } else { ts };
            let sig = signature::sign(WEBHOOK_SECRET, &ts, &body);
            well_formed(&api::webhook(&svc, "192.0.2.1", Some(&ts), Some(&sig), &body).await)?;
            // The same body about a real session (so it gets past the session lookup).
            let created = svc.create_session("192.0.2.1", None).await.unwrap();
            if let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(&body) {
                o.insert("sessionId".into(), json!(created.session_id));
                let body = Value::Object(o).to_string().into_bytes();
                let ts = (T0 / 1000).to_string();
                let sig = signature::sign(WEBHOOK_SECRET, &ts, &body);
                well_formed(&api::webhook(&svc, "192.0.2.1", Some(&ts), Some(&sig), &body).await)?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn websocket_frames_get_an_answer_or_nothing_never_a_panic(frame in body()) {
        runtime().block_on(async {
            let push = Arc::new(RecordingPush::default());
            let mut config = chat_testkit::config();
            config.limits.messages_per_minute = 1_000_000;
            let svc = ChatService::new(
                Ports {
                    store: Arc::new(MemoryStore::new()),
                    queue: Arc::new(MemoryQueue::default()),
                    push: push.clone(),
                    clock: Arc::new(ManualClock::new(T0)),
                    limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
                },
                config,
            );
            let created = svc.create_session("192.0.2.1", None).await.unwrap();
            let sid = created.session_id.to_string();
            let c: Connection = svc.connect(Some(&sid), Some(&created.token), "c1").await.unwrap();
            svc.handle_frame(&c, &frame).await;
            svc.handle_frame_by_id("unknown", &frame).await;
            for (_, f) in push.take() {
                let v: Value = serde_json::from_str(&f).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(v["event"].is_string(), "{}", f);
                if v["event"] == "error" {
                    prop_assert!(v["code"].is_string() && v["message"].is_string(), "{}", f);
                }
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn websocket_connect_queries_never_panic(session in text(), token in text()) {
        runtime().block_on(async {
            let svc = service();
            if let Err(e) = svc.connect(Some(&session), Some(&token), "c1").await {
                prop_assert!((400..500).contains(&e.status()), "{e:?}");
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
