//! How many AWS requests one chat round makes (user send over the WebSocket → dispatch to
//! n8n → n8n's reply stored and pushed), counted at the emulator's recorder, by operation,
//! with 1 and with 10 connections in the session. Printed with `--nocapture`; the test holds
//! the product to the exact counts (a change must be deliberate), no Scan ever, and each extra
//! connection costing exactly one `PostToConnection` per frame fanned out.
//!
//! DynamoDB capacity units are not reported by the emulator (it answers constants), so they
//! are computed from the recorded requests by DynamoDB's published rules: a write costs one
//! unit per started KB of the item (each item of a transaction twice); a read one unit per
//! started 4 KB, half for an eventually consistent one. Updated items and query results are
//! taken as under 1 KB and 4 KB, true of this round's short messages.
//!
//! The same, exactly, for one agent message and for one attachment's round (ask, upload, send,
//! read, download), step by step.
//!
//! `cargo test -p chat-aws --test aws_requests -- --nocapture`; with `CHAT_BENCH_OUT` set the
//! figures also go to the table of `tests/bench`.

use chat_testkit::aws::emulator as common;
use chat_testkit::bench as bench_report;
mod world;

use serde_json::json;
use std::collections::BTreeMap;

/// Bytes of an attribute value by DynamoDB's size rules (numbers approximated by their text).
fn value_size(v: &serde_json::Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" | "N" | "B" => inner.as_str().map_or(0, str::len),
        "BOOL" | "NULL" => 1,
        "M" => {
            3 + inner.as_object().map_or(0, |m| {
                m.iter().map(|(k, v)| k.len() + value_size(v) + 1).sum()
            })
        }
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |l| l.iter().map(|v| value_size(v) + 1).sum())
        }
        _ => inner.as_array().map_or(0, |l| {
            l.iter().map(|x| x.as_str().map_or(0, str::len)).sum()
        }),
    }
}

