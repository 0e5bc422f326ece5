//! Bad input, end to end against the real binary: every refusal has the right status, the
//! contract's body `{"error":{"code","message"}}` with the right code, and writes nothing.
//! Covers session tokens (HTTP and the WebSocket upgrade), message bodies and limits,
//! history queries, read receipts, rate limits, n8n's signed webhook, unknown routes and
//! methods, and bad WebSocket frames (one over the size limit closes the socket: see
//! `websockets.rs`).

mod common;

use common::{SESSION_SECRET, Server, Session, WAIT, WEBHOOK_SECRET, Ws, post_signed, unix_now};
use serde_json::{Value, json};
use std::time::Duration;

/// An HTTP answer: status and JSON body (`Null` if the body is not JSON).
type Answer = (u16, Value);

// ----- helpers ------------------------------------------------------------------------------

/// Asserts that `answer` is the refusal `want`, written `"<status> <code>"`, with exactly the
/// contract's body `{"error":{"code","message"}}` and a message.
#[track_caller]
fn expect_error(what: &str, answer: &Answer, want: &str) {
    let (status, body) = answer;
    let code = body["error"]["code"].as_str().unwrap_or("<no code>");
    assert_eq!(format!("{status} {code}"), want, "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: no message in {body}");
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(body), Some(vec!["error".into()]), "{what}: {body}");
    let inner = Some(vec!["code".into(), "message".into()]);
    assert_eq!(keys(&body["error"]), inner, "{what}: {body}");
}

/// One HTTP request through the harness; refusals must be labelled JSON.
async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let body = body.map(|b| b.as_bytes().to_vec());
    let (status, v, headers) = server.request(method, path, token, body, &[]).await;
    if status >= 400 {
        let ct = headers.get("content-type").and_then(|h| h.to_str().ok());
        assert_eq!(ct, Some("application/json"), "{method} {path} -> {status}");
    }
    (status, v)
}

async fn get(server: &Server, path: &str, token: Option<&str>) -> Answer {
    call(server, "GET", path, token, None).await
}

async fn post(server: &Server, path: &str, token: Option<&str>, body: &str) -> Answer {
    call(server, "POST", path, token, Some(body)).await
}

