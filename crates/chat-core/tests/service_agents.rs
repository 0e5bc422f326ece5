//! People in the loop on the in-memory ports: the mode machine and its notices, the agent
//! routes and their refusals, the bot paused and resumed, a dispatch in flight at the
//! handoff, n8n's handoff, the handoff timeout, the claim race, typing, presence, canned
//! replies and the agents list.

mod service_support;

use chat_core::api::AgentChange;
use chat_core::service::{NO_ONE_TEXT, WAITING_TEXT};
use service_support::*;

fn agent_jwt(sub: &str, name: Option<&str>, role: &str, secret: &[u8]) -> String {
    let mut claims = json!({"sub": sub, "exp": T0 / 1000 + 3600, "role": role});
    if let Some(n) = name {
        claims["name"] = json!(n);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// `Bearer <agent JWT>` of an agent signed with the test app secret.
fn bearer(sub: &str, name: &str) -> String {
    format!("Bearer {}", agent_jwt(sub, Some(name), "agent", APP_SECRET))
}

fn alex() -> String {
    bearer("a-1", "Alex")
}
fn sam() -> String {
    bearer("a-2", "Sam")
}

async fn change(h: &H, s: &S, what: AgentChange, auth: &str, body: &str) -> Response {
    api::agent_change(&h.svc, &s.path(), what, Some(auth), body.as_bytes()).await
}

async fn handoff(h: &H, s: &S) -> Response {
    api::handoff(&h.svc, &s.path(), Some(&s.bearer()), b"{}").await
}

async fn agent_says(h: &H, s: &S, auth: &str, content: &str) -> Response {
    let body = json!({"content": content}).to_string();
    api::agent_post_message(&h.svc, &s.path(), Some(auth), body.as_bytes()).await
}

async fn mode(h: &H, s: &S) -> String {
    let r = api::get_session(&h.svc, &s.path(), Some(&s.bearer())).await;
    json_of(&r)["session"]["mode"].as_str().unwrap().to_string()
}

/// The system messages of a session, as (content, data.mode).
async fn notices(h: &H, s: &S) -> Vec<(String, String)> {
    h.all_messages(&s.id)
        .await
        .into_iter()
        .filter(|m| m.role == Role::System)
        .map(|m| {
            let mode = m.data.as_ref().unwrap()["mode"]
                .as_str()
                .unwrap()
                .to_string();
            (m.content, mode)
        })
        .collect()
}

async fn agent_connect(h: &H, auth: &str, id: &str) -> chat_core::model::AgentConnection {
    let token = auth.strip_prefix("Bearer ").unwrap();
    h.svc
        .connect_agent(token, id)
        .await
        .expect("agent connects")
}

#[tokio::test]
async fn a_person_takes_over_and_hands_back_to_the_bot() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "u1").await;
    agent_connect(&h, &alex(), "ag1").await;
    h.push.take();

    // The user asks for a person.
    let r = handoff(&h, &s).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["session"]["mode"], "waiting");
    assert_eq!(v["session"]["waitingSince"], rfc3339(T0));
    let user = h.frames("u1");
    assert_eq!(user[0]["event"], "message");
    assert_eq!(user[0]["message"]["content"], WAITING_TEXT);
    assert_eq!(user[0]["message"]["data"], json!({"mode": "waiting"}));
    assert_eq!(user[1]["event"], "session");
    assert_eq!(user[1]["session"]["mode"], "waiting");
    let agent = h.frames("ag1");
    let inbox: Vec<&Value> = agent.iter().filter(|f| f["event"] == "inbox").collect();
    assert_eq!(inbox.len(), 1, "{agent:?}");
    assert_eq!(inbox[0]["session"]["mode"], "waiting");
    assert_eq!(inbox[0]["session"]["userOnline"], true);
    assert_eq!(inbox[0]["session"]["lastMessage"]["content"], WAITING_TEXT);
    h.push.take();

    // While waiting, user messages are stored and shown to agents, not dispatched.
    let m = h.send(&s, "are you there?", None, None).await.unwrap();
    assert!(h.queue.drain().is_empty(), "no job while waiting");
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Received);
    let inbox = h.frames("ag1");
    assert_eq!(inbox[0]["event"], "inbox");
    assert_eq!(
        inbox[0]["session"]["lastMessage"]["content"],
        "are you there?"
    );
    let page = api::agent_inbox(&h.svc, Some(&alex()), Some("view=waiting")).await;
    assert_eq!(json_of(&page)["sessions"][0]["sessionId"], s.path());
    h.push.take();

    // Alex claims it and writes.
    let r = change(&h, &s, AgentChange::Claim, &alex(), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        json_of(&r)["session"]["agent"],
        json!({"id": "a-1", "name": "Alex"})
    );
    let user = h.frames("u1");
    assert_eq!(
        user[0]["message"]["content"],
        "Alex joined the conversation"
    );
    assert_eq!(
        user[0]["message"]["data"],
        json!({"mode": "agent", "agent": {"id": "a-1", "name": "Alex"}})
    );
    assert_eq!(user[1]["session"]["agent"]["name"], "Alex");
    assert!(
        user.iter().any(|f| f["event"] == "presence"
            && f["participants"][1]
                == json!({"role":"agent","id":"a-1","name":"Alex","online":true})),
        "{user:?}"
    );
    h.push.take();
    let r = agent_says(&h, &s, &alex(), "Hi, I am Alex. How can I help?").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let said = json_of(&r)["message"].clone();
    assert_eq!(
        (said["role"].as_str(), said["name"].as_str()),
        (Some("agent"), Some("Alex"))
    );
    assert_eq!(h.frames("u1")[0]["message"]["id"], said["id"]);
    h.push.take();

    // The user answers: Alex's connection gets it; still no dispatch.
    h.send(&s, "my order is late", None, None).await.unwrap();
    assert!(h.queue.drain().is_empty());
    let got = h.frames("ag1");
    assert!(
        got.iter()
            .any(|f| f["event"] == "message" && f["message"]["content"] == "my order is late"),
        "{got:?}"
    );
    h.push.take();

    // Alex releases: the bot is back, and n8n sees Alex's message with its name.
    let r = change(&h, &s, AgentChange::Release, &alex(), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        h.frames("u1")[0]["message"]["content"],
        "Alex left; the assistant is back"
    );
    assert_eq!(mode(&h, &s).await, "bot");
    let (_, job) = h.user_message(&s, "thanks").await;
    h.dispatcher.run(job, 1).await.unwrap();
    let sent: Value = serde_json::from_slice(&h.agent.requests()[0].body).unwrap();
    let history = sent["history"].as_array().unwrap();
    let by_alex: Vec<&Value> = history.iter().filter(|m| m["role"] == "agent").collect();
    assert_eq!(by_alex.len(), 1, "{history:?}");
    assert_eq!(by_alex[0]["name"], "Alex");
    assert_eq!(by_alex[0]["content"], "Hi, I am Alex. How can I help?");
}

