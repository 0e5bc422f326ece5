//! n8n's answers in the response, through the Lambda handlers on the emulator: the dispatch
//! function reads a fake n8n on 127.0.0.1 over real HTTP (the `chat-n8n` client) that answers
//! whole, streams token by token as n8n does, or answers badly; deltas and replies are read
//! back from the emulator's recorded `PostToConnection` calls and the table.

use chat_testkit::aws::emulator::pushed_to;
use chat_testkit::fake_n8n::{Answer, n8n_stream};
mod world;
use serde_json::{Value, json};
use world::{World, events_of, world, world_with};

/// A session with one connection, a user message sent over it, and its job received.
async fn asked(
    w: &World,
    text: &str,
) -> (String, String, String, aws_lambda_events::sqs::SqsEvent) {
    let (sid, token) = w.session().await;
    let conn = w.connect(&sid, &token).await;
    w.ws_frame(
        &conn,
        json!({"action":"sendMessage","content":text,"clientMessageId":"c-1"}),
    )
    .await;
    let batch = w.receive_jobs(1).await;
    (sid, token, conn, batch)
}

fn assistant(history: &[Value]) -> Vec<&Value> {
    history
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect()
}

#[tokio::test]
async fn a_streamed_answer_is_pushed_in_coalesced_deltas_then_stored_once() {
    let w = world().await;
    let tokens: Vec<String> = (0..30).map(|i| format!("tok{i} ")).collect();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    *w.n8n.answer.lock().unwrap() = Answer::Stream {
        lines: n8n_stream(&refs),
        gap_ms: 20,
        hang: false,
    };
    let (sid, token, conn, batch) = asked(&w, "stream please").await;
    let started = std::time::Instant::now();
    let out = chat_aws::handlers::dispatch(&w.app, batch).await;
    let elapsed = started.elapsed();
    assert!(out.batch_item_failures.is_empty());
    let frames = pushed_to(&conn).await;
    let deltas = events_of(&frames, "delta");
    let whole = tokens.concat();
    let text: String = deltas.iter().map(|d| d["text"].as_str().unwrap()).collect();
    // In order; the text after the last delta comes with the stored reply itself.
    assert!(
        !text.is_empty() && whole.starts_with(&text),
        "the deltas carry the text in order: {text:?}"
    );
    for (i, d) in deltas.iter().enumerate() {
        assert_eq!(d["index"], i);
    }
    // Coalesced: at most one per 100 ms of writing (and the first at once), far fewer than
    // the 30 tokens.
    let bound = 2 + elapsed.as_millis() as usize / 100;
    assert!(
        deltas.len() >= 2 && deltas.len() <= bound && deltas.len() < 30,
        "{} deltas over {elapsed:?}",
        deltas.len()
    );
    let message = events_of(&frames, "message")
        .into_iter()
        .find(|m| m["message"]["role"] == "assistant")
        .expect("the reply pushed");
    assert_eq!(message["message"]["content"], whole);
    assert_eq!(message["message"]["id"], deltas[0]["messageId"]);
    let history = w.history(&sid, &token).await;
    assert_eq!(assistant(&history).len(), 1);
    assert_eq!(assistant(&history)[0]["content"], whole);
    assert_eq!(history[0]["status"], "answered");
    // Every frame of the dispatch went to this one connection (before it: the ack and the
    // user's message), one PostToConnection each.
    let posts = frames.len() - 2;
    println!(
        "streamed reply on AWS: {} tokens in {elapsed:?}, {} delta frames, {posts} PostToConnection calls in the dispatch",
        tokens.len(),
        deltas.len()
    );
    // dispatched status, typing, the deltas, the reply, answered status.
    assert_eq!(posts, deltas.len() + 4);
}

