//! Booting the shipped Lambda binaries as Lambda boots them: `exec` with a cleared environment
//! holding what Lambda sets (the `AWS_LAMBDA_*` runtime variables, region, credentials) plus
//! the function's own configuration, against a [`RuntimeApi`] of the test. Shared by the
//! `lambda_boot` test and the `cold_start` benchmark; the including crate also declares the
//! `common` and `runtime_api` modules.

use super::emulator::{self as common, Fresh};
use super::runtime_api::{Outcome, RuntimeApi};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The seven Lambda binaries, by their binary names.
pub const FUNCTIONS: [&str; 7] = [
    "session",
    "send",
    "webhook",
    "connect",
    "disconnect",
    "dispatch",
    "agent",
];

/// The bound of every wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// Distinct secret values, so a leak into a binary's output is found by plain search.
pub const WEBHOOK_SECRET: &str = "whsec-BOOT-5f1d3c9a7e2b4d6f";
pub const SESSION_SECRET: &str = "sesssec-BOOT-8c2e4a6b0d1f3e5a";
pub const AUTH_JWT_SECRET: &str = "jwtsec-BOOT-3a5c7e9b1d2f4a6c";
pub const AWS_SECRET_KEY: &str = "awssec-BOOT-9e7c5a3b1f2d4c6e";

pub fn secret_values() -> [&'static str; 4] {
    [
        WEBHOOK_SECRET,
        SESSION_SECRET,
        AUTH_JWT_SECRET,
        AWS_SECRET_KEY,
    ]
}

/// Fails when any secret value of the environment appears in `output`.
pub fn assert_no_secrets(what: &str, output: &str) {
    for s in secret_values() {
        assert!(
            !output.contains(s),
            "{what}: a secret value of the environment appears in the output:\n{output}"
        );
    }
}

/// The folder of the binaries built with the profile of the running test or benchmark
/// (`target/<profile>/deps/<exe>` → `target/<profile>`).
pub fn own_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the current executable is known");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable lies in target/<profile>/deps")
        .to_path_buf()
}

/// The path of a Lambda binary in `dir`; fails with what to run (`build_hint`) when it is
/// missing. (Tests take theirs from cargo, `CARGO_BIN_EXE_<name>`, which is always current.)
pub fn binary(dir: &Path, name: &str, build_hint: &str) -> PathBuf {
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "the Lambda binary {} is missing: run `{build_hint}` first",
        p.display()
    );
    p
}

/// A sample event of `events/`.
pub fn event(file: &str) -> Value {
    let p = common::repo().join("events").join(file);
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

fn set(v: &mut Value, pointer: &str, value: Value) {
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("the event has no {pointer}")) = value;
}

/// An HTTP API event of `events/` aimed at a real session: its id in the path and the route
/// parameters, its token in `authorization`.
pub fn http_event_for(file: &str, session_id: &str, token: &str) -> Value {
    let mut e = event(file);
    let sample = e["pathParameters"]["id"]
        .as_str()
        .expect("the event has pathParameters.id")
        .to_string();
    set(&mut e, "/pathParameters/id", json!(session_id));
    for p in ["/rawPath", "/requestContext/http/path"] {
        let path = e.pointer(p).and_then(Value::as_str).unwrap().to_string();
        set(&mut e, p, json!(path.replace(&sample, session_id)));
    }
    e["headers"]["authorization"] = json!(format!("Bearer {token}"));
    e
}

/// `connect.json` for a real session and connection id.
pub fn connect_event(session_id: &str, token: &str, connection_id: &str) -> Value {
    let mut e = event("connect.json");
    e["queryStringParameters"] = json!({"sessionId": session_id, "token": token});
    e["multiValueQueryStringParameters"] = json!({"sessionId": [session_id], "token": [token]});
    set(&mut e, "/requestContext/connectionId", json!(connection_id));
    e
}

