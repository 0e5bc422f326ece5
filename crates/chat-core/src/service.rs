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

use crate::ChatError;
use crate::auth::AppAuth;
use crate::config::Config;
use crate::events::{ClientAction, ServerEvent};
use crate::model::{
    Connection, DispatchJob, JobKind, Message, MessageId, MessageStatus, MessageType, Millis,
    NewMessage, Page, PageQuery, Role, Session, SessionId,
};
use crate::ports::{Agent, Clock, JwksSource, Push, PushError, Queue, SignedRequest, Store};
use crate::rate::{Limiter, Rate};
use crate::token::{SessionClaims, SessionTokens};
use crate::{rate, signature, validate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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

/// What `dispatch` sends to n8n.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPayload<'a> {
    pub session_id: SessionId,
    pub message_id: MessageId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    pub content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a Map<String, Value>>,
    pub history: &'a [Message],
    pub callback_url: String,
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

/// Why a user message ended `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// n8n could not be reached (every attempt failed).
    Unreachable,
    /// n8n accepted it, but no reply came before the reply deadline.
    TimedOut,
}

impl FailReason {
    fn text(self) -> &'static str {
        match self {
            Self::Unreachable => FAILED_TEXT,
            Self::TimedOut => TIMED_OUT_TEXT,
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
        }
    }

    /// Plugs in the source of `CHAT_AUTH_JWKS_URL`'s key set (fetched on first use).
    pub fn with_jwks(mut self, source: Arc<dyn JwksSource>) -> Self {
        self.auth = AppAuth::new(&self.config, Some(source));
        self
    }

    fn limiter(&self) -> &dyn Limiter {
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

    // ----- sessions ---------------------------------------------------------------------

    /// Creates a guest session, or a user session when `app_token` is a valid app JWT.
    pub async fn create_session(
        &self,
        client_ip: &str,
        app_token: Option<&str>,
    ) -> Result<CreatedSession, ChatError> {
        let now = self.now();
        let user_id = match app_token {
            None => None,
            Some(t) => Some(self.auth.verify(t, now).await?),
        };
        let limits = &self.config.limits;
        rate::hit(
            self.limiter(),
            "sessions",
            client_ip,
            Rate::per(limits.sessions_per_5min, 300_000),
            now,
        )
        .await?;
        let ttl = if user_id.is_some() {
            limits.user_session_ttl
        } else {
            limits.guest_session_ttl
        };
        // Whole seconds, so the token's expiry and the session's agree exactly.
        let expires_at = (now + ttl.as_millis() as Millis) / 1000 * 1000;
        let session = Session {
            id: SessionId::new(),
            user_id: user_id.clone(),
            created_at: now,
            expires_at,
            last_seq: 0,
            read_up_to: 0,
        };
        self.store().create_session(&session).await?;
        let token = self.tokens.issue(&SessionClaims {
            sid: session.id,
            sub: user_id.clone(),
            exp: expires_at / 1000,
            iat: now / 1000,
        });
        tracing::info!(session_id = %session.id, user = user_id.is_some(), "session created");
        Ok(CreatedSession {
            session_id: session.id,
            token,
            expires_at,
            websocket_url: self.config.websocket_url.clone(),
            user_id,
        })
    }

    /// Checks that `token` opens the session named `session` (a path or query parameter).
    /// 401 without a valid token, 403 for another session's token.
    pub fn authorize(
        &self,
        token: Option<&str>,
        session: &str,
    ) -> Result<SessionClaims, ChatError> {
        let token = token.ok_or_else(|| {
            ChatError::unauthorized(
                "missing_token",
                "a session token is required (Authorization: Bearer <token>)",
            )
        })?;
        let claims = self.tokens.verify(token, self.now())?;
        // Compared as ids, not text: a ULID is case-insensitive, so `01j…` names `01J…`.
        if session.parse::<SessionId>()? != claims.sid {
            return Err(ChatError::Forbidden(
                "this token belongs to another session".into(),
            ));
        }
        Ok(claims)
    }

    async fn load_session(&self, id: &SessionId) -> Result<Session, ChatError> {
        self.store()
            .get_session(id, self.now())
            .await?
            .ok_or_else(|| ChatError::NotFound("unknown session".into()))
    }

    /// `GET /sessions/{id}`: the session and its latest messages.
    pub async fn session_view(
        &self,
        claims: &SessionClaims,
    ) -> Result<(crate::model::SessionView, Page), ChatError> {
        let session = self.load_session(&claims.sid).await?;
        let page = self
            .store()
            .list_messages(
                &session.id,
                PageQuery {
                    after: None,
                    before: None,
                    limit: 50.min(self.config.limits.max_page),
                },
            )
            .await?;
        let unread = self.unread_count(&session.id, session.read_up_to).await?;
        Ok((crate::model::SessionView::new(&session, unread), page))
    }

    /// `GET /sessions/{id}/messages`: a page of history.
    pub async fn history(
        &self,
        claims: &SessionClaims,
        query: PageQuery,
    ) -> Result<Page, ChatError> {
        let page = self.store().list_messages(&claims.sid, query).await?;
        if page.messages.is_empty()
            && self
                .store()
                .get_session(&claims.sid, self.now())
                .await?
                .is_none()
        {
            return Err(ChatError::NotFound("unknown session".into()));
        }
        Ok(page)
    }

    async fn unread_count(&self, session: &SessionId, read_up_to: u64) -> Result<u64, ChatError> {
        Ok(self.store().count_unread(session, read_up_to).await?)
    }

    // ----- sending ----------------------------------------------------------------------

    /// Stores a user message, queues it for n8n and pushes it to the session's connections
    /// (with an `ack` first to `origin`, the sending connection, if any).
    ///
    /// A repeat with the same `clientMessageId` returns the stored message (and queues it
    /// again if it never left `received`) without counting against the rate limit; the same
    /// id with other content is a 409.
    pub async fn send(
        &self,
        session: SessionRef,
        input: SendInput,
        origin: Option<&str>,
    ) -> Result<Message, ChatError> {
        let limits = &self.config.limits;
        validate::content(&input.content, limits.max_content_chars)?;
        if let Some(id) = &input.client_message_id {
            validate::key("clientMessageId", id)?;
        }
        if let Some(m) = &input.metadata {
            validate::object_size("metadata", m, limits.max_metadata_bytes)?;
        }
        let key = input
            .client_message_id
            .as_ref()
            .map(|c| format!("client#{c}"));
        // A client's retry of a stored message is answered from the store, before the limit.
        if let Some(key) = &key
            && let Some(stored) = self.store().find_by_key(&session.id, key).await?
        {
            return self
                .repeated_send(session, stored, &input.content, origin)
                .await;
        }
        let now = self.now();
        rate::hit(
            self.limiter(),
            "messages",
            &session.id.to_string(),
            Rate::per(limits.messages_per_minute, 60_000),
            now,
        )
        .await?;
        let new = NewMessage {
            id: MessageId::new(),
            session_id: session.id,
            role: Role::User,
            kind: MessageType::Text,
            idempotency_key: key,
            content: input.content,
            data: None,
            metadata: input.metadata,
            status: MessageStatus::Received,
            created_at: now,
            reply_to: None,
            client_message_id: input.client_message_id,
            expires_at: session.expires_at,
        };
        let content = new.content.clone();
        self.locks
            .run(session.id, async {
                let appended = self
                    .store()
                    .append_message(new)
                    .await?
                    .ok_or_else(|| ChatError::NotFound("unknown session".into()))?;
                if !appended.created {
                    // A concurrent repeat won the race to the idempotency key.
                    return self
                        .repeated_send(session, appended.message, &content, origin)
                        .await;
                }
                let message = appended.message;
                self.enqueue(&message).await?;
                if let Some(origin) = origin {
                    self.push_to(&session.id, origin, &ack_of(&message).to_frame())
                        .await;
                }
                tracing::info!(session_id = %session.id, message_id = %message.id, seq = message.seq, "message received");
                self.broadcast(
                    &session.id,
                    &ServerEvent::Message {
                        message: message.clone(),
                    },
                    None,
                )
                .await;
                Ok(message)
            })
            .await
    }

    /// A send whose `clientMessageId` is already stored: 409 for other content, else the
    /// stored message (acked again, and queued again if it never left `received`).
    async fn repeated_send(
        &self,
        session: SessionRef,
        stored: Message,
        content: &str,
        origin: Option<&str>,
    ) -> Result<Message, ChatError> {
        if stored.content != content {
            return Err(ChatError::Conflict(
                "clientMessageId was already used for a different message".into(),
            ));
        }
        if stored.status == MessageStatus::Received {
            self.enqueue(&stored).await?;
        }
        if let Some(origin) = origin {
            self.push_to(&session.id, origin, &ack_of(&stored).to_frame())
                .await;
        }
        Ok(stored)
    }

    /// Queues a user message for n8n, with its reply deadline counted from when it was stored.
    async fn enqueue(&self, message: &Message) -> Result<(), ChatError> {
        let timeout = self.config.dispatch.reply_timeout.as_millis() as Millis;
        self.ports
            .queue
            .enqueue(
                DispatchJob::dispatch(message.session_id, message.id),
                message.created_at.saturating_add(timeout),
            )
            .await?;
        Ok(())
    }

    /// A read receipt: raises the session's read mark and tells its connections.
    pub async fn mark_read(&self, session: SessionRef, up_to: u64) -> Result<ReadState, ChatError> {
        let s = self
            .store()
            .mark_read(&session.id, up_to)
            .await?
            .ok_or_else(|| ChatError::NotFound("unknown session".into()))?;
        let state = ReadState {
            session_id: s.id,
            read_up_to: s.read_up_to,
            unread_count: self.unread_count(&s.id, s.read_up_to).await?,
        };
        let event = ServerEvent::Read {
            session_id: s.id,
            up_to: state.read_up_to,
            unread_count: state.unread_count,
        };
        self.broadcast(&s.id, &event, None).await;
        Ok(state)
    }

    // ----- WebSocket --------------------------------------------------------------------

    /// A WebSocket connects with `?sessionId=&token=`; it is remembered for fan-out.
    /// Nothing is pushed here: on API Gateway the connection does not exist until this returns.
    pub async fn connect(
        &self,
        session: Option<&str>,
        token: Option<&str>,
        connection_id: &str,
    ) -> Result<Connection, ChatError> {
        let session = session.filter(|s| !s.is_empty()).ok_or_else(|| {
            ChatError::invalid(
                "invalid_query",
                "sessionId is required in the WebSocket URL",
            )
        })?;
        let claims = self.authorize(token, session)?;
        let session = self.load_session(&claims.sid).await?;
        let connection = Connection {
            id: connection_id.to_string(),
            session_id: session.id,
            connected_at: self.now(),
            expires_at: session.expires_at,
        };
        self.store().put_connection(&connection).await?;
        tracing::info!(session_id = %session.id, connection_id, "connected");
        Ok(connection)
    }

    /// Forgets a connection. Best effort: stale ones are also removed when a push finds them gone.
    pub async fn disconnect(&self, connection_id: &str) -> Result<(), ChatError> {
        if let Some(c) = self.store().get_connection(connection_id).await? {
            self.store().delete_connection(&c).await?;
            tracing::info!(session_id = %c.session_id, connection_id, "disconnected");
        }
        Ok(())
    }

    /// The connection behind a WebSocket message (`None` if it is unknown or has expired).
    pub async fn connection(&self, connection_id: &str) -> Result<Option<Connection>, ChatError> {
        let c = self.store().get_connection(connection_id).await?;
        Ok(c.filter(|c| c.expires_at > self.now()))
    }

    /// A WebSocket message known only by its connection id (as API Gateway delivers it): finds
    /// the connection's session, then handles the frame. An unknown or expired connection is
    /// told to reconnect.
    pub async fn handle_message(&self, connection_id: &str, frame: &[u8]) {
        let error = match self.connection(connection_id).await {
            Ok(Some(c)) => return self.handle_frame(&c, frame).await,
            Ok(None) => ChatError::unauthorized(
                "unknown_connection",
                "this connection is not open (its session may have expired); reconnect",
            ),
            Err(e) => e,
        };
        if let Err(e) = self
            .ports
            .push
            .push(connection_id, &ServerEvent::error(&error).to_frame())
            .await
        {
            tracing::info!(error = %e, connection_id, "could not tell an unknown connection to reconnect");
        }
    }

    /// Handles one frame from a connection. Answers (`ack`, `pong`, `error`) go back to it.
    pub async fn handle_frame(&self, connection: &Connection, frame: &[u8]) {
        if let Err((e, client_message_id)) = self.try_frame(connection, frame).await {
            let event = match e {
                ChatError::RateLimited { retry_after_secs } => ServerEvent::Error {
                    code: "rate_limited".into(),
                    message: format!("rate limit exceeded, retry in {retry_after_secs} s"),
                },
                e => ServerEvent::error(&e),
            };
            let mut frame: Value = serde_json::to_value(&event).unwrap_or_default();
            if let (Some(id), Some(obj)) = (client_message_id, frame.as_object_mut()) {
                obj.insert("clientMessageId".into(), Value::String(id));
            }
            self.push_to(&connection.session_id, &connection.id, &frame.to_string())
                .await;
        }
    }

    async fn try_frame(
        &self,
        c: &Connection,
        frame: &[u8],
    ) -> Result<(), (ChatError, Option<String>)> {
        validate::body_size(frame.len(), &self.config.limits).map_err(|e| (e, None))?;
        let session = SessionRef::from(c);
        match ClientAction::parse(frame).map_err(|e| (e, None))? {
            ClientAction::SendMessage {
                content,
                client_message_id,
                metadata,
            } => {
                let input = SendInput {
                    content,
                    client_message_id: client_message_id.clone(),
                    metadata,
                };
                self.send(session, input, Some(&c.id))
                    .await
                    .map_err(|e| (e, client_message_id))?;
            }
            ClientAction::Typing { is_typing } => {
                // Each typing frame fans out to every connection: past the per-connection
                // limit they are dropped unseen (typing is a hint, nothing is lost).
                let rate = Rate::per(self.config.limits.typing_per_minute, 60_000);
                let limited = self
                    .limiter()
                    .take(&format!("typing#{}", c.id), self.now(), rate)
                    .await
                    .map_err(|e| (e.into(), None))?;
                if limited.is_some() {
                    tracing::debug!(connection_id = %c.id, "typing frame over the limit dropped");
                    return Ok(());
                }
                let event = ServerEvent::Typing {
                    role: Role::User,
                    is_typing,
                };
                self.broadcast(&c.session_id, &event, Some(&c.id)).await;
            }
            ClientAction::Read { up_to } => {
                self.mark_read(session, up_to)
                    .await
                    .map_err(|e| (e, None))?;
            }
            ClientAction::Ping {} => {
                self.push_to(&c.session_id, &c.id, &ServerEvent::Pong {}.to_frame())
                    .await
            }
        }
        Ok(())
    }

    // ----- n8n replies ------------------------------------------------------------------

    /// `POST /webhook`: verifies n8n's signature, stores the reply once, marks the user
    /// message answered and pushes the reply.
    ///
    /// Every reply is idempotent: by its `eventId`, else its `replyTo`, else its signature
    /// (so a captured request replayed within the timestamp window stores nothing new). A
    /// repeat returns the stored reply, writes nothing and counts against no limit. Calls are
    /// limited per session; refused calls (no or a bad signature) per `source_ip`.
    pub async fn receive_reply(
        &self,
        source_ip: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Message, ChatError> {
        let now = self.now();
        let limits = &self.config.limits;
        let per_minute = Rate::per(limits.webhooks_per_minute, 60_000);
        validate::body_size(body.len(), limits)?;
        if let Err(refused) = signature::verify(
            self.config.webhook_secret.expose().as_bytes(),
            timestamp,
            signature,
            body,
            now / 1000,
        ) {
            rate::hit(
                self.limiter(),
                "webhook-refused",
                source_ip,
                per_minute,
                now,
            )
            .await?;
            return Err(refused);
        }
        let reply: WebhookReply = validate::parse_json(body)?;
        validate::content(&reply.content, limits.max_reply_chars)?;
        if let Some(e) = &reply.event_id {
            validate::key("eventId", e)?;
        }
        let session = self.load_session(&reply.session_id).await?;
        let key = match (&reply.event_id, &reply.reply_to, signature) {
            (Some(e), _, _) => format!("event#{e}"),
            (None, Some(r), _) => format!("reply#{r}"),
            (None, None, sig) => format!("sig#{}", sig.unwrap_or_default().trim()),
        };
        // The message replied to, which becomes `answered`.
        let replied = match &reply.reply_to {
            None => None,
            Some(id) => self.store().get_message(&session.id, id).await?,
        };
        if let Some(stored) = self.store().find_by_key(&session.id, &key).await? {
            self.mark_answered(&stored, replied).await?;
            return Ok(stored);
        }
        if reply.reply_to.is_some() && replied.is_none() {
            return Err(ChatError::NotFound(
                "replyTo names no message of this session".into(),
            ));
        }
        rate::hit(
            self.limiter(),
            "webhook",
            &session.id.to_string(),
            per_minute,
            now,
        )
        .await?;
        let new = NewMessage {
            id: MessageId::new(),
            session_id: session.id,
            role: Role::Assistant,
            kind: reply.kind.unwrap_or_default(),
            content: reply.content,
            data: reply.data,
            metadata: None,
            status: MessageStatus::Delivered,
            created_at: now,
            reply_to: reply.reply_to,
            client_message_id: None,
            idempotency_key: Some(key),
            expires_at: session.expires_at,
        };
        self.locks
            .run(session.id, async {
                let appended = self
                    .store()
                    .append_message(new)
                    .await?
                    .ok_or_else(|| ChatError::NotFound("unknown session".into()))?;
                let message = appended.message;
                let mut events = Vec::new();
                if appended.created {
                    tracing::info!(session_id = %session.id, message_id = %message.id, seq = message.seq, "reply stored");
                    events.push(ServerEvent::Message {
                        message: message.clone(),
                    });
                }
                if let Some(original) = replied.filter(|r| message.reply_to == Some(r.id)) {
                    events.extend(self.advance(&original, MessageStatus::Answered).await?);
                }
                self.broadcast_all(&session.id, &events, None).await;
                Ok(message)
            })
            .await
    }

    /// A repeated reply: finishes what the first call may not have (the user message's
    /// `answered` status) and pushes only that.
    async fn mark_answered(
        &self,
        reply: &Message,
        replied: Option<Message>,
    ) -> Result<(), ChatError> {
        if let Some(original) = replied.filter(|r| reply.reply_to == Some(r.id))
            && let Some(status) = self.advance(&original, MessageStatus::Answered).await?
        {
            self.broadcast(&reply.session_id, &status, None).await;
        }
        Ok(())
    }

    /// Moves a message's status forward; returns the `status` event to push, or `None` when
    /// it already was there.
    async fn advance(
        &self,
        message: &Message,
        status: MessageStatus,
    ) -> Result<Option<ServerEvent>, ChatError> {
        Ok(self
            .store()
            .advance_status(message, status)
            .await?
            .map(|m| ServerEvent::Status {
                session_id: m.session_id,
                message_id: m.id,
                status: m.status,
            }))
    }

    // ----- fan-out ----------------------------------------------------------------------

    /// Pushes `event` to every connection of the session (but `except`). Connections that
    /// are gone are forgotten; other failures are logged and do not stop the others.
    pub async fn broadcast(&self, session: &SessionId, event: &ServerEvent, except: Option<&str>) {
        self.broadcast_all(session, std::slice::from_ref(event), except)
            .await;
    }

    /// Pushes `events`, in order, to every connection of the session (but `except`), looking
    /// the connections up once.
    pub async fn broadcast_all(
        &self,
        session: &SessionId,
        events: &[ServerEvent],
        except: Option<&str>,
    ) {
        if events.is_empty() {
            return;
        }
        let connections = match self.store().list_connections(session).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, session_id = %session, "could not list connections; push skipped");
                return;
            }
        };
        let frames: Vec<String> = events.iter().map(ServerEvent::to_frame).collect();
        // A store may still hold connections past their expiry (DynamoDB's TTL deletes
        // lazily): they are absent.
        let now = self.now();
        let pushes = connections
            .iter()
            .filter(|c| c.expires_at > now && Some(c.id.as_str()) != except)
            .map(|c| async {
                for frame in &frames {
                    if !self.push_one(c, frame).await {
                        break;
                    }
                }
            });
        futures_util::future::join_all(pushes).await;
    }

    async fn push_to(&self, session: &SessionId, connection_id: &str, frame: &str) {
        let c = Connection {
            id: connection_id.to_string(),
            session_id: *session,
            connected_at: 0,
            expires_at: 0,
        };
        self.push_one(&c, frame).await;
    }

    /// Pushes one frame; `false` when the connection is gone (and is now forgotten).
    async fn push_one(&self, c: &Connection, frame: &str) -> bool {
        match self.ports.push.push(&c.id, frame).await {
            Ok(()) => true,
            Err(PushError::Gone) => {
                tracing::info!(connection_id = %c.id, "connection gone; forgetting it");
                if let Err(e) = self.store().delete_connection(c).await {
                    tracing::warn!(error = %e, connection_id = %c.id, "could not forget a gone connection");
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, connection_id = %c.id, "push failed");
                true
            }
        }
    }
}

