//! The chat service: Delivery to n8n: attempts, backoff, the dead letter, and what n8n receives.

mod service_support;

use service_support::*;

#[tokio::test]
async fn delivered_marks_dispatched_and_pushes_status_and_typing_and_redelivery_is_skipped() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hello").await;
    h.push.take();

    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Dispatched);
    assert_eq!(
        h.frames("c1"),
        vec![
            json!({"event":"status","sessionId":s.id.to_string(),"messageId":m.id.to_string(),"status":"dispatched"}),
            json!({"event":"typing","role":"assistant","isTyping":true}),
        ]
    );
    assert_eq!(h.agent.requests().len(), 1);

    h.push.take();
    for attempt in [1, 2] {
        assert_eq!(
            h.dispatcher.dispatch(job, attempt).await.unwrap(),
            DispatchOutcome::Skipped,
            "a redelivery (attempt {attempt}) is skipped"
        );
    }
    assert_eq!(h.agent.requests().len(), 1, "n8n is not called again");
    assert!(
        h.push.take().is_empty(),
        "a skipped redelivery pushes nothing"
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Dispatched);

    // A job for a message that does not exist is skipped too.
    let ghost = DispatchJob::dispatch(s.id, MessageId::new());
    assert_eq!(
        h.dispatcher.dispatch(ghost, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
}

#[tokio::test]
async fn a_failing_agent_is_retried_with_doubling_delays_then_dead_lettered() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hello").await;
    h.push.take();
    h.agent.set_failing(true);

    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Retry(Duration::from_millis(1000))
    );
    assert_eq!(
        h.dispatcher.dispatch(job, 2).await.unwrap(),
        DispatchOutcome::Retry(Duration::from_millis(2000))
    );
    assert_eq!(
        h.message(&s, &m.id).await.status,
        MessageStatus::Received,
        "still waiting"
    );
    assert!(h.push.take().is_empty(), "retries push nothing");
    assert_eq!(
        h.dispatcher.dispatch(job, 3).await.unwrap(),
        DispatchOutcome::DeadLettered
    );
    assert_eq!(h.agent.requests().len(), 3, "three attempts reached n8n");

    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Failed);
    let all = h.all_messages(&s.id).await;
    assert_eq!(all.len(), 2);
    let sys = &all[1];
    assert_eq!(
        (sys.role, sys.kind, sys.status),
        (Role::System, MessageType::Error, MessageStatus::Delivered)
    );
    assert_eq!(sys.reply_to, Some(m.id));
    assert_eq!(sys.content, FAILED_TEXT);
    assert_eq!(sys.seq, 2);
    assert_eq!(
        h.frames("c1"),
        vec![
            json!({"event":"status","sessionId":s.id.to_string(),"messageId":m.id.to_string(),"status":"failed"}),
            json!({"event":"message","message":msg_json(sys)}),
            json!({"event":"typing","role":"assistant","isTyping":false}),
        ]
    );
    let v = msg_json(sys);
    assert_eq!(
        (v["role"].as_str(), v["type"].as_str()),
        (Some("system"), Some("error"))
    );
    assert_eq!(v["replyTo"], m.id.to_string());
}

#[tokio::test]
async fn retry_delays_double_from_the_configured_backoff() {
    let mut config = chat_testkit::config();
    config.dispatch.max_attempts = 4;
    config.dispatch.backoff = Duration::from_millis(250);
    let h = H::with_config(config);
    let s = h.session().await;
    let (_, job) = h.user_message(&s, "hello").await;
    h.agent.set_failing(true);
    let mut outcomes = Vec::new();
    for attempt in 1..=4 {
        outcomes.push(h.dispatcher.dispatch(job, attempt).await.unwrap());
    }
    assert_eq!(
        outcomes,
        vec![
            DispatchOutcome::Retry(Duration::from_millis(250)),
            DispatchOutcome::Retry(Duration::from_millis(500)),
            DispatchOutcome::Retry(Duration::from_millis(1000)),
            DispatchOutcome::DeadLettered,
        ]
    );
}

#[tokio::test]
async fn an_agent_that_recovers_delivers_on_a_later_attempt() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hello").await;
    h.agent.set_failing(true);
    assert!(matches!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Retry(_)
    ));
    h.agent.set_failing(false);
    assert_eq!(
        h.dispatcher.dispatch(job, 2).await.unwrap(),
        DispatchOutcome::Delivered
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Dispatched);
    assert_eq!(h.all_messages(&s.id).await.len(), 1, "no error message");
}

#[tokio::test]
async fn dead_letter_twice_writes_one_system_message() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hello").await;
    h.dispatcher.dead_letter(job).await.unwrap();
    assert_eq!(h.all_messages(&s.id).await.len(), 2);
    h.push.take();
    h.dispatcher.dead_letter(job).await.unwrap();
    let all = h.all_messages(&s.id).await;
    assert_eq!(all.len(), 2, "the second dead letter writes nothing");
    assert_eq!(all.iter().filter(|x| x.role == Role::System).count(), 1);
    assert!(
        h.push.take().is_empty(),
        "the second dead letter pushes nothing"
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Failed);
}

