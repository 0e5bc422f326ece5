//! People in the loop against the real binary: an agent's WebSocket and a user's; the user
//! asks for a person, the agent's inbox shows it live, the agent claims, both write and type,
//! the agent releases and the next user message goes to the dev bot again. Also the
//! `agent-token` subcommand and refused agent sockets.

mod common;

use common::{Server, WAIT, Ws, is_event};
use serde_json::{Value, json};
use std::time::Instant;

const APP_SECRET: &str = "integration-app-jwt-secret";

/// Runs `chat-local agent-token <args>` with `secret` as CHAT_AUTH_JWT_SECRET.
async fn agent_token(args: &[&str], secret: Option<&str>) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-local"));
    cmd.env_clear().arg("agent-token").args(args);
    if let Some(s) = secret {
        cmd.env("CHAT_AUTH_JWT_SECRET", s);
    }
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("agent-token ends in time")
        .expect("agent-token runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn agent_request(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, v, _) = server
        .request(
            method,
            path,
            Some(token),
            body.map(|b| b.to_string().into_bytes()),
            &[],
        )
        .await;
    (status, v)
}

#[tokio::test]
async fn a_person_takes_a_conversation_over_and_hands_it_back() {
    let (server, _dir) = Server::start(&[("CHAT_AUTH_JWT_SECRET", APP_SECRET)]).await;
    let (code, token, err) =
        agent_token(&["--name", "Alex", "--id", "a-1"], Some(APP_SECRET)).await;
    assert_eq!(code, 0, "{err}");
    let mut agent = Ws::connect(&format!("{}?agentToken={token}", server.ws_url)).await;
    let s = server.create_session().await;
    let mut user = server.connect(&s).await;

    // The user asks for a person; the agent's inbox shows it.
    let asked = Instant::now();
    user.send(json!({"action": "handoff"})).await;
    let inbox = agent
        .until("the inbox event", |v| {
            is_event(v, "inbox") && v["session"]["sessionId"] == s.id.as_str()
        })
        .await;
    let to_inbox = asked.elapsed();
    assert_eq!(inbox["session"]["mode"], "waiting");
    assert_eq!(inbox["session"]["userOnline"], true);
    println!(
        "user asks for a person → agent's inbox event: {:.1} ms",
        to_inbox.as_secs_f64() * 1000.0
    );
    let waiting = user
        .until("the session event", |v| is_event(v, "session"))
        .await;
    assert_eq!(waiting["session"]["mode"], "waiting");
    let (status, page) =
        agent_request(&server, "GET", "/agent/inbox?view=waiting", &token, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["sessions"][0]["sessionId"], s.id.as_str());

    // The agent claims it and writes; the user sees both.
    let claim = format!("/agent/sessions/{}/claim", s.id);
    let (status, v) = agent_request(&server, "POST", &claim, &token, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["session"]["agent"], json!({"id": "a-1", "name": "Alex"}));
    user.until("Alex joined", |v| {
        v["message"]["content"] == "Alex joined the conversation"
    })
    .await;
    let say = format!("/agent/sessions/{}/messages", s.id);
    let (status, v) = agent_request(
        &server,
        "POST",
        &say,
        &token,
        Some(json!({"content": "Hi, Alex here.", "clientMessageId": "a-m1"})),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let got = user
        .until("the agent's message", |v| {
            is_event(v, "message") && v["message"]["role"] == "agent"
        })
        .await;
    assert_eq!(got["message"]["name"], "Alex");
    assert_eq!(got["message"]["content"], "Hi, Alex here.");

    // The user writes: the agent gets it; the bot does not.
    user.send(
        json!({"action": "sendMessage", "content": "my parcel is lost", "clientMessageId": "u-1"}),
    )
    .await;
    let mine = agent
        .until("the user's message", |v| {
            is_event(v, "message") && v["message"]["content"] == "my parcel is lost"
        })
        .await;
    assert_eq!(mine["message"]["sessionId"], s.id.as_str());

    // Typing both ways.
    agent
        .send(json!({"action": "typing", "sessionId": s.id, "isTyping": true}))
        .await;
    let typing = user
        .until("the agent typing", |v| {
            is_event(v, "typing") && v["role"] == "agent"
        })
        .await;
    assert_eq!(
        typing,
        json!({"event":"typing","role":"agent","name":"Alex","isTyping":true})
    );
    user.send(json!({"action": "typing", "isTyping": true}))
        .await;
    let typing = agent
        .until("the user typing", |v| {
            is_event(v, "typing") && v["role"] == "user"
        })
        .await;
    assert_eq!(typing["sessionId"], s.id.as_str());

    // A second agent cannot take it.
    let (_, sam, _) = agent_token(&["--name", "Sam", "--id", "a-2"], Some(APP_SECRET)).await;
    let (status, v) = agent_request(&server, "POST", &claim, &sam, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("conflict"))
    );

    // Released: the bot answers the next message, and the one sent meanwhile stays unsent.
    let release = format!("/agent/sessions/{}/release", s.id);
    let (status, v) = agent_request(&server, "POST", &release, &token, None).await;
    assert_eq!(status, 200, "{v}");
    user.until("Alex left", |v| {
        v["message"]["content"] == "Alex left; the assistant is back"
    })
    .await;
    let (status, _) = server.send(&s, "is the bot back?", None).await;
    assert_eq!(status, 202);
    let history = server
        .wait_history(&s, "the dev bot's answer", |h| {
            h.iter()
                .any(|m| m["content"] == "You said: is the bot back?")
        })
        .await;
    let lost = history
        .iter()
        .find(|m| m["content"] == "my parcel is lost")
        .unwrap();
    assert_eq!(
        lost["status"], "received",
        "not dispatched while Alex held it"
    );
    assert!(
        !history
            .iter()
            .any(|m| m["content"] == "You said: my parcel is lost"),
        "the bot never answered what the user said to Alex"
    );
    user.close().await;
    agent.close().await;
}

#[tokio::test]
async fn agent_tokens_and_sockets_are_checked() {
    let (code, out, err) = agent_token(&["--name", "Alex"], None).await;
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("CHAT_AUTH_JWT_SECRET is not set"), "{err}");
    let (code, _, err) = agent_token(&["--id", "x"], Some(APP_SECRET)).await;
    assert_eq!(code, 2);
    assert!(err.contains("usage"), "{err}");

    let (server, _dir) = Server::start(&[("CHAT_AUTH_JWT_SECRET", APP_SECRET)]).await;
    let (_, forged, _) = agent_token(&["--name", "Mallory"], Some("another-secret")).await;
    let s = server.create_session().await;
    for (token, status) in [
        (forged.as_str(), 401),
        ("garbage", 401),
        (s.token.as_str(), 401),
    ] {
        let res = server
            .http
            .get(format!("{}/ws?agentToken={token}", server.url))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status);
    }
    let (status, v) = agent_request(&server, "GET", "/agent/inbox", &forged, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_auth"))
    );
    let (status, _) = agent_request(&server, "GET", "/agent/inbox", &s.token, None).await;
    assert_eq!(status, 401);
    assert!(
        !server.log().contains(&forged),
        "a refused token is not logged"
    );
}
