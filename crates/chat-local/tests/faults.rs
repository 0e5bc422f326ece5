//! n8n down, slow or coming back: attempts with backoff, dead-lettering with a `system`
//! error message the user sees, and recovery when n8n returns before the last attempt.

mod common;

use common::{Server, closed_port, is_event};
use serde_json::json;

#[tokio::test]
async fn n8n_that_drops_every_connection_ends_failed_with_a_system_error_message() {
    let n8n = common::DroppingPeer::start().await;
    let (server, _dir) = Server::start(&[
        ("CHAT_N8N_WEBHOOK_URL", &n8n.url),
        ("CHAT_DISPATCH_MAX_ATTEMPTS", "3"),
        ("CHAT_DISPATCH_BACKOFF_MS", "100"),
        ("CHAT_DISPATCH_TIMEOUT_MS", "1000"),
    ])
    .await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    ws.send(json!({"action":"sendMessage","content":"anyone there?","clientMessageId":"x1"}))
        .await;
    let id = ws.until("ack", |v| is_event(v, "ack")).await["messageId"]
        .as_str()
        .unwrap()
        .to_string();

    ws.until("failed", |v| {
        is_event(v, "status") && v["status"] == "failed" && v["messageId"] == id.as_str()
    })
    .await;
    let sys = ws
        .until("system message", |v| {
            is_event(v, "message") && v["message"]["role"] == "system"
        })
        .await;
    assert_eq!(sys["message"]["type"], "error");
    assert_eq!(sys["message"]["replyTo"], id.as_str());
    assert!(!sys["message"]["content"].as_str().unwrap().is_empty());

    let h = server.history(&s, "after=0").await;
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["status"], "failed");
    assert_eq!(h[1]["role"], "system");
    // Exactly three attempts were made: two retried, the last dead-lettered.
    assert_eq!(n8n.attempts(), 3);
}

#[tokio::test]
async fn n8n_at_a_closed_port_ends_failed_too() {
    let url = format!("http://127.0.0.1:{}/webhook/chat", closed_port());
    let (server, _dir) = Server::start(&[
        ("CHAT_N8N_WEBHOOK_URL", &url),
        ("CHAT_DISPATCH_BACKOFF_MS", "50"),
        ("CHAT_DISPATCH_TIMEOUT_MS", "1000"),
    ])
    .await;
    let s = server.create_session().await;
    let (status, _) = server.send(&s, "anyone?", Some("c1")).await;
    assert_eq!(status, 202);
    let h = server
        .wait_history(&s, "failed", |h| h.len() == 2 && h[0]["status"] == "failed")
        .await;
    assert_eq!(
        (h[1]["role"].as_str(), h[1]["type"].as_str()),
        (Some("system"), Some("error"))
    );
}

#[tokio::test]
async fn failing_n8n_gets_exactly_max_attempts_then_nothing_more() {
    let (n8n, url) = common::fake_n8n(0).await;
    *n8n.status.lock().unwrap() = 503;
    let (server, _dir) = Server::start(&[
        ("CHAT_N8N_WEBHOOK_URL", &url),
        ("CHAT_DISPATCH_MAX_ATTEMPTS", "4"),
        ("CHAT_DISPATCH_BACKOFF_MS", "50"),
    ])
    .await;
    let s = server.create_session().await;
    let (status, _) = server.send(&s, "hello?", Some("h1")).await;
    assert_eq!(status, 202);
    server
        .wait_history(&s, "failed", |h| h.len() == 2 && h[0]["status"] == "failed")
        .await;
    assert_eq!(n8n.count(), 4);
    // Every attempt carried the same message, correctly signed.
    let received = n8n.received.lock().unwrap().clone();
    assert!(
        received
            .iter()
            .all(|p| p["messageId"] == received[0]["messageId"])
    );
    assert_eq!(*n8n.bad_signatures.lock().unwrap(), 0);
    // A repeated send of the same clientMessageId does not re-dispatch a failed message: a
    // job for it would be due at once, before the next message's, which n8n (now well)
    // receives and answers; when that answer is in, n8n has seen nothing else.
    let (status, v) = server.send(&s, "hello?", Some("h1")).await;
    assert_eq!(status, 202, "{v}");
    *n8n.status.lock().unwrap() = 200;
    let (status, _) = server.send(&s, "next", Some("h2")).await;
    assert_eq!(status, 202);
    server
        .wait_history(&s, "the next answered", |h| {
            h.iter()
                .any(|m| m["content"] == "next" && m["status"] == "answered")
        })
        .await;
    let received = n8n.received.lock().unwrap().clone();
    assert_eq!(
        received.len(),
        5,
        "four attempts, then the next message once"
    );
    assert_eq!(received[4]["content"], "next");
}

