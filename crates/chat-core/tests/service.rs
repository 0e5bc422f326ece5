//! The chat service's behaviours, through `ChatService`, `Dispatcher` and the `api` functions,
//! on the in-memory adapters.

use async_trait::async_trait;
use chat_core::api::{self, Response};
use chat_core::config::{Config, Secret};
use chat_core::model::{
    Connection, DispatchJob, Message, MessageId, MessageStatus, MessageType, Millis, PageQuery,
    Role, SessionId, rfc3339,
};
use chat_core::ports::{Agent, AgentError, Clock, SignedRequest, Store};
use chat_core::service::{
    ChatService, DispatchOutcome, Dispatcher, FAILED_TEXT, Ports, SendInput, SessionRef,
};
use chat_core::token::{SessionClaims, SessionTokens};
use chat_core::{ChatError, signature};
use chat_testkit::memory::{ManualClock, MemoryQueue, MemoryStore, RecordingPush, ScriptedAgent};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A start time on a 5-minute (so also a 1-minute) boundary, in whole seconds.
const T0: Millis = 1_700_000_100_000;
const HOUR: Millis = 3_600_000;
const WEBHOOK_SECRET: &[u8] = b"test-webhook-secret";
const APP_SECRET: &[u8] = b"test-app-jwt-secret";

// ----- harness -----------------------------------------------------------------------------

struct H {
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    push: Arc<RecordingPush>,
    clock: Arc<ManualClock>,
    agent: Arc<ScriptedAgent>,
    svc: ChatService,
    dispatcher: Dispatcher,
    next_ip: AtomicU32,
}

/// A session made through the service.
struct S {
    id: SessionId,
    token: String,
}

impl S {
    fn path(&self) -> String {
        self.id.to_string()
    }
    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

impl H {
    fn new() -> Self {
        Self::with_config(chat_testkit::config())
    }

    /// The harness with the scripted agent (`self.agent`) behind the dispatcher.
    fn with_config(config: Config) -> Self {
        let agent = Arc::new(ScriptedAgent::default());
        let a = agent.clone();
        Self::build(config, agent, move |_| a)
    }

    /// The harness with another agent behind the dispatcher, built from the service (for
    /// agents that call back); `self.agent` then sees nothing.
    fn with_agent(config: Config, agent: impl FnOnce(&ChatService) -> Arc<dyn Agent>) -> Self {
        Self::build(config, Arc::new(ScriptedAgent::default()), agent)
    }

    fn build(
        config: Config,
        scripted: Arc<ScriptedAgent>,
        agent: impl FnOnce(&ChatService) -> Arc<dyn Agent>,
    ) -> Self {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::default());
        let push = Arc::new(RecordingPush::default());
        let clock = Arc::new(ManualClock::new(T0));
        let svc = ChatService::new(
            Ports {
                store: store.clone(),
                queue: queue.clone(),
                push: push.clone(),
                clock: clock.clone(),
                limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
            },
            config,
        );
        let dispatcher = Dispatcher::new(svc.clone(), agent(&svc));
        Self {
            store,
            queue,
            push,
            clock,
            agent: scripted,
            svc,
            dispatcher,
            next_ip: AtomicU32::new(1),
        }
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// A guest session, from a fresh client IP so session rate limits do not interfere.
    async fn session(&self) -> S {
        let ip = format!("10.0.0.{}", self.next_ip.fetch_add(1, Ordering::SeqCst));
        let c = self
            .svc
            .create_session(&ip, None)
            .await
            .expect("guest session");
        S {
            id: c.session_id,
            token: c.token,
        }
    }

    fn sref(&self, s: &S) -> SessionRef {
        let claims = self
            .svc
            .authorize(Some(&s.token), &s.path())
            .expect("own token");
        SessionRef::from(&claims)
    }

    async fn connect(&self, s: &S, id: &str) -> Connection {
        self.svc
            .connect(Some(&s.path()), Some(&s.token), id)
            .await
            .expect("connect")
    }

    async fn send(
        &self,
        s: &S,
        content: &str,
        client_message_id: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Message, ChatError> {
        self.svc
            .send(
                self.sref(s),
                SendInput {
                    content: content.into(),
                    client_message_id: client_message_id.map(str::to_string),
                    metadata: None,
                },
                origin,
            )
            .await
    }

    /// Sends a user message and takes its job off the queue.
    async fn user_message(&self, s: &S, content: &str) -> (Message, DispatchJob) {
        let m = self.send(s, content, None, None).await.expect("send");
        let jobs = self.queue.drain();
        assert_eq!(jobs.len(), 1, "one job per new message");
        (m, jobs[0])
    }

    async fn all_messages(&self, id: &SessionId) -> Vec<Message> {
        self.store
            .list_messages(
                id,
                PageQuery {
                    after: Some(0),
                    before: None,
                    limit: 100,
                },
            )
            .await
            .unwrap()
            .messages
    }

    async fn message(&self, s: &S, id: &MessageId) -> Message {
        self.store
            .get_message(&s.id, id)
            .await
            .unwrap()
            .expect("stored message")
    }

    /// Frames pushed to one connection since the last `take`, parsed.
    fn frames(&self, connection: &str) -> Vec<Value> {
        self.push.frames_for(connection)
    }

    fn events(&self, connection: &str) -> Vec<String> {
        self.frames(connection)
            .iter()
            .map(|f| {
                f["event"]
                    .as_str()
                    .expect("every frame has an event")
                    .to_string()
            })
            .collect()
    }

    /// `(timestamp, signature, body)` for a webhook call signed now.
    fn signed(&self, body: &Value) -> (String, String, Vec<u8>) {
        let bytes = serde_json::to_vec(body).unwrap();
        let ts = (self.now() / 1000).to_string();
        let sig = signature::sign(WEBHOOK_SECRET, &ts, &bytes);
        (ts, sig, bytes)
    }

    async fn webhook(&self, body: Value) -> Response {
        let (ts, sig, bytes) = self.signed(&body);
        api::webhook(&self.svc, "192.0.2.1", Some(&ts), Some(&sig), &bytes).await
    }
}

fn json_of(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", r.body))
}

fn code_of(r: &Response) -> String {
    json_of(r)["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {}", r.body))
        .to_string()
}

fn app_jwt(secret: &[u8], sub: &str, exp_secs: i64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": exp_secs}),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn msg_json(m: &Message) -> Value {
    serde_json::to_value(m).unwrap()
}

// ----- sessions ----------------------------------------------------------------------------

#[tokio::test]
async fn guest_session_lives_24_hours_and_its_token_opens_it() {
    let h = H::new();
    let r = api::create_session(&h.svc, "192.0.2.1", None, b"").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = json_of(&r);
    let id: SessionId = v["sessionId"].as_str().unwrap().parse().unwrap();
    assert_eq!(v["expiresAt"], rfc3339(T0 + 24 * HOUR));
    assert_eq!(v["websocketUrl"], "ws://127.0.0.1:3000/ws");
    assert!(v.get("userId").is_none(), "a guest has no userId: {v}");

    let stored = h.store.get_session(&id, T0).await.unwrap().expect("stored");
    assert_eq!(stored.user_id, None);
    assert_eq!(stored.expires_at, T0 + 24 * HOUR);
    assert_eq!((stored.last_seq, stored.read_up_to), (0, 0));

    let token = v["token"].as_str().unwrap();
    let claims = h.svc.authorize(Some(token), &id.to_string()).unwrap();
    assert_eq!(claims.sid, id);
    assert_eq!(
        claims.exp * 1000,
        T0 + 24 * HOUR,
        "token expires with the session"
    );

    let r = api::get_session(&h.svc, &id.to_string(), Some(&format!("Bearer {token}"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["session"]["kind"], "guest");
    assert_eq!(v["session"]["id"], id.to_string());
    assert_eq!(v["messages"], json!([]));

    // An empty JSON object is an accepted body too; anything else is not.
    assert_eq!(
        api::create_session(&h.svc, "192.0.2.2", None, b"{}")
            .await
            .status,
        201
    );
    let r = api::create_session(&h.svc, "192.0.2.3", None, b"{nope").await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_json"));
}

#[tokio::test]
async fn user_session_lives_7_days_from_an_app_jwt() {
    let h = H::new();
    let jwt = app_jwt(APP_SECRET, "user-42", T0 / 1000 + 600);
    let r = api::create_session(&h.svc, "192.0.2.1", Some(&format!("Bearer {jwt}")), b"").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["userId"], "user-42");
    assert_eq!(v["expiresAt"], rfc3339(T0 + 7 * 24 * HOUR));
    let id: SessionId = v["sessionId"].as_str().unwrap().parse().unwrap();
    let stored = h.store.get_session(&id, T0).await.unwrap().expect("stored");
    assert_eq!(stored.user_id.as_deref(), Some("user-42"));
    assert_eq!(stored.expires_at, T0 + 7 * 24 * HOUR);
    let claims = h
        .svc
        .authorize(v["token"].as_str(), &id.to_string())
        .unwrap();
    assert_eq!(claims.sub.as_deref(), Some("user-42"));

    let r = api::get_session(
        &h.svc,
        &id.to_string(),
        Some(&format!("Bearer {}", v["token"].as_str().unwrap())),
    )
    .await;
    assert_eq!(json_of(&r)["session"]["kind"], "user");
    assert_eq!(json_of(&r)["session"]["userId"], "user-42");
}

#[tokio::test]
async fn bad_app_jwts_are_401() {
    let h = H::new();
    let cases = [
        // Expired a minute ago: past the 60 s of leeway for clock skew.
        (app_jwt(APP_SECRET, "u", T0 / 1000 - 60), "auth_expired"),
        (
            app_jwt(b"another secret", "u", T0 / 1000 + 600),
            "invalid_auth",
        ),
        (app_jwt(APP_SECRET, "  ", T0 / 1000 + 600), "invalid_auth"),
        ("garbage".to_string(), "invalid_auth"),
    ];
    for (i, (jwt, code)) in cases.iter().enumerate() {
        let r = api::create_session(
            &h.svc,
            &format!("192.0.2.{i}"),
            Some(&format!("Bearer {jwt}")),
            b"",
        )
        .await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (401, *code),
            "case {i}: {}",
            r.body
        );
    }
    let r = api::create_session(&h.svc, "192.0.2.9", Some("Basic dXNlcjpwYXNz"), b"").await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_auth"));
}

#[tokio::test]
async fn user_session_is_401_without_an_auth_secret() {
    let h = H::new_without_auth();
    let jwt = app_jwt(APP_SECRET, "user-42", T0 / 1000 + 600);
    let r = api::create_session(&h.svc, "192.0.2.1", Some(&format!("Bearer {jwt}")), b"").await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (401, "auth_not_configured"),
        "{}",
        r.body
    );
    let r = api::create_session(&h.svc, "192.0.2.1", None, b"").await;
    assert_eq!(r.status, 201, "guests still work: {}", r.body);
}