#[tokio::test]
async fn a_whole_answer_is_stored_and_a_later_callback_repeats_it() {
    let w = world().await;
    *w.n8n.answer.lock().unwrap() = Answer::Body(br#"[{"output":"Hello whole"}]"#.to_vec());
    let (sid, token, _conn, batch) = asked(&w, "hi").await;
    let job: Value = serde_json::from_str(batch.records[0].body.as_deref().unwrap()).unwrap();
    let out = chat_aws::handlers::dispatch(&w.app, batch).await;
    assert!(out.batch_item_failures.is_empty());
    let history = w.history(&sid, &token).await;
    let reply = assistant(&history)[0].clone();
    assert_eq!(reply["content"], "Hello whole");
    let callback = json!({"sessionId": sid, "replyTo": job["messageId"], "content": "Hello whole", "eventId": "late-1"});
    let (status, body) = w.http(w.signed_reply(&callback)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messageId"], reply["id"]);
    assert_eq!(w.history(&sid, &token).await.len(), 2);
}

#[tokio::test]
async fn the_auth_header_and_chat_trigger_fields_go_with_every_dispatch() {
    let w = world_with(
        None,
        &[("CHAT_N8N_AUTH_HEADER", "Authorization: Basic dXNlcjpwYXNz")],
    )
    .await;
    let (_sid, _token, _conn, batch) = asked(&w, "hello").await;
    chat_aws::handlers::dispatch(&w.app, batch).await;
    assert_eq!(
        w.n8n.auth.lock().unwrap().clone(),
        [Some("Basic dXNlcjpwYXNz".to_string())]
    );
    let sent = w.n8n.received.lock().unwrap()[0].clone();
    assert_eq!(
        (sent["action"].as_str(), sent["chatInput"].as_str()),
        (Some("sendMessage"), Some("hello"))
    );
}

/// Runs one dispatch against `answer`; the message must end `failed` with a system notice
/// whose `data.reason` is `reason`, and the reply (if any) be the partial text, incomplete.
async fn fails(answer: Answer, extra: &[(&str, &str)], reason: &str, partial: Option<&str>) {
    let w = world_with(None, extra).await;
    *w.n8n.answer.lock().unwrap() = answer;
    let (sid, token, conn, batch) = asked(&w, "hi").await;
    let out = chat_aws::handlers::dispatch(&w.app, batch).await;
    assert!(out.batch_item_failures.is_empty(), "{reason}: not retried");
    let history = w.history(&sid, &token).await;
    assert_eq!(history[0]["status"], "failed", "{reason}");
    let notice = history
        .iter()
        .find(|m| m["role"] == "system")
        .expect("notice");
    assert_eq!(notice["data"]["reason"], reason);
    let replies = assistant(&history);
    match partial {
        None => assert!(replies.is_empty(), "{reason}: nothing half-stored"),
        Some(text) => {
            assert_eq!(replies.len(), 1, "{reason}");
            assert_eq!(replies[0]["content"], text);
            assert_eq!(replies[0]["data"]["incomplete"], true);
        }
    }
    let frames = pushed_to(&conn).await;
    assert!(
        events_of(&frames, "message")
            .iter()
            .any(|m| m["message"]["role"] == "system"),
        "{reason}: the user is told"
    );
}

#[tokio::test]
async fn bad_answers_each_fail_their_message_clearly() {
    let half = |last: &str| {
        let mut lines = n8n_stream(&["Half ", "done"]);
        lines.pop();
        lines.push(last.to_string());
        lines
    };
    fails(
        Answer::Body(b"<html>Workflow finished</html>".to_vec()),
        &[],
        "invalid_answer",
        None,
    )
    .await;
    fails(
        Answer::Stream {
            lines: half("{not json"),
            gap_ms: 5,
            hang: false,
        },
        &[],
        "stream_invalid",
        Some("Half done"),
    )
    .await;
    fails(
        Answer::Stream {
            lines: half(r#"{"type":"error","content":"model overloaded"}"#),
            gap_ms: 5,
            hang: false,
        },
        &[],
        "stream_error",
        Some("Half done"),
    )
    .await;
    fails(
        Answer::Stream {
            lines: half(r#"{"type":"item","content":"!"}"#),
            gap_ms: 5,
            hang: true,
        },
        &[("CHAT_STREAM_TIMEOUT_MS", "1500")],
        "stream_timeout",
        Some("Half done!"),
    )
    .await;
    let mut big = br#"{"output":""#.to_vec();
    big.resize(10 * 1024 * 1024, b'x');
    big.extend_from_slice(br#""}"#);
    fails(Answer::Body(big), &[], "answer_too_large", None).await;
}