#[tokio::test]
async fn n8n_coming_back_before_the_last_attempt_gets_the_message_answered() {
    let down = common::DroppingPeer::start().await;
    let port = down.port;
    let (server, _dir) = Server::start(&[
        ("CHAT_N8N_WEBHOOK_URL", &down.url),
        ("CHAT_DISPATCH_MAX_ATTEMPTS", "5"),
        ("CHAT_DISPATCH_BACKOFF_MS", "400"),
        ("CHAT_DISPATCH_TIMEOUT_MS", "1000"),
    ])
    .await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    ws.send(json!({"action":"sendMessage","content":"are you back?","clientMessageId":"b1"}))
        .await;
    let id = ws.until("ack", |v| is_event(v, "ack")).await["messageId"]
        .as_str()
        .unwrap()
        .to_string();

    // Wait for the first failed attempt, then bring n8n up on that port.
    down.wait_for_attempts(1).await;
    down.stop().await;
    let (n8n, _) = common::fake_n8n(port).await;

    let reply = ws
        .until("reply", |v| {
            is_event(v, "message") && v["message"]["role"] == "assistant"
        })
        .await;
    assert_eq!(reply["message"]["replyTo"], id.as_str());
    assert!(
        reply["message"]["content"]
            .as_str()
            .unwrap()
            .contains("are you back?")
    );
    ws.until("answered", |v| {
        is_event(v, "status") && v["status"] == "answered"
    })
    .await;
    assert!(
        !ws.seen.iter().any(|v| v["status"] == "failed"),
        "{:#?}",
        ws.seen
    );
    assert_eq!(n8n.count(), 1);
    let h = server.history(&s, "after=0").await;
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["status"], "answered");
}

#[tokio::test]
async fn a_message_n8n_accepted_but_never_answered_fails_at_the_reply_deadline() {
    let (n8n, url) = common::fake_n8n(0).await;
    *n8n.reply.lock().unwrap() = false; // accepts with 200, never calls back
    let (server, _dir) = Server::start(&[
        ("CHAT_N8N_WEBHOOK_URL", &url),
        ("CHAT_REPLY_TIMEOUT_MS", "1000"),
    ])
    .await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    ws.send(json!({"action":"sendMessage","content":"hello?","clientMessageId":"d1"}))
        .await;
    let id = ws.until("ack", |v| is_event(v, "ack")).await["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    ws.until("dispatched", |v| {
        is_event(v, "status") && v["status"] == "dispatched"
    })
    .await;
    ws.until("failed at the deadline", |v| {
        is_event(v, "status") && v["status"] == "failed" && v["messageId"] == id.as_str()
    })
    .await;
    let notice = ws
        .until("the notice", |v| {
            is_event(v, "message") && v["message"]["role"] == "system"
        })
        .await;
    assert_eq!(notice["message"]["type"], "error");
    assert_eq!(notice["message"]["replyTo"], id.as_str());
    ws.until("typing off", |v| {
        is_event(v, "typing") && v["role"] == "assistant" && v["isTyping"] == false
    })
    .await;
    assert_eq!(n8n.count(), 1, "delivered once, not retried");

    // n8n answers late: the reply is still stored, shown, and answers the message.
    let reply =
        json!({"sessionId": s.id, "replyTo": id, "content": "late but here", "eventId": "late-1"});
    let (status, _) = common::post_signed(
        &server.http,
        &format!("{}/webhook", server.url),
        &reply.to_string(),
        common::unix_now(),
    )
    .await;
    assert_eq!(status, 200);
    ws.until("the late reply", |v| {
        is_event(v, "message") && v["message"]["content"] == "late but here"
    })
    .await;
    let h = server.history(&s, "after=0").await;
    assert_eq!(h[0]["status"], "answered");
    assert_eq!(h.len(), 3);
}

#[tokio::test]
async fn a_deadline_survives_a_restart() {
    let (n8n, url) = common::fake_n8n(0).await;
    *n8n.reply.lock().unwrap() = false;
    let env = [
        ("CHAT_N8N_WEBHOOK_URL", url.as_str()),
        ("CHAT_REPLY_TIMEOUT_MS", "3000"),
    ];
    let (server, dir) = Server::start(&env).await;
    let s = server.create_session().await;
    let (status, body) = server.send(&s, "will anyone answer?", Some("r1")).await;
    assert_eq!(status, 202, "{body}");
    server
        .wait_history(&s, "dispatched", |h| h[0]["status"] == "dispatched")
        .await;
    server.kill9().await;
    let server = Server::start_in(dir.path(), &env).await;
    let h = server
        .wait_history(&s, "failed after the restart", |h| {
            h[0]["status"] == "failed"
        })
        .await;
    assert_eq!(h[1]["role"], "system");
}
