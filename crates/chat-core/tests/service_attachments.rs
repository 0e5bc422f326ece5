//! Attachments on the in-memory ports: asking for an upload, sending a message that carries
//! files, download URLs minted for history, pushes and n8n, every 4xx of the contract with
//! nothing half-stored, repeats, agents, and the purge of files no message took.

mod service_support;

use chat_core::attachments::AttachmentStore;
use chat_core::model::AttachmentId;
use service_support::*;

async fn ask(h: &H, s: &S, name: &str, content_type: &str, size: u64) -> Response {
    let body = json!({"name": name, "contentType": content_type, "size": size}).to_string();
    api::create_attachment(&h.svc, &s.path(), Some(&s.bearer()), body.as_bytes()).await
}

/// Asks for an attachment and uploads `bytes` as `content_type`; returns its id.
async fn uploaded(h: &H, s: &S, name: &str, content_type: &str, bytes: &[u8]) -> String {
    let r = ask(h, s, name, content_type, bytes.len() as u64).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = json_of(&r)["attachmentId"].as_str().unwrap().to_string();
    h.files
        .upload(id.parse::<AttachmentId>().unwrap(), bytes, content_type);
    id
}

async fn post(h: &H, s: &S, body: Value) -> Response {
    api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        body.to_string().as_bytes(),
    )
    .await
}

async fn record(h: &H, id: &str) -> chat_core::attachments::Attachment {
    h.attachments
        .get_attachment(&id.parse().unwrap())
        .await
        .unwrap()
        .expect("record")
}

#[tokio::test]
async fn ask_upload_send_read_and_dispatch_carry_the_file() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let r = ask(&h, &s, "plan.pdf", "application/pdf", 5).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ticket = json_of(&r);
    let id = ticket["attachmentId"].as_str().unwrap().to_string();
    assert_eq!(
        ticket["uploadHeaders"],
        json!({"Content-Type": "application/pdf"})
    );
    assert!(ticket["uploadUrl"].as_str().unwrap().contains(&id));
    assert_eq!(ticket["expiresAt"], rfc3339(T0 + 15 * 60_000));
    h.files
        .upload(id.parse().unwrap(), b"%PDF-", "application/pdf");

    let r = post(&h, &s, json!({"content": "", "attachments": [id]})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let sent = json_of(&r)["message"].clone();
    let url = format!("memory://files/{}/{id}?expires={}", s.id, T0 + 3_600_000);
    assert_eq!(
        sent["attachments"],
        json!([{"id": id, "name": "plan.pdf", "contentType": "application/pdf", "size": 5, "url": url}])
    );
    assert_eq!(sent["content"], "");
    assert!(h.files.kept(&id.parse().unwrap()), "the bytes are kept");
    assert!(record(&h, &id).await.message_id.is_some(), "claimed");

    // The push carries the URL; the store does not.
    let pushed = h.frames("c1");
    let m = pushed.iter().find(|f| f["event"] == "message").unwrap();
    assert_eq!(m["message"]["attachments"][0]["url"], url);
    let stored = h.all_messages(&s.id).await;
    assert_eq!(stored[0].attachments.len(), 1);
    assert_eq!(stored[0].attachments[0].url, None, "URLs are never stored");

    // Read later: a fresh URL.
    h.clock.advance(600_000);
    let later = format!(
        "memory://files/{}/{id}?expires={}",
        s.id,
        T0 + 600_000 + 3_600_000
    );
    let r = api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), Some("after=0")).await;
    assert_eq!(json_of(&r)["messages"][0]["attachments"][0]["url"], later);
    let r = api::get_session(&h.svc, &s.path(), Some(&s.bearer())).await;
    assert_eq!(json_of(&r)["messages"][0]["attachments"][0]["url"], later);

    // n8n gets the message with its attachments, and the list at the top.
    let job = h.queue.drain()[0];
    h.dispatcher.run(job, 1).await.unwrap();
    let sent = h.agent.requests();
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["attachments"][0]["url"], later);
    assert_eq!(body["attachments"][0]["contentType"], "application/pdf");
    assert_eq!(body["message"]["attachments"], body["attachments"]);
    assert_eq!(body["message"]["id"], sent_id(&stored[0]));
}

