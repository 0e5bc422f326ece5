//! Least privilege, pinned: each function's IAM policy in `template.yaml` grants exactly the
//! AWS calls its code makes.
//!
//! Every function's handler runs as its own `App`, cold-started with its secrets from SSM
//! Parameter Store, through scenarios that cover its code paths against the emulator: a full
//! round, idempotent repeats, rate limits answered 429, a push answered 410 Gone (the
//! connection is then deleted), a dispatch retried, dead-lettered, skipped and refused, bad
//! input. Each handler call is one recording window of the emulator's recorder, so every
//! request is attributed to the function that made it. Requests are mapped to IAM actions and
//! resources as IAM authorises them (TransactWriteItems by the action of each item it holds,
//! SQS batch calls as their single forms, PostToConnection as `execute-api:ManageConnections`
//! on `POST/@connections/<id>`, a Query on an index on the index's ARN, GetParameters on each
//! parameter's ARN, S3 requests by method and subresource on the object's ARN). Presigning
//! makes no request, yet a presigned URL works only as far as its signer's role is granted:
//! every upload and download URL a function signs is used over HTTP inside that function's
//! window, so its PutObject (with PutObjectTagging for the pending tag) and GetObject count as
//! its calls. The policies come from the template through `infra/template_resources.py`.
//! Both ways: a call no statement grants fails, and so does a granted action and resource that
//! no call uses (the event source mapping's own SQS calls excepted, made by Lambda's poller with
//! the function's role). Nothing here lists the calls: change the code, and this test tells what
//! the template must grant.
//!
//! PostToConnection goes through a small stub on 127.0.0.1 that answers 410 Gone for
//! connection ids starting with `gone` (the emulator never does) and passes every other request
//! on to the emulator, which records it; the stub records the ones it answers itself.
//!
//! This test binary holds one emulator test: it resets the emulator's recording between
//! windows, which would disturb other emulator tests of the same process.

use chat_testkit::aws::emulator as common;
use common::template_with;
mod world;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::sqs::SqsEvent;
use chat_aws::{App, handlers};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use world::{WEBHOOK_SECRET, body_of, conn_id, event};

const SESSION_SECRET: &str = "iam-test-session-secret";
const AUTH_JWT_SECRET: &str = "iam-test-app-jwt-secret";

/// (IAM action, resource ARN) of one call, e.g. ("dynamodb:PutItem", "Table").
type Call = (String, String);

/// IAM's wildcard match: `*` is any run of characters, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((&c, rest)) => t
                .split_first()
                .is_some_and(|(&d, tr)| (c == b'?' || c.eq_ignore_ascii_case(&d)) && go(rest, tr)),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// The logical ids of the fresh resources, and the template's pseudo parameters.
struct Names {
    table: String,
    queues: BTreeMap<String, &'static str>,
    partition: String,
    /// `<region>:<account>`, as in an ARN.
    region_account: String,
    stage: String,
    /// The attachment bucket's name (the template's `AttachmentsBucket`).
    bucket: String,
}

impl Names {
    fn new(f: &common::Fresh, template: &Value, bucket: &str) -> Self {
        let p = &template["pseudo"];
        Self {
            bucket: bucket.to_string(),
            table: f.table.clone(),
            queues: BTreeMap::from([
                (f.queue_url.clone(), "DispatchQueue"),
                (f.dlq_url.clone(), "DispatchDeadLetterQueue"),
            ]),
            partition: p["AWS::Partition"].as_str().unwrap().to_string(),
            region_account: format!(
                "{}:{}",
                p["AWS::Region"].as_str().unwrap(),
                p["AWS::AccountId"].as_str().unwrap()
            ),
            stage: template["webSocketStage"].as_str().unwrap().to_string(),
        }
    }

    /// An S3 request (path style, as the emulator is addressed: `/<bucket>/<key>?<query>`) as
    /// IAM authorises it: `PutObject` (and `PutObjectTagging` when it carries tags, as a
    /// presigned PUT signing `x-amz-tagging` does), `GetObject` for GET and HEAD,
    /// `DeleteObject`, and the `?tagging` subresource as `Get|Put|DeleteObjectTagging`.
    fn s3(&self, entry: &Value) -> Option<Vec<Call>> {
        let url = reqwest::Url::parse(entry["url"].as_str()?).ok()?;
        let path = url.path().strip_prefix('/')?;
        let (bucket, key) = path.split_once('/')?;
        if bucket != self.bucket {
            return None;
        }
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let has = |name: &str| query.iter().any(|(k, _)| k == name);
        let resource = format!("AttachmentsBucket/{key}");
        let tagged = entry["headers"]
            .as_object()
            .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("x-amz-tagging")));
        let method = entry["method"].as_str()?;
        let actions: Vec<&str> = match (method, has("tagging")) {
            ("PUT", false) if tagged => vec!["PutObject", "PutObjectTagging"],
            ("PUT", false) => vec!["PutObject"],
            ("GET" | "HEAD", false) => vec!["GetObject"],
            ("DELETE", false) => vec!["DeleteObject"],
            ("PUT", true) => vec!["PutObjectTagging"],
            ("GET", true) => vec!["GetObjectTagging"],
            ("DELETE", true) => vec!["DeleteObjectTagging"],
            _ => panic!("an S3 request this test cannot map to IAM: {entry}"),
        };
        Some(
            actions
                .into_iter()
                .map(|a| (format!("s3:{a}"), resource.clone()))
                .collect(),
        )
    }

    fn table(&self, name: &Value) -> String {
        assert_eq!(name.as_str(), Some(self.table.as_str()), "another table");
        "Table".into()
    }

    fn queue(&self, url: &Value) -> String {
        let url = url.as_str().expect("a QueueUrl");
        self.queues
            .get(url)
            .unwrap_or_else(|| panic!("a call to an unknown queue {url}"))
            .to_string()
    }

    fn push(&self, method: &str, path: &str) -> Call {
        let (_, id) = path
            .split_once("/@connections/")
            .expect("a connection path");
        (
            "execute-api:ManageConnections".into(),
            format!(
                "arn:{}:execute-api:{}:WebSocketApi/{}/{method}/@connections/{id}",
                self.partition, self.region_account, self.stage
            ),
        )
    }

    /// What IAM authorises for one recorded request.
    fn calls(&self, entry: &Value) -> Vec<Call> {
        use base64::Engine;
        let raw = entry["body"].as_str().unwrap_or("");
        let raw = if entry["body_encoded"] == json!(true) {
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap()
        } else {
            raw.as_bytes().to_vec()
        };
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let headers = entry["headers"].as_object().cloned().unwrap_or_default();
        let target = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("");
        let (service, op) = target.split_once('.').unwrap_or(("", ""));
        let one = |action: String, resource: String| vec![(action, resource)];
        match service {
            s if s.starts_with("DynamoDB_") => match op {
                "TransactWriteItems" | "TransactGetItems" => body["TransactItems"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|item| {
                        let (kind, inner) = item.as_object().unwrap().iter().next().unwrap();
                        let action = match kind.as_str() {
                            "ConditionCheck" => "ConditionCheckItem".to_string(),
                            k => format!("{k}Item"),
                        };
                        (
                            format!("dynamodb:{action}"),
                            self.table(&inner["TableName"]),
                        )
                    })
                    .collect(),
                "BatchWriteItem" | "BatchGetItem" => body["RequestItems"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|t| (format!("dynamodb:{op}"), self.table(&json!(t))))
                    .collect(),
                _ => {
                    let mut resource = self.table(&body["TableName"]);
                    if let Some(index) = body["IndexName"].as_str() {
                        resource = format!("{resource}/index/{index}");
                    }
                    one(format!("dynamodb:{op}"), resource)
                }
            },
            "AmazonSQS" => {
                let action = op.strip_suffix("Batch").unwrap_or(op);
                one(format!("sqs:{action}"), self.queue(&body["QueueUrl"]))
            }
            "AmazonSSM" => body["Names"]
                .as_array()
                .map(|names| names.iter().map(|n| n.as_str().unwrap()).collect())
                .unwrap_or_else(|| vec![body["Name"].as_str().unwrap()])
                .into_iter()
                .map(|name| {
                    let name = match name.strip_prefix('/') {
                        Some(_) => name.to_string(),
                        None => format!("/{name}"),
                    };
                    (
                        format!("ssm:{op}"),
                        format!(
                            "arn:{}:ssm:{}:parameter{name}",
                            self.partition, self.region_account
                        ),
                    )
                })
                .collect(),
            _ => {
                if let Some(calls) = self.s3(entry) {
                    return calls;
                }
                let url = entry["url"].as_str().unwrap_or("");
                let path = url.find("/@connections/").map(|i| &url[i..]);
                match path {
                    Some(p) => vec![self.push(entry["method"].as_str().unwrap(), p)],
                    None => panic!("a request this test cannot map to IAM: {entry}"),
                }
            }
        }
    }
}

