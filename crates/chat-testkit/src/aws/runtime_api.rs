//! A small AWS Lambda Runtime API server for tests and benchmarks, as the `lambda_runtime` crate
//! talks to it (`AWS_LAMBDA_RUNTIME_API=<host:port>`, paths under `/2018-06-01/runtime/`):
//!
//! - `GET  invocation/next`: hands out the queued events one at a time, with the headers
//!   `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//!   `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`; with nothing queued
//!   it long-polls (holds the request until an event is queued), as the real one does;
//! - `POST invocation/{id}/response` and `invocation/{id}/error`: record the outcome (202);
//!   an unknown or already answered id gets 400 `InvalidRequestID`, as on Lambda;
//! - `POST init/error`: records an init failure (202).
//!
//! It also records when `next` was first called (the runtime finished its init) and when each
//! outcome arrived, so a benchmark can measure init time and first-answer time from `exec`.
//! One server serves one function instance: a `next` held by a killed process would otherwise
//! take the next instance's event.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc};

/// What the function answered for one invocation.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub request_id: String,
    /// `true` for `/response`, `false` for `/error`.
    pub ok: bool,
    /// `Lambda-Runtime-Function-Error-Type` of an `/error` post.
    pub error_type: Option<String>,
    pub body: Bytes,
    pub at: Instant,
}

impl Outcome {
    /// The body as JSON (panics with the raw body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the {} of {} is not JSON ({e}): {}",
                if self.ok { "response" } else { "error" },
                self.request_id,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// An `init/error` post.
#[derive(Debug, Clone)]
pub struct InitError {
    pub error_type: Option<String>,
    pub body: Bytes,
    pub at: Instant,
}

struct Invocation {
    request_id: String,
    event: Bytes,
}

#[derive(Default)]
struct Record {
    first_next: Option<Instant>,
    next_calls: usize,
    /// Ids handed out and not answered yet.
    pending: HashMap<String, Instant>,
    outcomes: HashMap<String, Outcome>,
    init_errors: Vec<InitError>,
}

struct Shared {
    function_name: String,
    timeout: Duration,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    record: Mutex<Record>,
    changed: Notify,
}

/// A running Runtime API server for one function instance; stops when dropped.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Invocation>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const BASE: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    /// Starts a server on 127.0.0.1:0 for the function `function_name` (used in the ARN), with
    /// a 30 s invocation deadline.
    pub async fn start(function_name: &str) -> Self {
        Self::start_with_timeout(function_name, Duration::from_secs(30)).await
    }