/// An HS256 session token with the claims the product issues, signed with `secret`.
fn craft_token(secret: &str, sid: &str, exp: i64) -> String {
    let claims = json!({ "sid": sid, "exp": exp, "iat": unix_now() - 7200 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The stored messages written by the user (the dev bot may add replies to accepted ones).
async fn user_messages(server: &Server, s: &Session) -> Vec<Value> {
    let h = server.history(s, "after=0&limit=100").await;
    h.into_iter().filter(|m| m["role"] == "user").collect()
}

/// The session object of `GET /sessions/{id}`, read with the session's own token.
async fn session_state(server: &Server, s: &Session) -> Value {
    let (status, v) = get(server, &format!("/sessions/{}", s.id), Some(&s.token)).await;
    assert_eq!(status, 200, "{v}");
    v["session"].clone()
}

/// A WebSocket upgrade request over plain HTTP, so that a refusal's status and body can be
/// read in full (a WebSocket client only sees the status reliably).
async fn ws_upgrade(server: &Server, query: &str) -> Answer {
    let res = server
        .http
        .get(format!("{}/ws?{query}", server.url))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("upgrade request reaches the server");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A POST to `/webhook` with the given (possibly absent or wrong) signature headers.
async fn webhook_raw(server: &Server, ts: Option<&str>, sig: Option<&str>, body: &str) -> Answer {
    let mut rb = server
        .http
        .post(format!("{}/webhook", server.url))
        .header("content-type", "application/json");
    if let Some(ts) = ts {
        rb = rb.header("x-chat-timestamp", ts);
    }
    if let Some(sig) = sig {
        rb = rb.header("x-chat-signature", sig);
    }
    let res = rb
        .body(body.to_string())
        .send()
        .await
        .expect("webhook reachable");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `body` signed with `secret` at `timestamp` and posted to `/webhook`.
async fn webhook_signed(server: &Server, secret: &str, timestamp: i64, body: &str) -> Answer {
    let ts = timestamp.to_string();
    let sig = chat_core::signature::sign(secret.as_bytes(), &ts, body.as_bytes());
    webhook_raw(server, Some(&ts), Some(&sig), body).await
}

/// Rate limits count in fixed windows aligned to the clock. If the current window of
/// `window_secs` ends within a few seconds, waits for the next one so a burst fits in one.
async fn start_of_a_window(window_secs: i64) {
    let window_ms = window_secs * 1000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let left = window_ms - now_ms % window_ms;
    if left < 10_000 {
        tokio::time::sleep(Duration::from_millis(left as u64 + 200)).await;
    }
}

/// The `Retry-After` header, which must be whole seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    let raw = headers.get("retry-after").expect("a Retry-After header");
    let raw = raw.to_str().unwrap();
    raw.parse()
        .unwrap_or_else(|_| panic!("Retry-After {raw:?} is not whole seconds"))
}

// The case tables below are kept one case per line (`rustfmt::skip`), to be read as tables.

// ----- session tokens -----------------------------------------------------------------------

#[tokio::test]
async fn bad_session_tokens_are_refused_on_every_route_and_on_the_websocket() {
    let (server, _dir) = Server::start(&[]).await;
    let a = server.create_session().await;
    let b = server.create_session().await;
    let in_an_hour = unix_now() + 3600;

    // A token crafted like the product's opens its session, so each refusal below is about
    // exactly the one thing it changes.
    let good = craft_token(SESSION_SECRET, &a.id, in_an_hour);
    let (status, v) = get(&server, &format!("/sessions/{}", a.id), Some(&good)).await;
    assert_eq!(status, 200, "a well-formed token opens its session: {v}");

    let other_secret = craft_token("another-secret", &a.id, in_an_hour);
    let expired = craft_token(SESSION_SECRET, &a.id, unix_now() - 60);
    #[rustfmt::skip]
    let tokens = [
        ("no token", None, "401 missing_token"),
        ("a garbage token", Some("garbage"), "401 invalid_token"),
        ("a token of another secret", Some(other_secret.as_str()), "401 invalid_token"),
        ("an expired token", Some(expired.as_str()), "401 token_expired"),
        ("another session's token", Some(b.token.as_str()), "403 forbidden"),
    ];
    let send = r#"{"content":"must not be stored","clientMessageId":"x-1"}"#;
    #[rustfmt::skip]
    let routes = [
        ("GET", format!("/sessions/{}", a.id), None),
        ("GET", format!("/sessions/{}/messages?after=0", a.id), None),
        ("POST", format!("/sessions/{}/messages", a.id), Some(send)),
        ("POST", format!("/sessions/{}/read", a.id), Some(r#"{"upTo":1}"#)),
    ];
    for (method, path, body) in &routes {
        for (what, token, want) in &tokens {
            let answer = call(&server, method, path, *token, *body).await;
            expect_error(&format!("{method} {path} with {what}"), &answer, want);
        }
        // A scheme other than Bearer carries no session token either.
        let basic = [("authorization", "Basic YTpi")];
        let bytes = body.map(|b| b.as_bytes().to_vec());
        let (st, v, _) = server.request(method, path, None, bytes, &basic).await;
        let what = format!("{method} {path} with Basic");
        expect_error(&what, &(st, v), "401 missing_token");
        // A malformed session id (or one that is not even UTF-8) with a valid token.
        for bad_id in ["not-a-session-id", "%FF"] {
            let bad_path = path.replace(&a.id, bad_id);
            let answer = call(&server, method, &bad_path, Some(&a.token), *body).await;
            expect_error(&format!("{method} {bad_path}"), &answer, "404 not_found");
        }
    }

    // The WebSocket upgrade is refused before upgrading, with the same answers.
    let mut upgrades: Vec<(&str, String, &str)> = tokens
        .iter()
        .map(|(what, token, want)| match token {
            Some(t) => (*what, format!("sessionId={}&token={t}", a.id), *want),
            None => (*what, format!("sessionId={}", a.id), *want),
        })
        .collect();
    #[rustfmt::skip]
    upgrades.extend([
        ("no sessionId", format!("token={}", a.token), "400 invalid_query"),
        ("an empty sessionId", format!("sessionId=&token={}", a.token), "400 invalid_query"),
        ("a malformed sessionId", format!("sessionId=nope&token={}", a.token), "404 not_found"),
    ]);
    for (what, query, want) in &upgrades {
        let answer = ws_upgrade(&server, query).await;
        expect_error(&format!("/ws with {what}"), &answer, want);
    }
    // A real WebSocket client sees the refusal as the handshake's HTTP status.
    let url = format!("{}?sessionId={}&token=garbage", server.ws_url, a.id);
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await {
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(res))) => {
            assert_eq!(res.status().as_u16(), 401)
        }
        Ok(Err(e)) => panic!("unexpected handshake error {e}"),
        Ok(Ok(_)) => panic!("a garbage token opened a WebSocket"),
        Err(_) => panic!("the handshake did not finish in time"),
    }

    // The session's own token still works, and none of the above wrote anything.
    let mut ws = server.connect(&a).await;
    ws.send(json!({"action": "ping"})).await;
    assert_eq!(ws.next().await, Some(json!({"event": "pong"})));
    ws.close().await;
    assert!(server.history(&a, "after=0").await.is_empty());
    assert!(server.history(&b, "after=0").await.is_empty());
    assert_eq!(session_state(&server, &a).await["readUpTo"], 0);
}

// ----- POST /sessions/{id}/messages, history queries and read receipts -------------------------

#[tokio::test]
async fn bad_message_bodies_and_queries_are_refused_and_store_nothing() {
    let (server, _dir) = Server::start(&[]).await;
    let s = server.create_session().await;
    let token = Some(s.token.as_str());
    let path = format!("/sessions/{}/messages", s.id);
    let content = |c: &str| json!({ "content": c }).to_string();
    let with_id = |id: &str| json!({"content": "hi", "clientMessageId": id}).to_string();
    let big_metadata = json!({"content": "hi", "metadata": {"k": "x".repeat(4089)}});

    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{nope".into(), "400 invalid_json"),
        ("an empty body", "".into(), "400 invalid_json"),
        ("a JSON array", "[1,2]".into(), "400 invalid_input"),
        ("content a number", r#"{"content":5}"#.into(), "400 invalid_input"),
        ("content null", r#"{"content":null}"#.into(), "400 invalid_input"),
        ("no content", r#"{"clientMessageId":"c-0"}"#.into(), "400 invalid_input"),
        ("metadata a string", r#"{"content":"hi","metadata":"x"}"#.into(), "400 invalid_input"),
        ("a numeric id", r#"{"content":"hi","clientMessageId":7}"#.into(), "400 invalid_input"),
        ("empty content", content(""), "400 content_empty"),
        ("white-space content", content(" \n\t "), "400 content_empty"),
        ("4001 characters", content(&"a".repeat(4001)), "400 content_too_long"),
        ("4001 two-byte characters", content(&"é".repeat(4001)), "400 content_too_long"),
        ("metadata over 4 KB", big_metadata.to_string(), "400 invalid_input"),
        ("an empty clientMessageId", with_id(""), "400 invalid_input"),
        ("a clientMessageId with a space", with_id("a b"), "400 invalid_input"),
        ("a non-ASCII clientMessageId", with_id("clé"), "400 invalid_input"),
        ("a 129-character clientMessageId", with_id(&"x".repeat(129)), "400 invalid_input"),
        ("a body over 64 KB", content(&"x".repeat(65 * 1024)), "413 too_large"),
    ];
    for (what, body, want) in &cases {
        expect_error(what, &post(&server, &path, token, body).await, want);
    }
    assert!(
        user_messages(&server, &s).await.is_empty(),
        "nothing stored"
    );

    // The limits themselves are accepted: 4,000 characters of two bytes each, and metadata
    // of exactly 4,096 bytes.
    let (status, v) = post(&server, &path, token, &content(&"é".repeat(4000))).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        v["message"]["content"].as_str().unwrap().chars().count(),
        4000
    );
    let metadata = json!({"k": "x".repeat(4088)});
    assert_eq!(metadata.to_string().len(), 4096);
    let body = json!({"content": "with metadata", "metadata": metadata}).to_string();
    let (status, v) = post(&server, &path, token, &body).await;
    assert_eq!(status, 202, "{v}");

    // A clientMessageId reused for other content is a conflict; a true repeat is the same
    // message again.
    let (status, first) = server.send(&s, "first", Some("dup-1")).await;
    assert_eq!(status, 202, "{first}");
    let conflict = server.send(&s, "second", Some("dup-1")).await;
    expect_error("a reused clientMessageId", &conflict, "409 conflict");
    let (status, again) = server.send(&s, "first", Some("dup-1")).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["message"]["id"], first["message"]["id"]);

    // History queries.
    for query in [
        "after=abc",
        "before=x",
        "after=-1",
        "limit=0",
        "limit=101",
        "limit=ten",
    ] {
        let answer = get(&server, &format!("{path}?{query}"), token).await;
        expect_error(&format!("history ?{query}"), &answer, "400 invalid_query");
    }
    let (status, v) = get(&server, &format!("{path}?after=0&limit=100"), token).await;
    assert_eq!(status, 200, "limit=100 is allowed: {v}");

    // Read receipts.
    let read = format!("/sessions/{}/read", s.id);
    #[rustfmt::skip]
    let bad_reads = [
        ("not JSON", "{nope", "400 invalid_json"),
        ("no upTo", "{}", "400 invalid_input"),
        ("upTo a string", r#"{"upTo":"3"}"#, "400 invalid_input"),
        ("upTo negative", r#"{"upTo":-1}"#, "400 invalid_input"),
        ("an unknown field", r#"{"upTo":1,"all":true}"#, "400 invalid_input"),
    ];
    for (what, body, want) in bad_reads {
        let answer = post(&server, &read, token, body).await;
        expect_error(&format!("read with {what}"), &answer, want);
    }
    let state = session_state(&server, &s).await;
    assert_eq!(state["readUpTo"], 0, "no read mark written: {state}");

    // Exactly the three accepted messages were stored, once each.
    let stored = user_messages(&server, &s).await;
    let contents: Vec<&str> = stored
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let long = "é".repeat(4000);
    assert_eq!(
        contents,
        [long.as_str(), "with metadata", "first"],
        "{stored:#?}"
    );

    // Numbers past any seq are still numbers: nothing is after the largest, everything is
    // before it, and reading up to it reads everything.
    let huge = u64::MAX;
    assert!(
        server
            .history(&s, &format!("after={huge}"))
            .await
            .is_empty()
    );
    let newest = server.history(&s, &format!("before={huge}")).await;
    assert!(newest.len() >= 3, "{newest:#?}");
    assert_eq!(newest, server.history(&s, "").await);
    let (status, r) = post(&server, &read, token, &format!(r#"{{"upTo":{huge}}}"#)).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["readUpTo"].as_u64() >= Some(3), "{r}");
}

// ----- rate limits --------------------------------------------------------------------------

#[tokio::test]
async fn the_eleventh_message_in_a_minute_is_rate_limited() {
    let (server, _dir) = Server::start(&[]).await;
    let s = server.create_session().await;
    start_of_a_window(60).await;
    for i in 1..=10 {
        let (status, v) = server.send(&s, &format!("message {i}"), None).await;
        assert_eq!(status, 202, "message {i}: {v}");
    }
    let path = format!("/sessions/{}/messages", s.id);
    let body = br#"{"content":"message 11"}"#.to_vec();
    let (status, v, headers) = server
        .request("POST", &path, Some(&s.token), Some(body), &[])
        .await;
    expect_error("the 11th message", &(status, v), "429 rate_limited");
    let secs = retry_after(&headers);
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    let stored = user_messages(&server, &s).await;
    assert_eq!(stored.len(), 10, "the refused message was not stored");
    assert!(stored.iter().all(|m| m["content"] != "message 11"));
}

#[tokio::test]
async fn the_fourth_session_from_one_ip_in_five_minutes_is_rate_limited() {
    let (server, _dir) = Server::start(&[]).await;
    start_of_a_window(300).await;
    for _ in 0..3 {
        server.create_session().await;
    }
    let (status, v, headers) = server
        .request("POST", "/sessions", None, Some(vec![]), &[])
        .await;
    expect_error("the 4th session", &(status, v), "429 rate_limited");
    let secs = retry_after(&headers);
    assert!((1..=300).contains(&secs), "Retry-After {secs}");
}

// ----- POST /webhook ------------------------------------------------------------------------

#[tokio::test]
async fn the_webhook_refuses_bad_signatures_and_bad_replies_and_stores_nothing() {
    let (server, _dir) = Server::start(&[]).await;
    let s = server.create_session().await;
    let reply = json!({"sessionId": s.id, "content": "hello from n8n", "eventId": "e-1"});
    let reply = reply.to_string();
    let sign = |ts: &str, body: &str| {
        chat_core::signature::sign(WEBHOOK_SECRET.as_bytes(), ts, body.as_bytes())
    };

    // Signature headers.
    let now = unix_now();
    let now_text = now.to_string();
    let ts = now_text.as_str();
    let good = sign(ts, &reply);
    let zeros = format!("sha256={}", "0".repeat(64));
    let unprefixed = good["sha256=".len()..].to_string();
    let other_body = sign(ts, "{}");
    let soon = sign("soon", &reply);
    #[rustfmt::skip]
    let headers = [
        ("no signature headers", None, None, "401 missing_signature"),
        ("no signature", Some(ts), None, "401 missing_signature"),
        ("no timestamp", None, Some(good.as_str()), "401 missing_signature"),
        ("a wrong signature", Some(ts), Some(zeros.as_str()), "401 invalid_signature"),
        ("a signature not in hex", Some(ts), Some("sha256=zz"), "401 invalid_signature"),
        ("no sha256= prefix", Some(ts), Some(unprefixed.as_str()), "401 invalid_signature"),
        ("another body's signature", Some(ts), Some(other_body.as_str()), "401 invalid_signature"),
        ("a non-numeric timestamp", Some("soon"), Some(soon.as_str()), "401 invalid_timestamp"),
    ];
    for (what, ts, sig, want) in headers {
        expect_error(what, &webhook_raw(&server, ts, sig, &reply).await, want);
    }
    // Signed, but with another secret or at the wrong time. 360 s ahead: a second ticking
    // between here and the server cannot bring it back within 300 s.
    #[rustfmt::skip]
    let signed = [
        ("another secret", "another-secret", now, "401 invalid_signature"),
        ("a timestamp 301 s old", WEBHOOK_SECRET, now - 301, "401 stale_timestamp"),
        ("a timestamp in the future", WEBHOOK_SECRET, now + 360, "401 stale_timestamp"),
    ];
    for (what, secret, at, want) in signed {
        expect_error(
            what,
            &webhook_signed(&server, secret, at, &reply).await,
            want,
        );
    }

    // Well signed, but a bad reply: `with` changes or adds fields of a good one.
    let sid = s.id.as_str();
    let unknown = ulid::Ulid::new().to_string();
    let with = |fields: Value| {
        let mut v = json!({"sessionId": sid, "content": "x"});
        v.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        v.to_string()
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{nope".into(), "400 invalid_json"),
        ("content a number", with(json!({"content": 5})), "400 invalid_input"),
        ("no content", json!({"sessionId": sid}).to_string(), "400 invalid_input"),
        ("a malformed sessionId", with(json!({"sessionId": "nope"})), "400 invalid_input"),
        ("an unknown type", with(json!({"type": "dance"})), "400 invalid_input"),
        ("data not an object", with(json!({"data": [1]})), "400 invalid_input"),
        ("a malformed replyTo", with(json!({"replyTo": "nope"})), "400 invalid_input"),
        ("an eventId with a space", with(json!({"eventId": "a b"})), "400 invalid_input"),
        ("empty content", with(json!({"content": ""})), "400 content_empty"),
        ("white-space content", with(json!({"content": "  \n"})), "400 content_empty"),
        ("an unknown session", with(json!({"sessionId": unknown})), "404 not_found"),
        ("a replyTo naming no message", with(json!({"replyTo": unknown})), "404 not_found"),
        ("a body over 64 KB", with(json!({"content": "x".repeat(65 * 1024)})), "413 too_large"),
    ];
    for (what, body, want) in &cases {
        let answer = webhook_signed(&server, WEBHOOK_SECRET, unix_now(), body).await;
        expect_error(what, &answer, want);
    }
    assert!(
        server.history(&s, "after=0").await.is_empty(),
        "nothing stored"
    );

    // The same reply, well signed, is accepted: the refusals were about what they changed.
    let url = format!("{}/webhook", server.url);
    let (status, v) = post_signed(&server.http, &url, &reply, unix_now()).await;
    assert_eq!(status, 200, "{v}");
    let history = server.history(&s, "after=0").await;
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0]["id"], v["messageId"]);
}

// ----- routes, methods and POST /sessions ---------------------------------------------------

#[tokio::test]
async fn unknown_routes_wrong_methods_and_bad_session_requests() {
    let (server, _dir) = Server::start(&[]).await;
    for path in ["/health", "/webhook"] {
        let (status, v) = get(&server, path, None).await;
        assert_eq!((status, &v), (200, &json!({"status": "ok"})), "GET {path}");
    }
    for path in ["/nope", "/sessions/x/y/z", "/health/more", "/api/sessions"] {
        expect_error(
            &format!("GET {path}"),
            &get(&server, path, None).await,
            "404 not_found",
        );
    }
    let id = ulid::Ulid::new();
    #[rustfmt::skip]
    let wrong_methods = [
        ("PUT", "/sessions".to_string()),
        ("DELETE", "/sessions".to_string()),
        ("GET", format!("/sessions/{id}/resume")),
        ("POST", "/me".to_string()),
        ("DELETE", "/me/export".to_string()),
        ("PUT", "/health".to_string()),
        ("POST", "/health".to_string()),
        ("DELETE", "/webhook".to_string()),
        ("POST", "/ws".to_string()),
        ("POST", format!("/sessions/{id}")),
        ("PUT", format!("/sessions/{id}/messages")),
        ("GET", format!("/sessions/{id}/read")),
    ];
    for (method, path) in wrong_methods {
        let answer = call(&server, method, &path, None, None).await;
        expect_error(
            &format!("{method} {path}"),
            &answer,
            "405 method_not_allowed",
        );
    }
    // A path segment that is not UTF-8 names no session: without a token, 401 as usual.
    let answer = get(&server, "/sessions/%FF/messages", None).await;
    expect_error("GET /sessions/%FF/messages", &answer, "401 missing_token");
    // A plain GET of the WebSocket endpoint (no handshake) is refused in JSON too.
    expect_error(
        "GET /ws",
        &get(&server, "/ws", None).await,
        "400 upgrade_required",
    );

    // POST /sessions with a bad body or bad app credentials.
    let big = " ".repeat(65 * 1024);
    #[rustfmt::skip]
    let cases = [
        ("not JSON", "{nope", None, "400 invalid_json"),
        ("a JSON array", "[1]", None, "400 invalid_input"),
        ("a body over 64 KB", big.as_str(), None, "413 too_large"),
        ("Basic auth", "", Some("Basic YTpi"), "401 invalid_auth"),
        ("an app JWT, no CHAT_AUTH_JWT_SECRET", "", Some("Bearer x.y.z"), "401 auth_not_configured"),
    ];
    for (what, body, auth, want) in cases {
        let headers: Vec<_> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let bytes = Some(body.as_bytes().to_vec());
        let (st, v, _) = server
            .request("POST", "/sessions", None, bytes, &headers)
            .await;
        expect_error(&format!("POST /sessions with {what}"), &(st, v), want);
    }
}

// ----- WebSocket frames ---------------------------------------------------------------------

/// Sends `frame` and asserts that the very next frame is an `error` event with `code`.
async fn expect_frame_error(ws: &mut Ws, frame: &str, code: &str) {
    ws.send_text(frame).await;
    let e = ws.next().await.expect("the socket stays open");
    assert_eq!(
        (&e["event"], &e["code"]),
        (&json!("error"), &json!(code)),
        "after {frame}"
    );
    assert!(!e["message"].as_str().unwrap_or_default().is_empty(), "{e}");
}

#[tokio::test]
async fn bad_websocket_frames_get_error_events_and_the_socket_keeps_working() {
    let (server, _dir) = Server::start(&[]).await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    let send = |content: String| json!({"action": "sendMessage", "content": content}).to_string();
    let too_long = send("a".repeat(4001));
    #[rustfmt::skip]
    let frames = [
        (r#"{"action":"dance"}"#, "unknown_action"),
        (r#"{"action":5}"#, "unknown_action"),
        (r#"{"content":"hi"}"#, "missing_action"),
        ("{not json", "invalid_json"),
        ("", "invalid_json"),
        ("[1]", "invalid_input"),
        (r#"{"action":"sendMessage","content":5}"#, "invalid_input"),
        (r#"{"action":"sendMessage"}"#, "invalid_input"),
        (r#"{"action":"sendMessage","content":"hi","clientMessageId":"a b"}"#, "invalid_input"),
        (r#"{"action":"read","upTo":"x"}"#, "invalid_input"),
        (r#"{"action":"typing","isTyping":"yes"}"#, "invalid_input"),
        (r#"{"action":"sendMessage","content":" "}"#, "content_empty"),
        (too_long.as_str(), "content_too_long"),
    ];
    for (frame, code) in frames {
        expect_frame_error(&mut ws, frame, code).await;
    }
    ws.send(json!({"action": "ping"})).await;
    assert_eq!(ws.next().await, Some(json!({"event": "pong"})));
    assert!(
        server.history(&s, "after=0").await.is_empty(),
        "nothing stored"
    );
    ws.close().await;
}
