//! Edit and delete of one's own messages through the API functions: the user's (session
//! token) and an agent's (agent routes), the edit window, tombstones, the `message` event
//! pushed on change, `updatedAt` on every message and `?updatedAfter=` for catch-up, with
//! every refusal (403 another's, 404 unknown, 409 past the window or a tombstone, 400 bad
//! bodies and queries).

mod service_support;

use chat_core::api::AgentChange;
use service_support::*;

fn agent_bearer(sub: &str, name: &str) -> String {
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "name": name, "role": "agent", "exp": T0 / 1000 + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(APP_SECRET),
    )
    .unwrap();
    format!("Bearer {jwt}")
}

async fn patch(h: &H, s: &S, id: &str, auth: &str, body: &str) -> Response {
    api::change_message(&h.svc, &s.path(), id, true, Some(auth), body.as_bytes()).await
}

async fn delete(h: &H, s: &S, id: &str, auth: &str) -> Response {
    api::change_message(&h.svc, &s.path(), id, false, Some(auth), b"").await
}

async fn changes(h: &H, s: &S, query: &str) -> Response {
    api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), Some(query)).await
}

#[tokio::test]
async fn a_user_edits_and_deletes_their_message_and_everyone_sees_it() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    let (m, _) = h.user_message(&s, "helo").await;
    assert_eq!(
        msg_json(&m)["updatedAt"],
        rfc3339(T0),
        "updatedAt = createdAt when new"
    );
    assert!(msg_json(&m).get("editedAt").is_none());
    assert!(msg_json(&m).get("deleted").is_none());
    h.push.take();

    h.clock.advance(10_000);
    let r = patch(
        &h,
        &s,
        &m.id.to_string(),
        &s.bearer(),
        r#"{"content":"hello"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r)["message"].clone();
    assert_eq!(v["id"], m.id.to_string());
    assert_eq!(v["seq"], m.seq);
    assert_eq!(v["content"], "hello");
    assert_eq!(v["createdAt"], rfc3339(T0));
    assert_eq!(v["editedAt"], rfc3339(T0 + 10_000));
    assert_eq!(v["updatedAt"], rfc3339(T0 + 10_000));
    for c in ["c1", "c2"] {
        let frames = h.frames(c);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["event"], "message");
        assert_eq!(
            frames[0]["message"], v,
            "the change pushed as the message event"
        );
    }
    assert_eq!(h.message(&s, &m.id).await.content, "hello");
    assert!(
        h.queue.drain().is_empty(),
        "an edit is not dispatched again"
    );
    h.push.take();

    h.clock.advance(10_000);
    let r = delete(&h, &s, &m.id.to_string(), &s.bearer()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r)["message"].clone();
    assert_eq!(
        (v["id"].clone(), v["seq"].clone()),
        (json!(m.id.to_string()), json!(m.seq))
    );
    assert_eq!(v["deleted"], true);
    assert_eq!(v["content"], "");
    assert_eq!(v["deletedAt"], rfc3339(T0 + 20_000));
    assert_eq!(v["updatedAt"], rfc3339(T0 + 20_000));
    assert_eq!(h.frames("c1")[0]["message"], v);

    // A tombstone stays one: 409 to edit or delete again.
    let r = patch(
        &h,
        &s,
        &m.id.to_string(),
        &s.bearer(),
        r#"{"content":"back"}"#,
    )
    .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (409, "conflict"),
        "{}",
        r.body
    );
    let r = delete(&h, &s, &m.id.to_string(), &s.bearer()).await;
    assert_eq!(r.status, 409, "{}", r.body);
    // History shows the tombstone in place.
    let r = api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), Some("after=0")).await;
    let history = json_of(&r)["messages"].clone();
    assert_eq!(history[0], v);
}

