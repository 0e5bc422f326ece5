//! Round-trip benchmark: WebSocket `sendMessage` to the dev bot's reply received, one turn
//! after another on one session, against the real `chat-local` (release build) with its
//! SQLite store on disk. Prints median, p90, p99 and max.
//!
//! `cargo bench -p chat-local --bench roundtrip` (1,000 turns), or `-- 200` for fewer.

use chat_testkit::bench as bench_report;
#[path = "../tests/common/mod.rs"]
mod common;

use common::{Server, is_event};
use serde_json::json;
use std::time::{Duration, Instant};

fn main() {
    let turns: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(turns));
}

async fn run(turns: usize) {
    let (server, _dir) = Server::start(&[
        ("CHAT_RATE_MESSAGES_PER_MINUTE", "1000000"),
        ("CHAT_RATE_WEBHOOKS_PER_MINUTE", "1000000"),
        ("RUST_LOG", "warn"),
    ])
    .await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    let warmup = 20;
    let mut samples = Vec::with_capacity(turns);
    for i in 0..warmup + turns {
        let start = Instant::now();
        ws.send(json!({"action":"sendMessage","content":format!("turn {i}"),"clientMessageId":format!("t{i}")})).await;
        ws.until("reply", |v| {
            is_event(v, "message") && v["message"]["role"] == "assistant"
        })
        .await;
        if i >= warmup {
            samples.push(start.elapsed());
        }
        ws.seen.clear();
    }
    samples.sort();
    let pct =
        |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!(
        "chat-local round trip (WebSocket send -> dev bot reply), {turns} turns after {warmup} warm-up"
    );
    println!(
        "  median {}  p90 {}  p99 {}  max {}",
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(pct(1.0))
    );
    let f = |d: Duration| d.as_secs_f64() * 1000.0;
    bench_report::report(
        "chat-local (release, SQLite on disk)",
        &format!("round trip: WebSocket send → dev-bot reply ({turns} turns)"),
        f(pct(0.5)),
        Some(f(pct(0.99))),
        "ms",
        &format!("max {}", ms(pct(1.0))),
    );
}