#[tokio::test]
async fn dead_letter_after_an_answer_does_nothing() {
    let h = H::new();
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hello").await;
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "answer"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    h.dispatcher.dead_letter(job).await.unwrap();
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    assert!(
        h.all_messages(&s.id)
            .await
            .iter()
            .all(|x| x.role != Role::System),
        "no error message after an answer"
    );
}

#[tokio::test]
async fn the_outbound_request_is_signed_and_carries_the_message_history_and_callback() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    let first = h.send(&s, "first", None, None).await.unwrap();
    h.clock.advance(2_000);
    let second = h
        .svc
        .send(
            h.sref(&s),
            SendInput {
                content: "second".into(),
                client_message_id: Some("cm-2".into()),
                metadata: Some(json!({"page": "/pricing"}).as_object().unwrap().clone()),
                attachments: Vec::new(),
            },
            None,
        )
        .await
        .unwrap();
    let jobs = h.queue.drain();
    assert_eq!(jobs.len(), 2);
    h.clock.advance(3_000);
    assert_eq!(
        h.dispatcher.dispatch(jobs[1], 1).await.unwrap(),
        DispatchOutcome::Delivered
    );

    let reqs = h.agent.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.timestamp, (h.now() / 1000).to_string());
    signature::verify(
        WEBHOOK_SECRET,
        Some(&req.timestamp),
        Some(&req.signature),
        &req.body,
        h.now() / 1000,
    )
    .expect("the outbound request verifies with the webhook secret");
    assert!(
        signature::verify(
            b"wrong",
            Some(&req.timestamp),
            Some(&req.signature),
            &req.body,
            h.now() / 1000
        )
        .is_err(),
        "and only with it"
    );
    let v: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(v["sessionId"], s.id.to_string());
    assert_eq!(v["messageId"], second.id.to_string());
    assert_eq!(v["content"], "second");
    assert_eq!(v["metadata"], json!({"page": "/pricing"}));
    assert!(v.get("userId").is_none(), "a guest has no userId");
    assert_eq!(
        v["history"],
        json!([msg_json(&first)]),
        "history is the earlier messages only"
    );
    assert_eq!(v["callbackUrl"], "http://127.0.0.1:3000/webhook");
}

#[tokio::test]
async fn the_outbound_request_names_the_user_and_trims_the_public_url() {
    let mut config = chat_testkit::config();
    config.public_url = "https://chat.example.com/".into();
    let h = H::with_config(config);
    let jwt = app_jwt(APP_SECRET, "user-7", T0 / 1000 + 600);
    let c = h.svc.create_session("192.0.2.1", Some(&jwt)).await.unwrap();
    let s = S {
        id: c.session_id,
        token: c.token,
    };
    let (_, job) = h.user_message(&s, "hi").await;
    h.dispatcher.dispatch(job, 1).await.unwrap();
    let v: Value = serde_json::from_slice(&h.agent.requests()[0].body).unwrap();
    assert_eq!(v["userId"], "user-7");
    assert_eq!(v["callbackUrl"], "https://chat.example.com/webhook");
    assert_eq!(v["history"], json!([]));
}

/// A job names its message's seq (one query brings the message and its history); a job
/// whose seq names another message, or none (an older record, a redrive), still delivers its
/// own message, with the history before it.
#[tokio::test]
async fn a_job_is_delivered_by_its_seq_and_by_its_id_when_the_seq_does_not_match() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    let (first, job1) = h.user_message(&s, "first").await;
    let (second, job2) = h.user_message(&s, "second").await;
    assert_eq!(
        (job1.seq, job2.seq),
        (Some(first.seq), Some(second.seq)),
        "the send names the seq"
    );
    let delivered = |i: usize| -> (Value, Vec<Value>) {
        let body: Value = serde_json::from_slice(&h.agent.requests()[i].body).unwrap();
        let history = body["history"].as_array().unwrap().clone();
        (body["messageId"].clone(), history)
    };
    // The first message's job, naming the second's seq: read by its id.
    let wrong = DispatchJob {
        seq: Some(second.seq),
        ..job1
    };
    assert_eq!(
        h.dispatcher.dispatch(wrong, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let (id, history) = delivered(0);
    assert_eq!(id, json!(first.id.to_string()));
    assert!(history.is_empty(), "nothing before the first: {history:?}");
    // The second's, by its seq: the first is its history.
    assert_eq!(
        h.dispatcher.dispatch(job2, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let (id, history) = delivered(1);
    assert_eq!(id, json!(second.id.to_string()));
    assert_eq!(
        history.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(),
        vec![json!(first.id.to_string())]
    );
    // Without a seq (a redrive), after both were dispatched: skipped as a redelivery.
    let redriven = DispatchJob::dispatch(s.id, second.id);
    assert_eq!(
        h.dispatcher.dispatch(redriven, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
}