#[tokio::test]
async fn every_transition_stores_one_notice() {
    let h = H::new();
    let s = h.session().await;
    assert_eq!(handoff(&h, &s).await.status, 200);
    assert_eq!(handoff(&h, &s).await.status, 200, "idempotent");
    assert_eq!(
        change(&h, &s, AgentChange::Claim, &alex(), "").await.status,
        200
    );
    assert_eq!(handoff(&h, &s).await.status, 200, "already held: as it is");
    assert_eq!(
        change(&h, &s, AgentChange::Claim, &alex(), "").await.status,
        200,
        "a claim of one's own session"
    );
    let r = change(&h, &s, AgentChange::Claim, &sam(), "").await;
    assert_eq!((r.status, code_of(&r)), (409, "conflict".into()));
    let r = change(&h, &s, AgentChange::Release, &sam(), "").await;
    assert_eq!(r.status, 409, "only the holder releases");
    let r = change(&h, &s, AgentChange::Close, &sam(), "").await;
    assert_eq!(r.status, 409, "nor closes");
    let to_sam = json!({"agentId": "a-2", "agentName": "Sam"}).to_string();
    let r = change(&h, &s, AgentChange::Transfer, &alex(), &to_sam).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["session"]["agent"]["id"], "a-2");
    let r = change(&h, &s, AgentChange::Transfer, &alex(), &to_sam).await;
    assert_eq!(r.status, 409, "Alex holds it no more");
    assert_eq!(
        change(&h, &s, AgentChange::Release, &sam(), "")
            .await
            .status,
        200
    );
    let r = change(&h, &s, AgentChange::Release, &sam(), "").await;
    assert_eq!(r.status, 409, "a bot session cannot be released");
    // A waiting session may be released by any agent, and closed.
    assert_eq!(handoff(&h, &s).await.status, 200);
    assert_eq!(
        change(&h, &s, AgentChange::Release, &alex(), "")
            .await
            .status,
        200
    );
    assert_eq!(
        change(&h, &s, AgentChange::Close, &alex(), "").await.status,
        200
    );
    assert_eq!(mode(&h, &s).await, "closed");
    assert_eq!(
        notices(&h, &s).await,
        [
            (WAITING_TEXT.to_string(), "waiting".to_string()),
            ("Alex joined the conversation".into(), "agent".into()),
            ("Sam joined the conversation".into(), "agent".into()),
            ("Sam left; the assistant is back".into(), "bot".into()),
            (WAITING_TEXT.into(), "waiting".into()),
            (NO_ONE_TEXT.into(), "bot".into()),
            ("This conversation was closed".into(), "closed".into()),
        ]
    );
    // Closed is the end.
    for what in [AgentChange::Claim, AgentChange::Close, AgentChange::Release] {
        let r = change(&h, &s, what, &alex(), "").await;
        assert_eq!(r.status, 409, "{what:?}: {}", r.body);
    }
    let r = handoff(&h, &s).await;
    assert_eq!(r.status, 409);
    let e = h.send(&s, "hello?", None, None).await.unwrap_err();
    assert_eq!(e.status(), 409);
    assert!(e.to_string().contains("closed"), "{e}");
    assert!(h.queue.drain().is_empty());
    let before = h.all_messages(&s.id).await.len();
    let r = api::post_message(&h.svc, &s.path(), Some(&s.bearer()), br#"{"content":"x"}"#).await;
    assert_eq!(r.status, 409);
    assert_eq!(h.all_messages(&s.id).await.len(), before, "nothing stored");
}

