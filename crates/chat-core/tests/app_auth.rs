//! App JWTs at the service level: `POST /sessions` with `Authorization: Bearer` through
//! `api::create_session`, on the in-memory ports, a hand-moved clock and an in-memory JWKS
//! source that counts its fetches and can be taken down. Keys are the fixtures in
//! `tests/fixtures/jwt/`.

#[path = "support/jwt_keys.rs"]
mod jwt_keys;

use async_trait::async_trait;
use chat_core::api::{self, Response};
use chat_core::auth::{AppAuthConfig, JWKS_MAX_AGE_MS, JWKS_REFRESH_MS, JWKS_RETRY_MS};
use chat_core::config::Config;
use chat_core::model::{Millis, SessionId};
use chat_core::ports::{JwksError, JwksSource};
use chat_core::service::{ChatService, Ports, SessionRef};
use chat_core::token::SessionClaims;
use chat_testkit::memory::{ManualClock, MemoryQueue, MemoryStore, RecordingPush};
use jwt_keys::{RSA_A_PUBLIC_PEM, TestKey, hs256, jwks, unsigned};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Service time: November 2023, far from the system clock, so a check against the system
/// clock instead of the service's would show.
const T0: Millis = 1_700_000_100_000;
const T0_S: i64 = T0 / 1000;
const APP_SECRET: &[u8] = b"test-app-jwt-secret";
const AUD: &str = "chat-api";
const ISS: &str = "https://idp.test/";

/// A JWKS endpoint in memory.
#[derive(Default)]
struct FakeJwks {
    doc: Mutex<String>,
    down: AtomicBool,
    fetches: AtomicU32,
}

impl FakeJwks {
    fn serving(doc: String) -> Arc<Self> {
        let f = Self::default();
        *f.doc.lock().unwrap() = doc;
        Arc::new(f)
    }
    fn fetches(&self) -> u32 {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JwksSource for FakeJwks {
    async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(JwksError("the provider answered 503".into()));
        }
        Ok(self.doc.lock().unwrap().clone().into_bytes())
    }
}

struct H {
    svc: ChatService,
    clock: Arc<ManualClock>,
    jwks: Arc<FakeJwks>,
    next_ip: AtomicU32,
}

impl H {
    /// HS256 secret and a JWKS of RSA key A (`rsa-1`) and the P-256 key (`ec-1`); `aud` and
    /// `iss` required.
    fn new() -> Self {
        Self::with(
            Some(APP_SECRET),
            AppAuthConfig {
                jwks_url: Some("https://idp.test/.well-known/jwks.json".into()),
                audience: vec![AUD.into()],
                issuer: vec![ISS.into()],
            },
        )
    }

    fn with(secret: Option<&[u8]>, app_auth: AppAuthConfig) -> Self {
        let clock = Arc::new(ManualClock::new(T0));
        let jwks = FakeJwks::serving(jwt_keys::jwks(&[
            &TestKey::rsa_a("rsa-1"),
            &TestKey::ec_p256("ec-1"),
        ]));
        let config = Config {
            auth_jwt_secret: secret
                .map(|s| chat_core::config::Secret::new(String::from_utf8(s.to_vec()).unwrap())),
            app_auth,
            ..chat_testkit::config()
        };
        let svc = ChatService::new(
            Ports {
                store: Arc::new(MemoryStore::new()),
                queue: Arc::new(MemoryQueue::default()),
                push: Arc::new(RecordingPush::default()),
                clock: clock.clone(),
                limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
            },
            config,
        )
        .with_jwks(jwks.clone());
        Self {
            svc,
            clock,
            jwks,
            next_ip: AtomicU32::new(1),
        }
    }

    /// `POST /sessions` with this app token, from a fresh client IP.
    async fn open(&self, token: &str) -> Response {
        let ip = format!("10.0.0.{}", self.next_ip.fetch_add(1, Ordering::SeqCst));
        api::create_session(&self.svc, &ip, Some(&format!("Bearer {token}")), b"").await
    }

