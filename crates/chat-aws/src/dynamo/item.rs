//! The table's items: domain values to attribute maps and back (layout in `infra/TABLE.md`).

use aws_sdk_dynamodb::types::AttributeValue;
use chat_core::model::{
    Connection, Message, MessageId, MessageStatus, MessageType, NewMessage, Role, Session,
    SessionId,
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
        mode: Default::default(),
        updated_at: req_n(item, "createdAt")?,
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
    })
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
    })
}

pub(crate) fn message_item(m: &NewMessage, seq: u64) -> Item {
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
        ("ttl".to_string(), n(m.expires_at / 1000)),
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
    item
}
