//! The [`Store`] on SQLite.
//!
//! Every call is atomic (see [`Db::call`]). An append bumps the session's `last_seq`, records
//! the idempotency key and inserts the message in one call. So `seq` has no gaps, follows commit order, and a
//! repeated key returns the first message without writing anything.

use crate::db::{Db, DbError};
use async_trait::async_trait;
use chat_core::model::{
    Connection, Message, MessageId, MessageStatus, MessageType, Millis, NewMessage, Page,
    PageQuery, Role, Session, SessionId,
};
use chat_core::ports::{Appended, Store, StoreError};
use rusqlite::{OptionalExtension, Row, params};
use serde_json::{Map, Value};

/// A seq from outside as SQLite's integer. Past `i64::MAX` it saturates instead of wrapping
/// negative, so `after`, `before` and `upTo` keep their meaning for any `u64`.
fn seq(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// SQLite-backed store.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Removes expired sessions (with their messages), connections and idempotency keys.
    pub async fn purge_expired(&self, now: Millis) -> Result<usize, StoreError> {
        self.db
            .call(move |c| {
                let mut n = c.execute("DELETE FROM messages WHERE expires_at <= ?1", [now])?;
                n += c.execute("DELETE FROM idempotency WHERE expires_at <= ?1", [now])?;
                n += c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
                n += c.execute("DELETE FROM connections WHERE expires_at <= ?1", [now])?;
                Ok(n)
            })
            .await
            .map_err(err)
    }

    /// Forgets every connection (at start: sockets do not survive a restart).
    pub async fn clear_connections(&self) -> Result<(), StoreError> {
        self.db
            .call(|c| c.execute("DELETE FROM connections", []).map(|_| ()))
            .await
            .map_err(err)
    }
}

fn err(e: DbError) -> StoreError {
    StoreError(e.to_string())
}

const MESSAGE_COLUMNS: &str = "id, seq, session_id, role, kind, content, data, metadata, status, created_at, reply_to, client_message_id";

fn conversion(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_string(), rusqlite::types::Type::Text)
}

fn ulid_col(row: &Row<'_>, i: usize) -> rusqlite::Result<ulid::Ulid> {
    let s: String = row.get(i)?;
    ulid::Ulid::from_string(&s).map_err(|_| conversion("ulid"))
}

fn json_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Map<String, Value>>> {
    let s: Option<String> = row.get(i)?;
    s.map(|s| serde_json::from_str(&s).map_err(|_| conversion("json")))
        .transpose()
}

fn message_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let role: String = row.get(3)?;
    let kind: String = row.get(4)?;
    let status: String = row.get(8)?;
    let reply_to: Option<String> = row.get(10)?;
    Ok(Message {
        id: MessageId(ulid_col(row, 0)?),
        seq: row.get(1)?,
        session_id: SessionId(ulid_col(row, 2)?),
        role: Role::parse(&role).ok_or_else(|| conversion("role"))?,
        kind: MessageType::parse(&kind).ok_or_else(|| conversion("kind"))?,
        content: row.get(5)?,
        data: json_col(row, 6)?,
        metadata: json_col(row, 7)?,
        status: MessageStatus::parse(&status).ok_or_else(|| conversion("status"))?,
        created_at: row.get(9)?,
        reply_to: reply_to
            .map(|s| {
                ulid::Ulid::from_string(&s)
                    .map(MessageId)
                    .map_err(|_| conversion("ulid"))
            })
            .transpose()?,
        client_message_id: row.get(11)?,
    })
}

fn session_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: SessionId(ulid_col(row, 0)?),
        user_id: row.get(1)?,
        created_at: row.get(2)?,
        expires_at: row.get(3)?,
        last_seq: row.get(4)?,
        read_up_to: row.get(5)?,
        metadata: json_col(row, 6)?,
    })
}

