//! The chat service: Sending user messages: stored, queued, acknowledged, pushed; repeats, conflicts, limits.

mod service_support;

use service_support::*;

#[tokio::test]
async fn send_stores_received_queues_and_pushes_ack_first_to_origin_only() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.connect(&other, "c-other").await;
    assert!(h.push.take().is_empty(), "connecting pushes nothing");

    let m = h.send(&s, "hello", Some("cm-1"), Some("c1")).await.unwrap();
    assert_eq!(m.status, MessageStatus::Received);
    assert_eq!((m.seq, m.role, m.kind), (1, Role::User, MessageType::Text));
    assert_eq!(
        (m.content.as_str(), m.client_message_id.as_deref()),
        ("hello", Some("cm-1"))
    );
    assert_eq!(m.created_at, T0);
    assert_eq!(h.message(&s, &m.id).await, m, "stored as returned");
    assert_eq!(
        h.queue.drain(),
        vec![DispatchJob::dispatch(s.id, m.id).with_seq(m.seq)]
    );

    let frames = h.push.take();
    let parsed: Vec<(String, Value)> = frames
        .iter()
        .map(|(c, f)| (c.clone(), serde_json::from_str(f).unwrap()))
        .collect();
    assert_eq!(
        parsed.len(),
        3,
        "one ack and one message per connection: {parsed:?}"
    );
    assert_eq!(parsed[0].0, "c1", "the ack goes first, to the origin");
    assert_eq!(
        parsed[0].1,
        json!({"event":"ack","clientMessageId":"cm-1","messageId":m.id.to_string(),"seq":1})
    );
    let mut message_to: Vec<&str> = parsed[1..].iter().map(|(c, _)| c.as_str()).collect();
    message_to.sort();
    assert_eq!(
        message_to,
        ["c1", "c2"],
        "the message goes to every connection of the session"
    );
    for (_, f) in &parsed[1..] {
        assert_eq!(f, &json!({"event":"message","message":msg_json(&m)}));
    }
}

#[tokio::test]
async fn post_message_returns_202_with_the_stored_message() {
    let h = H::new();
    let s = h.session().await;
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"hi there","clientMessageId":"abc","metadata":{"page":"/pricing"}}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["message"]["status"], "received");
    assert_eq!(v["message"]["role"], "user");
    assert_eq!(v["message"]["type"], "text");
    assert_eq!(v["message"]["seq"], 1);
    assert_eq!(v["message"]["clientMessageId"], "abc");
    assert_eq!(v["message"]["metadata"], json!({"page":"/pricing"}));
    let stored = h.all_messages(&s.id).await;
    assert_eq!(v["message"], msg_json(&stored[0]));
    assert_eq!(h.queue.drain().len(), 1);
}

#[tokio::test]
async fn a_repeated_client_message_id_returns_the_same_message_and_writes_nothing() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    let first = h.send(&s, "hi", Some("cm-1"), Some("c1")).await.unwrap();
    let job = h.queue.drain()[0];
    h.push.take();

    let again = h.send(&s, "hi", Some("cm-1"), Some("c1")).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        h.all_messages(&s.id).await,
        vec![first.clone()],
        "nothing new stored"
    );
    assert_eq!(
        h.store
            .get_session(&s.id, h.now())
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        1
    );
    assert_eq!(
        h.events("c1"),
        ["ack"],
        "the origin gets its ack again, no new message"
    );
    assert!(
        h.frames("c2").is_empty(),
        "no message is pushed for a repeat"
    );
    // Still `received`: it may never have reached the queue, so it is queued again.
    assert_eq!(h.queue.drain(), vec![job]);

    // Once dispatched, a repeat is not queued again.
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let again = h.send(&s, "hi", Some("cm-1"), None).await.unwrap();
    assert_eq!(
        (again.id, again.status),
        (first.id, MessageStatus::Dispatched)
    );
    assert!(
        h.queue.drain().is_empty(),
        "a dispatched message is not queued again"
    );
    assert_eq!(h.all_messages(&s.id).await.len(), 1);

    // Via the API as well.
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"hi","clientMessageId":"cm-1"}"#,
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(json_of(&r)["message"]["id"], first.id.to_string());
}

