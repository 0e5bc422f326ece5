//! Edit and delete on the real `chat-local` binary: a user edits and deletes their message
//! over HTTP, the other device receives each change live as a `message` event, the changes
//! survive a restart and are listed by `?updatedAfter=` (SQLite's partial index), the tombstone
//! is empty in the database file itself, and the bot's message, a tombstone and a message past
//! `CHAT_EDIT_WINDOW_S` are refused.

mod common;

use common::Server;
use serde_json::{Value, json};

async fn change(
    server: &Server,
    s: &common::Session,
    method: &str,
    id: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, v, _) = server
        .request(
            method,
            &format!("/sessions/{}/messages/{id}", s.id),
            Some(&s.token),
            body.map(|b| b.to_string().into_bytes()),
            &[],
        )
        .await;
    (status, v)
}

#[tokio::test]
async fn a_user_edits_and_deletes_and_every_device_learns_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[("CHAT_EDIT_WINDOW_S", "3")]).await;
    let s = server.create_session().await;
    let (status, sent) = server.send(&s, "helo", Some("e-1")).await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["message"]["id"].as_str().unwrap().to_string();
    assert_eq!(sent["message"]["updatedAt"], sent["message"]["createdAt"]);
    let history = server
        .wait_history(&s, "the dev bot's answer", |h| {
            h.iter().any(|m| m["role"] == "assistant")
        })
        .await;
    let bot = history.iter().find(|m| m["role"] == "assistant").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut other_device = server.connect(&s).await;

    let (status, edited) =
        change(&server, &s, "PATCH", &id, Some(json!({"content": "hello"}))).await;
    assert_eq!(status, 200, "{edited}");
    let edited = edited["message"].clone();
    assert_eq!(
        (edited["id"].as_str(), edited["seq"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
    assert_eq!(edited["content"], "hello");
    assert!(edited["editedAt"].is_string(), "{edited}");
    let pushed = other_device
        .until("the edit", |v| {
            v["event"] == "message" && v["message"]["id"] == id.as_str()
        })
        .await;
    assert_eq!(pushed["message"], edited, "pushed as stored");

    // The bot's message is not the user's; bad bodies change nothing.
    let (status, v) = change(&server, &s, "PATCH", &bot, Some(json!({"content": "x"}))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (status, v) = change(&server, &s, "PATCH", &id, Some(json!({"text": "x"}))).await;
    assert_eq!(status, 400, "{v}");

    // The edit survives a restart; the catch-up lists it.
    let before = edited["updatedAt"].as_str().unwrap().to_string();
    server.terminate().await;
    let server = Server::start_in(dir.path(), &[("CHAT_EDIT_WINDOW_S", "3")]).await;
    let mut other_device = server.connect(&s).await;
    let changed = server.history(&s, "updatedAfter=0").await;
    assert_eq!(changed, vec![edited.clone()], "only the changed message");

    let (status, gone) = change(&server, &s, "DELETE", &id, None).await;
    assert_eq!(status, 200, "{gone}");
    let gone = gone["message"].clone();
    assert_eq!(
        (gone["deleted"].as_bool(), gone["content"].as_str()),
        (Some(true), Some(""))
    );
    let pushed = other_device
        .until("the deletion", |v| {
            v["event"] == "message" && v["message"]["deleted"] == true
        })
        .await;
    assert_eq!(pushed["message"], gone);
    let since = server.history(&s, &format!("updatedAfter={before}")).await;
    assert_eq!(
        since,
        vec![gone.clone()],
        "strictly after the edit: the deletion"
    );
    let (status, v) = change(&server, &s, "PATCH", &id, Some(json!({"content": "back"}))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );

    // Nothing of the deleted text stays in the database file.
    let db = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
    let stored: (String, Option<i64>) = db
        .query_row(
            "SELECT content, deleted_at FROM messages WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(stored.0, "");
    assert!(stored.1.is_some());

    // Past the window (3 s), a message can no longer change.
    let (status, late) = server.send(&s, "too late to fix", Some("e-2")).await;
    assert_eq!(status, 202, "{late}");
    let late_id = late["message"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let (status, v) = change(
        &server,
        &s,
        "PATCH",
        &late_id,
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
    let (status, v) = change(&server, &s, "DELETE", &late_id, None).await;
    assert_eq!(status, 409, "{v}");
    server.terminate().await;
}
