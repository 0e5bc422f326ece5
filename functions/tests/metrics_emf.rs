//! The Lambdas' metrics, as CloudWatch reads them: a whole chat round through the real
//! binaries (booted as Lambda boots them, against the AWS emulator), then every CloudWatch
//! Embedded Metric Format line they wrote on stdout parsed, checked against the EMF
//! specification's shape, and added up: each figure must equal what the round did. Their
//! JSON log lines carry the invocation's request id and the session id, and no content.
//!
//! The round: a session, a WebSocket connection, two messages (one answered by n8n's
//! callback through the `webhook` function, one streamed by n8n in its response to
//! `dispatch`), a ping whose push finds the connection gone (410), and a disconnect.

use chat_testkit::aws::emulator as common;
use chat_testkit::aws::lambda::*;
use chat_testkit::fake_n8n::{Answer, FakeN8n, n8n_stream};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

const NAMESPACE: &str = "ChatTest";
const STAGE: &str = "test";

fn env_of(function: &str, fresh: &common::Fresh) -> BTreeMap<String, String> {
    let mut env = function_env(function, fresh);
    env.insert("CHAT_METRICS_NAMESPACE".into(), NAMESPACE.into());
    env.insert("CHAT_STAGE".into(), STAGE.into());
    env
}

fn bin(function: &str) -> &'static Path {
    Path::new(match function {
        "session" => env!("CARGO_BIN_EXE_session"),
        "send" => env!("CARGO_BIN_EXE_send"),
        "webhook" => env!("CARGO_BIN_EXE_webhook"),
        "connect" => env!("CARGO_BIN_EXE_connect"),
        "disconnect" => env!("CARGO_BIN_EXE_disconnect"),
        "dispatch" => env!("CARGO_BIN_EXE_dispatch"),
        other => panic!("no binary {other}"),
    })
}

/// The EMF documents among a function's output lines (the others are its JSON logs).
fn emf_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect()
}

const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks one document against the EMF specification's shape and our namespace and
/// dimensions; returns each metric's values.
fn check_emf(doc: &Value, function: &str) -> Vec<(String, Vec<f64>)> {
    let aws = doc["_aws"].as_object().expect("_aws is an object");
    assert!(aws["Timestamp"].is_u64(), "Timestamp in ms: {doc}");
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty());
    let mut out = Vec::new();
    for d in directives {
        let ns = d["Namespace"].as_str().expect("Namespace");
        assert_eq!(ns, NAMESPACE);
        let sets = d["Dimensions"].as_array().expect("Dimensions");
        for set in sets {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(set.len() <= 30, "at most 30 dimensions per set");
            for name in set {
                let name = name.as_str().expect("dimension names are strings");
                assert!(
                    doc[name].is_string(),
                    "dimension {name} is a string member of the root: {doc}"
                );
            }
        }
        assert_eq!(d["Dimensions"], json!([["Stage"], ["Stage", "Function"]]));
        assert_eq!(doc["Stage"], STAGE);
        assert_eq!(doc["Function"], format!("chat-{function}"));
        let metrics = d["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for m in metrics {
            let name = m["Name"].as_str().expect("Name");
            if let Some(unit) = m.get("Unit") {
                assert!(UNITS.contains(&unit.as_str().unwrap()), "unit {unit}");
            }
            let values = match &doc[name] {
                Value::Number(n) => vec![n.as_f64().unwrap()],
                Value::Array(a) => {
                    assert!(!a.is_empty() && a.len() <= 100, "1 to 100 values: {doc}");
                    a.iter().map(|v| v.as_f64().expect("numbers")).collect()
                }
                other => panic!("metric {name} has no number at the root: {other}"),
            };
            out.push((name.to_string(), values));
        }
    }
    out
}

