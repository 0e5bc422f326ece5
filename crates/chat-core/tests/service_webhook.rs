//! The chat service: n8n's replies through the webhook: signatures, idempotency, limits, bad input.

mod service_support;

use service_support::*;

#[tokio::test]
async fn a_reply_is_stored_once_per_event_id_answers_the_message_and_is_pushed() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    let (m, job) = h.user_message(&s, "when can we meet?").await;
    h.dispatcher.dispatch(job, 1).await.unwrap();
    h.push.take();

    let body = json!({
        "sessionId": s.id, "replyTo": m.id, "content": "Tuesday at 10?",
        "type": "scheduling_update", "data": {"slot": "2025-01-07T10:00:00Z"}, "eventId": "ev-1"
    });
    let r = h.webhook(body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reply_id: MessageId = json_of(&r)["messageId"].as_str().unwrap().parse().unwrap();
    let reply = h.message(&s, &reply_id).await;
    assert_eq!(
        (reply.role, reply.kind, reply.status),
        (
            Role::Assistant,
            MessageType::SchedulingUpdate,
            MessageStatus::Delivered
        )
    );
    assert_eq!((reply.seq, reply.reply_to), (2, Some(m.id)));
    assert_eq!(reply.content, "Tuesday at 10?");
    assert_eq!(
        Value::Object(reply.data.clone().unwrap()),
        json!({"slot": "2025-01-07T10:00:00Z"})
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    for c in ["c1", "c2"] {
        assert_eq!(
            h.frames(c),
            vec![
                json!({"event":"message","message":msg_json(&reply)}),
                json!({"event":"status","sessionId":s.id.to_string(),"messageId":m.id.to_string(),"status":"answered"}),
            ],
            "frames of {c}"
        );
    }

    // The same callback again (n8n retried): the same id, nothing written or pushed.
    h.push.take();
    h.clock.advance(5_000);
    let r = h.webhook(body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["messageId"], reply_id.to_string());
    assert_eq!(h.all_messages(&s.id).await.len(), 2);
    assert!(
        h.push.take().is_empty(),
        "a repeated callback pushes nothing"
    );

    // Another event for the same message is a new reply.
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "Or Wednesday?", "eventId": "ev-2"}))
        .await;
    assert_eq!(r.status, 200);
    assert_ne!(json_of(&r)["messageId"], reply_id.to_string());
    assert_eq!(h.all_messages(&s.id).await.len(), 3);
}

#[tokio::test]
async fn reply_to_without_event_id_also_dedupes() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, _) = h.user_message(&s, "hi").await;
    let body = json!({"sessionId": s.id, "replyTo": m.id, "content": "hello"});
    let r1 = h.webhook(body.clone()).await;
    assert_eq!(r1.status, 200, "{}", r1.body);
    h.push.take();
    let r2 = h.webhook(body).await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    assert_eq!(json_of(&r1)["messageId"], json_of(&r2)["messageId"]);
    assert_eq!(h.all_messages(&s.id).await.len(), 2);
    assert!(h.push.take().is_empty());

    // Without replyTo or eventId, the signature is the key: a captured call replayed within
    // the timestamp window stores nothing new.
    let news = json!({"sessionId": s.id, "content": "news"});
    let (ts, sig, bytes) = h.signed(&news);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = api::webhook(&h.svc, "192.0.2.9", Some(&ts), Some(&sig), &bytes).await;
        assert_eq!(r.status, 200, "{}", r.body);
        ids.push(json_of(&r)["messageId"].clone());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one reply: {ids:?}");
    assert_eq!(h.all_messages(&s.id).await.len(), 3);
    // Signed again later by n8n (a new timestamp), it is a new reply.
    h.clock.advance(1_000);
    assert_eq!(h.webhook(news).await.status, 200);
    assert_eq!(h.all_messages(&s.id).await.len(), 4);
}

/// An agent that, like a fast n8n, answers through the webhook before `deliver` returns.
struct AnsweringAgent {
    svc: ChatService,
}

