//! People in the loop through the Lambda handlers on the emulator: an agent's `$connect` with
//! `?agentToken=`, the user's handoff frame reaching the agent's socket as an `inbox` event,
//! a claim (a second one refused), messages and typing both ways, a user message held back
//! from n8n, the release, and n8n's next dispatch carrying the agent's named message.

use chat_testkit::aws::emulator as common;
mod world;

use serde_json::{Value, json};
use world::{conn_id, event};

const SECRET: &str = "agents-handler-tests-app-jwt-secret";

fn agent_jwt(sub: &str, name: &str, secret: &str) -> String {
    let exp = chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock) / 1000 + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "name": name, "role": "agent", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An agent route's event from `sample`, for `path` (with its query) and `jwt`.
fn agent_event(sample: &str, jwt: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut e = event(sample);
    e["headers"]["authorization"] = json!(format!("Bearer {jwt}"));
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    e["rawPath"] = json!(path);
    e["rawQueryString"] = json!(query);
    e["requestContext"]["http"]["path"] = json!(path);
    e["requestContext"]["http"]["method"] = json!(method);
    if let Some(b) = body {
        e["body"] = json!(b.to_string());
    }
    e
}

async fn frames(connection: &str, event: &str) -> Vec<Value> {
    common::pushed_to(connection)
        .await
        .into_iter()
        .filter(|f| f["event"] == event)
        .collect()
}

#[tokio::test]
async fn a_person_takes_over_through_the_lambdas() {
    let w = world::world_with(None, &[("CHAT_AUTH_JWT_SECRET", SECRET)]).await;
    let (alex, sam) = (
        agent_jwt("a-1", "Alex", SECRET),
        agent_jwt("a-2", "Sam", SECRET),
    );
    let (sid, token) = w.session().await;
    let user = w.connect(&sid, &token).await;

    // $connect with ?agentToken= (a forged one refused).
    let agent = conn_id();
    let mut e = event("connect-agent");
    e["queryStringParameters"] = json!({"agentToken": alex});
    e["multiValueQueryStringParameters"] = json!({"agentToken": [alex]});
    e["requestContext"]["connectionId"] = json!(agent);
    let (status, body) = w.ws(e.clone()).await;
    assert_eq!(status, 200, "{body}");
    let forged = agent_jwt("a-9", "Mallory", "another-secret");
    e["queryStringParameters"] = json!({"agentToken": forged});
    e["requestContext"]["connectionId"] = json!(conn_id());
    let (status, body) = w.ws(e).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_auth"))
    );

    // The user asks for a person: the agent's socket gets the inbox event.
    w.ws_frame(&user, json!({"action": "handoff"})).await;
    let inbox = frames(&agent, "inbox").await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["session"]["sessionId"], sid.as_str());
    assert_eq!(inbox[0]["session"]["mode"], "waiting");
    assert_eq!(inbox[0]["session"]["userOnline"], true);
    let path = "/agent/inbox?view=waiting";
    let (status, page) = w
        .http(agent_event("agent-inbox", &alex, "GET", path, None))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["sessions"][0]["sessionId"], sid.as_str());

    // Alex claims it; Sam cannot.
    let claim = |jwt: &str| {
        let mut e = agent_event(
            "agent-claim",
            jwt,
            "POST",
            &format!("/agent/sessions/{sid}/claim"),
            None,
        );
        e["pathParameters"] = json!({"id": sid, "action": "claim"});
        e
    };
    let (status, body) = w.http(claim(&alex)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = w.http(claim(&sam)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );

    // Messages and typing both ways; the user's message is not queued for n8n.
    let say = agent_event(
        "agent-message",
        &alex,
        "POST",
        &format!("/agent/sessions/{sid}/messages"),
        Some(json!({"content": "Alex here, how can I help?"})),
    );
    let (status, body) = w.http(say).await;
    assert_eq!(status, 202, "{body}");
    let to_user = frames(&user, "message").await;
    assert!(
        to_user
            .iter()
            .any(|f| f["message"]["role"] == "agent" && f["message"]["name"] == "Alex"),
        "{to_user:?}"
    );
    let before = w.receive_up_to(10).await.records.len();
    assert_eq!(before, 0, "nothing for n8n yet");
    w.ws_frame(
        &user,
        json!({"action": "sendMessage", "content": "my parcel is lost"}),
    )
    .await;
    let to_agent = frames(&agent, "message").await;
    assert!(
        to_agent
            .iter()
            .any(|f| f["message"]["content"] == "my parcel is lost"),
        "{to_agent:?}"
    );
    assert!(
        w.receive_up_to(10).await.records.is_empty(),
        "a message to Alex is not queued for n8n"
    );
    w.ws_frame(
        &agent,
        json!({"action": "typing", "sessionId": sid, "isTyping": true}),
    )
    .await;
    assert_eq!(
        frames(&user, "typing").await.last().unwrap(),
        &json!({"event":"typing","role":"agent","name":"Alex","isTyping":true})
    );
    w.ws_frame(&user, json!({"action": "typing", "isTyping": true}))
        .await;
    let typing = frames(&agent, "typing").await;
    assert_eq!(typing.last().unwrap()["sessionId"], sid.as_str());

    // Released: n8n gets the next message, with Alex's in its history.
    let mut release = claim(&alex);
    release["rawPath"] = json!(format!("/agent/sessions/{sid}/release"));
    release["requestContext"]["http"]["path"] = release["rawPath"].clone();
    release["pathParameters"]["action"] = json!("release");
    let (status, body) = w.http(release).await;
    assert_eq!(status, 200, "{body}");
    w.ws_frame(
        &user,
        json!({"action": "sendMessage", "content": "is the bot back?"}),
    )
    .await;
    let batch = w.receive_jobs(1).await;
    let out = chat_aws::handlers::dispatch(&w.app, batch).await;
    assert!(out.batch_item_failures.is_empty());
    let sent = w.n8n.received.lock().unwrap().clone();
    assert_eq!(
        sent.len(),
        1,
        "only the message after the release reached n8n"
    );
    let history = sent[0]["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|m| m["role"] == "agent" && m["name"] == "Alex"),
        "{history:?}"
    );

    // The agent's socket closes: the agents list no longer shows Alex.
    let mut e = event("disconnect");
    e["requestContext"]["connectionId"] = json!(agent);
    assert_eq!(w.ws(e).await.0, 200);
    let (status, v) = w
        .http(agent_event(
            "agent-agents",
            &sam,
            "GET",
            "/agent/agents",
            None,
        ))
        .await;
    assert_eq!((status, v["agents"].clone()), (200, json!([])), "{v}");
}
