//! The chat loop end to end, against the real binary: sessions, WebSocket send with `ack`,
//! fan-out to every connection, statuses, typing, read receipts, reconnect catch-up, and
//! n8n's replies (dev bot and an external fake n8n).

mod common;

use common::{Server, is_event, post_signed, unix_now};
use serde_json::{Value, json};

#[tokio::test]
async fn full_loop_with_the_dev_bot_reaches_every_connection() {
    let (server, _dir) = Server::start(&[]).await;
    let s = server.create_session().await;
    assert!(s.body["websocketUrl"].as_str().unwrap().ends_with("/ws"));
    let mut a = server.connect(&s).await;
    let mut b = server.connect(&s).await;

    a.send(json!({"action":"sendMessage","content":"hello there, bot","clientMessageId":"c-1"}))
        .await;
    let ack = a.until("ack", |v| is_event(v, "ack")).await;
    assert_eq!(ack["clientMessageId"], "c-1");
    assert_eq!(ack["seq"], 1);
    let id = ack["messageId"].as_str().unwrap().to_string();

    for ws in [&mut a, &mut b] {
        let mine = ws
            .until("the user message", |v| {
                is_event(v, "message") && v["message"]["role"] == "user"
            })
            .await;
        assert_eq!(mine["message"]["id"], id.as_str());
        assert_eq!(mine["message"]["status"], "received");
        let reply = ws
            .until("the bot reply", |v| {
                is_event(v, "message") && v["message"]["role"] == "assistant"
            })
            .await;
        assert!(
            reply["message"]["content"]
                .as_str()
                .unwrap()
                .contains("hello there, bot")
        );
        assert_eq!(reply["message"]["replyTo"], id.as_str());
        assert_eq!(reply["message"]["seq"], 2);
        ws.until("answered", |v| {
            is_event(v, "status") && v["status"] == "answered" && v["messageId"] == id.as_str()
        })
        .await;
    }
    // The ack came before the message on the sending connection.
    let first = a.seen.iter().position(|v| is_event(v, "ack")).unwrap();
    let msg = a.seen.iter().position(|v| is_event(v, "message")).unwrap();
    assert!(first < msg, "{:#?}", a.seen);
    assert!(
        !b.seen.iter().any(|v| is_event(v, "ack")),
        "only the sender gets the ack"
    );

    let h = server.history(&s, "after=0").await;
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["status"], "answered");
    assert_eq!(h[1]["role"], "assistant");
}

#[tokio::test]
async fn reconnecting_client_catches_up_with_after_without_gaps_or_duplicates() {
    let (server, _dir) = Server::start(&[]).await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    ws.send(json!({"action":"sendMessage","content":"first","clientMessageId":"m1"}))
        .await;
    ws.until("reply", |v| {
        is_event(v, "message") && v["message"]["role"] == "assistant"
    })
    .await;
    let last_seen = ws
        .seen
        .iter()
        .filter(|v| is_event(v, "message"))
        .map(|v| v["message"]["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(last_seen, 2);
    ws.close().await;

    // While the client is away, more messages are sent (another tab, over HTTP) and answered.
    for i in 0..3 {
        let (status, v) = server
            .send(&s, &format!("away {i}"), Some(&format!("away-{i}")))
            .await;
        assert_eq!(status, 202, "{v}");
    }
    server
        .wait_history(&s, "all answered", |h| {
            h.len() == 8 && h.iter().all(|m| m["status"] != "received")
        })
        .await;

    let mut ws = server.connect(&s).await;
    let missed = server.history(&s, &format!("after={last_seen}")).await;
    let seqs: Vec<u64> = missed.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (3..=8).collect::<Vec<_>>(), "no gap, no duplicate");
    let ids: std::collections::HashSet<_> =
        missed.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 6);

    // Paging both ways.
    let (status, page, _) = server
        .request(
            "GET",
            &format!("/sessions/{}/messages?after=2&limit=2", s.id),
            Some(&s.token),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["hasMore"], true);
    assert_eq!(
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 4]
    );
    let older = server.history(&s, "before=3").await;
    assert_eq!(
        older
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    let newest = server.history(&s, "limit=3").await;
    assert_eq!(
        newest
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [6, 7, 8]
    );

    // The reconnected socket is live again.
    ws.send(json!({"action":"ping"})).await;
    ws.until("pong", |v| is_event(v, "pong")).await;
}

