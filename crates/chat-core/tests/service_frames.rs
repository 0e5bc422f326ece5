//! The chat service: WebSocket frames: connect, actions, read receipts, fan-out and gone connections.

mod service_support;

use service_support::*;

#[tokio::test]
async fn connect_remembers_the_connection_and_pushes_nothing() {
    let h = H::new();
    let s = h.session().await;
    let c = h.connect(&s, "c1").await;
    assert_eq!(c.session_id, s.id);
    assert_eq!(c.expires_at, T0 + 24 * HOUR);
    assert_eq!(h.store.get_connection("c1").await.unwrap(), Some(c.clone()));
    assert!(h.push.take().is_empty(), "$connect never pushes");
    assert_eq!(h.svc.connection("c1").await.unwrap(), Some(c.clone()));

    let e = h.svc.connect(None, Some(&s.token), "c2").await.unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "invalid_query"));
    let e = h
        .svc
        .connect(Some(&s.path()), None, "c2")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 401);
    assert_eq!(h.store.get_connection("c2").await.unwrap(), None);

    h.svc.disconnect("c1").await.unwrap();
    assert_eq!(h.store.get_connection("c1").await.unwrap(), None);
    h.svc
        .disconnect("c1")
        .await
        .expect("disconnecting twice is fine");

    let c = h.connect(&s, "c3").await;
    h.clock.set(c.expires_at);
    assert_eq!(
        h.svc.connection("c3").await.unwrap(),
        None,
        "an expired connection is unknown"
    );
}

#[tokio::test]
async fn an_unknown_action_is_an_error_frame_to_the_origin_only() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.svc.handle_frame(&c1, br#"{"action":"dance"}"#).await;
    let f = h.frames("c1");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0]["event"].as_str(), f[0]["code"].as_str()),
        (Some("error"), Some("unknown_action"))
    );
    assert!(
        f[0]["message"].as_str().unwrap().contains("sendMessage"),
        "the message lists the actions"
    );
    assert!(h.frames("c2").is_empty());

    h.push.take();
    for (frame, code) in [
        (&b"not json"[..], "invalid_json"),
        (&br#"{"content":"x"}"#[..], "missing_action"),
        (&br#"{"action":"read","upTo":"x"}"#[..], "invalid_input"),
    ] {
        h.svc.handle_frame(&c1, frame).await;
        let f = h.push.take();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "c1");
        let v: Value = serde_json::from_str(&f[0].1).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["code"].as_str()),
            (Some("error"), Some(code))
        );
    }
}

