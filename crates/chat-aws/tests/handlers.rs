//! Every Lambda handler driven with the sample events of `events/`, against the emulator over
//! the real wire protocol: DynamoDB, SQS (with the template's redrive to a DLQ) and
//! PostToConnection, whose frames are read back through the emulator's recorder. n8n is a
//! local fake that checks our signature.

use chat_testkit::aws::emulator as common;
mod world;

use chat_aws::handlers;
use serde_json::{Value, json};
use world::*;

#[tokio::test]
async fn a_full_chat_round_over_the_emulator() {
    let w = world().await;
    let (sid, token) = w.session().await;
    let c1 = w.connect(&sid, &token).await;
    let c2 = w.connect(&sid, &token).await;
    assert!(
        w.item(&format!("CONN#{c1}"), "CONN").await.is_some(),
        "connection stored"
    );
    assert!(
        common::pushed_to(&c1).await.is_empty(),
        "$connect pushes nothing"
    );

    // The user sends over the WebSocket (the sample event, on c1).
    let mut e = event("send-ws-message");
    e["requestContext"]["connectionId"] = json!(c1);
    let (status, _) = w.ws(e).await;
    assert_eq!(status, 200);
    let f1 = common::pushed_to(&c1).await;
    assert_eq!(f1[0]["event"], "ack", "{f1:#?}");
    assert_eq!(f1[0]["clientMessageId"], "c-1");
    let user_id = f1[0]["messageId"].as_str().unwrap().to_string();
    assert_eq!(f1[1]["event"], "message");
    assert_eq!(f1[1]["message"]["content"], "Hello");
    let f2 = common::pushed_to(&c2).await;
    assert_eq!(
        f2.len(),
        1,
        "the other connection gets the message, not the ack"
    );
    assert_eq!(f2[0]["message"]["id"], user_id.as_str());

    // The dispatch function gets the queued job and delivers it, signed, to n8n.
    let batch = w.receive_jobs(1).await;
    let out = handlers::dispatch(&w.app, batch).await;
    assert!(out.batch_item_failures.is_empty());
    assert_eq!(w.n8n.count(), 1);
    let payload = w.n8n.received.lock().unwrap()[0].clone();
    assert_eq!(
        (payload["sessionId"].as_str(), payload["messageId"].as_str()),
        (Some(sid.as_str()), Some(user_id.as_str()))
    );
    assert_eq!(payload["content"], "Hello");
    assert_eq!(payload["callbackUrl"], "https://api.example.com/webhook");
    let f2 = common::pushed_to(&c2).await;
    assert_eq!(events_of(&f2, "status")[0]["status"], "dispatched");
    assert_eq!(events_of(&f2, "typing")[0]["role"], "assistant");

    // n8n answers through the webhook function (twice: the repeat is a no-op).
    let reply = json!({"sessionId": sid, "replyTo": user_id, "content": "Hi! How can I help?",
                       "type": "text", "data": {"source": "agent"}, "eventId": "evt-0001"});
    let (s1, b1) = w.http(w.signed_reply(&reply)).await;
    let (s2, b2) = w.http(w.signed_reply(&reply)).await;
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    assert_eq!(b1["messageId"], b2["messageId"]);
    for c in [&c1, &c2] {
        let frames = common::pushed_to(c).await;
        let replies: Vec<_> = events_of(&frames, "message")
            .into_iter()
            .filter(|f| f["message"]["role"] == "assistant")
            .collect();
        assert_eq!(replies.len(), 1, "one reply pushed to {c}: {frames:#?}");
        assert_eq!(replies[0]["message"]["replyTo"], user_id.as_str());
        assert!(
            events_of(&frames, "status")
                .iter()
                .any(|f| f["status"] == "answered")
        );
    }

    let h = w.history(&sid, &token).await;
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0]["status"].as_str(), h[1]["role"].as_str()),
        (Some("answered"), Some("assistant"))
    );
    assert_eq!(h[1]["data"], json!({"source": "agent"}));

    // GET /sessions/{id}, typing, ping, read over the WebSocket routes.
    let (status, view) = w.http(w.authed("session-get", &sid, &token)).await;
    assert_eq!(status, 200);
    assert_eq!(view["session"]["unreadCount"], 1, "{view}");
    let mut e = event("send-ws-typing");
    e["requestContext"]["connectionId"] = json!(c1);
    w.ws(e).await;
    let mut e = event("send-ws-ping");
    e["requestContext"]["connectionId"] = json!(c1);
    w.ws(e).await;
    let mut e = event("send-ws-read");
    e["requestContext"]["connectionId"] = json!(c1);
    w.ws(e).await;
    let (f1, f2) = (common::pushed_to(&c1).await, common::pushed_to(&c2).await);
    assert_eq!(
        events_of(&f2, "typing")
            .iter()
            .filter(|f| f["role"] == "user")
            .count(),
        1
    );
    assert!(
        events_of(&f1, "typing").iter().all(|f| f["role"] != "user"),
        "not echoed to the typist"
    );
    assert_eq!(events_of(&f1, "pong").len(), 1);
    assert!(events_of(&f2, "pong").is_empty());
    for f in [&f1, &f2] {
        let read = events_of(f, "read");
        assert_eq!(
            (read[0]["upTo"].as_u64(), read[0]["unreadCount"].as_u64()),
            (Some(2), Some(0))
        );
    }

    // $disconnect forgets both of the connection's items.
    let mut e = event("disconnect");
    e["requestContext"]["connectionId"] = json!(c2);
    assert_eq!(w.ws(e).await.0, 200);
    assert!(w.item(&format!("CONN#{c2}"), "CONN").await.is_none());
    assert!(
        w.item(&format!("SESSION#{sid}"), &format!("CONN#{c2}"))
            .await
            .is_none()
    );
    assert!(w.item(&format!("CONN#{c1}"), "CONN").await.is_some());
}