impl H {
    fn new_without_auth() -> Self {
        Self::with_config(Config {
            auth_jwt_secret: None,
            ..chat_testkit::config()
        })
    }
}

#[tokio::test]
async fn fourth_session_per_ip_in_5_minutes_is_429() {
    let h = H::new();
    h.clock.set(T0 + 60_000);
    for i in 0..3 {
        let r = api::create_session(&h.svc, "203.0.113.7", None, b"").await;
        assert_eq!(r.status, 201, "session {i}: {}", r.body);
    }
    let r = api::create_session(&h.svc, "203.0.113.7", None, b"").await;
    assert_eq!((r.status, code_of(&r).as_str()), (429, "rate_limited"));
    assert_eq!(
        r.retry_after,
        Some(100),
        "a token comes every 100 s (3 per 5 minutes)"
    );
    assert_eq!(
        api::create_session(&h.svc, "203.0.113.8", None, b"")
            .await
            .status,
        201,
        "per IP"
    );
    h.clock.set(T0 + 60_000 + 99_000);
    assert_eq!(
        api::create_session(&h.svc, "203.0.113.7", None, b"")
            .await
            .status,
        429,
        "before the next token"
    );
    h.clock.set(T0 + 60_000 + 100_000);
    assert_eq!(
        api::create_session(&h.svc, "203.0.113.7", None, b"")
            .await
            .status,
        201,
        "the next token"
    );
}

// ----- authorization -------------------------------------------------------------------------

#[tokio::test]
async fn missing_garbage_forged_and_expired_tokens_are_401() {
    let h = H::new();
    let s = h.session().await;
    let get = |auth: Option<String>| {
        let h = &h;
        let path = s.path();
        async move { api::get_session(&h.svc, &path, auth.as_deref()).await }
    };
    let r = get(None).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "missing_token"));
    let r = get(Some("Bearer garbage".into())).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_token"));
    let forged = SessionTokens::new(b"not the session secret").issue(&SessionClaims {
        sid: s.id,
        sub: None,
        exp: T0 / 1000 + 3600,
        iat: T0 / 1000,
    });
    let r = get(Some(format!("Bearer {forged}"))).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_token"));

    h.clock.set(T0 + 24 * HOUR - 1);
    assert_eq!(
        get(Some(s.bearer())).await.status,
        200,
        "valid until the last millisecond"
    );
    h.clock.set(T0 + 24 * HOUR);
    let r = get(Some(s.bearer())).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "token_expired"));
    let r = api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), None).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn another_sessions_token_is_403_and_writes_nothing() {
    let h = H::new();
    let a = h.session().await;
    let b = h.session().await;
    let r = api::get_session(&h.svc, &b.path(), Some(&a.bearer())).await;
    assert_eq!((r.status, code_of(&r).as_str()), (403, "forbidden"));
    let r = api::post_message(&h.svc, &b.path(), Some(&a.bearer()), br#"{"content":"hi"}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api::mark_read(&h.svc, &b.path(), Some(&a.bearer()), br#"{"upTo":1}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(h.all_messages(&a.id).await.is_empty() && h.all_messages(&b.id).await.is_empty());
    assert!(h.queue.drain().is_empty());
    let e = h
        .svc
        .connect(Some(&b.path()), Some(&a.token), "c1")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);
    assert_eq!(h.store.get_connection("c1").await.unwrap(), None);
}

// ----- sending -------------------------------------------------------------------------------

#[tokio::test]
async fn send_stores_received_queues_and_pushes_ack_first_to_origin_only() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.connect(&other, "c-other").await;
    assert!(h.push.take().is_empty(), "connecting pushes nothing");

    let m = h.send(&s, "hello", Some("cm-1"), Some("c1")).await.unwrap();
    assert_eq!(m.status, MessageStatus::Received);
    assert_eq!((m.seq, m.role, m.kind), (1, Role::User, MessageType::Text));
    assert_eq!(
        (m.content.as_str(), m.client_message_id.as_deref()),
        ("hello", Some("cm-1"))
    );
    assert_eq!(m.created_at, T0);
    assert_eq!(h.message(&s, &m.id).await, m, "stored as returned");
    assert_eq!(h.queue.drain(), vec![DispatchJob::dispatch(s.id, m.id)]);

    let frames = h.push.take();
    let parsed: Vec<(String, Value)> = frames
        .iter()
        .map(|(c, f)| (c.clone(), serde_json::from_str(f).unwrap()))
        .collect();
    assert_eq!(
        parsed.len(),
        3,
        "one ack and one message per connection: {parsed:?}"
    );
    assert_eq!(parsed[0].0, "c1", "the ack goes first, to the origin");
    assert_eq!(
        parsed[0].1,
        json!({"event":"ack","clientMessageId":"cm-1","messageId":m.id.to_string(),"seq":1})
    );
    let mut message_to: Vec<&str> = parsed[1..].iter().map(|(c, _)| c.as_str()).collect();
    message_to.sort();
    assert_eq!(
        message_to,
        ["c1", "c2"],
        "the message goes to every connection of the session"
    );
    for (_, f) in &parsed[1..] {
        assert_eq!(f, &json!({"event":"message","message":msg_json(&m)}));
    }
}

#[tokio::test]
async fn post_message_returns_202_with_the_stored_message() {
    let h = H::new();
    let s = h.session().await;
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"hi there","clientMessageId":"abc","metadata":{"page":"/pricing"}}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["message"]["status"], "received");
    assert_eq!(v["message"]["role"], "user");
    assert_eq!(v["message"]["type"], "text");
    assert_eq!(v["message"]["seq"], 1);
    assert_eq!(v["message"]["clientMessageId"], "abc");
    assert_eq!(v["message"]["metadata"], json!({"page":"/pricing"}));
    let stored = h.all_messages(&s.id).await;
    assert_eq!(v["message"], msg_json(&stored[0]));
    assert_eq!(h.queue.drain().len(), 1);
}