/// What became of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// n8n accepted the message (2xx).
    Delivered,
    /// Nothing to do: the message is gone, already past `received` (a redelivery), or
    /// (a deadline job) already answered or failed.
    Skipped,
    /// Run the job again after this delay (n8n failed; or a deadline job came early).
    Retry(Duration),
    /// The message is now `failed` and the user was told: n8n failed on the last attempt,
    /// or (a deadline job) no reply came in time.
    DeadLettered,
}

/// Delivers queued user messages to n8n, and fails those whose reply never came.
#[derive(Clone)]
pub struct Dispatcher {
    service: ChatService,
    agent: Arc<dyn Agent>,
}

impl Dispatcher {
    pub fn new(service: ChatService, agent: Arc<dyn Agent>) -> Self {
        Self { service, agent }
    }

    pub fn service(&self) -> &ChatService {
        &self.service
    }

    /// Runs one queued job: attempt number `attempt` (1-based) of a delivery, or a reply
    /// deadline check.
    pub async fn run(&self, job: DispatchJob, attempt: u32) -> Result<DispatchOutcome, ChatError> {
        match job.kind {
            JobKind::Dispatch => self.dispatch(job, attempt).await,
            JobKind::Deadline => self.expire(job).await,
        }
    }

    /// Attempt number `attempt` (1-based) to deliver `job`. Retries and the dead letter are
    /// decided here, so every queue implementation has the same semantics.
    pub async fn dispatch(
        &self,
        job: DispatchJob,
        attempt: u32,
    ) -> Result<DispatchOutcome, ChatError> {
        let svc = &self.service;
        let store = svc.store();
        let Some(message) = store.get_message(&job.session_id, &job.message_id).await? else {
            tracing::warn!(message_id = %job.message_id, "dispatch of an unknown message dropped");
            return Ok(DispatchOutcome::Skipped);
        };
        if message.status != MessageStatus::Received {
            return Ok(DispatchOutcome::Skipped);
        }
        let Some(session) = store.get_session(&job.session_id, svc.now()).await? else {
            tracing::warn!(session_id = %job.session_id, "dispatch for an expired session dropped");
            return Ok(DispatchOutcome::Skipped);
        };
        let history = store
            .list_messages(
                &session.id,
                PageQuery {
                    after: None,
                    before: Some(message.seq),
                    limit: svc.config.limits.history_for_agent,
                },
            )
            .await?;
        let request = self.sign(&AgentPayload {
            session_id: session.id,
            message_id: message.id,
            user_id: session.user_id.as_deref(),
            content: &message.content,
            metadata: message.metadata.as_ref(),
            history: &history.messages,
            callback_url: format!("{}/webhook", svc.config.public_url.trim_end_matches('/')),
        });
        match self.agent.deliver(request).await {
            Ok(()) => {
                tracing::info!(message_id = %message.id, attempt, "dispatched to n8n");
                if let Some(status) = svc.advance(&message, MessageStatus::Dispatched).await? {
                    let typing = ServerEvent::Typing {
                        role: Role::Assistant,
                        is_typing: true,
                    };
                    svc.broadcast_all(&session.id, &[status, typing], None)
                        .await;
                }
                Ok(DispatchOutcome::Delivered)
            }
            Err(e) if attempt >= svc.config.dispatch.max_attempts => {
                tracing::warn!(message_id = %message.id, attempt, error = %e, "n8n failed on the last attempt");
                self.fail(job, FailReason::Unreachable).await?;
                Ok(DispatchOutcome::DeadLettered)
            }
            Err(e) => {
                let delay = svc.config.dispatch.delay_before(attempt + 1);
                tracing::warn!(message_id = %message.id, attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "n8n failed; will retry");
                Ok(DispatchOutcome::Retry(delay))
            }
        }
    }