fn connection_row(row: &Row<'_>) -> rusqlite::Result<Connection> {
    Ok(Connection {
        id: row.get(0)?,
        session_id: SessionId(ulid_col(row, 1)?),
        connected_at: row.get(2)?,
        expires_at: row.get(3)?,
    })
}

fn to_json(m: &Option<Map<String, Value>>) -> Option<String> {
    m.as_ref().map(|m| Value::Object(m.clone()).to_string())
}

fn get_by_seq(c: &rusqlite::Connection, session: &str, seq: u64) -> rusqlite::Result<Message> {
    c.query_row(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?1 AND seq = ?2"),
        params![session, seq],
        message_row,
    )
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_session(&self, s: &Session) -> Result<(), StoreError> {
        let s = s.clone();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO sessions (id, user_id, created_at, expires_at, last_seq, read_up_to, metadata)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![s.id.to_string(), s.user_id, s.created_at, s.expires_at, s.last_seq, s.read_up_to, to_json(&s.metadata)],
                )
                .map(|_| ())
            })
            .await
            .map_err(err)
    }

    async fn get_session(
        &self,
        id: &SessionId,
        now: Millis,
    ) -> Result<Option<Session>, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT id, user_id, created_at, expires_at, last_seq, read_up_to, metadata
                     FROM sessions WHERE id = ?1 AND expires_at > ?2",
                    params![id, now],
                    session_row,
                )
                .optional()
            })
            .await
            .map_err(err)
    }

    async fn append_message(&self, m: NewMessage) -> Result<Option<Appended>, StoreError> {
        self.db
            .call(move |c| {
                let sid = m.session_id.to_string();
                let live: Option<i64> = c
                    .query_row(
                        "SELECT 1 FROM sessions WHERE id = ?1 AND expires_at > ?2",
                        params![sid, m.created_at],
                        |r| r.get(0),
                    )
                    .optional()?;
                if live.is_none() {
                    return Ok(None);
                }
                if let Some(key) = &m.idempotency_key {
                    let seq: Option<u64> = c
                        .query_row(
                            "SELECT seq FROM idempotency WHERE session_id = ?1 AND key = ?2",
                            params![sid, key],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(seq) = seq {
                        let message = get_by_seq(c, &sid, seq)?;
                        return Ok(Some(Appended { message, created: false }));
                    }
                }
                let seq: u64 = c.query_row(
                    "UPDATE sessions SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
                    [&sid],
                    |r| r.get(0),
                )?;
                if let Some(key) = &m.idempotency_key {
                    c.execute(
                        "INSERT INTO idempotency (session_id, key, seq, expires_at) VALUES (?1, ?2, ?3, ?4)",
                        params![sid, key, seq, m.expires_at],
                    )?;
                }
                c.execute(
                    &format!(
                        "INSERT INTO messages ({MESSAGE_COLUMNS}, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                    ),
                    params![
                        m.id.to_string(),
                        seq,
                        sid,
                        m.role.as_str(),
                        m.kind.as_str(),
                        m.content,
                        to_json(&m.data),
                        to_json(&m.metadata),
                        m.status.as_str(),
                        m.created_at,
                        m.reply_to.map(|r| r.to_string()),
                        m.client_message_id,
                        m.expires_at,
                    ],
                )?;
                Ok(Some(Appended { message: m.with_seq(seq), created: true }))
            })
            .await
            .map_err(err)
    }

    async fn get_message(
        &self,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let (sid, id) = (session.to_string(), id.to_string());
        self.db
            .call(move |c| {
                c.query_row(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1 AND session_id = ?2"
                    ),
                    params![id, sid],
                    message_row,
                )
                .optional()
            })
            .await
            .map_err(err)
    }

    async fn list_messages(&self, session: &SessionId, q: PageQuery) -> Result<Page, StoreError> {
        let sid = session.to_string();
        self.db
            .call(move |c| {
                let after = q.after.map_or(-1, seq);
                let before = q.before.map_or(i64::MAX, seq);
                let order = if q.after.is_some() { "ASC" } else { "DESC" };
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages
                     WHERE session_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq {order} LIMIT ?4"
                ))?;
                let mut messages = stmt
                    .query_map(
                        params![sid, after, before, i64::from(q.limit) + 1],
                        message_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let has_more = messages.len() > q.limit as usize;
                messages.truncate(q.limit as usize);
                if q.after.is_none() {
                    messages.reverse();
                }
                Ok(Page { messages, has_more })
            })
            .await
            .map_err(err)
    }

    async fn advance_status(
        &self,
        message: &Message,
        status: MessageStatus,
    ) -> Result<Option<Message>, StoreError> {
        let (sid, id) = (message.session_id.to_string(), message.id.to_string());
        self.db
            .call(move |c| {
                let current: Option<String> = c
                    .query_row(
                        "SELECT status FROM messages WHERE session_id = ?1 AND id = ?2",
                        params![sid, id],
                        |r| r.get(0),
                    )
                    .optional()?;
                match current.as_deref().and_then(MessageStatus::parse) {
                    Some(current) if current.rank() < status.rank() => {}
                    _ => return Ok(None),
                }
                let m = c.query_row(
                    &format!(
                        "UPDATE messages SET status = ?3 WHERE session_id = ?1 AND id = ?2 RETURNING {MESSAGE_COLUMNS}"
                    ),
                    params![sid, id, status.as_str()],
                    message_row,
                )?;
                Ok(Some(m))
            })
            .await
            .map_err(err)
    }

    async fn mark_read(
        &self,
        session: &SessionId,
        up_to: u64,
    ) -> Result<Option<Session>, StoreError> {
        let sid = session.to_string();
        self.db
            .call(move |c| {
                c.query_row(
                    "UPDATE sessions SET read_up_to = MAX(read_up_to, MIN(?2, last_seq)) WHERE id = ?1
                     RETURNING id, user_id, created_at, expires_at, last_seq, read_up_to, metadata",
                    params![sid, seq(up_to)],
                    session_row,
                )
                .optional()
            })
            .await
            .map_err(err)
    }

    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let conn = conn.clone();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO connections (id, session_id, connected_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![conn.id, conn.session_id.to_string(), conn.connected_at, conn.expires_at],
                )
                .map(|_| ())
            })
            .await
            .map_err(err)
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT id, session_id, connected_at, expires_at FROM connections WHERE id = ?1",
                    [id],
                    connection_row,
                )
                .optional()
            })
            .await
            .map_err(err)
    }

    async fn delete_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let id = conn.id.clone();
        self.db
            .call(move |c| {
                c.execute("DELETE FROM connections WHERE id = ?1", [id])
                    .map(|_| ())
            })
            .await
            .map_err(err)
    }

    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError> {
        let sid = session.to_string();
        self.db
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id, session_id, connected_at, expires_at FROM connections WHERE session_id = ?1 ORDER BY id",
                )?;
                stmt.query_map([sid], connection_row)?.collect()
            })
            .await
            .map_err(err)
    }

    async fn find_by_key(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<Message>, StoreError> {
        let (sid, key) = (session.to_string(), key.to_string());
        self.db
            .call(move |c| {
                c.query_row(
                    &format!(
                        "SELECT {} FROM idempotency i JOIN messages m
                         ON m.session_id = i.session_id AND m.seq = i.seq
                         WHERE i.session_id = ?1 AND i.key = ?2",
                        MESSAGE_COLUMNS
                            .split(", ")
                            .map(|col| format!("m.{col}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    params![sid, key],
                    message_row,
                )
                .optional()
            })
            .await
            .map_err(err)
    }

    async fn count_unread(&self, session: &SessionId, after: u64) -> Result<u64, StoreError> {
        let sid = session.to_string();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM messages WHERE session_id = ?1 AND seq > ?2 AND role <> 'user'",
                    params![sid, seq(after)],
                    |r| r.get(0),
                )
            })
            .await
            .map_err(err)
    }
}
