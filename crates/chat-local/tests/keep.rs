//! Conversations people keep, on the real `chat-local` binary: a signed-in user's second
//! device lists and resumes a conversation, the user exports and erases it (its sockets
//! closed with 1000), and `chat-local admin export|erase` leaves nothing of the erased user
//! in the SQLite file, read directly afterwards.

mod common;
#[path = "../../chat-core/tests/support/jwt_keys.rs"]
mod jwt_keys;

use common::{Server, unix_now};
use serde_json::{Value, json};
use std::process::Stdio;

const APP_SECRET: &str = "integration-app-jwt-secret";

fn user_jwt(sub: &str) -> String {
    jwt_keys::hs256(
        APP_SECRET.as_bytes(),
        None,
        &json!({"sub": sub, "exp": unix_now() + 3600}),
    )
}

async fn start() -> (Server, tempfile::TempDir) {
    Server::start(&[("CHAT_AUTH_JWT_SECRET", APP_SECRET)]).await
}

/// A user session of `sub`: its id and token.
async fn user_session(server: &Server, sub: &str) -> common::Session {
    let (status, body, _) = server
        .request(
            "POST",
            "/sessions",
            Some(&user_jwt(sub)),
            Some(b"".to_vec()),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    common::Session {
        id: body["sessionId"].as_str().unwrap().to_string(),
        token: body["token"].as_str().unwrap().to_string(),
        body,
    }
}

/// Sends `text` and waits for the dev bot's answer.
async fn talk(server: &Server, s: &common::Session, text: &str, client_id: &str) {
    let (status, v) = server.send(s, text, Some(client_id)).await;
    assert_eq!(status, 202, "{v}");
    server
        .wait_history(s, "the dev bot's answer", |h| {
            h.iter().any(|m| m["role"] == "assistant")
        })
        .await;
}

async fn get(server: &Server, path: &str, token: &str) -> (u16, Value) {
    let (status, v, _) = server.request("GET", path, Some(token), None, &[]).await;
    (status, v)
}

#[tokio::test]
async fn a_second_device_lists_resumes_then_erases_the_conversation() {
    let (server, _dir) = start().await;
    let jwt = user_jwt("u-1");
    // Device 1 talks.
    let first = user_session(&server, "u-1").await;
    talk(&server, &first, "Where is my order?", "c-1").await;
    let _other = user_session(&server, "u-2").await;

    // Device 2 knows only the app JWT: it lists the user's conversations.
    let (status, list) = get(&server, "/sessions", &jwt).await;
    assert_eq!(status, 200, "{list}");
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{list}");
    assert_eq!(sessions[0]["sessionId"], first.id.as_str());
    assert_eq!(sessions[0]["title"], "Where is my order?");
    assert_eq!(sessions[0]["unreadCount"], 1, "the bot's answer is unread");
    assert_eq!(sessions[0]["lastMessage"]["role"], "assistant");

    // ...and resumes it with a fresh token of its own. Tokens carry their issue time in
    // seconds: in the second the first was issued, a resume would mint the same text.
    let issued = unix_now();
    while unix_now() == issued {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, resumed, _) = server
        .request(
            "POST",
            &format!("/sessions/{}/resume", first.id),
            Some(&jwt),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    let second = common::Session {
        id: first.id.clone(),
        token: resumed["token"].as_str().unwrap().to_string(),
        body: resumed.clone(),
    };
    // (Within the same second the fresh token may equal the first: same claims, same times.)
    let history = server.history(&second, "after=0").await;
    assert_eq!(history[0]["content"], "Where is my order?");
    // Both devices are connected; device 2 sends, device 1 sees it.
    let mut ws1 = server.connect(&first).await;
    let mut ws2 = server.connect(&second).await;
    ws2.send(
        json!({"action": "sendMessage", "content": "from my phone", "clientMessageId": "c-2"}),
    )
    .await;
    ws1.until("device 2's message", |v| {
        v["event"] == "message" && v["message"]["content"] == "from my phone"
    })
    .await;

    // Another user cannot resume or erase it; a guest token cannot list.
    let (status, v, _) = server
        .request(
            "POST",
            &format!("/sessions/{}/resume", first.id),
            Some(&user_jwt("u-2")),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = get(&server, "/sessions", &first.token).await;
    assert_eq!(status, 401);

    // The export holds it; then the user erases everything: both sockets close with 1000.
    let (status, export) = get(&server, "/me/export", &jwt).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["userId"], "u-1");
    assert_eq!(export["sessions"][0]["session"]["id"], first.id.as_str());
    assert!(
        export["sessions"][0]["messages"].as_array().unwrap().len() >= 3,
        "{export}"
    );
    let (status, body, _) = server.request("DELETE", "/me", Some(&jwt), None, &[]).await;
    assert_eq!((status, body), (204, Value::Null));
    for ws in [&mut ws1, &mut ws2] {
        assert_eq!(ws.close_frame().await.map(|c| c.0), Some(1000));
    }
    let (status, list) = get(&server, "/sessions", &jwt).await;
    assert_eq!((status, list["sessions"].clone()), (200, json!([])));
    let (status, v) = get(&server, &format!("/sessions/{}", first.id), &second.token).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

/// Runs `chat-local admin <args>` on `dir`; returns its exit code, stdout and stderr.
async fn admin(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-local"))
        .arg("admin")
        .args(args)
        .env_clear()
        .env("CHAT_DATA_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let out = tokio::time::timeout(common::WAIT, out)
        .await
        .expect("the command ends in time")
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Every row of every table of the database that mentions `needle` (an id or a text).
fn rows_mentioning(db: &rusqlite::Connection, needle: &str) -> Vec<String> {
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut found = Vec::new();
    for t in tables {
        let cols: Vec<String> = db
            .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let any = cols
            .iter()
            .map(|c| format!("CAST({c} AS TEXT) LIKE '%' || ?1 || '%'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let n: i64 = db
            .query_row(
                &format!("SELECT COUNT(*) FROM {t} WHERE {any}"),
                [needle],
                |r| r.get(0),
            )
            .unwrap();
        if n > 0 {
            found.push(format!("{t}: {n} row(s)"));
        }
    }
    found
}

#[tokio::test]
async fn admin_erase_leaves_nothing_of_the_user_in_the_database() {
    let (server, dir) = start().await;
    let a = user_session(&server, "erase-me").await;
    let b = user_session(&server, "erase-me").await;
    let keep = user_session(&server, "keep-me").await;
    talk(&server, &a, "secret words alpha", "k-a").await;
    talk(&server, &b, "secret words beta", "k-b").await;
    talk(&server, &keep, "kept words gamma", "k-c").await;
    let _ws = server.connect(&a).await;

    // The operator's export: both sessions of the user with every message, none of another's.
    let (code, out, err) = admin(dir.path(), &["export", "--user", "erase-me"]).await;
    assert_eq!(code, 0, "{err}");
    let export: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(export["userId"], "erase-me");
    assert_eq!(export["sessions"].as_array().unwrap().len(), 2, "{export}");
    assert!(out.contains("secret words alpha") && out.contains("secret words beta"));
    assert!(!out.contains("kept words gamma"));
    let (code, out, _) = admin(dir.path(), &["export", "--session", &keep.id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("kept words gamma"));

    assert!(server.terminate().await.success());
    let (code, out, err) = admin(dir.path(), &["erase", "--user", "erase-me"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 session(s) erased"), "{out}");

    let db = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
    for needle in ["erase-me", a.id.as_str(), b.id.as_str(), "secret words"] {
        let left = rows_mentioning(&db, needle);
        assert!(left.is_empty(), "{needle} is still in {left:?}");
    }
    for needle in ["keep-me", keep.id.as_str(), "kept words gamma"] {
        assert!(
            !rows_mentioning(&db, needle).is_empty(),
            "{needle}: another user's data went too"
        );
    }

    // One session by id; then nothing of it either.
    let (code, out, err) = admin(dir.path(), &["erase", "--session", &keep.id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 session(s) erased"), "{out}");
    assert!(rows_mentioning(&db, &keep.id).is_empty());
    assert!(rows_mentioning(&db, "kept words").is_empty());

    // Bad use: a clear message and exit code 2; an unknown session erases nothing.
    let (code, _, err) = admin(dir.path(), &["erase"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("admin erase --user <id> | --session <id>"),
        "{err}"
    );
    let (code, out, _) = admin(dir.path(), &["erase", "--session", &keep.id]).await;
    assert_eq!((code, out.trim()), (0, "chat-local: 0 session(s) erased"));
    let (code, _, err) = admin(dir.path(), &["export", "--session", "nope"]).await;
    assert_eq!(code, 1, "{err}");
}
