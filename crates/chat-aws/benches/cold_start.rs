//! Cold starts of the six Lambda binaries: for each, `RUNS` fresh processes exec'd as Lambda
//! execs them (cleared environment, the `AWS_LAMBDA_*` variables, a Runtime API server of this
//! benchmark), each answering one real sample event of `events/` against the AWS emulator.
//! The event is queued before `exec`, as on a cold start caused by an invocation; every answer
//! is checked. Prints, per binary: file size, and median and p90 of exec → first `next` (init)
//! and of exec → the answer posted (first response).
//!
//! Binaries: `target/release` (next to this benchmark), or `CHAT_BENCH_BIN_DIR`.
//! Run with `tests/bench-lambdas`, which builds them first.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/lambda_support/mod.rs"]
mod lambda_support;
#[path = "../tests/runtime_api/mod.rs"]
mod runtime_api;

use lambda_support::*;
use runtime_api::RuntimeApi;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const RUNS: usize = 20;

struct Ctx {
    fresh: common::Fresh,
    app: chat_aws::App,
    n8n_url: String,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = match std::env::var_os("CHAT_BENCH_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => own_profile_dir(),
    };
    let hint = "cargo build --release -p chat-fn-session -p chat-fn-send -p chat-fn-webhook \
                -p chat-fn-connect -p chat-fn-disconnect -p chat-fn-dispatch";
    let bins: Vec<PathBuf> = FUNCTIONS.iter().map(|f| binary(&dir, f, hint)).collect();

    let fresh = common::fresh().await;
    let app = app(&fresh).await;
    let ctx = Ctx {
        fresh,
        app,
        n8n_url: fake_n8n().await,
    };
    eprintln!(
        "cold_start: {RUNS} cold starts per binary from {}, emulator {}",
        dir.display(),
        common::emulator().url
    );

    let mut rows = Vec::new();
    for (function, bin) in FUNCTIONS.iter().zip(&bins) {
        // One untimed start first, so every timed run finds the binary in the page cache.
        cold_start(function, bin, usize::MAX, &ctx).await;
        let mut init = Vec::new();
        let mut first = Vec::new();
        for i in 0..RUNS {
            let (a, b) = cold_start(function, bin, i, &ctx).await;
            init.push(a);
            first.push(b);
        }
        let size = std::fs::metadata(bin).unwrap().len();
        rows.push((function, size, init, first));
        eprintln!("cold_start: {function} done");
    }

    println!();
    println!(
        "cold starts: {RUNS} per binary, binaries in {}, AWS = moto on 127.0.0.1",
        dir.display()
    );
    println!(
        "{:<11} {:>10} {:>11} {:>11} {:>12} {:>12}",
        "binary", "size", "init p50", "init p90", "answer p50", "answer p90"
    );
    for (function, size, mut init, mut first) in rows {
        println!(
            "{:<11} {:>10} {:>11} {:>11} {:>12} {:>12}",
            function,
            format!("{:.1} MiB", size as f64 / (1024.0 * 1024.0)),
            ms(median(&mut init)),
            ms(p90(&mut init)),
            ms(median(&mut first)),
            ms(p90(&mut first)),
        );
    }
    println!(
        "init = exec -> first GET /invocation/next; answer = exec -> the response POSTed \
         (event queued before exec); median of {RUNS}, p90 nearest-rank"
    );
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn p90(v: &mut [Duration]) -> Duration {
    v.sort();
    let rank = (v.len() * 9).div_ceil(10);
    v[rank.max(1) - 1]
}

/// One cold start of `function` answering its event for run `run`: (init, first answer).
async fn cold_start(function: &str, bin: &Path, run: usize, ctx: &Ctx) -> (Duration, Duration) {
    let (event, expect) = prepare(function, run, ctx).await;
    let mut env = function_env(function, &ctx.fresh);
    if function == "dispatch" {
        env.insert("CHAT_N8N_WEBHOOK_URL".into(), ctx.n8n_url.clone());
    }
    let api = RuntimeApi::start(&format!("chat-{function}")).await;
    let id = api.invoke(&event);
    let mut f = Lambda::start_on(api, bin, function, &env);
    let outcome = f.answer(&id).await;
    let init = f
        .api
        .first_next_at()
        .expect("an answered invocation was polled")
        - f.exec_at;
    let first = outcome.at - f.exec_at;
    let out = f.stop().await;
    if let Err(e) = expect(&outcome) {
        panic!("{function} answered wrongly: {e}\noutput:\n{out}");
    }
    assert_no_secrets(function, &out);
    (init, first)
}

type Expect = Box<dyn Fn(&runtime_api::Outcome) -> Result<(), String>>;

fn status(want: i64) -> Expect {
    Box::new(move |o| {
        let (got, body) = http(o);
        if got == want {
            Ok(())
        } else {
            Err(format!("status {got}, not {want}: {body}"))
        }
    })
}

/// The sample event of `function` made real for run `run` (state it needs is created
/// in-process on the same table), and the check of its answer.
async fn prepare(function: &str, run: usize, ctx: &Ctx) -> (Value, Expect) {
    let app = &ctx.app;
    let ip = format!("bench-{function}-{run}");
    match function {
        "session" => {
            let mut e = event("session-create.json");
            // Sessions are rate limited per client IP.
            e["requestContext"]["http"]["sourceIp"] = json!(format!("198.51.100.{}", run % 250));
            (e, status(201))
        }
        "send" => {
            let (id, token) = session_in_process(app, &ip).await;
            (http_event_for("send-http.json", &id, &token), status(202))
        }
        "webhook" => {
            let (id, token) = session_in_process(app, &ip).await;
            let msg = message_in_process(app, &id, &token, "Hello").await;
            let sample = event("webhook-reply.json");
            let mut reply: Value = serde_json::from_str(sample["body"].as_str().unwrap()).unwrap();
            reply["sessionId"] = json!(id);
            reply["replyTo"] = json!(msg);
            reply["eventId"] = json!(format!("evt-bench-{run}"));
            (
                signed_webhook("webhook-reply.json", &reply, WEBHOOK_SECRET),
                status(200),
            )
        }
        "connect" => {
            let (id, token) = session_in_process(app, &ip).await;
            let conn = format!("benchConnect{run}=");
            (connect_event(&id, &token, &conn), status(200))
        }
        "disconnect" => {
            let (id, token) = session_in_process(app, &ip).await;
            let conn = format!("benchDisconnect{run}=");
            app.service
                .connect(Some(&id), Some(&token), &conn)
                .await
                .expect("connected");
            (disconnect_event(&conn), status(200))
        }
        "dispatch" => {
            let (id, token) = session_in_process(app, &ip).await;
            let mut e = event("dispatch-batch.json");
            for (i, record) in e["Records"].as_array_mut().unwrap().iter_mut().enumerate() {
                let msg = message_in_process(app, &id, &token, &format!("Hello {i}")).await;
                record["body"] = json!(json!({"sessionId": id, "messageId": msg}).to_string());
            }
            let expect: Expect = Box::new(|o| {
                let r = o.json();
                if o.ok && r == json!({"batchItemFailures": []}) {
                    Ok(())
                } else {
                    Err(r.to_string())
                }
            });
            (e, expect)
        }
        other => panic!("unknown function {other}"),
    }
}

/// n8n accepting every delivery (200), on 127.0.0.1.
async fn fake_n8n() -> String {
    let app = axum::Router::new().route(
        "/n8n",
        axum::routing::post(|| async { axum::Json(json!({"ok": true})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/n8n", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}