fn sent_id(m: &Message) -> String {
    m.id.to_string()
}

#[tokio::test]
async fn a_message_without_files_sends_n8n_no_attachments_field() {
    let h = H::new();
    let s = h.session().await;
    let (_, job) = h.user_message(&s, "hi").await;
    h.dispatcher.run(job, 1).await.unwrap();
    let body: Value = serde_json::from_slice(&h.agent.requests()[0].body).unwrap();
    assert!(body.get("attachments").is_none(), "{body}");
    assert!(body["message"].get("attachments").is_none(), "{body}");
}

#[tokio::test]
async fn bad_declarations_are_refused_and_store_nothing() {
    let h = H::new();
    let s = h.session().await;
    for (name, t, size, status, needle) in [
        ("", "image/png", 1, 400, "name"),
        ("a/b.png", "image/png", 1, 400, "path separators"),
        ("a\u{7}.png", "image/png", 1, 400, "control"),
        ("x.exe", "application/x-msdownload", 1, 400, "contentType"),
        ("a.png", "image/png", 0, 400, "size"),
        ("a.png", "image/png", 10 * 1024 * 1024 + 1, 413, "larger"),
    ] {
        let r = ask(&h, &s, name, t, size).await;
        assert_eq!(r.status, status, "{name} {t} {size}: {}", r.body);
        assert!(r.body.contains(needle), "{}", r.body);
    }
    let long = "n".repeat(201);
    assert_eq!(ask(&h, &s, &long, "image/png", 1).await.status, 400);
    let r = api::create_attachment(&h.svc, &s.path(), Some(&s.bearer()), b"{\"name\":1}").await;
    assert_eq!((r.status, code_of(&r)), (400, "invalid_input".into()));
    let other = h.session().await;
    let r = api::create_attachment(
        &h.svc,
        &s.path(),
        Some(&other.bearer()),
        br#"{"name":"a.png","contentType":"image/png","size":1}"#,
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        h.attachments.is_empty(),
        "a refused declaration stored a record"
    );
    // The limit is the configured one.
    let mut config = chat_testkit::config();
    config.attachments.max_bytes = 100;
    config.attachments.types = vec!["text/csv".into()];
    let h = H::with_config(config);
    let s = h.session().await;
    assert_eq!(ask(&h, &s, "a.csv", "text/csv", 101).await.status, 413);
    assert_eq!(ask(&h, &s, "a.png", "image/png", 1).await.status, 400);
    assert_eq!(ask(&h, &s, "a.csv", "TEXT/CSV", 100).await.status, 201);
}

/// Sends `attachments` and checks the 400 names `needle`, and that nothing was stored: no
/// message, the files of `ids` unclaimed.
async fn refused(h: &H, s: &S, attachments: Value, needle: &str, ids: &[&str]) {
    let before = h.all_messages(&s.id).await.len();
    let r = post(
        h,
        s,
        json!({"content": "see file", "attachments": attachments}),
    )
    .await;
    assert_eq!(r.status, 400, "{needle}: {}", r.body);
    assert_eq!(code_of(&r), "invalid_input");
    assert!(r.body.contains(needle), "expected {needle:?} in {}", r.body);
    assert_eq!(
        h.all_messages(&s.id).await.len(),
        before,
        "a message was stored"
    );
    for id in ids {
        let claimed = h
            .attachments
            .get_attachment(&id.parse().unwrap())
            .await
            .unwrap()
            .and_then(|a| a.message_id);
        let owner = h
            .all_messages(&s.id)
            .await
            .iter()
            .find(|m| m.attachments.iter().any(|a| a.id.to_string() == *id))
            .map(|m| m.id);
        assert_eq!(claimed, owner, "{id} claimed by a message not stored");
    }
}

