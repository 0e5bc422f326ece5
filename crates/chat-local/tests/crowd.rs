//! A crowd of ordinary people at the default settings: 150 sessions, each from its own client
//! address (every 127/8 address is this machine), each sending one message at once. Every
//! one must be answered by the dev bot well within 30 s: no limit shared by all users of a
//! deployment may refuse some of them (the webhook limit is per session).

mod common;

use common::Server;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const PEOPLE: u8 = 150;
const WITHIN: Duration = Duration::from_secs(30);

/// An HTTP client whose connections come from `127.0.0.<n>`.
fn client_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .timeout(WITHIN)
        .build()
        .unwrap()
}

struct Person {
    http: reqwest::Client,
    session: String,
    token: String,
}

async fn json(r: reqwest::RequestBuilder) -> (u16, Value) {
    let res = r.send().await.expect("the server answers");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_fifty_people_sending_at_once_are_all_answered() {
    // Default settings: only the address, data folder and secrets are set by the harness.
    let (server, _dir) = Server::start(&[]).await;
    let mut people = Vec::new();
    for i in 0..PEOPLE {
        let http = client_from(i + 2);
        let (status, body) = json(http.post(format!("{}/sessions", server.url))).await;
        assert_eq!(status, 201, "person {i}: {body}");
        people.push(Person {
            http,
            session: body["sessionId"].as_str().unwrap().into(),
            token: body["token"].as_str().unwrap().into(),
        });
    }

    let start = Instant::now();
    let sends = people.iter().enumerate().map(|(i, p)| {
        let url = format!("{}/sessions/{}/messages", server.url, p.session);
        let body = json!({"content": format!("hello from person {i}"), "clientMessageId": format!("c{i}")});
        json(
            p.http
                .post(url)
                .bearer_auth(&p.token)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    });
    for (i, (status, body)) in futures_util::future::join_all(sends)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(status, 202, "person {i}'s message: {body}");
    }

    // Each person waits for the answer, as the widget would catch up after a drop.
    let server = &server;
    let answered = people.iter().enumerate().map(|(i, p)| async move {
        let url = format!("{}/sessions/{}/messages?after=0", server.url, p.session);
        loop {
            let (status, body) = json(p.http.get(&url).bearer_auth(&p.token)).await;
            assert_eq!(status, 200, "{body}");
            let messages = body["messages"].as_array().unwrap();
            let reply = messages.iter().find(|m| m["role"] == "assistant");
            let user = messages.iter().find(|m| m["role"] == "user").unwrap();
            // The reply and the message's `answered` status are two writes: wait for both.
            if let Some(reply) = reply
                && user["status"] == "answered"
            {
                let text = reply["content"].as_str().unwrap();
                assert!(text.contains(&format!("hello from person {i}")), "{text}");
                return start.elapsed();
            }
            assert!(
                start.elapsed() < WITHIN,
                "person {i} got no answer within {WITHIN:?}: {messages:#?}\nserver log:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let results = futures_util::future::join_all(answered).await;
    let last = results.iter().max().unwrap();
    println!(
        "{PEOPLE} people, one message each at once, default settings: all answered; \
         the last answer after {:.2} s",
        last.as_secs_f64()
    );
}
