//! The [`Store`] on SQLite.
//!
//! Every call is atomic (see [`Db::call`]). An append bumps the session's `last_seq`, records
//! the idempotency key and inserts the message in one call. So `seq` has no gaps, follows commit order, and a
//! repeated key returns the first message without writing anything.

use crate::db::{Db, DbError};
use async_trait::async_trait;
use chat_core::model::{
    AgentConnection, AgentRef, CannedReply, Connection, InboxQuery, InboxView, Message,
    MessageChange, MessageId, MessageStatus, MessageType, Millis, Mode, ModeState, NewMessage,
    Page, PageQuery, Role, Session, SessionId,
};
use chat_core::ports::{Appended, CannedWrite, Store, StoreError};
use rusqlite::{OptionalExtension, Row, params};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A seq from outside as SQLite's integer. Past `i64::MAX` it saturates instead of wrapping
/// negative, so `after`, `before` and `upTo` keep their meaning for any `u64`.
fn seq(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// SQLite-backed store. Agent connections live in memory: sockets do not survive a restart.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
    agents: Arc<Mutex<HashMap<String, AgentConnection>>>,
}

impl SqliteStore {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            agents: Arc::default(),
        }
    }

    fn agents(&self) -> std::sync::MutexGuard<'_, HashMap<String, AgentConnection>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes sessions past their retention (`expires_at`, which slides with activity) with
    /// everything of theirs (messages, idempotency keys, connections), and expired
    /// connections.
    pub async fn purge_expired(&self, now: Millis) -> Result<usize, StoreError> {
        self.db
            .call(move |c| {
                let gone = "SELECT id FROM sessions WHERE expires_at <= ?1";
                let mut n = c.execute(
                    &format!("DELETE FROM messages WHERE session_id IN ({gone})"),
                    [now],
                )?;
                n += c.execute(
                    &format!("DELETE FROM idempotency WHERE session_id IN ({gone})"),
                    [now],
                )?;
                n += c.execute(
                    &format!("DELETE FROM connections WHERE session_id IN ({gone})"),
                    [now],
                )?;
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

const MESSAGE_COLUMNS: &str = "id, seq, session_id, role, kind, content, data, metadata, status, created_at, reply_to, client_message_id, name, attachments, agent_id, edited_at, deleted_at";

const SESSION_COLUMNS: &str = "id, user_id, created_at, expires_at, last_seq, read_up_to, metadata, mode, agent_id, agent_name, waiting_since, updated_at, title";

/// [`Session::slid_expiry`] in SQL, for activity at `?2`: `expires_at` moves by as much as
/// `updated_at` does (never back), saturating rather than overflowing into a float.
const SLID_EXPIRY: &str = "CASE WHEN expires_at > 9223372036854775807 - MAX(0, ?2 - updated_at)
     THEN 9223372036854775807 ELSE expires_at + MAX(0, ?2 - updated_at) END";

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
        name: row.get(12)?,
        attachments: chat_core::model::AttachmentMeta::from_stored(
            row.get::<_, Option<String>>(13)?.as_deref(),
        )
        .map_err(|_| conversion("attachments"))?,
        agent_id: row.get(14)?,
        updated_at: 0,
        edited_at: None,
        deleted: false,
        deleted_at: None,
    }
    .with_changes(row.get(15)?, row.get(16)?))
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
        mode: mode_of(row.get(7)?, row.get(8)?, row.get(9)?, row.get(10)?)?,
        updated_at: row.get(11)?,
        title: row.get(12)?,
    })
}

fn mode_of(
    mode: String,
    agent_id: Option<String>,
    agent_name: Option<String>,
    waiting_since: Option<Millis>,
) -> rusqlite::Result<ModeState> {
    Ok(ModeState {
        mode: Mode::parse(&mode).ok_or_else(|| conversion("mode"))?,
        agent: agent_id.map(|id| AgentRef {
            id,
            name: agent_name.unwrap_or_default(),
        }),
        waiting_since,
    })
}

/// The mode of a session, read inside a call.
fn mode_in(c: &rusqlite::Connection, sid: &str) -> rusqlite::Result<ModeState> {
    c.query_row(
        "SELECT mode, agent_id, agent_name, waiting_since FROM sessions WHERE id = ?1",
        [sid],
        |r| mode_of(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
    )
}

/// The column of `sessions` holding a rate-limit bucket's TAT.
fn tat_column(bucket: chat_core::model::SessionBucket) -> &'static str {
    match bucket {
        chat_core::model::SessionBucket::Messages => "tat_messages",
        chat_core::model::SessionBucket::Webhook => "tat_webhook",
    }
}

