//! Conversations people keep: a signed-in user's list of sessions on any device, resuming
//! one with a fresh token, exporting everything of a user or a session, and erasing it.
//!
//! The user's routes take their app JWT (not an agent's); the operator's commands
//! (`chat-local admin`, `chat-admin`) call the same functions without one.

use super::CreatedSession;
use crate::error::ErrorCode;
use crate::model::{Message, Millis, Mode, PageQuery, Session, SessionId, SessionView, UNTITLED};
use crate::service::ChatService;
use crate::{ChatError, token};
use serde::Serialize;

/// The most sessions one page of `GET /sessions` holds.
pub const MAX_CONVERSATIONS_PAGE: u32 = 50;

/// One conversation in `GET /sessions`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub session_id: SessionId,
    pub title: String,
    #[serde(serialize_with = "super::ser_time")]
    pub created_at: Millis,
    #[serde(serialize_with = "super::ser_time")]
    pub updated_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    pub unread_count: u64,
    pub mode: Mode,
}

/// A page of `GET /sessions`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationsPage {
    pub sessions: Vec<Conversation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One session and all of its messages, in an export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedSession {
    pub session: SessionView,
    pub messages: Vec<Message>,
}

/// `GET /me/export`, `admin export`: everything stored of a user (or of one session).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(serialize_with = "super::ser_time")]
    pub exported_at: Millis,
    pub sessions: Vec<ExportedSession>,
}

/// Who may erase a session (`DELETE /sessions/{id}`).
enum Eraser {
    /// The session's own token named it.
    Token,
    /// A signed-in user; the session must be theirs.
    User(String),
}

impl ChatService {
    /// The signed-in user behind `Authorization: Bearer <app JWT>`: 401 without a valid app
    /// JWT (a session token included), 403 for an agent's.
    pub async fn app_user(&self, authorization: Option<&str>) -> Result<String, ChatError> {
        let Some(t) = token::bearer(authorization) else {
            return Err(ChatError::unauthorized(
                ErrorCode::MissingToken,
                "an app token is required (Authorization: Bearer <app JWT>)",
            ));
        };
        self.auth.verify_user(t, self.now()).await
    }

