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
}

/// A message about to be appended; the store assigns its `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: MessageId,
    pub session_id: SessionId,
    pub role: Role,
    pub kind: MessageType,
    pub content: String,
    pub data: Option<Map<String, Value>>,
    pub metadata: Option<Map<String, Value>>,
    pub status: MessageStatus,
    pub created_at: Millis,
    pub reply_to: Option<MessageId>,
    pub client_message_id: Option<String>,
    /// Makes the append idempotent within the session: a second append with the same key
    /// returns the first message instead of writing a new one.
    pub idempotency_key: Option<String>,
    /// When the stored copy may be removed (the session's expiry).
    pub expires_at: Millis,
}

impl NewMessage {
    /// The stored message this becomes once the store has numbered it.
    pub fn with_seq(self, seq: u64) -> Message {
        Message {
            id: self.id,
            seq,
            session_id: self.session_id,
            role: self.role,
            kind: self.kind,
            content: self.content,
            data: self.data,
            metadata: self.metadata,
            status: self.status,
            created_at: self.created_at,
            reply_to: self.reply_to,
            client_message_id: self.client_message_id,
        }
    }
}

/// A chat session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    /// The app's user id (`sub` of its JWT); `None` for guest sessions.
    pub user_id: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// The `seq` of the newest message (0 when there is none).
    pub last_seq: u64,
    /// The newest `seq` the user has read.
    pub read_up_to: u64,
    /// What the app told about the session at `POST /sessions` (page, locale, plan, ...):
    /// returned with the session and sent to n8n with every dispatch.
    pub metadata: Option<Map<String, Value>>,
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
}

impl DispatchJob {
    /// A delivery of `message_id` to n8n.
    pub fn dispatch(session_id: SessionId, message_id: MessageId) -> Self {
        Self {
            session_id,
            message_id,
            kind: JobKind::Dispatch,
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
}

impl JobKind {
    pub fn is_dispatch(&self) -> bool {
        *self == Self::Dispatch
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dispatch => "dispatch",
            Self::Deadline => "deadline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dispatch" => Some(Self::Dispatch),
            "deadline" => Some(Self::Deadline),
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
            kind: MessageType::SchedulingUpdate,
            content: "hi".into(),
            data: None,
            metadata: None,
            status: MessageStatus::Delivered,
            created_at: 0,
            reply_to: None,
            client_message_id: None,
            idempotency_key: None,
            expires_at: 0,
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