#[async_trait]
impl Agent for AnsweringAgent {
    async fn deliver(&self, request: SignedRequest) -> Result<AgentBody, AgentError> {
        let v: Value = serde_json::from_slice(&request.body).unwrap();
        let body = serde_json::to_vec(&json!({
            "sessionId": v["sessionId"], "replyTo": v["messageId"], "content": "fast answer"
        }))
        .unwrap();
        let ts = (self.svc.now() / 1000).to_string();
        let sig = signature::sign(WEBHOOK_SECRET, &ts, &body);
        self.svc
            .receive_reply("192.0.2.1", Some(&ts), Some(&sig), &body)
            .await
            .map_err(|e| AgentError(e.to_string()))?;
        Ok(chat_core::ports::whole_body(Vec::new()))
    }
}

#[tokio::test]
async fn a_late_dispatched_never_regresses_answered() {
    let h = H::with_agent(chat_testkit::config(), |svc| {
        Arc::new(AnsweringAgent { svc: svc.clone() })
    });
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hi").await;
    h.push.take();

    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    assert_eq!(
        h.message(&s, &m.id).await.status,
        MessageStatus::Answered,
        "the answer that arrived during delivery stays"
    );
    let events = h.events("c1");
    assert_eq!(
        events,
        ["message", "status"],
        "no dispatched status or typing after the answer"
    );
    assert_eq!(h.frames("c1")[1]["status"], "answered");

    // A redelivery after the answer is skipped and changes nothing.
    h.push.take();
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    assert!(h.push.take().is_empty());
}

#[tokio::test]
async fn an_answer_before_the_dispatch_skips_it() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hi").await;
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "a"}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert!(
        h.agent.requests().is_empty(),
        "an answered message is not sent to n8n"
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
}

#[tokio::test]
async fn webhook_signature_failures_are_401_and_write_nothing() {
    let h = H::new();
    let s = h.session().await;
    let body = serde_json::to_vec(&json!({"sessionId": s.id, "content": "hi"})).unwrap();
    let now = (h.now() / 1000).to_string();
    let good = signature::sign(WEBHOOK_SECRET, &now, &body);
    let call = |ts: Option<String>, sig: Option<String>, body: Vec<u8>| {
        let h = &h;
        async move { api::webhook(&h.svc, "192.0.2.1", ts.as_deref(), sig.as_deref(), &body).await }
    };

    let wrong_secret = signature::sign(b"not the secret", &now, &body);
    let r = call(Some(now.clone()), Some(wrong_secret), body.clone()).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_signature"));
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let r = call(Some(now.clone()), Some(good.clone()), tampered).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_signature"));
    let r = call(None, Some(good.clone()), body.clone()).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "missing_signature"));
    let r = call(Some(now.clone()), None, body.clone()).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "missing_signature"));
    for skew in [-301, 301] {
        let ts = (h.now() / 1000 + skew).to_string();
        let sig = signature::sign(WEBHOOK_SECRET, &ts, &body);
        let r = call(Some(ts), Some(sig), body.clone()).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (401, "stale_timestamp"),
            "skew {skew}"
        );
    }
    assert!(h.all_messages(&s.id).await.is_empty());

    // 300 s of skew is still accepted.
    let ts = (h.now() / 1000 - 300).to_string();
    let sig = signature::sign(WEBHOOK_SECRET, &ts, &body);
    assert_eq!(call(Some(ts), Some(sig), body.clone()).await.status, 200);
    assert_eq!(call(Some(now), Some(good), body).await.status, 200);
}