#[tokio::test]
async fn a_connection_answering_410_gone_is_deleted() {
    let w = world_with(Some(gone_endpoint().await), &[]).await;
    let (sid, token) = w.session().await;
    let c = w.connect(&sid, &token).await;
    let (status, body) = w.http(w.authed("send-http", &sid, &token)).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        w.item(&format!("CONN#{c}"), "CONN").await.is_none(),
        "lookup item deleted"
    );
    assert!(
        w.item(&format!("SESSION#{sid}"), &format!("CONN#{c}"))
            .await
            .is_none(),
        "fan-out item deleted"
    );
    // The message itself was stored and queued regardless.
    assert_eq!(w.history(&sid, &token).await.len(), 1);
    assert_eq!(w.queue_depth(&w.f.queue_url).await, 1);
}

#[tokio::test]
async fn one_bad_record_fails_alone_in_its_batch() {
    let w = world().await;
    let (sid, token) = w.session().await;
    let (status, _) = w.http(w.authed("send-http", &sid, &token)).await;
    assert_eq!(status, 202);
    let mut batch = serde_json::to_value(w.receive_jobs(1).await).unwrap();
    let bad = event("dispatch-bad-record")["Records"][0].clone();
    let bad_id = bad["messageId"].as_str().unwrap().to_string();
    batch["Records"].as_array_mut().unwrap().push(bad);
    let out = handlers::dispatch(&w.app, serde_json::from_value(batch).unwrap()).await;
    let failed: Vec<_> = out
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, [bad_id.as_str()]);
    assert_eq!(w.n8n.count(), 1, "the good record was delivered once");
    assert_eq!(w.history(&sid, &token).await[0]["status"], "dispatched");

    // The sample bad-record event alone.
    let out = handlers::dispatch(
        &w.app,
        serde_json::from_value(event("dispatch-bad-record")).unwrap(),
    )
    .await;
    assert_eq!(out.batch_item_failures.len(), 1);
}

