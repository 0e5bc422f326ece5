//! Conversations people keep: `GET /sessions`, resume, retention, export and erasure, with
//! every refusal of their routes.

mod service_support;

use service_support::*;

const DAY: Millis = 24 * HOUR;

fn user_bearer(sub: &str) -> String {
    format!(
        "Bearer {}",
        app_jwt(APP_SECRET, sub, T0 / 1000 + 400 * 86_400)
    )
}

fn agent_bearer() -> String {
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "a-1", "name": "Alex", "role": "agent", "exp": T0 / 1000 + 400 * 86_400}),
        &jsonwebtoken::EncodingKey::from_secret(APP_SECRET),
    )
    .unwrap();
    format!("Bearer {jwt}")
}

/// A user session of `sub`, from a fresh client address.
async fn user_session(h: &H, sub: &str) -> S {
    let ip = format!("10.1.0.{}", h.next_ip.fetch_add(1, Ordering::SeqCst));
    let r = api::create_session(&h.svc, &ip, Some(&user_bearer(sub)), b"").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = json_of(&r);
    S {
        id: v["sessionId"].as_str().unwrap().parse().unwrap(),
        token: v["token"].as_str().unwrap().to_string(),
    }
}

async fn list(h: &H, auth: Option<&str>, query: Option<&str>) -> Response {
    api::list_sessions(&h.svc, auth, query).await
}

#[tokio::test]
async fn a_user_lists_their_conversations_newest_first_with_title_and_unread() {
    let h = H::new();
    let first = user_session(&h, "u-1").await;
    h.clock.advance(1_000);
    let second = user_session(&h, "u-1").await;
    let _other = user_session(&h, "u-2").await;
    let _guest = h.session().await;
    h.clock.advance(1_000);
    let long = format!("Where is my order?\n{}", "x".repeat(100));
    h.user_message(&first, &long).await;
    h.webhook(json!({"sessionId": first.id, "content": "On its way."}))
        .await;

    let r = list(&h, Some(&user_bearer("u-1")), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "only u-1's sessions: {v}");
    assert!(v.get("nextCursor").is_none(), "{v}");
    let top = &sessions[0];
    assert_eq!(
        top["sessionId"],
        first.id.to_string(),
        "newest activity first"
    );
    let title = top["title"].as_str().unwrap();
    assert!(title.starts_with("Where is my order? xxx"), "{title}");
    assert_eq!(title.chars().count(), 80);
    assert_eq!(top["unreadCount"], 1, "the reply is unread");
    assert_eq!(top["lastMessage"]["content"], "On its way.");
    assert_eq!(top["mode"], "bot");
    assert_eq!(top["createdAt"], rfc3339(T0));
    assert_eq!(top["updatedAt"], rfc3339(T0 + 2_000));
    assert_eq!(sessions[1]["sessionId"], second.id.to_string());
    assert_eq!(sessions[1]["title"], "New conversation");
    assert!(sessions[1].get("lastMessage").is_none());
    assert_eq!(sessions[1]["unreadCount"], 0);
}

