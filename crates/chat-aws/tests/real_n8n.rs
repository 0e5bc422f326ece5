//! n8n's workflows on a real n8n 2.8.4, through the Lambda handlers on the emulator instead of
//! chat-local: a session, a connection and a message through the `session` and `send`
//! handlers, `dispatch` against the real n8n, and n8n's signed callback through the `webhook`
//! handler. Covers a Webhook node answering with its last node's output, a Chat Trigger
//! answering whole, the shipped AI-agent workflow streaming, and the signed callback workflow.
//!
//! `tests/n8n/answers.test.mjs` (run by `tests/n8n/run`) starts n8n and an OpenAI-compatible
//! model server, then runs this test with their URLs in `CHAT_TEST_N8N_*`. `test = false` in
//! Cargo.toml keeps it out of a plain `cargo test`; without that environment it fails.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use axum::http::{Method, StatusCode, header};
use chat_aws::handlers;
use chat_testkit::aws::emulator::{emulator, pushed_to};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
mod world;
use world::{World, events_of, world_with};

/// What `tests/n8n/answers.test.mjs` passes: where each workflow listens, and what the model
/// streams.
struct RealN8n {
    webhook_node_url: String,
    chat_trigger_url: String,
    agent_url: String,
    signed_url: String,
    auth_header: String,
    secret: String,
    answer: String,
    tokens: usize,
}

fn real_n8n() -> RealN8n {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!(
                "{k} is not set: this test runs against the real n8n that tests/n8n/run starts \
                 (tests/n8n/answers.test.mjs passes the CHAT_TEST_N8N_* variables)"
            )
        })
    };
    RealN8n {
        webhook_node_url: var("CHAT_TEST_N8N_WEBHOOK_NODE_URL"),
        chat_trigger_url: var("CHAT_TEST_N8N_CHAT_TRIGGER_URL"),
        agent_url: var("CHAT_TEST_N8N_AGENT_URL"),
        signed_url: var("CHAT_TEST_N8N_SIGNED_URL"),
        auth_header: var("CHAT_TEST_N8N_AUTH_HEADER"),
        secret: var("CHAT_TEST_N8N_SECRET"),
        answer: var("CHAT_TEST_N8N_ANSWER"),
        tokens: var("CHAT_TEST_N8N_TOKENS")
            .parse()
            .expect("CHAT_TEST_N8N_TOKENS is a number"),
    }
}

/// `PostToConnection` calls as they arrived: (when, path, frame).
type Posts = Arc<Mutex<Vec<(Instant, String, Value)>>>;

/// A pass-through in front of the emulator's API Gateway management API (the world's
/// `WEBSOCKET_ENDPOINT`) that notes when each `PostToConnection` arrives: the emulator records
/// what was pushed, not when.
async fn push_clock() -> (Posts, String) {
    let posts = Posts::default();
    let upstream = emulator().url.clone();
    let client = reqwest::Client::new();
    let seen = posts.clone();
    let proxy = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (seen, client, upstream) = (seen.clone(), client.clone(), upstream.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let path = parts.uri.path().to_string();
            if parts.method == Method::POST && path.contains("/@connections/") {
                let frame = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push((Instant::now(), path, frame));
            }
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut forward = client.request(parts.method, format!("{upstream}{target}"));
            for (k, v) in &parts.headers {
                if k != header::HOST && k != header::CONTENT_LENGTH {
                    forward = forward.header(k, v);
                }
            }
            let r = forward
                .body(body)
                .send()
                .await
                .expect("the emulator answers");
            let (status, headers) = (r.status(), r.headers().clone());
            (status, headers, r.bytes().await.unwrap())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, proxy).await.unwrap() });
    (posts, url)
}

/// The frames posted to one connection with their arrival times.
fn posts_to(posts: &Posts, conn: &str) -> Vec<(Instant, Value)> {
    let suffix = format!("/@connections/{conn}");
    posts
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, path, _)| path.ends_with(&suffix))
        .map(|(at, _, frame)| (*at, frame.clone()))
        .collect()
}

/// A request for the `webhook` function, as API Gateway's HTTP API event, and where its
/// answer goes.
type Invocation = (
    ApiGatewayV2httpRequest,
    tokio::sync::oneshot::Sender<ApiGatewayV2httpResponse>,
);

