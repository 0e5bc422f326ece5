//! `GET /metrics` of the real binary: Prometheus text whose counters and histograms add up
//! to what a chat round did, and to n8n failing until a message is given up.

mod common;

use common::{Server, is_event};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `name{labels} value` lines of the Prometheus text, by `name{labels}`.
async fn scrape(server: &Server) -> BTreeMap<String, f64> {
    let res = reqwest::get(format!("http://{}/metrics", server.addr()))
        .await
        .expect("scrape");
    assert_eq!(res.status(), 200);
    let ctype = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = res.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample line: {l}"));
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("a number: {l}")),
            )
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// Scrapes until `pred` holds (bounded).
async fn scrape_until(
    server: &Server,
    what: &str,
    pred: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(server).await;
        if pred(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {m:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_round_shows_in_the_counters_and_histograms() {
    let (server, _dir) = Server::start(&[]).await;
    let started = Instant::now();
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    let m = scrape_until(&server, "the connection", |m| {
        get(m, "chat_connections_open") == 1.0
    })
    .await;
    assert_eq!(get(&m, "chat_connections_opened_total"), 1.0);

    ws.send(json!({"action":"sendMessage","content":"count me","clientMessageId":"m-1"}))
        .await;
    ws.until("answered", |v| {
        is_event(v, "status") && v["status"] == "answered"
    })
    .await;
    let m = scrape_until(&server, "the round", |m| {
        get(m, "chat_pushes_total") as usize >= ws.seen.len()
    })
    .await;
    let elapsed_ms = started.elapsed().as_millis() as f64;
    assert_eq!(get(&m, "chat_messages_total"), 1.0, "{m:#?}");
    assert_eq!(get(&m, "chat_dispatch_attempts_total"), 1.0);
    assert_eq!(get(&m, "chat_dispatch_failures_total"), 0.0);
    assert_eq!(get(&m, "chat_dead_lettered_total"), 0.0);
    assert_eq!(
        get(&m, "chat_pushes_total") as usize,
        ws.seen.len(),
        "one push per frame the socket got: {:#?}",
        ws.seen
    );
    assert_eq!(get(&m, "chat_pushes_gone_total"), 0.0);
    for h in ["chat_answer_latency_ms", "chat_dispatch_latency_ms"] {
        assert_eq!(get(&m, &format!("{h}_count")), 1.0, "{h}");
        let sum = get(&m, &format!("{h}_sum"));
        assert!(
            (0.0..=elapsed_ms).contains(&sum),
            "{h}: {sum} ms of {elapsed_ms}"
        );
        assert_eq!(get(&m, &format!("{h}_bucket{{le=\"+Inf\"}}")), 1.0, "{h}");
        assert_eq!(
            get(&m, &format!("{h}_bucket{{le=\"900000\"}}")),
            1.0,
            "bucketed in ms: {m:#?}"
        );
    }
    assert!(
        get(&m, "chat_dispatch_latency_ms_sum") <= get(&m, "chat_answer_latency_ms_sum"),
        "accepted before answered"
    );

    ws.close().await;
    let m = scrape_until(&server, "the disconnect", |m| {
        get(m, "chat_connections_open") == 0.0
    })
    .await;
    assert_eq!(get(&m, "chat_connections_closed_total"), 1.0);
}

#[tokio::test]
async fn n8n_failing_shows_as_failures_then_one_dead_letter() {
    let port = common::closed_port();
    let url = format!("http://127.0.0.1:{port}/webhook/chat");
    let (server, _dir) = Server::start(&[
        ("CHAT_N8N_WEBHOOK_URL", url.as_str()),
        ("CHAT_DISPATCH_MAX_ATTEMPTS", "3"),
        ("CHAT_DISPATCH_BACKOFF_MS", "10"),
    ])
    .await;
    let s = server.create_session().await;
    let (status, _) = server.send(&s, "is anyone there?", None).await;
    assert_eq!(status, 202);
    let m = scrape_until(&server, "the dead letter", |m| {
        get(m, "chat_dead_lettered_total") >= 1.0
    })
    .await;
    assert_eq!(get(&m, "chat_dispatch_attempts_total"), 3.0, "{m:#?}");
    assert_eq!(get(&m, "chat_dispatch_failures_total"), 3.0);
    assert_eq!(get(&m, "chat_dead_lettered_total"), 1.0);
    assert_eq!(get(&m, "chat_dispatch_latency_ms_count"), 0.0);
    assert_eq!(get(&m, "chat_answer_latency_ms_count"), 0.0);
}
