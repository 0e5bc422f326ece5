//! WebSocket frames: what browsers send and what the server pushes.
//!
//! One JSON object per frame. Client frames carry an `action` (API Gateway's route selection
//! `$request.body.action`); server frames carry an `event`.

use crate::ChatError;
use crate::error::ErrorCode;
use crate::model::{AgentStatus, Message, MessageId, MessageStatus, Role, SessionId, SessionView};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A frame pushed to browsers.
#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerEvent {
    Message {
        message: Message,
    },
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        client_message_id: Option<String>,
        message_id: MessageId,
        seq: u64,
    },
    Status {
        session_id: SessionId,
        message_id: MessageId,
        status: MessageStatus,
    },
    Typing {
        /// Set on frames to agents (they follow several sessions).
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        role: Role,
        /// The agent's name when an agent types.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        is_typing: bool,
    },
    Read {
        session_id: SessionId,
        up_to: u64,
        unread_count: u64,
    },
    Error {
        code: String,
        message: String,
    },
    Pong {},
    /// Text appended to a reply while n8n streams it (coalesced, never one per token). The
    /// stored reply is pushed afterwards as a `message` with the same `messageId`.
    Delta {
        message_id: MessageId,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to: Option<MessageId>,
        index: u32,
        text: String,
    },
    /// The session's mode changed (after its system message).
    Session {
        session: SessionView,
    },
    /// To every agent: a session entered or left the queue, was claimed, transferred,
    /// released or closed, or got a user message while a person is asked for or holds it.
    Inbox {
        session: crate::model::SessionSummary,
    },
    /// Who is in the session now: the user (`id` = userId or `guest`) and the holder.
    Presence {
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        participants: Vec<Participant>,
    },
    /// To every agent: the agents and their status, when one's status changes.
    Agents {
        agents: Vec<AgentInfo>,
    },
}

/// One person of a `presence` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Participant {
    pub role: Role,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub online: bool,
}

/// An agent as `GET /agent/agents` and the `agents` event list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentInfo {
    pub id: String,
    pub name: String,
    pub status: AgentStatus,
    /// How many sessions the agent holds.
    pub holding: u64,
}

impl ServerEvent {
    pub fn to_frame(&self) -> String {
        serde_json::to_string(self).expect("server events always serialize")
    }

    /// A typing event (the user's or the assistant's: no name).
    pub fn typing(role: Role, is_typing: bool) -> Self {
        Self::Typing {
            session_id: None,
            role,
            name: None,
            is_typing,
        }
    }

    /// The same event as an agent gets it: `typing`, `presence` and `delta` name the session.
    pub fn for_agent(&self, session: SessionId) -> Self {
        let mut e = self.clone();
        match &mut e {
            Self::Typing { session_id, .. } | Self::Presence { session_id, .. } => {
                *session_id = Some(session)
            }
            _ => {}
        }
        e
    }

