//! What agents see and do beside the mode changes: who they are (their JWT), the inbox, a
//! session's history, their messages, their WebSockets (typing, status) and the live
//! `inbox`, `agents` and `presence` events.

use crate::error::ErrorCode;
use crate::events::{AgentAction, AgentInfo, Participant, ServerEvent};
use crate::model::{
    AgentConnection, AgentRef, AgentStatus, InboxQuery, InboxView, Message, MessageId,
    MessageStatus, MessageType, Millis, NewMessage, Page, PageQuery, Role, Session, SessionId,
    SessionSummary,
};
use crate::service::ChatService;
use crate::{ChatError, token, validate};
use std::collections::BTreeMap;

/// How long an agent connection is kept at most (API Gateway closes WebSockets after two
/// hours).
const AGENT_CONNECTION_MS: Millis = 2 * 3_600_000;
/// The most inbox sessions read to count what each agent holds.
const HOLDING_SCAN: u32 = 1000;

/// One inbox page.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxPage {
    pub sessions: Vec<SessionSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An agent message to send (`POST /agent/sessions/{id}/messages`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSendInput {
    pub content: String,
    #[serde(default)]
    pub client_message_id: Option<String>,
    /// Ids of uploaded attachments (`POST /agent/sessions/{id}/attachments`).
    #[serde(default)]
    pub attachments: Vec<String>,
}

impl ChatService {
    /// The agent behind `Authorization: Bearer <agent JWT>`: 401 without a valid app JWT,
    /// 403 for one whose role is not `agent`.
    pub async fn agent(&self, authorization: Option<&str>) -> Result<AgentRef, ChatError> {
        let Some(t) = token::bearer(authorization) else {
            return Err(ChatError::unauthorized(
                ErrorCode::MissingToken,
                "an agent token is required (Authorization: Bearer <agent JWT>)",
            ));
        };
        self.auth.verify_agent(t, self.now()).await
    }

    /// A page of the inbox. `cursor` is the `nextCursor` of the page before.
    pub async fn inbox(
        &self,
        agent: &AgentRef,
        view: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<InboxPage, ChatError> {
        let view = match view {
            "waiting" => InboxView::Waiting,
            "mine" => InboxView::Mine(agent.id.clone()),
            "open" => InboxView::Open,
            _ => {
                return Err(ChatError::invalid(
                    ErrorCode::InvalidQuery,
                    "view must be waiting, mine or open",
                ));
            }
        };
        let after = cursor.map(parse_cursor).transpose()?;
        let query = InboxQuery {
            view,
            after,
            limit: limit + 1,
            now: self.now(),
        };
        let mut sessions = self.store().list_inbox(&query).await?;
        let next_cursor = if sessions.len() > limit as usize {
            sessions.truncate(limit as usize);
            sessions
                .last()
                .map(|s| format!("{}_{}", query.sort_time(s), s.id))
        } else {
            None
        };
        let summaries =
            futures_util::future::try_join_all(sessions.iter().map(|s| self.summary(s))).await?;
        Ok(InboxPage {
            sessions: summaries,
            next_cursor,
        })
    }

    /// The session as agents see it: with its last message and whether its user is online.
    pub async fn summary(&self, s: &Session) -> Result<SessionSummary, ChatError> {
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
            .await?;
        let online = self.user_online(&s.id).await;
        Ok(SessionSummary::new(
            s,
            last.messages.into_iter().next(),
            online,
        ))
    }

    async fn user_online(&self, session: &SessionId) -> bool {
        !self.live_connections(session).await.is_empty()
    }

    /// `GET /agent/sessions/{id}`: any agent may read any session.
    pub async fn agent_session(&self, id: &str) -> Result<(SessionSummary, Page), ChatError> {
        let session = self.load_session(&id.parse()?).await?;
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
        Ok((self.summary(&session).await?, page))
    }

    /// `GET /agent/sessions/{id}/messages`.
    pub async fn agent_history(&self, id: &str, query: PageQuery) -> Result<Page, ChatError> {
        let session = self.load_session(&id.parse()?).await?;
        Ok(self.store().list_messages(&session.id, query).await?)
    }

    /// An agent's message to a session it holds (409 otherwise). A repeat of a
    /// `clientMessageId` returns the stored message.
    pub async fn agent_send(
        &self,
        agent: &AgentRef,
        id: &str,
        input: AgentSendInput,
    ) -> Result<Message, ChatError> {
        let attachment_ids = self.attachment_ids(
            &input.attachments,
            &input.content,
            self.config.limits.max_content_chars,
        )?;
        if let Some(c) = &input.client_message_id {
            validate::key("clientMessageId", c)?;
        }
        let session = self.load_session(&id.parse()?).await?;
        let key = input
            .client_message_id
            .as_ref()
            .map(|c| format!("agent#{}#{c}", agent.id));
        if let Some(key) = &key
            && let Some(stored) = self.store().find_by_key(&session.id, key).await?
        {
            if stored.content != input.content
                || !stored
                    .attachments
                    .iter()
                    .map(|a| a.id)
                    .eq(attachment_ids.iter().copied())
            {
                return Err(ChatError::Conflict(
                    "clientMessageId was already used for a different message".into(),
                ));
            }
            return Ok(self.with_urls(stored).await);
        }
        if session.mode.holder() != Some(agent.id.as_str()) {
            return Err(ChatError::Conflict(
                "you do not hold this session: claim it first".into(),
            ));
        }
        let new = NewMessage {
            id: MessageId::new(),
            session_id: session.id,
            role: Role::Agent,
            name: Some(agent.name.clone()),
            kind: MessageType::Text,
            content: input.content,
            data: None,
            metadata: None,
            status: MessageStatus::Delivered,
            created_at: self.now(),
            reply_to: None,
            client_message_id: input.client_message_id,
            agent_id: Some(agent.id.clone()),
            attachments: Vec::new(),
            open_only: true,
            idempotency_key: key,
            limit: None,
        };
        self.locks
            .run(session.id, async {
                let mut new = new;
                new.attachments = self
                    .claim_attachments(&session.id, &attachment_ids, &new.id, session.expires_at)
                    .await?;
                let id = new.id;
                let appended = self.store().append_message(new).await;
                if !matches!(&appended, Ok(Some(a)) if a.created) {
                    self.release_attachments(&attachment_ids, &id).await;
                }
                let appended =
                    appended?.ok_or_else(|| ChatError::NotFound("unknown session".into()))?;
                if appended.refused() {
                    return Err(ChatError::Conflict("this conversation is closed".into()));
                }
                let message = self.with_urls(appended.message).await;
                if appended.created {
                    tracing::info!(session_id = %session.id, message_id = %message.id, "agent message stored");
                    let event = ServerEvent::Message {
                        message: message.clone(),
                    };
                    self.broadcast_held(&session.id, appended.mode.holder(), &[event], None)
                        .await;
                }
                Ok(message)
            })
            .await
    }

    /// Tells every agent how a session stands now (`inbox`).
    pub(super) async fn notify_inbox(&self, session: &Session) {
        match self.summary(session).await {
            Ok(summary) => {
                let frame = ServerEvent::Inbox { session: summary }.to_frame();
                self.push_agents(None, &[frame], None).await;
            }
            Err(e) => tracing::warn!(error = %e, session_id = %session.id, "inbox event skipped"),
        }
    }

    /// Pushes who is in the session to its connections and its holder's.
    pub(super) async fn push_presence(&self, session: &Session) {
        let event = self.presence(session).await;
        self.broadcast_held(&session.id, session.mode.holder(), &[event], None)
            .await;
    }

    async fn presence(&self, session: &Session) -> ServerEvent {
        let mut participants = vec![Participant {
            role: Role::User,
            id: session.user_id.clone().unwrap_or_else(|| "guest".into()),
            name: None,
            online: self.user_online(&session.id).await,
        }];
        if let Some(a) = &session.mode.agent {
            let online = self
                .live_agent_connections()
                .await
                .iter()
                .any(|c| c.agent.id == a.id);
            participants.push(Participant {
                role: Role::Agent,
                id: a.id.clone(),
                name: Some(a.name.clone()),
                online,
            });
        }
        ServerEvent::Presence {
            session_id: None,
            participants,
        }
    }

    async fn live_agent_connections(&self) -> Vec<AgentConnection> {
        let now = self.now();
        match self.store().list_agent_connections().await {
            Ok(c) => c.into_iter().filter(|c| c.expires_at > now).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not list agent connections");
                Vec::new()
            }
        }
    }

    /// The agents seen connected (online or away), and the holders of open sessions (offline
    /// when not connected), with how many sessions each holds.
    pub async fn agents(&self) -> Result<Vec<AgentInfo>, ChatError> {
        let mut by_id: BTreeMap<String, AgentInfo> = BTreeMap::new();
        for c in self.live_agent_connections().await {
            let e = by_id.entry(c.agent.id.clone()).or_insert(AgentInfo {
                id: c.agent.id.clone(),
                name: c.agent.name.clone(),
                status: c.status,
                holding: 0,
            });
            if c.status == AgentStatus::Online {
                e.status = AgentStatus::Online;
            }
        }
        let open = self
            .store()
            .list_inbox(&InboxQuery {
                view: InboxView::Open,
                after: None,
                limit: HOLDING_SCAN,
                now: self.now(),
            })
            .await?;
        for s in open {
            if let Some(a) = &s.mode.agent {
                by_id
                    .entry(a.id.clone())
                    .or_insert(AgentInfo {
                        id: a.id.clone(),
                        name: a.name.clone(),
                        status: AgentStatus::Offline,
                        holding: 0,
                    })
                    .holding += 1;
            }
        }
        Ok(by_id.into_values().collect())
    }

    async fn notify_agents_list(&self, except: Option<&str>) {
        match self.agents().await {
            Ok(agents) => {
                let frame = ServerEvent::Agents { agents }.to_frame();
                self.push_agents(None, &[frame], except).await;
            }
            Err(e) => tracing::warn!(error = %e, "agents event skipped"),
        }
    }

    /// An agent's WebSocket connects with `?agentToken=`. Nothing is pushed to it here (on
    /// API Gateway it does not exist until this returns); the other agents get `agents`.
    pub async fn connect_agent(
        &self,
        agent_token: &str,
        connection_id: &str,
    ) -> Result<AgentConnection, ChatError> {
        let now = self.now();
        let agent = self.auth.verify_agent(agent_token, now).await?;
        let c = AgentConnection {
            id: connection_id.to_string(),
            agent,
            status: AgentStatus::Online,
            connected_at: now,
            expires_at: now + AGENT_CONNECTION_MS,
        };
        self.store().put_agent_connection(&c).await?;
        tracing::info!(connection_id, agent_id = %c.agent.id, "agent connected");
        self.notify_agents_list(Some(connection_id)).await;
        Ok(c)
    }

    /// Forgets an agent connection; when it was the agent's last, the sessions it holds get
    /// `presence` (the agent is offline) and the agents `agents`.
    pub async fn disconnect_agent(&self, connection_id: &str) -> Result<(), ChatError> {
        let Some(c) = self.store().get_agent_connection(connection_id).await? else {
            return Ok(());
        };
        self.store().delete_agent_connection(connection_id).await?;
        tracing::info!(connection_id, agent_id = %c.agent.id, "agent disconnected");
        let still = self
            .live_agent_connections()
            .await
            .iter()
            .any(|o| o.agent.id == c.agent.id);
        if !still {
            let held = self
                .store()
                .list_inbox(&InboxQuery {
                    view: InboxView::Mine(c.agent.id.clone()),
                    after: None,
                    limit: 100,
                    now: self.now(),
                })
                .await?;
            for s in &held {
                self.push_presence(s).await;
            }
        }
        self.notify_agents_list(None).await;
        Ok(())
    }

    /// Handles one frame of an agent's connection; answers go back to it.
    pub async fn handle_agent_frame(&self, c: &AgentConnection, frame: &[u8]) {
        if let Err(e) = self.try_agent_frame(c, frame).await {
            self.push_agent_or_forget(c, &ServerEvent::error(&e).to_frame())
                .await;
        }
    }

    async fn try_agent_frame(&self, c: &AgentConnection, frame: &[u8]) -> Result<(), ChatError> {
        validate::body_size(frame.len(), &self.config.limits)?;
        match AgentAction::parse(frame)? {
            AgentAction::Ping {} => {
                // A socket kept alive past half its lifetime (chat-local's live longer than
                // API Gateway's two hours) is kept for another lifetime.
                let now = self.now();
                if c.expires_at - now < AGENT_CONNECTION_MS / 2 {
                    let renewed = AgentConnection {
                        expires_at: now + AGENT_CONNECTION_MS,
                        ..c.clone()
                    };
                    self.store().put_agent_connection(&renewed).await?;
                }
                self.push_agent_or_forget(c, &ServerEvent::Pong {}.to_frame())
                    .await;
            }
            AgentAction::Status { status } => {
                let updated = AgentConnection {
                    status,
                    ..c.clone()
                };
                self.store().put_agent_connection(&updated).await?;
                self.notify_agents_list(None).await;
            }
            AgentAction::Typing {
                session_id,
                is_typing,
            } => {
                let id: SessionId = session_id.parse().map_err(|_| not_held())?;
                let session = self.load_session(&id).await.map_err(|_| not_held())?;
                if session.mode.holder() != Some(c.agent.id.as_str()) {
                    return Err(not_held());
                }
                let event = ServerEvent::Typing {
                    session_id: None,
                    role: Role::Agent,
                    name: Some(c.agent.name.clone()),
                    is_typing,
                };
                // To the user's connections (and the agent's other ones).
                self.broadcast_held(&id, Some(&c.agent.id), &[event], Some(&c.id))
                    .await;
            }
        }
        Ok(())
    }

    /// A user connection opened or closed: when a person holds the session and this was the
    /// user's first or last connection, `presence`.
    pub(super) async fn user_presence_changed(&self, session: &Session, first_or_last: bool) {
        if first_or_last && session.mode.holder().is_some() {
            self.push_presence(session).await;
        }
    }
}

fn not_held() -> ChatError {
    ChatError::Conflict("you do not hold this session".into())
}

/// `<sort time>_<session id>`, as [`ChatService::inbox`] writes it.
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
