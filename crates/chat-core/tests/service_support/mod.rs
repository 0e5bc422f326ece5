//! The harness of the service tests: the service and dispatcher on the in-memory adapters,
//! a hand-moved clock, and helpers that read what was stored and pushed. Each test file
//! `use`s all of it.
#![allow(dead_code, unused_imports)] // a prelude: each test file uses part of it

pub use async_trait::async_trait;
pub use chat_core::api::{self, Response};
pub use chat_core::config::{Config, Secret};
pub use chat_core::model::{
    Connection, DispatchJob, Message, MessageId, MessageStatus, MessageType, Millis, PageQuery,
    Role, SessionId, rfc3339,
};
pub use chat_core::ports::{Agent, AgentBody, AgentError, Clock, SignedRequest, Store, whole_body};
pub use chat_core::service::{
    ChatService, DispatchOutcome, Dispatcher, FAILED_TEXT, Ports, SendInput, SessionRef,
};
pub use chat_core::token::{SessionClaims, SessionTokens};
pub use chat_core::{ChatError, signature};
pub use chat_testkit::memory::{
    ManualClock, MemoryAttachments, MemoryFiles, MemoryQueue, MemoryStore, RecordingPush,
    ScriptedAgent,
};
pub use serde_json::{Map, Value, json};
pub use std::sync::Arc;
pub use std::sync::atomic::{AtomicU32, Ordering};
pub use std::time::Duration;

/// A start time on a 5-minute (so also a 1-minute) boundary, in whole seconds.
pub const T0: Millis = 1_700_000_100_000;
pub const HOUR: Millis = 3_600_000;
pub const WEBHOOK_SECRET: &[u8] = b"test-webhook-secret";
pub const APP_SECRET: &[u8] = b"test-app-jwt-secret";

// ----- harness -----------------------------------------------------------------------------

pub struct H {
    pub store: Arc<MemoryStore>,
    pub queue: Arc<MemoryQueue>,
    pub push: Arc<RecordingPush>,
    pub clock: Arc<ManualClock>,
    pub agent: Arc<ScriptedAgent>,
    pub attachments: Arc<MemoryAttachments>,
    pub files: Arc<MemoryFiles>,
    pub svc: ChatService,
    pub dispatcher: Dispatcher,
    pub next_ip: AtomicU32,
}

/// A session made through the service.
pub struct S {
    pub id: SessionId,
    pub token: String,
}

impl S {
    pub fn path(&self) -> String {
        self.id.to_string()
    }
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

impl H {
    pub fn new() -> Self {
        Self::with_config(chat_testkit::config())
    }

    /// The harness with the scripted agent (`self.agent`) behind the dispatcher.
    pub fn with_config(config: Config) -> Self {
        let agent = Arc::new(ScriptedAgent::default());
        let a = agent.clone();
        Self::build(config, agent, move |_| a)
    }

    /// The harness with another agent behind the dispatcher, built from the service (for
    /// agents that call back); `self.agent` then sees nothing.
    pub fn with_agent(config: Config, agent: impl FnOnce(&ChatService) -> Arc<dyn Agent>) -> Self {
        Self::build(config, Arc::new(ScriptedAgent::default()), agent)
    }

    pub fn build(
        config: Config,
        scripted: Arc<ScriptedAgent>,
        agent: impl FnOnce(&ChatService) -> Arc<dyn Agent>,
    ) -> Self {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::default());
        let push = Arc::new(RecordingPush::default());
        let clock = Arc::new(ManualClock::new(T0));
        let attachments = Arc::new(MemoryAttachments::new());
        let files = Arc::new(MemoryFiles::new());
        let svc = ChatService::new(
            Ports {
                store: store.clone(),
                queue: queue.clone(),
                push: push.clone(),
                clock: clock.clone(),
                limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
            },
            config,
        )
        .with_attachments(attachments.clone(), files.clone());
        let dispatcher = Dispatcher::new(svc.clone(), agent(&svc));
        Self {
            store,
            queue,
            push,
            clock,
            agent: scripted,
            attachments,
            files,
            svc,
            dispatcher,
            next_ip: AtomicU32::new(1),
        }
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// A guest session, from a fresh client IP so session rate limits do not interfere.
    pub async fn session(&self) -> S {
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

    pub fn sref(&self, s: &S) -> SessionRef {
        let claims = self
            .svc
            .authorize(Some(&s.token), &s.path())
            .expect("own token");
        SessionRef::from(&claims)
    }

    pub async fn connect(&self, s: &S, id: &str) -> Connection {
        self.svc
            .connect(Some(&s.path()), Some(&s.token), id)
            .await
            .expect("connect")
    }

    pub async fn send(
        &self,
        s: &S,
        content: &str,
        client_message_id: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Message, ChatError> {
        let sref = self.sref(s);
        // The sending connection, as an old client (no `v=2`) opened it.
        let origin = origin.map(|id| Connection {
            id: id.to_string(),
            session_id: sref.id,
            connected_at: 0,
            expires_at: sref.expires_at,
            merged: false,
        });
        self.svc
            .send(
                sref,
                SendInput {
                    content: content.into(),
                    client_message_id: client_message_id.map(str::to_string),
                    metadata: None,
                    attachments: Vec::new(),
                },
                origin.as_ref(),
            )
            .await
    }

    /// Sends a user message and takes its job off the queue.
    pub async fn user_message(&self, s: &S, content: &str) -> (Message, DispatchJob) {
        let m = self.send(s, content, None, None).await.expect("send");
        let jobs = self.queue.drain();
        assert_eq!(jobs.len(), 1, "one job per new message");
        (m, jobs[0])
    }

    pub async fn all_messages(&self, id: &SessionId) -> Vec<Message> {
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

    pub async fn message(&self, s: &S, id: &MessageId) -> Message {
        self.store
            .get_message(&s.id, id)
            .await
            .unwrap()
            .expect("stored message")
    }

    /// Frames pushed to one connection since the last `take`, parsed.
    pub fn frames(&self, connection: &str) -> Vec<Value> {
        self.push.frames_for(connection)
    }

    pub fn events(&self, connection: &str) -> Vec<String> {
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
    pub fn signed(&self, body: &Value) -> (String, String, Vec<u8>) {
        let bytes = serde_json::to_vec(body).unwrap();
        let ts = (self.now() / 1000).to_string();
        let sig = signature::sign(WEBHOOK_SECRET, &ts, &bytes);
        (ts, sig, bytes)
    }

    pub async fn webhook(&self, body: Value) -> Response {
        let (ts, sig, bytes) = self.signed(&body);
        api::webhook(&self.svc, "192.0.2.1", Some(&ts), Some(&sig), &bytes).await
    }
}

pub fn json_of(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", r.body))
}

pub fn code_of(r: &Response) -> String {
    json_of(r)["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {}", r.body))
        .to_string()
}

pub fn app_jwt(secret: &[u8], sub: &str, exp_secs: i64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": exp_secs}),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

pub fn msg_json(m: &Message) -> Value {
    serde_json::to_value(m).unwrap()
}
