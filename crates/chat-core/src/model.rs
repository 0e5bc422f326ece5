//! Domain types: sessions, messages, connections, and how they look on the wire.
//!
//! Timestamps are kept as Unix milliseconds inside the product and written as RFC 3339 on the
//! wire. Message ids are ULIDs (unique everywhere); `seq` numbers a session's messages
//! 1, 2, 3, ... in commit order with no gaps.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Unix time in milliseconds.
pub type Millis = i64;

/// Writes Unix milliseconds as an RFC 3339 UTC timestamp with milliseconds.
pub fn rfc3339(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&f).unwrap_or_default()
}

fn ser_time<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

fn ser_opt_time<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub ulid::Ulid);

        impl $name {
            pub fn new() -> Self {
                Self(ulid::Ulid::new())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = crate::ChatError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                ulid::Ulid::from_string(s)
                    .map(Self)
                    .map_err(|_| crate::ChatError::NotFound(format!("unknown {}", $what)))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                ulid::Ulid::from_string(&s)
                    .map(Self)
                    .map_err(|_| serde::de::Error::custom(concat!("not a valid ", $what, " id")))
            }
        }
    };
}

ulid_id!(
    /// A chat session: one conversation between a browser (or several) and the assistant.
    SessionId,
    "session"
);
ulid_id!(
    /// A message, unique across all sessions.
    MessageId,
    "message"
);
ulid_id!(
    /// An attachment (a file sent with a message), unique across all sessions.
    AttachmentId,
    "attachment"
);

/// A file a message carries, as stored with the message and shown on the wire
/// (`{id, name, contentType, size, url}`). `url` is a short-lived download URL minted each
/// time the message is read, pushed or dispatched; it is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentMeta {
    pub id: AttachmentId,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl AttachmentMeta {
    /// The stored form of a message's attachments (JSON, without URLs); `None` when empty.
    pub fn to_stored(list: &[AttachmentMeta]) -> Option<String> {
        if list.is_empty() {
            return None;
        }
        let bare: Vec<AttachmentMeta> = list
            .iter()
            .map(|a| AttachmentMeta {
                url: None,
                ..a.clone()
            })
            .collect();
        serde_json::to_string(&bare).ok()
    }

    /// Reads what [`Self::to_stored`] wrote.
    pub fn from_stored(s: Option<&str>) -> Result<Vec<AttachmentMeta>, serde_json::Error> {
        s.map_or(Ok(Vec::new()), serde_json::from_str)
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    System,
    Agent,
}

/// What kind of message it is; the browser renders each kind distinctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    #[default]
    Text,
    Confirmation,
    Clarification,
    Cancellation,
    Error,
    Info,
    SchedulingUpdate,
    /// From n8n only: asks for a person. Stored as `text` (the session goes `waiting`).
    Handoff,
}

/// Where a message is in its life.
///
/// User messages go `received` → `dispatched` → `answered`, or end `failed` when n8n could not
/// be reached. Messages from the assistant, an agent or the system are `delivered` when stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Received,
    Dispatched,
    Failed,
    Answered,
    Delivered,
}

impl MessageStatus {
    /// Statuses only move forward; a late `dispatched` never overwrites `answered`.
    pub fn rank(self) -> u8 {
        match self {
            Self::Received => 0,
            Self::Dispatched => 1,
            Self::Failed => 2,
            Self::Answered => 3,
            Self::Delivered => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Dispatched => "dispatched",
            Self::Failed => "failed",
            Self::Answered => "answered",
            Self::Delivered => "delivered",
        }
    }
}

macro_rules! str_enum {
    ($ty:ty { $($variant:ident => $s:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

str_enum!(Role { User => "user", Assistant => "assistant", System => "system", Agent => "agent" });
str_enum!(MessageType {
    Text => "text",
    Confirmation => "confirmation",
    Clarification => "clarification",
    Cancellation => "cancellation",
    Error => "error",
    Info => "info",
    SchedulingUpdate => "scheduling_update",
    Handoff => "handoff",
});

impl MessageStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "received" => Self::Received,
            "dispatched" => Self::Dispatched,
            "failed" => Self::Failed,
            "answered" => Self::Answered,
            "delivered" => Self::Delivered,
            _ => return None,
        })
    }
}