    pub fn error(e: &ChatError) -> Self {
        Self::Error {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

/// The frames of `events` for a connection opened with `v=2`, which understands merged frames:
/// a `status` followed by a `typing` is one `status` frame with a `typing` member (`dispatched`
/// and the assistant typing), and a `message` followed by the `status` of the message it
/// replies to is one `message` frame with a `status` member (the reply and `answered`). Every
/// other event is its own frame, as [`ServerEvent::to_frame`] writes it. Fewer frames, fewer
/// pushes (each is a request on API Gateway).
pub fn merged_frames(events: &[ServerEvent]) -> Vec<String> {
    let mut frames = Vec::with_capacity(events.len());
    let mut i = 0;
    while i < events.len() {
        let merged = match (&events[i], events.get(i + 1)) {
            (ServerEvent::Status { .. }, Some(next @ ServerEvent::Typing { .. })) => {
                Some(("typing", next))
            }
            (
                ServerEvent::Message { message },
                Some(next @ ServerEvent::Status { message_id, .. }),
            ) if message.reply_to == Some(*message_id) => Some(("status", next)),
            _ => None,
        };
        match merged {
            Some((member, next)) => {
                frames.push(with_member(&events[i], member, next));
                i += 2;
            }
            None => {
                frames.push(events[i].to_frame());
                i += 1;
            }
        }
    }
    frames
}

/// The `ack` of `message` for a connection opened with `v=2`: it carries the stored message
/// too (`message`), so the sender needs no separate `message` frame.
pub fn merged_ack(ack: &ServerEvent, message: &Message) -> String {
    let mut frame = serde_json::to_value(ack).unwrap_or_default();
    if let Some(obj) = frame.as_object_mut() {
        obj.insert(
            "message".into(),
            serde_json::to_value(message).unwrap_or_default(),
        );
    }
    frame.to_string()
}

/// `event`'s frame with `member` set to `inner`'s fields (without its `event`).
fn with_member(event: &ServerEvent, member: &str, inner: &ServerEvent) -> String {
    let mut frame = serde_json::to_value(event).unwrap_or_default();
    let mut inner = serde_json::to_value(inner).unwrap_or_default();
    if let (Some(obj), Some(fields)) = (frame.as_object_mut(), inner.as_object_mut()) {
        fields.remove("event");
        obj.insert(member.into(), Value::Object(std::mem::take(fields)));
    }
    frame.to_string()
}

/// The WebSocket actions a browser may send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientAction {
    SendMessage {
        content: String,
        #[serde(default)]
        client_message_id: Option<String>,
        #[serde(default)]
        metadata: Option<Map<String, Value>>,
        /// Ids of uploaded attachments the message carries.
        #[serde(default)]
        attachments: Vec<String>,
    },
    Typing {
        is_typing: bool,
    },
    Read {
        up_to: u64,
    },
    Ping {},
    /// The user asks for a person.
    Handoff {},
}

const ACTIONS: [&str; 5] = ["sendMessage", "typing", "read", "ping", "handoff"];

/// The WebSocket actions an agent may send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum AgentAction {
    /// Typing in a session the agent holds.
    Typing {
        session_id: String,
        is_typing: bool,
    },
    /// `online` or `away`.
    Status {
        status: AgentStatus,
    },
    Ping {},
}

const AGENT_ACTIONS: [&str; 3] = ["typing", "status", "ping"];

impl AgentAction {
    /// Parses one agent frame, with the codes of [`ClientAction::parse`].
    pub fn parse(frame: &[u8]) -> Result<Self, ChatError> {
        let a: Self = parse_tagged(frame, &AGENT_ACTIONS)?;
        if let Self::Status {
            status: AgentStatus::Offline,
        } = a
        {
            return Err(ChatError::invalid(
                ErrorCode::InvalidInput,
                "status must be online or away",
            ));
        }
        Ok(a)
    }
}

/// Parses a frame tagged by `action`, one of `actions`.
fn parse_tagged<T: serde::de::DeserializeOwned>(
    frame: &[u8],
    actions: &[&str],
) -> Result<T, ChatError> {
    let v: Value = crate::validate::parse_json(frame)?;
    let Some(obj) = v.as_object() else {
        return Err(ChatError::invalid(
            ErrorCode::InvalidInput,
            "a frame must be a JSON object",
        ));
    };
    match obj.get("action") {
        None => Err(ChatError::invalid(
            ErrorCode::MissingAction,
            "the frame has no action",
        )),
        Some(Value::String(a)) if actions.contains(&a.as_str()) => serde_json::from_value(v)
            .map_err(|e| ChatError::invalid(ErrorCode::InvalidInput, e.to_string())),
        Some(a) => Err(ChatError::invalid(
            ErrorCode::UnknownAction,
            format!("unknown action {a}; expected one of {}", actions.join(", ")),
        )),
    }
}

impl ClientAction {
    /// Parses one frame, telling apart bad JSON, a missing or unknown action and bad fields.
    pub fn parse(frame: &[u8]) -> Result<Self, ChatError> {
        parse_tagged(frame, &ACTIONS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action() {
        assert_eq!(
            ClientAction::parse(br#"{"action":"ping"}"#).unwrap(),
            ClientAction::Ping {}
        );
        assert_eq!(
            ClientAction::parse(br#"{"action":"typing","isTyping":true}"#).unwrap(),
            ClientAction::Typing { is_typing: true }
        );
        assert_eq!(
            ClientAction::parse(br#"{"action":"read","upTo":4}"#).unwrap(),
            ClientAction::Read { up_to: 4 }
        );
        let ClientAction::SendMessage {
            content,
            client_message_id,
            ..
        } = ClientAction::parse(
            br#"{"action":"sendMessage","content":"hi","clientMessageId":"c1"}"#,
        )
        .unwrap()
        else {
            panic!("not a send")
        };
        assert_eq!(
            (content.as_str(), client_message_id.as_deref()),
            ("hi", Some("c1"))
        );
    }

    #[test]
    fn bad_frames_have_distinct_codes() {
        let code = |f: &[u8]| ClientAction::parse(f).unwrap_err().code();
        assert_eq!(code(b"not json"), "invalid_json");
        assert_eq!(code(b"[1]"), "invalid_input");
        assert_eq!(code(br#"{"content":"x"}"#), "missing_action");
        assert_eq!(code(br#"{"action":"dance"}"#), "unknown_action");
        assert_eq!(code(br#"{"action":5}"#), "unknown_action");
        assert_eq!(code(br#"{"action":"read","upTo":"x"}"#), "invalid_input");
        assert_eq!(code(br#"{"action":"sendMessage"}"#), "invalid_input");
        assert_eq!(
            ClientAction::parse(br#"{"action":"handoff"}"#).unwrap(),
            ClientAction::Handoff {}
        );
    }

    #[test]
    fn agent_frames_parse_and_bad_ones_say_why() {
        assert_eq!(
            AgentAction::parse(br#"{"action":"status","status":"away"}"#).unwrap(),
            AgentAction::Status {
                status: AgentStatus::Away
            }
        );
        assert_eq!(
            AgentAction::parse(br#"{"action":"typing","sessionId":"x","isTyping":true}"#).unwrap(),
            AgentAction::Typing {
                session_id: "x".into(),
                is_typing: true
            }
        );
        let code = |f: &[u8]| AgentAction::parse(f).unwrap_err().code();
        assert_eq!(
            code(br#"{"action":"status","status":"offline"}"#),
            "invalid_input"
        );
        assert_eq!(
            code(br#"{"action":"status","status":"busy"}"#),
            "invalid_input"
        );
        assert_eq!(
            code(br#"{"action":"typing","isTyping":true}"#),
            "invalid_input"
        );
        assert_eq!(
            code(br#"{"action":"sendMessage","content":"x"}"#),
            "unknown_action"
        );
    }

    #[test]
    fn events_serialize_with_the_event_tag() {
        let v: Value =
            serde_json::from_str(&ServerEvent::typing(Role::Assistant, true).to_frame()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event":"typing","role":"assistant","isTyping":true})
        );
        assert_eq!(ServerEvent::Pong {}.to_frame(), r#"{"event":"pong"}"#);
        let sid = SessionId::new();
        let agent = ServerEvent::Typing {
            session_id: None,
            role: Role::Agent,
            name: Some("Alex".into()),
            is_typing: true,
        };
        assert_eq!(
            agent.to_frame(),
            r#"{"event":"typing","role":"agent","name":"Alex","isTyping":true}"#
        );
        assert_eq!(
            ServerEvent::typing(Role::User, false)
                .for_agent(sid)
                .to_frame(),
            format!(r#"{{"event":"typing","sessionId":"{sid}","role":"user","isTyping":false}}"#)
        );
        let (m, r) = (MessageId::new(), MessageId::new());
        assert_eq!(
            ServerEvent::Delta {
                message_id: m,
                reply_to: Some(r),
                index: 2,
                text: "Hel".into()
            }
            .to_frame(),
            format!(
                r#"{{"event":"delta","messageId":"{m}","replyTo":"{r}","index":2,"text":"Hel"}}"#
            )
        );
    }
}