#[tokio::test]
async fn every_bad_attachment_of_a_message_is_a_400_and_nothing_is_half_stored() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    let good = uploaded(&h, &s, "a.png", "image/png", b"png!").await;
    let theirs = uploaded(&h, &other, "b.png", "image/png", b"png!").await;
    // Asked for but never uploaded.
    let r = ask(&h, &s, "c.png", "image/png", 4).await;
    let missing = json_of(&r)["attachmentId"].as_str().unwrap().to_string();
    // Uploaded with another size, or another type, than declared.
    let r = ask(&h, &s, "d.png", "image/png", 4).await;
    let short = json_of(&r)["attachmentId"].as_str().unwrap().to_string();
    h.files.upload(short.parse().unwrap(), b"png", "image/png");
    let r = ask(&h, &s, "e.png", "image/png", 4).await;
    let retyped = json_of(&r)["attachmentId"].as_str().unwrap().to_string();
    h.files
        .upload(retyped.parse().unwrap(), b"png!", "text/html");

    refused(
        &h,
        &s,
        json!([good, theirs]),
        "is not an attachment of this session",
        &[&good, &theirs],
    )
    .await;
    refused(
        &h,
        &s,
        json!([good, missing]),
        "has not been uploaded",
        &[&good],
    )
    .await;
    refused(
        &h,
        &s,
        json!([good, short]),
        "not the declared size and type",
        &[&good],
    )
    .await;
    refused(
        &h,
        &s,
        json!([good, retyped]),
        "not the declared size and type",
        &[&good],
    )
    .await;
    refused(
        &h,
        &s,
        json!([good, AttachmentId::new().to_string()]),
        "is not an attachment of this session",
        &[&good],
    )
    .await;
    refused(
        &h,
        &s,
        json!([good, "../../etc/passwd"]),
        "is not an attachment id",
        &[&good],
    )
    .await;
    refused(&h, &s, json!([good, good]), "named twice", &[&good]).await;
    let six: Vec<String> = (0..6).map(|_| AttachmentId::new().to_string()).collect();
    refused(&h, &s, json!(six), "at most 5 attachments", &[]).await;
    // Content may be empty only with attachments.
    let r = post(&h, &s, json!({"content": "", "attachments": []})).await;
    assert_eq!((r.status, code_of(&r)), (400, "content_empty".into()));

    // The good one still works, once; a second message reusing it is refused.
    let r = post(&h, &s, json!({"content": "", "attachments": [good]})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    refused(
        &h,
        &s,
        json!([good]),
        "already used by another message",
        &[&good],
    )
    .await;

    // An hour after it was asked for, an unsent attachment is refused.
    let late = uploaded(&h, &s, "f.png", "image/png", b"png!").await;
    h.clock.advance(3_600_000);
    refused(&h, &s, json!([late]), "has expired", &[&late]).await;
    assert!(
        h.queue.drain().len() == 1,
        "only the one good message was queued"
    );
}

#[tokio::test]
async fn a_repeat_returns_the_same_message_and_other_files_are_a_conflict() {
    let h = H::new();
    let s = h.session().await;
    let a = uploaded(&h, &s, "a.txt", "text/plain", b"hello").await;
    let b = uploaded(&h, &s, "b.txt", "text/plain", b"world").await;
    let body = json!({"content": "two", "clientMessageId": "c-1", "attachments": [a]});
    let first = json_of(&post(&h, &s, body.clone()).await)["message"].clone();
    let again = post(&h, &s, body).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(json_of(&again)["message"], first);
    let other = post(
        &h,
        &s,
        json!({"content": "two", "clientMessageId": "c-1", "attachments": [b]}),
    )
    .await;
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(record(&h, &b).await.message_id, None, "b stays free");
    assert_eq!(h.all_messages(&s.id).await.len(), 1);
}

