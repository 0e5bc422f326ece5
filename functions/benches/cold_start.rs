//! Cold starts of the seven Lambda binaries: for each, `RUNS` fresh processes exec'd as Lambda
//! execs them (cleared environment, the `AWS_LAMBDA_*` variables, a Runtime API server of this
//! benchmark), each answering one real sample event of `events/` against the AWS emulator.
//! The event is queued before `exec`, as on a cold start caused by an invocation; every answer
//! is checked. Then the same process answers a second event (warm). Beside them, in the same
//! run, the `hello_lambda` example (the smallest `lambda_runtime` function, same profile) is
//! the floor. Each function runs twice: with its secrets in plain environment variables, and
//! with them read from SSM Parameter Store at cold start (`*_PARAM` variables naming
//! SecureString parameters in the emulator; the production option, one `GetParameters` call).
//! Then the peer: a Node.js 20 `$connect` handler doing our `connect`'s work with AWS SDK v3
//! (`tests/bench-peer`, after `npm ci` there; left out with a note when it is not installed),
//! exec'd the same way on the same connect events, its stored connection checked as ours.
//! Prints, per binary: file size, and median and p99 of exec → first `next` (init), of exec →
//! the answer posted (first response), and of a warm invocation.
//!
//! Binaries: `target/release` (next to this benchmark), or `CHAT_BENCH_BIN_DIR`;
//! `CHAT_BENCH_ONLY=session,connect` boots only those functions (beside the peer and floor).
//! Run with `tests/bench` (or `tests/bench-lambdas`), which builds them first.

use chat_testkit::aws::emulator as common;
use chat_testkit::aws::{lambda as lambda_support, runtime_api};
use chat_testkit::bench as bench_report;

use lambda_support::*;
use runtime_api::RuntimeApi;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const RUNS: usize = 20;

/// The Node.js peer's name in the table.
const PEER: &str = "node20-connect (peer)";

/// The peer's bootstrap, when its packages are installed (`npm ci` in `tests/bench-peer`).
fn peer_bootstrap() -> Option<PathBuf> {
    let dir = common::repo().join("tests/bench-peer");
    if !dir.join("node_modules/@aws-sdk/client-dynamodb").is_dir() {
        eprintln!(
            "cold_start: the Node.js peer is left out: run `npm ci --prefix tests/bench-peer` first"
        );
        return None;
    }
    Some(dir.join("bootstrap"))
}

struct Ctx {
    fresh: common::Fresh,
    app: chat_aws::App,
    n8n_url: String,
    /// The `*_PARAM` variables naming the secrets in the emulator's Parameter Store.
    ssm_params: Vec<(String, String)>,
}

