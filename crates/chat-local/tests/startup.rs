//! Safe to start: the real binary refuses to listen beyond loopback with the public
//! development secrets, and keeps its data private (folder 0700, database files 0600); its
//! n8n and session settings (`CHAT_N8N_AUTH_HEADER` checked without echoing it,
//! `CHAT_WELCOME_MESSAGE`, a session's metadata) take effect as configured.

mod common;

use common::{SESSION_SECRET, Server, WAIT, WEBHOOK_SECRET, is_event};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

/// Runs `chat-local` with exactly `env` and expects it to stop at once; returns its exit code
/// and what it wrote to stderr.
async fn refused_start(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-local"));
    cmd.env_clear()
        .env("CHAT_DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("chat-local stops in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening"), "it started: {stdout}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_non_loopback_address_needs_both_secrets_set() {
    let webhook = ("CHAT_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let session = ("CHAT_SESSION_SECRET", SESSION_SECRET);
    // Addresses of the documentation ranges: should the check ever fail, binding them fails
    // too, so this test never listens beyond loopback (0.0.0.0 is a unit test of the config).
    #[rustfmt::skip]
    let cases = [
        ("192.0.2.1:0", Vec::<(&str, &str)>::new(), "CHAT_WEBHOOK_SECRET and CHAT_SESSION_SECRET are not set"),
        ("198.51.100.7:0", vec![webhook], "CHAT_SESSION_SECRET is not set"),
        ("[2001:db8::1]:0", vec![session], "CHAT_WEBHOOK_SECRET is not set"),
        ("203.0.113.9:0", vec![webhook, ("CHAT_SESSION_SECRET", " ")], "CHAT_SESSION_SECRET is not set"),
    ];
    for (addr, secrets, says) in cases {
        let mut env = secrets.clone();
        env.push(("CHAT_ADDR", addr));
        let (code, stderr) = refused_start(&env).await;
        assert_eq!(code, Some(2), "{addr} with {secrets:?}: {stderr}");
        assert!(stderr.contains(says), "{addr}: {stderr}");
        for secret in [WEBHOOK_SECRET, SESSION_SECRET] {
            assert!(
                !stderr.contains(secret),
                "a secret in the message: {stderr}"
            );
        }
    }
    // On loopback the development secrets are still fine (any 127.x address).
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[("CHAT_ADDR", "127.0.0.2:0")]).await;
    let (status, v, _) = server.request("GET", "/health", None, None, &[]).await;
    assert_eq!((status, v), (200, json!({"status": "ok"})));
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_folder_is_0700_and_the_database_files_0600() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = Server::start_in(data, &[]).await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    ws.send(json!({"action": "sendMessage", "content": "private", "clientMessageId": "p1"}))
        .await;
    ws.until("the reply", |v| {
        is_event(v, "message") && v["message"]["role"] == "assistant"
    })
    .await;
    let files = ["chat.db", "chat.db-wal", "chat.db-shm"];
    for f in files {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert!(server.terminate().await.success());

    // Files left wider by an earlier version are narrowed at the next start.
    for f in files {
        let p = data.join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let server = Server::start_in(data, &[]).await;
    assert_eq!(server.history(&s, "after=0").await.len(), 2);
    for f in files {
        let p = data.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    drop(server);
}

#[tokio::test]
async fn a_data_folder_it_creates_is_0700() {
    // The harness keeps its log in the data folder, so start the binary directly here.
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("a").join("b");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-local"));
    cmd.env_clear()
        .env("CHAT_ADDR", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(line.is_some_and(|l| l.contains("listening")));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("chat.db")), 0o600);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_malformed_n8n_auth_header_stops_the_start_without_echoing_it() {
    let (code, stderr) = refused_start(&[
        ("CHAT_N8N_WEBHOOK_URL", "http://127.0.0.1:9/webhook/chat"),
        ("CHAT_N8N_AUTH_HEADER", "Authorization Basic s3cr3t-value"),
    ])
    .await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("CHAT_N8N_AUTH_HEADER"), "{stderr}");
    assert!(
        !stderr.contains("s3cr3t"),
        "the value in the message: {stderr}"
    );
}

#[tokio::test]
async fn a_session_keeps_its_metadata_and_opens_with_the_welcome_message() {
    let (server, _dir) = Server::start(&[("CHAT_WELCOME_MESSAGE", "Hi! How can I help?")]).await;
    let body = json!({"metadata": {"page": "/pricing", "locale": "de-CH"}}).to_string();
    let (status, created, _) = server
        .request("POST", "/sessions", None, Some(body.into_bytes()), &[])
        .await;
    assert_eq!(status, 201, "{created}");
    let (id, token) = (
        created["sessionId"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
    );
    let (status, view, _) = server
        .request("GET", &format!("/sessions/{id}"), Some(token), None, &[])
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view["session"]["metadata"],
        json!({"page": "/pricing", "locale": "de-CH"})
    );
    let messages = view["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        (
            &messages[0]["role"],
            &messages[0]["content"],
            &messages[0]["seq"]
        ),
        (
            &json!("assistant"),
            &json!("Hi! How can I help?"),
            &json!(1)
        )
    );
    let big = json!({"metadata": {"blob": "x".repeat(5000)}}).to_string();
    let (status, err, _) = server
        .request("POST", "/sessions", None, Some(big.into_bytes()), &[])
        .await;
    assert_eq!(
        (status, &err["error"]["code"]),
        (400, &json!("invalid_input"))
    );
}
