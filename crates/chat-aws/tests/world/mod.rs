//! The world the handler tests run in: a fresh table and queues on the emulator, the
//! Lambda `App` built on them as a cold start would build it, a fake n8n, and helpers that
//! drive the handlers with the sample events of `events/`.
#![allow(dead_code)]

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use chat_aws::App;
use chat_aws::app::LambdaEnv;
use chat_aws::handlers;
use chat_testkit::aws::emulator as common;
use serde_json::{Value, json};
use std::collections::HashMap;

pub const WEBHOOK_SECRET: &str = "handler-tests-webhook-secret";

pub use chat_testkit::fake_n8n::FakeN8n;

impl World {
    /// A fake n8n signing with this world's secret; it never calls back (the handler tests
    /// post n8n's replies themselves, through the webhook handler).
    pub async fn fake_n8n() -> (FakeN8n, String) {
        let (fake, url) = FakeN8n::start_on(0, WEBHOOK_SECRET).await;
        *fake.reply.lock().unwrap() = false;
        (fake, url)
    }
}

pub struct World {
    pub f: common::Fresh,
    pub app: App,
    pub n8n: FakeN8n,
}

pub async fn world_with(ws_endpoint: Option<String>, extra: &[(&str, &str)]) -> World {
    let f = common::fresh().await;
    let (n8n, n8n_url) = World::fake_n8n().await;
    let mut vars: HashMap<String, String> = [
        ("TABLE_NAME", f.table.as_str()),
        ("QUEUE_URL", f.queue_url.as_str()),
        (
            "WEBSOCKET_ENDPOINT",
            ws_endpoint.as_deref().unwrap_or(&common::emulator().url),
        ),
        ("CHAT_PUBLIC_URL", "https://api.example.com"),
        ("CHAT_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("CHAT_SESSION_SECRET", "handler-tests-session-secret"),
        ("CHAT_N8N_WEBHOOK_URL", n8n_url.as_str()),
        ("CHAT_DISPATCH_BACKOFF_MS", "1000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let env = LambdaEnv::from_lookup(&|k| vars.get(k).cloned()).expect("valid environment");
    let app = App::with_sdk(env, &f.sdk, None).expect("app builds");
    World { f, app, n8n }
}

pub async fn world() -> World {
    world_with(None, &[]).await
}

pub fn event(name: &str) -> Value {
    let path = common::repo().join("events").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn body_of(b: &Option<Body>) -> Value {
    match b {
        Some(Body::Text(t)) => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// A unique, URL-safe connection id (real ones look like `Lx8nCeK2oAMCJvA=`).
pub fn conn_id() -> String {
    format!("c{}", ulid::Ulid::new())
}

impl World {
    pub async fn http(&self, e: Value) -> (i64, Value) {
        let req: ApiGatewayV2httpRequest = serde_json::from_value(e).unwrap();
        let r = handlers::http(&self.app, req).await;
        (r.status_code, body_of(&r.body))
    }

    pub async fn ws(&self, e: Value) -> (i64, Value) {
        let req: ApiGatewayWebsocketProxyRequest = serde_json::from_value(e).unwrap();
        let r = match e_route(&req).as_str() {
            "$connect" => handlers::connect(&self.app, req).await,
            "$disconnect" => handlers::disconnect(&self.app, req).await,
            _ => match handlers::send(&self.app, handlers::SendEvent::WebSocket(Box::new(req)))
                .await
            {
                handlers::SendResponse::WebSocket(r) => r,
                handlers::SendResponse::Http(_) => unreachable!("a WebSocket event answers as one"),
            },
        };
        (r.status_code, body_of(&r.body))
    }

    /// A guest session through the `session` handler: (id, token).
    pub async fn session(&self) -> (String, String) {
        self.session_with(json!({})).await
    }

    /// A guest session created with `body` (e.g. `{"metadata": {...}}`): (id, token).
    pub async fn session_with(&self, body: Value) -> (String, String) {
        let mut e = event("session-create");
        // A distinct client IP per session, so the per-IP limit does not interfere.
        e["requestContext"]["http"]["sourceIp"] = json!(format!("198.51.100.{}", rand_octet()));
        let body = body.to_string();
        e["headers"]["content-length"] = json!(body.len().to_string());
        e["body"] = json!(body);
        let (status, body) = self.http(e).await;
        assert_eq!(status, 201, "{body}");
        assert!(
            body["websocketUrl"]
                .as_str()
                .unwrap()
                .starts_with("ws://127.0.0.1:"),
            "{body}"
        );
        (
            body["sessionId"].as_str().unwrap().into(),
            body["token"].as_str().unwrap().into(),
        )
    }

    pub async fn connect(&self, sid: &str, token: &str) -> String {
        self.connect_v(sid, token, None).await
    }

    /// `$connect` with the frame version `v` (`Some("2")`: merged frames, as `ChatClient`).
    pub async fn connect_v(&self, sid: &str, token: &str, v: Option<&str>) -> String {
        let id = conn_id();
        let mut e = event("connect");
        e["queryStringParameters"] = json!({"sessionId": sid, "token": token});
        e["multiValueQueryStringParameters"] = json!({"sessionId": [sid], "token": [token]});
        if let Some(v) = v {
            e["queryStringParameters"]["v"] = json!(v);
            e["multiValueQueryStringParameters"]["v"] = json!([v]);
        }
        e["requestContext"]["connectionId"] = json!(id);
        let (status, body) = self.ws(e).await;
        assert_eq!(status, 200, "{body}");
        id
    }

    pub async fn ws_frame(&self, connection: &str, body: Value) {
        let mut e = event("send-ws-message");
        e["requestContext"]["connectionId"] = json!(connection);
        e["body"] = json!(body.to_string());
        let (status, _) = self.ws(e).await;
        assert_eq!(status, 200);
    }

    pub fn authed(&self, name: &str, sid: &str, token: &str) -> Value {
        let mut e = event(name);
        e["headers"]["authorization"] = json!(format!("Bearer {token}"));
        e["pathParameters"]["id"] = json!(sid);
        let path = e["rawPath"]
            .as_str()
            .unwrap()
            .replace("01JD9N0V8019F5A42YAM85WN8G", sid);
        e["rawPath"] = json!(path);
        e["requestContext"]["http"]["path"] = json!(path);
        e
    }

    pub async fn history(&self, sid: &str, token: &str) -> Vec<Value> {
        let (status, body) = self.http(self.authed("session-history", sid, token)).await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().unwrap().clone()
    }

    /// One receive of at most `max` (≤ 10) visible jobs, as an SQS event (maybe empty).
    pub async fn receive_up_to(&self, max: i32) -> SqsEvent {
        let out = aws_sdk_sqs::Client::new(&self.f.sdk)
            .receive_message()
            .queue_url(&self.f.queue_url)
            .max_number_of_messages(max)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let records: Vec<Value> = out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(record_of)
            .collect();
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    /// Receives exactly `expect` queued jobs as an SQS event, waiting (bounded) for records
    /// that are delayed or hidden to become visible.
    pub async fn receive_jobs(&self, expect: usize) -> SqsEvent {
        let sqs = aws_sdk_sqs::Client::new(&self.f.sdk);
        let mut records = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            let out = sqs
                .receive_message()
                .queue_url(&self.f.queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            let got = out.messages.unwrap_or_default();
            let empty = got.is_empty();
            records.extend(got.into_iter().map(record_of));
            if records.len() >= expect {
                break;
            }
            if empty {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        assert_eq!(records.len(), expect, "queued jobs");
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    pub fn signed_reply(&self, body: &Value) -> Value {
        let mut e = event("webhook-reply");
        let text = body.to_string();
        let ts =
            (chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000).to_string();
        e["headers"]["x-chat-timestamp"] = json!(ts);
        e["headers"]["x-chat-signature"] = json!(chat_core::signature::sign(
            WEBHOOK_SECRET.as_bytes(),
            &ts,
            text.as_bytes()
        ));
        e["body"] = json!(text);
        e
    }

    pub async fn item(&self, pk: &str, sk: &str) -> Option<HashMap<String, AttributeValue>> {
        aws_sdk_dynamodb::Client::new(&self.f.sdk)
            .get_item()
            .table_name(&self.f.table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }

    /// How many items the session's partition holds.
    pub async fn partition_size(&self, sid: &str) -> usize {
        aws_sdk_dynamodb::Client::new(&self.f.sdk)
            .query()
            .table_name(&self.f.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("SESSION#{sid}")))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .count as usize
    }

    /// Receives from the dispatch queue (never getting anything) until the redrive policy has
    /// moved `n` records to the dead-letter queue (bounded).
    pub async fn wait_dead_lettered(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.queue_depth(&self.f.dlq_url).await < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} record(s) should reach the dead-letter queue"
            );
            let got = self.receive_up_to(10).await;
            assert!(
                got.records.is_empty(),
                "a dead record is not delivered again"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(self.queue_depth(&self.f.dlq_url).await, n);
    }

    pub async fn queue_depth(&self, url: &str) -> usize {
        let out = aws_sdk_sqs::Client::new(&self.f.sdk)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .unwrap();
        out.attributes
            .unwrap()
            .values()
            .map(|v| v.parse::<usize>().unwrap())
            .sum()
    }
}

/// An SQS message as a record of the dispatch function's event.
fn record_of(m: aws_sdk_sqs::types::Message) -> Value {
    let mut r = event("dispatch-batch")["Records"][0].clone();
    r["messageId"] = json!(m.message_id.unwrap());
    r["receiptHandle"] = json!(m.receipt_handle.unwrap());
    r["body"] = json!(m.body.unwrap());
    let attrs: HashMap<String, String> = m
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_string(), v))
        .collect();
    r["attributes"] = json!(attrs);
    r
}

pub fn e_route(req: &ApiGatewayWebsocketProxyRequest) -> String {
    req.request_context.route_key.clone().unwrap_or_default()
}

pub fn rand_octet() -> u32 {
    ulid::Ulid::new().random() as u32 % 250 + 1
}

pub fn events_of<'a>(frames: &'a [Value], event: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["event"] == event).collect()
}

/// A stub management API that answers every PostToConnection with 410 Gone.
pub async fn gone_endpoint() -> String {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::GONE,
            [
                ("x-amzn-errortype", "GoneException"),
                ("content-type", "application/json"),
            ],
            r#"{"message":"GoneException"}"#,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A fresh attachment bucket on the emulator (addressed by path, as the app addresses it).
pub async fn bucket(sdk: &aws_config::SdkConfig) -> String {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .build();
    let name = format!("files-{}", ulid::Ulid::new().to_string().to_lowercase());
    aws_sdk_s3::Client::from_conf(conf)
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("bucket created");
    name
}

/// Every presigned S3 URL (a string with `X-Amz-Signature`) anywhere in `v`.
pub fn presigned_urls(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) if s.contains("X-Amz-Signature=") => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(presigned_urls).collect(),
        Value::Object(o) => o.values().flat_map(presigned_urls).collect(),
        _ => Vec::new(),
    }
}

/// Downloads each presigned URL in `v` over HTTP, as a browser would: each must answer 200
/// with `expect` bytes. Returns how many were fetched.
pub async fn download_all(v: &Value, expect: &[u8]) -> usize {
    let urls = presigned_urls(v);
    for url in &urls {
        let r = reqwest::get(url).await.expect("the emulator answers");
        assert_eq!(r.status(), 200, "GET {url}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), expect, "GET {url}");
    }
    urls.len()
}

/// Uploads `body` to an answer's `uploadUrl` with exactly its `uploadHeaders`, as the browser
/// does: the HTTP status.
pub async fn upload(answer: &Value, body: Vec<u8>) -> u16 {
    let mut req = reqwest::Client::new().put(answer["uploadUrl"].as_str().expect("an uploadUrl"));
    for (k, v) in answer["uploadHeaders"].as_object().expect("uploadHeaders") {
        req = req.header(k, v.as_str().unwrap());
    }
    req.body(body)
        .send()
        .await
        .expect("the emulator answers")
        .status()
        .as_u16()
}
