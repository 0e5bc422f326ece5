//! The chat service: Sessions, their tokens, and history pages.

mod service_support;

use service_support::*;

#[tokio::test]
async fn guest_session_lives_24_hours_and_its_token_opens_it() {
    let h = H::new();
    let r = api::create_session(&h.svc, "192.0.2.1", None, b"").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = json_of(&r);
    let id: SessionId = v["sessionId"].as_str().unwrap().parse().unwrap();
    assert_eq!(v["expiresAt"], rfc3339(T0 + 24 * HOUR));
    assert_eq!(v["websocketUrl"], "ws://127.0.0.1:3000/ws");
    assert!(v.get("userId").is_none(), "a guest has no userId: {v}");

    let stored = h.store.get_session(&id, T0).await.unwrap().expect("stored");
    assert_eq!(stored.user_id, None);
    assert_eq!(
        stored.expires_at,
        T0 + 30 * 24 * HOUR,
        "a guest's session is kept 30 days (retention), longer than its token"
    );
    assert_eq!((stored.last_seq, stored.read_up_to), (0, 0));

    let token = v["token"].as_str().unwrap();
    let claims = h.svc.authorize(Some(token), &id.to_string()).unwrap();
    assert_eq!(claims.sid, id);
    assert_eq!(
        claims.exp * 1000,
        T0 + 24 * HOUR,
        "the token expires after 24 hours"
    );

    let r = api::get_session(&h.svc, &id.to_string(), Some(&format!("Bearer {token}"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["session"]["kind"], "guest");
    assert_eq!(v["session"]["id"], id.to_string());
    assert_eq!(v["messages"], json!([]));

    // An empty JSON object is an accepted body too; anything else is not.
    assert_eq!(
        api::create_session(&h.svc, "192.0.2.2", None, b"{}")
            .await
            .status,
        201
    );
    let r = api::create_session(&h.svc, "192.0.2.3", None, b"{nope").await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_json"));
}

#[tokio::test]
async fn user_session_lives_7_days_from_an_app_jwt() {
    let h = H::new();
    let jwt = app_jwt(APP_SECRET, "user-42", T0 / 1000 + 600);
    let r = api::create_session(&h.svc, "192.0.2.1", Some(&format!("Bearer {jwt}")), b"").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["userId"], "user-42");
    assert_eq!(v["expiresAt"], rfc3339(T0 + 7 * 24 * HOUR));
    let id: SessionId = v["sessionId"].as_str().unwrap().parse().unwrap();
    let stored = h.store.get_session(&id, T0).await.unwrap().expect("stored");
    assert_eq!(stored.user_id.as_deref(), Some("user-42"));
    assert_eq!(
        stored.expires_at,
        T0 + 365 * 24 * HOUR,
        "a user's session is kept 365 days (retention), longer than its token"
    );
    let claims = h
        .svc
        .authorize(v["token"].as_str(), &id.to_string())
        .unwrap();
    assert_eq!(claims.sub.as_deref(), Some("user-42"));

    let r = api::get_session(
        &h.svc,
        &id.to_string(),
        Some(&format!("Bearer {}", v["token"].as_str().unwrap())),
    )
    .await;
    assert_eq!(json_of(&r)["session"]["kind"], "user");
    assert_eq!(json_of(&r)["session"]["userId"], "user-42");
}

#[tokio::test]
async fn bad_app_jwts_are_401() {
    let h = H::new();
    let cases = [
        // Expired a minute ago: past the 60 s of leeway for clock skew.
        (app_jwt(APP_SECRET, "u", T0 / 1000 - 60), "auth_expired"),
        (
            app_jwt(b"another secret", "u", T0 / 1000 + 600),
            "invalid_auth",
        ),
        (app_jwt(APP_SECRET, "  ", T0 / 1000 + 600), "invalid_auth"),
        ("garbage".to_string(), "invalid_auth"),
    ];
    for (i, (jwt, code)) in cases.iter().enumerate() {
        let r = api::create_session(
            &h.svc,
            &format!("192.0.2.{i}"),
            Some(&format!("Bearer {jwt}")),
            b"",
        )
        .await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (401, *code),
            "case {i}: {}",
            r.body
        );
    }
    let r = api::create_session(&h.svc, "192.0.2.9", Some("Basic dXNlcjpwYXNz"), b"").await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_auth"));
}

#[tokio::test]
async fn user_session_is_401_without_an_auth_secret() {
    let h = H::new_without_auth();
    let jwt = app_jwt(APP_SECRET, "user-42", T0 / 1000 + 600);
    let r = api::create_session(&h.svc, "192.0.2.1", Some(&format!("Bearer {jwt}")), b"").await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (401, "auth_not_configured"),
        "{}",
        r.body
    );
    let r = api::create_session(&h.svc, "192.0.2.1", None, b"").await;
    assert_eq!(r.status, 201, "guests still work: {}", r.body);
}