/// Calls by function, gathered one handler call (one recording window) at a time.
struct Recorder {
    names: Names,
    calls: BTreeMap<String, BTreeSet<Call>>,
    /// Pushes the stub answered with 410 itself: (method, path).
    gone: Arc<Mutex<Vec<(String, String)>>>,
}

impl Recorder {
    async fn reset(&self) {
        let url = format!(
            "{}/moto-api/recorder/reset-recording",
            common::emulator().url
        );
        let r = reqwest::Client::new().post(url).send().await.unwrap();
        assert!(r.status().is_success(), "the recording resets");
        self.gone.lock().unwrap().clear();
    }

    /// Runs one call of `function`'s code and keeps what it asked of AWS.
    async fn run<T>(&mut self, function: &str, call: impl Future<Output = T>) -> T {
        self.reset().await;
        let out = call.await;
        let mut calls: Vec<Call> = common::recorded()
            .await
            .iter()
            .flat_map(|e| self.names.calls(e))
            .collect();
        for (method, path) in self.gone.lock().unwrap().iter() {
            calls.push(self.names.push(method, path));
        }
        self.calls
            .entry(function.to_string())
            .or_default()
            .extend(calls);
        out
    }
}

/// A management API for PostToConnection: 410 Gone for ids starting with `gone`, every other
/// request passed on to the emulator.
async fn push_stub(gone: Arc<Mutex<Vec<(String, String)>>>) -> String {
    let client = reqwest::Client::new();
    let moto = common::emulator().url.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let (client, moto, gone) = (client.clone(), moto.clone(), gone.clone());
            async move {
                use axum::response::IntoResponse;
                let path = uri.path().to_string();
                if path.contains("/@connections/gone") {
                    gone.lock().unwrap().push((method.to_string(), path));
                    let headers = [
                        ("x-amzn-errortype", "GoneException"),
                        ("content-type", "application/json"),
                    ];
                    let body = r#"{"message":"GoneException"}"#;
                    return (axum::http::StatusCode::GONE, headers, body).into_response();
                }
                let target = format!("{moto}{}", uri.path_and_query().unwrap().as_str());
                let mut request = client.request(method, target).body(body);
                for (k, v) in &headers {
                    if k != "host" && k != "content-length" {
                        request = request.header(k, v);
                    }
                }
                let r = request.send().await.expect("the emulator answers");
                let status = r.status();
                (status, r.bytes().await.unwrap()).into_response()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Stores the three secrets as SecureString parameters under a fresh prefix: their names.
async fn put_secrets(sdk: &aws_config::SdkConfig) -> [(&'static str, String); 3] {
    let prefix = format!("/chat-iam-{}", ulid::Ulid::new().to_string().to_lowercase());
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let params = [
        ("CHAT_WEBHOOK_SECRET_PARAM", "webhook", WEBHOOK_SECRET),
        ("CHAT_SESSION_SECRET_PARAM", "session", SESSION_SECRET),
        ("CHAT_AUTH_JWT_SECRET_PARAM", "jwt", AUTH_JWT_SECRET),
    ];
    let mut out = Vec::new();
    for (var, name, value) in params {
        let name = format!("{prefix}/{name}");
        ssm.put_parameter()
            .name(&name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("parameter stored");
        out.push((var, name));
    }
    out.try_into().unwrap()
}

fn app_jwt(sub: &str) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: i64,
    }
    let exp = chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000 + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub, exp },
        &jsonwebtoken::EncodingKey::from_secret(AUTH_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// An agent's JWT: `role: "agent"`, `sub`, `name`, signed with the app JWT secret.
fn agent_jwt(sub: &str, name: &str) -> String {
    let exp = chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000 + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "name": name, "role": "agent", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(AUTH_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// An agent route's event: `sample` with the agent's token, `method` and `path` (and body).
fn agent_event(sample: &str, jwt: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut e = event(sample);
    e["headers"]["authorization"] = json!(format!("Bearer {jwt}"));
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    e["rawPath"] = json!(path);
    e["rawQueryString"] = json!(query);
    e["requestContext"]["http"]["path"] = json!(path);
    e["requestContext"]["http"]["method"] = json!(method);
    if let Some(b) = body {
        e["body"] = json!(b.to_string());
    }
    e
}

fn agent_connect_event(jwt: &str, id: &str) -> Value {
    let mut e = event("connect-agent");
    e["queryStringParameters"] = json!({"agentToken": jwt});
    e["multiValueQueryStringParameters"] = json!({"agentToken": [jwt]});
    e["requestContext"]["connectionId"] = json!(id);
    e
}

/// The functions' apps, one per function, on one table and queue.
struct Apps(HashMap<&'static str, App>);

impl Apps {
    fn of(&self, function: &str) -> &App {
        &self.0[function]
    }
}

// The handlers' futures are boxed: inline, this test's scenario is one future too large for a
// test thread's stack.
async fn http(app: &App, e: Value) -> (i64, Value) {
    let req: ApiGatewayV2httpRequest = serde_json::from_value(e).unwrap();
    let r = Box::pin(handlers::http(app, req)).await;
    (r.status_code, body_of(&r.body))
}

async fn ws(app: &App, e: Value, kind: &str) -> (i64, Value) {
    let req: ApiGatewayWebsocketProxyRequest = serde_json::from_value(e).unwrap();
    let r = match kind {
        "connect" => Box::pin(handlers::connect(app, req)).await,
        "disconnect" => Box::pin(handlers::disconnect(app, req)).await,
        _ => match Box::pin(handlers::send(
            app,
            handlers::SendEvent::WebSocket(Box::new(req)),
        ))
        .await
        {
            handlers::SendResponse::WebSocket(r) => r,
            handlers::SendResponse::Http(_) => unreachable!("a WebSocket event answers as one"),
        },
    };
    (r.status_code, body_of(&r.body))
}

fn authed(name: &str, sid: &str, token: &str) -> Value {
    let mut e = event(name);
    e["headers"]["authorization"] = json!(format!("Bearer {token}"));
    let sample = e["pathParameters"]["id"].as_str().unwrap().to_string();
    e["pathParameters"]["id"] = json!(sid);
    for p in ["/rawPath", "/requestContext/http/path"] {
        let path = e
            .pointer(p)
            .unwrap()
            .as_str()
            .unwrap()
            .replace(&sample, sid);
        *e.pointer_mut(p).unwrap() = json!(path);
    }
    e
}

fn create_session_event(ip: &str, auth: Option<&str>) -> Value {
    let mut e = event("session-create");
    e["requestContext"]["http"]["sourceIp"] = json!(ip);
    if let Some(a) = auth {
        e["headers"]["authorization"] = json!(format!("Bearer {a}"));
    }
    e
}

fn connect_event(sid: &str, token: &str, id: &str) -> Value {
    let mut e = event("connect");
    e["queryStringParameters"] = json!({"sessionId": sid, "token": token});
    e["multiValueQueryStringParameters"] = json!({"sessionId": [sid], "token": [token]});
    e["requestContext"]["connectionId"] = json!(id);
    e
}

fn frame_event(connection: &str, frame: &Value) -> Value {
    let mut e = event("send-ws-message");
    e["requestContext"]["connectionId"] = json!(connection);
    e["body"] = json!(frame.to_string());
    e
}

fn signed_reply(body: &Value) -> Value {
    let mut e = event("webhook-reply");
    let text = body.to_string();
    let ts = (chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000).to_string();
    e["headers"]["x-chat-timestamp"] = json!(ts);
    e["headers"]["x-chat-signature"] = json!(chat_core::signature::sign(
        WEBHOOK_SECRET.as_bytes(),
        &ts,
        text.as_bytes()
    ));
    e["body"] = json!(text);
    e
}

/// Receives up to `max` queued jobs as the SQS event the dispatch function would get (the
/// Lambda service's receive, outside any window).
async fn receive_jobs(f: &common::Fresh, expect: usize) -> SqsEvent {
    let sqs = aws_sdk_sqs::Client::new(&f.sdk);
    let mut records = Vec::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(&f.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
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
            records.push(r);
        }
        if records.len() >= expect {
            break;
        }
    }
    assert_eq!(records.len(), expect, "queued jobs");
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// Messages waiting in the dispatch queue.
async fn queue_depth(f: &common::Fresh) -> usize {
    let out = aws_sdk_sqs::Client::new(&f.sdk)
        .get_queue_attributes()
        .queue_url(&f.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    out.attributes
        .unwrap()
        .values()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every call not granted, and every grant not used, for one function and its policy.
fn findings(function: &str, policy: &Value, calls: &BTreeSet<Call>) -> Vec<String> {
    let statements = policy["statements"].as_array().unwrap();
    let grants = |action: &str, resource: &str| {
        statements.iter().any(|s| {
            s["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| glob(a.as_str().unwrap(), action))
                && s["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| glob(r.as_str().unwrap(), resource))
        })
    };
    // What Lambda's poller does with the function's role for an SQS event source mapping.
    let poller: Vec<Call> = policy["eventSourceQueues"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|q| {
            [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
            ]
            .map(|a| (a.to_string(), q.as_str().unwrap().to_string()))
        })
        .collect();
    let mut out = Vec::new();
    for (action, resource) in calls {
        if !grants(action, resource) {
            out.push(format!(
                "{function}: calls {action} on {resource}, which its policy does not grant"
            ));
        }
    }
    for s in statements {
        for a in s["actions"].as_array().unwrap() {
            for r in s["resources"].as_array().unwrap() {
                let (a, r) = (a.as_str().unwrap(), r.as_str().unwrap());
                let used = calls
                    .iter()
                    .chain(&poller)
                    .any(|(ca, cr)| glob(a, ca) && glob(r, cr));
                if !used {
                    out.push(format!(
                        "{function}: grants {a} on {r} (statement {}), which no call uses",
                        s["sid"]
                    ));
                }
            }
        }
    }
    out
}

fn all_findings(template: &Value, calls: &BTreeMap<String, BTreeSet<Call>>) -> Vec<String> {
    let functions = template["functions"].as_object().unwrap();
    let mut out = Vec::new();
    for (name, policy) in functions {
        let empty = BTreeSet::new();
        let c = calls.get(name).unwrap_or(&empty);
        if c.is_empty() {
            out.push(format!("{name}: no call recorded (not driven?)"));
        }
        out.extend(findings(name, policy, c));
    }
    for name in calls.keys() {
        if !functions.contains_key(name) {
            out.push(format!("{name}: driven here but not in the template"));
        }
    }
    out
}

/// The emulator's request recorder is one for the whole emulator: the tests that read it take
/// turns.
static RECORDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_policy_grants_exactly_the_calls_its_code_makes() {
    let _turn = RECORDER.lock().await;
    let f = common::fresh().await;
    let bucket = world::bucket(&f.sdk).await;
    let secrets = put_secrets(&f.sdk).await;
    let param = |var: &str| secrets.iter().find(|(v, _)| *v == var).unwrap().1.clone();
    let with_ssm = template_with(&[
        (
            "WebhookSecretParameter",
            &param("CHAT_WEBHOOK_SECRET_PARAM"),
        ),
        (
            "SessionSecretParameter",
            &param("CHAT_SESSION_SECRET_PARAM"),
        ),
        (
            "AuthJwtSecretParameter",
            &param("CHAT_AUTH_JWT_SECRET_PARAM"),
        ),
    ]);
    let gone = Arc::new(Mutex::new(Vec::new()));
    let endpoint = push_stub(gone.clone()).await;
    let (n8n, n8n_url) = world::World::fake_n8n().await;
    let mut rec = Recorder {
        names: Names::new(&f, &with_ssm, &bucket),
        calls: BTreeMap::new(),
        gone,
    };

    // Cold starts: each function reads its secrets from SSM, with low rate limits to reach.
    let mut vars: HashMap<String, String> = [
        ("TABLE_NAME", f.table.as_str()),
        ("QUEUE_URL", f.queue_url.as_str()),
        ("WEBSOCKET_ENDPOINT", endpoint.as_str()),
        ("CHAT_PUBLIC_URL", "https://api.example.com"),
        ("CHAT_N8N_WEBHOOK_URL", n8n_url.as_str()),
        ("CHAT_DISPATCH_BACKOFF_MS", "1000"),
        ("CHAT_RATE_MESSAGES_PER_MINUTE", "4"),
        ("CHAT_RATE_WEBHOOKS_PER_MINUTE", "3"),
        ("CHAT_RATE_SESSIONS_PER_5MIN", "2"),
        ("CHAT_HANDOFF_TIMEOUT_MS", "60000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.extend(secrets.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let mut apps = HashMap::new();
    for function in [
        "session",
        "send",
        "webhook",
        "connect",
        "disconnect",
        "dispatch",
        "agent",
    ] {
        // The attachment bucket only where the template sets it.
        let mut vars = vars.clone();
        if !with_ssm["functions"][function]["environment"]["CHAT_ATTACHMENTS_BUCKET"].is_null() {
            vars.insert("CHAT_ATTACHMENTS_BUCKET".into(), bucket.clone());
        }
        let app = rec
            .run(
                function,
                App::from_lookup(&|k| vars.get(k).cloned(), &f.sdk),
            )
            .await
            .expect("a cold start with secrets from SSM");
        apps.insert(function, app);
    }
    let apps = Apps(apps);
    let (session, send, webhook) = (apps.of("session"), apps.of("send"), apps.of("webhook"));
    let (connect, disconnect, dispatch) = (
        apps.of("connect"),
        apps.of("disconnect"),
        apps.of("dispatch"),
    );

    // session: guest and user sessions (the app JWT secret came from SSM), then the per-IP limit.
    let (s, b) = rec
        .run(
            "session",
            http(session, create_session_event("198.51.100.1", None)),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (sid, token) = (
        b["sessionId"].as_str().unwrap().to_string(),
        b["token"].as_str().unwrap().to_string(),
    );
    let jwt = app_jwt("user-7");
    let (s, b) = rec
        .run(
            "session",
            http(session, create_session_event("198.51.100.2", Some(&jwt))),
        )
        .await;
    assert_eq!(s, 201, "a user session: {b}");
    // Conversations people keep: the user's list (the byUser index), a resume, the export,
    // then the erasure of everything of the user, its socket closed (DeleteConnection).
    let (user_sid, user_token) = (
        b["sessionId"].as_str().unwrap().to_string(),
        b["token"].as_str().unwrap().to_string(),
    );
    let keep = |method: &str, path: &str| agent_event("session-get", &jwt, method, path, None);
    let (s, b) = rec
        .run("session", http(session, keep("GET", "/sessions")))
        .await;
    assert_eq!(
        (s, b["sessions"][0]["sessionId"].as_str()),
        (200, Some(user_sid.as_str())),
        "{b}"
    );
    let resume = keep("POST", &format!("/sessions/{user_sid}/resume"));
    let (s, b) = rec.run("session", http(session, resume)).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = rec
        .run("session", http(session, keep("GET", "/me/export")))
        .await;
    assert_eq!(s, 200, "{b}");
    let user_conn = conn_id();
    let (s, b) = rec
        .run(
            "connect",
            ws(
                apps.of("connect"),
                connect_event(&user_sid, &user_token, &user_conn),
                "connect",
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = rec
        .run("session", http(session, keep("DELETE", "/me")))
        .await;
    assert_eq!(s, 204, "{b}");
    for i in 0.. {
        assert!(i < 5, "the per-IP session limit never refused");
        let e = create_session_event("198.51.100.3", None);
        match rec.run("session", http(session, e)).await {
            (201, _) => {}
            (429, _) => break,
            (s, b) => panic!("{s} {b}"),
        }
    }

    // connect: a live connection, one whose pushes will answer 410, a refused token.
    let live = conn_id();
    let connect_as = |id: &str| connect_event(&sid, &token, id);
    let (s, b) = rec
        .run("connect", ws(connect, connect_as(&live), "connect"))
        .await;
    assert_eq!(s, 200, "{b}");
    let gone_conn = || format!("gone{}", ulid::Ulid::new());
    let g = gone_conn();
    rec.run("connect", ws(connect, connect_as(&g), "connect"))
        .await;
    let (s, _) = rec
        .run(
            "connect",
            ws(
                connect,
                connect_event(&sid, "bad-token", &conn_id()),
                "connect",
            ),
        )
        .await;
    assert_eq!(s, 401);

    // send over HTTP (the gone connection is deleted on its 410), repeated (idempotent).
    let mut post = authed("send-http", &sid, &token);
    post["body"] = json!(json!({"content": "hello", "clientMessageId": "iam-1"}).to_string());
    let (s, b) = rec.run("send", http(send, post.clone())).await;
    assert_eq!(s, 202, "{b}");
    let (s, _) = rec.run("send", http(send, post)).await;
    assert_eq!(s, 202, "an idempotent repeat");
    // An edit of that message (the session function: the message found by its id, one
    // conditional update, the change pushed; a delete makes the same calls, and is the agent's
    // below: this message must still be dispatched), then the changes since a time.
    let mid = b["message"]["id"].as_str().unwrap().to_string();
    let change = |method: &str, path: String, body: Option<Value>| {
        let mut e = authed("session-get", &sid, &token);
        e["rawPath"] = json!(path);
        e["requestContext"]["http"]["path"] = json!(path);
        e["requestContext"]["http"]["method"] = json!(method);
        if let Some(b) = body {
            e["body"] = json!(b.to_string());
        }
        e
    };
    let path = format!("/sessions/{sid}/messages/{mid}");
    let (s, b) = rec
        .run(
            "session",
            http(
                session,
                change("PATCH", path, Some(json!({"content": "hello!"}))),
            ),
        )
        .await;
    assert_eq!(
        (s, b["message"]["content"].as_str()),
        (200, Some("hello!")),
        "{b}"
    );
    let mut e = change("GET", format!("/sessions/{sid}/messages"), None);
    e["rawQueryString"] = json!("updatedAfter=0");
    let (s, b) = rec.run("session", http(session, e)).await;
    assert_eq!(
        (s, b["messages"][0]["id"].as_str()),
        (200, Some(mid.as_str())),
        "{b}"
    );
    // send over the WebSocket: every action, a bad frame, an unknown connection.
    let g = gone_conn();
    rec.run("connect", ws(connect, connect_as(&g), "connect"))
        .await;
    for frame in [
        json!({"action": "sendMessage", "content": "over ws", "clientMessageId": "iam-2"}),
        json!({"action": "typing", "isTyping": true}),
        json!({"action": "ping"}),
        json!({"action": "read", "upTo": 1}),
        json!({"action": "dance"}),
    ] {
        let (s, _) = rec
            .run("send", ws(send, frame_event(&live, &frame), "send"))
            .await;
        assert_eq!(s, 200);
    }
    let stranger = frame_event(&conn_id(), &json!({"action": "ping"}));
    rec.run("send", ws(send, stranger, "send")).await;
    // The per-session message limit (4 a minute): sent until refused.
    let mut accepted = 2;
    for i in 0.. {
        assert!(i < 5, "the per-session message limit never refused");
        let mut e = authed("send-http", &sid, &token);
        e["body"] = json!(json!({"content": format!("more {i}")}).to_string());
        match rec.run("send", http(send, e)).await {
            (202, _) => accepted += 1,
            (429, _) => break,
            (s, b) => panic!("{s} {b}"),
        }
    }

    // dispatch: four jobs delivered (pushes reach a gone connection), then a delivered one
    // again (skipped), a bad record, a retry with backoff, and the last attempt dead-lettered.
    let g = gone_conn();
    rec.run("connect", ws(connect, connect_as(&g), "connect"))
        .await;
    // (A repeated send may queue its message again: the dispatcher skips what is done.)
    let queued = queue_depth(&f).await;
    assert!(queued >= accepted, "{queued} queued, {accepted} accepted");
    let batch = receive_jobs(&f, queued).await;
    let first = batch.records[0].clone();
    let out = rec
        .run("dispatch", Box::pin(handlers::dispatch(dispatch, batch)))
        .await;
    assert!(out.batch_item_failures.is_empty());
    // (Delivery is at least once: a message queued twice in one batch may go out twice.)
    let delivered = n8n.count();
    assert!(delivered >= accepted, "{delivered} delivered");
    let mut again = SqsEvent::default();
    again.records.push(first.clone());
    let out = rec
        .run("dispatch", Box::pin(handlers::dispatch(dispatch, again)))
        .await;
    assert!(out.batch_item_failures.is_empty(), "skipped");
    assert_eq!(n8n.count(), delivered, "not delivered again");
    let bad: SqsEvent = serde_json::from_value(event("dispatch-bad-record")).unwrap();
    let out = rec
        .run("dispatch", Box::pin(handlers::dispatch(dispatch, bad)))
        .await;
    assert_eq!(out.batch_item_failures.len(), 1);
    *n8n.status.lock().unwrap() = 500;
    let (sid2, token2) = {
        let e = create_session_event("198.51.100.4", None);
        let (_, b) = rec.run("session", http(session, e)).await;
        (
            b["sessionId"].as_str().unwrap().to_string(),
            b["token"].as_str().unwrap().to_string(),
        )
    };
    let c2 = conn_id();
    rec.run(
        "connect",
        ws(connect, connect_event(&sid2, &token2, &c2), "connect"),
    )
    .await;
    let mut e = authed("send-http", &sid2, &token2);
    e["body"] = json!(json!({"content": "will fail"}).to_string());
    assert_eq!(rec.run("send", http(send, e)).await.0, 202);
    let batch = receive_jobs(&f, 1).await;
    let mut last = serde_json::to_value(&batch).unwrap();
    let out = rec
        .run("dispatch", Box::pin(handlers::dispatch(dispatch, batch)))
        .await;
    assert_eq!(out.batch_item_failures.len(), 1, "retried");
    let max = common::template()["maxReceiveCount"].to_string();
    last["Records"][0]["attributes"]["ApproximateReceiveCount"] = json!(max);
    let last: SqsEvent = serde_json::from_value(last).unwrap();
    let out = rec
        .run("dispatch", Box::pin(handlers::dispatch(dispatch, last)))
        .await;
    // Given up: the message fails, and the record is released to the dead-letter queue.
    assert_eq!(out.batch_item_failures.len(), 1, "dead-lettered");
    let (_, h) = rec
        .run(
            "session",
            http(session, authed("session-history", &sid2, &token2)),
        )
        .await;
    assert_eq!(h["messages"][0]["status"], "failed", "{h}");

    // webhook: a reply (pushed to a gone connection too), its repeat, a bad signature, health,
    // then the webhook rate limit (3 a minute).
    let g = gone_conn();
    rec.run("connect", ws(connect, connect_as(&g), "connect"))
        .await;
    let job: Value = serde_json::from_str(first.body.as_deref().unwrap()).unwrap();
    let reply = json!({"sessionId": sid, "replyTo": job["messageId"], "content": "hi",
                       "type": "text", "eventId": "iam-evt-1"});
    for _ in 0..2 {
        let (s, b) = rec
            .run("webhook", http(webhook, signed_reply(&reply)))
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let mut bad = event("webhook-bad-signature");
    bad["headers"]["x-chat-timestamp"] =
        json!((chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000).to_string());
    assert_eq!(rec.run("webhook", http(webhook, bad)).await.0, 401);
    assert_eq!(
        rec.run("webhook", http(webhook, event("webhook-health")))
            .await
            .0,
        200
    );
    for i in 0.. {
        assert!(i < 5, "the webhook limit never refused");
        let r = json!({"sessionId": sid, "content": format!("note {i}"), "eventId": format!("iam-n{i}")});
        match rec.run("webhook", http(webhook, signed_reply(&r))).await {
            (200, _) => {}
            (429, _) => break,
            (s, b) => panic!("{s} {b}"),
        }
    }

    // session reads, and a read receipt pushed (to a gone connection too).
    let g = gone_conn();
    rec.run("connect", ws(connect, connect_as(&g), "connect"))
        .await;
    for name in ["session-get", "session-history"] {
        let (s, b) = rec
            .run("session", http(session, authed(name, &sid, &token)))
            .await;
        assert_eq!(s, 200, "{name}: {b}");
    }
    let mut read = authed("session-read", &sid, &token);
    read["body"] = json!(json!({"upTo": 3}).to_string());
    let (s, b) = rec.run("session", http(session, read)).await;
    assert_eq!(s, 200, "{b}");

    // People in the loop (its own future: one this large overflows the test's stack).
    Box::pin(people_in_the_loop(&mut rec, &apps, &f, &n8n)).await;

    // Attachments: an ask, the upload, a send, a read, a dispatch.
    Box::pin(attachments_round(&mut rec, &apps, &f, &n8n, &bucket)).await;

    // disconnect: a known and an unknown connection.
    for id in [live.clone(), conn_id()] {
        let mut e = event("disconnect");
        e["requestContext"]["connectionId"] = json!(id);
        assert_eq!(
            rec.run("disconnect", ws(disconnect, e, "disconnect"))
                .await
                .0,
            200
        );
    }

    let calls = rec.calls;
    let mut report = String::new();
    for (function, c) in &calls {
        report.push_str(&format!("{function}:\n"));
        for (a, r) in c {
            report.push_str(&format!("  {a} {r}\n"));
        }
    }
    println!("calls by function:\n{report}");

    // With secrets in SSM: both ways.
    let problems = all_findings(&with_ssm, &calls);
    assert!(
        problems.is_empty(),
        "template.yaml's policies (secrets in SSM) do not match the code:\n{}\n\ncalls:\n{report}",
        problems.join("\n")
    );
    // With plain secrets (the default parameters): the same, less SSM.
    let plain = template_with(&[]);
    let without_ssm: BTreeMap<String, BTreeSet<Call>> = calls
        .iter()
        .map(|(k, c)| {
            let c = c.iter().filter(|(a, _)| !a.starts_with("ssm:")).cloned();
            (k.clone(), c.collect())
        })
        .collect();
    let problems = all_findings(&plain, &without_ssm);
    assert!(
        problems.is_empty(),
        "template.yaml's policies (plain secrets) do not match the code:\n{}",
        problems.join("\n")
    );

    // The check itself finds a missing grant and an unused one.
    let mut narrowed = with_ssm.clone();
    let connect_table = &mut narrowed["functions"]["connect"]["statements"][0];
    assert_eq!(connect_table["sid"], "Table");
    connect_table["actions"] = json!(["dynamodb:GetItem", "dynamodb:BatchWriteItem"]);
    let problems = all_findings(&narrowed, &calls);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("connect: calls dynamodb:PutItem")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("connect: grants dynamodb:BatchWriteItem")),
        "{problems:?}"
    );
    // And on the bucket: the presigned upload's tagging grant missing, a tag removal unused.
    let mut narrowed = with_ssm.clone();
    let statements = narrowed["functions"]["session"]["statements"]
        .as_array_mut()
        .unwrap();
    let files = statements
        .iter_mut()
        .find(|s| s["sid"] == "Attachments")
        .expect("the session function's attachment grants");
    files["actions"] = json!(["s3:PutObject", "s3:GetObject", "s3:DeleteObjectTagging"]);
    let problems = all_findings(&narrowed, &calls);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("session: calls s3:PutObjectTagging on AttachmentsBucket/")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p
            .contains("session: grants s3:DeleteObjectTagging on AttachmentsBucket/attachments/*")),
        "{problems:?}"
    );
}

/// An attachment's whole way, each presigned URL used over real HTTP inside the window of the
/// function that signed it (presigning makes no request; the URL works only as far as the
/// signer's role is granted): the session function's ask and the upload to its URL, one asked
/// for and never uploaded (its send refused after a HeadObject), the send (HeadObject, the
/// pending tag removed, the answer's download URL fetched), a read of the history and its
/// URL, and the dispatch to n8n with the URL n8n got fetched.
async fn attachments_round(
    rec: &mut Recorder,
    apps: &Apps,
    f: &common::Fresh,
    n8n: &chat_testkit::fake_n8n::FakeN8n,
    bucket: &str,
) {
    let (session, send, dispatch) = (apps.of("session"), apps.of("send"), apps.of("dispatch"));
    let (sid, token) = {
        let e = create_session_event("198.51.100.12", None);
        let (s, b) = rec.run("session", http(session, e)).await;
        assert_eq!(s, 201, "{b}");
        (
            b["sessionId"].as_str().unwrap().to_string(),
            b["token"].as_str().unwrap().to_string(),
        )
    };
    let bytes: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
    let ask = attachment_ask(&sid, &token, bytes.len());
    let (s, answer) = rec
        .run("session", async {
            let (s, answer) = http(session, ask.clone()).await;
            assert_eq!(s, 201, "{answer}");
            assert_eq!(world::upload(&answer, bytes.clone()).await, 200, "uploaded");
            (s, answer)
        })
        .await;
    assert_eq!(s, 201);
    let id = answer["attachmentId"].as_str().unwrap().to_string();
    let (s, never) = rec.run("session", http(session, ask)).await;
    assert_eq!(s, 201, "{never}");
    let send_with = |ids: Value, cmid: &str| {
        let mut e = authed("send-http", &sid, &token);
        e["body"] =
            json!(json!({"content": "", "attachments": ids, "clientMessageId": cmid}).to_string());
        e
    };
    let (s, b) = rec
        .run(
            "send",
            http(send, send_with(json!([never["attachmentId"]]), "iam-f0")),
        )
        .await;
    assert_eq!(s, 400, "not uploaded: {b}");
    let (s, b) = rec
        .run("send", async {
            let (s, b) = http(send, send_with(json!([id]), "iam-f1")).await;
            assert_eq!(world::download_all(&b, &bytes).await, 1, "{b}");
            (s, b)
        })
        .await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = rec
        .run("session", async {
            let (s, b) = http(session, authed("session-history", &sid, &token)).await;
            assert_eq!(world::download_all(&b, &bytes).await, 1, "{b}");
            (s, b)
        })
        .await;
    assert_eq!(s, 200, "{b}");
    // dispatch: n8n gets the message with its URL (and in `attachments`).
    *n8n.status.lock().unwrap() = 200;
    *n8n.answer.lock().unwrap() =
        chat_testkit::fake_n8n::Answer::Body(br#"{"output":"Got your file"}"#.to_vec());
    let mut batch = receive_jobs(f, queue_depth(f).await).await;
    batch.records.retain(|r| {
        let job: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        job["sessionId"] == sid.as_str() && job.get("kind").is_none()
    });
    assert_eq!(
        batch.records.len(),
        1,
        "the delivery of the message with the file"
    );
    rec.run("dispatch", async {
        let out = Box::pin(handlers::dispatch(dispatch, batch)).await;
        assert!(out.batch_item_failures.is_empty());
        let got = n8n.received.lock().unwrap().last().cloned().unwrap();
        assert!(world::download_all(&got, &bytes).await >= 2, "{got}");
    })
    .await;
    // The guest erases its conversation (DELETE /sessions/{id}): its file goes too.
    let erase = agent_event(
        "session-get",
        &token,
        "DELETE",
        &format!("/sessions/{sid}"),
        None,
    );
    let (s, b) = rec.run("session", http(session, erase)).await;
    assert_eq!(s, 204, "{b}");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&f.sdk)
            .force_path_style(true)
            .build(),
    );
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    assert!(
        !listed
            .contents()
            .iter()
            .any(|o| o.key().is_some_and(|k| k.contains(&id))),
        "the file is deleted with its conversation"
    );
}

/// `POST /sessions/{sid}/attachments` for a PNG of `size` bytes.
fn attachment_ask(sid: &str, token: &str, size: usize) -> Value {
    let mut e = authed("session-read", sid, token);
    let path = format!("/sessions/{sid}/attachments");
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["path"] = json!(path);
    e["routeKey"] = json!("POST /sessions/{id}/attachments");
    e["requestContext"]["routeKey"] = json!("POST /sessions/{id}/attachments");
    e["body"] =
        json!(json!({"name": "photo.png", "contentType": "image/png", "size": size}).to_string());
    e
}

/// The scenario of people in the loop: agents' sockets, the agent function's routes, typing,
/// status and presence over the WebSocket functions, and handoffs by n8n (webhook and
/// dispatch), each with its handoff timeout queued.
async fn people_in_the_loop(
    rec: &mut Recorder,
    apps: &Apps,
    f: &common::Fresh,
    n8n: &chat_testkit::fake_n8n::FakeN8n,
) {
    let (session, send, webhook) = (apps.of("session"), apps.of("send"), apps.of("webhook"));
    let (connect, disconnect, dispatch) = (
        apps.of("connect"),
        apps.of("disconnect"),
        apps.of("dispatch"),
    );
    // connect: two agents' sockets (the second is announced to the first).
    let agent = apps.of("agent");
    let (alex, sam) = (agent_jwt("a-1", "Alex"), agent_jwt("a-2", "Sam"));
    let (ag1, ag2) = (conn_id(), conn_id());
    for (jwt, id) in [(&alex, &ag1), (&sam, &ag2)] {
        let (s, b) = rec
            .run(
                "connect",
                ws(connect, agent_connect_event(jwt, id), "connect"),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let (sa, ta) = {
        let e = create_session_event("198.51.100.9", None);
        let (_, b) = rec.run("session", http(session, e)).await;
        (
            b["sessionId"].as_str().unwrap().to_string(),
            b["token"].as_str().unwrap().to_string(),
        )
    };
    let u3 = conn_id();
    rec.run(
        "connect",
        ws(connect, connect_event(&sa, &ta, &u3), "connect"),
    )
    .await;
    // agent: the user's handoff (its timeout queued), the inbox, a claim, a message, canned
    // replies, the agents list, the session read.
    let mut handoff = authed("session-handoff", &sa, &ta);
    handoff["body"] = json!("{}");
    let (s, b) = rec.run("agent", http(agent, handoff)).await;
    assert_eq!(
        (s, b["session"]["mode"].as_str()),
        (200, Some("waiting")),
        "{b}"
    );
    for view in ["waiting", "open"] {
        let path = format!("/agent/inbox?view={view}");
        let e = agent_event("agent-inbox", &alex, "GET", &path, None);
        let (s, b) = rec.run("agent", http(agent, e)).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["sessions"][0]["sessionId"], sa.as_str(), "{view}: {b}");
    }
    let act = |action: &str, jwt: &str, body: Option<Value>| {
        let mut e = agent_event(
            "agent-claim",
            jwt,
            "POST",
            &format!("/agent/sessions/{sa}/{action}"),
            body,
        );
        e["pathParameters"] = json!({"id": sa, "action": action});
        e
    };
    let (s, b) = rec
        .run("agent", http(agent, act("claim", &alex, None)))
        .await;
    assert_eq!(s, 200, "{b}");
    let e = agent_event("agent-inbox", &alex, "GET", "/agent/inbox?view=mine", None);
    let (s, b) = rec.run("agent", http(agent, e)).await;
    assert_eq!(
        (s, b["sessions"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{b}"
    );
    let say = agent_event(
        "agent-message",
        &alex,
        "POST",
        &format!("/agent/sessions/{sa}/messages"),
        Some(json!({"content": "Alex here", "clientMessageId": "iam-a1"})),
    );
    let (s, b) = rec.run("agent", http(agent, say)).await;
    assert_eq!(s, 202, "{b}");
    // The agent edits its message and reads the changes since a time (it deletes one with a
    // file below).
    let path = format!(
        "/agent/sessions/{sa}/messages/{}",
        b["message"]["id"].as_str().unwrap()
    );
    let e = agent_event(
        "agent-message",
        &alex,
        "PATCH",
        &path,
        Some(json!({"content": "Alex, here"})),
    );
    let (s, b) = rec.run("agent", http(agent, e)).await;
    assert_eq!(s, 200, "{b}");
    let path = format!("/agent/sessions/{sa}/messages?updatedAfter=0");
    let e = agent_event("agent-message", &alex, "GET", &path, None);
    let (s, b) = rec.run("agent", http(agent, e)).await;
    assert_eq!(
        (s, b["messages"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{b}"
    );
    // Alex attaches a file: the ask and the upload, the message taking it, its URL read.
    let bytes = b"%PDF-1.4 a small file".to_vec();
    let ask = agent_event(
        "agent-message",
        &alex,
        "POST",
        &format!("/agent/sessions/{sa}/attachments"),
        Some(json!({"name": "terms.pdf", "contentType": "application/pdf", "size": bytes.len()})),
    );
    let answer = rec
        .run("agent", async {
            let (s, answer) = http(agent, ask).await;
            assert_eq!(s, 201, "{answer}");
            assert_eq!(world::upload(&answer, bytes.clone()).await, 200, "uploaded");
            answer
        })
        .await;
    let say = agent_event(
        "agent-message",
        &alex,
        "POST",
        &format!("/agent/sessions/{sa}/messages"),
        Some(
            json!({"content": "The terms", "attachments": [answer["attachmentId"]],
                    "clientMessageId": "iam-a2"}),
        ),
    );
    let (s, b) = rec.run("agent", http(agent, say)).await;
    assert_eq!(s, 202, "{b}");
    let read = agent_event(
        "agent-session",
        &alex,
        "GET",
        &format!("/agent/sessions/{sa}/messages"),
        None,
    );
    rec.run("agent", async {
        let (s, b) = http(agent, read).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(world::download_all(&b, &bytes).await, 1, "{b}");
    })
    .await;
    // Alex deletes the message with the file: the file goes too (DeleteObject).
    let with_file = b["message"]["id"].as_str().unwrap().to_string();
    let e = agent_event(
        "agent-message",
        &alex,
        "DELETE",
        &format!("/agent/sessions/{sa}/messages/{with_file}"),
        None,
    );
    let (s, gone) = rec.run("agent", http(agent, e)).await;
    assert_eq!(
        (s, gone["message"]["deleted"].as_bool()),
        (200, Some(true)),
        "{gone}"
    );
    let canned = |method: &str, path: &str, body: Option<Value>| {
        agent_event("agent-canned-create", &alex, method, path, body)
    };
    let body = json!({"shortcut": "hi", "title": "Hello", "text": "Hi there!"});
    let (s, b) = rec
        .run(
            "agent",
            http(agent, canned("POST", "/agent/canned", Some(body))),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let cid = b["reply"]["id"].as_str().unwrap().to_string();
    let (s, _) = rec
        .run("agent", http(agent, canned("GET", "/agent/canned", None)))
        .await;
    assert_eq!(s, 200);
    let body = json!({"shortcut": "hello", "title": "Hello", "text": "Hello there!"});
    let path = format!("/agent/canned/{cid}");
    let (s, b) = rec
        .run("agent", http(agent, canned("PUT", &path, Some(body))))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = rec
        .run("agent", http(agent, canned("DELETE", &path, None)))
        .await;
    assert_eq!(s, 204, "{b}");
    let e = agent_event("agent-agents", &alex, "GET", "/agent/agents", None);
    let (s, b) = rec.run("agent", http(agent, e)).await;
    assert_eq!(
        (s, b["agents"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{b}"
    );
    let e = agent_event(
        "agent-session",
        &alex,
        "GET",
        &format!("/agent/sessions/{sa}"),
        None,
    );
    let (s, b) = rec.run("agent", http(agent, e)).await;
    assert_eq!(s, 200, "{b}");
    // send: the user types and writes to Alex; Alex types, goes away, pings.
    for frame in [
        json!({"action": "typing", "isTyping": true}),
        json!({"action": "sendMessage", "content": "for Alex", "clientMessageId": "iam-u1"}),
    ] {
        rec.run("send", ws(send, frame_event(&u3, &frame), "send"))
            .await;
    }
    for frame in [
        json!({"action": "typing", "sessionId": sa, "isTyping": true}),
        json!({"action": "status", "status": "away"}),
        json!({"action": "ping"}),
    ] {
        let (s, _) = rec
            .run("send", ws(send, frame_event(&ag1, &frame), "send"))
            .await;
        assert_eq!(s, 200);
    }
    // The user's last socket closes, a new one opens (presence both times).
    let mut e = event("disconnect");
    e["requestContext"]["connectionId"] = json!(u3);
    rec.run("disconnect", ws(disconnect, e, "disconnect")).await;
    let u4 = conn_id();
    rec.run(
        "connect",
        ws(connect, connect_event(&sa, &ta, &u4), "connect"),
    )
    .await;
    // Alex hands it to Sam; Sam's socket closes (offline: presence and the agents list); Sam
    // releases it, and it is closed.
    let to_sam = json!({"agentId": "a-2", "agentName": "Sam"});
    let (s, b) = rec
        .run("agent", http(agent, act("transfer", &alex, Some(to_sam))))
        .await;
    assert_eq!(s, 200, "{b}");
    let mut e = event("disconnect");
    e["requestContext"]["connectionId"] = json!(ag2);
    rec.run("disconnect", ws(disconnect, e, "disconnect")).await;
    let (s, b) = rec
        .run("agent", http(agent, act("release", &sam, None)))
        .await;
    assert_eq!(s, 200, "{b}");
    // webhook: n8n asks for a person (its timeout queued); then the session is closed.
    let reply = json!({"sessionId": sa, "content": "Let me find a person", "type": "handoff",
                       "eventId": "iam-handoff-1"});
    let (s, b) = rec
        .run("webhook", http(webhook, signed_reply(&reply)))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = rec
        .run("agent", http(agent, act("close", &alex, None)))
        .await;
    assert_eq!(
        (s, b["session"]["mode"].as_str()),
        (200, Some("closed")),
        "{b}"
    );
    // dispatch: n8n answers a message with a handoff in its response (its timeout queued).
    *n8n.status.lock().unwrap() = 200;
    *n8n.answer.lock().unwrap() = chat_testkit::fake_n8n::Answer::Body(
        br#"{"output":"A person will help","type":"handoff"}"#.to_vec(),
    );
    let (sb, tb) = {
        let e = create_session_event("198.51.100.10", None);
        let (_, b) = rec.run("session", http(session, e)).await;
        (
            b["sessionId"].as_str().unwrap().to_string(),
            b["token"].as_str().unwrap().to_string(),
        )
    };
    let mut e = authed("send-http", &sb, &tb);
    e["body"] = json!(json!({"content": "a person please"}).to_string());
    assert_eq!(rec.run("send", http(send, e)).await.0, 202);
    // (Handoff timeouts queued above may be visible already: the emulator may not delay
    // them. Only this session's delivery is run.)
    let mut batch = receive_jobs(f, queue_depth(f).await).await;
    batch.records.retain(|r| {
        let job: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        job["sessionId"] == sb.as_str() && job.get("kind").is_none()
    });
    assert_eq!(batch.records.len(), 1, "the delivery of sb's message");
    let out = rec
        .run("dispatch", Box::pin(handlers::dispatch(dispatch, batch)))
        .await;
    assert!(out.batch_item_failures.is_empty());
    let (_, v) = rec
        .run("session", http(session, authed("session-get", &sb, &tb)))
        .await;
    assert_eq!(v["session"]["mode"], "waiting", "{v}");
}

#[test]
fn iam_wildcards_match_as_iam_matches_them() {
    assert!(glob(
        "arn:aws:x:*/POST/@connections/*",
        "arn:aws:x:a/b/POST/@connections/c1"
    ));
    assert!(!glob(
        "arn:aws:x:*/POST/@connections/*",
        "arn:aws:x:a/DELETE/@connections/c1"
    ));
    assert!(glob("Table", "Table"));
    assert!(!glob("Table", "Table/index/byMessageId"));
    assert!(glob("Table/index/*", "Table/index/byMessageId"));
    assert!(glob("dynamodb:Get*", "dynamodb:GetItem"));
    assert!(!glob("dynamodb:GetItem", "dynamodb:GetItems"));
}

/// `N8nSessionStart=true`: creating a session queues its session-start job, and only then
/// does the session function's policy grant `sqs:SendMessage` on the queue (both ways).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_start_grant_follows_its_parameter() {
    let _turn = RECORDER.lock().await;
    let f = common::fresh().await;
    let on = template_with(&[("N8nSessionStart", "true")]);
    let off = template_with(&[]);
    let mut rec = Recorder {
        names: Names::new(&f, &on, "no-bucket"),
        calls: BTreeMap::new(),
        gone: Arc::new(Mutex::new(Vec::new())),
    };
    let vars: HashMap<&str, &str> = [
        ("TABLE_NAME", f.table.as_str()),
        ("QUEUE_URL", f.queue_url.as_str()),
        ("WEBSOCKET_ENDPOINT", "http://127.0.0.1:9"),
        ("CHAT_PUBLIC_URL", "https://api.example.com"),
        ("CHAT_N8N_WEBHOOK_URL", "http://127.0.0.1:9/n8n"),
        ("CHAT_WEBHOOK_SECRET", "iam-test-webhook-secret"),
        ("CHAT_SESSION_SECRET", "iam-test-session-secret"),
        ("CHAT_N8N_SESSION_START", "true"),
    ]
    .into_iter()
    .collect();
    let app = App::from_lookup(&|k| vars.get(k).map(|v| v.to_string()), &f.sdk)
        .await
        .expect("a cold start");
    let (status, _) = rec
        .run(
            "session",
            http(&app, create_session_event("198.51.100.7", None)),
        )
        .await;
    assert_eq!(status, 201);
    let calls = &rec.calls["session"];
    let queue = calls
        .iter()
        .filter(|(a, _)| a.starts_with("sqs:"))
        .collect::<Vec<_>>();
    assert_eq!(queue.len(), 1, "one queued job: {calls:?}");
    // (Only the session start is driven here: the grants it does not use are the other
    // test's business.)
    let granted = findings("session", &on["functions"]["session"], calls);
    assert!(
        granted.iter().all(|p| p.contains("which no call uses")),
        "with the parameter every call is granted: {granted:?}"
    );
    assert!(
        !granted.iter().any(|p| p.contains("sqs:")),
        "and the queue grant is used: {granted:?}"
    );
    let refused = findings("session", &off["functions"]["session"], calls);
    assert!(
        refused
            .iter()
            .any(|p| p.contains("sqs:SendMessage") && !p.contains("which no call uses")),
        "without the parameter the call is not granted: {refused:?}"
    );
    let jobs = receive_jobs(&f, 1).await;
    assert!(
        jobs.records[0]
            .body
            .as_deref()
            .is_some_and(|b| b.contains("sessionStart")),
        "{:?}",
        jobs.records[0].body
    );
}