fn item_size(item: &serde_json::Value) -> usize {
    item.as_object()
        .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

/// (read units, write units) one recorded DynamoDB request consumes.
fn capacity(entry: &serde_json::Value) -> (f64, f64) {
    let op = common::operation(entry);
    if !op.starts_with("DynamoDB.") {
        return (0.0, 0.0);
    }
    let raw = entry["body"].as_str().unwrap_or("{}");
    let raw = if entry["body_encoded"] == json!(true) {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("the recorder's base64")
    } else {
        raw.as_bytes().to_vec()
    };
    let body: serde_json::Value = serde_json::from_slice(&raw).expect("a DynamoDB JSON body");
    let kb = |bytes: usize| bytes.div_ceil(1024).max(1) as f64;
    let read = |b: &serde_json::Value| {
        if b["ConsistentRead"] == json!(true) {
            1.0
        } else {
            0.5
        }
    };
    match op.as_str() {
        "DynamoDB.PutItem" => (0.0, kb(item_size(&body["Item"]))),
        "DynamoDB.UpdateItem" | "DynamoDB.DeleteItem" => (0.0, 1.0),
        "DynamoDB.TransactWriteItems" => {
            let items = body["TransactItems"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let w = items
                .iter()
                .map(|t| 2.0 * t.get("Put").map_or(1.0, |p| kb(item_size(&p["Item"]))))
                .sum();
            (0.0, w)
        }
        "DynamoDB.GetItem" | "DynamoDB.Query" => (read(&body), 0.0),
        "DynamoDB.TransactGetItems" => (
            2.0 * body["TransactItems"].as_array().map_or(0, Vec::len) as f64,
            0.0,
        ),
        "DynamoDB.BatchGetItem" => {
            let keys = body["RequestItems"].as_object().map_or(0, |t| {
                t.values()
                    .map(|r| r["Keys"].as_array().map_or(0, Vec::len))
                    .sum::<usize>()
            });
            (0.5 * keys as f64, 0.0)
        }
        _ => (0.0, 0.0),
    }
}

/// One callback round; `v`, the frame version the connections open with (`Some("2")`: merged
/// frames, as `ChatClient` asks; `None`: an older client).
async fn round(connections: usize, v: Option<&str>) -> BTreeMap<String, usize> {
    round_with(connections, None, v).await.0
}

/// One round; with `stream`, n8n answers the dispatch by streaming these tokens (20 ms apart)
/// instead of calling back. Also returns the `delta` frames the sender's connection got.
async fn round_with(
    connections: usize,
    stream: Option<&[&str]>,
    v: Option<&str>,
) -> (BTreeMap<String, usize>, usize) {
    let w = world::world().await;
    if let Some(tokens) = stream {
        *w.n8n.answer.lock().unwrap() = chat_testkit::fake_n8n::Answer::Stream {
            lines: chat_testkit::fake_n8n::n8n_stream(tokens),
            gap_ms: 20,
            hang: false,
        };
    }
    let (sid, token) = w.session().await;
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(w.connect_v(&sid, &token, v).await);
    }
    let start = common::recorded().await.len();
    w.ws_frame(
        &conns[0],
        json!({"action":"sendMessage","content":"count me","clientMessageId":"n-1"}),
    )
    .await;
    let batch = w.receive_jobs(1).await;
    let job: serde_json::Value =
        serde_json::from_str(batch.records[0].body.as_deref().unwrap()).unwrap();
    let out = chat_aws::handlers::dispatch(&w.app, batch).await;
    assert!(out.batch_item_failures.is_empty());
    if stream.is_none() {
        let reply = json!({"sessionId": sid, "replyTo": job["messageId"], "content": "counted", "eventId": "e-1"});
        let (status, _) = w.http(w.signed_reply(&reply)).await;
        assert_eq!(status, 200);
    }
    let deltas = common::pushed_to(&conns[0])
        .await
        .iter()
        .filter(|f| f["event"] == "delta")
        .count();
    let mut counts = BTreeMap::new();
    let (mut rru, mut wru) = (0.0, 0.0);
    for e in &common::recorded().await[start..] {
        *counts.entry(common::operation(e)).or_insert(0) += 1;
        let (r, w) = capacity(e);
        rru += r;
        wru += w;
    }
    // Kept in tenths of a unit, beside the request counts.
    counts.insert(
        "~ DynamoDB read units ×10".into(),
        (rru * 10.0f64).round() as usize,
    );
    counts.insert(
        "~ DynamoDB write units ×10".into(),
        (wru * 10.0f64).round() as usize,
    );
    // The test's own receive of the job (the Lambda service does that for a real function).
    if let Some(n) = counts.get_mut("SQS.ReceiveMessage") {
        *n -= 1;
        if *n == 0 {
            counts.remove("SQS.ReceiveMessage");
        }
    }
    (counts, deltas)
}

#[tokio::test]
async fn requests_per_chat_round() {
    // As ChatClient connects: merged frames.
    let one = round(1, Some("2")).await;
    let ten = round(10, Some("2")).await;
    let total = |c: &BTreeMap<String, usize>| {
        c.iter()
            .filter(|(k, _)| !k.starts_with('~'))
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    println!("AWS requests per chat round (send → dispatch → reply pushed), by operation:");
    println!(
        "{:<32} {:>14} {:>15}",
        "operation", "1 connection", "10 connections"
    );
    let keys: std::collections::BTreeSet<_> = one.keys().chain(ten.keys()).collect();
    for k in keys {
        println!(
            "{:<32} {:>14} {:>15}",
            k,
            one.get(k).unwrap_or(&0),
            ten.get(k).unwrap_or(&0)
        );
    }
    println!("{:<32} {:>14} {:>15}", "total", total(&one), total(&ten));
    let section = "AWS requests per chat round (send → dispatch → reply pushed)";
    for k in one.keys() {
        let (a, b) = (one[k] as f64, *ten.get(k).unwrap_or(&0) as f64);
        match k.strip_prefix("~ ") {
            Some(units) => {
                let units = units.trim_end_matches(" ×10");
                let note = format!("{:.1} with 10 connections", b / 10.0);
                bench_report::report(section, units, a / 10.0, None, "per round", &note);
            }
            None => {
                let note = format!("{b} with 10 connections");
                bench_report::report(section, k, a, None, "requests", &note);
            }
        }
    }
    bench_report::report(
        section,
        "total AWS requests",
        total(&one) as f64,
        None,
        "requests",
        &format!("{} with 10 connections", total(&ten)),
    );
    assert!(
        !one.keys().chain(ten.keys()).any(|k| k.contains("Scan")),
        "no Scan, ever"
    );
    let pushes = |c: &BTreeMap<String, usize>| *c.get("PostToConnection").unwrap_or(&0);
    // Frames fanned out to every connection in a round; the sender's ack goes to one.
    let fanned = (pushes(&ten) - pushes(&one)) / 9;
    assert_eq!(
        pushes(&ten) - pushes(&one),
        fanned * 9,
        "every extra connection costs the same pushes"
    );
    assert_eq!(
        total(&ten) - total(&one),
        pushes(&ten) - pushes(&one),
        "extra connections cost only pushes"
    );
    // The counts themselves, exactly: a change of the calls per round must show here (and
    // in README → Performance) on purpose, never by accident.
    let expected = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    };
    let calls = |c: &BTreeMap<String, usize>| -> BTreeMap<String, usize> {
        c.iter()
            .filter(|(k, _)| !k.starts_with('~'))
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    };
    assert_eq!(
        calls(&one),
        expected(&[
            // The connection and the session (read by each append); no idempotency lookup
            // before a first write (a repeat is answered by the append's condition), and no
            // webhook read of the session (its append reads it).
            ("DynamoDB.GetItem", 4),
            // Connections listed by the send, dispatch and the webhook; dispatch's history
            // query brings the user message too (its job names its seq: for this first
            // message of the session that is the one Query a read by id was); the replyTo.
            ("DynamoDB.Query", 5),
            ("DynamoDB.TransactWriteItems", 2),
            // Only the statuses: the rate limits are taken in the appends' own writes.
            ("DynamoDB.UpdateItem", 2),
            // The ack carrying the message; dispatched with typing; the reply with answered.
            ("PostToConnection", 3),
            ("SQS.SendMessageBatch", 1),
        ]),
        "AWS requests of one round with one connection"
    );
    assert_eq!(total(&one), 17);
    assert_eq!(
        pushes(&ten),
        30,
        "three frames fanned out to each of nine more connections"
    );
    // Connections of older clients (no `v=2`) get today's six frames per round (five fanned
    // out), and the round's other requests are the same.
    let old_one = round(1, None).await;
    let old_ten = round(10, None).await;
    assert_eq!((pushes(&old_one), pushes(&old_ten)), (6, 51));
    let not_pushes = |c: &BTreeMap<String, usize>| -> BTreeMap<String, usize> {
        calls(c)
            .into_iter()
            .filter(|(k, _)| k != "PostToConnection")
            .collect()
    };
    assert_eq!(not_pushes(&old_one), not_pushes(&one));
    assert_eq!(not_pushes(&old_ten), not_pushes(&ten));
    streamed_rounds().await;
    agent_message_round().await;
    keep_rounds().await;
    attachment_round().await;
}

/// Counts, by operation, the AWS requests recorded since `start`.
async fn counted_since(start: usize) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &common::recorded().await[start..] {
        *counts.entry(common::operation(e)).or_insert(0) += 1;
    }
    counts
}