#[tokio::test]
async fn a_repeated_client_message_id_returns_the_same_message_and_writes_nothing() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    let first = h.send(&s, "hi", Some("cm-1"), Some("c1")).await.unwrap();
    let job = h.queue.drain()[0];
    h.push.take();

    let again = h.send(&s, "hi", Some("cm-1"), Some("c1")).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        h.all_messages(&s.id).await,
        vec![first.clone()],
        "nothing new stored"
    );
    assert_eq!(
        h.store
            .get_session(&s.id, h.now())
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        1
    );
    assert_eq!(
        h.events("c1"),
        ["ack"],
        "the origin gets its ack again, no new message"
    );
    assert!(
        h.frames("c2").is_empty(),
        "no message is pushed for a repeat"
    );
    // Still `received`: it may never have reached the queue, so it is queued again.
    assert_eq!(h.queue.drain(), vec![job]);

    // Once dispatched, a repeat is not queued again.
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let again = h.send(&s, "hi", Some("cm-1"), None).await.unwrap();
    assert_eq!(
        (again.id, again.status),
        (first.id, MessageStatus::Dispatched)
    );
    assert!(
        h.queue.drain().is_empty(),
        "a dispatched message is not queued again"
    );
    assert_eq!(h.all_messages(&s.id).await.len(), 1);

    // Via the API as well.
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"hi","clientMessageId":"cm-1"}"#,
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(json_of(&r)["message"]["id"], first.id.to_string());
}

#[tokio::test]
async fn a_client_message_id_reused_for_other_content_is_409() {
    let h = H::new();
    let s = h.session().await;
    let first = h.send(&s, "hi", Some("cm-1"), None).await.unwrap();
    h.queue.drain();
    let e = h
        .send(&s, "something else", Some("cm-1"), None)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (409, "conflict"));
    assert_eq!(h.all_messages(&s.id).await, vec![first]);
    assert!(h.queue.drain().is_empty(), "a conflict queues nothing");
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"x","clientMessageId":"cm-1"}"#,
    )
    .await;
    assert_eq!((r.status, code_of(&r).as_str()), (409, "conflict"));
}

#[tokio::test]
async fn a_repeat_after_an_enqueue_failure_enqueues_again() {
    let h = H::new();
    let s = h.session().await;
    h.queue.set_failing(true);
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"hi","clientMessageId":"cm-9"}"#,
    )
    .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (503, "unavailable"),
        "{}",
        r.body
    );
    assert_eq!(r.retry_after, Some(1), "503 tells the client to retry");
    let stored = h.all_messages(&s.id).await;
    assert_eq!(stored.len(), 1, "the message is stored before it is queued");
    assert_eq!(stored[0].status, MessageStatus::Received);
    assert!(h.queue.drain().is_empty());

    h.queue.set_failing(false);
    let m = h.send(&s, "hi", Some("cm-9"), None).await.unwrap();
    assert_eq!(m.id, stored[0].id, "the retry returns the stored message");
    assert_eq!(
        h.queue.drain(),
        vec![DispatchJob::dispatch(s.id, m.id)],
        "the retry queues it"
    );
    assert_eq!(h.all_messages(&s.id).await.len(), 1);
}

#[tokio::test]
async fn invalid_input_is_400_with_distinct_codes_and_writes_nothing() {
    let h = H::new();
    let s = h.session().await;
    let code = |r: Result<Message, ChatError>| {
        let e = r.expect_err("must be rejected");
        (e.status(), e.code())
    };
    assert_eq!(
        code(h.send(&s, "", None, None).await),
        (400, "content_empty")
    );
    assert_eq!(
        code(h.send(&s, " \n\t ", None, None).await),
        (400, "content_empty")
    );
    assert_eq!(
        code(h.send(&s, &"x".repeat(4001), None, None).await),
        (400, "content_too_long")
    );
    assert_eq!(
        code(h.send(&s, "hi", Some("has space"), None).await),
        (400, "invalid_input")
    );
    assert_eq!(
        code(h.send(&s, "hi", Some(&"k".repeat(129)), None).await),
        (400, "invalid_input")
    );

    let mut big = Map::new();
    big.insert("blob".into(), Value::String("x".repeat(4100)));
    let e = h
        .svc
        .send(
            h.sref(&s),
            SendInput {
                content: "hi".into(),
                client_message_id: None,
                metadata: Some(big),
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "invalid_input"));
    assert!(e.to_string().contains("metadata"), "{e}");

    let post = |body: Vec<u8>| {
        let h = &h;
        let path = s.path();
        let auth = s.bearer();
        async move { api::post_message(&h.svc, &path, Some(&auth), &body).await }
    };
    for (body, status, want) in [
        (b"{nope".to_vec(), 400, "invalid_json"),
        (b"".to_vec(), 400, "invalid_json"),
        (br#"{"content":5}"#.to_vec(), 400, "invalid_input"),
        (b"{}".to_vec(), 400, "invalid_input"),
        (b"[1,2]".to_vec(), 400, "invalid_input"),
        (
            br#"{"content":"hi","metadata":"text"}"#.to_vec(),
            400,
            "invalid_input",
        ),
        (br#"{"content":""}"#.to_vec(), 400, "content_empty"),
        (
            format!(r#"{{"content":"{}"}}"#, "x".repeat(70_000)).into_bytes(),
            413,
            "too_large",
        ),
    ] {
        let r = post(body.clone()).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (status, want),
            "body {:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    assert!(
        h.all_messages(&s.id).await.is_empty(),
        "nothing is stored for invalid input"
    );
    assert!(h.queue.drain().is_empty());

    // The limits themselves are allowed: 4000 characters (not bytes), metadata just under 4 KB.
    let m = h.send(&s, &"é".repeat(4000), None, None).await.unwrap();
    assert_eq!(m.content.chars().count(), 4000);
    let mut ok_meta = Map::new();
    ok_meta.insert("blob".into(), Value::String("x".repeat(4000)));
    h.svc
        .send(
            h.sref(&s),
            SendInput {
                content: "hi".into(),
                client_message_id: None,
                metadata: Some(ok_meta),
            },
            None,
        )
        .await
        .expect("metadata under 4 KB");
}

#[tokio::test]
async fn the_11th_message_in_a_minute_is_429_until_the_window_moves() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    h.clock.set(T0 + 15_000);
    for i in 1..=10 {
        h.send(&s, &format!("m{i}"), None, None)
            .await
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    let r = api::post_message(
        &h.svc,
        &s.path(),
        Some(&s.bearer()),
        br#"{"content":"m11"}"#,
    )
    .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (429, "rate_limited"),
        "{}",
        r.body
    );
    assert_eq!(
        r.retry_after,
        Some(6),
        "Retry-After is when the next token comes (10 per minute: one every 6 s)"
    );
    assert_eq!(
        h.all_messages(&s.id).await.len(),
        10,
        "the 11th is not stored"
    );
    h.send(&other, "hi", None, None)
        .await
        .expect("the limit is per session");

    h.clock.advance(5_999);
    assert_eq!(
        h.send(&s, "m11", None, None).await.unwrap_err().status(),
        429,
        "before the next token"
    );
    h.clock.advance(1);
    let m = h.send(&s, "m11", None, None).await.expect("the next token");
    assert_eq!(m.seq, 11);
    assert_eq!(
        h.send(&s, "m12", None, None).await.unwrap_err().status(),
        429,
        "one token, one message"
    );
}

#[tokio::test]
async fn a_minute_boundary_does_not_double_the_burst() {
    // Fixed windows let 10 through at 0:59 and 10 more at 1:01.
    let h = H::new();
    let s = h.session().await;
    let mut stored = 0;
    for (at, n) in [(59_000, 10), (61_000, 10)] {
        h.clock.set(T0 + at);
        for i in 0..n {
            if h.send(&s, &format!("m{at}-{i}"), None, None).await.is_ok() {
                stored += 1;
            }
        }
    }
    assert_eq!(stored, 10, "10 per minute, whatever the clock says");
}

#[tokio::test]
async fn a_retry_of_a_stored_message_is_answered_past_the_limit_and_spends_nothing() {
    let h = H::new();
    let s = h.session().await;
    let first = h.send(&s, "m1", Some("c1"), None).await.unwrap();
    for i in 2..=10 {
        h.send(&s, &format!("m{i}"), None, None).await.unwrap();
    }
    assert_eq!(
        h.send(&s, "m11", None, None).await.unwrap_err().status(),
        429
    );
    // The client did not see the ack of m1 and retries it, many times: each answered.
    for _ in 0..20 {
        let again = h.send(&s, "m1", Some("c1"), None).await.expect("a retry");
        assert_eq!(again.id, first.id);
    }
    // And the retries spent nothing: the next token comes when it would have anyway.
    h.clock.advance(6_000);
    h.send(&s, "m11", None, None).await.expect("the next token");
}

// ----- dispatch ------------------------------------------------------------------------------

#[tokio::test]
async fn delivered_marks_dispatched_and_pushes_status_and_typing_and_redelivery_is_skipped() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hello").await;
    h.push.take();

    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Dispatched);
    assert_eq!(
        h.frames("c1"),
        vec![
            json!({"event":"status","sessionId":s.id.to_string(),"messageId":m.id.to_string(),"status":"dispatched"}),
            json!({"event":"typing","role":"assistant","isTyping":true}),
        ]
    );
    assert_eq!(h.agent.requests().len(), 1);

    h.push.take();
    for attempt in [1, 2] {
        assert_eq!(
            h.dispatcher.dispatch(job, attempt).await.unwrap(),
            DispatchOutcome::Skipped,
            "a redelivery (attempt {attempt}) is skipped"
        );
    }
    assert_eq!(h.agent.requests().len(), 1, "n8n is not called again");
    assert!(
        h.push.take().is_empty(),
        "a skipped redelivery pushes nothing"
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Dispatched);

    // A job for a message that does not exist is skipped too.
    let ghost = DispatchJob::dispatch(s.id, MessageId::new());
    assert_eq!(
        h.dispatcher.dispatch(ghost, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
}

#[tokio::test]
async fn a_failing_agent_is_retried_with_doubling_delays_then_dead_lettered() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hello").await;
    h.push.take();
    h.agent.set_failing(true);

    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Retry(Duration::from_millis(1000))
    );
    assert_eq!(
        h.dispatcher.dispatch(job, 2).await.unwrap(),
        DispatchOutcome::Retry(Duration::from_millis(2000))
    );
    assert_eq!(
        h.message(&s, &m.id).await.status,
        MessageStatus::Received,
        "still waiting"
    );
    assert!(h.push.take().is_empty(), "retries push nothing");
    assert_eq!(
        h.dispatcher.dispatch(job, 3).await.unwrap(),
        DispatchOutcome::DeadLettered
    );
    assert_eq!(h.agent.requests().len(), 3, "three attempts reached n8n");

    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Failed);
    let all = h.all_messages(&s.id).await;
    assert_eq!(all.len(), 2);
    let sys = &all[1];
    assert_eq!(
        (sys.role, sys.kind, sys.status),
        (Role::System, MessageType::Error, MessageStatus::Delivered)
    );
    assert_eq!(sys.reply_to, Some(m.id));
    assert_eq!(sys.content, FAILED_TEXT);
    assert_eq!(sys.seq, 2);
    assert_eq!(
        h.frames("c1"),
        vec![
            json!({"event":"status","sessionId":s.id.to_string(),"messageId":m.id.to_string(),"status":"failed"}),
            json!({"event":"message","message":msg_json(sys)}),
            json!({"event":"typing","role":"assistant","isTyping":false}),
        ]
    );
    let v = msg_json(sys);
    assert_eq!(
        (v["role"].as_str(), v["type"].as_str()),
        (Some("system"), Some("error"))
    );
    assert_eq!(v["replyTo"], m.id.to_string());
}

