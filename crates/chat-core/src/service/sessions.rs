//! Sessions: creating them (guest or user), opening them with a token, reading their
//! history, and read receipts.

use super::{CreatedSession, ReadState, SessionRef};
use crate::error::ErrorCode;
use crate::events::ServerEvent;
use crate::model::{
    DispatchJob, JobKind, MessageId, MessageStatus, MessageType, Millis, NewMessage, Page,
    PageQuery, Role, Session, SessionId,
};
use crate::rate::Rate;
use crate::service::ChatService;
use crate::token::SessionClaims;
use crate::{ChatError, rate, validate};
use serde_json::{Map, Value};

impl ChatService {
    /// Creates a guest session, or a user session when `app_token` is a valid app JWT.
    pub async fn create_session(
        &self,
        client_ip: &str,
        app_token: Option<&str>,
    ) -> Result<CreatedSession, ChatError> {
        self.create_session_with(client_ip, app_token, None).await
    }

    /// [`Self::create_session`] with the app's `metadata` about the session (at most the
    /// metadata limit), stored and sent to n8n with every dispatch. With
    /// `CHAT_WELCOME_MESSAGE` the session starts with that assistant message.
    pub async fn create_session_with(
        &self,
        client_ip: &str,
        app_token: Option<&str>,
        metadata: Option<Map<String, Value>>,
    ) -> Result<CreatedSession, ChatError> {
        if let Some(m) = &metadata {
            validate::object_size("metadata", m, self.config.limits.max_metadata_bytes)?;
        }
        let now = self.now();
        let user_id = match app_token {
            None => None,
            Some(t) => Some(self.auth.verify(t, now).await?),
        };
        let limits = &self.config.limits;
        rate::hit(
            self.limiter(),
            "sessions",
            client_ip,
            Rate::per(limits.sessions_per_5min, 300_000),
            now,
        )
        .await?;
        let (ttl, retention) = if user_id.is_some() {
            (limits.user_session_ttl, limits.user_retention)
        } else {
            (limits.guest_session_ttl, limits.guest_retention)
        };
        // Whole seconds, as the token carries it.
        let expires_at = (now + ttl.as_millis() as Millis) / 1000 * 1000;
        let session = Session {
            id: SessionId::new(),
            user_id: user_id.clone(),
            created_at: now,
            // Kept for its retention after the last activity; the token expires on its own.
            expires_at: now + retention.as_millis() as Millis,
            last_seq: 0,
            read_up_to: 0,
            metadata,
            mode: Default::default(),
            updated_at: now,
            title: None,
        };
        crate::trace::session(&session.id);
        self.store().create_session(&session).await?;
        if let Some(text) = &self.config.welcome_message {
            self.welcome(&session, text).await?;
        }
        if self.config.n8n_session_start {
            // Best effort: a session without its greeting still works.
            let job = DispatchJob {
                session_id: session.id,
                message_id: MessageId::new(),
                kind: JobKind::SessionStart,
                seq: None,
            };
            if let Err(e) = self.ports.queue.schedule(job, now).await {
                tracing::warn!(session_id = %session.id, error = %e, "the session-start job could not be queued");
            }
        }
        tracing::info!(session_id = %session.id, user = user_id.is_some(), "session created");
        Ok(self.issue_token(session.id, user_id, expires_at))
    }

    /// A session token for `sid` expiring at `expires_at` (whole seconds), as
    /// `POST /sessions` and the resume route return it.
    pub(super) fn issue_token(
        &self,
        sid: SessionId,
        user_id: Option<String>,
        expires_at: Millis,
    ) -> CreatedSession {
        let token = self.tokens.issue(&SessionClaims {
            sid,
            sub: user_id.clone(),
            exp: expires_at / 1000,
            iat: self.now() / 1000,
        });
        CreatedSession {
            session_id: sid,
            token,
            expires_at,
            websocket_url: self.config.websocket_url.clone(),
            user_id,
        }
    }

