//! How many AWS requests one chat round makes (user send over the WebSocket → dispatch to
//! n8n → n8n's reply stored and pushed), counted at the emulator's recorder, by operation,
//! with 1 and with 10 connections in the session. Printed with `--nocapture`; the test also
//! holds the product to what it does today: no Scan ever, and each extra connection costs
//! exactly one `PostToConnection` per frame fanned out.
//!
//! `cargo test -p chat-aws --test aws_requests -- --nocapture`

mod common;
mod world;

use serde_json::json;
use std::collections::BTreeMap;

async fn round(connections: usize) -> BTreeMap<String, usize> {
    let w = world::world().await;
    let (sid, token) = w.session().await;
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(w.connect(&sid, &token).await);
    }
    let start = common::recorded().await.len();
    w.ws_frame(
        &conns[0],
        json!({"action":"sendMessage","content":"count me","clientMessageId":"n-1"}),
    )
    .await;
    let batch = w.receive_jobs(1).await;
    let job: serde_json::Value =
        serde_json::from_str(batch.records[0].body.as_deref().unwrap()).unwrap();
    let out = chat_aws::handlers::dispatch(&w.app, batch).await;
    assert!(out.batch_item_failures.is_empty());
    let reply = json!({"sessionId": sid, "replyTo": job["messageId"], "content": "counted", "eventId": "e-1"});
    let (status, _) = w.http(w.signed_reply(&reply)).await;
    assert_eq!(status, 200);
    let mut counts = BTreeMap::new();
    for e in &common::recorded().await[start..] {
        *counts.entry(common::operation(e)).or_insert(0) += 1;
    }
    // The test's own receive of the job (the Lambda service does that for a real function).
    if let Some(n) = counts.get_mut("SQS.ReceiveMessage") {
        *n -= 1;
        if *n == 0 {
            counts.remove("SQS.ReceiveMessage");
        }
    }
    counts
}

#[tokio::test]
async fn requests_per_chat_round() {
    let one = round(1).await;
    let ten = round(10).await;
    let total = |c: &BTreeMap<String, usize>| c.values().sum::<usize>();
    println!("AWS requests per chat round (send → dispatch → reply pushed), by operation:");
    println!(
        "{:<32} {:>14} {:>15}",
        "operation", "1 connection", "10 connections"
    );
    let keys: std::collections::BTreeSet<_> = one.keys().chain(ten.keys()).collect();
    for k in keys {
        println!(
            "{:<32} {:>14} {:>15}",
            k,
            one.get(k).unwrap_or(&0),
            ten.get(k).unwrap_or(&0)
        );
    }
    println!("{:<32} {:>14} {:>15}", "total", total(&one), total(&ten));
    assert!(
        !one.keys().chain(ten.keys()).any(|k| k.contains("Scan")),
        "no Scan, ever"
    );
    let pushes = |c: &BTreeMap<String, usize>| *c.get("PostToConnection").unwrap_or(&0);
    // Frames fanned out to every connection in a round; the sender's ack goes to one.
    let fanned = (pushes(&ten) - pushes(&one)) / 9;
    assert_eq!(
        pushes(&ten) - pushes(&one),
        fanned * 9,
        "every extra connection costs the same pushes"
    );
    assert_eq!(
        total(&ten) - total(&one),
        pushes(&ten) - pushes(&one),
        "extra connections cost only pushes"
    );
}