/// Conversations people keep: a signed-in user's `GET /sessions` (three conversations, each
/// with a message) and a `POST /sessions/{id}/resume`, the AWS requests of each, exactly. Run
/// after the other rounds, in the same test (the recorder is shared).
async fn keep_rounds() {
    const SECRET: &str = "aws-requests-keep-jwt-secret";
    let w = world::world_with(None, &[("CHAT_AUTH_JWT_SECRET", SECRET)]).await;
    let exp = chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000 + 600;
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "keeper-1", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let keep = |method: &str, path: &str| {
        let mut e = world::event("session-get");
        e["headers"]["authorization"] = json!(format!("Bearer {jwt}"));
        e["rawPath"] = json!(path);
        e["requestContext"]["http"]["path"] = json!(path);
        e["requestContext"]["http"]["method"] = json!(method);
        e
    };
    let mut sids = Vec::new();
    for i in 0..3 {
        let mut e = world::event("session-create-user");
        e["headers"]["authorization"] = json!(format!("Bearer {jwt}"));
        e["requestContext"]["http"]["sourceIp"] = json!(format!("198.51.100.{}", 200 + i));
        let (status, body) = w.http(e).await;
        assert_eq!(status, 201, "{body}");
        let sid = body["sessionId"].as_str().unwrap().to_string();
        let token = body["token"].as_str().unwrap().to_string();
        let mut e = w.authed("send-http", &sid, &token);
        e["body"] = json!(json!({"content": format!("conversation {i}")}).to_string());
        let (status, body) = w.http(e).await;
        assert_eq!(status, 202, "{body}");
        sids.push(sid);
    }
    let start = common::recorded().await.len();
    let (status, body) = w.http(keep("GET", "/sessions")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions"].as_array().map(Vec::len), Some(3), "{body}");
    let list = counted_since(start).await;
    let start = common::recorded().await.len();
    let (status, body) = w
        .http(keep("POST", &format!("/sessions/{}/resume", sids[0])))
        .await;
    assert_eq!(status, 200, "{body}");
    let resume = counted_since(start).await;
    println!("AWS requests per GET /sessions (3 conversations): {list:?}");
    println!("AWS requests per POST /sessions/{{id}}/resume: {resume:?}");
    for (section, counts) in [
        ("AWS requests per GET /sessions", &list),
        ("AWS requests per resume", &resume),
    ] {
        for (k, n) in counts {
            bench_report::report(section, k, *n as f64, None, "requests", "3 conversations");
        }
    }
    let expected = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    };
    // The byUser index queried once (one page), then per conversation its last message and
    // its unread count: 1 + 2 × 3 Queries, no Scan, no GetItem.
    assert_eq!(
        list,
        expected(&[("DynamoDB.Query", 7)]),
        "AWS requests of GET /sessions"
    );
    // The session read (its owner checked); the token is signed, nothing written.
    assert_eq!(
        resume,
        expected(&[("DynamoDB.GetItem", 1)]),
        "AWS requests of a resume"
    );
}

