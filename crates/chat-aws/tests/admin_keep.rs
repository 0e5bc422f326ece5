//! `chat-admin export|erase` against the emulator, the real binary: a user with two sessions
//! (messages, a connection each) and another user; the export holds the first user's
//! sessions and messages; `erase --user` leaves nothing of them in the table (scanned), the
//! other user's data stays; `erase --session` erases one session; bad flags are a usage error.

use chat_core::service::{ChatService, Ports, SendInput};
use chat_testkit::aws::emulator as common;
use std::sync::Arc;

/// Runs `chat-admin <args>` on the emulator; returns (exit code, stdout, stderr).
async fn chat_admin(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-admin"))
        .args(args)
        .env_clear()
        .env("AWS_ENDPOINT_URL", &common::emulator().url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("chat-admin ends in time")
        .expect("chat-admin runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn jwt(sub: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub, "exp": 4_000_000_000_i64}),
        &jsonwebtoken::EncodingKey::from_secret(b"test-app-jwt-secret"),
    )
    .unwrap()
}

/// Every item of the table, as text.
async fn table_text(client: &aws_sdk_dynamodb::Client, table: &str) -> String {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    format!("{items:?}")
}

#[tokio::test]
async fn chat_admin_exports_and_erases_a_user_and_nothing_of_them_is_left() {
    let sdk = common::sdk().await;
    let table = common::create_table(&sdk).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let svc = ChatService::new(
        Ports {
            store: Arc::new(chat_aws::dynamo::DynamoStore::new(
                client.clone(),
                table.clone(),
            )),
            queue: Arc::new(chat_testkit::memory::MemoryQueue::default()),
            push: Arc::new(chat_testkit::memory::RecordingPush::default()),
            clock: Arc::new(chat_core::ports::SystemClock),
            limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
        },
        chat_testkit::config(),
    );
    let mut ids = Vec::new();
    for (i, sub) in ["admin-gone", "admin-gone", "admin-kept", "admin-kept"]
        .into_iter()
        .enumerate()
    {
        let c = svc
            .create_session(&format!("192.0.2.{i}"), Some(&jwt(sub)))
            .await
            .unwrap();
        let claims = svc
            .authorize(Some(&c.token), &c.session_id.to_string())
            .unwrap();
        let input = SendInput {
            content: format!("words {i} of {sub}"),
            client_message_id: Some(format!("admin-k-{i}")),
            metadata: None,
            attachments: Vec::new(),
        };
        svc.send((&claims).into(), input, None).await.unwrap();
        svc.connect(
            Some(&c.session_id.to_string()),
            Some(&c.token),
            &format!("admin-conn-{i}"),
        )
        .await
        .unwrap();
        ids.push(c.session_id.to_string());
    }

    // Export: both sessions of the user, with their messages.
    let (code, out, err) = chat_admin(&["export", "--user", "admin-gone", "--table", &table]).await;
    assert_eq!(code, 0, "{err}");
    let export: serde_json::Value = serde_json::from_str(&out).expect("the export is JSON");
    println!("{out}");
    assert_eq!(export["userId"], "admin-gone");
    let mut exported: Vec<(String, String)> = export["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["session"]["id"].as_str().unwrap().to_string(),
                s["messages"][0]["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    exported.sort();
    let mut want = vec![
        (ids[0].clone(), "words 0 of admin-gone".to_string()),
        (ids[1].clone(), "words 1 of admin-gone".to_string()),
    ];
    want.sort();
    assert_eq!(exported, want);

    // Erase the user: nothing of them is left in the table; the other user's data is.
    let (code, out, err) = chat_admin(&["erase", "--user", "admin-gone", "--table", &table]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 session(s) erased"), "{out}");
    let text = table_text(&client, &table).await;
    for needle in [
        "admin-gone",
        &ids[0],
        &ids[1],
        "admin-conn-0",
        "admin-conn-1",
        "admin-k-0",
        "admin-k-1",
        "of admin-gone",
    ] {
        assert!(
            !text.contains(needle),
            "{needle} is still in the table: {text}"
        );
    }
    for needle in [
        "admin-kept",
        &ids[2],
        &ids[3],
        "admin-conn-2",
        "words 3 of admin-kept",
    ] {
        assert!(
            text.contains(needle),
            "{needle}: another user's data went too"
        );
    }
    // The user's export is empty now.
    let (code, out, _) = chat_admin(&["export", "--user", "admin-gone", "--table", &table]).await;
    assert_eq!(code, 0);
    let export: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(export["sessions"], serde_json::json!([]));

    // Erase one session by id: that one goes, its sibling stays.
    let (code, out, err) = chat_admin(&["erase", "--session", &ids[2], "--table", &table]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 session(s) erased"), "{out}");
    let text = table_text(&client, &table).await;
    assert!(!text.contains(&ids[2]) && !text.contains("admin-conn-2"));
    assert!(text.contains(&ids[3]), "the other session stays");

    // A session gone is a clear failure on export; bad flags are a usage error (exit 2).
    let (code, _, err) = chat_admin(&["export", "--session", &ids[2], "--table", &table]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("chat-admin export"), "{err}");
    for bad in [
        vec!["erase", "--table", table.as_str()],
        vec![
            "erase",
            "--user",
            "u",
            "--session",
            &ids[3],
            "--table",
            &table,
        ],
        vec!["export", "--user", "u"],
    ] {
        let (code, _, err) = chat_admin(&bad).await;
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains("usage: chat-admin"), "{err}");
    }
    let (code, _, err) = chat_admin(&["erase", "--session", "not-a-ulid", "--table", &table]).await;
    assert_eq!(code, 1, "{err}");
}

/// Runs `chat-admin <args>` with `CHAT_ATTACHMENTS_BUCKET` set to `bucket`.
async fn chat_admin_with_bucket(args: &[&str], bucket: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-admin"))
        .args(args)
        .env_clear()
        .env("AWS_ENDPOINT_URL", &common::emulator().url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CHAT_ATTACHMENTS_BUCKET", bucket)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("chat-admin ends in time")
        .expect("chat-admin runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The object keys in `bucket`.
async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    s3.list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

/// With the stack's bucket (`CHAT_ATTACHMENTS_BUCKET`), `chat-admin erase` deletes the erased
/// conversations' files; without it they stay (the README says so).
#[tokio::test]
async fn chat_admin_erase_deletes_the_files_when_given_the_bucket() {
    let sdk = common::sdk().await;
    let table = common::create_table(&sdk).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!(
        "admin-files-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let store = Arc::new(chat_aws::dynamo::DynamoStore::new(client, table.clone()));
    let svc = ChatService::new(
        Ports {
            store: store.clone(),
            queue: Arc::new(chat_testkit::memory::MemoryQueue::default()),
            push: Arc::new(chat_testkit::memory::RecordingPush::default()),
            clock: Arc::new(chat_core::ports::SystemClock),
            limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
        },
        chat_testkit::config(),
    )
    .with_attachments(
        store,
        Arc::new(chat_aws::s3::S3Files::new(s3.clone(), bucket.clone())),
    );
    let http = reqwest::Client::new();
    let mut files = Vec::new();
    for (i, sub) in ["files-without-bucket", "files-with-bucket"]
        .into_iter()
        .enumerate()
    {
        let c = svc
            .create_session(&format!("192.0.2.{}", 50 + i), Some(&jwt(sub)))
            .await
            .unwrap();
        let (sid, bearer) = (c.session_id.to_string(), format!("Bearer {}", c.token));
        let body = serde_json::json!({"name": "a.txt", "contentType": "text/plain", "size": 5});
        let r = chat_core::api::create_attachment(
            &svc,
            &sid,
            Some(&bearer),
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let ticket: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let mut put = http
            .put(ticket["uploadUrl"].as_str().unwrap())
            .body("hello");
        for (k, v) in ticket["uploadHeaders"].as_object().unwrap() {
            put = put.header(k, v.as_str().unwrap());
        }
        assert!(put.send().await.unwrap().status().is_success(), "uploaded");
        let id = ticket["attachmentId"].as_str().unwrap().to_string();
        let body = serde_json::json!({"content": "", "attachments": [id]});
        let r =
            chat_core::api::post_message(&svc, &sid, Some(&bearer), body.to_string().as_bytes())
                .await;
        assert_eq!(r.status, 202, "{}", r.body);
        files.push(id);
    }
    let has = |keys: &[String], id: &str| keys.iter().any(|k| k.contains(id));
    assert!(has(&keys(&s3, &bucket).await, &files[0]) && has(&keys(&s3, &bucket).await, &files[1]));

    let (code, _, err) =
        chat_admin(&["erase", "--user", "files-without-bucket", "--table", &table]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        has(&keys(&s3, &bucket).await, &files[0]),
        "no bucket given: the file stays"
    );

    let (code, _, err) = chat_admin_with_bucket(
        &["erase", "--user", "files-with-bucket", "--table", &table],
        &bucket,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let left = keys(&s3, &bucket).await;
    assert!(
        !has(&left, &files[1]),
        "the erased conversation's file is deleted: {left:?}"
    );
}
