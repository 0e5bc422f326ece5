//! `CHAT_N8N_SESSION_START=true`, on the in-memory ports: a new session queues one
//! session-start job; n8n's greeting (whole or streamed) is stored once as the session's
//! assistant message; acknowledgements, bad bodies and an unreachable n8n leave the session
//! without a greeting and tell no one of a failure no one caused.

mod service_support;
use service_support::*;

use chat_core::model::JobKind;

fn greeting_harness() -> H {
    let mut config = chat_testkit::config();
    config.n8n_session_start = true;
    H::with_config(config)
}

/// A session with metadata, its session-start job, and connection `c1`.
async fn started(h: &H) -> (SessionId, DispatchJob) {
    let mut metadata = Map::new();
    metadata.insert("page".into(), json!("/pricing"));
    let c = h
        .svc
        .create_session_with("10.0.0.9", None, Some(metadata))
        .await
        .unwrap();
    let scheduled = h.queue.drain_scheduled();
    assert_eq!(scheduled.len(), 1, "one session-start job: {scheduled:?}");
    let (job, due) = scheduled[0];
    assert_eq!(
        (job.kind, job.session_id, due),
        (JobKind::SessionStart, c.session_id, h.now())
    );
    assert!(
        h.queue.drain().is_empty(),
        "no delivery of a message is queued"
    );
    h.connect(
        &S {
            id: c.session_id,
            token: c.token,
        },
        "c1",
    )
    .await;
    (c.session_id, job)
}

fn assistant(all: &[Message]) -> Vec<&Message> {
    all.iter().filter(|m| m.role == Role::Assistant).collect()
}

#[tokio::test]
async fn without_the_setting_no_session_start_is_queued() {
    let h = H::new();
    h.session().await;
    assert!(h.queue.drain_scheduled().is_empty());
    assert!(h.queue.drain().is_empty());
}

#[tokio::test]
async fn n8n_is_asked_with_the_session_metadata_and_its_answer_is_stored_once() {
    let h = greeting_harness();
    let (sid, job) = started(&h).await;
    h.agent
        .answer_with(whole_body(r#"[{"output":"Hi! Looking at our prices?"}]"#));
    assert_eq!(
        h.dispatcher.run(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );

    let requests = h.agent.requests();
    assert_eq!(requests.len(), 1);
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(sent["action"], "sessionStart");
    assert_eq!(sent["sessionId"], sid.to_string());
    assert_eq!(sent["messageId"], job.message_id.to_string());
    assert_eq!(
        (sent["content"].as_str(), sent["chatInput"].as_str()),
        (Some(""), Some(""))
    );
    assert_eq!(sent["sessionMetadata"], json!({"page":"/pricing"}));
    assert_eq!(sent["history"], json!([]));
    // Signed like every dispatch.
    assert!(
        signature::verify(
            WEBHOOK_SECRET,
            Some(&requests[0].timestamp),
            Some(&requests[0].signature),
            &requests[0].body,
            h.now() / 1000,
        )
        .is_ok()
    );

    let all = h.all_messages(&sid).await;
    let greeting = assistant(&all);
    assert_eq!(greeting.len(), 1);
    assert_eq!(greeting[0].content, "Hi! Looking at our prices?");
    assert_eq!((greeting[0].seq, greeting[0].reply_to), (1, None));
    assert_eq!(
        h.events("c1"),
        vec!["message"],
        "the greeting is pushed once"
    );

    // A redelivered job asks nothing and stores nothing.
    assert_eq!(
        h.dispatcher.run(job, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert_eq!(h.agent.requests().len(), 1);
    assert_eq!(h.all_messages(&sid).await.len(), 1);
}

#[tokio::test]
async fn a_streamed_greeting_is_stored_whole_without_deltas() {
    let h = greeting_harness();
    let (sid, job) = started(&h).await;
    let item = |t: &str| format!("{}\n", json!({"type":"item","content":t}));
    let body = format!(
        "{{\"type\":\"begin\"}}\n{}{}{{\"type\":\"end\"}}\n",
        item("Hello, "),
        item("how can I help?")
    );
    h.agent.answer_with(whole_body(body));
    assert_eq!(
        h.dispatcher.run(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let all = h.all_messages(&sid).await;
    assert_eq!(assistant(&all)[0].content, "Hello, how can I help?");
    assert_eq!(h.events("c1"), vec!["message"]);
}

#[tokio::test]
async fn an_acknowledgement_or_a_bad_body_stores_nothing_and_tells_no_one() {
    for body in [
        "",
        r#"{"ok":true}"#,
        r#"{"weird":1}"#,
        "not json",
        "{\"type\":\"begin\"}\n{\"type\":\"error\",\"content\":\"boom\"}\n",
    ] {
        let h = greeting_harness();
        let (sid, job) = started(&h).await;
        h.agent.answer_with(whole_body(body));
        assert_eq!(
            h.dispatcher.run(job, 1).await.unwrap(),
            DispatchOutcome::Delivered,
            "{body:?}"
        );
        assert!(h.all_messages(&sid).await.is_empty(), "{body:?}");
        assert!(h.events("c1").is_empty(), "{body:?}");
    }
}

#[tokio::test]
async fn an_unreachable_n8n_is_retried_then_the_session_starts_without_a_greeting() {
    let h = greeting_harness();
    let (sid, job) = started(&h).await;
    h.agent.set_failing(true);
    let max = chat_testkit::config().dispatch.max_attempts;
    for attempt in 1..max {
        assert!(
            matches!(
                h.dispatcher.run(job, attempt).await.unwrap(),
                DispatchOutcome::Retry(_)
            ),
            "attempt {attempt}"
        );
    }
    assert_eq!(
        h.dispatcher.run(job, max).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert!(
        h.all_messages(&sid).await.is_empty(),
        "no failure notice for a greeting"
    );
    assert!(h.events("c1").is_empty());
}

#[tokio::test]
async fn a_greeting_comes_by_callback_after_an_acknowledgement() {
    let h = greeting_harness();
    let (sid, job) = started(&h).await;
    assert_eq!(
        h.dispatcher.run(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let r = h
        .webhook(json!({"sessionId": sid.to_string(), "content": "Welcome back!", "eventId": format!("greeting-{}", job.message_id)}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let all = h.all_messages(&sid).await;
    assert_eq!(assistant(&all)[0].content, "Welcome back!");
}