/// A stored chat message, serialized exactly as the contract's `message` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub seq: u64,
    pub session_id: SessionId,
    pub role: Role,
    /// The agent's name on `agent` messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    pub status: MessageStatus,
    #[serde(serialize_with = "ser_time")]
    pub created_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// The files it carries (user and agent messages only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentMeta>,
    /// When it last changed: `created_at`, or its last edit or its deletion.
    #[serde(serialize_with = "ser_time")]
    pub updated_at: Millis,
    /// When its sender last edited it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_time"
    )]
    pub edited_at: Option<Millis>,
    /// A tombstone: its sender deleted it (content emptied, `id` and `seq` kept).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_time"
    )]
    pub deleted_at: Option<Millis>,
    /// The agent who wrote an `agent` message (only they may edit or delete it). Kept by the
    /// stores, never on the wire.
    #[serde(skip)]
    pub agent_id: Option<String>,
}

/// An edit or a deletion of a message by its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageChange {
    /// New content; sets `edited_at`.
    Edit(String),
    /// Makes a tombstone: content (and data, metadata, attachments) emptied, `deleted`,
    /// `deleted_at`.
    Delete,
}

impl Message {
    /// Sets the times of changes read back from a store: `edited_at`, `deleted_at` (which
    /// makes it a tombstone) and `updated_at` (the latest of them, else `created_at`).
    pub fn with_changes(mut self, edited_at: Option<Millis>, deleted_at: Option<Millis>) -> Self {
        self.edited_at = edited_at;
        self.deleted_at = deleted_at;
        self.deleted = deleted_at.is_some();
        self.updated_at = self
            .created_at
            .max(edited_at.unwrap_or(Millis::MIN))
            .max(deleted_at.unwrap_or(Millis::MIN));
        self
    }

    /// Whether it was edited or deleted (what `?updatedAfter=` lists).
    pub fn changed(&self) -> bool {
        self.edited_at.is_some() || self.deleted
    }

    /// Applies `change` made at `at`: the one rule every store follows.
    pub fn apply(&mut self, change: &MessageChange, at: Millis) {
        match change {
            MessageChange::Edit(content) => {
                self.content.clone_from(content);
                self.edited_at = Some(at);
            }
            MessageChange::Delete => {
                self.content.clear();
                self.data = None;
                self.metadata = None;
                self.attachments.clear();
                self.deleted = true;
                self.deleted_at = Some(at);
            }
        }
        self.updated_at = self.updated_at.max(at);
    }
}

/// A message about to be appended; the store assigns its `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: MessageId,
    pub session_id: SessionId,
    pub role: Role,
    /// The agent's name on `agent` messages.
    pub name: Option<String>,
    pub kind: MessageType,
    pub content: String,
    pub data: Option<Map<String, Value>>,
    pub metadata: Option<Map<String, Value>>,
    pub status: MessageStatus,
    pub created_at: Millis,
    pub reply_to: Option<MessageId>,
    pub client_message_id: Option<String>,
    /// The agent who writes an `agent` message (see [`Message::agent_id`]).
    pub agent_id: Option<String>,
    /// The files it carries, stored with it (without URLs).
    pub attachments: Vec<AttachmentMeta>,
    /// Only into a session that is not `closed`: a user message to a closed session is not
    /// written (see [`crate::ports::Store::append_message`]).
    pub open_only: bool,
    /// Makes the append idempotent within the session: a second append with the same key
    /// returns the first message instead of writing a new one.
    pub idempotency_key: Option<String>,
    /// A rate limit the append counts against, kept on the session and taken in the same
    /// write (see [`crate::ports::Store::append_message`]).
    pub limit: Option<AppendLimit>,
}

/// A per-session rate limit taken by an append, in the append's own write: no separate
/// counter write per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendLimit {
    pub bucket: SessionBucket,
    pub rate: crate::rate::Rate,
}

/// The rate-limit buckets a session keeps (one [`crate::rate::gcra`] TAT each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionBucket {
    /// The user's messages (`CHAT_MESSAGES_PER_MINUTE`).
    Messages,
    /// n8n's replies by callback (`CHAT_WEBHOOKS_PER_MINUTE`).
    Webhook,
}

impl SessionBucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Webhook => "webhook",
        }
    }
}

