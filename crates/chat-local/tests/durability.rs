//! Nothing acknowledged is lost: `kill -9` right after a burst of acknowledged sends, then a
//! restart on the same data folder, finds every message and completes every pending
//! dispatch. A SIGTERM shuts down cleanly and closes sockets. The dependent writes of a chat
//! round share their fsyncs (each frame and answer waits for one barrier, unit-tested in
//! `durable` and `hub`) instead of paying one each.

mod common;

use common::{Server, WAIT, closed_port, is_event};
use serde_json::json;
use std::collections::HashSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn kill_9_after_acknowledged_sends_loses_nothing_and_pending_dispatches_complete() {
    let dir = tempfile::tempdir().unwrap();
    // First life: n8n is unreachable, so every dispatch is still pending when we kill.
    let down = format!("http://127.0.0.1:{}/webhook/chat", closed_port());
    let env = [
        ("CHAT_RATE_MESSAGES_PER_MINUTE", "1000"),
        ("CHAT_DISPATCH_MAX_ATTEMPTS", "50"),
        ("CHAT_DISPATCH_BACKOFF_MS", "100"),
        ("CHAT_DISPATCH_TIMEOUT_MS", "1000"),
    ];
    let mut first_env = env.to_vec();
    first_env.push(("CHAT_N8N_WEBHOOK_URL", &down));
    let server = Server::start_in(dir.path(), &first_env).await;
    let s = server.create_session().await;

    let sends = (0..40).map(|i| {
        let (server, s) = (&server, &s);
        async move {
            server
                .send(s, &format!("burst {i}"), Some(&format!("burst-{i}")))
                .await
        }
    });
    let results = futures_util::future::join_all(sends).await;
    let mut acked = HashSet::new();
    for (status, v) in results {
        assert_eq!(status, 202, "{v}");
        acked.insert(v["message"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(acked.len(), 40);
    server.kill9().await;

    // Second life on the same folder, with the dev bot answering.
    let server = Server::start_in(dir.path(), &env).await;
    let h = server
        .wait_history(&s, "every message answered", |h| {
            h.iter()
                .filter(|m| m["role"] == "user")
                .all(|m| m["status"] == "answered")
                && h.iter().filter(|m| m["role"] == "assistant").count() == 40
        })
        .await;
    let users: HashSet<String> = h
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users, acked, "every acknowledged message survived");
    let seqs: Vec<u64> = h.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>(), "seq has no gaps");
    // One reply per message, each to a distinct user message.
    let replied: HashSet<&str> = h
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| m["replyTo"].as_str().unwrap())
        .collect();
    assert_eq!(replied.len(), 40);
}

#[tokio::test]
async fn sigterm_closes_sockets_exits_cleanly_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]).await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    ws.send(json!({"action":"sendMessage","content":"before shutdown","clientMessageId":"t1"}))
        .await;
    ws.until("reply", |v| {
        is_event(v, "message") && v["message"]["role"] == "assistant"
    })
    .await;

    let status = server.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    // The socket was closed by the server, with 1001 (going away).
    let (code, reason) = ws.close_frame().await.expect("a close frame");
    assert_eq!(code, 1001, "{reason}");

    let server = Server::start_in(dir.path(), &[]).await;
    let h = server.history(&s, "after=0").await;
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["content"], "before shutdown");
    assert!(server.log().contains("stopped"));
}

#[tokio::test]
async fn sigterm_lets_a_request_under_way_finish() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]).await;
    let s = server.create_session().await;
    let body = json!({"content": "sent during shutdown", "clientMessageId": "late-1"}).to_string();
    let (first, rest) = body.split_at(10);
    let mut c = server.tcp_from("127.0.0.2").await;
    let head = format!(
        "POST /sessions/{}/messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{first}",
        s.id,
        s.token,
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server.sigterm();
    // New connections are no longer accepted...
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(server.addr()).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // ...but the request under way is finished and answered.
    c.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, c.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(server.terminate().await.success());

    let server = Server::start_in(dir.path(), &[]).await;
    let h = server.history(&s, "after=0").await;
    assert_eq!(h[0]["content"], "sent during shutdown", "{h:#?}");
}

/// `chat_local_db_fsyncs_total` of the server's `GET /metrics`.
async fn fsyncs(server: &Server) -> u64 {
    let text = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("chat_local_db_fsyncs_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A round writes six times (the message, its two jobs, `dispatched`, the reply, `answered`,
/// the finished job), which cost six fsyncs when each write was fsync'd before it was
/// answered. Now the writes behind one frame share its fsync: at most four per round (the
/// ack, `dispatched`, the reply, and the finished job if it lands before an answer).
#[tokio::test]
async fn a_chat_round_fsyncs_once_per_frame_not_once_per_write() {
    let (server, _dir) = Server::start(&[("CHAT_RATE_MESSAGES_PER_MINUTE", "1000")]).await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    let round = |i: usize| json!({"action":"sendMessage","content":format!("turn {i}"),"clientMessageId":format!("t{i}")});
    ws.send(round(0)).await;
    ws.until("the first answer", |v| {
        is_event(v, "status") && v["status"] == "answered"
    })
    .await;
    let before = fsyncs(&server).await;
    let rounds = 20;
    for i in 1..=rounds {
        ws.seen.clear();
        ws.send(round(i)).await;
        ws.until("answered", |v| {
            is_event(v, "status") && v["status"] == "answered"
        })
        .await;
    }
    let spent = fsyncs(&server).await - before;
    assert!(
        spent <= 4 * rounds as u64,
        "{spent} fsyncs for {rounds} rounds"
    );
    assert!(
        spent >= rounds as u64,
        "every round's ack was fsync'd: {spent}"
    );
    let h = server.history(&s, "after=0").await;
    assert_eq!(h.len(), 2 * (rounds + 1), "every message and reply stored");
}
