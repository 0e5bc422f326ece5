//! The real binary's log at `info`, after a realistic round and a run of bad input: every
//! line of a request carries its request id and its session id, and no line holds a secret,
//! a token (session token, app JWT, signature) or the content of a message or reply.

mod common;

#[path = "../../chat-core/tests/support/jwt_keys.rs"]
mod jwt_keys;

use common::{SESSION_SECRET, Server, WEBHOOK_SECRET, is_event, post_signed, unix_now};
use serde_json::json;

const APP_SECRET: &str = "log-hygiene-app-jwt-secret-4e1b";
const CONTENT: &str = "confidential words 7f3a of the user";
const HTTP_CONTENT: &str = "second private text b61e";
const REPLY: &str = "an answer nobody may log 9c1d";
const BAD_BODY: &str = "{\"content\": \"half a private thought 55aa";

/// The span part of a text log line (`request{…}:job{…}: `), not the event's own fields.
fn spans_of(line: &str) -> &str {
    let start = line
        .find(" request{")
        .or_else(|| line.find(" job{"))
        .unwrap_or(line.len());
    let end = line[start..]
        .find("}: ")
        .map_or(line.len(), |e| start + e + 1);
    &line[start..end]
}

fn lines_between(log: &str, from: usize, to: usize) -> Vec<&str> {
    log[from..to]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[tokio::test]
async fn no_line_holds_a_secret_a_token_or_content_and_request_lines_name_their_session() {
    let (server, _dir) = Server::start(&[("CHAT_AUTH_JWT_SECRET", APP_SECRET)]).await;
    let started = server.log().len();

    // ----- a realistic round: a user session, a socket, a message each way, n8n's reply.
    let claims = json!({"sub": "user-42", "exp": unix_now() + 600});
    let app_jwt = jwt_keys::hs256(APP_SECRET.as_bytes(), None, &claims);
    let (status, created, _) = server
        .request(
            "POST",
            "/sessions",
            None,
            Some(b"{}".to_vec()),
            &[("authorization", &format!("Bearer {app_jwt}"))],
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let s = common::Session {
        id: created["sessionId"].as_str().unwrap().to_string(),
        token: created["token"].as_str().unwrap().to_string(),
        body: created,
    };
    let mut ws = server.connect(&s).await;
    ws.send(json!({"action":"sendMessage","content":CONTENT,"clientMessageId":"h-1"}))
        .await;
    ws.until("the dev bot's answer", |v| {
        is_event(v, "status") && v["status"] == "answered"
    })
    .await;
    let (status, sent) = server.send(&s, HTTP_CONTENT, Some("h-2")).await;
    assert_eq!(status, 202);
    let id = sent["message"]["id"].as_str().unwrap().to_string();
    // n8n's own reply to it, signed: its signature must not be logged either.
    let reply = json!({"sessionId": s.id, "replyTo": id, "eventId": "e-1", "content": REPLY});
    let ts = unix_now();
    let signature = chat_core::signature::sign(
        WEBHOOK_SECRET.as_bytes(),
        &ts.to_string(),
        reply.to_string().as_bytes(),
    );
    let (status, _) = post_signed(
        &server.http,
        &format!("{}/webhook", server.url),
        &reply.to_string(),
        ts,
    )
    .await;
    assert_eq!(status, 200);
    ws.until("n8n's reply", |v| {
        is_event(v, "message") && v["message"]["content"] == REPLY
    })
    .await;
    server
        .wait_history(&s, "two messages and three replies", |h| h.len() == 5)
        .await;
    ws.send(json!({"action":"read","upTo":5})).await;
    ws.send(json!({"action":"ping"})).await;
    ws.until("pong", |v| is_event(v, "pong")).await;
    ws.close().await;
    // The dev bot's answers come on their own; wait until both are written down.
    let deadline = std::time::Instant::now() + common::WAIT;
    while server.log().matches("reply stored").count() < 3 || !server.log().contains("disconnected")
    {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let round_end = server.log().len();

    // ----- bad input: wrong and malformed tokens, a bad signature, bad bodies and frames.
    let wrong_token = format!("{}x", s.token);
    let (status, _, _) = server
        .request(
            "GET",
            &format!("/sessions/{}", s.id),
            Some(&wrong_token),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 401);
    let forged_jwt = jwt_keys::hs256(b"a guessed secret", None, &claims);
    let (status, _, _) = server
        .request(
            "POST",
            "/sessions",
            None,
            Some(b"{}".to_vec()),
            &[("authorization", &format!("Bearer {forged_jwt}"))],
        )
        .await;
    assert_eq!(status, 401);
    let (status, _, _) = server
        .request(
            "POST",
            &format!("/sessions/{}/messages", s.id),
            Some(&s.token),
            Some(BAD_BODY.as_bytes().to_vec()),
            &[],
        )
        .await;
    assert_eq!(status, 400);
    let bad_signature = format!("sha256={}", "ab".repeat(32));
    let (status, _, _) = server
        .request(
            "POST",
            "/webhook",
            None,
            Some(reply.to_string().into_bytes()),
            &[
                ("x-chat-timestamp", &unix_now().to_string()),
                ("x-chat-signature", &bad_signature),
            ],
        )
        .await;
    assert_eq!(status, 401);
    let mut ws = server.connect(&s).await;
    ws.send_text(&format!("not json {CONTENT}")).await;
    ws.until("an error frame", |v| is_event(v, "error")).await;
    ws.send(json!({"action":"sendMessage","content":""})).await;
    ws.until("another error frame", |v| {
        is_event(v, "error") && v["code"] == "content_empty"
    })
    .await;
    ws.close().await;
    let data_dir = server.data_dir.clone();
    assert!(server.terminate().await.success());
    let log = common::log_of(&data_dir);

    // No secret, token, signature or content on any line, of the round or of the bad input.
    let never = [
        ("the webhook secret", WEBHOOK_SECRET),
        ("the session secret", SESSION_SECRET),
        ("the app JWT secret", APP_SECRET),
        ("the session token", s.token.as_str()),
        ("a wrong session token", wrong_token.as_str()),
        ("the app JWT", app_jwt.as_str()),
        ("a forged app JWT", forged_jwt.as_str()),
        ("n8n's signature", signature.as_str()),
        ("a bad signature", bad_signature.as_str()),
        ("a message's content", CONTENT),
        ("a message's content", HTTP_CONTENT),
        ("a reply's content", REPLY),
        ("a bad body's content", "half a private thought"),
    ];
    for line in log[started..].lines() {
        for (what, value) in never {
            assert!(!line.contains(value), "{what} in the log: {line}");
        }
    }

    // Every line of a request of the round names its request and its session.
    let session = format!("session_id={}", s.id);
    let round = lines_between(&log, started, round_end);
    let in_requests: Vec<&&str> = round.iter().filter(|l| l.contains("request{")).collect();
    for line in &in_requests {
        let spans = spans_of(line);
        assert!(spans.contains("request_id="), "{line}");
        assert!(
            spans.contains(&session),
            "a request line whose span has no session: {line}"
        );
    }
    for event in [
        "session created",
        "connected",
        "message received",
        "reply stored",
        "disconnected",
    ] {
        assert!(
            in_requests.iter().any(|l| l.contains(event)),
            "'{event}' is logged within its request: {round:#?}"
        );
    }
    // A queued job's lines name the session too.
    let jobs: Vec<&&str> = round.iter().filter(|l| l.contains("job{")).collect();
    assert!(
        jobs.iter().any(|l| l.contains("dispatched to n8n")),
        "{round:#?}"
    );
    for line in jobs {
        assert!(spans_of(line).contains(&session), "{line}");
    }
}