#[tokio::test]
async fn retry_delays_double_from_the_configured_backoff() {
    let mut config = chat_testkit::config();
    config.dispatch.max_attempts = 4;
    config.dispatch.backoff = Duration::from_millis(250);
    let h = H::with_config(config);
    let s = h.session().await;
    let (_, job) = h.user_message(&s, "hello").await;
    h.agent.set_failing(true);
    let mut outcomes = Vec::new();
    for attempt in 1..=4 {
        outcomes.push(h.dispatcher.dispatch(job, attempt).await.unwrap());
    }
    assert_eq!(
        outcomes,
        vec![
            DispatchOutcome::Retry(Duration::from_millis(250)),
            DispatchOutcome::Retry(Duration::from_millis(500)),
            DispatchOutcome::Retry(Duration::from_millis(1000)),
            DispatchOutcome::DeadLettered,
        ]
    );
}

#[tokio::test]
async fn an_agent_that_recovers_delivers_on_a_later_attempt() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hello").await;
    h.agent.set_failing(true);
    assert!(matches!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Retry(_)
    ));
    h.agent.set_failing(false);
    assert_eq!(
        h.dispatcher.dispatch(job, 2).await.unwrap(),
        DispatchOutcome::Delivered
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Dispatched);
    assert_eq!(h.all_messages(&s.id).await.len(), 1, "no error message");
}

#[tokio::test]
async fn dead_letter_twice_writes_one_system_message() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hello").await;
    h.dispatcher.dead_letter(job).await.unwrap();
    assert_eq!(h.all_messages(&s.id).await.len(), 2);
    h.push.take();
    h.dispatcher.dead_letter(job).await.unwrap();
    let all = h.all_messages(&s.id).await;
    assert_eq!(all.len(), 2, "the second dead letter writes nothing");
    assert_eq!(all.iter().filter(|x| x.role == Role::System).count(), 1);
    assert!(
        h.push.take().is_empty(),
        "the second dead letter pushes nothing"
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Failed);
}

#[tokio::test]
async fn dead_letter_after_an_answer_does_nothing() {
    let h = H::new();
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hello").await;
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "answer"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    h.dispatcher.dead_letter(job).await.unwrap();
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    assert!(
        h.all_messages(&s.id)
            .await
            .iter()
            .all(|x| x.role != Role::System),
        "no error message after an answer"
    );
}

#[tokio::test]
async fn the_outbound_request_is_signed_and_carries_the_message_history_and_callback() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    let first = h.send(&s, "first", None, None).await.unwrap();
    h.clock.advance(2_000);
    let second = h
        .svc
        .send(
            h.sref(&s),
            SendInput {
                content: "second".into(),
                client_message_id: Some("cm-2".into()),
                metadata: Some(json!({"page": "/pricing"}).as_object().unwrap().clone()),
            },
            None,
        )
        .await
        .unwrap();
    let jobs = h.queue.drain();
    assert_eq!(jobs.len(), 2);
    h.clock.advance(3_000);
    assert_eq!(
        h.dispatcher.dispatch(jobs[1], 1).await.unwrap(),
        DispatchOutcome::Delivered
    );

    let reqs = h.agent.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.timestamp, (h.now() / 1000).to_string());
    signature::verify(
        WEBHOOK_SECRET,
        Some(&req.timestamp),
        Some(&req.signature),
        &req.body,
        h.now() / 1000,
    )
    .expect("the outbound request verifies with the webhook secret");
    assert!(
        signature::verify(
            b"wrong",
            Some(&req.timestamp),
            Some(&req.signature),
            &req.body,
            h.now() / 1000
        )
        .is_err(),
        "and only with it"
    );
    let v: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(v["sessionId"], s.id.to_string());
    assert_eq!(v["messageId"], second.id.to_string());
    assert_eq!(v["content"], "second");
    assert_eq!(v["metadata"], json!({"page": "/pricing"}));
    assert!(v.get("userId").is_none(), "a guest has no userId");
    assert_eq!(
        v["history"],
        json!([msg_json(&first)]),
        "history is the earlier messages only"
    );
    assert_eq!(v["callbackUrl"], "http://127.0.0.1:3000/webhook");
}

#[tokio::test]
async fn the_outbound_request_names_the_user_and_trims_the_public_url() {
    let mut config = chat_testkit::config();
    config.public_url = "https://chat.example.com/".into();
    let h = H::with_config(config);
    let jwt = app_jwt(APP_SECRET, "user-7", T0 / 1000 + 600);
    let c = h.svc.create_session("192.0.2.1", Some(&jwt)).await.unwrap();
    let s = S {
        id: c.session_id,
        token: c.token,
    };
    let (_, job) = h.user_message(&s, "hi").await;
    h.dispatcher.dispatch(job, 1).await.unwrap();
    let v: Value = serde_json::from_slice(&h.agent.requests()[0].body).unwrap();
    assert_eq!(v["userId"], "user-7");
    assert_eq!(v["callbackUrl"], "https://chat.example.com/webhook");
    assert_eq!(v["history"], json!([]));
}

// ----- webhook -------------------------------------------------------------------------------