#[tokio::test]
async fn ping_gets_a_pong_to_the_origin_only() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.svc.handle_frame(&c1, br#"{"action":"ping"}"#).await;
    assert_eq!(
        h.push.take(),
        vec![("c1".to_string(), r#"{"event":"pong"}"#.to_string())]
    );
}

#[tokio::test]
async fn typing_is_relayed_to_the_other_connections_only() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.connect(&s, "c3").await;
    h.connect(&other, "c-other").await;
    h.svc
        .handle_frame(&c1, br#"{"action":"typing","isTyping":true}"#)
        .await;
    let typing = json!({"event":"typing","role":"user","isTyping":true});
    assert!(h.frames("c1").is_empty(), "not echoed to the typist");
    assert_eq!(h.frames("c2"), vec![typing.clone()]);
    assert_eq!(h.frames("c3"), vec![typing]);
    assert!(h.frames("c-other").is_empty(), "not to another session");
}

#[tokio::test]
async fn read_raises_the_mark_and_pushes_read() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    let (m, _) = h.user_message(&s, "hi").await;
    for (i, content) in ["one", "two"].iter().enumerate() {
        let r = h
            .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": content, "eventId": format!("e{i}")}))
            .await;
        assert_eq!(r.status, 200);
    }
    let view = json_of(&api::get_session(&h.svc, &s.path(), Some(&s.bearer())).await);
    assert_eq!(
        view["session"]["unreadCount"], 2,
        "two assistant messages unread: {view}"
    );
    assert_eq!(view["session"]["lastSeq"], 3);
    h.push.take();

    h.svc
        .handle_frame(&c1, br#"{"action":"read","upTo":2}"#)
        .await;
    assert_eq!(
        h.store
            .get_session(&s.id, h.now())
            .await
            .unwrap()
            .unwrap()
            .read_up_to,
        2
    );
    let read = json!({"event":"read","sessionId":s.id.to_string(),"upTo":2,"unreadCount":1});
    assert_eq!(h.frames("c1"), vec![read.clone()]);
    assert_eq!(h.frames("c2"), vec![read]);

    h.push.take();
    h.svc
        .handle_frame(&c1, br#"{"action":"read","upTo":1}"#)
        .await;
    assert_eq!(
        h.store
            .get_session(&s.id, h.now())
            .await
            .unwrap()
            .unwrap()
            .read_up_to,
        2,
        "never lowered"
    );
    assert_eq!(h.frames("c2")[0]["upTo"], 2);

    // Over HTTP: clamped to the last message.
    let r = api::mark_read(&h.svc, &s.path(), Some(&s.bearer()), br#"{"upTo":99}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        json_of(&r),
        json!({"sessionId": s.id.to_string(), "readUpTo": 3, "unreadCount": 0})
    );
    for bad in [
        &br#"{"upTo":"x"}"#[..],
        br#"{"upTo":1,"extra":true}"#,
        br#"{}"#,
    ] {
        let r = api::mark_read(&h.svc, &s.path(), Some(&s.bearer()), bad).await;
        assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_input"));
    }
}

#[tokio::test]
async fn send_message_frames_are_acked_and_their_errors_carry_the_client_message_id() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.svc
        .handle_frame(
            &c1,
            br#"{"action":"sendMessage","content":"hi","clientMessageId":"f-1"}"#,
        )
        .await;
    let stored = h.all_messages(&s.id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(h.events("c1"), ["ack", "message"]);
    assert_eq!(h.frames("c1")[0]["clientMessageId"], "f-1");
    assert_eq!(h.frames("c1")[0]["messageId"], stored[0].id.to_string());
    assert_eq!(h.events("c2"), ["message"]);
    assert_eq!(h.queue.drain().len(), 1);

    h.push.take();
    h.svc
        .handle_frame(
            &c1,
            br#"{"action":"sendMessage","content":" ","clientMessageId":"f-2"}"#,
        )
        .await;
    let f = h.frames("c1");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["event"], "error");
    assert_eq!(f[0]["code"], "content_empty");
    assert_eq!(f[0]["clientMessageId"], "f-2");
    assert!(h.frames("c2").is_empty());

    // Rate limiting over the socket is an error frame too.
    h.push.take();
    for i in 0..9 {
        h.send(&s, &format!("m{i}"), None, None).await.unwrap();
    }
    h.push.take();
    h.svc
        .handle_frame(
            &c1,
            br#"{"action":"sendMessage","content":"one too many","clientMessageId":"f-3"}"#,
        )
        .await;
    let f = h.frames("c1");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0]["code"].as_str(), f[0]["clientMessageId"].as_str()),
        (Some("rate_limited"), Some("f-3"))
    );
}

#[tokio::test]
async fn a_gone_connection_is_forgotten_by_the_next_broadcast() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.push.mark_gone("c2");
    let m = h.send(&s, "hi", None, None).await.unwrap();
    assert_eq!(
        h.store.get_connection("c2").await.unwrap(),
        None,
        "the gone connection is deleted"
    );
    assert!(
        h.store.get_connection("c1").await.unwrap().is_some(),
        "the live one stays"
    );
    assert_eq!(h.store.list_connections(&s.id).await.unwrap().len(), 1);
    assert_eq!(
        h.frames("c1"),
        vec![json!({"event":"message","message":msg_json(&m)})]
    );
}

#[tokio::test]
async fn a_stored_but_expired_connection_is_not_pushed_to() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "live").await;
    // A store may hold a connection past its expiry (DynamoDB's TTL deletes lazily).
    let stale = chat_core::model::Connection {
        id: "stale".into(),
        session_id: s.id,
        connected_at: h.now() - 2 * HOUR,
        expires_at: h.now() - 1,
        merged: false,
    };
    h.store.put_connection(&stale).await.unwrap();
    h.send(&s, "hi", None, None).await.unwrap();
    assert_eq!(h.frames("live").len(), 1);
    assert!(
        h.frames("stale").is_empty(),
        "nothing is pushed to an expired connection"
    );
}