impl NewMessage {
    /// The stored message this becomes once the store has numbered it.
    pub fn with_seq(self, seq: u64) -> Message {
        Message {
            id: self.id,
            seq,
            session_id: self.session_id,
            role: self.role,
            name: self.name,
            kind: self.kind,
            content: self.content,
            data: self.data,
            metadata: self.metadata,
            status: self.status,
            created_at: self.created_at,
            reply_to: self.reply_to,
            client_message_id: self.client_message_id,
            updated_at: self.created_at,
            edited_at: None,
            deleted: false,
            deleted_at: None,
            agent_id: self.agent_id,
            attachments: self.attachments,
        }
    }
}

/// How many characters of the first user message make a conversation's title.
pub const TITLE_CHARS: usize = 80;

/// The title given when a session has no user message yet.
pub const UNTITLED: &str = "New conversation";

/// A conversation's title from its first user message: its first [`TITLE_CHARS`] characters,
/// trimmed, with line breaks and tabs as spaces. Every store sets it the same way.
pub fn title_of(content: &str) -> String {
    content
        .trim()
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .take(TITLE_CHARS)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// A chat session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    /// The app's user id (`sub` of its JWT); `None` for guest sessions.
    pub user_id: Option<String>,
    pub created_at: Millis,
    /// Until when the session and its messages are kept (retention, not the token's expiry:
    /// a session token expires on its own). Every activity that moves `updated_at` moves this
    /// by as much, so a session is kept its retention period after its last activity.
    pub expires_at: Millis,
    /// The `seq` of the newest message (0 when there is none).
    pub last_seq: u64,
    /// The newest `seq` the user has read.
    pub read_up_to: u64,
    /// What the app told about the session at `POST /sessions` (page, locale, plan, ...):
    /// returned with the session and sent to n8n with every dispatch.
    pub metadata: Option<Map<String, Value>>,
    /// Who answers: the bot, a person (asked for or holding it), or no one (closed).
    pub mode: ModeState,
    /// The last activity: a message appended or a change of mode (orders the agents' inbox).
    pub updated_at: Millis,
    /// [`title_of`] the first user message, set by the store when it appends that message.
    pub title: Option<String>,
}

impl Session {
    /// Where `expires_at` goes when activity moves `updated_at` to `at` (never back).
    pub fn slid_expiry(&self, at: Millis) -> Millis {
        self.expires_at
            .saturating_add(at.saturating_sub(self.updated_at).max(0))
    }
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: SessionId,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub created_at: Millis,
    #[serde(serialize_with = "ser_time")]
    pub expires_at: Millis,
    pub last_seq: u64,
    pub read_up_to: u64,
    pub unread_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_time"
    )]
    pub waiting_since: Option<Millis>,
}

impl SessionView {
    pub fn new(s: &Session, unread_count: u64) -> Self {
        Self {
            id: s.id,
            kind: if s.user_id.is_some() { "user" } else { "guest" },
            user_id: s.user_id.clone(),
            created_at: s.created_at,
            expires_at: s.expires_at,
            last_seq: s.last_seq,
            read_up_to: s.read_up_to,
            unread_count,
            metadata: s.metadata.clone(),
            mode: s.mode.mode,
            agent: s.mode.agent.clone(),
            waiting_since: s.mode.waiting_since,
        }
    }
}

/// A session as agents see it in the inbox and the agent routes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub session_id: SessionId,
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_time"
    )]
    pub waiting_since: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    #[serde(serialize_with = "ser_time")]
    pub created_at: Millis,
    #[serde(serialize_with = "ser_time")]
    pub updated_at: Millis,
    pub user_online: bool,
}

impl SessionSummary {
    pub fn new(s: &Session, last_message: Option<Message>, user_online: bool) -> Self {
        Self {
            session_id: s.id,
            mode: s.mode.mode,
            user_id: s.user_id.clone(),
            metadata: s.metadata.clone(),
            agent: s.mode.agent.clone(),
            waiting_since: s.mode.waiting_since,
            last_message,
            created_at: s.created_at,
            updated_at: s.updated_at,
            user_online,
        }
    }
}

/// A session's mode: who answers the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The bot (n8n) answers; the default.
    #[default]
    Bot,
    /// A person was asked for; the bot is paused until an agent claims or releases it.
    Waiting,
    /// An agent holds it; the bot is paused.
    Agent,
    /// Ended: no further user messages.
    Closed,
}

