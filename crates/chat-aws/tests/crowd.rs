//! A crowd of ordinary people at the default settings, on the Lambda handlers against the
//! emulator: 150 sessions, each from its own client address, each sending one message at
//! once; the dispatch function delivers them in SQS-sized batches; n8n answers them all at
//! once through the webhook function. Every answer must be accepted the first time (no
//! limit shared by all users: the webhook limit is per session) and end `answered`.

mod world;

use chat_aws::handlers;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Instant;
use world::*;

const PEOPLE: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_fifty_people_sending_at_once_are_all_answered() {
    let w = world().await;
    let mut people = Vec::new();
    for i in 0..PEOPLE {
        let mut e = event("session-create");
        e["requestContext"]["http"]["sourceIp"] =
            json!(format!("10.0.{}.{}", i / 200, i % 200 + 1));
        let (status, body) = w.http(e).await;
        assert_eq!(status, 201, "person {i}: {body}");
        people.push((
            body["sessionId"].as_str().unwrap().to_string(),
            body["token"].as_str().unwrap().to_string(),
        ));
    }

    let start = Instant::now();
    let sends = people.iter().enumerate().map(|(i, (sid, token))| {
        let mut e = w.authed("send-http", sid, token);
        e["body"] = json!(json!({"content": format!("hello from person {i}")}).to_string());
        w.http(e)
    });
    // At most 16 calls in flight here and below: the emulator serves one request at a time
    // and its listen queue overflows under hundreds of simultaneous connections (AWS does
    // not; there each call is its own Lambda).
    let sent: Vec<(i64, Value)> = futures_util::stream::iter(sends)
        .buffered(16)
        .collect()
        .await;
    for (i, (status, body)) in sent.into_iter().enumerate() {
        assert_eq!(status, 202, "person {i}'s message: {body}");
    }

    // The dispatch function, as SQS feeds it: batches of up to 10, several at once.
    let mut delivered = 0;
    while delivered < PEOPLE {
        let mut batches = Vec::new();
        for _ in 0..5 {
            let batch = w.receive_up_to(10).await;
            if batch.records.is_empty() {
                break;
            }
            delivered += batch.records.len();
            batches.push(batch);
        }
        assert!(
            !batches.is_empty(),
            "only {delivered} of {PEOPLE} jobs were queued"
        );
        let outs = futures_util::future::join_all(
            batches.into_iter().map(|b| handlers::dispatch(&w.app, b)),
        )
        .await;
        for out in outs {
            assert!(out.batch_item_failures.is_empty(), "{out:?}");
        }
    }
    assert_eq!(w.n8n.count(), PEOPLE, "every message reached n8n");

    // n8n answers every one at once, as a busy workflow would.
    let payloads: Vec<Value> = w.n8n.received.lock().unwrap().clone();
    let replies = payloads.iter().map(|p| {
        let reply = json!({"sessionId": p["sessionId"], "replyTo": p["messageId"],
                           "content": format!("you said: {}", p["content"].as_str().unwrap()),
                           "eventId": format!("n8n-{}", p["messageId"].as_str().unwrap())});
        w.http(w.signed_reply(&reply))
    });
    let refused: Vec<Value> = futures_util::stream::iter(replies)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter(|(status, _)| *status != 200)
        .map(|(status, body)| json!({"status": status, "body": body}))
        .collect();
    assert!(
        refused.is_empty(),
        "{} replies refused: {refused:#?}",
        refused.len()
    );
    let elapsed = start.elapsed();

    for (i, (sid, token)) in people.iter().enumerate() {
        let h = w.history(sid, token).await;
        assert_eq!(h.len(), 2, "person {i}: {h:#?}");
        assert_eq!(h[0]["status"], "answered", "person {i}");
        assert_eq!(h[1]["content"], format!("you said: hello from person {i}"));
    }
    println!(
        "{PEOPLE} people at once on the handlers (emulator, default settings): every reply \
         accepted the first time; sends to the last reply stored took {:.2} s",
        elapsed.as_secs_f64()
    );
}