/// Stores the test secrets as SecureString parameters: the `*_PARAM` variables naming them.
async fn put_ssm_secrets(fresh: &common::Fresh) -> Vec<(String, String)> {
    let ssm = aws_sdk_ssm::Client::new(&fresh.sdk);
    let prefix = format!(
        "/chat-bench-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut vars = Vec::new();
    for (var, value) in [
        ("CHAT_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("CHAT_SESSION_SECRET", SESSION_SECRET),
        ("CHAT_AUTH_JWT_SECRET", AUTH_JWT_SECRET),
    ] {
        let name = format!("{prefix}/{}", var.to_lowercase());
        ssm.put_parameter()
            .name(&name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("parameter stored");
        vars.push((format!("{var}_PARAM"), name));
    }
    vars
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
    let hint = "cargo build --release -p chat-functions --bins";
    // CHAT_BENCH_ONLY=session,connect: only those functions (beside the peer and the floor).
    let only = std::env::var("CHAT_BENCH_ONLY").ok();
    let functions: Vec<&str> = FUNCTIONS
        .into_iter()
        .filter(|f| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x.trim() == *f))
        })
        .collect();
    let mut bins: Vec<PathBuf> = functions.iter().map(|f| binary(&dir, f, hint)).collect();
    bins.push(binary(
        &dir.join("examples"),
        "hello_lambda",
        "cargo build --release -p chat-functions --example hello_lambda",
    ));
    let peer = peer_bootstrap();
    // Each function with plain secrets, then with secrets from SSM; the peer; the floor last.
    let runs: Vec<(&str, bool, &PathBuf)> = functions
        .iter()
        .zip(&bins)
        .flat_map(|(f, b)| [(*f, false, b), (*f, true, b)])
        .chain(peer.as_ref().map(|p| (PEER, false, p)))
        .chain([("hello_lambda", false, bins.last().unwrap())])
        .collect();

    let fresh = common::fresh().await;
    let app = app(&fresh).await;
    let ctx = Ctx {
        ssm_params: put_ssm_secrets(&fresh).await,
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
    for (function, ssm, bin) in runs {
        // One untimed start first, so every timed run finds the binary in the page cache.
        let offset = if ssm { 2_000_000 } else { 0 };
        cold_start(function, ssm, bin, 1_000_000 + offset, &ctx).await;
        let mut init = Vec::new();
        let mut first = Vec::new();
        let mut warm = Vec::new();
        for i in 0..RUNS {
            let (a, b, c) = cold_start(function, ssm, bin, offset + i, &ctx).await;
            init.push(a);
            first.push(b);
            warm.push(c);
        }
        let size = std::fs::metadata(bin).unwrap().len();
        let label = match ssm {
            true => format!("{function} (SSM)"),
            false => function.to_string(),
        };
        rows.push((label, ssm, size, init, first, warm));
        eprintln!("cold_start: {function} (secrets from SSM: {ssm}) done");
    }
    let floor = {
        let (.., init, _, _) = rows.last().expect("the floor ran");
        median(&mut init.clone())
    };

    println!();
    println!(
        "cold starts: {RUNS} per binary, binaries in {}, AWS = moto on 127.0.0.1",
        dir.display()
    );
    println!(
        "{:<19} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10} {:>9} {:>9}",
        "binary",
        "size",
        "init p50",
        "init p99",
        "×floor",
        "answer p50",
        "answer p99",
        "warm p50",
        "warm p99"
    );
    for (function, ssm, size, mut init, mut first, mut warm) in rows {
        let mib = size as f64 / (1024.0 * 1024.0);
        let (i50, i99) = (median(&mut init), p99(&mut init));
        let (a50, a99) = (median(&mut first), p99(&mut first));
        let (w50, w99) = (median(&mut warm), p99(&mut warm));
        let ratio = i50.as_secs_f64() / floor.as_secs_f64();
        println!(
            "{:<19} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10} {:>9} {:>9}",
            function,
            format!("{mib:.1} MiB"),
            ms(i50),
            ms(i99),
            format!("{ratio:.2}"),
            ms(a50),
            ms(a99),
            ms(w50),
            ms(w99),
        );
        let f = |d: Duration| d.as_secs_f64() * 1000.0;
        let section = "Lambda cold start (release binary, Runtime API + emulator on 127.0.0.1)";
        bench_report::report(
            section,
            &format!("{function}: init (exec → first next)"),
            f(i50),
            Some(f(i99)),
            "ms",
            &format!("{ratio:.2}× the floor"),
        );
        bench_report::report(
            section,
            &format!("{function}: first answer (exec → response)"),
            f(a50),
            Some(f(a99)),
            "ms",
            "",
        );
        bench_report::report(
            section,
            &format!("{function}: warm invocation"),
            f(w50),
            Some(f(w99)),
            "ms",
            "",
        );
        if !ssm && function != PEER {
            bench_report::report("Release binary size", &function, mib, None, "MiB", "");
        }
    }
    println!(
        "init = exec -> first GET /invocation/next; answer = exec -> the response POSTed \
         (event queued before exec); warm = a second event to the same process, queued -> \
         answered; {RUNS} runs, p99 nearest-rank; ×floor = init p50 / hello_lambda init p50; \
         (SSM) = secrets read from Parameter Store at init (one GetParameters to the emulator); \
         {PEER} = tests/bench-peer (its size: the bootstrap script)"
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

fn p99(v: &mut [Duration]) -> Duration {
    let mut secs: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    Duration::from_secs_f64(bench_report::quantile(&mut secs, 0.99))
}

/// One cold start of `function` answering its event for run `run`, then a second event:
/// (init, first answer, warm answer).
async fn cold_start(
    function: &str,
    ssm: bool,
    bin: &Path,
    run: usize,
    ctx: &Ctx,
) -> (Duration, Duration, Duration) {
    let (event, expect) = prepare(function, run, ctx).await;
    let (warm_event, warm_expect) = prepare(function, run + 100_000, ctx).await;
    let mut env = match function {
        "hello_lambda" => lambda_base_env(function, &common::emulator().url),
        PEER => function_env("connect", &ctx.fresh),
        f => function_env(f, &ctx.fresh),
    };
    if function == "dispatch" {
        env.insert("CHAT_N8N_WEBHOOK_URL".into(), ctx.n8n_url.clone());
    }
    if ssm {
        for (param_var, name) in &ctx.ssm_params {
            env.remove(param_var.trim_end_matches("_PARAM"));
            env.insert(param_var.clone(), name.clone());
        }
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
    let queued = std::time::Instant::now();
    let warm_id = f.api.invoke(&warm_event);
    let warm_outcome = f.answer(&warm_id).await;
    let warm = warm_outcome.at - queued;
    let out = f.stop().await;
    for (o, check) in [(&outcome, &expect), (&warm_outcome, &warm_expect)] {
        if let Err(e) = check(o) {
            panic!("{function} answered wrongly: {e}\noutput:\n{out}");
        }
    }
    assert_no_secrets(function, &out);
    if matches!(function, "connect" | PEER) {
        // Both stored the connection, findable by its id.
        for r in [run, run + 100_000] {
            let conn = connection_id(function, r);
            let item = lambda_support::partition(&ctx.fresh, &format!("CONN#{conn}")).await;
            assert_eq!(
                item.len(),
                1,
                "{function} did not store {conn}\noutput:\n{out}"
            );
        }
    }
    (init, first, warm)
}

/// The WebSocket connection id of a connect run.
fn connection_id(function: &str, run: usize) -> String {
    match function {
        PEER => format!("benchPeer{run}="),
        _ => format!("benchConnect{run}="),
    }
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
    let ip = format!(
        "bench-{}-{run}",
        function.split(' ').next().unwrap_or(function)
    );
    match function {
        "session" => {
            let mut e = event("session-create.json");
            // Sessions are rate limited per client IP.
            let ip = format!(
                "10.{}.{}.{}",
                (run >> 16) & 255,
                (run >> 8) & 255,
                run & 255
            );
            e["requestContext"]["http"]["sourceIp"] = json!(ip);
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
        "connect" | PEER => {
            let (id, token) = session_in_process(app, &ip).await;
            let conn = connection_id(function, run);
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
        "agent" => {
            // The user's handoff: the agent function's mode change (set, notice, inbox).
            let (id, token) = session_in_process(app, &ip).await;
            (
                http_event_for("session-handoff.json", &id, &token),
                status(200),
            )
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
        "hello_lambda" => {
            let e = json!({"hello": run});
            let expect: Expect = Box::new(move |o| {
                if o.ok && o.json() == json!({"hello": run}) {
                    Ok(())
                } else {
                    Err(o.json().to_string())
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