#[tokio::test]
async fn typing_read_ping_and_bad_frames_over_the_websocket() {
    let (server, _dir) = Server::start(&[]).await;
    let s = server.create_session().await;
    let mut a = server.connect(&s).await;
    let mut b = server.connect(&s).await;

    a.send(json!({"action":"typing","isTyping":true})).await;
    let t = b.until("typing", |v| is_event(v, "typing")).await;
    assert_eq!(t, json!({"event":"typing","role":"user","isTyping":true}));
    // The sender does not get its own typing back: its next frame is the pong.
    a.send(json!({"action":"ping"})).await;
    assert_eq!(a.next().await.unwrap(), json!({"event":"pong"}));

    a.send(json!({"action":"dance"})).await;
    let e = a.until("error", |v| is_event(v, "error")).await;
    assert_eq!(e["code"], "unknown_action");
    a.send_text("{not json").await;
    assert_eq!(
        a.until("error", |v| is_event(v, "error")).await["code"],
        "invalid_json"
    );
    a.send(json!({"action":"sendMessage","content":"   ","clientMessageId":"blank"}))
        .await;
    let e = a.until("error", |v| is_event(v, "error")).await;
    assert_eq!(e["code"], "content_empty");
    assert_eq!(e["clientMessageId"], "blank");

    a.send(json!({"action":"sendMessage","content":"read me","clientMessageId":"r1"}))
        .await;
    a.until("reply", |v| {
        is_event(v, "message") && v["message"]["role"] == "assistant"
    })
    .await;
    let (_, view, _) = server
        .request(
            "GET",
            &format!("/sessions/{}", s.id),
            Some(&s.token),
            None,
            &[],
        )
        .await;
    assert_eq!(view["session"]["unreadCount"], 1, "{view}");
    a.send(json!({"action":"read","upTo":2})).await;
    for ws in [&mut a, &mut b] {
        let r = ws.until("read", |v| is_event(v, "read")).await;
        assert_eq!(
            (r["upTo"].as_u64(), r["unreadCount"].as_u64()),
            (Some(2), Some(0))
        );
    }
    let (status, view, _) = server
        .request(
            "GET",
            &format!("/sessions/{}", s.id),
            Some(&s.token),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(view["session"]["readUpTo"], 2);
    assert_eq!(view["session"]["unreadCount"], 0);
    assert_eq!(view["messages"].as_array().unwrap().len(), 2);

    // The same over HTTP; read marks never go down.
    let (status, r, _) = server
        .request(
            "POST",
            &format!("/sessions/{}/read", s.id),
            Some(&s.token),
            Some(br#"{"upTo":1}"#.to_vec()),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["readUpTo"], 2);
}

#[tokio::test]
async fn external_n8n_gets_signed_payloads_and_repeated_callbacks_store_one_reply() {
    let (n8n, n8n_url) = common::fake_n8n(0).await;
    *n8n.reply.lock().unwrap() = false;
    let (server, _dir) = Server::start(&[("CHAT_N8N_WEBHOOK_URL", &n8n_url)]).await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    ws.send(json!({"action":"sendMessage","content":"book a table","clientMessageId":"b1","metadata":{"page":"/menu"}}))
        .await;
    let ack = ws.until("ack", |v| is_event(v, "ack")).await;
    let id = ack["messageId"].as_str().unwrap().to_string();
    ws.until("dispatched", |v| {
        is_event(v, "status") && v["status"] == "dispatched"
    })
    .await;
    let typing = ws
        .until("assistant typing", |v| is_event(v, "typing"))
        .await;
    assert_eq!(
        typing,
        json!({"event":"typing","role":"assistant","isTyping":true})
    );

    let payload = n8n.received.lock().unwrap()[0].clone();
    assert_eq!(n8n.count(), 1);
    assert_eq!(*n8n.bad_signatures.lock().unwrap(), 0);
    assert_eq!(payload["sessionId"], s.id.as_str());
    assert_eq!(payload["messageId"], id.as_str());
    assert_eq!(payload["content"], "book a table");
    assert_eq!(payload["metadata"], json!({"page":"/menu"}));
    assert!(payload["history"].is_array());
    assert_eq!(payload["callbackUrl"], format!("{}/webhook", server.url));

    // n8n answers twice with the same eventId (an at-least-once retry): one stored reply.
    let reply =
        json!({"sessionId": s.id, "replyTo": id, "eventId": "evt-1", "type": "confirmation",
                       "content": "Table for two at 8?", "data": {"time": "20:00"}})
        .to_string();
    let url = format!("{}/webhook", server.url);
    let (st1, r1) = post_signed(&server.http, &url, &reply, unix_now()).await;
    let (st2, r2) = post_signed(&server.http, &url, &reply, unix_now()).await;
    assert_eq!((st1, st2), (200, 200), "{r1} {r2}");
    assert_eq!(r1["messageId"], r2["messageId"]);
    let m = ws
        .until("reply", |v| {
            is_event(v, "message") && v["message"]["role"] == "assistant"
        })
        .await;
    assert_eq!(m["message"]["type"], "confirmation");
    assert_eq!(m["message"]["data"], json!({"time": "20:00"}));
    ws.until("answered", |v| {
        is_event(v, "status") && v["status"] == "answered"
    })
    .await;
    ws.send(json!({"action":"ping"})).await;
    ws.until("pong", |v| is_event(v, "pong")).await;
    let replies = ws
        .seen
        .iter()
        .filter(|v| is_event(v, "message") && v["message"]["role"] == "assistant")
        .count();
    assert_eq!(replies, 1, "the repeat pushed nothing: {:#?}", ws.seen);
    let h = server.history(&s, "after=0").await;
    assert_eq!(h.iter().filter(|m| m["role"] == "assistant").count(), 1);
    let _: Value = h[0].clone();
}
