//! Warm handler cost, in-process: `send`, `webhook`, `connect` and `dispatch` as a warm
//! Lambda runs them, from the event's JSON text to the response's JSON text, on the in-memory
//! ports of `chat_testkit::memory` (so the figure is this code's CPU, not the network's). Each
//! handler runs `WARMUP` untimed then `CALLS` timed calls, every one a distinct, valid request
//! (a new message, reply, connection or job); every answer is checked. Allocations per call
//! are counted by a counting global allocator.
//!
//! `cargo bench -p chat-aws --bench warm` (part of `tests/bench`).

use chat_testkit::bench as bench_report;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::sqs::SqsEvent;
use chat_aws::App;
use chat_aws::handlers::{self, SendEvent};
use chat_core::Config;
use chat_core::ports::{Clock, SystemClock};
use chat_core::service::Ports;
use chat_testkit::memory::{MemoryQueue, MemoryStore, RecordingPush, ScriptedAgent};
use serde_json::{Value, json};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const WARMUP: usize = 300;
const CALLS: usize = 3000;

/// Counts allocations (and reallocations) made through the global allocator.
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn event(name: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
    let text = std::fs::read_to_string(format!("{path}{name}.json")).expect("sample event");
    serde_json::from_str(&text).expect("sample event is JSON")
}

fn app() -> (App, Config) {
    let mut config = chat_testkit::config();
    config.limits.messages_per_minute = u64::MAX;
    config.limits.webhooks_per_minute = u64::MAX;
    config.limits.sessions_per_5min = u64::MAX;
    let ports = Ports {
        store: Arc::new(MemoryStore::new()),
        queue: Arc::new(MemoryQueue::default()),
        push: Arc::new(RecordingPush::default()),
        clock: Arc::new(SystemClock),
        limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
    };
    let agent = Arc::new(ScriptedAgent::default());
    (App::from_ports(ports, config.clone(), Some(agent)), config)
}

/// Runs `call` on each prepared input: (median µs, p99 µs, allocations per call).
fn measure<F: FnMut(&str)>(inputs: &[String], mut call: F) -> (f64, f64, f64) {
    let (warm, timed) = inputs.split_at(WARMUP);
    for i in warm {
        call(i);
    }
    let mut times = Vec::with_capacity(timed.len());
    let mut allocs = 0u64;
    for i in timed {
        let a = ALLOCS.load(Ordering::Relaxed);
        let t = Instant::now();
        call(i);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        allocs += ALLOCS.load(Ordering::Relaxed) - a;
    }
    let median = bench_report::quantile(&mut times, 0.5);
    let p99 = bench_report::quantile(&mut times, 0.99);
    (median, p99, allocs as f64 / timed.len() as f64)
}