#[tokio::test]
async fn a_message_to_a_closed_session_releases_its_files() {
    let h = H::new();
    let s = h.session().await;
    let a = uploaded(&h, &s, "a.txt", "text/plain", b"hello").await;
    let closed = chat_core::model::ModeState::closed();
    h.store
        .set_mode(&s.id, &Default::default(), &closed, h.now())
        .await
        .unwrap()
        .unwrap();
    let r = post(&h, &s, json!({"content": "x", "attachments": [a]})).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(record(&h, &a).await.message_id, None, "released");
    assert!(
        h.all_messages(&s.id)
            .await
            .iter()
            .all(|m| m.attachments.is_empty())
    );
}

#[tokio::test]
async fn a_websocket_send_carries_files() {
    let h = H::new();
    let s = h.session().await;
    let c = h.connect(&s, "c1").await;
    let a = uploaded(&h, &s, "a.gif", "image/gif", b"GIF89a").await;
    let frame = json!({"action": "sendMessage", "content": "", "clientMessageId": "w1", "attachments": [a]});
    h.svc.handle_frame(&c, frame.to_string().as_bytes()).await;
    let frames = h.frames("c1");
    assert_eq!(frames[0]["event"], "ack", "{frames:?}");
    assert_eq!(frames[1]["message"]["attachments"][0]["name"], "a.gif");
    h.push.take();
    // A bad one answers an error frame naming it, and stores nothing.
    let frame = json!({"action": "sendMessage", "content": "", "clientMessageId": "w2", "attachments": [a]});
    h.svc.handle_frame(&c, frame.to_string().as_bytes()).await;
    let frames = h.frames("c1");
    assert_eq!(frames[0]["event"], "error", "{frames:?}");
    assert_eq!(frames[0]["code"], "invalid_input");
    assert_eq!(h.all_messages(&s.id).await.len(), 1);
}

fn agent_bearer(sub: &str, name: &str) -> String {
    let claims = json!({"sub": sub, "exp": T0 / 1000 + 3600, "role": "agent", "name": name});
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(APP_SECRET),
    )
    .unwrap();
    format!("Bearer {jwt}")
}