#[tokio::test]
async fn n8n_failing_is_retried_with_backoff_then_dead_lettered_and_the_queue_redrives() {
    let w = world_with(None, &[("CHAT_DISPATCH_BACKOFF_MS", "100")]).await;
    *w.n8n.status.lock().unwrap() = 500;
    let (sid, token) = w.session().await;
    let c = w.connect(&sid, &token).await;
    w.ws_frame(
        &c,
        json!({"action":"sendMessage","content":"anyone?","clientMessageId":"r-1"}),
    )
    .await;

    // Attempt 1 fails: reported as a batch failure, and the record hidden for the backoff.
    let batch = w.receive_jobs(1).await;
    let record_id = batch.records[0].message_id.clone().unwrap();
    let out = handlers::dispatch(&w.app, batch).await;
    assert_eq!(out.batch_item_failures.len(), 1);
    assert_eq!(out.batch_item_failures[0].item_identifier, record_id);
    let sqs = aws_sdk_sqs::Client::new(&w.f.sdk);
    let hidden = sqs
        .receive_message()
        .queue_url(&w.f.queue_url)
        .send()
        .await
        .unwrap();
    assert!(
        hidden.messages.unwrap_or_default().is_empty(),
        "hidden during the backoff"
    );
    // Attempt 2 after the backoff, then the last (receive count = max attempts): it fails
    // too, so the message is failed and the user told; the record is released at once and
    // the queue's redrive policy moves it to the dead-letter queue, for a redrive.
    for attempt in 2..=3 {
        let batch = w.receive_jobs(1).await;
        assert_eq!(
            batch.records[0].attributes["ApproximateReceiveCount"],
            attempt.to_string()
        );
        let out = handlers::dispatch(&w.app, batch).await;
        assert_eq!(out.batch_item_failures.len(), 1, "attempt {attempt}");
    }
    assert_eq!(w.n8n.count(), 3);
    w.wait_dead_lettered(1).await;
    let h = w.history(&sid, &token).await;
    assert_eq!(h[0]["status"], "failed");
    assert_eq!(
        (h[1]["role"].as_str(), h[1]["type"].as_str()),
        (Some("system"), Some("error"))
    );
    let frames = common::pushed_to(&c).await;
    assert!(
        events_of(&frames, "status")
            .iter()
            .any(|f| f["status"] == "failed")
    );
    assert!(
        events_of(&frames, "message")
            .iter()
            .any(|f| f["message"]["role"] == "system")
    );

    // A record that keeps failing is moved to the DLQ by the template's redrive policy.
    let (status, _) = w.http(w.authed("send-http", &sid, &token)).await;
    assert_eq!(status, 202);
    let max = common::template()["maxReceiveCount"].as_u64().unwrap();
    for _ in 0..max {
        let batch = w.receive_jobs(1).await;
        let receipt = batch.records[0].receipt_handle.clone().unwrap();
        sqs.change_message_visibility()
            .queue_url(&w.f.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    let after = sqs
        .receive_message()
        .queue_url(&w.f.queue_url)
        .send()
        .await
        .unwrap();
    assert!(
        after.messages.unwrap_or_default().is_empty(),
        "moved off the queue"
    );
    assert_eq!(
        w.queue_depth(&w.f.dlq_url).await,
        2,
        "in the dead-letter queue too"
    );
}

#[tokio::test]
async fn bad_events_are_refused_in_the_contract_shape_and_write_nothing() {
    let w = world().await;
    let (sid, token) = w.session().await;
    let c = w.connect(&sid, &token).await;
    let before = w.partition_size(&sid).await;

    let code = |b: &Value| b["error"]["code"].as_str().unwrap_or("").to_string();
    let (s, b) = w.http(event("session-create-bad-json")).await;
    assert_eq!((s, code(&b).as_str()), (400, "invalid_json"));
    let mut e = event("session-get-no-token");
    e["pathParameters"]["id"] = json!(sid);
    let (s, b) = w.http(e).await;
    assert_eq!((s, code(&b).as_str()), (401, "missing_token"));
    let (s, b) = w
        .http(w.authed("send-http-empty-content", &sid, &token))
        .await;
    assert_eq!((s, code(&b).as_str()), (400, "content_empty"));
    let (s, b) = w.http(w.authed("session-get", &sid, "not-a-token")).await;
    assert_eq!((s, code(&b).as_str()), (401, "invalid_token"));
    let (other, _) = w.session().await;
    let (s, b) = w.http(w.authed("session-get", &other, &token)).await;
    assert_eq!((s, code(&b).as_str()), (403, "forbidden"));

    let mut e = event("webhook-bad-signature");
    e["headers"]["x-chat-timestamp"] =
        json!((chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000).to_string());
    let (s, b) = w.http(e).await;
    assert_eq!((s, code(&b).as_str()), (401, "invalid_signature"));
    let (s, b) = w.http(event("webhook-reply")).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (401, "stale_timestamp"),
        "the sample's own timestamp is old"
    );
    let (s, b) = w
        .http(w.signed_reply(&json!({"sessionId": sid, "content": "x", "type": "dance"})))
        .await;
    assert_eq!((s, code(&b).as_str()), (400, "invalid_input"));
    let (s, b) = w
        .http(w.signed_reply(&json!({"sessionId": ulid::Ulid::new().to_string(), "content": "x"})))
        .await;
    assert_eq!((s, code(&b).as_str()), (404, "not_found"));

    let mut e = event("connect-missing-token");
    e["queryStringParameters"]["sessionId"] = json!(sid);
    let id = conn_id();
    e["requestContext"]["connectionId"] = json!(id);
    let (s, b) = w.ws(e).await;
    assert_eq!((s, code(&b).as_str()), (401, "missing_token"));
    assert!(w.item(&format!("CONN#{id}"), "CONN").await.is_none());

    for (name, expected) in [
        ("send-ws-unknown-action", "unknown_action"),
        ("send-ws-bad-json", "invalid_json"),
    ] {
        let mut e = event(name);
        e["requestContext"]["connectionId"] = json!(c);
        assert_eq!(w.ws(e).await.0, 200);
        let frames = common::pushed_to(&c).await;
        assert_eq!(frames.last().unwrap()["code"], expected, "{frames:#?}");
    }
    // A message from a connection nobody knows is told to reconnect.
    let stranger = conn_id();
    w.ws_frame(&stranger, json!({"action":"ping"})).await;
    assert_eq!(
        common::pushed_to(&stranger).await[0]["code"],
        "unknown_connection"
    );

    let (s, b) = w.http(event("webhook-health")).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")));
    let (s, _) = w.http(event("webhook-get")).await;
    assert_eq!(s, 200);

    assert_eq!(w.partition_size(&sid).await, before, "nothing was written");
    assert_eq!(w.queue_depth(&w.f.queue_url).await, 0, "nothing was queued");
}

#[tokio::test]
async fn a_message_never_answered_fails_when_its_delayed_deadline_record_arrives() {
    // A 1 s reply deadline: the send path queues the deadline record with a 1 s delay.
    let w = world_with(None, &[("CHAT_REPLY_TIMEOUT_MS", "1000")]).await;
    let (sid, token) = w.session().await;
    let c = w.connect(&sid, &token).await;
    w.ws_frame(
        &c,
        json!({"action":"sendMessage","content":"hello?","clientMessageId":"d-1"}),
    )
    .await;
    // Only the delivery is visible at first; n8n accepts it and never answers.
    let batch = w.receive_jobs(1).await;
    assert!(
        !batch.records[0]
            .body
            .as_deref()
            .unwrap()
            .contains("deadline"),
        "{batch:?}"
    );
    assert!(
        handlers::dispatch(&w.app, batch)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(w.history(&sid, &token).await[0]["status"], "dispatched");

    // The deadline record arrives once its delay has passed (the emulator honours it).
    let batch = w.receive_jobs(1).await;
    assert!(
        batch.records[0]
            .body
            .as_deref()
            .unwrap()
            .contains(r#""kind":"deadline""#)
    );
    let out = handlers::dispatch(&w.app, batch).await;
    assert!(out.batch_item_failures.is_empty(), "{out:?}");
    let h = w.history(&sid, &token).await;
    assert_eq!(h[0]["status"], "failed");
    assert_eq!(
        (h[1]["role"].as_str(), h[1]["type"].as_str()),
        (Some("system"), Some("error"))
    );
    let frames = common::pushed_to(&c).await;
    assert!(
        events_of(&frames, "typing")
            .iter()
            .any(|f| f["role"] == "assistant" && f["isTyping"] == false)
    );
    assert_eq!(w.n8n.count(), 1, "the deadline check does not call n8n");

    // A late answer is still stored and answers the message.
    let reply =
        json!({"sessionId": sid, "replyTo": h[0]["id"], "content": "late", "eventId": "late-1"});
    assert_eq!(w.http(w.signed_reply(&reply)).await.0, 200);
    assert_eq!(w.history(&sid, &token).await[0]["status"], "answered");
}

#[tokio::test]
async fn a_deadline_record_delivered_early_waits_and_does_not_fail_the_message() {
    let w = world().await;
    let (sid, token) = w.session().await;
    let (status, body) = w.http(w.authed("send-http", &sid, &token)).await;
    assert_eq!(status, 202, "{body}");
    let id = body["message"]["id"].as_str().unwrap();
    let mut e = event("dispatch-deadline");
    e["Records"][0]["body"] =
        json!(json!({"sessionId": sid, "messageId": id, "kind": "deadline"}).to_string());
    let out = handlers::dispatch(&w.app, serde_json::from_value(e).unwrap()).await;
    assert_eq!(out.batch_item_failures.len(), 1, "comes back later");
    assert_eq!(w.history(&sid, &token).await[0]["status"], "received");
}

#[tokio::test]
async fn a_clients_retry_queued_twice_reaches_n8n_once_from_one_batch() {
    let w = world().await;
    let (sid, token) = w.session().await;
    for _ in 0..2 {
        // The same send twice (the client did not see the first answer): queued twice.
        let (status, body) = w.http(w.authed("send-http", &sid, &token)).await;
        assert_eq!(status, 202, "{body}");
    }
    let batch = w.receive_jobs(2).await;
    assert_eq!(
        batch.records[0].body, batch.records[1].body,
        "two copies of one job"
    );
    let out = handlers::dispatch(&w.app, batch).await;
    assert!(out.batch_item_failures.is_empty(), "{out:?}");
    assert_eq!(w.n8n.count(), 1, "delivered once");
}