fn connection_row(row: &Row<'_>) -> rusqlite::Result<Connection> {
    Ok(Connection {
        id: row.get(0)?,
        session_id: SessionId(ulid_col(row, 1)?),
        connected_at: row.get(2)?,
        expires_at: row.get(3)?,
        merged: row.get(4)?,
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
                    &format!(
                        "INSERT INTO sessions ({SESSION_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                    ),
                    params![
                        s.id.to_string(),
                        s.user_id,
                        s.created_at,
                        s.expires_at,
                        s.last_seq,
                        s.read_up_to,
                        to_json(&s.metadata),
                        s.mode.mode.as_str(),
                        s.mode.agent.as_ref().map(|a| a.id.clone()),
                        s.mode.agent.as_ref().map(|a| a.name.clone()),
                        s.mode.waiting_since,
                        s.updated_at,
                        s.title
                    ],
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
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1 AND expires_at > ?2"
                    ),
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
                let mode = mode_in(c, &sid)?;
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
                        return Ok(Some(Appended { message, created: false, mode, retry_after: None }));
                    }
                }
                if m.open_only && mode.mode == Mode::Closed {
                    return Ok(Some(Appended { message: m.with_seq(0), created: false, mode, retry_after: None }));
                }
                // The session's rate-limit bucket, taken in this same write.
                let mut tat = None;
                if let Some(limit) = m.limit {
                    let column = tat_column(limit.bucket);
                    let stored: Option<Millis> = c.query_row(
                        &format!("SELECT {column} FROM sessions WHERE id = ?1"),
                        [&sid],
                        |r| r.get(0),
                    )?;
                    match chat_core::rate::gcra(stored, m.created_at, limit.rate) {
                        Ok(t) => tat = Some((column, t)),
                        Err(wait) => {
                            return Ok(Some(Appended { message: m.with_seq(0), created: false, mode, retry_after: Some(wait) }));
                        }
                    }
                }
                if let Some((column, t)) = tat {
                    c.execute(&format!("UPDATE sessions SET {column} = ?2 WHERE id = ?1"), params![sid, t])?;
                }
                // Activity slides the retention by as much as it moves `updated_at`; the
                // first user message titles the session.
                let title = (m.role == Role::User).then(|| chat_core::model::title_of(&m.content));
                let (seq, expires_at): (u64, Millis) = c.query_row(
                    &format!("UPDATE sessions SET last_seq = last_seq + 1, updated_at = MAX(updated_at, ?2),
                         expires_at = {SLID_EXPIRY},
                         title = COALESCE(title, ?3)
                     WHERE id = ?1 RETURNING last_seq, expires_at"),
                    params![sid, m.created_at, title],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if let Some(key) = &m.idempotency_key {
                    c.execute(
                        "INSERT INTO idempotency (session_id, key, seq, expires_at) VALUES (?1, ?2, ?3, ?4)",
                        params![sid, key, seq, expires_at],
                    )?;
                }
                c.execute(
                    &format!(
                        "INSERT INTO messages ({MESSAGE_COLUMNS}, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, NULL, NULL, ?16)"
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
                        m.name,
                        chat_core::model::AttachmentMeta::to_stored(&m.attachments),
                        m.agent_id,
                        expires_at,
                    ],
                )?;
                Ok(Some(Appended { message: m.with_seq(seq), created: true, mode, retry_after: None }))
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
                    &format!("UPDATE sessions SET read_up_to = MAX(read_up_to, MIN(?2, last_seq)) WHERE id = ?1
                     RETURNING {SESSION_COLUMNS}"),
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
                    "INSERT OR REPLACE INTO connections (id, session_id, connected_at, expires_at, merged) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![conn.id, conn.session_id.to_string(), conn.connected_at, conn.expires_at, conn.merged],
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
                    "SELECT id, session_id, connected_at, expires_at, merged FROM connections WHERE id = ?1",
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
                    "SELECT id, session_id, connected_at, expires_at, merged FROM connections WHERE session_id = ?1 ORDER BY id",
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

    async fn set_mode(
        &self,
        session: &SessionId,
        expected: &ModeState,
        next: &ModeState,
        now: Millis,
    ) -> Result<Option<Session>, StoreError> {
        let (sid, expected, next) = (session.to_string(), expected.clone(), next.clone());
        self.db
            .call(move |c| {
                c.query_row(
                    &format!(
                        "UPDATE sessions SET mode = ?5, agent_id = ?6, agent_name = ?7, waiting_since = ?8, updated_at = ?2,
                             expires_at = {SLID_EXPIRY}
                         WHERE id = ?1 AND expires_at > ?2 AND mode = ?3 AND agent_id IS ?4
                         RETURNING {SESSION_COLUMNS}"
                    ),
                    params![
                        sid,
                        now,
                        expected.mode.as_str(),
                        expected.holder(),
                        next.mode.as_str(),
                        next.agent.as_ref().map(|a| a.id.clone()),
                        next.agent.as_ref().map(|a| a.name.clone()),
                        next.waiting_since,
                    ],
                    session_row,
                )
                .optional()
            })
            .await
            .map_err(err)
    }

    async fn list_inbox(&self, q: &InboxQuery) -> Result<Vec<Session>, StoreError> {
        let q = q.clone();
        self.db
            .call(move |c| {
                // The partial indexes `sessions_waiting` and `sessions_open` serve these.
                let (filter, time, order) = match &q.view {
                    InboxView::Waiting => ("mode = 'waiting'", "waiting_since", "ASC"),
                    InboxView::Mine(_) => ("mode = 'agent' AND agent_id = ?5", "updated_at", "DESC"),
                    InboxView::Open => ("mode IN ('waiting', 'agent')", "updated_at", "DESC"),
                };
                let cmp = if order == "ASC" { ">" } else { "<" };
                let after = if q.after.is_some() {
                    format!("AND ({time}, id) {cmp} (?2, ?3)")
                } else {
                    String::new()
                };
                let sql = format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE {filter} AND expires_at > ?1 {after}
                     ORDER BY {time} {order}, id {order} LIMIT ?4"
                );
                let (t, id) = q.after.map_or((0, String::new()), |(t, id)| (t, id.to_string()));
                let mine = match &q.view {
                    InboxView::Mine(a) => a.clone(),
                    _ => String::new(),
                };
                let mut stmt = c.prepare(&sql)?;
                if matches!(q.view, InboxView::Mine(_)) {
                    stmt.query_map(params![q.now, t, id, q.limit, mine], session_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                } else {
                    stmt.query_map(params![q.now, t, id, q.limit], session_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                }
            })
            .await
            .map_err(err)
    }

    async fn list_canned(&self) -> Result<Vec<CannedReply>, StoreError> {
        self.db
            .call(|c| {
                let mut stmt = c.prepare(
                    "SELECT id, shortcut, title, text, updated_at FROM canned_replies ORDER BY shortcut",
                )?;
                stmt.query_map([], |r| {
                    Ok(CannedReply {
                        id: r.get(0)?,
                        shortcut: r.get(1)?,
                        title: r.get(2)?,
                        text: r.get(3)?,
                        updated_at: r.get(4)?,
                    })
                })?
                .collect()
            })
            .await
            .map_err(err)
    }

    async fn create_canned(&self, reply: &CannedReply) -> Result<bool, StoreError> {
        let r = reply.clone();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO canned_replies (id, shortcut, title, text, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![r.id, r.shortcut, r.title, r.text, r.updated_at],
                )
                .map(|n| n == 1)
            })
            .await
            .map_err(err)
    }

    async fn update_canned(&self, reply: &CannedReply) -> Result<CannedWrite, StoreError> {
        let r = reply.clone();
        self.db
            .call(move |c| {
                let exists: Option<i64> = c
                    .query_row("SELECT 1 FROM canned_replies WHERE id = ?1", [&r.id], |x| x.get(0))
                    .optional()?;
                if exists.is_none() {
                    return Ok(CannedWrite::NotFound);
                }
                let taken: Option<i64> = c
                    .query_row(
                        "SELECT 1 FROM canned_replies WHERE shortcut = ?1 AND id <> ?2",
                        params![r.shortcut, r.id],
                        |x| x.get(0),
                    )
                    .optional()?;
                if taken.is_some() {
                    return Ok(CannedWrite::ShortcutTaken);
                }
                c.execute(
                    "UPDATE canned_replies SET shortcut = ?2, title = ?3, text = ?4, updated_at = ?5 WHERE id = ?1",
                    params![r.id, r.shortcut, r.title, r.text, r.updated_at],
                )?;
                Ok(CannedWrite::Written)
            })
            .await
            .map_err(err)
    }

    async fn delete_canned(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |c| {
                c.execute("DELETE FROM canned_replies WHERE id = ?1", [id])
                    .map(|n| n == 1)
            })
            .await
            .map_err(err)
    }

    async fn put_agent_connection(&self, c: &AgentConnection) -> Result<(), StoreError> {
        self.agents().insert(c.id.clone(), c.clone());
        Ok(())
    }

    async fn get_agent_connection(&self, id: &str) -> Result<Option<AgentConnection>, StoreError> {
        Ok(self.agents().get(id).cloned())
    }

    async fn delete_agent_connection(&self, id: &str) -> Result<(), StoreError> {
        self.agents().remove(id);
        Ok(())
    }

    async fn list_agent_connections(&self) -> Result<Vec<AgentConnection>, StoreError> {
        let mut v: Vec<AgentConnection> = self.agents().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        after: Option<(Millis, SessionId)>,
        limit: u32,
        now: Millis,
    ) -> Result<Vec<Session>, StoreError> {
        let user = user_id.to_string();
        let (t, id) = after.map_or((Millis::MAX, None), |(t, id)| (t, Some(id.to_string())));
        self.db
            .call(move |c| {
                // The index `sessions_by_user` (user_id, updated_at, id) serves this.
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions
                     WHERE user_id = ?1 AND expires_at > ?2
                       AND (?4 IS NULL OR updated_at < ?3 OR (updated_at = ?3 AND id < ?4))
                     ORDER BY updated_at DESC, id DESC LIMIT ?5"
                ))?;
                stmt.query_map(params![user, now, t, id, limit], session_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(err)
    }

    async fn change_message(
        &self,
        message: &Message,
        change: &MessageChange,
        at: Millis,
    ) -> Result<Option<Message>, StoreError> {
        let (sid, id, at_seq) = (
            message.session_id.to_string(),
            message.id.to_string(),
            seq(message.seq),
        );
        let change = change.clone();
        self.db
            .call(move |c| {
                let Some(mut m) = c
                    .query_row(
                        &format!(
                            "SELECT {MESSAGE_COLUMNS} FROM messages
                             WHERE id = ?1 AND session_id = ?2 AND seq = ?3 AND deleted_at IS NULL"
                        ),
                        params![id, sid, at_seq],
                        message_row,
                    )
                    .optional()?
                else {
                    return Ok(None);
                };
                m.apply(&change, at);
                // `changed_at` is set only here: the partial index of changes stays sparse.
                c.execute(
                    "UPDATE messages SET content = ?3, data = ?4, metadata = ?5, edited_at = ?6,
                         deleted_at = ?7, changed_at = ?8, attachments = ?9
                     WHERE id = ?1 AND session_id = ?2",
                    params![
                        id,
                        sid,
                        m.content,
                        to_json(&m.data),
                        to_json(&m.metadata),
                        m.edited_at,
                        m.deleted_at,
                        m.updated_at,
                        chat_core::model::AttachmentMeta::to_stored(&m.attachments),
                    ],
                )?;
                Ok(Some(m))
            })
            .await
            .map_err(err)
    }

    async fn list_changed(
        &self,
        session: &SessionId,
        after: Millis,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let sid = session.to_string();
        self.db
            .call(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages INDEXED BY messages_changed
                     WHERE session_id = ?1 AND changed_at > ?2
                     ORDER BY changed_at, seq LIMIT ?3"
                ))?;
                let mut messages = stmt
                    .query_map(params![sid, after, i64::from(limit) + 1], message_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let has_more = messages.len() > limit as usize;
                messages.truncate(limit as usize);
                Ok(Page { messages, has_more })
            })
            .await
            .map_err(err)
    }

    async fn erase_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        let sid = id.to_string();
        self.db
            .call(move |c| {
                let mut n = 0;
                for table in ["messages", "idempotency", "connections"] {
                    n += c.execute(
                        &format!("DELETE FROM {table} WHERE session_id = ?1"),
                        [&sid],
                    )?;
                }
                n += c.execute("DELETE FROM queue WHERE session_id = ?1", [&sid])?;
                n += c.execute("DELETE FROM dead_jobs WHERE session_id = ?1", [&sid])?;
                n += c.execute("DELETE FROM sessions WHERE id = ?1", [&sid])?;
                Ok(n > 0)
            })
            .await
            .map_err(err)
    }
}