#[tokio::test]
async fn a_reply_is_stored_once_per_event_id_answers_the_message_and_is_pushed() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    let (m, job) = h.user_message(&s, "when can we meet?").await;
    h.dispatcher.dispatch(job, 1).await.unwrap();
    h.push.take();

    let body = json!({
        "sessionId": s.id, "replyTo": m.id, "content": "Tuesday at 10?",
        "type": "scheduling_update", "data": {"slot": "2025-01-07T10:00:00Z"}, "eventId": "ev-1"
    });
    let r = h.webhook(body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reply_id: MessageId = json_of(&r)["messageId"].as_str().unwrap().parse().unwrap();
    let reply = h.message(&s, &reply_id).await;
    assert_eq!(
        (reply.role, reply.kind, reply.status),
        (
            Role::Assistant,
            MessageType::SchedulingUpdate,
            MessageStatus::Delivered
        )
    );
    assert_eq!((reply.seq, reply.reply_to), (2, Some(m.id)));
    assert_eq!(reply.content, "Tuesday at 10?");
    assert_eq!(
        Value::Object(reply.data.clone().unwrap()),
        json!({"slot": "2025-01-07T10:00:00Z"})
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    for c in ["c1", "c2"] {
        assert_eq!(
            h.frames(c),
            vec![
                json!({"event":"message","message":msg_json(&reply)}),
                json!({"event":"status","sessionId":s.id.to_string(),"messageId":m.id.to_string(),"status":"answered"}),
            ],
            "frames of {c}"
        );
    }

    // The same callback again (n8n retried): the same id, nothing written or pushed.
    h.push.take();
    h.clock.advance(5_000);
    let r = h.webhook(body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["messageId"], reply_id.to_string());
    assert_eq!(h.all_messages(&s.id).await.len(), 2);
    assert!(
        h.push.take().is_empty(),
        "a repeated callback pushes nothing"
    );

    // Another event for the same message is a new reply.
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "Or Wednesday?", "eventId": "ev-2"}))
        .await;
    assert_eq!(r.status, 200);
    assert_ne!(json_of(&r)["messageId"], reply_id.to_string());
    assert_eq!(h.all_messages(&s.id).await.len(), 3);
}

#[tokio::test]
async fn reply_to_without_event_id_also_dedupes() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, _) = h.user_message(&s, "hi").await;
    let body = json!({"sessionId": s.id, "replyTo": m.id, "content": "hello"});
    let r1 = h.webhook(body.clone()).await;
    assert_eq!(r1.status, 200, "{}", r1.body);
    h.push.take();
    let r2 = h.webhook(body).await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    assert_eq!(json_of(&r1)["messageId"], json_of(&r2)["messageId"]);
    assert_eq!(h.all_messages(&s.id).await.len(), 2);
    assert!(h.push.take().is_empty());

    // Without replyTo or eventId, the signature is the key: a captured call replayed within
    // the timestamp window stores nothing new.
    let news = json!({"sessionId": s.id, "content": "news"});
    let (ts, sig, bytes) = h.signed(&news);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = api::webhook(&h.svc, "192.0.2.9", Some(&ts), Some(&sig), &bytes).await;
        assert_eq!(r.status, 200, "{}", r.body);
        ids.push(json_of(&r)["messageId"].clone());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one reply: {ids:?}");
    assert_eq!(h.all_messages(&s.id).await.len(), 3);
    // Signed again later by n8n (a new timestamp), it is a new reply.
    h.clock.advance(1_000);
    assert_eq!(h.webhook(news).await.status, 200);
    assert_eq!(h.all_messages(&s.id).await.len(), 4);
}

/// An agent that, like a fast n8n, answers through the webhook before `deliver` returns.
struct AnsweringAgent {
    svc: ChatService,
}

#[async_trait]
impl Agent for AnsweringAgent {
    async fn deliver(&self, request: SignedRequest) -> Result<(), AgentError> {
        let v: Value = serde_json::from_slice(&request.body).unwrap();
        let body = serde_json::to_vec(&json!({
            "sessionId": v["sessionId"], "replyTo": v["messageId"], "content": "fast answer"
        }))
        .unwrap();
        let ts = (self.svc.now() / 1000).to_string();
        let sig = signature::sign(WEBHOOK_SECRET, &ts, &body);
        self.svc
            .receive_reply("192.0.2.1", Some(&ts), Some(&sig), &body)
            .await
            .map_err(|e| AgentError(e.to_string()))?;
        Ok(())
    }
}

#[tokio::test]
async fn a_late_dispatched_never_regresses_answered() {
    let h = H::with_agent(chat_testkit::config(), |svc| {
        Arc::new(AnsweringAgent { svc: svc.clone() })
    });
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hi").await;
    h.push.take();

    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    assert_eq!(
        h.message(&s, &m.id).await.status,
        MessageStatus::Answered,
        "the answer that arrived during delivery stays"
    );
    let events = h.events("c1");
    assert_eq!(
        events,
        ["message", "status"],
        "no dispatched status or typing after the answer"
    );
    assert_eq!(h.frames("c1")[1]["status"], "answered");

    // A redelivery after the answer is skipped and changes nothing.
    h.push.take();
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    assert!(h.push.take().is_empty());
}

#[tokio::test]
async fn an_answer_before_the_dispatch_skips_it() {
    let h = H::with_config(chat_testkit::config());
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hi").await;
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "a"}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert!(
        h.agent.requests().is_empty(),
        "an answered message is not sent to n8n"
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
}

#[tokio::test]
async fn webhook_signature_failures_are_401_and_write_nothing() {
    let h = H::new();
    let s = h.session().await;
    let body = serde_json::to_vec(&json!({"sessionId": s.id, "content": "hi"})).unwrap();
    let now = (h.now() / 1000).to_string();
    let good = signature::sign(WEBHOOK_SECRET, &now, &body);
    let call = |ts: Option<String>, sig: Option<String>, body: Vec<u8>| {
        let h = &h;
        async move { api::webhook(&h.svc, "192.0.2.1", ts.as_deref(), sig.as_deref(), &body).await }
    };

    let wrong_secret = signature::sign(b"not the secret", &now, &body);
    let r = call(Some(now.clone()), Some(wrong_secret), body.clone()).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_signature"));
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let r = call(Some(now.clone()), Some(good.clone()), tampered).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "invalid_signature"));
    let r = call(None, Some(good.clone()), body.clone()).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "missing_signature"));
    let r = call(Some(now.clone()), None, body.clone()).await;
    assert_eq!((r.status, code_of(&r).as_str()), (401, "missing_signature"));
    for skew in [-301, 301] {
        let ts = (h.now() / 1000 + skew).to_string();
        let sig = signature::sign(WEBHOOK_SECRET, &ts, &body);
        let r = call(Some(ts), Some(sig), body.clone()).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (401, "stale_timestamp"),
            "skew {skew}"
        );
    }
    assert!(h.all_messages(&s.id).await.is_empty());

    // 300 s of skew is still accepted.
    let ts = (h.now() / 1000 - 300).to_string();
    let sig = signature::sign(WEBHOOK_SECRET, &ts, &body);
    assert_eq!(call(Some(ts), Some(sig), body.clone()).await.status, 200);
    assert_eq!(call(Some(now), Some(good), body).await.status, 200);
}

