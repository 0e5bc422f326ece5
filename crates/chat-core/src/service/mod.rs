//! The chat service: every behaviour of the contract, written against the ports.
//!
//! [`ChatService`] serves sessions, history, sends, read receipts, typing, WebSocket frames
//! and n8n's replies. [`Dispatcher`] delivers queued user messages to n8n and decides retry or
//! dead-letter. Both are cheap to clone (everything is behind `Arc`) and hold no per-request
//! state, so Lambdas build them once per cold start.
//!
//! Ordering rules the service keeps: a message is stored before anything else happens; pushes
//! are never the only copy (clients catch up with `after`); every write that can repeat
//! (client retries, queue redelivery, n8n callbacks) is idempotent.

mod answers;
mod attachments;
mod canned;
mod dispatcher;
mod edits;
mod fanout;
mod frames;
mod greeting;
mod handoff;
mod inbox;
mod keep;
mod replies;
mod sending;
mod sessions;

pub use canned::{CannedInput, MAX_CANNED_TEXT_CHARS, MAX_CANNED_TITLE_CHARS};
pub use dispatcher::{DispatchOutcome, Dispatcher};
pub use edits::Editor;
pub use handoff::{CLOSED_TEXT, NO_ONE_TEXT, WAITING_TEXT};
pub use inbox::{AgentSendInput, InboxPage};
pub use keep::{Conversation, ConversationsPage, Export, ExportedSession, MAX_CONVERSATIONS_PAGE};

use crate::auth::AppAuth;
use crate::config::Config;
use crate::events::ServerEvent;
use crate::model::{Connection, Message, MessageId, MessageType, Millis, SessionId};
use crate::ports::{Clock, JwksSource, Push, Queue, Store};
use crate::rate::Limiter;
use crate::token::{SessionClaims, SessionTokens};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The adapters a deployment plugs in.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub push: Arc<dyn Push>,
    pub clock: Arc<dyn Clock>,
    /// Where rate-limit buckets live.
    pub limiter: Arc<dyn Limiter>,
}

/// One async lock per session with appends in flight. An append and the push of what it
/// appended happen under the session's lock, so every connection receives a session's
/// messages in `seq` order even when several writers (senders, replies, failures) race.
#[derive(Default)]
struct SessionLocks(std::sync::Mutex<HashMap<SessionId, Arc<futures_util::lock::Mutex<()>>>>);

impl SessionLocks {
    async fn run<T>(&self, session: SessionId, work: impl std::future::Future<Output = T>) -> T {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(session).or_default().clone()
        };
        let out = {
            let _guard = lock.lock().await;
            work.await
        };
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else waits, so the entry goes.
        if Arc::strong_count(&lock) == 2 {
            map.remove(&session);
        }
        out
    }
}

/// A session as far as a write needs to know it: which one, and when it expires. Both come
/// from a verified token or a stored connection, so writes need no extra read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    pub id: SessionId,
    pub expires_at: Millis,
}

impl From<&SessionClaims> for SessionRef {
    fn from(c: &SessionClaims) -> Self {
        Self {
            id: c.sid,
            expires_at: c.exp.saturating_mul(1000),
        }
    }
}

impl From<&Connection> for SessionRef {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.session_id,
            expires_at: c.expires_at,
        }
    }
}

/// A new session as `POST /sessions` returns it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedSession {
    pub session_id: SessionId,
    pub token: String,
    #[serde(serialize_with = "ser_time")]
    pub expires_at: Millis,
    pub websocket_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

fn ser_time<S: serde::Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::model::rfc3339(*ms))
}

/// A user message to send (`POST /sessions/{id}/messages` or the `sendMessage` action).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendInput {
    pub content: String,
    #[serde(default)]
    pub client_message_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Ids of uploaded attachments (`POST /sessions/{id}/attachments`) this message carries.
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// A reply from n8n (`POST /webhook`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReply {
    pub session_id: SessionId,
    #[serde(default)]
    pub reply_to: Option<MessageId>,
    pub content: String,
    #[serde(default, rename = "type")]
    pub kind: Option<MessageType>,
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    #[serde(default)]
    pub event_id: Option<String>,
}