#[tokio::test]
async fn agents_attach_files_to_sessions_they_hold() {
    let h = H::new();
    let s = h.session().await;
    let alex = agent_bearer("a-1", "Alex");
    let body = br#"{"name":"guide.pdf","contentType":"application/pdf","size":3}"#;
    let r = api::agent_create_attachment(&h.svc, &s.path(), Some(&alex), body).await;
    assert_eq!(r.status, 409, "not held: {}", r.body);
    let r = api::agent_create_attachment(&h.svc, &s.path(), None, body).await;
    assert_eq!(r.status, 401);
    assert!(h.attachments.is_empty());
    let r = api::agent_change(&h.svc, &s.path(), api::AgentChange::Claim, Some(&alex), b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api::agent_create_attachment(&h.svc, &s.path(), Some(&alex), body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = json_of(&r)["attachmentId"].as_str().unwrap().to_string();
    h.files
        .upload(id.parse().unwrap(), b"%PD", "application/pdf");
    let send = json!({"content": "here", "attachments": [id]}).to_string();
    let r = api::agent_post_message(&h.svc, &s.path(), Some(&alex), send.as_bytes()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let m = json_of(&r)["message"].clone();
    assert_eq!(m["role"], "agent");
    assert_eq!(m["attachments"][0]["name"], "guide.pdf");
    assert!(m["attachments"][0]["url"].as_str().is_some());
    // The user's history shows it with a URL.
    let r = api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), Some("after=0")).await;
    let msgs = json_of(&r)["messages"].clone();
    let last = msgs.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["attachments"][0]["id"], id);
    // Reused by another agent message: refused.
    let send = json!({"content": "again", "attachments": [id]}).to_string();
    let r = api::agent_post_message(&h.svc, &s.path(), Some(&alex), send.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn the_purge_deletes_files_no_message_took_within_the_hour() {
    let h = H::new();
    let s = h.session().await;
    let sent = uploaded(&h, &s, "a.txt", "text/plain", b"a").await;
    let unsent = uploaded(&h, &s, "b.txt", "text/plain", b"b").await;
    let r = post(&h, &s, json!({"content": "x", "attachments": [sent]})).await;
    assert_eq!(r.status, 202);
    assert_eq!(
        h.svc.purge_attachments().await.unwrap(),
        0,
        "nothing is an hour old"
    );
    h.clock.advance(3_600_000);
    assert_eq!(h.svc.purge_attachments().await.unwrap(), 1);
    assert_eq!(
        h.files.deleted(),
        vec![unsent.parse::<AttachmentId>().unwrap()]
    );
    assert!(
        h.attachments
            .get_attachment(&unsent.parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.files.bytes(&sent.parse().unwrap()).is_some(),
        "the sent file stays"
    );
    assert_eq!(h.svc.purge_attachments().await.unwrap(), 0);
}

#[tokio::test]
async fn a_sent_file_is_kept_as_long_as_its_conversation_then_erased_with_it() {
    const DAY: Millis = 24 * 3_600_000;
    let h = H::new();
    let s = h.session().await;
    let sent = uploaded(&h, &s, "a.txt", "text/plain", b"a").await;
    let r = post(&h, &s, json!({"content": "x", "attachments": [sent]})).await;
    assert_eq!(r.status, 202);
    let first_expiry = record(&h, &sent).await.expires_at;

    // Activity near the end of the retention moves the conversation's expiry on...
    h.clock.advance(first_expiry - h.now() - DAY);
    let r = h
        .webhook(json!({"sessionId": s.path(), "content": "still here"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let kept_until = h
        .store
        .get_session(&s.id, h.now())
        .await
        .unwrap()
        .unwrap()
        .expires_at;
    assert!(kept_until > first_expiry);

    // ...so past the file's first expiry the purge keeps it, as long as the conversation.
    h.clock.advance(2 * DAY);
    assert_eq!(h.svc.purge_attachments().await.unwrap(), 0);
    assert!(h.files.bytes(&sent.parse().unwrap()).is_some(), "kept");
    assert_eq!(record(&h, &sent).await.expires_at, kept_until);
    assert!(h.files.deleted().is_empty());

    // Erasing the conversation deletes the file and its record.
    assert!(h.svc.erase(&s.id).await.unwrap());
    assert_eq!(
        h.files.deleted(),
        vec![sent.parse::<AttachmentId>().unwrap()]
    );
    assert!(
        h.attachments
            .get_attachment(&sent.parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn deleting_a_message_deletes_its_files_and_an_edit_keeps_them_with_fresh_urls() {
    let h = H::new();
    let s = h.session().await;
    let keep = uploaded(&h, &s, "keep.txt", "text/plain", b"k").await;
    let gone = uploaded(&h, &s, "gone.png", "image/png", b"png").await;
    let r = post(
        &h,
        &s,
        json!({"content": "two files", "attachments": [keep]}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let edited_id = json_of(&r)["message"]["id"].as_str().unwrap().to_string();
    let r = post(&h, &s, json!({"content": "", "attachments": [gone]})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let deleted_id = json_of(&r)["message"]["id"].as_str().unwrap().to_string();

    let path = |id: &str| (s.path(), id.to_string());
    let (sid, mid) = path(&edited_id);
    let r = api::change_message(
        &h.svc,
        &sid,
        &mid,
        true,
        Some(&s.bearer()),
        br#"{"content":"one file"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = json_of(&r)["message"].clone();
    assert_eq!(m["attachments"][0]["id"], keep, "an edit keeps the files");
    assert!(
        m["attachments"][0]["url"].is_string(),
        "with a download URL: {m}"
    );

    let (sid, mid) = path(&deleted_id);
    let r = api::change_message(&h.svc, &sid, &mid, false, Some(&s.bearer()), b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = json_of(&r)["message"].clone();
    assert_eq!(m["deleted"], true);
    assert!(
        m.get("attachments").is_none(),
        "the tombstone carries none: {m}"
    );
    assert_eq!(
        h.files.deleted(),
        vec![gone.parse::<AttachmentId>().unwrap()]
    );
    assert!(
        h.attachments
            .get_attachment(&gone.parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.files.bytes(&keep.parse().unwrap()).is_some(),
        "the other file stays"
    );
}