#[tokio::test]
async fn webhook_for_an_unknown_session_or_reply_to_is_404() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    let (m, _) = h.user_message(&s, "hi").await;
    let (foreign, _) = h.user_message(&other, "elsewhere").await;

    let r = h
        .webhook(json!({"sessionId": SessionId::new(), "content": "hi"}))
        .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (404, "not_found"),
        "{}",
        r.body
    );
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": MessageId::new(), "content": "hi"}))
        .await;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (404, "not_found"),
        "{}",
        r.body
    );
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": foreign.id, "content": "hi"}))
        .await;
    assert_eq!(r.status, 404, "a replyTo of another session: {}", r.body);
    assert_eq!(h.all_messages(&s.id).await, vec![m.clone()]);
    assert_eq!(
        h.message(&other, &foreign.id).await.status,
        MessageStatus::Received
    );

    // An expired session is unknown too.
    h.clock.set(T0 + 24 * HOUR);
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "late"}))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test]
async fn webhook_with_a_wrong_type_or_shape_is_400() {
    let h = H::new();
    let s = h.session().await;
    for (body, code) in [
        (
            json!({"sessionId": s.id, "content": "hi", "type": "shout"}),
            "invalid_input",
        ),
        (
            json!({"sessionId": s.id, "content": "hi", "data": [1]}),
            "invalid_input",
        ),
        (json!({"sessionId": s.id}), "invalid_input"),
        (json!({"sessionId": s.id, "content": "  "}), "content_empty"),
        (
            json!({"sessionId": s.id, "content": "hi", "eventId": "has space"}),
            "invalid_input",
        ),
    ] {
        let r = h.webhook(body.clone()).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (400, code),
            "{body}: {}",
            r.body
        );
    }
    let (ts, sig, bytes) = {
        let bytes = b"{not json".to_vec();
        let ts = (h.now() / 1000).to_string();
        let sig = signature::sign(WEBHOOK_SECRET, &ts, &bytes);
        (ts, sig, bytes)
    };
    let r = api::webhook(&h.svc, "192.0.2.1", Some(&ts), Some(&sig), &bytes).await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_json"));
    assert!(h.all_messages(&s.id).await.is_empty());

    // Every contract type is accepted.
    for t in [
        "text",
        "confirmation",
        "clarification",
        "cancellation",
        "error",
        "info",
        "scheduling_update",
    ] {
        let r = h
            .webhook(json!({"sessionId": s.id, "content": "x", "type": t}))
            .await;
        assert_eq!(r.status, 200, "type {t}: {}", r.body);
        let id: MessageId = json_of(&r)["messageId"].as_str().unwrap().parse().unwrap();
        assert_eq!(h.message(&s, &id).await.kind.as_str(), t);
    }
}

#[tokio::test]
async fn the_61st_webhook_call_in_a_minute_for_one_session_is_429() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    let reply = |s: &S, i: usize| json!({"sessionId": s.id, "content": format!("r{i}"), "eventId": format!("e{i}")});
    for i in 0..60 {
        let r = h.webhook(reply(&s, i)).await;
        assert_eq!(r.status, 200, "call {i}: {}", r.body);
    }
    let r = h.webhook(reply(&s, 60)).await;
    assert_eq!((r.status, code_of(&r).as_str()), (429, "rate_limited"));
    assert_eq!(
        r.retry_after,
        Some(1),
        "60 per minute: a token every second"
    );
    // The limit is per session: another session's replies pass.
    for i in 0..60 {
        assert_eq!(
            h.webhook(reply(&other, i)).await.status,
            200,
            "other session, call {i}"
        );
    }
    // A repeat is answered from its idempotency record and counts against nothing.
    let stored = h.webhook(reply(&s, 7)).await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    h.clock.advance(1_000);
    assert_eq!(h.webhook(reply(&s, 60)).await.status, 200, "the next token");
}

#[tokio::test]
async fn refused_webhook_calls_are_limited_per_source_ip() {
    let h = H::new();
    let s = h.session().await;
    let body = serde_json::to_vec(&json!({"sessionId": s.id, "content": "x"})).unwrap();
    let ts = (h.now() / 1000).to_string();
    for i in 0..60 {
        let r = api::webhook(&h.svc, "198.51.100.1", Some(&ts), Some("sha256=00"), &body).await;
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (401, "invalid_signature"),
            "call {i}"
        );
    }
    let r = api::webhook(&h.svc, "198.51.100.1", Some(&ts), Some("sha256=00"), &body).await;
    assert_eq!((r.status, r.retry_after), (429, Some(1)), "{}", r.body);
    let r = api::webhook(&h.svc, "198.51.100.1", None, None, &body).await;
    assert_eq!(r.status, 429, "missing signatures count too");
    // Another address, and the session's own signed replies, are not affected.
    let r = api::webhook(&h.svc, "198.51.100.2", Some(&ts), Some("sha256=00"), &body).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        h.webhook(json!({"sessionId": s.id, "content": "ok"}))
            .await
            .status,
        200
    );
}

// ----- WebSocket frames ------------------------------------------------------------------------

#[tokio::test]
async fn connect_remembers_the_connection_and_pushes_nothing() {
    let h = H::new();
    let s = h.session().await;
    let c = h.connect(&s, "c1").await;
    assert_eq!(c.session_id, s.id);
    assert_eq!(c.expires_at, T0 + 24 * HOUR);
    assert_eq!(h.store.get_connection("c1").await.unwrap(), Some(c.clone()));
    assert!(h.push.take().is_empty(), "$connect never pushes");
    assert_eq!(h.svc.connection("c1").await.unwrap(), Some(c.clone()));

    let e = h.svc.connect(None, Some(&s.token), "c2").await.unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "invalid_query"));
    let e = h
        .svc
        .connect(Some(&s.path()), None, "c2")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 401);
    assert_eq!(h.store.get_connection("c2").await.unwrap(), None);

    h.svc.disconnect("c1").await.unwrap();
    assert_eq!(h.store.get_connection("c1").await.unwrap(), None);
    h.svc
        .disconnect("c1")
        .await
        .expect("disconnecting twice is fine");

    let c = h.connect(&s, "c3").await;
    h.clock.set(c.expires_at);
    assert_eq!(
        h.svc.connection("c3").await.unwrap(),
        None,
        "an expired connection is unknown"
    );
}

#[tokio::test]
async fn an_unknown_action_is_an_error_frame_to_the_origin_only() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.svc.handle_frame(&c1, br#"{"action":"dance"}"#).await;
    let f = h.frames("c1");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0]["event"].as_str(), f[0]["code"].as_str()),
        (Some("error"), Some("unknown_action"))
    );
    assert!(
        f[0]["message"].as_str().unwrap().contains("sendMessage"),
        "the message lists the actions"
    );
    assert!(h.frames("c2").is_empty());

    h.push.take();
    for (frame, code) in [
        (&b"not json"[..], "invalid_json"),
        (&br#"{"content":"x"}"#[..], "missing_action"),
        (&br#"{"action":"read","upTo":"x"}"#[..], "invalid_input"),
    ] {
        h.svc.handle_frame(&c1, frame).await;
        let f = h.push.take();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "c1");
        let v: Value = serde_json::from_str(&f[0].1).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["code"].as_str()),
            (Some("error"), Some(code))
        );
    }
}

#[tokio::test]
async fn ping_gets_a_pong_to_the_origin_only() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.svc.handle_frame(&c1, br#"{"action":"ping"}"#).await;
    assert_eq!(
        h.push.take(),
        vec![("c1".to_string(), r#"{"event":"pong"}"#.to_string())]
    );
}

#[tokio::test]
async fn typing_is_relayed_to_the_other_connections_only() {
    let h = H::new();
    let s = h.session().await;
    let other = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.connect(&s, "c3").await;
    h.connect(&other, "c-other").await;
    h.svc
        .handle_frame(&c1, br#"{"action":"typing","isTyping":true}"#)
        .await;
    let typing = json!({"event":"typing","role":"user","isTyping":true});
    assert!(h.frames("c1").is_empty(), "not echoed to the typist");
    assert_eq!(h.frames("c2"), vec![typing.clone()]);
    assert_eq!(h.frames("c3"), vec![typing]);
    assert!(h.frames("c-other").is_empty(), "not to another session");
}

#[tokio::test]
async fn read_raises_the_mark_and_pushes_read() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    let (m, _) = h.user_message(&s, "hi").await;
    for (i, content) in ["one", "two"].iter().enumerate() {
        let r = h
            .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": content, "eventId": format!("e{i}")}))
            .await;
        assert_eq!(r.status, 200);
    }
    let view = json_of(&api::get_session(&h.svc, &s.path(), Some(&s.bearer())).await);
    assert_eq!(
        view["session"]["unreadCount"], 2,
        "two assistant messages unread: {view}"
    );
    assert_eq!(view["session"]["lastSeq"], 3);
    h.push.take();

    h.svc
        .handle_frame(&c1, br#"{"action":"read","upTo":2}"#)
        .await;
    assert_eq!(
        h.store
            .get_session(&s.id, h.now())
            .await
            .unwrap()
            .unwrap()
            .read_up_to,
        2
    );
    let read = json!({"event":"read","sessionId":s.id.to_string(),"upTo":2,"unreadCount":1});
    assert_eq!(h.frames("c1"), vec![read.clone()]);
    assert_eq!(h.frames("c2"), vec![read]);

    h.push.take();
    h.svc
        .handle_frame(&c1, br#"{"action":"read","upTo":1}"#)
        .await;
    assert_eq!(
        h.store
            .get_session(&s.id, h.now())
            .await
            .unwrap()
            .unwrap()
            .read_up_to,
        2,
        "never lowered"
    );
    assert_eq!(h.frames("c2")[0]["upTo"], 2);

    // Over HTTP: clamped to the last message.
    let r = api::mark_read(&h.svc, &s.path(), Some(&s.bearer()), br#"{"upTo":99}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        json_of(&r),
        json!({"sessionId": s.id.to_string(), "readUpTo": 3, "unreadCount": 0})
    );
    for bad in [
        &br#"{"upTo":"x"}"#[..],
        br#"{"upTo":1,"extra":true}"#,
        br#"{}"#,
    ] {
        let r = api::mark_read(&h.svc, &s.path(), Some(&s.bearer()), bad).await;
        assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_input"));
    }
}

#[tokio::test]
async fn send_message_frames_are_acked_and_their_errors_carry_the_client_message_id() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.svc
        .handle_frame(
            &c1,
            br#"{"action":"sendMessage","content":"hi","clientMessageId":"f-1"}"#,
        )
        .await;
    let stored = h.all_messages(&s.id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(h.events("c1"), ["ack", "message"]);
    assert_eq!(h.frames("c1")[0]["clientMessageId"], "f-1");
    assert_eq!(h.frames("c1")[0]["messageId"], stored[0].id.to_string());
    assert_eq!(h.events("c2"), ["message"]);
    assert_eq!(h.queue.drain().len(), 1);

    h.push.take();
    h.svc
        .handle_frame(
            &c1,
            br#"{"action":"sendMessage","content":" ","clientMessageId":"f-2"}"#,
        )
        .await;
    let f = h.frames("c1");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["event"], "error");
    assert_eq!(f[0]["code"], "content_empty");
    assert_eq!(f[0]["clientMessageId"], "f-2");
    assert!(h.frames("c2").is_empty());

    // Rate limiting over the socket is an error frame too.
    h.push.take();
    for i in 0..9 {
        h.send(&s, &format!("m{i}"), None, None).await.unwrap();
    }
    h.push.take();
    h.svc
        .handle_frame(
            &c1,
            br#"{"action":"sendMessage","content":"one too many","clientMessageId":"f-3"}"#,
        )
        .await;
    let f = h.frames("c1");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0]["code"].as_str(), f[0]["clientMessageId"].as_str()),
        (Some("rate_limited"), Some("f-3"))
    );
}