fn ack_of(m: &Message) -> ServerEvent {
    ServerEvent::Ack {
        client_message_id: m.client_message_id.clone(),
        message_id: m.id,
        seq: m.seq,
    }
}

/// What `dispatch` sends to n8n. `action` and `chatInput` (= `content`) let n8n's Chat
/// Trigger node take it unchanged; `sessionMetadata` is what the app gave at `POST /sessions`,
/// beside the message's own `metadata`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPayload<'a> {
    pub action: &'static str,
    pub session_id: SessionId,
    pub message_id: MessageId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    pub content: &'a str,
    pub chat_input: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_metadata: Option<&'a Map<String, Value>>,
    pub history: &'a [Message],
    pub callback_url: String,
    /// The user message itself, as stored (with fresh attachment URLs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a Message>,
    /// The message's attachments with download URLs valid one hour (also in `message`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub attachments: &'a [crate::model::AttachmentMeta],
}

/// Read state after a read receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    pub session_id: SessionId,
    pub read_up_to: u64,
    pub unread_count: u64,
}

/// The text of the `system` message that tells a user their message could not be delivered.
pub const FAILED_TEXT: &str = "Sorry, the assistant could not be reached, so your message was not answered. Please try again.";

/// The text of the `system` message that tells a user no reply came in time.
pub const TIMED_OUT_TEXT: &str =
    "Sorry, no answer came in time, so your message was not answered. Please try again.";

/// The text of the `system` message that tells a user n8n's answer could not be used.
pub const BAD_ANSWER_TEXT: &str = "Sorry, the assistant's answer could not be read, so your message was not answered. Please try again.";

/// The text of the `system` message that tells a user a streamed answer broke off.
pub const INTERRUPTED_TEXT: &str =
    "Sorry, the assistant's answer broke off before it was complete. Please try again.";

/// Why a user message ended `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// n8n could not be reached (every attempt failed).
    Unreachable,
    /// n8n accepted it, but no reply came before the reply deadline.
    TimedOut,
    /// n8n answered 2xx with a body that is neither an answer, a stream nor an
    /// acknowledgement (the code is [`crate::answer::BadAnswer::code`]).
    BadAnswer(&'static str),
    /// A streamed answer broke off (an error chunk, a bad line, a dropped connection, the
    /// time limit); what came is stored, marked incomplete.
    Interrupted(&'static str),
}

impl FailReason {
    fn text(self) -> &'static str {
        match self {
            Self::Unreachable => FAILED_TEXT,
            Self::TimedOut => TIMED_OUT_TEXT,
            Self::BadAnswer(_) => BAD_ANSWER_TEXT,
            Self::Interrupted(_) => INTERRUPTED_TEXT,
        }
    }

    /// The failure notice's `data`: the reason, for the new kinds of failure.
    fn data(self) -> Option<Map<String, Value>> {
        match self {
            Self::Unreachable | Self::TimedOut => None,
            Self::BadAnswer(code) | Self::Interrupted(code) => {
                let mut m = Map::new();
                m.insert("reason".into(), Value::String(code.into()));
                Some(m)
            }
        }
    }
}

/// Every chat behaviour except delivery to n8n.
#[derive(Clone)]
pub struct ChatService {
    ports: Ports,
    config: Arc<Config>,
    tokens: SessionTokens,
    locks: Arc<SessionLocks>,
    auth: AppAuth,
    attachments: Option<attachments::AttachmentPorts>,
}

impl ChatService {
    pub fn new(ports: Ports, config: Config) -> Self {
        let tokens = SessionTokens::new(config.session_secret.expose().as_bytes());
        let auth = AppAuth::new(&config, None);
        Self {
            ports,
            config: Arc::new(config),
            tokens,
            locks: Arc::default(),
            auth,
            attachments: None,
        }
    }

    /// Plugs in the source of `CHAT_AUTH_JWKS_URL`'s key set (fetched on first use).
    pub fn with_jwks(mut self, source: Arc<dyn JwksSource>) -> Self {
        self.auth = AppAuth::new(&self.config, Some(source));
        self
    }

    pub(crate) fn limiter(&self) -> &dyn Limiter {
        &*self.ports.limiter
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &dyn Store {
        &*self.ports.store
    }

    pub fn now(&self) -> Millis {
        self.ports.clock.now_ms()
    }
}