    pub async fn start_with_timeout(function_name: &str, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_name: function_name.to_string(),
            timeout,
            events: tokio::sync::Mutex::new(rx),
            record: Mutex::new(Record::default()),
            changed: Notify::new(),
        });
        let app = Router::new()
            .route(&format!("{BASE}/invocation/next"), get(next))
            .route(
                &format!("{BASE}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{BASE}/invocation/{{id}}/error"), post(error))
            .route(&format!("{BASE}/init/error"), post(init_error))
            // Lambda's own payload limit (6 MB), not axum's 2 MB default.
            .layer(DefaultBodyLimit::max(6 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the Runtime API binds 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self {
            addr,
            shared,
            queue: tx,
            server,
        }
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` (`host:port`, no scheme, as on Lambda).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn function_arn(&self) -> String {
        arn(&self.shared.function_name)
    }

    /// Queues an event; returns its request id.
    pub fn invoke(&self, event: &Value) -> String {
        self.invoke_raw(serde_json::to_vec(event).unwrap())
    }

    /// Queues raw event bytes; returns its request id.
    pub fn invoke_raw(&self, event: impl Into<Bytes>) -> String {
        let request_id = request_id();
        self.queue
            .send(Invocation {
                request_id: request_id.clone(),
                event: event.into(),
            })
            .expect("the Runtime API is running");
        request_id
    }

    /// Waits at most `timeout` for the outcome of `request_id`.
    pub async fn outcome(&self, request_id: &str, timeout: Duration) -> Option<Outcome> {
        self.wait_for(timeout, |r| r.outcomes.get(request_id).cloned())
            .await
    }

    /// Queues `event` and waits at most `timeout` for its outcome.
    pub async fn invoke_and_wait(&self, event: &Value, timeout: Duration) -> Option<Outcome> {
        let id = self.invoke(event);
        self.outcome(&id, timeout).await
    }

    /// Waits at most `timeout` for the first `init/error` post.
    pub async fn init_error(&self, timeout: Duration) -> Option<InitError> {
        self.wait_for(timeout, |r| r.init_errors.first().cloned())
            .await
    }

    /// Waits at most `timeout` for the first `next` call (the runtime's init is done).
    pub async fn first_next(&self, timeout: Duration) -> Option<Instant> {
        self.wait_for(timeout, |r| r.first_next).await
    }

    /// When `next` was first called, if it was.
    pub fn first_next_at(&self) -> Option<Instant> {
        self.shared.record.lock().unwrap().first_next
    }

    /// Waits at most `timeout` until `next` has been called `n` times; returns the count.
    pub async fn wait_next_calls(&self, n: usize, timeout: Duration) -> usize {
        self.wait_for(timeout, |r| (r.next_calls >= n).then_some(r.next_calls))
            .await
            .unwrap_or_else(|| self.next_calls())
    }

    pub fn next_calls(&self) -> usize {
        self.shared.record.lock().unwrap().next_calls
    }

    pub fn init_errors(&self) -> Vec<InitError> {
        self.shared.record.lock().unwrap().init_errors.clone()
    }

    /// Every outcome recorded so far, in the order they arrived.
    pub fn outcomes(&self) -> Vec<Outcome> {
        let mut all: Vec<Outcome> = self
            .shared
            .record
            .lock()
            .unwrap()
            .outcomes
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|o| o.at);
        all
    }

    async fn wait_for<T>(&self, timeout: Duration, f: impl Fn(&Record) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(v) = f(&self.shared.record.lock().unwrap()) {
                return Some(v);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return f(&self.shared.record.lock().unwrap());
            }
        }
    }
}

fn arn(function_name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}")
}

/// A fresh UUID-shaped request id, as Lambda's.
fn request_id() -> String {
    let h = format!("{:032x}", ulid::Ulid::new().0);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An X-Ray trace header, as Lambda passes it (not sampled).
fn trace_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let h = format!("{:032x}", ulid::Ulid::new().0);
    format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        now.as_secs(),
        &h[8..32],
        &h[0..16]
    )
}

fn runtime_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errorType": kind, "errorMessage": message})),
    )
        .into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    {
        let mut r = s.record.lock().unwrap();
        r.first_next.get_or_insert_with(Instant::now);
        r.next_calls += 1;
    }
    s.changed.notify_waiters();
    // Long poll: one `next` at a time takes the next queued event, waiting as long as it takes.
    let inv = {
        let mut events = s.events.lock().await;
        match events.recv().await {
            Some(inv) => inv,
            None => {
                return runtime_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceException",
                    "the Runtime API is stopping",
                );
            }
        }
    };
    s.record
        .lock()
        .unwrap()
        .pending
        .insert(inv.request_id.clone(), Instant::now());
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + s.timeout;
    let mut h = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        h.insert(k, HeaderValue::from_str(&v).unwrap());
    };
    set("content-type", "application/json".into());
    set("lambda-runtime-aws-request-id", inv.request_id.clone());
    set(
        "lambda-runtime-deadline-ms",
        deadline.as_millis().to_string(),
    );
    set("lambda-runtime-invoked-function-arn", arn(&s.function_name));
    set("lambda-runtime-trace-id", trace_id());
    (StatusCode::OK, h, inv.event).into_response()
}

fn record_outcome(s: &Shared, id: String, ok: bool, headers: &HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    {
        let mut r = s.record.lock().unwrap();
        if r.pending.remove(&id).is_none() {
            return runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "the request id is unknown or already answered",
            );
        }
        let error_type = headers
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        r.outcomes.insert(
            id.clone(),
            Outcome {
                request_id: id,
                ok,
                error_type,
                body,
                at,
            },
        );
    }
    s.changed.notify_waiters();
    accepted()
}

async fn response(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record_outcome(&s, id, true, &headers, body)
}

async fn error(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record_outcome(&s, id, false, &headers, body)
}

async fn init_error(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.record.lock().unwrap().init_errors.push(InitError {
        error_type,
        body,
        at: Instant::now(),
    });
    s.changed.notify_waiters();
    accepted()
}