#[tokio::test]
async fn a_gone_connection_is_forgotten_by_the_next_broadcast() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    h.connect(&s, "c2").await;
    h.push.mark_gone("c2");
    let m = h.send(&s, "hi", None, None).await.unwrap();
    assert_eq!(
        h.store.get_connection("c2").await.unwrap(),
        None,
        "the gone connection is deleted"
    );
    assert!(
        h.store.get_connection("c1").await.unwrap().is_some(),
        "the live one stays"
    );
    assert_eq!(h.store.list_connections(&s.id).await.unwrap().len(), 1);
    assert_eq!(
        h.frames("c1"),
        vec![json!({"event":"message","message":msg_json(&m)})]
    );
}

#[tokio::test]
async fn a_stored_but_expired_connection_is_not_pushed_to() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "live").await;
    // A store may hold a connection past its expiry (DynamoDB's TTL deletes lazily).
    let stale = chat_core::model::Connection {
        id: "stale".into(),
        session_id: s.id,
        connected_at: h.now() - 2 * HOUR,
        expires_at: h.now() - 1,
    };
    h.store.put_connection(&stale).await.unwrap();
    h.send(&s, "hi", None, None).await.unwrap();
    assert_eq!(h.frames("live").len(), 1);
    assert!(
        h.frames("stale").is_empty(),
        "nothing is pushed to an expired connection"
    );
}

// ----- history -------------------------------------------------------------------------------

#[tokio::test]
async fn history_pages_let_a_client_catch_up() {
    let h = H::new();
    let s = h.session().await;
    for i in 1..=5 {
        h.send(&s, &format!("m{i}"), None, None).await.unwrap();
    }
    let list = |q: &'static str| {
        let h = &h;
        let path = s.path();
        let auth = s.bearer();
        async move {
            let r = api::list_messages(&h.svc, &path, Some(&auth), Some(q)).await;
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            let v = json_of(&r);
            let seqs: Vec<u64> = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_u64().unwrap())
                .collect();
            (seqs, v["hasMore"].as_bool().unwrap())
        }
    };
    assert_eq!(list("").await, (vec![1, 2, 3, 4, 5], false));
    assert_eq!(list("after=2&limit=2").await, (vec![3, 4], true));
    assert_eq!(list("after=4").await, (vec![5], false));
    assert_eq!(list("after=5").await, (vec![], false));
    assert_eq!(list("limit=2").await, (vec![4, 5], true));
    assert_eq!(list("before=3").await, (vec![1, 2], false));
    let r = api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), Some("limit=0")).await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_query"));
    let r = api::list_messages(&h.svc, &s.path(), Some(&s.bearer()), Some("limit=101")).await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_query"));
}

#[test]
fn secrets_in_the_harness_match_the_test_config() {
    let c = chat_testkit::config();
    assert_eq!(
        c.webhook_secret,
        Secret::new(String::from_utf8(WEBHOOK_SECRET.to_vec()).unwrap())
    );
    assert_eq!(
        c.auth_jwt_secret,
        Some(Secret::new(String::from_utf8(APP_SECRET.to_vec()).unwrap()))
    );
}

// ----- hardening -----------------------------------------------------------------------------

#[tokio::test]
async fn every_message_is_queued_with_a_reply_deadline() {
    let h = H::new();
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hi").await;
    assert_eq!(
        h.queue.drain_deadlines(),
        vec![(job.deadline(), m.created_at + 120_000)],
        "the deadline job, due CHAT_REPLY_TIMEOUT_MS (120 s) after the message was stored"
    );
}

