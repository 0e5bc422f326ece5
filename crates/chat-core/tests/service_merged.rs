//! The chat service: merged frames. A connection opened with `v=2` gets one round in three
//! frames (the `ack` carrying the message; `dispatched` with the assistant typing; the reply
//! with `answered`); one opened without it gets exactly today's frames, in the same round.

mod service_support;

use service_support::*;

async fn connect_v(h: &H, s: &S, id: &str, v: Option<&str>) -> Connection {
    h.svc
        .connect_version(Some(&s.path()), Some(&s.token), id, v)
        .await
        .expect("connect")
}

/// One round sent from `sender`: send, dispatch (n8n acknowledges), signed callback.
async fn round(h: &H, sender: &Connection) -> (Message, Message) {
    h.svc
        .handle_frame(
            sender,
            br#"{"action":"sendMessage","content":"hi","clientMessageId":"cm-1"}"#,
        )
        .await;
    let jobs = h.queue.drain();
    assert_eq!(jobs.len(), 1, "one job");
    assert_eq!(
        h.dispatcher.dispatch(jobs[0], 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let sent = h.all_messages(&sender.session_id).await[0].clone();
    let r = h
        .webhook(json!({"sessionId": sender.session_id.to_string(), "replyTo": sent.id.to_string(), "content": "hello", "eventId": "e-1"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reply = h.all_messages(&sender.session_id).await[1].clone();
    (sent, reply)
}

fn status(s: &S, m: &Message, status: &str) -> Value {
    json!({"sessionId": s.id.to_string(), "messageId": m.id.to_string(), "status": status})
}

fn with_event(event: &str, mut v: Value) -> Value {
    v.as_object_mut()
        .unwrap()
        .insert("event".into(), json!(event));
    v
}

#[tokio::test]
async fn a_v2_sender_gets_three_frames_and_an_old_connection_todays_six() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    let new = connect_v(&h, &s, "new", Some("2")).await;
    let old = connect_v(&h, &s, "old", None).await;
    assert!(new.merged && !old.merged);
    assert_eq!(
        h.store.get_connection("new").await.unwrap(),
        Some(new.clone()),
        "the store keeps the opt-in"
    );
    let (sent, reply) = round(&h, &new).await;
    let (mut sent_after, mut reply_after) = (msg_json(&sent), msg_json(&reply));
    sent_after["status"] = json!("received");
    reply_after["status"] = json!("delivered");
    let mut sent_at_push = msg_json(&sent);
    sent_at_push["status"] = json!("received");
    let ack =
        json!({"event":"ack","clientMessageId":"cm-1","messageId":sent.id.to_string(),"seq":1});

    // The v2 sender: the ack with the message; dispatched with typing; the reply with answered.
    let mut merged_ack = ack.clone();
    merged_ack["message"] = sent_at_push.clone();
    let mut dispatched = with_event("status", status(&s, &sent, "dispatched"));
    dispatched["typing"] = json!({"role":"assistant","isTyping":true});
    let mut answered = json!({"event":"message","message": reply_after.clone()});
    answered["status"] = status(&s, &sent, "answered");
    assert_eq!(h.frames("new"), vec![merged_ack, dispatched, answered]);

    // The old connection: exactly today's frames.
    assert_eq!(
        h.frames("old"),
        vec![
            json!({"event":"message","message": sent_at_push}),
            with_event("status", status(&s, &sent, "dispatched")),
            json!({"event":"typing","role":"assistant","isTyping":true}),
            json!({"event":"message","message": reply_after}),
            with_event("status", status(&s, &sent, "answered")),
        ]
    );
}

#[tokio::test]
async fn an_old_sender_gets_its_ack_then_the_message_and_a_v2_peer_merged_frames() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    let old = connect_v(&h, &s, "old", Some("1")).await;
    let new = connect_v(&h, &s, "new", Some("2")).await;
    assert!(!old.merged && new.merged);
    let (sent, _) = round(&h, &old).await;
    assert_eq!(
        h.events("old"),
        ["ack", "message", "status", "typing", "message", "status"],
        "an old sender: today's frames"
    );
    let f = h.frames("new");
    assert_eq!(
        h.events("new"),
        ["message", "status", "message"],
        "a v2 peer: the message, then two merged frames"
    );
    assert_eq!(f[0]["message"]["id"], json!(sent.id.to_string()));
    assert_eq!(f[1]["typing"]["isTyping"], json!(true));
    assert_eq!(f[2]["status"]["status"], json!("answered"));

    // A client retry on the v2 connection is acknowledged with the stored message again.
    h.push.take();
    h.svc
        .handle_frame(
            &new,
            br#"{"action":"sendMessage","content":"hi","clientMessageId":"cm-1"}"#,
        )
        .await;
    let f = h.frames("new");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (&f[0]["event"], &f[0]["message"]["id"]),
        (&json!("ack"), &json!(sent.id.to_string()))
    );
    assert!(h.frames("old").is_empty(), "a repeat pushes to no one else");
}

#[tokio::test]
async fn a_frame_version_that_is_not_a_number_is_refused() {
    let h = H::new();
    let s = h.session().await;
    for v in ["two", "0", "-1", ""] {
        let e = h
            .svc
            .connect_version(Some(&s.path()), Some(&s.token), "c", Some(v))
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "invalid_query"), "v={v}");
    }
    assert_eq!(h.store.get_connection("c").await.unwrap(), None);
    assert!(
        connect_v(&h, &s, "c", Some("3")).await.merged,
        "a later version too"
    );
}
