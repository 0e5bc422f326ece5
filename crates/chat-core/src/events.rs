//! WebSocket frames: what browsers send and what the server pushes.
//!
//! One JSON object per frame. Client frames carry an `action` (API Gateway's route selection
//! `$request.body.action`); server frames carry an `event`.

use crate::ChatError;
use crate::error::ErrorCode;
use crate::model::{Message, MessageId, MessageStatus, Role, SessionId};
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
        role: Role,
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
}

impl ServerEvent {
    pub fn to_frame(&self) -> String {
        serde_json::to_string(self).expect("server events always serialize")
    }

    pub fn error(e: &ChatError) -> Self {
        Self::Error {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
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
    },
    Typing {
        is_typing: bool,
    },
    Read {
        up_to: u64,
    },
    Ping {},
}

const ACTIONS: [&str; 4] = ["sendMessage", "typing", "read", "ping"];

impl ClientAction {
    /// Parses one frame, telling apart bad JSON, a missing or unknown action and bad fields.
    pub fn parse(frame: &[u8]) -> Result<Self, ChatError> {
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
            Some(Value::String(a)) if ACTIONS.contains(&a.as_str()) => serde_json::from_value(v)
                .map_err(|e| ChatError::invalid(ErrorCode::InvalidInput, e.to_string())),
            Some(a) => Err(ChatError::invalid(
                ErrorCode::UnknownAction,
                format!("unknown action {a}; expected one of {}", ACTIONS.join(", ")),
            )),
        }
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
    }

    #[test]
    fn events_serialize_with_the_event_tag() {
        let v: Value = serde_json::from_str(
            &ServerEvent::Typing {
                role: Role::Assistant,
                is_typing: true,
            }
            .to_frame(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event":"typing","role":"assistant","isTyping":true})
        );
        assert_eq!(ServerEvent::Pong {}.to_frame(), r#"{"event":"pong"}"#);
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
