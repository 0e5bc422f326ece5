//! The ports: the only ways the core reaches the outside world.
//!
//! Each deployment plugs in its own adapters: DynamoDB, SQS and API Gateway on AWS; SQLite, an
//! in-process queue and local WebSockets in `chat-local`; in-memory fakes in unit tests.
//! Every adapter must honour the same semantics, spelled out on each method, and the store
//! conformance suite checks them.

use crate::model::{
    AgentConnection, CannedReply, Connection, DispatchJob, InboxQuery, Message, MessageChange,
    MessageId, MessageStatus, Millis, ModeState, NewMessage, Page, PageQuery, Session, SessionId,
};
use async_trait::async_trait;

/// A failure of the store. Its text goes to logs only, never to callers.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// A failure to enqueue a job.
#[derive(Debug, thiserror::Error)]
#[error("queue: {0}")]
pub struct QueueError(pub String);

/// Why a push to one connection did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The connection no longer exists; the service forgets it.
    #[error("connection is gone")]
    Gone,
    #[error("push failed: {0}")]
    Failed(String),
}

/// Why a delivery to n8n failed; it is retried.
#[derive(Debug, thiserror::Error)]
#[error("agent: {0}")]
pub struct AgentError(pub String);

/// The result of [`Store::append_message`].
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub message: Message,
    /// `false` when the idempotency key already existed and `message` is the earlier one,
    /// or when the append was refused (see [`Store::append_message`]).
    pub created: bool,
    /// The session's mode as the append found it (whether the bot answers this message).
    pub mode: ModeState,
    /// Refused by its [`NewMessage::limit`] (nothing written): the next token comes in this
    /// many ms.
    pub retry_after: Option<Millis>,
}

impl Appended {
    /// Whether this is a refused `open_only` append to a closed session (nothing written).
    pub fn refused(&self) -> bool {
        !self.created && self.message.seq == 0 && self.retry_after.is_none()
    }
}

/// The result of [`Store::update_canned`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CannedWrite {
    Written,
    NotFound,
    /// Another reply has that shortcut.
    ShortcutTaken,
}

