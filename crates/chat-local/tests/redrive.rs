//! `chat-local admin redrive` on the real binary: a message n8n never accepted is given up
//! after its last attempt and kept as a dead job; the redrive sets it back to `received` and
//! queues it, and the next server delivers and answers it.

mod common;

use common::Server;
use std::process::Stdio;

/// Runs `chat-local admin redrive` on `dir`; returns its stdout.
async fn redrive(dir: &std::path::Path) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-local"))
        .args(["admin", "redrive"])
        .env_clear()
        .env("CHAT_DATA_DIR", dir)
        .env("CHAT_REPLY_TIMEOUT_MS", "60000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), out)
        .await
        .expect("the redrive ends in time")
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_dead_lettered_message_is_redriven_then_delivered_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let n8n = format!("http://127.0.0.1:{}/webhook/chat", common::closed_port());
    let server = Server::start_in(
        dir.path(),
        &[
            ("CHAT_N8N_WEBHOOK_URL", n8n.as_str()),
            ("CHAT_DISPATCH_MAX_ATTEMPTS", "2"),
            ("CHAT_DISPATCH_BACKOFF_MS", "10"),
        ],
    )
    .await;
    let s = server.create_session().await;
    let (status, sent) = server.send(&s, "please answer eventually", None).await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["message"]["id"].as_str().unwrap().to_string();
    server
        .wait_history(&s, "the message failed", |h| {
            h.iter()
                .any(|m| m["id"] == id.as_str() && m["status"] == "failed")
        })
        .await;
    assert!(server.terminate().await.success());

    let said = redrive(dir.path()).await;
    assert!(said.contains("1 message(s) redriven"), "{said}");

    // n8n is back (the dev bot stands in for it): the message is delivered and answered.
    let server = Server::start_in(dir.path(), &[]).await;
    let h = server
        .wait_history(&s, "the redriven message answered", |h| {
            h.iter()
                .any(|m| m["id"] == id.as_str() && m["status"] == "answered")
        })
        .await;
    assert!(
        h.iter().any(|m| m["role"] == "assistant"
            && m["replyTo"] == id.as_str()
            && m["content"]
                .as_str()
                .unwrap()
                .contains("please answer eventually")),
        "{h:#?}"
    );
    assert!(server.terminate().await.success());

    let said = redrive(dir.path()).await;
    assert!(
        said.contains("0 message(s) redriven"),
        "nothing left: {said}"
    );
}
