//! `chat-admin redrive` against the emulator: a message n8n failed on every attempt is
//! dead-lettered (its record in the dead-letter queue, the message `failed`); the command
//! (the real binary) sets it back to `received` and queues it with a new reply deadline; the
//! dispatch function delivers it and n8n's reply answers it.

mod world;

use chat_aws::handlers;
use chat_testkit::aws::emulator as common;
use serde_json::json;
use world::*;

/// Runs `chat-admin redrive` on the world's queues and table; returns its stdout.
async fn chat_admin_redrive(w: &World) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-admin"))
        .args([
            "redrive",
            "--dlq-url",
            &w.f.dlq_url,
            "--queue-url",
            &w.f.queue_url,
        ])
        .args(["--table", &w.f.table, "--reply-timeout-ms", "60000"])
        .env_clear()
        .env("AWS_ENDPOINT_URL", &common::emulator().url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("the redrive ends in time")
        .expect("chat-admin runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_dead_lettered_dispatch_is_redriven_delivered_and_answered() {
    let w = world_with(None, &[("CHAT_DISPATCH_BACKOFF_MS", "100")]).await;
    *w.n8n.status.lock().unwrap() = 503;
    let (sid, token) = w.session().await;
    let (status, sent) = w.http(w.authed("send-http", &sid, &token)).await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["message"]["id"].as_str().unwrap().to_string();

    let attempts = common::template()["maxReceiveCount"].as_u64().unwrap();
    for _ in 0..attempts {
        let out = handlers::dispatch(&w.app, w.receive_jobs(1).await).await;
        assert_eq!(out.batch_item_failures.len(), 1);
    }
    // The redrive policy moves the record at its next receive.
    w.wait_dead_lettered(1).await;
    let h = w.history(&sid, &token).await;
    assert_eq!(
        (h[0]["id"].as_str(), h[0]["status"].as_str()),
        (Some(id.as_str()), Some("failed"))
    );

    let said = chat_admin_redrive(&w).await;
    assert!(said.contains("1 message(s) redriven"), "{said}");
    assert_eq!(
        w.queue_depth(&w.f.dlq_url).await,
        0,
        "the dead-letter queue is empty"
    );
    let h = w.history(&sid, &token).await;
    assert_eq!(h[0]["status"], "received", "set back to received");

    // n8n works again: the delivery (a fresh record, attempt 1) reaches it.
    *w.n8n.status.lock().unwrap() = 200;
    let batch = w.receive_jobs(1).await;
    assert_eq!(batch.records[0].attributes["ApproximateReceiveCount"], "1");
    let out = handlers::dispatch(&w.app, batch).await;
    assert!(out.batch_item_failures.is_empty());
    assert_eq!(w.n8n.count(), attempts as usize + 1);
    let reply = json!({"sessionId": sid, "replyTo": id, "content": "better late than never"});
    let (status, body) = w.http(w.signed_reply(&reply)).await;
    assert_eq!(status, 200, "{body}");
    let h = w.history(&sid, &token).await;
    let user = h.iter().find(|m| m["id"] == id.as_str()).unwrap();
    assert_eq!(user["status"], "answered");
    assert!(
        h.iter()
            .any(|m| m["replyTo"] == id.as_str() && m["content"] == "better late than never")
    );

    // Nothing left to redrive.
    let said = chat_admin_redrive(&w).await;
    assert!(said.contains("0 message(s) redriven"), "{said}");
}