#[tokio::test]
async fn the_edit_window_and_whose_message_it_is() {
    let mut config = chat_testkit::config();
    config.limits.edit_window = std::time::Duration::from_secs(60);
    let h = H::with_config(config);
    let s = h.session().await;
    let other = h.session().await;
    let (m, job) = h.user_message(&s, "mine").await;
    // The bot's reply: not the user's to change.
    h.webhook(json!({"sessionId": s.id, "replyTo": job.message_id, "content": "the bot's"}))
        .await;
    let reply = h.all_messages(&s.id).await[1].clone();
    assert_eq!(reply.content, "the bot's");
    let r = patch(
        &h,
        &s,
        &reply.id.to_string(),
        &s.bearer(),
        r#"{"content":"x"}"#,
    )
    .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (403, "forbidden"),
        "{}",
        r.body
    );
    let r = delete(&h, &s, &reply.id.to_string(), &s.bearer()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Another session's token: refused before anything is read.
    let r = patch(
        &h,
        &s,
        &m.id.to_string(),
        &other.bearer(),
        r#"{"content":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // The message through another session's own path: not found there.
    let r = patch(
        &h,
        &other,
        &m.id.to_string(),
        &other.bearer(),
        r#"{"content":"x"}"#,
    )
    .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (404, "not_found"),
        "{}",
        r.body
    );
    let r = delete(&h, &s, "01JD9N0V8019F5A42YAM85WN8G", &s.bearer()).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = delete(&h, &s, "not-an-id", &s.bearer()).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api::change_message(&h.svc, &s.path(), &m.id.to_string(), false, None, b"").await;
    assert_eq!(r.status, 401, "{}", r.body);

    // At exactly the window's end it may still change; a millisecond later it may not.
    h.clock.advance(60_000);
    let r = patch(
        &h,
        &s,
        &m.id.to_string(),
        &s.bearer(),
        r#"{"content":"still mine"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    h.clock.advance(1);
    let r = patch(
        &h,
        &s,
        &m.id.to_string(),
        &s.bearer(),
        r#"{"content":"late"}"#,
    )
    .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (409, "conflict"),
        "{}",
        r.body
    );
    assert!(
        json_of(&r)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("60 seconds")
    );
    let r = delete(&h, &s, &m.id.to_string(), &s.bearer()).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(h.message(&s, &m.id).await.content, "still mine");
}