str_enum!(Mode { Bot => "bot", Waiting => "waiting", Agent => "agent", Closed => "closed" });

/// An agent as sessions and messages name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentRef {
    /// The `sub` of the agent's JWT.
    pub id: String,
    /// The `name` claim (1–80 characters).
    pub name: String,
}

/// A session's mode with its holder (in `agent`) and since when it waits (in `waiting`).
/// The store changes it only by compare-and-set on (`mode`, holder id).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModeState {
    pub mode: Mode,
    pub agent: Option<AgentRef>,
    pub waiting_since: Option<Millis>,
}

impl ModeState {
    pub fn bot() -> Self {
        Self::default()
    }
    pub fn waiting(since: Millis) -> Self {
        Self {
            mode: Mode::Waiting,
            agent: None,
            waiting_since: Some(since),
        }
    }
    pub fn agent(agent: AgentRef) -> Self {
        Self {
            mode: Mode::Agent,
            agent: Some(agent),
            waiting_since: None,
        }
    }
    pub fn closed() -> Self {
        Self {
            mode: Mode::Closed,
            agent: None,
            waiting_since: None,
        }
    }
    /// The holder's id, in `agent` mode.
    pub fn holder(&self) -> Option<&str> {
        self.agent.as_ref().map(|a| a.id.as_str())
    }
    /// Whether n8n gets the user's messages.
    pub fn bot_answers(&self) -> bool {
        self.mode == Mode::Bot
    }
}

/// An agent's presence as agents see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Away,
    Offline,
}

str_enum!(AgentStatus { Online => "online", Away => "away", Offline => "offline" });

/// A live WebSocket of an agent (not tied to one session: it gets the inbox and the events
/// of every session its agent holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConnection {
    pub id: String,
    pub agent: AgentRef,
    /// `online` or `away` (what the agent last said; `online` at connect).
    pub status: AgentStatus,
    pub connected_at: Millis,
    /// The agent's JWT expiry, at most two hours on (API Gateway's limit); the store may
    /// forget it after this.
    pub expires_at: Millis,
}

/// An agent's quick response, shared by every agent of the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CannedReply {
    /// A ULID.
    pub id: String,
    /// Unique per deployment: `^[a-z0-9][a-z0-9_-]{0,31}$`.
    pub shortcut: String,
    pub title: String,
    pub text: String,
    #[serde(serialize_with = "ser_time")]
    pub updated_at: Millis,
}

/// Which sessions an inbox page lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxView {
    /// Mode `waiting`, oldest `waiting_since` first.
    Waiting,
    /// Mode `agent` held by this agent id, newest `updated_at` first.
    Mine(String),
    /// Modes `waiting` and `agent` (any holder), newest `updated_at` first.
    Open,
}

/// One page of an inbox: sessions after `after` (the sort time and id of the last session of
/// the previous page) in the view's order, at most `limit`, none expired at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxQuery {
    pub view: InboxView,
    pub after: Option<(Millis, SessionId)>,
    pub limit: u32,
    pub now: Millis,
}

impl InboxQuery {
    /// The time a session is sorted by in this view.
    pub fn sort_time(&self, s: &Session) -> Millis {
        match self.view {
            InboxView::Waiting => s.mode.waiting_since.unwrap_or(s.updated_at),
            _ => s.updated_at,
        }
    }

    /// Whether `s` belongs on a page of this view (the reference every store follows).
    pub fn admits(&self, s: &Session) -> bool {
        let in_view = match &self.view {
            InboxView::Waiting => s.mode.mode == Mode::Waiting,
            InboxView::Mine(id) => s.mode.mode == Mode::Agent && s.mode.holder() == Some(id),
            InboxView::Open => matches!(s.mode.mode, Mode::Waiting | Mode::Agent),
        };
        let key = (self.sort_time(s), s.id);
        let after = match (&self.view, self.after) {
            (_, None) => true,
            (InboxView::Waiting, Some(c)) => key > c,
            (_, Some(c)) => key < c,
        };
        in_view && after && s.expires_at > self.now
    }

    /// Orders sessions of this view (ascending for `waiting`, descending otherwise).
    pub fn order(&self, a: &Session, b: &Session) -> std::cmp::Ordering {
        let (ka, kb) = ((self.sort_time(a), a.id), (self.sort_time(b), b.id));
        match self.view {
            InboxView::Waiting => ka.cmp(&kb),
            _ => kb.cmp(&ka),
        }
    }
}