    /// `GET /sessions`: the user's conversations, newest activity first. `cursor` is the
    /// `nextCursor` of the page before.
    pub async fn conversations(
        &self,
        user: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<ConversationsPage, ChatError> {
        let after = cursor.map(parse_cursor).transpose()?;
        let mut sessions = self
            .store()
            .list_user_sessions(user, after, limit + 1, self.now())
            .await?;
        let next_cursor = if sessions.len() > limit as usize {
            sessions.truncate(limit as usize);
            sessions
                .last()
                .map(|s| format!("{}_{}", s.updated_at, s.id))
        } else {
            None
        };
        let sessions =
            futures_util::future::try_join_all(sessions.iter().map(|s| self.conversation(s)))
                .await?;
        Ok(ConversationsPage {
            sessions,
            next_cursor,
        })
    }

    async fn conversation(&self, s: &Session) -> Result<Conversation, ChatError> {
        let last = self
            .store()
            .list_messages(
                &s.id,
                PageQuery {
                    after: None,
                    before: None,
                    limit: 1,
                },
            )
            .await?
            .messages
            .pop();
        Ok(Conversation {
            session_id: s.id,
            title: s.title.clone().unwrap_or_else(|| UNTITLED.to_string()),
            created_at: s.created_at,
            updated_at: s.updated_at,
            last_message: last,
            unread_count: self.unread_count(&s.id, s.read_up_to).await?,
            mode: s.mode.mode,
        })
    }

    /// The session `id` of `user`: 404 when it does not exist (or is gone), 403 when it is
    /// another's (a guest session included).
    async fn users_session(&self, user: &str, id: &str) -> Result<Session, ChatError> {
        let sid: SessionId = id.parse()?;
        let s = self.load_session(&sid).await?;
        if s.user_id.as_deref() != Some(user) {
            return Err(ChatError::Forbidden(
                "this conversation belongs to someone else".into(),
            ));
        }
        Ok(s)
    }

    /// `POST /sessions/{id}/resume`: a fresh session token (a user session's lifetime) for
    /// one of the user's conversations, so another device opens it.
    pub async fn resume(&self, user: &str, id: &str) -> Result<CreatedSession, ChatError> {
        let s = self.users_session(user, id).await?;
        crate::trace::session(&s.id);
        let ttl = self.config.limits.user_session_ttl.as_millis() as Millis;
        let expires_at = (self.now() + ttl) / 1000 * 1000;
        tracing::info!(session_id = %s.id, "session resumed");
        let mut created = self.issue_token(s.id, Some(user.to_string()), expires_at);
        created.user_id = None;
        Ok(created)
    }

    /// Every message of a session, oldest first.
    pub(super) async fn all_messages(&self, id: &SessionId) -> Result<Vec<Message>, ChatError> {
        let mut out = Vec::new();
        loop {
            let page = self
                .store()
                .list_messages(
                    id,
                    PageQuery {
                        after: Some(out.last().map_or(0, |m: &Message| m.seq)),
                        before: None,
                        limit: self.config.limits.max_page,
                    },
                )
                .await?;
            let more = page.has_more && !page.messages.is_empty();
            out.extend(page.messages);
            if !more {
                return Ok(out);
            }
        }
    }

    async fn exported(&self, s: &Session) -> Result<ExportedSession, ChatError> {
        let unread = self.unread_count(&s.id, s.read_up_to).await?;
        let mut messages = self.all_messages(&s.id).await?;
        // Attachments as metadata with fresh download URLs.
        self.mint_urls(&mut messages).await;
        Ok(ExportedSession {
            session: SessionView::new(s, unread),
            messages,
        })
    }

    /// Every session of `user` alive at `now` (`Millis::MIN`: expired ones not yet purged
    /// too), newest activity first.
    async fn all_user_sessions(&self, user: &str, now: Millis) -> Result<Vec<Session>, ChatError> {
        let mut out: Vec<Session> = Vec::new();
        loop {
            let after = out.last().map(|s| (s.updated_at, s.id));
            let page = self
                .store()
                .list_user_sessions(user, after, MAX_CONVERSATIONS_PAGE, now)
                .await?;
            let done = page.len() < MAX_CONVERSATIONS_PAGE as usize;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// `GET /me/export` and `admin export --user`: every kept session of `user` with all
    /// its messages.
    pub async fn export_user(&self, user: &str) -> Result<Export, ChatError> {
        let now = self.now();
        let mut sessions = Vec::new();
        for s in self.all_user_sessions(user, now).await? {
            sessions.push(self.exported(&s).await?);
        }
        tracing::info!(sessions = sessions.len(), "user data exported");
        Ok(Export {
            user_id: Some(user.to_string()),
            exported_at: now,
            sessions,
        })
    }

    /// `admin export --session`: one session (kept) with all its messages; 404 when gone.
    pub async fn export_session(&self, id: &str) -> Result<Export, ChatError> {
        let sid: SessionId = id.parse()?;
        let s = self.load_session(&sid).await?;
        Ok(Export {
            user_id: s.user_id.clone(),
            exported_at: self.now(),
            sessions: vec![self.exported(&s).await?],
        })
    }

    /// Erases one session: its connections are closed (1000) and forgotten, then the store
    /// erases everything of it. `false` when nothing of it was stored.
    pub async fn erase(&self, sid: &SessionId) -> Result<bool, ChatError> {
        let connections = self.store().list_connections(sid).await?;
        for c in &connections {
            if let Err(e) = self.ports.push.close(&c.id).await {
                tracing::warn!(session_id = %sid, connection_id = %c.id, error = %e, "closing an erased session's connection failed");
            }
            crate::metrics::connection_closed();
        }
        // The files first: once the messages are gone, nothing names them.
        let files = self.erase_attachments(sid).await?;
        let erased = self.store().erase_session(sid).await?;
        tracing::info!(session_id = %sid, erased, connections = connections.len(), files, "session erased");
        Ok(erased)
    }

    /// `DELETE /me` and `admin erase --user`: erases every session of `user`, expired ones
    /// not yet purged included; returns how many.
    pub async fn erase_user(&self, user: &str) -> Result<usize, ChatError> {
        let sessions = self.all_user_sessions(user, Millis::MIN).await?;
        for s in &sessions {
            self.erase(&s.id).await?;
        }
        tracing::info!(sessions = sessions.len(), "user data erased");
        Ok(sessions.len())
    }

    /// `DELETE /sessions/{id}`: with the session's own token, or the app JWT of its user
    /// (403 for another's session, 404 when it is gone).
    pub async fn erase_by(&self, authorization: Option<&str>, id: &str) -> Result<(), ChatError> {
        let eraser = match token::bearer(authorization) {
            // A session token verifies with the session secret; anything else must be an app JWT.
            Some(t) if self.tokens.verify(t, self.now()).is_ok() => {
                self.authorize(Some(t), id)?;
                Eraser::Token
            }
            _ => Eraser::User(self.app_user(authorization).await?),
        };
        let s = match eraser {
            Eraser::Token => self.load_session(&id.parse()?).await?,
            Eraser::User(user) => self.users_session(&user, id).await?,
        };
        self.erase(&s.id).await?;
        Ok(())
    }
}

/// `<updated_at>_<session id>`, as [`ChatService::conversations`] writes it.
fn parse_cursor(c: &str) -> Result<(Millis, SessionId), ChatError> {
    let bad = || {
        ChatError::invalid(
            ErrorCode::InvalidQuery,
            "cursor is not one this server gave",
        )
    };
    let (t, id) = c.split_once('_').ok_or_else(bad)?;
    let t: Millis = t.parse().map_err(|_| bad())?;
    let id: SessionId = id.parse().map_err(|_| bad())?;
    Ok((t, id))
}