    /// Stores the greeting as the session's first message (no one is connected yet, so
    /// nothing is pushed; the client reads it with the history).
    async fn welcome(&self, session: &Session, text: &str) -> Result<(), ChatError> {
        self.store()
            .append_message(NewMessage {
                id: MessageId::new(),
                session_id: session.id,
                role: Role::Assistant,
                name: None,
                kind: MessageType::Text,
                content: text.to_string(),
                data: None,
                metadata: None,
                status: MessageStatus::Delivered,
                created_at: session.created_at,
                reply_to: None,
                client_message_id: None,
                agent_id: None,
                attachments: Vec::new(),
                open_only: false,
                idempotency_key: Some("welcome".into()),
                limit: None,
            })
            .await?;
        Ok(())
    }

    /// Checks that `token` opens the session named `session` (a path or query parameter).
    /// 401 without a valid token, 403 for another session's token.
    pub fn authorize(
        &self,
        token: Option<&str>,
        session: &str,
    ) -> Result<SessionClaims, ChatError> {
        let token = token.ok_or_else(|| {
            ChatError::unauthorized(
                ErrorCode::MissingToken,
                "a session token is required (Authorization: Bearer <token>)",
            )
        })?;
        let claims = self.tokens.verify(token, self.now())?;
        crate::trace::session(&claims.sid);
        // Compared as ids, not text: a ULID is case-insensitive, so `01j…` names `01J…`.
        if session.parse::<SessionId>()? != claims.sid {
            return Err(ChatError::Forbidden(
                "this token belongs to another session".into(),
            ));
        }
        Ok(claims)
    }

    pub(super) async fn load_session(&self, id: &SessionId) -> Result<Session, ChatError> {
        self.store()
            .get_session(id, self.now())
            .await?
            .ok_or_else(|| ChatError::NotFound("unknown session".into()))
    }

    /// `GET /sessions/{id}`: the session and its latest messages.
    pub async fn session_view(
        &self,
        claims: &SessionClaims,
    ) -> Result<(crate::model::SessionView, Page), ChatError> {
        let session = self.load_session(&claims.sid).await?;
        let page = self
            .store()
            .list_messages(
                &session.id,
                PageQuery {
                    after: None,
                    before: None,
                    limit: 50.min(self.config.limits.max_page),
                },
            )
            .await?;
        let unread = self.unread_count(&session.id, session.read_up_to).await?;
        let mut view = crate::model::SessionView::new(&session, unread);
        // The token's expiry, as `POST /sessions` gave it (the data is kept longer).
        view.expires_at = claims.exp.saturating_mul(1000);
        Ok((view, page))
    }

    /// `GET /sessions/{id}/messages`: a page of history.
    pub async fn history(
        &self,
        claims: &SessionClaims,
        query: PageQuery,
    ) -> Result<Page, ChatError> {
        let page = self.store().list_messages(&claims.sid, query).await?;
        if page.messages.is_empty()
            && self
                .store()
                .get_session(&claims.sid, self.now())
                .await?
                .is_none()
        {
            return Err(ChatError::NotFound("unknown session".into()));
        }
        Ok(page)
    }

    pub(super) async fn unread_count(
        &self,
        session: &SessionId,
        read_up_to: u64,
    ) -> Result<u64, ChatError> {
        Ok(self.store().count_unread(session, read_up_to).await?)
    }

    /// A read receipt: raises the session's read mark and tells its connections.
    pub async fn mark_read(&self, session: SessionRef, up_to: u64) -> Result<ReadState, ChatError> {
        let s = self
            .store()
            .mark_read(&session.id, up_to)
            .await?
            .ok_or_else(|| ChatError::NotFound("unknown session".into()))?;
        let state = ReadState {
            session_id: s.id,
            read_up_to: s.read_up_to,
            unread_count: self.unread_count(&s.id, s.read_up_to).await?,
        };
        let event = ServerEvent::Read {
            session_id: s.id,
            up_to: state.read_up_to,
            unread_count: state.unread_count,
        };
        self.broadcast_held(&s.id, s.mode.holder(), &[event], None)
            .await;
        Ok(state)
    }
}