/// A live WebSocket connection of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub session_id: SessionId,
    pub connected_at: Millis,
    /// Connections expire with their session at the latest (API Gateway also drops them
    /// after two hours); the store may forget them after this.
    pub expires_at: Millis,
    /// The client opened it with `v=2`: it understands merged frames
    /// ([`crate::events::merged_frames`]), so a round costs it fewer pushes.
    pub merged: bool,
}

/// One page of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageQuery {
    /// Only messages with `seq > after`, oldest first.
    pub after: Option<u64>,
    /// Only messages with `seq < before`.
    pub before: Option<u64>,
    pub limit: u32,
}

/// Messages in ascending `seq`, and whether more exist beyond the page in its direction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// A user message handed to the queue: for delivery to n8n, or for its reply deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchJob {
    pub session_id: SessionId,
    pub message_id: MessageId,
    /// Absent on the wire for a delivery, so records queued before deadlines existed still
    /// read as deliveries.
    #[serde(default, skip_serializing_if = "JobKind::is_dispatch")]
    pub kind: JobKind,
    /// The message's `seq` when the sender knew it: the delivery then reads the message and
    /// its history in one query. Absent (older records, redrives, `chat-local`'s queue): the
    /// message is read by its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl DispatchJob {
    /// A delivery of `message_id` to n8n.
    pub fn dispatch(session_id: SessionId, message_id: MessageId) -> Self {
        Self {
            session_id,
            message_id,
            kind: JobKind::Dispatch,
            seq: None,
        }
    }

    /// The same job, naming the message's `seq` too.
    pub fn with_seq(self, seq: u64) -> Self {
        Self {
            seq: Some(seq),
            ..self
        }
    }

    /// The same message's reply-deadline check.
    pub fn deadline(self) -> Self {
        Self {
            kind: JobKind::Deadline,
            ..self
        }
    }
}

/// What a queued job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobKind {
    /// Deliver the user message to n8n (retried with backoff).
    #[default]
    Dispatch,
    /// The reply deadline has come: a message still unanswered becomes `failed`.
    Deadline,
    /// `CHAT_HANDOFF_TIMEOUT_MS` after a session started waiting (`message_id` is the
    /// "Connecting you to a person…" message): still waiting, the bot resumes.
    Handoff,
    /// `CHAT_N8N_SESSION_START`: ask n8n for a new session's greeting (`message_id` is the
    /// id the request carries as `messageId`; no message of that id is stored).
    SessionStart,
}

impl JobKind {
    pub fn is_dispatch(&self) -> bool {
        *self == Self::Dispatch
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dispatch => "dispatch",
            Self::Deadline => "deadline",
            Self::Handoff => "handoff",
            Self::SessionStart => "session_start",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dispatch" => Some(Self::Dispatch),
            "deadline" => Some(Self::Deadline),
            "handoff" => Some(Self::Handoff),
            "session_start" => Some(Self::SessionStart),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = MessageId::new();
        assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        assert_eq!("nope".parse::<SessionId>().unwrap_err().status(), 404);
    }

    #[test]
    fn message_serializes_to_the_contract_shape() {
        let m = NewMessage {
            id: MessageId::new(),
            session_id: SessionId::new(),
            role: Role::Assistant,
            name: None,
            kind: MessageType::SchedulingUpdate,
            content: "hi".into(),
            data: None,
            metadata: None,
            status: MessageStatus::Delivered,
            created_at: 0,
            reply_to: None,
            client_message_id: None,
            agent_id: None,
            attachments: Vec::new(),
            open_only: false,
            idempotency_key: None,
            limit: None,
        }
        .with_seq(3);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], "scheduling_update");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["createdAt"], "1970-01-01T00:00:00.000Z");
        assert!(v.get("replyTo").is_none() && v.get("data").is_none());
    }

    #[test]
    fn statuses_only_move_forward() {
        use MessageStatus::*;
        assert!(Dispatched.rank() > Received.rank());
        assert!(Answered.rank() > Dispatched.rank());
        assert!(Answered.rank() > Failed.rank());
        for s in [Received, Dispatched, Failed, Answered, Delivered] {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
    }
}