/// Durable state: sessions, their numbered messages, live connections and counters.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a new session (its `last_seq` and `read_up_to` are 0).
    async fn create_session(&self, session: &Session) -> Result<(), StoreError>;

    /// The session, or `None` when it does not exist or has expired at `now`.
    async fn get_session(&self, id: &SessionId, now: Millis)
    -> Result<Option<Session>, StoreError>;

    /// Appends a message to an existing session, atomically giving it `seq = last_seq + 1`.
    ///
    /// When `idempotency_key` is set and already used in this session, nothing is written and
    /// the message stored under that key is returned with `created: false`. `None` when the
    /// session does not exist or has expired at the message's `created_at`.
    ///
    /// Every append bumps the session's `updated_at` to the message's `created_at` (never
    /// lowers it), moves its `expires_at` forward by as much ([`Session::slid_expiry`]: the
    /// retention slides with activity), sets its `title` ([`crate::model::title_of`]) when
    /// this is its first `user` message, and returns the session's [`ModeState`] as it found
    /// it. With
    /// [`NewMessage::open_only`], nothing is written when the session's mode is `closed`:
    /// `created` is false and `message` is the one given, unnumbered (`seq` 0).
    ///
    /// With [`NewMessage::limit`], the append takes a token from the session's bucket
    /// ([`crate::rate::gcra`] on its TAT, kept on the session) in the same atomic write. An
    /// empty bucket refuses it: nothing is written (nor the bucket), `created` is false,
    /// `message` the one given (`seq` 0) and `retry_after` says when the next token comes. A
    /// repeat (its idempotency key used) is answered as above and takes no token, even from an
    /// empty bucket. Appends without a limit, and the other bucket, are not counted.
    async fn append_message(&self, message: NewMessage) -> Result<Option<Appended>, StoreError>;

    /// The message `id` of `session`; `None` when it does not exist *in that session* (the
    /// webhook relies on this to reject a `replyTo` of another session).
    async fn get_message(
        &self,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError>;

    /// A page of history in ascending `seq`.
    ///
    /// With `after`: the first `limit` messages with `seq > after` (and `< before` if given),
    /// `has_more` when more follow. Without `after`: the last `limit` messages with
    /// `seq < before` (or the newest), `has_more` when older ones exist.
    async fn list_messages(&self, session: &SessionId, page: PageQuery)
    -> Result<Page, StoreError>;

    /// Moves the stored status of `message` (found by its session, id and `seq`) forward by
    /// [`MessageStatus::rank`]. Returns the updated message, or `None` when no message of
    /// that session has that id and seq, or its stored status is already at or past `status`.
    async fn advance_status(
        &self,
        message: &Message,
        status: MessageStatus,
    ) -> Result<Option<Message>, StoreError>;

    /// Raises the session's `read_up_to` to `up_to` (never lowers it, and clamps it to
    /// `last_seq`); returns the session, or `None` when it does not exist.
    async fn mark_read(
        &self,
        session: &SessionId,
        up_to: u64,
    ) -> Result<Option<Session>, StoreError>;

    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError>;

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError>;

    /// Forgets a connection; forgetting an unknown one is not an error.
    async fn delete_connection(&self, connection: &Connection) -> Result<(), StoreError>;

    /// The connections of a session (a query on the session, never a scan). It may include
    /// expired ones not yet deleted (DynamoDB TTL is lazy); the service skips those.
    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError>;

    /// The message an idempotency key of `session` points to, without writing anything
    /// (`None` when the key is unused). Lets a repeat be answered before any rate limit is
    /// counted.
    async fn find_by_key(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<Message>, StoreError>;

    /// How many messages of `session` with `seq > after` were not written by the user (what
    /// the user has not read yet). Counts every such message, not one page.
    async fn count_unread(&self, session: &SessionId, after: u64) -> Result<u64, StoreError>;

    // ----- people in the loop ---------------------------------------------------------------

    /// Compare-and-set of the session's mode: when the stored mode and holder id equal
    /// `expected`'s (`mode` and `agent.id`; name and `waiting_since` are not compared) and the
    /// session is alive at `now`, stores `next` whole (mode, holder, `waiting_since`) and sets
    /// `updated_at` to `now` (sliding `expires_at` as an append does); returns the updated
    /// session. `None` when the condition failed
    /// or the session does not exist. Of concurrent calls with the same `expected`, exactly
    /// one succeeds (the claim race).
    async fn set_mode(
        &self,
        session: &SessionId,
        expected: &ModeState,
        next: &ModeState,
        now: Millis,
    ) -> Result<Option<Session>, StoreError>;

    /// One page of the agents' inbox, in the order and with the filter of
    /// [`InboxQuery::admits`] and [`InboxQuery::order`]: at most `limit` sessions. An index
    /// on (mode, time): never a scan of every session.
    async fn list_inbox(&self, query: &InboxQuery) -> Result<Vec<Session>, StoreError>;

    /// Every canned reply, ordered by shortcut.
    async fn list_canned(&self) -> Result<Vec<CannedReply>, StoreError>;

    /// Stores a new canned reply; `false` (nothing written) when its shortcut is used.
    async fn create_canned(&self, reply: &CannedReply) -> Result<bool, StoreError>;

    /// Replaces the canned reply with `reply.id` (shortcut, title, text, `updated_at`).
    async fn update_canned(&self, reply: &CannedReply) -> Result<CannedWrite, StoreError>;

    /// Deletes a canned reply; `false` when there was none with that id.
    async fn delete_canned(&self, id: &str) -> Result<bool, StoreError>;

    /// Stores (or replaces, e.g. for a status change) an agent's connection.
    async fn put_agent_connection(&self, connection: &AgentConnection) -> Result<(), StoreError>;

    async fn get_agent_connection(&self, id: &str) -> Result<Option<AgentConnection>, StoreError>;

    /// Forgets an agent connection; an unknown one is not an error.
    async fn delete_agent_connection(&self, id: &str) -> Result<(), StoreError>;

    /// Every agent connection (one partition or one map: never a scan of sessions). It may
    /// include expired ones not yet deleted; the service skips those.
    async fn list_agent_connections(&self) -> Result<Vec<AgentConnection>, StoreError>;

    // ----- conversations people keep -------------------------------------------------------

    /// One page of a user's sessions: those of `user_id` with `expires_at > now`, newest
    /// `(updated_at, id)` first, only those before `after` (the previous page's last), at
    /// most `limit`. An index on (user, activity): never a scan of every session.
    async fn list_user_sessions(
        &self,
        user_id: &str,
        after: Option<(Millis, SessionId)>,
        limit: u32,
        now: Millis,
    ) -> Result<Vec<Session>, StoreError>;

    /// Applies `change` (an edit or a deletion, [`Message::apply`]) made at `at` to `message`
    /// (found by its session, id and `seq`, as [`Store::advance_status`] finds it), keeping
    /// its `id` and `seq`, and records it where [`Store::list_changed`] finds it. Returns the
    /// changed message; `None` when that session has no message with that id and seq, or it
    /// is already a tombstone (nothing written).
    async fn change_message(
        &self,
        message: &Message,
        change: &MessageChange,
        at: Millis,
    ) -> Result<Option<Message>, StoreError>;

    /// The messages of `session` edited or deleted after `after` (their `updated_at >
    /// after`), oldest change first (then by `seq`), at most `limit`; `has_more` when more
    /// follow. An index of changed messages only (sparse): never a scan of the session.
    async fn list_changed(
        &self,
        session: &SessionId,
        after: Millis,
        limit: u32,
    ) -> Result<Page, StoreError>;

    /// Erases a session and everything stored of it, expired or not: its messages,
    /// connections, idempotency records and its entries in every index (the user's list,
    /// the inbox). `false` when nothing of it was stored. Erasing twice is not an error.
    async fn erase_session(&self, id: &SessionId) -> Result<bool, StoreError>;
}

/// Hands user messages to the dispatcher, at least once.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Queues `job` (a [`JobKind::Dispatch`](crate::model::JobKind)) to run now, and the
    /// same job as a [`JobKind::Deadline`](crate::model::JobKind) to run at `deadline_at`
    /// (the reply deadline check). Both at least once; one call, so either both are queued
    /// or the call fails.
    async fn enqueue(&self, job: DispatchJob, deadline_at: Millis) -> Result<(), QueueError>;

    /// Queues `job` (a [`JobKind::Handoff`](crate::model::JobKind)) to run at `at`, at least
    /// once. A queue whose delays are bounded (SQS: 15 minutes) may run it earlier; the
    /// job then asks to be retried later.
    async fn schedule(&self, job: DispatchJob, at: Millis) -> Result<(), QueueError>;
}