fn body(b: &Option<aws_lambda_events::encodings::Body>) -> Value {
    match b {
        Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(t).unwrap(),
        _ => Value::Null,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (app, config) = app();
    let n = WARMUP + CALLS;

    // A session with one connection (so each message fans out once), and its token.
    let mut e = event("session-create");
    e["body"] = json!("{}");
    let req: ApiGatewayV2httpRequest = serde_json::from_value(e).unwrap();
    let r = rt.block_on(handlers::http(&app, req));
    assert_eq!(r.status_code, 201);
    let created = body(&r.body);
    let sid = created["sessionId"].as_str().unwrap().to_string();
    let token = created["token"].as_str().unwrap().to_string();
    let connect_event = |id: &str| {
        let mut e = event("connect");
        e["queryStringParameters"] = json!({"sessionId": sid, "token": token});
        e["multiValueQueryStringParameters"] = json!({"sessionId": [sid], "token": [token]});
        e["requestContext"]["connectionId"] = json!(id);
        e.to_string()
    };
    let run_connect = |text: &str| {
        let req: ApiGatewayWebsocketProxyRequest = serde_json::from_str(text).unwrap();
        let r = rt.block_on(handlers::connect(&app, req));
        assert_eq!(r.status_code, 200, "{:?}", r.body);
        std::hint::black_box(serde_json::to_string(&r).unwrap());
    };
    run_connect(&connect_event("c-main"));

    // send: POST /sessions/{id}/messages, a new clientMessageId each time.
    let send_event = |tag: &str, i: usize| {
        let mut e = event("send-http");
        let path = format!("/sessions/{sid}/messages");
        e["headers"]["authorization"] = json!(format!("Bearer {token}"));
        e["pathParameters"]["id"] = json!(sid);
        e["rawPath"] = json!(path);
        e["requestContext"]["http"]["path"] = json!(path);
        let b = json!({"content": format!("{tag} {i}"), "clientMessageId": format!("{tag}-{i}")});
        e["body"] = json!(b.to_string());
        e.to_string()
    };
    let run_send = |text: &str| -> String {
        let ev: SendEvent = serde_json::from_str(text).unwrap();
        let r = rt.block_on(handlers::send(&app, ev));
        let handlers::SendResponse::Http(r) = &r else {
            panic!("an HTTP answer")
        };
        assert_eq!(r.status_code, 202, "{:?}", r.body);
        std::hint::black_box(serde_json::to_string(&r).unwrap());
        body(&r.body)["message"]["id"].as_str().unwrap().to_string()
    };
    let send_inputs: Vec<String> = (0..n).map(|i| send_event("hello", i)).collect();
    let mut user_ids = Vec::with_capacity(n);
    let send = measure(&send_inputs, |text| user_ids.push(run_send(text)));

    // webhook: n8n's signed reply to each of those messages.
    let now = (SystemClock.now_ms() / 1000).to_string();
    let secret = config.webhook_secret.expose().as_bytes().to_vec();
    let webhook_inputs: Vec<String> = user_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let b = json!({"sessionId": sid, "replyTo": id, "content": format!("answer {i}"), "eventId": format!("e-{i}")}).to_string();
            let mut e = event("webhook-reply");
            e["headers"]["x-chat-timestamp"] = json!(now);
            e["headers"]["x-chat-signature"] = json!(chat_core::signature::sign(&secret, &now, b.as_bytes()));
            e["body"] = json!(b);
            e.to_string()
        })
        .collect();
    let webhook = measure(&webhook_inputs, |text| {
        let req: ApiGatewayV2httpRequest = serde_json::from_str(text).unwrap();
        let r = rt.block_on(handlers::http(&app, req));
        assert_eq!(r.status_code, 200, "{:?}", r.body);
        std::hint::black_box(serde_json::to_string(&r).unwrap());
    });

    // dispatch: one SQS record per new user message, as the queue delivers them.
    let jobs: Vec<String> = (0..n)
        .map(|i| {
            let id = run_send(&send_event("dispatch", i));
            let mut e = event("dispatch-batch");
            let mut record = e["Records"][0].take();
            record["body"] = json!(json!({"sessionId": sid, "messageId": id}).to_string());
            e["Records"] = json!([record]);
            e.to_string()
        })
        .collect();
    let dispatch = measure(&jobs, |text| {
        let ev: SqsEvent = serde_json::from_str(text).unwrap();
        let r = rt.block_on(handlers::dispatch(&app, ev));
        assert!(r.batch_item_failures.is_empty());
        std::hint::black_box(serde_json::to_string(&r).unwrap());
    });

    // connect: a new connection each time (last, so the others fan out to one connection).
    let connect_inputs: Vec<String> = (0..n).map(|i| connect_event(&format!("c-{i}"))).collect();
    let connect = measure(&connect_inputs, run_connect);

    println!();
    println!(
        "Warm handler cost, in-process, in-memory ports ({CALLS} calls each, after {WARMUP} warm-up calls)"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>14}",
        "handler", "median µs", "p99 µs", "allocs/call"
    );
    for (name, (median, p99, allocs)) in [
        ("send", send),
        ("webhook", webhook),
        ("connect", connect),
        ("dispatch", dispatch),
    ] {
        println!("{name:<10} {median:>12.1} {p99:>12.1} {allocs:>14.0}");
        bench_report::report(
            "Warm handler, in-process (in-memory ports)",
            name,
            median,
            Some(p99),
            "µs",
            &format!("{allocs:.0} allocations/call"),
        );
    }
}