    /// The reply deadline of `job`'s message has come: if it is still `received` or
    /// `dispatched` (n8n never answered, or its delivery never finished, e.g. a dispatch
    /// Lambda that died on its last attempt), it becomes `failed` and the user is told. A
    /// reply that arrives later is still stored and shown.
    pub async fn expire(&self, job: DispatchJob) -> Result<DispatchOutcome, ChatError> {
        let svc = &self.service;
        let Some(message) = svc
            .store()
            .get_message(&job.session_id, &job.message_id)
            .await?
        else {
            return Ok(DispatchOutcome::Skipped);
        };
        if !matches!(
            message.status,
            MessageStatus::Received | MessageStatus::Dispatched
        ) {
            return Ok(DispatchOutcome::Skipped);
        }
        let timeout = svc.config.dispatch.reply_timeout.as_millis() as Millis;
        let due = message.created_at.saturating_add(timeout);
        let early = due.saturating_sub(svc.now());
        // Queues may deliver a little early (SQS counts whole seconds); never fail early.
        if early > 1000 {
            return Ok(DispatchOutcome::Retry(Duration::from_millis(early as u64)));
        }
        tracing::warn!(message_id = %message.id, status = message.status.as_str(), "no reply before the deadline");
        self.fail(job, FailReason::TimedOut).await?;
        Ok(DispatchOutcome::DeadLettered)
    }