#[tokio::test]
async fn a_message_n8n_accepted_but_never_answered_fails_at_its_deadline() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hi").await;
    let (deadline, due) = h.queue.drain_deadlines()[0];
    assert_eq!(
        h.dispatcher.run(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    h.push.take();

    // Run early (a queue may deliver a little early): nothing happens yet.
    h.clock.set(due - 10_000);
    assert_eq!(
        h.dispatcher.run(deadline, 1).await.unwrap(),
        DispatchOutcome::Retry(Duration::from_secs(10))
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Dispatched);

    h.clock.set(due);
    assert_eq!(
        h.dispatcher.run(deadline, 1).await.unwrap(),
        DispatchOutcome::DeadLettered
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Failed);
    let all = h.all_messages(&s.id).await;
    let notice = &all[1];
    assert_eq!(
        (
            notice.role,
            notice.kind,
            notice.reply_to,
            notice.content.as_str()
        ),
        (
            Role::System,
            MessageType::Error,
            Some(m.id),
            chat_core::service::TIMED_OUT_TEXT
        )
    );
    assert_eq!(
        h.events("c1"),
        vec!["status", "message", "typing"],
        "failed, the notice, and the typing indicator turned off"
    );
    assert_eq!(h.frames("c1")[2]["isTyping"], false);

    // A repeated deadline job changes nothing.
    h.push.take();
    assert_eq!(
        h.dispatcher.run(deadline, 2).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert!(h.push.take().is_empty());

    // A late reply is still stored, shown, and answers the message.
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "sorry, late", "eventId": "late"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    assert_eq!(h.events("c1"), vec!["message", "status"]);
}

#[tokio::test]
async fn a_message_whose_delivery_never_finished_fails_at_its_deadline() {
    // The dispatch Lambda died on its last attempt: SQS dead-lettered the record without our
    // code running, so the message is still `received`.
    let h = H::new();
    let s = h.session().await;
    let (m, _job) = h.user_message(&s, "hi").await;
    let (deadline, due) = h.queue.drain_deadlines()[0];
    h.clock.set(due + 5_000);
    assert_eq!(
        h.dispatcher.run(deadline, 1).await.unwrap(),
        DispatchOutcome::DeadLettered
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Failed);
}

#[tokio::test]
async fn the_deadline_of_an_answered_message_does_nothing() {
    let h = H::new();
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hi").await;
    let (deadline, due) = h.queue.drain_deadlines()[0];
    h.dispatcher.run(job, 1).await.unwrap();
    h.webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "answer"}))
        .await;
    h.clock.set(due);
    assert_eq!(
        h.dispatcher.run(deadline, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert_eq!(h.all_messages(&s.id).await.len(), 2, "no failure notice");
}

#[tokio::test]
async fn the_reply_timeout_is_configurable() {
    let mut config = chat_testkit::config();
    config.dispatch.reply_timeout = Duration::from_secs(30);
    let h = H::with_config(config);
    let s = h.session().await;
    let (m, _) = h.user_message(&s, "hi").await;
    assert_eq!(h.queue.drain_deadlines()[0].1, m.created_at + 30_000);
}

#[tokio::test]
async fn typing_frames_are_limited_per_connection() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    let c2 = h.connect(&s, "c2").await;
    h.connect(&s, "c3").await;
    for i in 0..40 {
        h.svc
            .handle_frame(
                &c1,
                format!(r#"{{"action":"typing","isTyping":{}}}"#, i % 2 == 0).as_bytes(),
            )
            .await;
    }
    assert_eq!(
        h.events("c3").len(),
        30,
        "30 typing frames per minute per connection"
    );
    assert!(
        h.events("c1").is_empty(),
        "no error frames for dropped typing"
    );
    // Another connection has its own budget.
    h.svc
        .handle_frame(&c2, br#"{"action":"typing","isTyping":true}"#)
        .await;
    assert_eq!(h.events("c3").len(), 31);
    h.clock.advance(2_000);
    h.svc
        .handle_frame(&c1, br#"{"action":"typing","isTyping":false}"#)
        .await;
    assert_eq!(h.events("c3").len(), 32, "one more every 2 s");
}

#[tokio::test]
async fn a_lowercase_session_id_with_its_own_token_works() {
    let h = H::new();
    let s = h.session().await;
    let lower = s.path().to_lowercase();
    let r = api::get_session(&h.svc, &lower, Some(&s.bearer())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let other = h.session().await;
    let r = api::get_session(&h.svc, &other.path().to_lowercase(), Some(&s.bearer())).await;
    assert_eq!(r.status, 403, "another session, lowercase or not");
}

#[tokio::test]
async fn invisible_or_control_content_is_400() {
    let h = H::new();
    let s = h.session().await;
    for (content, code) in [
        ("\u{200B}\u{200C}\u{200D}", "content_empty"),
        ("\u{FEFF}", "content_empty"),
        ("\0", "content_invalid"),
        ("hi\u{1b}[31m", "content_invalid"),
    ] {
        let body = serde_json::to_vec(&json!({ "content": content })).unwrap();
        let r = api::post_message(&h.svc, &s.path(), Some(&s.bearer()), &body).await;
        assert_eq!(
            (r.status, code_of(&r)),
            (400, code.to_string()),
            "{content:?}"
        );
    }
    assert!(h.all_messages(&s.id).await.is_empty());
}

#[tokio::test]
async fn replies_have_their_own_length_limit() {
    let h = H::new();
    let s = h.session().await;
    let long = "é".repeat(16_000);
    let r = h.webhook(json!({"sessionId": s.id, "content": long})).await;
    assert_eq!(r.status, 200, "a 16,000-character answer is fine");
    let r = h
        .webhook(json!({"sessionId": s.id, "content": "x".repeat(16_001)}))
        .await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "content_too_long"));
    let r = h
        .webhook(json!({"sessionId": s.id, "content": "\u{200B}"}))
        .await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "content_empty"));
}

#[tokio::test]
async fn unread_count_counts_past_one_page() {
    let h = H::new();
    let s = h.session().await;
    for i in 0..150 {
        let r = h
            .webhook(
                json!({"sessionId": s.id, "content": format!("r{i}"), "eventId": format!("e{i}")}),
            )
            .await;
        assert_eq!(r.status, 200);
        h.clock.advance(1_000);
    }
    let r = api::get_session(&h.svc, &s.path(), Some(&s.bearer())).await;
    assert_eq!(json_of(&r)["session"]["unreadCount"], 150);
    let r = api::mark_read(&h.svc, &s.path(), Some(&s.bearer()), br#"{"upTo":20}"#).await;
    assert_eq!(json_of(&r)["unreadCount"], 130);
}

/// A store whose first append answers late: until the second append is done (or 300 ms).
struct SlowFirstAppend {
    inner: MemoryStore,
    appended: tokio::sync::Notify,
    first: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Store for SlowFirstAppend {
    async fn create_session(
        &self,
        s: &chat_core::model::Session,
    ) -> Result<(), chat_core::ports::StoreError> {
        self.inner.create_session(s).await
    }
    async fn get_session(
        &self,
        id: &SessionId,
        now: Millis,
    ) -> Result<Option<chat_core::model::Session>, chat_core::ports::StoreError> {
        self.inner.get_session(id, now).await
    }
    async fn append_message(
        &self,
        m: chat_core::model::NewMessage,
    ) -> Result<Option<chat_core::ports::Appended>, chat_core::ports::StoreError> {
        let r = self.inner.append_message(m).await;
        if self.first.swap(false, Ordering::SeqCst) {
            let _ =
                tokio::time::timeout(Duration::from_millis(300), self.appended.notified()).await;
        } else {
            self.appended.notify_one();
        }
        r
    }
    async fn get_message(
        &self,
        s: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Message>, chat_core::ports::StoreError> {
        self.inner.get_message(s, id).await
    }
    async fn list_messages(
        &self,
        s: &SessionId,
        q: PageQuery,
    ) -> Result<chat_core::model::Page, chat_core::ports::StoreError> {
        self.inner.list_messages(s, q).await
    }
    async fn advance_status(
        &self,
        m: &Message,
        st: MessageStatus,
    ) -> Result<Option<Message>, chat_core::ports::StoreError> {
        self.inner.advance_status(m, st).await
    }
    async fn mark_read(
        &self,
        s: &SessionId,
        up_to: u64,
    ) -> Result<Option<chat_core::model::Session>, chat_core::ports::StoreError> {
        self.inner.mark_read(s, up_to).await
    }
    async fn put_connection(&self, c: &Connection) -> Result<(), chat_core::ports::StoreError> {
        self.inner.put_connection(c).await
    }
    async fn get_connection(
        &self,
        id: &str,
    ) -> Result<Option<Connection>, chat_core::ports::StoreError> {
        self.inner.get_connection(id).await
    }
    async fn delete_connection(&self, c: &Connection) -> Result<(), chat_core::ports::StoreError> {
        self.inner.delete_connection(c).await
    }
    async fn list_connections(
        &self,
        s: &SessionId,
    ) -> Result<Vec<Connection>, chat_core::ports::StoreError> {
        self.inner.list_connections(s).await
    }
    async fn find_by_key(
        &self,
        s: &SessionId,
        key: &str,
    ) -> Result<Option<Message>, chat_core::ports::StoreError> {
        self.inner.find_by_key(s, key).await
    }
    async fn count_unread(
        &self,
        s: &SessionId,
        after: u64,
    ) -> Result<u64, chat_core::ports::StoreError> {
        self.inner.count_unread(s, after).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_push_a_sessions_messages_in_seq_order() {
    let store = Arc::new(SlowFirstAppend {
        inner: MemoryStore::new(),
        appended: tokio::sync::Notify::new(),
        first: std::sync::atomic::AtomicBool::new(false),
    });
    let push = Arc::new(RecordingPush::default());
    let svc = ChatService::new(
        Ports {
            store: store.clone(),
            queue: Arc::new(MemoryQueue::default()),
            push: push.clone(),
            clock: Arc::new(ManualClock::new(T0)),
            limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
        },
        chat_testkit::config(),
    );
    let created = svc.create_session("10.0.0.1", None).await.unwrap();
    let claims = svc
        .authorize(Some(&created.token), &created.session_id.to_string())
        .unwrap();
    svc.connect(
        Some(&created.session_id.to_string()),
        Some(&created.token),
        "c1",
    )
    .await
    .unwrap();
    store.first.store(true, Ordering::SeqCst);
    let send = |text: &'static str| {
        let svc = svc.clone();
        let sref = SessionRef::from(&claims);
        tokio::spawn(async move {
            let input = SendInput {
                content: text.into(),
                client_message_id: None,
                metadata: None,
            };
            svc.send(sref, input, None).await.unwrap()
        })
    };
    let first = send("first");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = send("second");
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!((a.seq, b.seq), (1, 2));
    let seqs: Vec<u64> = push
        .frames_for("c1")
        .iter()
        .filter(|f| f["event"] == "message")
        .map(|f| f["message"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2], "pushed in seq order");
}