#[tokio::test]
async fn a_client_message_id_reused_for_other_content_is_409() {
    let h = H::new();
    let s = h.session().await;
    let first = h.send(&s, "hi", Some("cm-1"), None).await.unwrap();
    h.queue.drain();
    let e = h
        .send(&s, "something else", Some("cm-1"), None)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (409, "conflict"));
    assert_eq!(h.all_messages(&s.id).await, vec![first]);
    assert!(h.queue.drain().is_empty(), "a conflict queues nothing");
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"x","clientMessageId":"cm-1"}"#,
    )
    .await;
    assert_eq!((r.status, code_of(&r).as_str()), (409, "conflict"));
}

#[tokio::test]
async fn a_repeat_after_an_enqueue_failure_enqueues_again() {
    let h = H::new();
    let s = h.session().await;
    h.queue.set_failing(true);
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"hi","clientMessageId":"cm-9"}"#,
    )
    .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (503, "unavailable"),
        "{}",
        r.body
    );
    assert_eq!(r.retry_after, Some(1), "503 tells the client to retry");
    let stored = h.all_messages(&s.id).await;
    assert_eq!(stored.len(), 1, "the message is stored before it is queued");
    assert_eq!(stored[0].status, MessageStatus::Received);
    assert!(h.queue.drain().is_empty());

    h.queue.set_failing(false);
    let m = h.send(&s, "hi", Some("cm-9"), None).await.unwrap();
    assert_eq!(m.id, stored[0].id, "the retry returns the stored message");
    assert_eq!(
        h.queue.drain(),
        vec![DispatchJob::dispatch(s.id, m.id).with_seq(m.seq)],
        "the retry queues it"
    );
    assert_eq!(h.all_messages(&s.id).await.len(), 1);
}