    /// Gives up on a message: status `failed`, and a `system` message of type `error` tells
    /// the user. Idempotent; does nothing if the message was answered meanwhile.
    pub async fn dead_letter(&self, job: DispatchJob) -> Result<(), ChatError> {
        self.fail(job, FailReason::Unreachable).await
    }

    async fn fail(&self, job: DispatchJob, reason: FailReason) -> Result<(), ChatError> {
        let svc = &self.service;
        let store = svc.store();
        let Some(message) = store.get_message(&job.session_id, &job.message_id).await? else {
            return Ok(());
        };
        if message.status == MessageStatus::Answered {
            return Ok(());
        }
        let Some(session) = store.get_session(&job.session_id, svc.now()).await? else {
            return Ok(());
        };
        let now = svc.now();
        let notice = NewMessage {
            id: MessageId::new(),
            session_id: job.session_id,
            role: Role::System,
            kind: MessageType::Error,
            content: reason.text().into(),
            data: None,
            metadata: None,
            status: MessageStatus::Delivered,
            created_at: now,
            reply_to: Some(message.id),
            client_message_id: None,
            idempotency_key: Some(format!("failed#{}", message.id)),
            expires_at: session.expires_at,
        };
        svc.locks
            .run(job.session_id, async {
                let mut events: Vec<ServerEvent> = svc
                    .advance(&message, MessageStatus::Failed)
                    .await?
                    .into_iter()
                    .collect();
                let appended = store.append_message(notice).await?;
                if let Some(a) = appended.filter(|a| a.created) {
                    events.push(ServerEvent::Message { message: a.message });
                    events.push(ServerEvent::Typing {
                        role: Role::Assistant,
                        is_typing: false,
                    });
                }
                svc.broadcast_all(&job.session_id, &events, None).await;
                Ok(())
            })
            .await
    }

    fn sign(&self, payload: &AgentPayload<'_>) -> SignedRequest {
        let body = serde_json::to_vec(payload).expect("payload serializes");
        let timestamp = (self.service.now() / 1000).to_string();
        let signature = signature::sign(
            self.service.config.webhook_secret.expose().as_bytes(),
            &timestamp,
            &body,
        );
        SignedRequest {
            body,
            timestamp,
            signature,
        }
    }
}
