//! The table's items: domain values to attribute maps and back (layout in `infra/TABLE.md`).

use aws_sdk_dynamodb::types::AttributeValue;
use chat_core::model::{
    AgentConnection, AgentRef, AgentStatus, CannedReply, Connection, Message, MessageId,
    MessageStatus, MessageType, Millis, Mode, ModeState, NewMessage, Role, Session, SessionId,
};
use chat_core::ports::StoreError;
use serde_json::{Map, Value};
use std::collections::HashMap;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn session_pk(id: &SessionId) -> String {
    format!("SESSION#{id}")
}

pub(crate) fn msg_sk(seq: u64) -> String {
    format!("MSG#{seq:020}")
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

pub(crate) fn sdk_err<E: std::error::Error + 'static>(e: E) -> StoreError {
    StoreError(crate::error_chain(&e))
}

pub(crate) fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(crate) fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn req_s<'a>(item: &'a Item, k: &str) -> Result<&'a str, StoreError> {
    get_s(item, k).ok_or_else(|| StoreError(format!("item lacks {k}")))
}

pub(crate) fn req_n<T: std::str::FromStr>(item: &Item, k: &str) -> Result<T, StoreError> {
    get_n(item, k).ok_or_else(|| StoreError(format!("item lacks number {k}")))
}

pub(crate) fn json_attr(item: &Item, k: &str) -> Result<Option<Map<String, Value>>, StoreError> {
    get_s(item, k)
        .map(|t| serde_json::from_str(t).map_err(err))
        .transpose()
}

pub(crate) fn ulid(s: &str) -> Result<ulid::Ulid, StoreError> {
    ulid::Ulid::from_string(s).map_err(err)
}

pub(crate) fn session_of(item: &Item) -> Result<Session, StoreError> {
    let id = req_s(item, "pk")?.trim_start_matches("SESSION#");
    Ok(Session {
        id: SessionId(ulid(id)?),
        user_id: get_s(item, "userId").map(str::to_string),
        created_at: req_n(item, "createdAt")?,
        expires_at: req_n(item, "expiresAtMs")?,
        last_seq: req_n(item, "lastSeq")?,
        read_up_to: req_n(item, "readUpTo")?,
        metadata: json_attr(item, "metadata")?,
        mode: mode_of(item)?,
        updated_at: get_n(item, "updatedAt").map_or_else(|| req_n(item, "createdAt"), Ok)?,
        title: get_s(item, "title").map(str::to_string),
    })
}

/// How far past a session's expiry the `ttl` of its partition's items is set, so that
/// activity moves it (one write of every item) at most once per this much activity.
pub(crate) const TTL_HEADROOM_MS: Millis = 7 * 24 * 3_600_000;

/// The `ttl` (Unix seconds) of a partition's items for a session kept until `expires_at`.
pub(crate) fn items_ttl(expires_at: Millis) -> i64 {
    expires_at.saturating_add(TTL_HEADROOM_MS) / 1000
}

/// A session item's mode; an item written before modes existed is with the bot.
fn mode_of(item: &Item) -> Result<ModeState, StoreError> {
    let mode = match get_s(item, "mode") {
        None => Mode::Bot,
        Some(m) => Mode::parse(m).ok_or_else(|| err("bad mode"))?,
    };
    Ok(ModeState {
        mode,
        agent: get_s(item, "agentId").map(|id| AgentRef {
            id: id.to_string(),
            name: get_s(item, "agentName").unwrap_or_default().to_string(),
        }),
        waiting_since: get_n(item, "waitingSince"),
    })
}

/// A time and a session id as an index sort key that orders like `(time, id)`.
pub(crate) fn time_key(t: Millis, id: &SessionId) -> String {
    format!("{:015}#{id}", t.max(0))
}