#[tokio::test]
async fn the_list_pages_with_an_opaque_cursor() {
    let h = H::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(user_session(&h, "u-1").await.id.to_string());
        h.clock.advance(10);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let q = match &cursor {
            None => "limit=2".to_string(),
            Some(c) => format!("limit=2&cursor={c}"),
        };
        let v = json_of(&list(&h, Some(&user_bearer("u-1")), Some(&q)).await);
        for s in v["sessions"].as_array().unwrap() {
            seen.push(s["sessionId"].as_str().unwrap().to_string());
        }
        cursor = v["nextCursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen, ids, "three pages of 2, 2 and 1, newest first");
    assert_eq!(cursor, None, "no cursor after the last page");
    let v = json_of(&list(&h, Some(&user_bearer("u-1")), None).await);
    assert_eq!(
        v["sessions"].as_array().unwrap().len(),
        5,
        "default limit 20"
    );
}

#[tokio::test]
async fn every_refusal_of_the_list_is_a_clear_4xx() {
    let h = H::new();
    let guest = h.session().await;
    for (auth, query, status, code) in [
        (None, None, 401, "missing_token"),
        (Some(guest.bearer()), None, 401, "invalid_auth"),
        (Some(agent_bearer()), None, 403, "forbidden"),
        (
            Some(user_bearer("u-1")),
            Some("cursor=nope"),
            400,
            "invalid_query",
        ),
        (
            Some(user_bearer("u-1")),
            Some("cursor=12_notanid"),
            400,
            "invalid_query",
        ),
        (
            Some(user_bearer("u-1")),
            Some("limit=0"),
            400,
            "invalid_query",
        ),
        (
            Some(user_bearer("u-1")),
            Some("limit=51"),
            400,
            "invalid_query",
        ),
    ] {
        let r = list(&h, auth.as_deref(), query).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (status, code),
            "{auth:?} {query:?}: {}",
            r.body
        );
    }
    let r = list(&h, Some("Bearer x.y.z"), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn resume_gives_another_device_a_fresh_token_for_the_same_conversation() {
    let h = H::new();
    let s = user_session(&h, "u-1").await;
    let (m, _) = h.user_message(&s, "from the phone").await;
    h.clock.advance(3 * DAY);
    let r = api::resume_session(&h.svc, &s.path(), Some(&user_bearer("u-1"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["sessionId"], s.path());
    assert_eq!(v["expiresAt"], rfc3339(T0 + 3 * DAY + 7 * DAY));
    assert_eq!(v["websocketUrl"], "ws://127.0.0.1:3000/ws");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["expiresAt", "sessionId", "token", "websocketUrl"]);
    let token = v["token"].as_str().unwrap();
    assert_ne!(token, s.token);
    let r = api::get_session(&h.svc, &s.path(), Some(&format!("Bearer {token}"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["messages"][0]["id"], m.id.to_string());

    // Another user's session is 403, a guest's too; an unknown or erased one 404.
    let r = api::resume_session(&h.svc, &s.path(), Some(&user_bearer("u-2"))).await;
    assert_eq!((r.status, code_of(&r).as_str()), (403, "forbidden"));
    let g = h.session().await;
    let r = api::resume_session(&h.svc, &g.path(), Some(&user_bearer("u-1"))).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api::resume_session(
        &h.svc,
        &SessionId::new().to_string(),
        Some(&user_bearer("u-1")),
    )
    .await;
    assert_eq!((r.status, code_of(&r).as_str()), (404, "not_found"));
    let r = api::resume_session(&h.svc, &s.path(), Some(&s.bearer())).await;
    assert_eq!(r.status, 401, "a session token is no app JWT: {}", r.body);
    let r = api::resume_session(&h.svc, &s.path(), Some(&agent_bearer())).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api::resume_session(&h.svc, &s.path(), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn retention_outlives_the_token_and_moves_with_activity() {
    let h = H::new();
    let g = h.session().await;
    let u = user_session(&h, "u-1").await;
    // The guest's token expires after 24 h, but its conversation is kept 30 days.
    h.clock.advance(2 * DAY);
    let r = api::get_session(&h.svc, &g.path(), Some(&g.bearer())).await;
    assert_eq!(r.status, 401, "the guest token expired: {}", r.body);
    assert!(h.store.get_session(&g.id, h.now()).await.unwrap().is_some());
    // The user's session: activity on day 20 keeps it until day 385.
    h.clock.set(T0 + 20 * DAY);
    let r = api::resume_session(&h.svc, &u.path(), Some(&user_bearer("u-1"))).await;
    let fresh = json_of(&r)["token"].as_str().unwrap().to_string();
    let fresh = S {
        id: u.id,
        token: fresh,
    };
    h.user_message(&fresh, "still here").await;
    let s = h.store.get_session(&u.id, h.now()).await.unwrap().unwrap();
    assert_eq!(s.expires_at, T0 + 20 * DAY + 365 * DAY);
    // Day 31: the guest's is gone (30 days after its last activity), the user's is listed.
    h.clock.set(T0 + 31 * DAY);
    assert!(h.store.get_session(&g.id, h.now()).await.unwrap().is_none());
    h.clock.set(T0 + 380 * DAY);
    let v = json_of(&list(&h, Some(&user_bearer("u-1")), None).await);
    assert_eq!(v["sessions"][0]["sessionId"], u.path(), "{v}");
    h.clock.set(T0 + 386 * DAY);
    let v = json_of(&list(&h, Some(&user_bearer("u-1")), None).await);
    assert_eq!(v["sessions"], json!([]), "past its retention: {v}");
}

#[tokio::test]
async fn export_holds_every_session_and_message_of_the_user_only() {
    let h = H::new();
    let a = user_session(&h, "u-1").await;
    let b = user_session(&h, "u-1").await;
    let other = user_session(&h, "u-2").await;
    h.user_message(&a, "first").await;
    for i in 0..3 {
        h.clock.advance(6_000);
        h.user_message(&b, &format!("b{i}")).await;
    }
    h.user_message(&other, "not mine").await;
    let r = api::export_me(&h.svc, Some(&user_bearer("u-1"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["userId"], "u-1");
    assert_eq!(v["exportedAt"], rfc3339(h.now()));
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["session"]["id"], b.path());
    let contents: Vec<&str> = sessions[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["b0", "b1", "b2"]);
    assert_eq!(sessions[1]["messages"][0]["content"], "first");
    assert!(!r.body.contains("not mine"));
    for (auth, status) in [
        (None, 401),
        (Some(a.bearer()), 401),
        (Some(agent_bearer()), 403),
    ] {
        let r = api::export_me(&h.svc, auth.as_deref()).await;
        assert_eq!(r.status, status, "{auth:?}: {}", r.body);
    }
}

#[tokio::test]
async fn erasing_a_session_closes_its_connections_and_leaves_nothing() {
    let h = H::new();
    let s = user_session(&h, "u-1").await;
    let kept = user_session(&h, "u-1").await;
    h.user_message(&s, "erase me").await;
    h.user_message(&kept, "keep me").await;
    h.connect(&s, "c-1").await;
    h.connect(&kept, "c-2").await;

    // Another user's app JWT: 403; nothing erased.
    let r = api::delete_session(&h.svc, &s.path(), Some(&user_bearer("u-2"))).await;
    assert_eq!((r.status, code_of(&r).as_str()), (403, "forbidden"));
    // Another session's token: 403.
    let r = api::delete_session(&h.svc, &s.path(), Some(&kept.bearer())).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api::delete_session(&h.svc, &s.path(), Some(&agent_bearer())).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api::delete_session(&h.svc, &s.path(), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(h.store.holds_anything_of(&s.id));

    let r = api::delete_session(&h.svc, &s.path(), Some(&user_bearer("u-1"))).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert!(!h.store.holds_anything_of(&s.id), "something of it is left");
    assert_eq!(h.push.closed(), ["c-1"], "its connection was closed");
    assert!(h.store.holds_anything_of(&kept.id));
    // Gone now: 404 for its user and its token alike.
    let r = api::delete_session(&h.svc, &s.path(), Some(&user_bearer("u-1"))).await;
    assert_eq!((r.status, code_of(&r).as_str()), (404, "not_found"));
    let r = api::delete_session(&h.svc, &s.path(), Some(&s.bearer())).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api::resume_session(&h.svc, &s.path(), Some(&user_bearer("u-1"))).await;
    assert_eq!(r.status, 404, "{}", r.body);

    // A guest erases its own session with its token.
    let g = h.session().await;
    h.user_message(&g, "guest data").await;
    let r = api::delete_session(&h.svc, &g.path(), Some(&g.bearer())).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(!h.store.holds_anything_of(&g.id));
}

#[tokio::test]
async fn erasing_me_removes_every_session_of_the_user_and_no_one_elses() {
    let h = H::new();
    let a = user_session(&h, "u-1").await;
    let b = user_session(&h, "u-1").await;
    let other = user_session(&h, "u-2").await;
    for s in [&a, &b, &other] {
        h.user_message(s, "hello").await;
    }
    h.connect(&b, "c-b").await;
    // One past its retention but not yet purged is erased too.
    let r = api::delete_me(&h.svc, Some(&agent_bearer())).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api::delete_me(&h.svc, Some(&a.bearer())).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = api::delete_me(&h.svc, Some(&user_bearer("u-1"))).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(!h.store.holds_anything_of(&a.id) && !h.store.holds_anything_of(&b.id));
    assert_eq!(h.push.closed(), ["c-b"]);
    assert!(h.store.holds_anything_of(&other.id));
    let v = json_of(&list(&h, Some(&user_bearer("u-1")), None).await);
    assert_eq!(v["sessions"], json!([]));
    let v = json_of(&api::export_me(&h.svc, Some(&user_bearer("u-1"))).await);
    assert_eq!(v["sessions"], json!([]));
    // Erasing again is fine: nothing left.
    let r = api::delete_me(&h.svc, Some(&user_bearer("u-1"))).await;
    assert_eq!(r.status, 204, "{}", r.body);
}

#[tokio::test]
async fn erase_user_reaches_sessions_past_retention_not_yet_purged() {
    let h = H::new();
    let a = user_session(&h, "u-1").await;
    h.user_message(&a, "old").await;
    h.clock.advance(400 * DAY);
    assert!(
        h.store.holds_anything_of(&a.id),
        "the memory store purges nothing"
    );
    assert_eq!(h.svc.erase_user("u-1").await.unwrap(), 1);
    assert!(!h.store.holds_anything_of(&a.id));
}

#[tokio::test]
async fn the_operator_exports_one_session_by_id() {
    let h = H::new();
    let g = h.session().await;
    h.user_message(&g, "guest words").await;
    let e = h.svc.export_session(&g.path()).await.unwrap();
    let v = serde_json::to_value(&e).unwrap();
    assert!(v.get("userId").is_none());
    assert_eq!(v["sessions"][0]["messages"][0]["content"], "guest words");
    let e = h.svc.export_session(&SessionId::new().to_string()).await;
    assert_eq!(e.unwrap_err().status(), 404);
    let e = h.svc.export_session("not-an-id").await;
    assert_eq!(e.unwrap_err().status(), 404);
}
