//! Attachments on the real binary: ask, upload (streamed to disk beside the database), send,
//! read, download, and n8n's dispatch with a URL it can GET; every refused upload leaves no
//! file behind.

mod common;

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The largest file the default limit allows: 10 MiB.
const MAX: usize = 10 * 1024 * 1024;

async fn ask(srv: &Server, s: &Session, name: &str, t: &str, size: usize) -> (u16, Value) {
    let body = json!({"name": name, "contentType": t, "size": size}).to_string();
    let (status, v, _) = srv
        .request(
            "POST",
            &format!("/sessions/{}/attachments", s.id),
            Some(&s.token),
            Some(body.into_bytes()),
            &[],
        )
        .await;
    (status, v)
}

async fn put(srv: &Server, url: &str, content_type: &str, body: reqwest::Body) -> (u16, Value) {
    let res = srv
        .http
        .put(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload reaches the server");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Files in the server's `files/` folder (finished and partial).
fn files_on_disk(srv: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(srv.data_dir.join("files"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn ten_megabytes_go_up_come_back_and_reach_n8n() {
    let (n8n, n8n_url) = fake_n8n(0).await;
    let (srv, _dir) = Server::start(&[("CHAT_N8N_WEBHOOK_URL", &n8n_url)]).await;
    let s = srv.create_session().await;

    let (status, ticket) = ask(&srv, &s, "screen shot.png", "image/png", MAX).await;
    assert_eq!(status, 201, "{ticket}");
    let id = ticket["attachmentId"].as_str().unwrap().to_string();
    let upload_url = ticket["uploadUrl"].as_str().unwrap();
    assert!(upload_url.starts_with(&format!("{}/uploads/{id}?token=", srv.url)));
    assert_eq!(
        ticket["uploadHeaders"],
        json!({"Content-Type": "image/png"})
    );
    let bytes = pattern(MAX);
    let (status, v) = put(&srv, upload_url, "image/png", bytes.clone().into()).await;
    assert_eq!(status, 204, "{v}");
    assert_eq!(files_on_disk(&srv), vec![id.clone()]);
    let on_disk = std::fs::read(srv.data_dir.join("files").join(&id)).unwrap();
    assert!(on_disk == bytes, "the file on disk differs from the upload");

    let (status, v, _) = srv
        .request(
            "POST",
            &format!("/sessions/{}/messages", s.id),
            Some(&s.token),
            Some(
                json!({"content": "", "attachments": [id]})
                    .to_string()
                    .into_bytes(),
            ),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let sent = &v["message"]["attachments"][0];
    assert_eq!(sent["size"], MAX);
    assert_eq!(sent["name"], "screen shot.png");

    // Read back: the history's URL serves the same bytes, as an inline image.
    let history = srv.history(&s, "after=0").await;
    let url = history[0]["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        url.starts_with(&format!("{}/files/{id}?token=", srv.url)),
        "{url}"
    );
    let res = srv.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-length"], MAX.to_string());
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline; filename=\"screen shot.png\"")
    );
    let got = res.bytes().await.unwrap();
    assert!(got.as_ref() == bytes.as_slice(), "downloaded bytes differ");

    // n8n received the message with a URL it can fetch.
    let deadline = tokio::time::Instant::now() + WAIT;
    let dispatch = loop {
        if let Some(d) = n8n.received.lock().unwrap().first().cloned() {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "n8n got nothing");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(dispatch["attachments"][0]["id"], id);
    assert_eq!(dispatch["message"]["attachments"], dispatch["attachments"]);
    let n8n_url = dispatch["attachments"][0]["url"].as_str().unwrap();
    let res = reqwest::get(n8n_url).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().len(), MAX);

    // A URL with a bad token, or one for another file, serves nothing.
    let bad = url.replace("token=", "token=1");
    assert_eq!(srv.http.get(&bad).send().await.unwrap().status(), 401);
    let (_, other) = ask(&srv, &s, "b.pdf", "application/pdf", 3).await;
    let other_id = other["attachmentId"].as_str().unwrap();
    let crossed = url.replace(&id, other_id);
    assert_eq!(srv.http.get(&crossed).send().await.unwrap().status(), 401);
}

/// An upload token signed as the server signs them (tests know the session secret).
fn token(id: &str, exp_ms: i64) -> String {
    let mut k = Hmac::<Sha256>::new_from_slice(SESSION_SECRET.as_bytes()).unwrap();
    k.update(b"chat-local attachment tokens");
    let key = k.finalize().into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("up:{id}:{exp_ms}").as_bytes());
    format!("{exp_ms}.{}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn uploads_other_than_declared_are_refused_and_leave_no_file() {
    let (srv, _dir) = Server::start(&[]).await;
    let s = srv.create_session().await;
    let (_, ticket) = ask(&srv, &s, "notes.txt", "text/plain", 1000).await;
    let id = ticket["attachmentId"].as_str().unwrap().to_string();
    let url = ticket["uploadUrl"].as_str().unwrap().to_string();

    let cases: Vec<(&str, &str, reqwest::Body, u16)> = vec![
        ("another type", "text/html", pattern(1000).into(), 400),
        ("more bytes", "text/plain", pattern(1001).into(), 413),
        ("fewer bytes", "text/plain", pattern(999).into(), 400),
        (
            "more bytes, streamed without a length",
            "text/plain",
            reqwest::Body::wrap_stream(futures_util::stream::iter(
                (0..3).map(|_| Ok::<_, std::io::Error>(pattern(400))),
            )),
            413,
        ),
        (
            "fewer bytes, streamed without a length",
            "text/plain",
            reqwest::Body::wrap_stream(futures_util::stream::iter(
                (0..2).map(|_| Ok::<_, std::io::Error>(pattern(400))),
            )),
            400,
        ),
    ];
    for (what, t, body, status) in cases {
        let (got, v) = put(&srv, &url, t, body).await;
        assert_eq!(got, status, "{what}: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
        assert!(files_on_disk(&srv).is_empty(), "{what} left a file");
    }
    // A token that expired, a forged one, none: 401.
    let expired = format!("{}/uploads/{id}?token={}", srv.url, token(&id, 1_000));
    let (got, v) = put(&srv, &expired, "text/plain", pattern(1000).into()).await;
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (401, Some("token_expired"))
    );
    let forged = url.replace("token=", "token=9");
    assert_eq!(
        put(&srv, &forged, "text/plain", pattern(1000).into())
            .await
            .0,
        401
    );
    let bare = format!("{}/uploads/{id}", srv.url);
    assert_eq!(
        put(&srv, &bare, "text/plain", pattern(1000).into()).await.0,
        401
    );
    assert!(files_on_disk(&srv).is_empty());

    // A message naming it before it is uploaded is refused and stores nothing.
    let send = json!({"content": "see", "attachments": [id]}).to_string();
    let path = format!("/sessions/{}/messages", s.id);
    let (status, v, _) = srv
        .request(
            "POST",
            &path,
            Some(&s.token),
            Some(send.clone().into_bytes()),
            &[],
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(srv.history(&s, "after=0").await.is_empty());

    // The declared bytes go up once; again is 409, also after the file was sent.
    assert_eq!(
        put(
            &srv,
            &url,
            "text/plain; charset=utf-8",
            pattern(1000).into()
        )
        .await
        .0,
        204
    );
    assert_eq!(
        put(&srv, &url, "text/plain", pattern(1000).into()).await.0,
        409
    );
    let (status, v, _) = srv
        .request("POST", &path, Some(&s.token), Some(send.into_bytes()), &[])
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        put(&srv, &url, "text/plain", pattern(1000).into()).await.0,
        409
    );
    assert_eq!(files_on_disk(&srv), vec![id.clone()]);

    // A text file downloads as an attachment.
    let history = srv.history(&s, "after=0").await;
    let dl = history[0]["attachments"][0]["url"].as_str().unwrap();
    let res = srv.http.get(dl).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
}