/// API Gateway's HTTP API in front of the `webhook` function, for n8n's signed callback: each
/// request on `listener` becomes an HTTP API event, handed to the test, which runs the
/// function (`handlers::http`; its future is not `Send`, so it runs in the test's own task).
fn http_api(listener: tokio::net::TcpListener) -> tokio::sync::mpsc::Receiver<Invocation> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Invocation>(8);
    let api = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let headers: serde_json::Map<String, Value> = parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().into(), json!(v.to_str().unwrap_or(""))))
                .collect();
            let (method, path) = (parts.method.as_str(), parts.uri.path());
            let mut e = world::event("webhook-reply");
            e["routeKey"] = json!(format!("{method} {path}"));
            e["rawPath"] = json!(path);
            e["requestContext"]["routeKey"] = json!(format!("{method} {path}"));
            e["requestContext"]["http"]["method"] = json!(method);
            e["requestContext"]["http"]["path"] = json!(path);
            e["headers"] = Value::Object(headers);
            e["body"] = json!(String::from_utf8_lossy(&body));
            e["isBase64Encoded"] = json!(false);
            let (answer, answered) = tokio::sync::oneshot::channel();
            tx.send((serde_json::from_value(e).unwrap(), answer))
                .await
                .expect("the test runs the webhook function");
            let r = answered.await.expect("the webhook function answers");
            let text = match r.body {
                Some(aws_lambda_events::encodings::Body::Text(t)) => t,
                _ => String::new(),
            };
            let status = StatusCode::from_u16(r.status_code as u16).unwrap();
            (status, [(header::CONTENT_TYPE, "application/json")], text)
        }
    });
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
    rx
}

/// A world whose dispatches go to `n8n_url` and whose pushes pass the push clock.
async fn world_for(n8n_url: &str, extra: &[(&str, &str)]) -> (World, Posts) {
    let n8n = real_n8n();
    let (posts, endpoint) = push_clock().await;
    let mut vars = vec![
        ("CHAT_N8N_WEBHOOK_URL", n8n_url),
        ("CHAT_WEBHOOK_SECRET", n8n.secret.as_str()),
    ];
    vars.extend_from_slice(extra);
    (world_with(Some(endpoint), &vars).await, posts)
}

/// A user's message on the way: its session, connection and queued job, and when it was sent.
struct Asked {
    sid: String,
    token: String,
    conn: String,
    batch: aws_lambda_events::sqs::SqsEvent,
    sent: Instant,
}

/// A session created with `session_body`, a connection, `text` sent over it through the
/// `send` handler, and its dispatch job received from the queue.
async fn ask(w: &World, text: &str, session_body: Value) -> Asked {
    let (sid, token) = w.session_with(session_body).await;
    let conn = w.connect(&sid, &token).await;
    let sent = Instant::now();
    w.ws_frame(
        &conn,
        json!({"action":"sendMessage","content":text,"clientMessageId":"c-1"}),
    )
    .await;
    let batch = w.receive_jobs(1).await;
    Asked {
        sid,
        token,
        conn,
        batch,
        sent,
    }
}

fn assistant(history: &[Value]) -> Vec<&Value> {
    history
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect()
}

/// The reply `expected` is stored once, answers the user's message, and was pushed to `conn`
/// whole (no deltas).
async fn answered_whole(w: &World, a: &Asked, expected: &str) {
    let history = w.history(&a.sid, &a.token).await;
    assert_eq!(history[0]["role"], "user");
    assert_eq!(history[0]["status"], "answered", "{history:?}");
    let replies = assistant(&history);
    assert_eq!(replies.len(), 1, "one reply: {history:?}");
    assert_eq!(replies[0]["content"], expected);
    assert_eq!(replies[0]["replyTo"], history[0]["id"]);
    let frames = pushed_to(&a.conn).await;
    let pushed: Vec<_> = events_of(&frames, "message")
        .into_iter()
        .filter(|m| m["message"]["role"] == "assistant")
        .collect();
    assert_eq!(pushed.len(), 1, "the reply pushed once: {frames:?}");
    assert_eq!(pushed[0]["message"]["id"], replies[0]["id"]);
    assert_eq!(pushed[0]["message"]["content"], expected);
    assert!(
        events_of(&frames, "delta").is_empty(),
        "a whole answer has no deltas"
    );
}

#[tokio::test]
async fn a_webhook_node_answering_with_its_last_nodes_output() {
    let n8n = real_n8n();
    let (w, _) = world_for(&n8n.webhook_node_url, &[]).await;
    let a = ask(
        &w,
        "What does it cost?",
        json!({"metadata": {"page": "/pricing"}}),
    )
    .await;
    let out = handlers::dispatch(&w.app, a.batch.clone()).await;
    assert!(out.batch_item_failures.is_empty());
    answered_whole(
        &w,
        &a,
        "Webhook node says: What does it cost? (page /pricing)",
    )
    .await;
}

#[tokio::test]
async fn a_chat_trigger_answering_whole() {
    let n8n = real_n8n();
    let (w, _) = world_for(&n8n.chat_trigger_url, &[]).await;
    let a = ask(&w, "Grüezi 👋", json!({})).await;
    let out = handlers::dispatch(&w.app, a.batch.clone()).await;
    assert!(out.batch_item_failures.is_empty());
    answered_whole(&w, &a, "Chat Trigger says: Grüezi 👋").await;
}