#[tokio::test]
async fn webhook_for_an_unknown_session_or_reply_to_is_404() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    let (m, _) = h.user_message(&s, "hi").await;
    let (foreign, _) = h.user_message(&other, "elsewhere").await;

    let r = h
        .webhook(json!({"sessionId": SessionId::new(), "content": "hi"}))
        .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (404, "not_found"),
        "{}",
        r.body
    );
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": MessageId::new(), "content": "hi"}))
        .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (404, "not_found"),
        "{}",
        r.body
    );
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": foreign.id, "content": "hi"}))
        .await;
    assert_eq!(r.status, 404, "a replyTo of another session: {}", r.body);
    assert_eq!(h.all_messages(&s.id).await, vec![m.clone()]);
    assert_eq!(
        h.message(&other, &foreign.id).await.status,
        MessageStatus::Received
    );

    // A session past its retention (30 days after its last activity) is unknown too.
    h.clock.set(T0 + 31 * 24 * HOUR);
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "late"}))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test]
async fn webhook_with_a_wrong_type_or_shape_is_400() {
    let h = H::new();
    let s = h.session().await;
    for (body, code) in [
        (
            json!({"sessionId": s.id, "content": "hi", "type": "shout"}),
            "invalid_input",
        ),
        (
            json!({"sessionId": s.id, "content": "hi", "data": [1]}),
            "invalid_input",
        ),
        (json!({"sessionId": s.id}), "invalid_input"),
        (json!({"sessionId": s.id, "content": "  "}), "content_empty"),
        (
            json!({"sessionId": s.id, "content": "hi", "eventId": "has space"}),
            "invalid_input",
        ),
    ] {
        let r = h.webhook(body.clone()).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (400, code),
            "{body}: {}",
            r.body
        );
    }
    let (ts, sig, bytes) = {
        let bytes = b"{not json".to_vec();
        let ts = (h.now() / 1000).to_string();
        let sig = signature::sign(WEBHOOK_SECRET, &ts, &bytes);
        (ts, sig, bytes)
    };
    let r = api::webhook(&h.svc, "192.0.2.1", Some(&ts), Some(&sig), &bytes).await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_json"));
    assert!(h.all_messages(&s.id).await.is_empty());

    // Every contract type is accepted.
    for t in [
        "text",
        "confirmation",
        "clarification",
        "cancellation",
        "error",
        "info",
        "scheduling_update",
    ] {
        let r = h
            .webhook(json!({"sessionId": s.id, "content": "x", "type": t}))
            .await;
        assert_eq!(r.status, 200, "type {t}: {}", r.body);
        let id: MessageId = json_of(&r)["messageId"].as_str().unwrap().parse().unwrap();
        assert_eq!(h.message(&s, &id).await.kind.as_str(), t);
    }
}

#[tokio::test]
async fn the_61st_webhook_call_in_a_minute_for_one_session_is_429() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    let reply = |s: &S, i: usize| json!({"sessionId": s.id, "content": format!("r{i}"), "eventId": format!("e{i}")});
    for i in 0..60 {
        let r = h.webhook(reply(&s, i)).await;
        assert_eq!(r.status, 200, "call {i}: {}", r.body);
    }
    let r = h.webhook(reply(&s, 60)).await;
    assert_eq!((r.status, code_of(&r).as_str()), (429, "rate_limited"));
    assert_eq!(
        r.retry_after,
        Some(1),
        "60 per minute: a token every second"
    );
    // The limit is per session: another session's replies pass.
    for i in 0..60 {
        assert_eq!(
            h.webhook(reply(&other, i)).await.status,
            200,
            "other session, call {i}"
        );
    }
    // A repeat is answered from its idempotency record and counts against nothing.
    let stored = h.webhook(reply(&s, 7)).await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    h.clock.advance(1_000);
    assert_eq!(h.webhook(reply(&s, 60)).await.status, 200, "the next token");
}

#[tokio::test]
async fn refused_webhook_calls_are_limited_per_source_ip() {
    let h = H::new();
    let s = h.session().await;
    let body = serde_json::to_vec(&json!({"sessionId": s.id, "content": "x"})).unwrap();
    let ts = (h.now() / 1000).to_string();
    for i in 0..60 {
        let r = api::webhook(&h.svc, "198.51.100.1", Some(&ts), Some("sha256=00"), &body).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (401, "invalid_signature"),
            "call {i}"
        );
    }
    let r = api::webhook(&h.svc, "198.51.100.1", Some(&ts), Some("sha256=00"), &body).await;
    assert_eq!((r.status, r.retry_after), (429, Some(1)), "{}", r.body);
    let r = api::webhook(&h.svc, "198.51.100.1", None, None, &body).await;
    assert_eq!(r.status, 429, "missing signatures count too");
    // Another address, and the session's own signed replies, are not affected.
    let r = api::webhook(&h.svc, "198.51.100.2", Some(&ts), Some("sha256=00"), &body).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        h.webhook(json!({"sessionId": s.id, "content": "ok"}))
            .await
            .status,
        200
    );
}