/// The attributes a session's mode sets, and those it removes: `mode`, `updatedAt` and
/// `activity` always; the keys of the sparse inbox indexes only while they apply (`waitPk`
/// and `waitSk` while waiting, `openPk` while waiting or held, `heldBy` while held).
pub(crate) fn mode_fields(
    id: &SessionId,
    m: &ModeState,
    updated_at: Millis,
) -> (Vec<(&'static str, AttributeValue)>, Vec<&'static str>) {
    let mut set = vec![
        ("mode", s(m.mode.as_str())),
        ("updatedAt", n(updated_at)),
        ("activity", s(time_key(updated_at, id))),
    ];
    let mut remove = Vec::new();
    match (m.mode, m.waiting_since) {
        (Mode::Waiting, Some(t)) => {
            set.push(("waitingSince", n(t)));
            set.push(("waitPk", s("WAITING")));
            set.push(("waitSk", s(time_key(t, id))));
        }
        _ => remove.extend(["waitingSince", "waitPk", "waitSk"]),
    }
    if matches!(m.mode, Mode::Waiting | Mode::Agent) {
        set.push(("openPk", s("OPEN")));
    } else {
        remove.push("openPk");
    }
    match &m.agent {
        Some(a) => {
            set.push(("agentId", s(a.id.clone())));
            set.push(("agentName", s(a.name.clone())));
            set.push(("heldBy", s(a.id.clone())));
        }
        None => remove.extend(["agentId", "agentName", "heldBy"]),
    }
    (set, remove)
}

pub(crate) const AGENTS_PK: &str = "AGENTS";
pub(crate) const CANNED_PK: &str = "CANNED";

pub(crate) fn agent_connection_item(c: &AgentConnection) -> Item {
    HashMap::from([
        ("pk".to_string(), s(AGENTS_PK)),
        ("sk".to_string(), s(format!("CONN#{}", c.id))),
        ("agentId".to_string(), s(c.agent.id.clone())),
        ("agentName".to_string(), s(c.agent.name.clone())),
        ("status".to_string(), s(c.status.as_str())),
        ("connectedAt".to_string(), n(c.connected_at)),
        ("expiresAtMs".to_string(), n(c.expires_at)),
        ("ttl".to_string(), n(c.expires_at / 1000)),
    ])
}

pub(crate) fn agent_connection_of(item: &Item) -> Result<AgentConnection, StoreError> {
    Ok(AgentConnection {
        id: req_s(item, "sk")?.trim_start_matches("CONN#").to_string(),
        agent: AgentRef {
            id: req_s(item, "agentId")?.to_string(),
            name: req_s(item, "agentName")?.to_string(),
        },
        status: AgentStatus::parse(req_s(item, "status")?).ok_or_else(|| err("bad status"))?,
        connected_at: req_n(item, "connectedAt")?,
        expires_at: req_n(item, "expiresAtMs")?,
    })
}

pub(crate) fn canned_item(r: &CannedReply) -> Item {
    HashMap::from([
        ("pk".to_string(), s(CANNED_PK)),
        ("sk".to_string(), s(format!("REPLY#{}", r.id))),
        ("shortcut".to_string(), s(r.shortcut.clone())),
        ("title".to_string(), s(r.title.clone())),
        ("text".to_string(), s(r.text.clone())),
        ("updatedAt".to_string(), n(r.updated_at)),
    ])
}

pub(crate) fn canned_of(item: &Item) -> Result<CannedReply, StoreError> {
    Ok(CannedReply {
        id: req_s(item, "sk")?.trim_start_matches("REPLY#").to_string(),
        shortcut: req_s(item, "shortcut")?.to_string(),
        title: req_s(item, "title")?.to_string(),
        text: req_s(item, "text")?.to_string(),
        updated_at: req_n(item, "updatedAt")?,
    })
}

pub(crate) fn message_of(item: &Item) -> Result<Message, StoreError> {
    let id = req_s(item, "pk")?.trim_start_matches("SESSION#");
    Ok(Message {
        id: MessageId(ulid(req_s(item, "msgId")?)?),
        seq: req_n(item, "seq")?,
        session_id: SessionId(ulid(id)?),
        role: Role::parse(req_s(item, "role")?).ok_or_else(|| err("bad role"))?,
        name: get_s(item, "name").map(str::to_string),
        kind: MessageType::parse(req_s(item, "type")?).ok_or_else(|| err("bad type"))?,
        content: req_s(item, "content")?.to_string(),
        data: json_attr(item, "data")?,
        metadata: json_attr(item, "metadata")?,
        status: MessageStatus::parse(req_s(item, "status")?).ok_or_else(|| err("bad status"))?,
        created_at: req_n(item, "createdAt")?,
        reply_to: get_s(item, "replyTo").map(ulid).transpose()?.map(MessageId),
        client_message_id: get_s(item, "clientMessageId").map(str::to_string),
        attachments: chat_core::model::AttachmentMeta::from_stored(get_s(item, "attachments"))
            .map_err(err)?,
        agent_id: get_s(item, "agentId").map(str::to_string),
        updated_at: 0,
        edited_at: None,
        deleted: false,
        deleted_at: None,
    }
    .with_changes(get_n(item, "editedAt"), get_n(item, "deletedAt")))
}

pub(crate) fn connection_of(
    item: &Item,
    session: SessionId,
    id: &str,
) -> Result<Connection, StoreError> {
    Ok(Connection {
        id: id.to_string(),
        session_id: session,
        connected_at: req_n(item, "connectedAt")?,
        expires_at: req_n(item, "expiresAtMs")?,
        merged: item
            .get("v")
            .and_then(|v| v.as_n().ok())
            .is_some_and(|v| v == "2"),
    })
}

pub(crate) fn message_item(m: &NewMessage, seq: u64, ttl: i64) -> Item {
    let mut item = HashMap::from([
        ("pk".to_string(), s(session_pk(&m.session_id))),
        ("sk".to_string(), s(msg_sk(seq))),
        ("msgId".to_string(), s(m.id.to_string())),
        ("seq".to_string(), n(seq)),
        ("role".to_string(), s(m.role.as_str())),
        ("type".to_string(), s(m.kind.as_str())),
        ("content".to_string(), s(m.content.clone())),
        ("status".to_string(), s(m.status.as_str())),
        ("createdAt".to_string(), n(m.created_at)),
        ("ttl".to_string(), n(ttl)),
    ]);
    if let Some(d) = &m.data {
        item.insert("data".into(), s(Value::Object(d.clone()).to_string()));
    }
    if let Some(d) = &m.metadata {
        item.insert("metadata".into(), s(Value::Object(d.clone()).to_string()));
    }
    if let Some(r) = &m.reply_to {
        item.insert("replyTo".into(), s(r.to_string()));
    }
    if let Some(c) = &m.client_message_id {
        item.insert("clientMessageId".into(), s(c.clone()));
    }
    if let Some(name) = &m.name {
        item.insert("name".into(), s(name.clone()));
    }
    if let Some(a) = chat_core::model::AttachmentMeta::to_stored(&m.attachments) {
        item.insert("attachments".into(), s(a));
    }
    if let Some(agent) = &m.agent_id {
        item.insert("agentId".into(), s(agent.clone()));
    }
    item
}