#[tokio::test]
async fn the_signed_callback_workflow_answers_through_the_webhook_function() {
    let n8n = real_n8n();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}", listener.local_addr().unwrap());
    let (w, _) = world_for(&n8n.signed_url, &[("CHAT_PUBLIC_URL", &public_url)]).await;
    let mut callbacks = http_api(listener);
    let text = "Grüße über die Lambdas 🚀 \"quoted\"\n  and a second line";
    let a = ask(&w, text, json!({})).await;
    let out = handlers::dispatch(&w.app, a.batch.clone()).await;
    assert!(out.batch_item_failures.is_empty());
    // n8n acknowledged at once; its signed reply comes through the webhook function.
    let (event, answer) = tokio::time::timeout(Duration::from_secs(60), callbacks.recv())
        .await
        .expect("n8n calls back within 60 s")
        .unwrap();
    let r = handlers::http(&w.app, event).await;
    assert_eq!(r.status_code, 200, "{:?}", r.body);
    answer.send(r).unwrap();
    answered_whole(&w, &a, &format!("You said: {text}")).await;
    assert!(callbacks.try_recv().is_err(), "one callback");
}

#[tokio::test]
async fn the_shipped_ai_agent_workflow_streams_coalesced_deltas() {
    let n8n = real_n8n();
    let (w, posts) = world_for(
        &n8n.agent_url,
        &[("CHAT_N8N_AUTH_HEADER", n8n.auth_header.as_str())],
    )
    .await;
    let a = ask(&w, "Can you explain the plan?", json!({})).await;
    let started = Instant::now();
    let first_delta = || {
        posts_to(&posts, &a.conn)
            .into_iter()
            .find(|(_, f)| f["event"] == "delta")
    };
    // While n8n streams, a second client connects (after the first delta): it gets the
    // whole reply once stored, and no deltas.
    let (out, late) = tokio::join!(handlers::dispatch(&w.app, a.batch.clone()), async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while first_delta().is_none() {
            assert!(Instant::now() < deadline, "no delta pushed within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        w.connect(&a.sid, &a.token).await
    });
    let dispatch_time = started.elapsed();
    assert!(out.batch_item_failures.is_empty());

    let timed = posts_to(&posts, &a.conn);
    let frames = pushed_to(&a.conn).await;
    assert_eq!(
        timed.iter().map(|(_, f)| f).collect::<Vec<_>>(),
        frames.iter().collect::<Vec<_>>(),
        "the emulator got every push, in order"
    );
    let deltas = events_of(&frames, "delta");
    let history = w.history(&a.sid, &a.token).await;
    let replies = assistant(&history);
    assert_eq!(replies.len(), 1, "stored once: {history:?}");
    let stored = replies[0];
    assert_eq!(
        stored["content"],
        n8n.answer.as_str(),
        "the whole answer stored"
    );
    assert_eq!(history[0]["status"], "answered");
    // In order; what was written after the last delta comes with the stored reply itself.
    let streamed: String = deltas.iter().map(|d| d["text"].as_str().unwrap()).collect();
    assert!(
        !streamed.is_empty() && n8n.answer.starts_with(&streamed),
        "the deltas carry the answer in order: {streamed:?}"
    );
    for (i, d) in deltas.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["messageId"], stored["id"]);
        assert_eq!(d["replyTo"], history[0]["id"]);
    }
    // Coalesced: far fewer frames than model tokens.
    assert!(
        deltas.len() >= 2 && deltas.len() <= n8n.tokens / 2,
        "{} deltas for {} tokens",
        deltas.len(),
        n8n.tokens
    );
    let reply_at = frames
        .iter()
        .position(|f| f["event"] == "message" && f["message"]["role"] == "assistant")
        .expect("the reply pushed");
    let last_delta_at = frames.iter().rposition(|f| f["event"] == "delta").unwrap();
    assert!(reply_at > last_delta_at, "the reply comes after the deltas");
    assert_eq!(frames[reply_at]["message"]["id"], stored["id"]);
    assert_eq!(frames[reply_at]["message"]["content"], n8n.answer.as_str());
    // The socket opened mid-stream: the whole reply, no deltas.
    let late_frames = pushed_to(&late).await;
    assert!(
        events_of(&late_frames, "delta").is_empty(),
        "{late_frames:?}"
    );
    assert!(
        events_of(&late_frames, "message")
            .iter()
            .any(|m| m["message"]["id"] == stored["id"]
                && m["message"]["content"] == n8n.answer.as_str()),
        "the late socket gets the whole reply: {late_frames:?}"
    );
    // Every push of the dispatch to the first connection (before it: the ack and the user's
    // message): its status `dispatched`, typing, the deltas, the reply, status `answered`.
    let dispatch_posts = timed.len() - 2;
    assert_eq!(dispatch_posts, deltas.len() + 4, "{frames:?}");
    let first = first_delta().unwrap().0 - a.sent;
    let whole = timed[reply_at].0 - a.sent;
    println!(
        "streamed answer through the Lambda handlers (real n8n 2.8.4, emulator): first visible text \
         after {} ms, whole reply after {} ms (from the send frame; dispatch ran {} ms), \
         {} delta frames for {} model tokens, {dispatch_posts} PostToConnection calls in the \
         dispatch to the streaming connection and {} to the one opened mid-stream",
        first.as_millis(),
        whole.as_millis(),
        dispatch_time.as_millis(),
        deltas.len(),
        n8n.tokens,
        late_frames.len(),
    );
}