#[tokio::test]
async fn agent_routes_refuse_who_is_not_an_agent() {
    let h = H::new();
    let s = h.session().await;
    let inbox = |auth: Option<String>| {
        let h = &h;
        async move { api::agent_inbox(&h.svc, auth.as_deref(), None).await }
    };
    let r = inbox(None).await;
    assert_eq!((r.status, code_of(&r)), (401, "missing_token".into()));
    let r = inbox(Some(s.bearer())).await;
    assert_eq!(r.status, 401, "a session token is no agent token");
    let user = format!("Bearer {}", app_jwt(APP_SECRET, "u-1", T0 / 1000 + 3600));
    let r = inbox(Some(user.clone())).await;
    assert_eq!((r.status, code_of(&r)), (403, "forbidden".into()));
    let forged = agent_jwt("a-9", Some("Mallory"), "agent", b"not-the-secret");
    let r = inbox(Some(format!("Bearer {forged}"))).await;
    assert_eq!((r.status, code_of(&r)), (401, "invalid_auth".into()));
    let nameless = agent_jwt("a-9", None, "agent", APP_SECRET);
    let r = inbox(Some(format!("Bearer {nameless}"))).await;
    assert_eq!(r.status, 401, "an agent has a name");
    let long = "x".repeat(81);
    let r = inbox(Some(bearer("a-9", &long))).await;
    assert_eq!(r.status, 401);
    assert_eq!(inbox(Some(alex())).await.status, 200);
    // Every agent route, with a user's token: 403 before anything else.
    let path = s.path();
    let rs = [
        api::agent_session(&h.svc, &path, Some(&user)).await,
        api::agent_messages(&h.svc, &path, Some(&user), None).await,
        change(&h, &s, AgentChange::Claim, &user, "").await,
        api::agent_post_message(&h.svc, &path, Some(&user), br#"{"content":"x"}"#).await,
        api::agent_canned(&h.svc, Some(&user), None).await,
        api::agent_put_canned(&h.svc, None, Some(&user), b"{}").await,
        api::agent_delete_canned(&h.svc, "x", Some(&user)).await,
        api::agent_agents(&h.svc, Some(&user)).await,
    ];
    for r in rs {
        assert_eq!(r.status, 403, "{}", r.body);
    }
    // The WebSocket too.
    let e = h
        .svc
        .connect_agent(&app_jwt(APP_SECRET, "u-1", T0 / 1000 + 3600), "x")
        .await;
    assert_eq!(e.unwrap_err().status(), 403);
    let e = h.svc.connect_agent(&forged, "x").await;
    assert_eq!(e.unwrap_err().status(), 401);
    assert!(h.store.list_agent_connections().await.unwrap().is_empty());

    // Without app-JWT auth configured, agent routes are off.
    let mut c = chat_testkit::config();
    c.auth_jwt_secret = None;
    let off = H::with_config(c);
    let r = api::agent_inbox(&off.svc, Some(&alex()), None).await;
    assert_eq!((r.status, code_of(&r)), (401, "auth_not_configured".into()));
    assert!(r.body.contains("agents are not enabled"), "{}", r.body);
}

#[tokio::test]
async fn an_agent_writes_only_to_a_session_it_holds() {
    let h = H::new();
    let s = h.session().await;
    let r = agent_says(&h, &s, &alex(), "hello").await;
    assert_eq!((r.status, code_of(&r)), (409, "conflict".into()));
    handoff(&h, &s).await;
    assert_eq!(
        agent_says(&h, &s, &alex(), "hello").await.status,
        409,
        "waiting"
    );
    change(&h, &s, AgentChange::Claim, &sam(), "").await;
    assert_eq!(
        agent_says(&h, &s, &alex(), "hello").await.status,
        409,
        "held by Sam"
    );
    // A repeated clientMessageId returns the same message.
    let body = br#"{"content":"one moment","clientMessageId":"k-1"}"#;
    let a = api::agent_post_message(&h.svc, &s.path(), Some(&sam()), body).await;
    let b = api::agent_post_message(&h.svc, &s.path(), Some(&sam()), body).await;
    assert_eq!((a.status, b.status), (202, 202));
    assert_eq!(json_of(&a)["message"]["id"], json_of(&b)["message"]["id"]);
    let other = br#"{"content":"other","clientMessageId":"k-1"}"#;
    let r = api::agent_post_message(&h.svc, &s.path(), Some(&sam()), other).await;
    assert_eq!(r.status, 409);
    change(&h, &s, AgentChange::Close, &sam(), "").await;
    assert_eq!(
        agent_says(&h, &s, &sam(), "bye").await.status,
        409,
        "closed"
    );
}

#[tokio::test]
async fn every_new_body_is_validated() {
    let h = H::new();
    let s = h.session().await;
    change(&h, &s, AgentChange::Claim, &alex(), "").await;
    let bad = |r: Response| (r.status, code_of(&r));
    let (al, path) = (alex(), s.path());
    let transfer = |body: &'static str| change(&h, &s, AgentChange::Transfer, &al, body);
    assert_eq!(
        bad(transfer(r#"{"agentId":"a-1","agentName":"Alex"}"#).await),
        (400, "invalid_input".into()),
        "to oneself"
    );
    assert_eq!(bad(transfer(r#"{"agentId":"a-2"}"#).await).0, 400);
    assert_eq!(
        bad(transfer(r#"{"agentId":"","agentName":"Sam"}"#).await).0,
        400
    );
    assert_eq!(
        bad(transfer(r#"{"agentId":"a-2","agentName":""}"#).await).0,
        400
    );
    assert_eq!(bad(transfer("[]").await).0, 400);
    assert_eq!(bad(transfer("nope").await), (400, "invalid_json".into()));
    let say =
        |body: &'static str| api::agent_post_message(&h.svc, &path, Some(&al), body.as_bytes());
    assert_eq!(
        bad(say(r#"{"content":""}"#).await),
        (400, "content_empty".into())
    );
    assert_eq!(bad(say(r#"{"content":"x","extra":1}"#).await).0, 400);
    assert_eq!(
        bad(say(r#"{"content":"x","clientMessageId":""}"#).await).0,
        400
    );
    let r = api::handoff(&h.svc, &s.path(), Some(&s.bearer()), br#"{"reason":5}"#).await;
    assert_eq!(r.status, 400);
    let r = api::handoff(&h.svc, &s.path(), Some(&s.bearer()), br#"{"other":"x"}"#).await;
    assert_eq!(r.status, 400);
    let r = api::handoff(&h.svc, &s.path(), None, b"").await;
    assert_eq!(r.status, 401);
    let inbox = |q: &'static str| api::agent_inbox(&h.svc, Some(&al), Some(q));
    assert_eq!(
        bad(inbox("view=everything").await),
        (400, "invalid_query".into())
    );
    assert_eq!(bad(inbox("limit=0").await).0, 400);
    assert_eq!(bad(inbox("limit=101").await).0, 400);
    assert_eq!(bad(inbox("cursor=garbage").await).0, 400);
    assert_eq!(bad(inbox("cursor=12_nope").await).0, 400);
    let r = api::agent_session(&h.svc, "not-a-session", Some(&alex())).await;
    assert_eq!(r.status, 404);
    let r = api::agent_session(&h.svc, &SessionId::new().to_string(), Some(&alex())).await;
    assert_eq!(r.status, 404);
    let r = api::agent_messages(&h.svc, &s.path(), Some(&alex()), Some("limit=0")).await;
    assert_eq!(r.status, 400);
    // Canned replies.
    let put = |id: Option<&'static str>, body: Value| {
        let h = &h;
        async move {
            api::agent_put_canned(&h.svc, id, Some(&alex()), body.to_string().as_bytes()).await
        }
    };
    let ok_body =
        |shortcut: &str| json!({"shortcut": shortcut, "title": "Hello", "text": "Hi there!"});
    for shortcut in ["", "Hello", "-x", "a b", &"x".repeat(33), "émoji"] {
        let r = put(None, ok_body(shortcut)).await;
        assert_eq!(bad(r), (400, "invalid_input".into()), "{shortcut:?}");
    }
    let r = put(None, json!({"shortcut": "hi", "title": "", "text": "x"})).await;
    assert_eq!(r.status, 400);
    let r = put(
        None,
        json!({"shortcut": "hi", "title": "x".repeat(101), "text": "x"}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = put(
        None,
        json!({"shortcut": "hi", "title": "t", "text": "x".repeat(4001)}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = put(None, json!({"shortcut": "hi", "title": "t"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(put(None, ok_body("hi")).await.status, 201);
    assert_eq!(
        bad(put(None, ok_body("hi")).await),
        (409, "conflict".into())
    );
    let unknown = "01JD9N0V8019F5A42YAM85WN8G";
    let r = api::agent_put_canned(
        &h.svc,
        Some(unknown),
        Some(&alex()),
        ok_body("x").to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = api::agent_delete_canned(&h.svc, unknown, Some(&alex())).await;
    assert_eq!(r.status, 404);
    let r = api::agent_delete_canned(&h.svc, "nope", Some(&alex())).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_reply_in_flight_at_the_handoff_is_stored_and_does_not_take_the_session_back() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "u1").await;
    agent_connect(&h, &alex(), "ag1").await;
    let (m, job) = h.user_message(&s, "question for the bot").await;
    // The dispatch is under way when Alex claims the session: n8n's answer comes after.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let late: AgentBody = Box::pin(futures_util::stream::once(async move {
        rx.await.ok();
        Ok(br#"{"output":"the bot's late answer"}"#.to_vec())
    }));
    h.agent.answer_with(late);
    let d = h.dispatcher.clone();
    let running = tokio::spawn(async move { d.run(job, 1).await });
    while h.agent.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        change(&h, &s, AgentChange::Claim, &alex(), "").await.status,
        200
    );
    h.push.take();
    tx.send(()).unwrap();
    assert_eq!(running.await.unwrap().unwrap(), DispatchOutcome::Delivered);
    let all = h.all_messages(&s.id).await;
    let reply = all
        .iter()
        .find(|x| x.content == "the bot's late answer")
        .expect("stored");
    assert_eq!(reply.reply_to, Some(m.id));
    assert_eq!(
        mode(&h, &s).await,
        "agent",
        "the late reply does not change the mode"
    );
    assert!(
        h.frames("u1")
            .iter()
            .any(|f| f["message"]["id"] == json!(reply.id))
    );
    assert!(
        h.frames("ag1")
            .iter()
            .any(|f| f["message"]["id"] == json!(reply.id)),
        "the holder sees the late reply"
    );
    // And the next user message is still for Alex only.
    h.send(&s, "and now?", None, None).await.unwrap();
    assert!(h.queue.drain().is_empty());
}

#[tokio::test]
async fn n8n_asks_for_a_person_with_a_handoff_reply() {
    let h = H::new();
    let s = h.session().await;
    let (m, _) = h.user_message(&s, "I want a human").await;
    let r = h
        .webhook(json!({"sessionId": s.path(), "replyTo": m.id.to_string(),
            "content": "Let me find a colleague.", "type": "handoff"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(mode(&h, &s).await, "waiting");
    let all = h.all_messages(&s.id).await;
    let reply = all.iter().find(|x| x.role == Role::Assistant).unwrap();
    assert_eq!(reply.kind, MessageType::Text, "stored as text");
    assert_eq!(all.last().unwrap().content, WAITING_TEXT);
    // Also when n8n answers in the response to the dispatch.
    let s2 = h.session().await;
    let (_, job) = h.user_message(&s2, "a person please").await;
    h.agent
        .answer_with(whole_body(r#"{"output":"Connecting…","type":"handoff"}"#));
    h.dispatcher.run(job, 1).await.unwrap();
    assert_eq!(mode(&h, &s2).await, "waiting");
    // A repeat of the callback changes nothing more.
    let again = h
        .webhook(json!({"sessionId": s.path(), "replyTo": m.id.to_string(),
            "content": "Let me find a colleague.", "type": "handoff"}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(notices(&h, &s).await.len(), 1);
}

#[tokio::test]
async fn the_handoff_timeout_gives_the_session_back_to_the_bot() {
    let mut c = chat_testkit::config();
    c.dispatch.handoff_timeout = Some(Duration::from_secs(60));
    let h = H::with_config(c);
    let s = h.session().await;
    handoff(&h, &s).await;
    let jobs = h.queue.drain_scheduled();
    assert_eq!(jobs.len(), 1);
    let (job, at) = jobs[0];
    assert_eq!(at, T0 + 60_000);
    assert_eq!(job.kind, chat_core::model::JobKind::Handoff);
    // Run early (a queue may): it asks to run again when due.
    h.clock.advance(30_000);
    assert_eq!(
        h.dispatcher.run(job, 1).await.unwrap(),
        DispatchOutcome::Retry(Duration::from_secs(30))
    );
    assert_eq!(mode(&h, &s).await, "waiting");
    h.clock.advance(30_000);
    h.dispatcher.run(job, 2).await.unwrap();
    assert_eq!(mode(&h, &s).await, "bot");
    assert_eq!(notices(&h, &s).await.last().unwrap().0, NO_ONE_TEXT);
    // A timeout of an earlier wait does nothing to a later one, nor to a claimed session.
    handoff(&h, &s).await;
    let (second, _) = h.queue.drain_scheduled()[0];
    h.dispatcher.run(job, 3).await.unwrap();
    assert_eq!(mode(&h, &s).await, "waiting");
    change(&h, &s, AgentChange::Claim, &alex(), "").await;
    h.clock.advance(60_000);
    h.dispatcher.run(second, 1).await.unwrap();
    assert_eq!(mode(&h, &s).await, "agent");
}

#[tokio::test]
async fn of_concurrent_claims_exactly_one_wins() {
    let h = H::new();
    let s = h.session().await;
    handoff(&h, &s).await;
    let tokens: Vec<String> = (0..10)
        .map(|i| bearer(&format!("a-{i}"), "Agent"))
        .collect();
    let results = futures_util::future::join_all(
        tokens
            .iter()
            .map(|t| change(&h, &s, AgentChange::Claim, t, "")),
    )
    .await;
    let won = results.iter().filter(|r| r.status == 200).count();
    let lost = results.iter().filter(|r| r.status == 409).count();
    assert_eq!((won, lost), (1, 9));
    let joined = notices(&h, &s)
        .await
        .iter()
        .filter(|n| n.1 == "agent")
        .count();
    assert_eq!(joined, 1, "one notice");
}

#[tokio::test]
async fn typing_goes_both_ways_and_presence_follows_the_user() {
    let h = H::new();
    let s = h.session().await;
    let ag = agent_connect(&h, &alex(), "ag1").await;
    h.connect(&s, "u1").await;
    // Not held: a typing frame is refused on the agent's connection.
    let frame = json!({"action":"typing","sessionId": s.path(),"isTyping":true}).to_string();
    h.svc.handle_agent_frame(&ag, frame.as_bytes()).await;
    let got = h.frames("ag1");
    assert_eq!(got.last().unwrap()["event"], "error");
    assert_eq!(got.last().unwrap()["code"], "conflict");
    assert!(h.frames("u1").is_empty());
    change(&h, &s, AgentChange::Claim, &alex(), "").await;
    h.push.take();
    h.svc.handle_agent_frame(&ag, frame.as_bytes()).await;
    assert_eq!(
        h.frames("u1"),
        [json!({"event":"typing","role":"agent","name":"Alex","isTyping":true})]
    );
    let conn = h.store.get_connection("u1").await.unwrap().unwrap();
    h.svc
        .handle_frame(&conn, br#"{"action":"typing","isTyping":true}"#)
        .await;
    assert_eq!(
        h.frames("ag1").last().unwrap(),
        &json!({"event":"typing","sessionId": s.path(),"role":"user","isTyping":true})
    );
    h.push.take();
    // The user's last connection closes, then a first one opens: presence to the holder.
    h.svc.disconnect("u1").await.unwrap();
    let p = h.frames("ag1");
    assert_eq!(p[0]["event"], "presence");
    assert_eq!(p[0]["sessionId"], s.path());
    assert_eq!(
        p[0]["participants"][0],
        json!({"role":"user","id":"guest","online":false})
    );
    h.connect(&s, "u2").await;
    let p = h.frames("ag1");
    assert_eq!(p.last().unwrap()["participants"][0]["online"], true);
    // The user asks by WebSocket frame too (already held: nothing changes).
    let conn = h.store.get_connection("u2").await.unwrap().unwrap();
    h.svc.handle_frame(&conn, br#"{"action":"handoff"}"#).await;
    assert_eq!(mode(&h, &s).await, "agent");
}

#[tokio::test]
async fn agents_see_each_other_and_their_status() {
    let h = H::new();
    let a = agent_connect(&h, &alex(), "ag1").await;
    agent_connect(&h, &sam(), "ag2").await;
    let list = |h: &H| {
        let svc = h.svc.clone();
        async move { json_of(&api::agent_agents(&svc, Some(&alex())).await)["agents"].clone() }
    };
    assert_eq!(
        list(&h).await,
        json!([{"id":"a-1","name":"Alex","status":"online","holding":0},
               {"id":"a-2","name":"Sam","status":"online","holding":0}])
    );
    let got = h.frames("ag1");
    assert!(
        got.iter().any(|f| f["event"] == "agents"),
        "Alex saw Sam arrive: {got:?}"
    );
    h.push.take();
    h.svc
        .handle_agent_frame(&a, br#"{"action":"status","status":"away"}"#)
        .await;
    assert_eq!(h.frames("ag2")[0]["agents"][0]["status"], "away");
    let s = h.session().await;
    change(&h, &s, AgentChange::Claim, &sam(), "").await;
    h.svc.disconnect_agent("ag2").await.unwrap();
    assert_eq!(
        list(&h).await,
        json!([{"id":"a-1","name":"Alex","status":"away","holding":0},
               {"id":"a-2","name":"Sam","status":"offline","holding":1}])
    );
    h.svc.handle_agent_frame(&a, br#"{"action":"ping"}"#).await;
    assert_eq!(h.frames("ag1").last().unwrap()["event"], "pong");
    h.svc.handle_agent_frame(&a, br#"{"action":"dance"}"#).await;
    assert_eq!(h.frames("ag1").last().unwrap()["code"], "unknown_action");
}

#[tokio::test]
async fn canned_replies_are_shared_and_searched() {
    let h = H::new();
    let post = |shortcut: &str, title: &str| {
        let body = json!({"shortcut": shortcut, "title": title, "text": format!("{title}!")});
        let h = &h;
        async move {
            api::agent_put_canned(&h.svc, None, Some(&alex()), body.to_string().as_bytes()).await
        }
    };
    let r = post("refund", "Refund policy").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = json_of(&r)["reply"]["id"].as_str().unwrap().to_string();
    post("hello", "Greeting").await;
    post("bye", "Goodbye").await;
    let list = |q: Option<&'static str>| {
        let h = &h;
        async move {
            let r = api::agent_canned(&h.svc, Some(&sam()), q).await;
            json_of(&r)["replies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["shortcut"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(None).await,
        ["bye", "hello", "refund"],
        "by shortcut, for every agent"
    );
    assert_eq!(list(Some("q=%2Fref")).await, ["refund"], "/shortcut search");
    assert_eq!(
        list(Some("q=re")).await,
        ["hello", "refund"],
        "shortcut or title (Greeting)"
    );
    assert_eq!(
        list(Some("q=GREET")).await,
        ["hello"],
        "title, case-insensitive"
    );
    assert_eq!(list(Some("q=e")).await, ["bye", "hello", "refund"]);
    let body = json!({"shortcut": "refunds", "title": "Refunds", "text": "Within 30 days."});
    let r =
        api::agent_put_canned(&h.svc, Some(&id), Some(&sam()), body.to_string().as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["reply"]["text"], "Within 30 days.");
    let clash = json!({"shortcut": "hello", "title": "x", "text": "x"});
    let r = api::agent_put_canned(
        &h.svc,
        Some(&id),
        Some(&sam()),
        clash.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 409);
    let r = api::agent_delete_canned(&h.svc, &id, Some(&alex())).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(list(None).await, ["bye", "hello"]);
}

#[tokio::test]
async fn the_inbox_pages_with_its_cursor() {
    let h = H::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let s = h.session().await;
        handoff(&h, &s).await;
        h.clock.advance(1000);
        ids.push(s.path());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let q = match &cursor {
            None => "view=waiting&limit=2".to_string(),
            Some(c) => format!("view=waiting&limit=2&cursor={c}"),
        };
        let v = json_of(&api::agent_inbox(&h.svc, Some(&alex()), Some(&q)).await);
        for s in v["sessions"].as_array().unwrap() {
            seen.push(s["sessionId"].as_str().unwrap().to_string());
        }
        match v.get("nextCursor") {
            Some(c) => cursor = Some(c.as_str().unwrap().to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "oldest wait first, each once");
    let r = api::agent_session(&h.svc, &ids[0], Some(&sam())).await;
    let v = json_of(&r);
    assert_eq!(v["session"]["mode"], "waiting");
    assert_eq!(v["messages"][0]["content"], WAITING_TEXT);
    assert_eq!(v["hasMore"], false);
}

#[tokio::test]
async fn a_pinging_agent_socket_outlives_two_hours() {
    let h = H::new();
    let ag = agent_connect(&h, &alex(), "ag1").await;
    // 90 minutes on, a ping renews the connection; without it the socket would count as
    // gone two hours after it opened.
    h.clock.advance(90 * 60_000);
    h.svc.handle_agent_frame(&ag, br#"{"action":"ping"}"#).await;
    h.clock.advance(60 * 60_000);
    h.push.take();
    let s = h.session().await;
    handoff(&h, &s).await;
    assert!(
        h.events("ag1").contains(&"inbox".to_string()),
        "the renewed socket still gets the inbox"
    );
    let renewed = h.store.get_agent_connection("ag1").await.unwrap().unwrap();
    assert_eq!(renewed.expires_at, T0 + 90 * 60_000 + 2 * HOUR);
}