/// Sends one text frame to one WebSocket connection.
#[async_trait]
pub trait Push: Send + Sync {
    async fn push(&self, connection_id: &str, frame: &str) -> Result<(), PushError>;

    /// Closes a connection from the server side (normal closure, 1000): its session was
    /// erased. A connection already gone is not an error.
    async fn close(&self, connection_id: &str) -> Result<(), PushError>;
}

/// The current time.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0)
    }
}

/// A signed request for n8n: the exact body bytes and the two signature headers.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub body: Vec<u8>,
    pub timestamp: String,
    pub signature: String,
}

/// Why the identity provider's key set could not be had. Its text goes to logs only.
#[derive(Debug, thiserror::Error)]
#[error("jwks: {0}")]
pub struct JwksError(pub String);

/// Gets the identity provider's JWKS document (`CHAT_AUTH_JWKS_URL`): the JSON bytes as
/// served, parsed and cached by [`crate::auth`]. Bounded in time and size by the adapter.
#[async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<Vec<u8>, JwksError>;
}

/// The body of n8n's 2xx answer as it arrives: byte chunks in order, then the end. An
/// `Err` item ends it early (the connection broke, or the answer ran past its time limit);
/// an empty chunk means nothing arrived for a moment (adapters yield one after about 50 ms of
/// silence), so text coalesced for a `delta` can be pushed while the agent pauses.
pub type AgentBody =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>, AgentError>> + Send>>;

/// Delivers a user message to the agent (n8n). A non-2xx status, a connection error or no
/// answer within the dispatch timeout is a failure (retried); a 2xx gives the body to read
/// (an answer, a stream, or an acknowledgement: [`crate::answer`]).
#[async_trait]
pub trait Agent: Send + Sync {
    async fn deliver(&self, request: SignedRequest) -> Result<AgentBody, AgentError>;
}

/// A body that is all there at once (tests, fakes).
pub fn whole_body(bytes: impl Into<Vec<u8>>) -> AgentBody {
    Box::pin(futures_util::stream::iter([Ok(bytes.into())]))
}