#[tokio::test]
async fn bad_bodies_are_400_and_change_nothing() {
    let h = H::new();
    let s = h.session().await;
    let (m, _) = h.user_message(&s, "keep me").await;
    let id = m.id.to_string();
    for (body, code) in [
        ("", "invalid_json"),
        ("not json", "invalid_json"),
        (r#"{"content":""}"#, "content_empty"),
        (r#"{"content":"   "}"#, "content_empty"),
        (r#"{"content":"a\u0000b"}"#, "content_invalid"),
        (r#"{"content":42}"#, "invalid_input"),
        (r#"{"content":"x","role":"assistant"}"#, "invalid_input"),
        (r#"{}"#, "invalid_input"),
    ] {
        let r = patch(&h, &s, &id, &s.bearer(), body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let got = code_of(&r);
        assert!(
            got == code || (code == "invalid_json" && got == "invalid_input"),
            "{body}: {got}"
        );
    }
    let long = json!({"content": "x".repeat(4001)}).to_string();
    let r = patch(&h, &s, &id, &s.bearer(), &long).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(h.message(&s, &id.parse().unwrap()).await.content, "keep me");
    assert_eq!(h.message(&s, &id.parse().unwrap()).await.edited_at, None);
}

#[tokio::test]
async fn an_agent_edits_and_deletes_only_their_own_messages() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "u1").await;
    let alex = agent_bearer("a-1", "Alex");
    let sam = agent_bearer("a-2", "Sam");
    let r = api::handoff(&h.svc, &s.path(), Some(&s.bearer()), b"{}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api::agent_change(&h.svc, &s.path(), AgentChange::Claim, Some(&alex), b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api::agent_post_message(
        &h.svc,
        &s.path(),
        Some(&alex),
        br#"{"content":"Hi, Alex here"}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let mid = json_of(&r)["message"]["id"].as_str().unwrap().to_string();
    let user_msg = h.send(&s, "hello Alex", None, None).await.unwrap();
    h.push.take();

    let agent_patch = |auth: String, id: String, body: &'static str| {
        let svc = h.svc.clone();
        let sid = s.path();
        async move {
            api::agent_change_message(&svc, &sid, &id, true, Some(&auth), body.as_bytes()).await
        }
    };
    // Another agent, the user's message, a user's token on the agent route: refused.
    let r = agent_patch(sam.clone(), mid.clone(), r#"{"content":"Sam here"}"#).await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (403, "forbidden"),
        "{}",
        r.body
    );
    let r = agent_patch(alex.clone(), user_msg.id.to_string(), r#"{"content":"x"}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = agent_patch(s.bearer(), mid.clone(), r#"{"content":"x"}"#).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // Nor may the user change the agent's message.
    let r = patch(&h, &s, &mid, &s.bearer(), r#"{"content":"x"}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);

    h.clock.advance(1_000);
    let r = agent_patch(alex.clone(), mid.clone(), r#"{"content":"Hi, Alex here!"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r)["message"].clone();
    assert_eq!(
        (v["content"].as_str(), v["name"].as_str()),
        (Some("Hi, Alex here!"), Some("Alex"))
    );
    assert!(
        v.get("agentId").is_none(),
        "the agent id stays off the wire: {v}"
    );
    assert_eq!(h.frames("u1")[0]["message"], v, "the user sees the edit");
    h.push.take();
    let r = api::agent_change_message(&h.svc, &s.path(), &mid, false, Some(&alex), b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["message"]["deleted"], true);
    assert_eq!(h.frames("u1")[0]["message"]["deleted"], true);
    // The agent route's catch-up lists the change too.
    let r = api::agent_messages(
        &h.svc,
        &s.path(),
        Some(&alex),
        Some(&format!("updatedAfter={T0}")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = json_of(&r)["messages"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], mid);
}

#[tokio::test]
async fn clients_catch_up_on_changes_with_updated_after() {
    let h = H::new();
    let s = h.session().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(h.user_message(&s, &format!("m{i}")).await.0.id.to_string());
    }
    let seen = T0; // the newest updatedAt the client saw
    h.clock.advance(1_000);
    patch(&h, &s, &ids[2], &s.bearer(), r#"{"content":"two"}"#).await;
    h.clock.advance(1_000);
    delete(&h, &s, &ids[0], &s.bearer()).await;
    h.clock.advance(1_000);
    patch(&h, &s, &ids[1], &s.bearer(), r#"{"content":"one"}"#).await;

    let r = changes(&h, &s, &format!("updatedAfter={seen}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    let got: Vec<(&str, bool)> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["content"].as_str().unwrap(), m["deleted"] == true))
        .collect();
    assert_eq!(
        got,
        vec![("two", false), ("", true), ("one", false)],
        "by updatedAt"
    );
    assert_eq!(v["hasMore"], false);
    // RFC 3339 works as well as milliseconds; limit pages; strictly after.
    let r = changes(&h, &s, &format!("updatedAfter={}&limit=2", rfc3339(seen))).await;
    let v = json_of(&r);
    assert_eq!(
        (
            v["messages"].as_array().unwrap().len(),
            v["hasMore"].clone()
        ),
        (2, json!(true))
    );
    let last = v["messages"][1]["updatedAt"].as_str().unwrap().to_string();
    let r = changes(&h, &s, &format!("updatedAfter={}", urlencode(&last))).await;
    let v = json_of(&r);
    assert_eq!(v["messages"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["messages"][0]["content"], "one");
    let r = changes(&h, &s, &format!("updatedAfter={}", T0 + 3_000)).await;
    assert_eq!(json_of(&r)["messages"], json!([]));

    for q in [
        "updatedAfter=yesterday",
        "updatedAfter=",
        "updatedAfter=-5",
        "updatedAfter=0&after=1",
        "updatedAfter=0&before=3",
        "updatedAfter=0&limit=0",
        "updatedAfter=0&limit=101",
    ] {
        let r = changes(&h, &s, q).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (400, "invalid_query"),
            "{q}: {}",
            r.body
        );
    }
    let other = h.session().await;
    let r = api::list_messages(
        &h.svc,
        &s.path(),
        Some(&other.bearer()),
        Some("updatedAfter=0"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn a_deleted_message_is_not_sent_to_n8n_nor_shown_in_its_history() {
    let h = H::new();
    let s = h.session().await;
    let (first, first_job) = h.user_message(&s, "my card number is 4111").await;
    // Deleted before its dispatch ran: skipped, and no failure notice at its deadline.
    let r = delete(&h, &s, &first.id.to_string(), &s.bearer()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        h.dispatcher.dispatch(first_job, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert!(h.agent.requests().is_empty(), "n8n never saw it");
    h.dispatcher.dead_letter(first_job).await.unwrap();
    assert_eq!(
        h.all_messages(&s.id).await.len(),
        1,
        "no notice about a deleted message"
    );
    // The next message's history leaves the tombstone out.
    let (_, job) = h.user_message(&s, "sorry, wrong chat").await;
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let sent: Value = serde_json::from_slice(&h.agent.requests()[0].body).unwrap();
    assert_eq!(sent["history"], json!([]), "{sent}");
    assert!(!sent.to_string().contains("4111"));
}