impl H {
    fn new_without_auth() -> Self {
        Self::with_config(Config {
            auth_jwt_secret: None,
            ..chat_testkit::config()
        })
    }
}

#[tokio::test]
async fn fourth_session_per_ip_in_5_minutes_is_429() {
    let h = H::new();
    h.clock.set(T0 + 60_000);
    for i in 0..3 {
        let r = api::create_session(&h.svc, "203.0.113.7", None, b"").await;
        assert_eq!(r.status, 201, "session {i}: {}", r.body);
    }
    let r = api::create_session(&h.svc, "203.0.113.7", None, b"").await;
    assert_eq!((r.status, code_of(&r).as_str()), (429, "rate_limited"));
    assert_eq!(
        r.retry_after,
        Some(100),
        "a token comes every 100 s (3 per 5 minutes)"
    );
    assert_eq!(
        api::create_session(&h.svc, "203.0.113.8", None, b"")
            .await
            .status,
        201,
        "per IP"
    );
    h.clock.set(T0 + 60_000 + 99_000);
    assert_eq!(
        api::create_session(&h.svc, "203.0.113.7", None, b"")
            .await
            .status,
        429,
        "before the next token"
    );
    h.clock.set(T0 + 60_000 + 100_000);
    assert_eq!(
        api::create_session(&h.svc, "203.0.113.7", None, b"")
            .await
            .status,
        201,
        "the next token"
    );
}

#[tokio::test]
async fn missing_garbage_forged_and_expired_tokens_are_401() {
    let h = H::new();
    let s = h.session().await;
    let get = |auth: Option<String>| {
        let h = &h;
        let path = s.path();
        async move { api::get_session(&h.svc, &path, auth.as_deref()).await }
    };
    let r = get(None).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "missing_token"));
    let r = get(Some("Bearer garbage".into())).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_token"));
    let forged = SessionTokens::new(b"not the session secret").issue(&SessionClaims {
        sid: s.id,
        sub: None,
        exp: T0 / 1000 + 3600,
        iat: T0 / 1000,
    });
    let r = get(Some(format!("Bearer {forged}"))).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_token"));

    h.clock.set(T0 + 24 * HOUR - 1);
    assert_eq!(
        get(Some(s.bearer())).await.status,
        200,
        "valid until the last millisecond"
    );
    h.clock.set(T0 + 24 * HOUR);
    let r = get(Some(s.bearer())).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "token_expired"));
    let r = api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), None).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn another_sessions_token_is_403_and_writes_nothing() {
    let h = H::new();
    let a = h.session().await;
    let b = h.session().await;
    let r = api::get_session(&h.svc, &b.path(), Some(&a.bearer())).await;
    assert_eq!((r.status, code_of(&r).as_str()), (403, "forbidden"));
    let r = api::post_message(&h.svc, &b.path(), Some(&a.bearer()), br#"{"content":"hi"}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api::mark_read(&h.svc, &b.path(), Some(&a.bearer()), br#"{"upTo":1}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(h.all_messages(&a.id).await.is_empty() && h.all_messages(&b.id).await.is_empty());
    assert!(h.queue.drain().is_empty());
    let e = h
        .svc
        .connect(Some(&b.path()), Some(&a.token), "c1")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);
    assert_eq!(h.store.get_connection("c1").await.unwrap(), None);
}

#[tokio::test]
async fn history_pages_let_a_client_catch_up() {
    let h = H::new();
    let s = h.session().await;
    for i in 1..=5 {
        h.send(&s, &format!("m{i}"), None, None).await.unwrap();
    }
    let list = |q: &'static str| {
        let h = &h;
        let path = s.path();
        let auth = s.bearer();
        async move {
            let r = api::list_messages(&h.svc, &path, Some(&auth), Some(q)).await;
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            let v = json_of(&r);
            let seqs: Vec<u64> = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_u64().unwrap())
                .collect();
            (seqs, v["hasMore"].as_bool().unwrap())
        }
    };
    assert_eq!(list("").await, (vec![1, 2, 3, 4, 5], false));
    assert_eq!(list("after=2&limit=2").await, (vec![3, 4], true));
    assert_eq!(list("after=4").await, (vec![5], false));
    assert_eq!(list("after=5").await, (vec![], false));
    assert_eq!(list("limit=2").await, (vec![4, 5], true));
    assert_eq!(list("before=3").await, (vec![1, 2], false));
    let r = api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), Some("limit=0")).await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_query"));
    let r = api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), Some("limit=101")).await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_query"));
}

#[test]
fn secrets_in_the_harness_match_the_test_config() {
    let c = chat_testkit::config();
    assert_eq!(
        c.webhook_secret,
        Secret::new(String::from_utf8(WEBHOOK_SECRET.to_vec()).unwrap())
    );
    assert_eq!(
        c.auth_jwt_secret,
        Some(Secret::new(String::from_utf8(APP_SECRET.to_vec()).unwrap()))
    );
}