#[tokio::test]
async fn invalid_input_is_400_with_distinct_codes_and_writes_nothing() {
    let h = H::new();
    let s = h.session().await;
    let code = |r: Result<Message, ChatError>| {
        let e = r.expect_err("must be rejected");
        (e.status(), e.code())
    };
    assert_eq!(
        code(h.send(&s, "", None, None).await),
        (400, "content_empty")
    );
    assert_eq!(
        code(h.send(&s, " \n\t ", None, None).await),
        (400, "content_empty")
    );
    assert_eq!(
        code(h.send(&s, &"x".repeat(4001), None, None).await),
        (400, "content_too_long")
    );
    assert_eq!(
        code(h.send(&s, "hi", Some("has space"), None).await),
        (400, "invalid_input")
    );
    assert_eq!(
        code(h.send(&s, "hi", Some(&"k".repeat(129)), None).await),
        (400, "invalid_input")
    );

    let mut big = Map::new();
    big.insert("blob".into(), Value::String("x".repeat(4100)));
    let e = h
        .svc
        .send(
            h.sref(&s),
            SendInput {
                content: "hi".into(),
                client_message_id: None,
                metadata: Some(big),
                attachments: Vec::new(),
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "invalid_input"));
    assert!(e.to_string().contains("metadata"), "{e}");

    let post = |body: Vec<u8>| {
        let h = &h;
        let path = s.path();
        let auth = s.bearer();
        async move { api::post_message(&h.svc, &path, Some(&auth), &body).await }
    };
    for (body, status, want) in [
        (b"{nope".to_vec(), 400, "invalid_json"),
        (b"".to_vec(), 400, "invalid_json"),
        (br#"{"content":5}"#.to_vec(), 400, "invalid_input"),
        (b"{}".to_vec(), 400, "invalid_input"),
        (b"[1,2]".to_vec(), 400, "invalid_input"),
        (
            br#"{"content":"hi","metadata":"text"}"#.to_vec(),
            400,
            "invalid_input",
        ),
        (br#"{"content":""}"#.to_vec(), 400, "content_empty"),
        (
            format!(r#"{{"content":"{}"}}"#, "x".repeat(70_000)).into_bytes(),
            413,
            "too_large",
        ),
    ] {
        let r = post(body.clone()).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (status, want),
            "body {:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    assert!(
        h.all_messages(&s.id).await.is_empty(),
        "nothing is stored for invalid input"
    );
    assert!(h.queue.drain().is_empty());

    // The limits themselves are allowed: 4000 characters (not bytes), metadata just under 4 KB.
    let m = h.send(&s, &"é".repeat(4000), None, None).await.unwrap();
    assert_eq!(m.content.chars().count(), 4000);
    let mut ok_meta = Map::new();
    ok_meta.insert("blob".into(), Value::String("x".repeat(4000)));
    h.svc
        .send(
            h.sref(&s),
            SendInput {
                content: "hi".into(),
                client_message_id: None,
                metadata: Some(ok_meta),
                attachments: Vec::new(),
            },
            None,
        )
        .await
        .expect("metadata under 4 KB");
}

#[tokio::test]
async fn the_11th_message_in_a_minute_is_429_until_the_window_moves() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    h.clock.set(T0 + 15_000);
    for i in 1..=10 {
        h.send(&s, &format!("m{i}"), None, None)
            .await
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"m11"}"#,
    )
    .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (429, "rate_limited"),
        "{}",
        r.body
    );
    assert_eq!(
        r.retry_after,
        Some(6),
        "Retry-After is when the next token comes (10 per minute: one every 6 s)"
    );
    assert_eq!(
        h.all_messages(&s.id).await.len(),
        10,
        "the 11th is not stored"
    );
    h.send(&other, "hi", None, None)
        .await
        .expect("the limit is per session");

    h.clock.advance(5_999);
    assert_eq!(
        h.send(&s, "m11", None, None).await.unwrap_err().status(),
        429,
        "before the next token"
    );
    h.clock.advance(1);
    let m = h.send(&s, "m11", None, None).await.expect("the next token");
    assert_eq!(m.seq, 11);
    assert_eq!(
        h.send(&s, "m12", None, None).await.unwrap_err().status(),
        429,
        "one token, one message"
    );
}

#[tokio::test]
async fn a_minute_boundary_does_not_double_the_burst() {
    // Fixed windows let 10 through at 0:59 and 10 more at 1:01.
    let h = H::new();
    let s = h.session().await;
    let mut stored = 0;
    for (at, n) in [(59_000, 10), (61_000, 10)] {
        h.clock.set(T0 + at);
        for i in 0..n {
            if h.send(&s, &format!("m{at}-{i}"), None, None).await.is_ok() {
                stored += 1;
            }
        }
    }
    assert_eq!(stored, 10, "10 per minute, whatever the clock says");
}

#[tokio::test]
async fn a_retry_of_a_stored_message_is_answered_past_the_limit_and_spends_nothing() {
    let h = H::new();
    let s = h.session().await;
    let first = h.send(&s, "m1", Some("c1"), None).await.unwrap();
    for i in 2..=10 {
        h.send(&s, &format!("m{i}"), None, None).await.unwrap();
    }
    assert_eq!(
        h.send(&s, "m11", None, None).await.unwrap_err().status(),
        429
    );
    // The client did not see the ack of m1 and retries it, many times: each answered.
    for _ in 0..20 {
        let again = h.send(&s, "m1", Some("c1"), None).await.expect("a retry");
        assert_eq!(again.id, first.id);
    }
    // And the retries spent nothing: the next token comes when it would have anyway.
    h.clock.advance(6_000);
    h.send(&s, "m11", None, None).await.expect("the next token");
}
