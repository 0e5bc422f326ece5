//! Greedy and hostile WebSocket clients, against the real binary: the caps per session and
//! per address (429 with `Retry-After` before the upgrade), a client that never reads (closed
//! with 1008 once its frames waiting pass the byte budget, and forgotten), a frame over the
//! body limit (closed with 1009), and a shutdown (1001).

mod common;

use common::{Server, Session, WAIT, Ws, is_event, post_signed, unix_now};
use serde_json::{Value, json};
use std::time::Duration;

/// A WebSocket upgrade request over plain HTTP from `from`, so that a refusal's status,
/// headers and body can be read.
async fn upgrade_from(server: &Server, s: &Session, from: &str) -> (u16, Value, Option<String>) {
    let res = Server::http_from(from)
        .get(format!(
            "{}/ws?sessionId={}&token={}",
            server.url, s.id, s.token
        ))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("upgrade request reaches the server");
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body =
        serde_json::from_slice(&res.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
    (status, body, retry)
}

#[track_caller]
fn assert_too_many(what: &str, (status, body, retry): &(u16, Value, Option<String>), about: &str) {
    assert_eq!(*status, 429, "{what}: {body}");
    assert_eq!(
        body["error"]["code"], "too_many_connections",
        "{what}: {body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(about), "{what}: {message}");
    let secs: u64 = retry
        .as_deref()
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(secs >= 1, "{what}: Retry-After {secs}");
}

#[tokio::test]
async fn websockets_are_capped_per_session_and_per_address_before_the_upgrade() {
    let (server, _dir) = Server::start(&[("CHAT_RATE_SESSIONS_PER_5MIN", "100")]).await;
    let a = server.create_session().await;

    // 16 per session (the default), from any addresses.
    let mut open = Vec::new();
    for i in 0..16 {
        open.push(
            server
                .connect_from(&a, &format!("127.0.2.{}", 1 + i % 2))
                .await,
        );
    }
    let refused = upgrade_from(&server, &a, "127.0.2.9").await;
    assert_too_many("the 17th socket of a session", &refused, "session");
    // One closes: its slot comes back.
    open.pop().unwrap().close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut again = loop {
        let ws = tokio_tungstenite::connect_async(format!(
            "{}?sessionId={}&token={}",
            server.ws_url, a.id, a.token
        ))
        .await;
        match ws {
            Ok((ws, _)) => break ws,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the freed slot was not given back: {e}"),
        }
    };
    drop(open);
    let _ = futures_util::SinkExt::close(&mut again).await;

    // 64 per address (the default), whatever the sessions.
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(server.create_session().await);
    }
    let mut open = Vec::new();
    for i in 0..64 {
        open.push(server.connect_from(&sessions[i / 16], "127.0.2.20").await);
    }
    let refused = upgrade_from(&server, &sessions[4], "127.0.2.20").await;
    assert_too_many("the 65th socket of an address", &refused, "address");
    // Another address is not held back by it.
    let mut other = server.connect_from(&sessions[4], "127.0.2.21").await;
    other.send(json!({"action": "ping"})).await;
    assert_eq!(other.next().await, Some(json!({"event": "pong"})));
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_with_1008_and_forgotten() {
    let (server, _dir) = Server::start(&[("CHAT_RATE_WEBHOOKS_PER_MINUTE", "100000")]).await;
    let s = server.create_session().await;
    let url = format!("{}?sessionId={}&token={}", server.ws_url, s.id, s.token);
    // A small receive buffer, and this client does not read until the server gives up on it.
    let mut stalled = Ws::connect_from(&url, server.addr(), "127.0.0.2", Some(4096)).await;
    // A client of the same session that reads gets everything.
    let mut reader = server.connect_from(&s, "127.0.0.3").await;
    let replies = tokio::spawn(async move {
        let mut n = 0;
        while let Some(v) = reader.next().await {
            if is_event(&v, "message") {
                n += 1;
            }
            if v["message"]["content"] == "last" {
                return n;
            }
        }
        panic!("the reading client was closed");
    });

    let webhook = format!("{}/webhook", server.url);
    // Replies as long as the default limit allows (CHAT_MAX_REPLY_CHARS, 16,000).
    let big = "x".repeat(16_000);
    let mut sent = 0;
    while !server.log().contains("connection too slow") {
        assert!(
            sent < 2000,
            "2,000 replies of 16 KB (32 MB) did not count as too slow:\n{}",
            server.log()
        );
        let reply = json!({"sessionId": s.id, "content": big, "eventId": format!("e-{sent}")});
        let (status, v) = post_signed(&server.http, &webhook, &reply.to_string(), unix_now()).await;
        assert_eq!(status, 200, "{v}");
        sent += 1;
    }
    let last = json!({"sessionId": s.id, "content": "last", "eventId": "e-last"});
    let (status, v) = post_signed(&server.http, &webhook, &last.to_string(), unix_now()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        tokio::time::timeout(WAIT, replies).await.unwrap().unwrap(),
        sent + 1
    );

    // The stalled client, reading at last, finds the frames the server wrote before it gave
    // up, then the close frame saying why.
    let (code, reason) = stalled.close_frame().await.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("too slow"), "{reason}");
    assert!(
        stalled.seen.len() < sent,
        "frames were dropped, not kept: {}",
        stalled.seen.len()
    );
    // The core was told it is gone and forgot it.
    assert!(
        server.log().contains("connection gone; forgetting it"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn a_frame_over_the_body_limit_closes_the_socket_with_1009() {
    let (server, _dir) = Server::start(&[]).await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    // At the limit it is read (and refused by the core as too long a message).
    let content = "a".repeat(64 * 1024 - 50);
    let at_limit = json!({"action": "sendMessage", "content": content}).to_string();
    let at_limit = at_limit.clone() + &" ".repeat(64 * 1024 - at_limit.len());
    ws.send_text(&at_limit).await;
    let e = ws.next().await.expect("still open");
    assert_eq!(
        (&e["event"], &e["code"]),
        (&json!("error"), &json!("content_too_long")),
        "{e}"
    );
    // One byte more and the socket is closed with 1009 (message too big).
    ws.send_text(&format!("{at_limit} ")).await;
    let (code, reason) = ws.close_frame().await.expect("a close frame");
    assert_eq!(code, 1009, "{reason}");
    assert!(server.history(&s, "after=0").await.is_empty());
}