/// `disconnect.json` for a connection id.
pub fn disconnect_event(connection_id: &str) -> Value {
    let mut e = event("disconnect.json");
    set(&mut e, "/requestContext/connectionId", json!(connection_id));
    e
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A webhook event carrying `body`, stamped now and signed with `secret`.
pub fn signed_webhook(file: &str, body: &Value, secret: &str) -> Value {
    let mut e = event(file);
    let raw = body.to_string();
    let ts = unix_now().to_string();
    e["headers"]["x-chat-timestamp"] = json!(ts);
    e["headers"]["x-chat-signature"] = json!(chat_core::signature::sign(
        secret.as_bytes(),
        &ts,
        raw.as_bytes()
    ));
    e["headers"]["content-length"] = json!(raw.len().to_string());
    e["body"] = json!(raw);
    e
}

/// The status and JSON body of an API Gateway (HTTP or WebSocket) response.
pub fn http(o: &Outcome) -> (i64, Value) {
    assert!(
        o.ok,
        "the function reported an error instead of a response: {}",
        String::from_utf8_lossy(&o.body)
    );
    let r = o.json();
    let status = r["statusCode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no statusCode in {r}"));
    let body = match &r["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        Value::Null => Value::Null,
        other => panic!("unexpected body {other}"),
    };
    (status, body)
}