/// The requests one step of a round makes, by operation.
async fn step<T>(what: &str, call: impl Future<Output = T>) -> (T, BTreeMap<String, usize>) {
    let start = common::recorded().await.len();
    let out = call.await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &common::recorded().await[start..] {
        *counts.entry(common::operation(e)).or_insert(0) += 1;
    }
    println!("  {what:<40} {counts:?}");
    (out, counts)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// One attachment's round with one user connection: the ask (`POST …/attachments`), the
/// browser's upload to the presigned URL, the send naming it (`POST …/messages`), a read of
/// the history and the browser's download: the AWS requests of each, exactly. Presigning is
/// local (no request); the upload and the download are the browser's own requests to S3. Run
/// after the other rounds, in the same test (the recorder is shared).
async fn attachment_round() {
    let bucket = world::bucket(&common::sdk().await).await;
    let w = world::world_with(None, &[("CHAT_ATTACHMENTS_BUCKET", &bucket)]).await;
    let (sid, token) = w.session().await;
    let _conn = w.connect(&sid, &token).await;
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    println!("AWS requests of one attachment round, by step:");
    let mut ask = w.authed("session-read", &sid, &token);
    let path = format!("/sessions/{sid}/attachments");
    ask["rawPath"] = json!(path);
    ask["requestContext"]["http"]["path"] = json!(path);
    ask["body"] = json!(
        json!({"name": "photo.png", "contentType": "image/png", "size": bytes.len()}).to_string()
    );
    let ((status, answer), asked) = step("ask (POST …/attachments)", w.http(ask)).await;
    assert_eq!(status, 201, "{answer}");
    let (status, uploaded) = step(
        "upload (the browser's PUT)",
        world::upload(&answer, bytes.clone()),
    )
    .await;
    assert_eq!(status, 200);
    let mut send = w.authed("send-http", &sid, &token);
    send["body"] = json!(
        json!({"content": "", "attachments": [answer["attachmentId"]], "clientMessageId": "f-1"})
            .to_string()
    );
    let ((status, sent), sending) = step("send (POST …/messages)", w.http(send)).await;
    assert_eq!(status, 202, "{sent}");
    let (history, read) = step("read (GET …/messages)", w.history(&sid, &token)).await;
    let (fetched, downloaded) = step(
        "download (the browser's GET)",
        world::download_all(&json!(history), &bytes),
    )
    .await;
    assert_eq!(fetched, 1);
    for (what, c) in [
        ("ask", &asked),
        ("upload", &uploaded),
        ("send", &sending),
        ("read", &read),
        ("download", &downloaded),
    ] {
        for (k, n) in c {
            bench_report::report(
                "AWS requests of one attachment round",
                &format!("{what}: {k}"),
                *n as f64,
                None,
                "requests",
                "one user connection",
            );
        }
    }
    // The session read, its per-session ask bucket, the record written.
    assert_eq!(
        asked,
        counts(&[
            ("DynamoDB.GetItem", 1),
            ("DynamoDB.PutItem", 1),
            ("DynamoDB.UpdateItem", 1),
        ]),
        "the ask's requests"
    );
    assert_eq!(uploaded, counts(&[("S3.PutObject", 1)]), "the upload");
    // A send's own requests (the session read by its append, which also takes the rate
    // limit), plus per file: a HeadObject, the records claimed in one
    // transaction (beside the append's), the pending tag removed.
    assert_eq!(
        sending,
        counts(&[
            ("DynamoDB.GetItem", 2),
            ("DynamoDB.Query", 1),
            ("DynamoDB.TransactWriteItems", 2),
            ("PostToConnection", 1),
            ("S3.DeleteObjectTagging", 1),
            ("S3.HeadObject", 1),
            ("SQS.SendMessageBatch", 1),
        ]),
        "the send's requests"
    );
    // The page read; its download URL is signed locally.
    assert_eq!(
        read,
        counts(&[("DynamoDB.Query", 1)]),
        "the read's requests"
    );
    assert_eq!(downloaded, counts(&[("S3.GetObject", 1)]), "the download");
}

/// One agent message (`POST /agent/sessions/{id}/messages` with a `clientMessageId`) in a
/// session the agent holds, with one user connection and one agent connection: the AWS
/// requests, exactly. Run after the other rounds, in the same test (the recorder is shared).
async fn agent_message_round() {
    const SECRET: &str = "aws-requests-app-jwt-secret";
    let w = world::world_with(None, &[("CHAT_AUTH_JWT_SECRET", SECRET)]).await;
    let exp = chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000 + 600;
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "a-1", "name": "Alex", "role": "agent", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (sid, token) = w.session().await;
    let user = w.connect(&sid, &token).await;
    let agent_conn = world::conn_id();
    let alex = w
        .app
        .service
        .connect_agent(&jwt, &agent_conn)
        .await
        .unwrap();
    w.app
        .service
        .claim(&alex.agent, &sid.parse().unwrap())
        .await
        .unwrap();
    let mut e = world::event("agent-message");
    let path = format!("/agent/sessions/{sid}/messages");
    e["headers"]["authorization"] = json!(format!("Bearer {jwt}"));
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["path"] = json!(path);
    e["pathParameters"]["id"] = json!(sid);
    let start = common::recorded().await.len();
    let (status, body) = w.http(e).await;
    assert_eq!(status, 202, "{body}");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &common::recorded().await[start..] {
        *counts.entry(common::operation(e)).or_insert(0) += 1;
    }
    println!("AWS requests per agent message: {counts:?}");
    for (k, n) in &counts {
        bench_report::report(
            "AWS requests per agent message",
            k,
            *n as f64,
            None,
            "requests",
            "one user and one agent connection",
        );
    }
    // The session and the clientMessageId's key read, the append (its read and one
    // transaction), the session's connections and the agents' connections listed, one push
    // to each.
    let expected: BTreeMap<String, usize> = [
        ("DynamoDB.GetItem", 3),
        ("DynamoDB.Query", 2),
        ("DynamoDB.TransactWriteItems", 1),
        ("PostToConnection", 2),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(counts, expected, "AWS requests of one agent message");
    let to_user = common::pushed_to(&user).await;
    assert!(
        to_user
            .iter()
            .any(|f| f["event"] == "message" && f["message"]["name"] == "Alex"),
        "{to_user:?}"
    );
}

/// A streamed answer instead of the callback: the webhook function's work moves into the
/// dispatch function, and each `delta` costs one `PostToConnection` per connection (deltas go
/// to the connections listed once when the stream starts: no lookup per delta). Run after the
/// callback rounds, in the same test: the emulator's recorder is shared, so rounds must not
/// overlap.
async fn streamed_rounds() {
    let tokens: Vec<String> = (0..30).map(|i| format!("t{i} ")).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let (one, d1) = round_with(1, Some(&tokens), None).await;
    let (ten, d10) = round_with(10, Some(&tokens), None).await;
    println!("AWS requests per streamed round (30 tokens, 20 ms apart), by operation:");
    println!(
        "{:<32} {:>14} {:>15}",
        "operation", "1 connection", "10 connections"
    );
    let keys: std::collections::BTreeSet<_> = one.keys().chain(ten.keys()).collect();
    for k in keys {
        println!(
            "{:<32} {:>14} {:>15}",
            k,
            one.get(k).unwrap_or(&0),
            ten.get(k).unwrap_or(&0)
        );
    }
    println!("delta frames per reply: {d1} (1 connection), {d10} (10 connections)");
    assert!(
        (2..30).contains(&d1) && (2..30).contains(&d10),
        "coalesced: {d1}, {d10}"
    );
    let pushes = |c: &BTreeMap<String, usize>| *c.get("PostToConnection").unwrap_or(&0);
    // The callback round's six frames, plus one per delta.
    assert_eq!(
        pushes(&one),
        6 + d1,
        "PostToConnection per streamed reply, 1 connection"
    );
    assert_eq!(
        pushes(&ten),
        6 + d10 + 9 * (5 + d10),
        "and with 10 connections"
    );
    let calls: BTreeMap<String, usize> = one
        .iter()
        .filter(|(k, _)| !k.starts_with('~') && *k != "PostToConnection")
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    let expected: BTreeMap<String, usize> = [
        // Against the callback round (4, 5, 2, 2): the webhook function's work moves into
        // dispatch, which re-reads the user message before storing the reply (a Query for
        // the webhook's), and one Query more lists the connections that get the deltas.
        ("DynamoDB.GetItem", 4),
        ("DynamoDB.Query", 6),
        ("DynamoDB.TransactWriteItems", 2),
        ("DynamoDB.UpdateItem", 2),
        ("SQS.SendMessageBatch", 1),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), *n))
    .collect();
    assert_eq!(calls, expected, "the streamed round's other requests");
}