    /// Asserts a user session for `user` was created.
    async fn accepted(&self, what: &str, token: &str, user: &str) {
        let r = self.open(token).await;
        assert_eq!(r.status, 201, "{what}: {}", r.body);
        assert_eq!(json(&r)["userId"], user, "{what}");
    }

    /// Asserts the token is refused with this status and code.
    async fn refused(&self, what: &str, token: &str, status: u16, code: &str) -> Value {
        let r = self.open(token).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (status, code),
            "{what}: {}",
            r.body
        );
        json(&r)
    }
}

fn json(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

fn code_of(r: &Response) -> String {
    json(r)["error"]["code"].as_str().unwrap_or("").to_string()
}

/// Claims valid at T0 for the configured audience and issuer.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "aud": AUD, "iss": ISS, "iat": T0_S, "exp": T0_S + 600})
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

#[tokio::test]
async fn rs256_and_es256_tokens_open_user_sessions_and_the_jwks_is_fetched_once_on_first_use() {
    let h = H::new();
    assert_eq!(
        h.jwks.fetches(),
        0,
        "nothing is fetched before a token needs it"
    );
    let r = h
        .open(&TestKey::rsa_a("rsa-1").sign(&claims("cognito-user")))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = json(&r);
    assert_eq!(v["userId"], "cognito-user");
    let id = v["sessionId"].as_str().unwrap();
    let session = h.svc.authorize(v["token"].as_str(), id).unwrap();
    assert_eq!(session.sub.as_deref(), Some("cognito-user"));

    h.accepted(
        "ES256",
        &TestKey::ec_p256("ec-1").sign(&claims("supabase-user")),
        "supabase-user",
    )
    .await;
    // `aud` as a list holding ours, as Auth0 sends it.
    h.accepted(
        "aud list",
        &TestKey::rsa_a("rsa-1").sign(&with(
            claims("auth0-user"),
            "aud",
            json!(["https://idp.test/userinfo", AUD]),
        )),
        "auth0-user",
    )
    .await;
    // The HS256 secret keeps working beside the JWKS.
    h.accepted(
        "HS256",
        &hs256(APP_SECRET, None, &claims("app-user")),
        "app-user",
    )
    .await;
    assert_eq!(h.jwks.fetches(), 1, "the key set is cached");
}

#[tokio::test]
async fn aud_and_iss_are_checked_and_required_when_set() {
    let h = H::new();
    let rsa = TestKey::rsa_a("rsa-1");
    let cases = [
        ("wrong aud", with(claims("u"), "aud", json!("other-api"))),
        (
            "aud list without ours",
            with(claims("u"), "aud", json!(["a", "b"])),
        ),
        ("no aud", without(claims("u"), "aud")),
        (
            "wrong iss",
            with(claims("u"), "iss", json!("https://evil.test/")),
        ),
        ("no iss", without(claims("u"), "iss")),
    ];
    for (what, c) in cases {
        let v = h.refused(what, &rsa.sign(&c), 401, "invalid_auth").await;
        let msg = v["error"]["message"].as_str().unwrap();
        let claim = if what.contains("aud") { "aud" } else { "iss" };
        assert!(msg.contains(claim), "{what}: {msg}");
    }
    // The same checks for the app's own HS256 tokens.
    h.refused(
        "HS256, wrong aud",
        &hs256(APP_SECRET, None, &with(claims("u"), "aud", json!("x"))),
        401,
        "invalid_auth",
    )
    .await;
}

#[tokio::test]
async fn aud_and_iss_are_not_looked_at_when_unset() {
    // Issue 9: jsonwebtoken refuses any token with `aud` unless told which to accept.
    let h = H::with(
        Some(APP_SECRET),
        AppAuthConfig {
            jwks_url: Some("https://idp.test/jwks".into()),
            ..Default::default()
        },
    );
    let c = with(claims("u1"), "aud", json!("whatever-the-idp-says"));
    h.accepted("HS256 with aud", &hs256(APP_SECRET, None, &c), "u1")
        .await;
    h.accepted("RS256 with aud", &TestKey::rsa_a("rsa-1").sign(&c), "u1")
        .await;
    h.accepted(
        "neither aud nor iss",
        &hs256(
            APP_SECRET,
            None,
            &without(without(claims("u2"), "aud"), "iss"),
        ),
        "u2",
    )
    .await;
}

#[tokio::test]
async fn exp_and_nbf_are_checked_against_the_service_clock_with_60_s_of_leeway() {
    let h = H::new();
    let rsa = TestKey::rsa_a("rsa-1");
    let at = |exp: i64, nbf: Option<i64>| {
        let c = with(claims("u"), "exp", json!(exp));
        rsa.sign(&match nbf {
            Some(n) => with(c, "nbf", json!(n)),
            None => c,
        })
    };
    h.refused("expired", &at(T0_S - 60, None), 401, "auth_expired")
        .await;
    h.accepted("expired within the leeway", &at(T0_S - 59, None), "u")
        .await;
    h.refused(
        "not valid yet",
        &at(T0_S + 600, Some(T0_S + 61)),
        401,
        "auth_not_yet_valid",
    )
    .await;
    h.accepted(
        "nbf within the leeway",
        &at(T0_S + 600, Some(T0_S + 60)),
        "u",
    )
    .await;
    h.refused(
        "no exp",
        &rsa.sign(&without(claims("u"), "exp")),
        401,
        "invalid_auth",
    )
    .await;
    // The service clock moves, not the system's.
    h.clock.set(T0 + 3_600_000);
    h.refused("an hour later", &at(T0_S + 600, None), 401, "auth_expired")
        .await;
}

#[tokio::test]
async fn crafted_dates_neither_overflow_nor_panic() {
    let h = H::new();
    // ES256: signing is much faster than RSA's in a debug build.
    let ec = TestKey::ec_p256("ec-1");
    h.accepted(
        "exp i64::MAX",
        &ec.sign(&with(claims("u"), "exp", json!(i64::MAX))),
        "u",
    )
    .await;
    h.accepted(
        "exp u64::MAX",
        &ec.sign(&with(claims("u"), "exp", json!(u64::MAX))),
        "u",
    )
    .await;
    h.accepted(
        "exp 1e300",
        &ec.sign(&with(claims("u"), "exp", json!(1e300))),
        "u",
    )
    .await;
    h.refused(
        "exp i64::MIN",
        &ec.sign(&with(claims("u"), "exp", json!(i64::MIN))),
        401,
        "auth_expired",
    )
    .await;
    h.accepted(
        "nbf i64::MIN",
        &ec.sign(&with(claims("u"), "nbf", json!(i64::MIN))),
        "u",
    )
    .await;
    h.refused(
        "nbf i64::MAX",
        &ec.sign(&with(claims("u"), "nbf", json!(i64::MAX))),
        401,
        "auth_not_yet_valid",
    )
    .await;
    h.refused(
        "exp a string",
        &ec.sign(&with(claims("u"), "exp", json!("tomorrow"))),
        401,
        "invalid_auth",
    )
    .await;
    // A session token's `exp` becomes a SessionRef without overflow too.
    let far = SessionRef::from(&SessionClaims {
        sid: SessionId::new(),
        sub: None,
        exp: i64::MAX,
        iat: 0,
    });
    assert_eq!(far.expires_at, i64::MAX);
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_known_kid_is_401() {
    let h = H::new();
    let v = h
        .refused(
            "RSA key B posing as rsa-1",
            &TestKey::rsa_b("rsa-1").sign(&claims("u")),
            401,
            "invalid_auth",
        )
        .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    h.refused(
        "HS256 with another secret",
        &hs256(b"not the secret", None, &claims("u")),
        401,
        "invalid_auth",
    )
    .await;
    h.refused(
        "RS256 under the EC key's kid",
        &TestKey::rsa_a("ec-1").sign(&claims("u")),
        401,
        "invalid_auth",
    )
    .await;
    assert_eq!(h.jwks.fetches(), 1, "a known kid never refetches");
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_then_401_and_refetches_are_rate_limited() {
    let h = H::new();
    let stranger = TestKey::rsa_b("who-knows").sign(&claims("u"));
    h.accepted("warm up", &TestKey::rsa_a("rsa-1").sign(&claims("u")), "u")
        .await;
    assert_eq!(h.jwks.fetches(), 1);
    let v = h
        .refused("unknown kid", &stranger, 401, "invalid_auth")
        .await;
    assert!(v["error"]["message"].as_str().unwrap().contains("kid"));
    assert_eq!(h.jwks.fetches(), 2, "one refetch for the unknown kid");
    for i in 0..20 {
        let t = TestKey::ec_p256(&format!("random-{i}")).sign(&claims("u"));
        h.refused("random kid", &t, 401, "invalid_auth").await;
    }
    assert_eq!(h.jwks.fetches(), 2, "no refetch within the limit");
    h.clock.advance(JWKS_REFRESH_MS - 1);
    h.refused("just before", &stranger, 401, "invalid_auth")
        .await;
    assert_eq!(h.jwks.fetches(), 2);
    h.clock.advance(1);
    h.refused("after the limit", &stranger, 401, "invalid_auth")
        .await;
    assert_eq!(
        h.jwks.fetches(),
        3,
        "one more refetch once the limit has passed"
    );

    // An unknown kid in the very first token: the first fetch is the only one.
    let h = H::new();
    h.refused("first token", &stranger, 401, "invalid_auth")
        .await;
    assert_eq!(h.jwks.fetches(), 1);

    // A refresh that fails is a 503 (the kid may be new), and is not retried at once.
    let h = H::new();
    h.accepted("warm up", &TestKey::rsa_a("rsa-1").sign(&claims("u")), "u")
        .await;
    h.jwks.down.store(true, Ordering::SeqCst);
    h.refused("refresh fails", &stranger, 503, "unavailable")
        .await;
    h.refused("again", &stranger, 401, "invalid_auth").await;
    h.accepted(
        "known keys still work",
        &TestKey::rsa_a("rsa-1").sign(&claims("u")),
        "u",
    )
    .await;
    assert_eq!(h.jwks.fetches(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_found_by_the_refetch() {
    let h = H::new();
    h.accepted("old key", &TestKey::rsa_a("rsa-1").sign(&claims("u")), "u")
        .await;
    // The provider publishes a new key and starts signing with it.
    let new = TestKey::rsa_b("rsa-2");
    *h.jwks.doc.lock().unwrap() = jwks(&[&TestKey::rsa_a("rsa-1"), &new]);
    h.accepted("new key", &new.sign(&claims("u")), "u").await;
    assert_eq!(h.jwks.fetches(), 2);
}

#[tokio::test]
async fn alg_none_and_hs256_signed_with_the_public_key_are_401() {
    for secret in [Some(APP_SECRET), None] {
        let h = H::with(
            secret,
            AppAuthConfig {
                jwks_url: Some("https://idp.test/jwks".into()),
                ..Default::default()
            },
        );
        let what = if secret.is_some() {
            "with an HS256 secret"
        } else {
            "JWKS only"
        };
        h.refused(what, &unsigned("rsa-1", &claims("u")), 401, "invalid_auth")
            .await;
        h.refused(
            what,
            &hs256(RSA_A_PUBLIC_PEM, Some("rsa-1"), &claims("u")),
            401,
            "invalid_auth",
        )
        .await;
        let rsa_jwk = TestKey::rsa_a("rsa-1").jwk().to_string();
        h.refused(
            what,
            &hs256(rsa_jwk.as_bytes(), Some("rsa-1"), &claims("u")),
            401,
            "invalid_auth",
        )
        .await;
    }
}

#[tokio::test]
async fn symmetric_keys_in_the_jwks_are_never_used() {
    let h = H::with(
        None,
        AppAuthConfig {
            jwks_url: Some("https://idp.test/jwks".into()),
            ..Default::default()
        },
    );
    let mut doc: Value = serde_json::from_str(&jwks(&[&TestKey::rsa_a("rsa-1")])).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "kid": "sym", "alg": "HS256", "k": "c2VjcmV0LWtleQ"}));
    *h.jwks.doc.lock().unwrap() = doc.to_string();
    h.refused(
        "HS256 with a key from the JWKS",
        &hs256(b"secret-key", Some("sym"), &claims("u")),
        401,
        "invalid_auth",
    )
    .await;
}

#[tokio::test]
async fn a_jwks_that_cannot_be_fetched_is_503_until_it_can() {
    let h = H::new();
    h.jwks.down.store(true, Ordering::SeqCst);
    let token = TestKey::rsa_a("rsa-1").sign(&claims("u"));
    let r = h.open(&token).await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (503, "unavailable"),
        "{}",
        r.body
    );
    assert_eq!(r.retry_after, Some(1));
    assert!(!r.body.contains(&token));
    h.refused("again at once", &token, 503, "unavailable").await;
    assert_eq!(h.jwks.fetches(), 1, "one fetch per retry delay");
    // Guests and HS256 tokens do not need the JWKS.
    let guest = api::create_session(&h.svc, "10.9.9.9", None, b"").await;
    assert_eq!(guest.status, 201, "{}", guest.body);
    h.accepted("HS256", &hs256(APP_SECRET, None, &claims("app")), "app")
        .await;

    h.jwks.down.store(false, Ordering::SeqCst);
    h.refused("still within the retry delay", &token, 503, "unavailable")
        .await;
    h.clock.advance(JWKS_RETRY_MS);
    h.accepted("the provider is back", &token, "u").await;
    assert_eq!(h.jwks.fetches(), 2);

    // A document that is not a key set is as good as none.
    let h = H::new();
    *h.jwks.doc.lock().unwrap() = "<html>Service Unavailable</html>".into();
    h.refused("garbage JWKS", &token, 503, "unavailable").await;
}

#[tokio::test]
async fn old_keys_are_refetched_after_an_hour_and_kept_if_that_fails() {
    let h = H::new();
    let token = TestKey::rsa_a("rsa-1").sign(&with(claims("u"), "exp", json!(i64::MAX)));
    h.accepted("first", &token, "u").await;
    h.clock.advance(JWKS_MAX_AGE_MS);
    h.jwks.down.store(true, Ordering::SeqCst);
    h.accepted("stale keys while the provider is down", &token, "u")
        .await;
    assert_eq!(h.jwks.fetches(), 2, "the stale set was refetched");
    // A key the provider dropped stops working once the refetch succeeds.
    h.jwks.down.store(false, Ordering::SeqCst);
    *h.jwks.doc.lock().unwrap() = jwks(&[&TestKey::ec_p256("ec-1")]);
    h.clock.advance(JWKS_RETRY_MS);
    h.refused("dropped key", &token, 401, "invalid_auth").await;
    assert_eq!(h.jwks.fetches(), 3);
}

#[tokio::test]
async fn without_a_secret_or_a_jwks_user_sessions_are_not_configured() {
    let h = H::with(None, AppAuthConfig::default());
    h.refused(
        "RS256",
        &TestKey::rsa_a("rsa-1").sign(&claims("u")),
        401,
        "auth_not_configured",
    )
    .await;
    // With a JWKS only, HS256 tokens (and HS384) are refused.
    let h = H::with(
        None,
        AppAuthConfig {
            jwks_url: Some("https://idp.test/jwks".into()),
            ..Default::default()
        },
    );
    h.refused(
        "HS256",
        &hs256(APP_SECRET, None, &claims("u")),
        401,
        "invalid_auth",
    )
    .await;
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims("u"),
        &jsonwebtoken::EncodingKey::from_secret(APP_SECRET),
    )
    .unwrap();
    let h = H::new();
    h.refused("HS384 with the secret", &hs384, 401, "invalid_auth")
        .await;
}