/// Every SQS record visible now on `queue_url`, as the dispatch function's event.
async fn receive(fresh: &common::Fresh, want: usize) -> Value {
    let sqs = aws_sdk_sqs::Client::new(&fresh.sdk);
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while records.len() < want && tokio::time::Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(&fresh.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            let mut r = event("dispatch-batch.json")["Records"][0].clone();
            r["messageId"] = json!(m.message_id.unwrap());
            r["receiptHandle"] = json!(m.receipt_handle.unwrap());
            r["body"] = json!(m.body.unwrap());
            r["attributes"]["ApproximateReceiveCount"] = json!("1");
            records.push(r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(records.len(), want, "delivery records");
    json!({ "Records": records })
}

/// The JSON log lines of an invocation carry its request id and its session id in their
/// spans, and never a message's content.
fn check_log_lines(function: &str, output: &str, session: &str) {
    let logs: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_none())
        .collect();
    for content in ["Hello", "stream it", "an answer", "Hel", "lo\""] {
        assert!(
            !output.contains(content),
            "{function} logged content {content:?}: {output}"
        );
    }
    let mut in_requests = 0;
    for line in &logs {
        let Some(spans) = line["spans"].as_array() else {
            continue; // a line of the cold start, before any request
        };
        let request = spans
            .iter()
            .find(|s| s["name"] == "request")
            .unwrap_or_else(|| panic!("{function}: a line outside its request span: {line}"));
        assert!(request["request_id"].is_string(), "{line}");
        let session_of = spans.iter().find_map(|s| s["session_id"].as_str());
        assert_eq!(session_of, Some(session), "{function}: {line}");
        in_requests += 1;
    }
    // (The disconnect finds its connection already forgotten by the 410, and says nothing.)
    if function != "disconnect" {
        assert!(
            in_requests > 0,
            "{function} logged nothing in a request: {output}"
        );
    }
}

/// A management API that answers every push with 410 Gone.
async fn gone_endpoint() -> String {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::GONE,
            [("x-amzn-errortype", "GoneException")],
            r#"{"message":"GoneException"}"#,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_round_writes_emf_lines_that_add_up_to_what_happened() {
    let fresh = common::fresh().await;
    let mut outputs: Vec<(&str, String)> = Vec::new();

    let mut f = Lambda::start(bin("session"), "session", &env_of("session", &fresh)).await;
    let (status, body) = http(&f.call(&event("session-create.json")).await);
    assert_eq!(status, 201, "{body}");
    let (sid, token) = (
        body["sessionId"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    );
    outputs.push(("session", f.stop().await));

    let conn = format!("c{}", ulid::Ulid::new());
    let mut f = Lambda::start(bin("connect"), "connect", &env_of("connect", &fresh)).await;
    assert_eq!(
        http(&f.call(&connect_event(&sid, &token, &conn)).await).0,
        200
    );
    outputs.push(("connect", f.stop().await));

    // Two messages; each invocation's figures are on stdout as soon as it is answered.
    let mut send = Lambda::start(bin("send"), "send", &env_of("send", &fresh)).await;
    let (status, first) = http(
        &send
            .call(&http_event_for("send-http.json", &sid, &token))
            .await,
    );
    assert_eq!(status, 202, "{first}");
    // The line is written before the answer is posted; the pipe from the process may deliver
    // it to this test a moment after the answer (bounded wait, before the next invocation).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !emf_lines(&send.output())
        .iter()
        .any(|l| l["chat_messages_total"] == json!(1))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let flushed = emf_lines(&send.output());
    assert!(
        flushed.iter().any(|l| l["chat_messages_total"] == json!(1)),
        "flushed after the invocation, before the next: {}",
        send.output()
    );
    let mut second = http_event_for("send-http.json", &sid, &token);
    second["body"] = json!(json!({"content": "stream it"}).to_string());
    second["headers"]["content-length"] = json!(second["body"].as_str().unwrap().len().to_string());
    let (status, _) = http(&send.call(&second).await);
    assert_eq!(status, 202);

    // n8n accepts the first (its reply comes by callback) and streams the second.
    let (n8n, n8n_url) = FakeN8n::start_on(0, WEBHOOK_SECRET).await;
    *n8n.reply.lock().unwrap() = false;
    let mut dispatch_env = env_of("dispatch", &fresh);
    dispatch_env.insert("CHAT_N8N_WEBHOOK_URL".into(), n8n_url);
    let mut dispatch = Lambda::start(bin("dispatch"), "dispatch", &dispatch_env).await;
    let records = receive(&fresh, 2).await;
    let mut first_only = records.clone();
    first_only["Records"].as_array_mut().unwrap().truncate(1);
    let out = dispatch.call(&first_only).await;
    assert_eq!(out.json(), json!({"batchItemFailures": []}));
    *n8n.answer.lock().unwrap() = Answer::Stream {
        lines: n8n_stream(&["Hel", "lo"]),
        gap_ms: 10,
        hang: false,
    };
    let mut second_only = records.clone();
    second_only["Records"].as_array_mut().unwrap().remove(0);
    let out = dispatch.call(&second_only).await;
    assert_eq!(out.json(), json!({"batchItemFailures": []}));
    outputs.push(("dispatch", dispatch.stop().await));
    assert_eq!(n8n.count(), 2);

    let mut f = Lambda::start(bin("webhook"), "webhook", &env_of("webhook", &fresh)).await;
    let first_id = first["message"]["id"].as_str().unwrap();
    let reply = json!({"sessionId": sid, "replyTo": first_id, "content": "an answer"});
    let (status, body) = http(
        &f.call(&signed_webhook(
            "webhook-reply.json",
            &reply,
            WEBHOOK_SECRET,
        ))
        .await,
    );
    assert_eq!(status, 200, "{body}");
    outputs.push(("webhook", f.stop().await));

    let pushed = common::pushed_to(&conn).await.len();

    // A ping whose pong finds the connection gone: the push is a 410 and the connection is
    // forgotten, so the disconnect that follows finds nothing.
    outputs.push(("send", send.stop().await));
    let mut gone_env = env_of("send", &fresh);
    gone_env.insert("WEBSOCKET_ENDPOINT".into(), gone_endpoint().await);
    let mut f = Lambda::start(bin("send"), "send", &gone_env).await;
    let mut ping = event("send-ws-ping.json");
    ping["requestContext"]["connectionId"] = json!(conn);
    assert_eq!(http(&f.call(&ping).await).0, 200);
    outputs.push(("send", f.stop().await));
    let mut f = Lambda::start(
        bin("disconnect"),
        "disconnect",
        &env_of("disconnect", &fresh),
    )
    .await;
    assert_eq!(http(&f.call(&disconnect_event(&conn)).await).0, 200);
    outputs.push(("disconnect", f.stop().await));

    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_function: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (function, output) in &outputs {
        assert_no_secrets(function, output);
        check_log_lines(function, output, &sid);
        for doc in emf_lines(output) {
            for (name, values) in check_emf(&doc, function) {
                if name.ends_with("_ms") {
                    samples.entry(name.clone()).or_default().extend(&values);
                } else {
                    *counts.entry(name.clone()).or_default() += values.iter().sum::<f64>();
                }
                *by_function.entry((name, function.to_string())).or_default() +=
                    values.len() as f64;
            }
        }
    }
    let count = |name: &str| counts.get(name).copied().unwrap_or(0.0);
    assert_eq!(count("chat_messages_total"), 2.0, "{counts:?}");
    assert_eq!(count("chat_connections_opened_total"), 1.0);
    assert_eq!(
        count("chat_connections_closed_total"),
        1.0,
        "by the 410, once"
    );
    assert_eq!(count("chat_dispatch_attempts_total"), 2.0);
    assert_eq!(count("chat_dispatch_failures_total"), 0.0);
    assert_eq!(count("chat_dead_lettered_total"), 0.0);
    assert_eq!(count("chat_streamed_replies_total"), 1.0);
    assert_eq!(count("chat_pushes_gone_total"), 1.0);
    assert_eq!(
        count("chat_pushes_total"),
        (pushed + 1) as f64,
        "every frame the emulator received, and the one answered 410"
    );
    assert_eq!(samples["chat_dispatch_latency_ms"].len(), 2);
    let answers = &samples["chat_answer_latency_ms"];
    assert_eq!(answers.len(), 2, "one per reply");
    assert!(
        answers.iter().all(|ms| *ms >= 0.0 && *ms < 120_000.0),
        "{answers:?}"
    );
    assert_eq!(
        (
            by_function[&("chat_answer_latency_ms".into(), "webhook".into())],
            by_function[&("chat_answer_latency_ms".into(), "dispatch".into())],
        ),
        (1.0, 1.0),
        "the callback's answer from webhook, the streamed one from dispatch"
    );
}