/// What Lambda sets for every function (the runtime variables without `AWS_LAMBDA_RUNTIME_API`,
/// which comes with the Runtime API server), pointed at the emulator at `emulator_url`.
pub fn lambda_base_env(function: &str, emulator_url: &str) -> BTreeMap<String, String> {
    let vars = [
        ("AWS_LAMBDA_FUNCTION_NAME", format!("chat-{function}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/chat-{function}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2024/11/22/[$LATEST]0123456789abcdef0123456789abcdef".into(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
        ("_HANDLER", "bootstrap".into()),
        ("LAMBDA_TASK_ROOT", "/var/task".into()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE".into()),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_ENDPOINT_URL", emulator_url.into()),
    ];
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The whole environment of `function` as `template.yaml` gives it, on the emulator's `fresh`
/// table and queue; the push endpoint is the emulator (moto serves `PostToConnection` without
/// a stage path).
pub fn function_env(function: &str, fresh: &Fresh) -> BTreeMap<String, String> {
    let url = &common::emulator().url;
    config_env(function, url, &fresh.table, &fresh.queue_url)
}

/// The whole environment of `function`, with every AWS endpoint (SDK and push) at `aws_url`.
pub fn config_env(
    function: &str,
    aws_url: &str,
    table: &str,
    queue_url: &str,
) -> BTreeMap<String, String> {
    let mut env = lambda_base_env(function, aws_url);
    let vars = [
        ("TABLE_NAME", table),
        ("QUEUE_URL", queue_url),
        ("WEBSOCKET_ENDPOINT", aws_url),
        ("CHAT_PUBLIC_URL", "http://127.0.0.1:9/api"),
        ("CHAT_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("CHAT_SESSION_SECRET", SESSION_SECRET),
        ("CHAT_AUTH_JWT_SECRET", AUTH_JWT_SECRET),
    ];
    env.extend(vars.map(|(k, v)| (k.to_string(), v.to_string())));
    if function == "dispatch" {
        // A closed local port: n8n is never reached by the events this is used with, unless
        // the caller points it elsewhere.
        env.insert(
            "CHAT_N8N_WEBHOOK_URL".into(),
            "http://127.0.0.1:9/n8n".into(),
        );
    }
    env
}

/// One function instance: the process and its own Runtime API server.
pub struct Lambda {
    pub name: String,
    pub api: RuntimeApi,
    /// Just before `exec`.
    pub exec_at: Instant,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Lambda {
    /// Execs `bin` with exactly `env` (plus `AWS_LAMBDA_RUNTIME_API`), as Lambda does.
    pub async fn start(bin: &Path, name: &str, env: &BTreeMap<String, String>) -> Self {
        let api = RuntimeApi::start(&format!("chat-{name}")).await;
        Self::start_on(api, bin, name, env)
    }

    /// Like [`Lambda::start`], on a Runtime API prepared by the caller (events may be queued
    /// already, as on a cold start triggered by an invocation).
    pub fn start_on(
        api: RuntimeApi,
        bin: &Path,
        name: &str,
        env: &BTreeMap<String, String>,
    ) -> Self {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .envs(env)
            .env("AWS_LAMBDA_RUNTIME_API", api.host())
            .current_dir(bin.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let exec_at = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot exec {}: {e}", bin.display()));
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        readers.push(tokio::spawn(drain(stdout, output.clone())));
        readers.push(tokio::spawn(drain(stderr, output.clone())));
        Self {
            name: name.to_string(),
            api,
            exec_at,
            child,
            output,
            readers,
        }
    }

    /// Everything the process wrote so far (stdout and stderr, interleaved).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Queues `event` and waits (bounded by [`WAIT`]) for the function's answer; fails with the
    /// process's output when it exits or stays silent.
    pub async fn call(&mut self, event: &Value) -> Outcome {
        let id = self.api.invoke(event);
        self.answer(&id).await
    }

    /// Waits (bounded by [`WAIT`]) for the answer to the queued invocation `id`.
    pub async fn answer(&mut self, id: &str) -> Outcome {
        let outcome = tokio::select! {
            o = self.api.outcome(id, WAIT) => o,
            status = self.child.wait() => {
                // It may have answered just before exiting.
                self.api.outcome(id, Duration::from_millis(200)).await.or_else(|| {
                    panic!("{} exited ({status:?}) without answering", self.name)
                })
            }
        };
        match outcome {
            Some(o) => o,
            None => {
                let out = self.output();
                panic!(
                    "{} did not answer within {WAIT:?} (next calls: {}); output:\n{out}",
                    self.name,
                    self.api.next_calls()
                )
            }
        }
    }

    /// Waits (bounded by `timeout`) for the process to exit, then for its output to be read.
    pub async fn exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .ok()?;
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        Some(status)
    }

    /// Kills the process and waits for it (the end of every test; dropping also kills it).
    pub async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.exit(WAIT).await;
        self.output()
    }
}

async fn drain(mut from: impl tokio::io::AsyncRead + Unpin, into: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        into.lock().unwrap().extend_from_slice(&buf[..n]);
    }
}

/// The items of one partition of the table (a Query, never a Scan).
pub async fn partition(fresh: &Fresh, pk: &str) -> Vec<HashMap<String, AttributeValue>> {
    let client = aws_sdk_dynamodb::Client::new(&fresh.sdk);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .query()
            .table_name(&fresh.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send();
        let page = tokio::time::timeout(WAIT, page)
            .await
            .expect("the emulator answers a query in time")
            .expect("query");
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// The sort keys of one partition.
pub async fn sort_keys(fresh: &Fresh, pk: &str) -> Vec<String> {
    partition(fresh, pk)
        .await
        .iter()
        .map(|i| i["sk"].as_s().unwrap().clone())
        .collect()
}

/// Messages waiting in (or in flight from) a queue.
pub async fn queue_depth(fresh: &Fresh, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let request = aws_sdk_sqs::Client::new(&fresh.sdk)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send();
    let attrs = tokio::time::timeout(WAIT, request)
        .await
        .expect("the emulator answers in time")
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    attrs.values().map(|v| v.parse::<u64>().unwrap_or(0)).sum()
}

/// An in-process app on the same table, queue and secrets as the binaries (to prepare state).
pub async fn app(fresh: &Fresh) -> chat_aws::App {
    let env = function_env("session", fresh);
    let lambda_env = chat_aws::app::LambdaEnv::from_lookup(&|k| env.get(k).cloned())
        .expect("the test environment is complete");
    chat_aws::App::with_sdk(lambda_env, &fresh.sdk, None).expect("the app builds")
}

/// A guest session created in-process: `(id, token)`.
pub async fn session_in_process(app: &chat_aws::App, client_ip: &str) -> (String, String) {
    let r = chat_core::api::create_session(&app.service, client_ip, None, b"{}").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let b: Value = serde_json::from_str(&r.body).unwrap();
    (
        b["sessionId"].as_str().unwrap().to_string(),
        b["token"].as_str().unwrap().to_string(),
    )
}

/// A user message posted in-process; returns its id.
pub async fn message_in_process(app: &chat_aws::App, id: &str, token: &str, text: &str) -> String {
    let auth = format!("Bearer {token}");
    let body = json!({ "content": text }).to_string();
    let r = chat_core::api::post_message(&app.service, id, Some(&auth), body.as_bytes()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let b: Value = serde_json::from_str(&r.body).unwrap();
    b["message"]["id"].as_str().unwrap().to_string()
}
