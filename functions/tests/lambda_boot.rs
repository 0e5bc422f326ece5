//! Each shipped Lambda binary (the debug build next to this test) booted as Lambda boots it:
//! `exec` with a cleared, Lambda-like environment, against a Lambda Runtime API server of the
//! test, answering sample events of `events/` against the AWS emulator. This proves the
//! artifacts start, read their configuration, and speak the Runtime API.
//!
//! The binaries are built by `cargo build --workspace` (a `cargo test -p chat-aws` alone does
//! not build them). Every wait is bounded; the processes are killed at the end of each test.

use chat_testkit::aws::emulator as common;
use chat_testkit::aws::lambda as lambda_support;

use lambda_support::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A guest session created through the `session` binary's own response: `(id, token)`.
async fn session_via_binary(fresh: &common::Fresh) -> (String, String) {
    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_session")),
        "session",
        &function_env("session", fresh),
    )
    .await;
    let (status, body) = http(&f.call(&event("session-create.json")).await);
    assert_eq!(status, 201, "{body}");
    let out = f.stop().await;
    assert_no_secrets("session", &out);
    (
        body["sessionId"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_creates_a_guest_session_and_serves_it_warm() {
    let fresh = common::fresh().await;
    // As in production: an https management endpoint (never called while creating a session)
    // gives the clients a wss URL.
    let mut env = function_env("session", &fresh);
    let endpoint = "https://w1x2y3z4k5.execute-api.us-east-1.amazonaws.com/prod";
    env.insert("WEBSOCKET_ENDPOINT".into(), endpoint.into());
    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_session")),
        "session",
        &env,
    )
    .await;

    let (status, body) = http(&f.call(&event("session-create.json")).await);
    assert_eq!(status, 201, "{body}");
    let id = body["sessionId"].as_str().expect("sessionId");
    let token = body["token"].as_str().expect("token");
    assert_eq!(id.len(), 26, "a ULID: {id}");
    assert!(!token.is_empty());
    assert!(body["expiresAt"].is_string() || body["expiresAt"].is_number());
    assert_eq!(
        body["websocketUrl"],
        json!("wss://w1x2y3z4k5.execute-api.us-east-1.amazonaws.com/prod")
    );
    assert!(
        sort_keys(&fresh, &format!("SESSION#{id}")).await.len() == 1,
        "the session item is stored"
    );

    // The same instance answers a second invocation (it long-polls `next` between them).
    let (status, view) = http(&f.call(&http_event_for("session-get.json", id, token)).await);
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["session"]["id"], json!(id));
    assert_eq!(
        f.api.wait_next_calls(3, WAIT).await,
        3,
        "two answered, the third waits"
    );

    let out = f.stop().await;
    assert_no_secrets("session", &out);

    // CHAT_WEBSOCKET_URL, when set, is what the clients get.
    let mut env = function_env("session", &fresh);
    env.insert(
        "CHAT_WEBSOCKET_URL".into(),
        "wss://chat.example.com/ws".into(),
    );
    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_session")),
        "session",
        &env,
    )
    .await;
    let mut e = event("session-create.json");
    e["requestContext"]["http"]["sourceIp"] = json!("198.51.100.7");
    let (status, body) = http(&f.call(&e).await);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["websocketUrl"], json!("wss://chat.example.com/ws"));
    assert_no_secrets("session", &f.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_answers_health_and_checks_signatures() {
    let fresh = common::fresh().await;
    let (id, _) = session_via_binary(&fresh).await;
    let pk = format!("SESSION#{id}");
    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_webhook")),
        "webhook",
        &function_env("webhook", &fresh),
    )
    .await;

    let (status, body) = http(&f.call(&event("webhook-health.json")).await);
    assert_eq!((status, body), (200, json!({"status": "ok"})));

    // The sample's wrong signature, stamped now so the signature is what fails.
    let mut bad = event("webhook-bad-signature.json");
    let mut reply: Value = serde_json::from_str(bad["body"].as_str().unwrap()).unwrap();
    reply["sessionId"] = json!(id);
    reply.as_object_mut().unwrap().remove("replyTo");
    bad["body"] = json!(reply.to_string());
    bad["headers"]["x-chat-timestamp"] = json!(unix_now().to_string());
    let (status, body) = http(&f.call(&bad).await);
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_signature", "{body}");
    assert_eq!(sort_keys(&fresh, &pk).await.len(), 1, "nothing written");

    // The same reply signed with the secret is stored.
    let good = signed_webhook("webhook-reply.json", &reply, WEBHOOK_SECRET);
    let (status, body) = http(&f.call(&good).await);
    assert_eq!(status, 200, "{body}");
    let message_id = body["messageId"].as_str().expect("messageId");
    assert_eq!(message_id.len(), 26);
    assert!(
        sort_keys(&fresh, &pk)
            .await
            .iter()
            .any(|k| k.starts_with("MSG#")),
        "the reply is stored"
    );
    assert_no_secrets("webhook", &f.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_missing_token_and_stores_a_valid_connection() {
    let fresh = common::fresh().await;
    let (id, token) = session_via_binary(&fresh).await;
    let pk = format!("SESSION#{id}");
    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_connect")),
        "connect",
        &function_env("connect", &fresh),
    )
    .await;

    let mut missing = event("connect-missing-token.json");
    missing["queryStringParameters"]["sessionId"] = json!(id);
    missing["multiValueQueryStringParameters"]["sessionId"] = json!([id]);
    let (status, body) = http(&f.call(&missing).await);
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "missing_token", "{body}");
    assert_eq!(sort_keys(&fresh, &pk).await.len(), 1, "nothing written");

    let conn = "Bm9vdEJvb3RUZXN0MQ=";
    let (status, body) = http(&f.call(&connect_event(&id, &token, conn)).await);
    assert_eq!(status, 200, "{body}");
    assert!(
        sort_keys(&fresh, &pk)
            .await
            .contains(&format!("CONN#{conn}")),
        "the fan-out item exists"
    );
    let lookup = partition(&fresh, &format!("CONN#{conn}")).await;
    assert_eq!(lookup.len(), 1, "the lookup item exists");
    assert_eq!(lookup[0]["sessionId"].as_s().unwrap(), &id);
    assert_no_secrets("connect", &f.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_forgets_the_connection() {
    let fresh = common::fresh().await;
    let (id, token) = session_via_binary(&fresh).await;
    let conn = "Bm9vdEJvb3RUZXN0Mg=";
    let mut c = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_connect")),
        "connect",
        &function_env("connect", &fresh),
    )
    .await;
    let (status, _) = http(&c.call(&connect_event(&id, &token, conn)).await);
    assert_eq!(status, 200);
    c.stop().await;

    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_disconnect")),
        "disconnect",
        &function_env("disconnect", &fresh),
    )
    .await;
    let (status, _) = http(&f.call(&disconnect_event(conn)).await);
    assert_eq!(status, 200);
    assert!(partition(&fresh, &format!("CONN#{conn}")).await.is_empty());
    assert!(
        !sort_keys(&fresh, &format!("SESSION#{id}"))
            .await
            .contains(&format!("CONN#{conn}"))
    );
    // The sample as it is (an unknown connection): still 200.
    let (status, _) = http(&f.call(&event("disconnect.json")).await);
    assert_eq!(status, 200);
    assert_no_secrets("disconnect", &f.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_refuses_empty_content_and_accepts_a_message() {
    let fresh = common::fresh().await;
    let (id, token) = session_via_binary(&fresh).await;
    let pk = format!("SESSION#{id}");
    let before = partition(&fresh, &pk).await;
    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_send")),
        "send",
        &function_env("send", &fresh),
    )
    .await;

    let (status, body) = http(
        &f.call(&http_event_for("send-http-empty-content.json", &id, &token))
            .await,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "content_empty", "{body}");
    assert_eq!(partition(&fresh, &pk).await, before, "nothing written");
    assert_eq!(
        queue_depth(&fresh, &fresh.queue_url).await,
        0,
        "nothing queued"
    );

    let (status, body) = http(&f.call(&http_event_for("send-http.json", &id, &token)).await);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["message"]["content"], json!("Hello"));
    assert_eq!(body["message"]["seq"], json!(1));
    assert_eq!(body["message"]["sessionId"], json!(id));
    assert!(
        sort_keys(&fresh, &pk)
            .await
            .iter()
            .any(|k| k.starts_with("MSG#")),
        "the message is stored"
    );
    assert_eq!(
        queue_depth(&fresh, &fresh.queue_url).await,
        2,
        "a delivery and its (delayed) reply-deadline check queued"
    );
    assert_no_secrets("send", &f.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_reports_a_bad_record_as_a_batch_item_failure() {
    let fresh = common::fresh().await;
    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_dispatch")),
        "dispatch",
        &function_env("dispatch", &fresh),
    )
    .await;
    let e = event("dispatch-bad-record.json");
    let o = f.call(&e).await;
    assert!(o.ok, "{}", String::from_utf8_lossy(&o.body));
    assert_eq!(
        o.json(),
        json!({"batchItemFailures": [{"itemIdentifier": e["Records"][0]["messageId"]}]})
    );
    assert_no_secrets("dispatch", &f.stop().await);
}

/// Starts `function` with `env`, expects it to stop during init (never polling for an event)
/// with a non-zero status and output naming `variable`, and no secret value in that output.
async fn assert_init_fails(function: &str, env: &BTreeMap<String, String>, variable: &str) {
    let mut f = Lambda::start(&bin_of(function), function, env).await;
    let status = f
        .exit(WAIT)
        .await
        .unwrap_or_else(|| panic!("{function} without {variable} still runs after {WAIT:?}"));
    let out = f.output();
    assert!(!status.success(), "{function}: {status}\n{out}");
    let reported: String = f
        .api
        .init_errors()
        .iter()
        .map(|e| String::from_utf8_lossy(&e.body).into_owned())
        .collect();
    assert!(
        out.contains(variable) || reported.contains(variable),
        "{function}: the failure does not name {variable}:\n{out}{reported}"
    );
    assert_eq!(f.api.next_calls(), 0, "{function} polled for an event");
    assert_no_secrets(function, &out);
    assert_no_secrets(function, &reported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_variable_stops_the_cold_start_naming_it_without_secrets() {
    // No emulator needed: the configuration is refused before any AWS call.
    let env_of = |function: &str| {
        config_env(
            function,
            "http://127.0.0.1:9",
            "chat-missing",
            "http://127.0.0.1:9/123456789012/dispatch",
        )
    };
    let mut runs = Vec::new();
    for function in FUNCTIONS {
        let mut env = env_of(function);
        env.remove("CHAT_SESSION_SECRET");
        runs.push(async move { assert_init_fails(function, &env, "CHAT_SESSION_SECRET").await });
    }
    futures_util::future::join_all(runs).await;

    for variable in ["TABLE_NAME", "CHAT_WEBHOOK_SECRET"] {
        let mut env = env_of("send");
        env.remove(variable);
        assert_init_fails("send", &env, variable).await;
    }
    let mut env = env_of("dispatch");
    env.remove("CHAT_N8N_WEBHOOK_URL");
    assert_init_fails("dispatch", &env, "CHAT_N8N_WEBHOOK_URL").await;
    // The SDK configuration comes from what Lambda sets, checked at init too (not at the
    // first AWS call, as a provider chain would).
    for variable in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        let mut env = env_of("connect");
        env.remove(variable);
        assert_init_fails("connect", &env, variable).await;
    }
    let mut env = env_of("session");
    env.remove("AWS_REGION");
    env.remove("AWS_DEFAULT_REGION");
    assert_init_fails("session", &env, "AWS_REGION").await;
}

/// Stores `value` as a SecureString parameter `name` in the emulator.
async fn put_secure_parameter(fresh: &common::Fresh, name: &str, value: &str) {
    aws_sdk_ssm::Client::new(&fresh.sdk)
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("parameter stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_ssm_serve_requests_and_a_missing_one_stops_the_cold_start() {
    let fresh = common::fresh().await;
    let prefix = format!(
        "/chat-boot-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let (webhook, session) = (format!("{prefix}/webhook"), format!("{prefix}/session"));
    let ssm_values = ["ssm-webhook-BOOT-1f3e5d7c", "ssm-session-BOOT-2a4c6e8b"];
    put_secure_parameter(&fresh, &webhook, ssm_values[0]).await;
    put_secure_parameter(&fresh, &session, ssm_values[1]).await;
    let mut env = function_env("session", &fresh);
    env.remove("CHAT_WEBHOOK_SECRET");
    env.remove("CHAT_SESSION_SECRET");
    env.insert("CHAT_WEBHOOK_SECRET_PARAM".into(), webhook.clone());
    env.insert("CHAT_SESSION_SECRET_PARAM".into(), session.clone());

    // The binary reads them and answers: a session created, then served with its token.
    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_session")),
        "session",
        &env,
    )
    .await;
    let (status, body) = http(&f.call(&event("session-create.json")).await);
    assert_eq!(status, 201, "{body}");
    let (id, token) = (
        body["sessionId"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
    );
    let (status, view) = http(&f.call(&http_event_for("session-get.json", id, token)).await);
    assert_eq!(status, 200, "{view}");
    let out = f.stop().await;
    assert_no_secrets("session", &out);
    for v in ssm_values {
        assert!(!out.contains(v), "a value from SSM in the output:\n{out}");
    }
    // The token was signed with the session secret from SSM.
    let claims = chat_core::token::SessionTokens::new(ssm_values[1].as_bytes()).verify(token, 0);
    assert!(claims.is_ok(), "{claims:?}");

    // A parameter that does not exist: the start fails with a JSON line naming it.
    let missing = format!("{prefix}/nothing-here");
    env.insert("CHAT_SESSION_SECRET_PARAM".into(), missing.clone());
    let mut f = Lambda::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_session")),
        "session",
        &env,
    )
    .await;
    let status = f.exit(WAIT).await.expect("the cold start stops");
    assert!(!status.success());
    assert_eq!(f.api.next_calls(), 0, "polled for an event");
    let out = f.output();
    let line = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no JSON error line:\n{out}"));
    assert_eq!(line["parameter"], json!(missing), "{line}");
    assert!(line["error"].as_str().unwrap().contains(&missing), "{line}");
    assert_no_secrets("session", &out);
    for v in ssm_values {
        assert!(!out.contains(v), "a value from SSM in the output:\n{out}");
    }
}

/// The debug binary of `function`, as cargo built it for these tests.
fn bin_of(function: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(match function {
        "session" => env!("CARGO_BIN_EXE_session"),
        "send" => env!("CARGO_BIN_EXE_send"),
        "webhook" => env!("CARGO_BIN_EXE_webhook"),
        "connect" => env!("CARGO_BIN_EXE_connect"),
        "disconnect" => env!("CARGO_BIN_EXE_disconnect"),
        "dispatch" => env!("CARGO_BIN_EXE_dispatch"),
        "agent" => env!("CARGO_BIN_EXE_agent"),
        other => panic!("no function {other}"),
    })
}
