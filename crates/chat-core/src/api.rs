//! The HTTP API of the contract, independent of any web framework.
//!
//! Each route is a plain async function from request parts (path parameter, headers, raw
//! query, raw body) to a [`Response`]: a status, a JSON body and maybe `Retry-After`.
//! `chat-local` calls these from axum handlers and the Lambdas from API Gateway events, so
//! both deployments answer byte for byte the same.

use crate::attachments::AttachmentInput;
use crate::error::ErrorCode;
use crate::model::{AgentRef, CannedReply, Message, MessageChange, SessionSummary, SessionView};
use crate::service::{AgentSendInput, CannedInput, ChatService, Editor, SendInput, SessionRef};
use crate::validate::HistoryQuery;
use crate::{ChatError, token, validate};
use serde::{Deserialize, Serialize};

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
}

impl Response {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        Self {
            status,
            body: serde_json::to_string(value).expect("responses serialize"),
            retry_after: None,
        }
    }

    pub fn error(e: &ChatError) -> Self {
        Self {
            status: e.status(),
            body: e.body(),
            retry_after: e.retry_after(),
        }
    }

    fn from_result<T: Serialize>(status: u16, r: Result<T, ChatError>) -> Self {
        match r {
            Ok(v) => Self::json(status, &v),
            Err(e) => Self::error(&e),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionBody {
    session: SessionView,
    messages: Vec<Message>,
    has_more: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessagesBody {
    messages: Vec<Message>,
    has_more: bool,
}

#[derive(Serialize)]
struct MessageBody {
    message: Message,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookBody {
    message_id: crate::model::MessageId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadBody {
    up_to: u64,
}

/// The body of `POST /sessions`; other fields are reserved for future options.
#[derive(Deserialize, Default)]
struct CreateBody {
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /sessions`. The body may be empty or a JSON object, `{metadata}` at most 4 KB.
pub async fn create_session(
    svc: &ChatService,
    client_ip: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        validate::body_size(body.len(), &svc.config().limits)?;
        let input = if body.iter().all(u8::is_ascii_whitespace) {
            CreateBody::default()
        } else {
            let _: serde_json::Map<String, serde_json::Value> = validate::parse_json(body)?;
            validate::parse_json(body)?
        };
        if authorization.is_some() && token::bearer(authorization).is_none() {
            return Err(ChatError::unauthorized(
                ErrorCode::InvalidAuth,
                "Authorization must be 'Bearer <app JWT>'",
            ));
        }
        svc.create_session_with(client_ip, token::bearer(authorization), input.metadata)
            .await
    };
    Response::from_result(201, r.await)
}

/// `GET /sessions/{id}`.
pub async fn get_session(svc: &ChatService, id: &str, authorization: Option<&str>) -> Response {
    let r = async {
        let claims = svc.authorize(token::bearer(authorization), id)?;
        let (session, mut page) = svc.session_view(&claims).await?;
        svc.mint_urls(&mut page.messages).await;
        Ok(SessionBody {
            session,
            messages: page.messages,
            has_more: page.has_more,
        })
    };
    Response::from_result(200, r.await)
}

/// `GET /sessions/{id}/messages?after=&before=&limit=`, or `?updatedAfter=&limit=` for the
/// messages edited or deleted since then.
pub async fn list_messages(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Response {
    let r = async {
        let claims = svc.authorize(token::bearer(authorization), id)?;
        let mut page = match validate::history_or_changes(query, &svc.config().limits)? {
            HistoryQuery::Page(q) => svc.history(&claims, q).await?,
            HistoryQuery::Changed { after, limit } => {
                svc.changed_messages(&claims.sid, after, limit).await?
            }
        };
        svc.mint_urls(&mut page.messages).await;
        Ok(MessagesBody {
            messages: page.messages,
            has_more: page.has_more,
        })
    };
    Response::from_result(200, r.await)
}

/// `POST /sessions/{id}/messages`: 202 with the stored message.
pub async fn post_message(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        let claims = svc.authorize(token::bearer(authorization), id)?;
        validate::body_size(body.len(), &svc.config().limits)?;
        let input: SendInput = validate::parse_json(body)?;
        let message = svc.send(SessionRef::from(&claims), input, None).await?;
        Ok(MessageBody { message })
    };
    Response::from_result(202, r.await)
}

/// `POST /sessions/{id}/attachments` with `{name, contentType, size}`: 201
/// `{attachmentId, uploadUrl, uploadHeaders, expiresAt}`.
pub async fn create_attachment(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        let claims = svc.authorize(token::bearer(authorization), id)?;
        validate::body_size(body.len(), &svc.config().limits)?;
        let input: AttachmentInput = validate::parse_json(body)?;
        svc.create_attachment(&claims.sid, input).await
    };
    Response::from_result(201, r.await)
}

/// `POST /agent/sessions/{id}/attachments`: as the user's, for the session's holder.
pub async fn agent_create_attachment(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        let agent = svc.agent(authorization).await?;
        validate::body_size(body.len(), &svc.config().limits)?;
        let input: AttachmentInput = validate::parse_json(body)?;
        svc.agent_create_attachment(&agent, id, input).await
    };
    Response::from_result(201, r.await)
}

/// The body of an edit: `{content}`, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    content: String,
}

/// An edit (`PATCH`, a body `{content}`) or a deletion (`DELETE`, no body needed).
fn change_of(
    edit: bool,
    body: &[u8],
    limits: &crate::config::Limits,
) -> Result<MessageChange, ChatError> {
    validate::body_size(body.len(), limits)?;
    if !edit {
        return Ok(MessageChange::Delete);
    }
    let b: EditBody = validate::parse_json(body)?;
    Ok(MessageChange::Edit(b.content))
}

/// `PATCH /sessions/{id}/messages/{messageId}` with `{content}` (`edit`), or `DELETE` of it:
/// the user's own message, within the edit window; 200 `{message}`.
pub async fn change_message(
    svc: &ChatService,
    id: &str,
    message_id: &str,
    edit: bool,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        let claims = svc.authorize(token::bearer(authorization), id)?;
        let change = change_of(edit, body, &svc.config().limits)?;
        let message = svc
            .change_own_message(Editor::User, &claims.sid, message_id, change)
            .await?;
        Ok(MessageBody { message })
    };
    Response::from_result(200, r.await)
}

/// `PATCH|DELETE /agent/sessions/{id}/messages/{messageId}`: the agent's own message.
pub async fn agent_change_message(
    svc: &ChatService,
    id: &str,
    message_id: &str,
    edit: bool,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        let agent = svc.agent(authorization).await?;
        let change = change_of(edit, body, &svc.config().limits)?;
        let message = svc
            .change_own_message(Editor::Agent(&agent), &id.parse()?, message_id, change)
            .await?;
        Ok(MessageBody { message })
    };
    Response::from_result(200, r.await)
}

/// `POST /sessions/{id}/read` with `{upTo}`.
pub async fn mark_read(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        let claims = svc.authorize(token::bearer(authorization), id)?;
        validate::body_size(body.len(), &svc.config().limits)?;
        let b: ReadBody = validate::parse_json(body)?;
        svc.mark_read(SessionRef::from(&claims), b.up_to).await
    };
    Response::from_result(200, r.await)
}

/// `POST /webhook`: a signed reply from n8n; 200 `{messageId}`. `source_ip` is the caller's
/// address (refused calls are rate-limited by it).
pub async fn webhook(
    svc: &ChatService,
    source_ip: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Response {
    let r = svc
        .receive_reply(source_ip, timestamp, signature, body)
        .await
        .map(|m| WebhookBody { message_id: m.id });
    Response::from_result(200, r)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HandoffBody {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize)]
struct ViewBody {
    session: SessionView,
}

/// `POST /sessions/{id}/handoff` (body empty, `{}` or `{"reason"}`): the user asks for a
/// person; 200 `{session}`.
pub async fn handoff(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        let claims = svc.authorize(token::bearer(authorization), id)?;
        validate::body_size(body.len(), &svc.config().limits)?;
        if !body.iter().all(u8::is_ascii_whitespace) {
            let b: HandoffBody = validate::parse_json(body)?;
            if let Some(r) = &b.reason {
                validate::content(r, 500)?;
                tracing::info!(session_id = %claims.sid, reason_chars = r.chars().count(), "the user asks for a person");
            }
        }
        svc.request_handoff(&claims.sid).await?;
        let (session, _) = svc.session_view(&claims).await?;
        Ok(ViewBody { session })
    };
    Response::from_result(200, r.await)
}

// ----- agent routes (Authorization: Bearer <agent JWT>) --------------------------------------

#[derive(Serialize)]
struct SummaryBody {
    session: SessionSummary,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentSessionBody {
    session: SessionSummary,
    messages: Vec<Message>,
    has_more: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TransferBody {
    agent_id: String,
    agent_name: String,
}

#[derive(Serialize)]
struct RepliesBody {
    replies: Vec<CannedReply>,
}

#[derive(Serialize)]
struct ReplyBody {
    reply: CannedReply,
}

#[derive(Serialize)]
struct AgentsBody {
    agents: Vec<crate::events::AgentInfo>,
}

/// A mode change an agent asks for on `POST /agent/sessions/{id}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentChange {
    Claim,
    Release,
    Close,
    Transfer,
}

impl AgentChange {
    /// The change named by the last path segment.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "claim" => Self::Claim,
            "release" => Self::Release,
            "close" => Self::Close,
            "transfer" => Self::Transfer,
            _ => return None,
        })
    }
}

fn query_params(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `GET /agent/inbox?view=&limit=&cursor=`.
pub async fn agent_inbox(
    svc: &ChatService,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Response {
    let r = async {
        let agent = svc.agent(authorization).await?;
        let (mut view, mut limit, mut cursor) = ("waiting".to_string(), 50u32, None);
        for (k, v) in query_params(query) {
            match k.as_str() {
                "view" => view = v,
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|l| (1..=100).contains(l))
                        .ok_or_else(|| {
                            ChatError::invalid(
                                ErrorCode::InvalidQuery,
                                "limit must be between 1 and 100",
                            )
                        })?
                }
                "cursor" => cursor = Some(v),
                _ => {}
            }
        }
        svc.inbox(&agent, &view, limit, cursor.as_deref()).await
    };
    Response::from_result(200, r.await)
}

/// `GET /agent/sessions/{id}`.
pub async fn agent_session(svc: &ChatService, id: &str, authorization: Option<&str>) -> Response {
    let r = async {
        svc.agent(authorization).await?;
        let (session, mut page) = svc.agent_session(id).await?;
        svc.mint_urls(&mut page.messages).await;
        Ok(AgentSessionBody {
            session,
            messages: page.messages,
            has_more: page.has_more,
        })
    };
    Response::from_result(200, r.await)
}

/// `GET /agent/sessions/{id}/messages?after=&before=&limit=` (or `?updatedAfter=&limit=`).
pub async fn agent_messages(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Response {
    let r = async {
        svc.agent(authorization).await?;
        let mut page = match validate::history_or_changes(query, &svc.config().limits)? {
            HistoryQuery::Page(q) => svc.agent_history(id, q).await?,
            HistoryQuery::Changed { after, limit } => {
                svc.changed_messages(&id.parse()?, after, limit).await?
            }
        };
        svc.mint_urls(&mut page.messages).await;
        Ok(MessagesBody {
            messages: page.messages,
            has_more: page.has_more,
        })
    };
    Response::from_result(200, r.await)
}

/// `POST /agent/sessions/{id}/claim|release|close|transfer`: 200 `{session}`.
pub async fn agent_change(
    svc: &ChatService,
    id: &str,
    change: AgentChange,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        let agent = svc.agent(authorization).await?;
        validate::body_size(body.len(), &svc.config().limits)?;
        let sid: crate::model::SessionId = id.parse()?;
        let session = match change {
            AgentChange::Claim => svc.claim(&agent, &sid).await?,
            AgentChange::Release => svc.release(&agent, &sid).await?,
            AgentChange::Close => svc.close(&agent, &sid).await?,
            AgentChange::Transfer => {
                let b: TransferBody = validate::parse_json(body)?;
                let id = b.agent_id.trim();
                if id.is_empty() || id.len() > 256 {
                    return Err(ChatError::invalid(
                        ErrorCode::InvalidInput,
                        "agentId must have 1–256 bytes",
                    ));
                }
                let name = b.agent_name.trim();
                let chars = name.chars().count();
                if !(1..=crate::auth::MAX_AGENT_NAME_CHARS).contains(&chars)
                    || name.chars().any(char::is_control)
                {
                    return Err(ChatError::invalid(
                        ErrorCode::InvalidInput,
                        "agentName must have 1–80 characters",
                    ));
                }
                let to = AgentRef {
                    id: id.to_string(),
                    name: name.to_string(),
                };
                svc.transfer(&agent, &sid, to).await?
            }
        };
        Ok(SummaryBody {
            session: svc.summary(&session).await?,
        })
    };
    Response::from_result(200, r.await)
}

/// `POST /agent/sessions/{id}/messages`: 202 `{message}`.
pub async fn agent_post_message(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        let agent = svc.agent(authorization).await?;
        validate::body_size(body.len(), &svc.config().limits)?;
        let input: AgentSendInput = validate::parse_json(body)?;
        let message = svc.agent_send(&agent, id, input).await?;
        Ok(MessageBody { message })
    };
    Response::from_result(202, r.await)
}

/// `GET /agent/canned?q=`.
pub async fn agent_canned(
    svc: &ChatService,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Response {
    let r = async {
        svc.agent(authorization).await?;
        let q = query_params(query)
            .into_iter()
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v);
        Ok(RepliesBody {
            replies: svc.canned(q.as_deref()).await?,
        })
    };
    Response::from_result(200, r.await)
}

/// `POST /agent/canned` (201) and `PUT /agent/canned/{id}` (200, `id` given).
pub async fn agent_put_canned(
    svc: &ChatService,
    id: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let r = async {
        svc.agent(authorization).await?;
        validate::body_size(body.len(), &svc.config().limits)?;
        let input: CannedInput = validate::parse_json(body)?;
        let reply = match id {
            None => svc.create_canned(input).await?,
            Some(id) => svc.update_canned(id, input).await?,
        };
        Ok(ReplyBody { reply })
    };
    Response::from_result(if id.is_none() { 201 } else { 200 }, r.await)
}

/// `DELETE /agent/canned/{id}`: 204.
pub async fn agent_delete_canned(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
) -> Response {
    let r = async {
        svc.agent(authorization).await?;
        svc.delete_canned(id).await
    };
    match r.await {
        Ok(()) => Response {
            status: 204,
            body: String::new(),
            retry_after: None,
        },
        Err(e) => Response::error(&e),
    }
}

/// `GET /agent/agents`.
pub async fn agent_agents(svc: &ChatService, authorization: Option<&str>) -> Response {
    let r = async {
        svc.agent(authorization).await?;
        Ok(AgentsBody {
            agents: svc.agents().await?,
        })
    };
    Response::from_result(200, r.await)
}

// ----- conversations people keep (Authorization: Bearer <app JWT>) --------------------------

fn no_content(r: Result<(), ChatError>) -> Response {
    match r {
        Ok(()) => Response {
            status: 204,
            body: String::new(),
            retry_after: None,
        },
        Err(e) => Response::error(&e),
    }
}

/// `GET /sessions?limit=1..50&cursor=`: the signed-in user's conversations.
pub async fn list_sessions(
    svc: &ChatService,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Response {
    let r = async {
        let user = svc.app_user(authorization).await?;
        let (mut limit, mut cursor) = (20u32, None);
        for (k, v) in query_params(query) {
            match k.as_str() {
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|l| (1..=crate::service::MAX_CONVERSATIONS_PAGE).contains(l))
                        .ok_or_else(|| {
                            ChatError::invalid(
                                ErrorCode::InvalidQuery,
                                "limit must be between 1 and 50",
                            )
                        })?
                }
                "cursor" => cursor = Some(v),
                _ => {}
            }
        }
        svc.conversations(&user, limit, cursor.as_deref()).await
    };
    Response::from_result(200, r.await)
}

/// `POST /sessions/{id}/resume`: 200 `{sessionId, token, expiresAt, websocketUrl}`.
pub async fn resume_session(svc: &ChatService, id: &str, authorization: Option<&str>) -> Response {
    let r = async {
        let user = svc.app_user(authorization).await?;
        svc.resume(&user, id).await
    };
    Response::from_result(200, r.await)
}

/// `GET /me/export`: everything kept of the signed-in user, as JSON.
pub async fn export_me(svc: &ChatService, authorization: Option<&str>) -> Response {
    let r = async {
        let user = svc.app_user(authorization).await?;
        svc.export_user(&user).await
    };
    Response::from_result(200, r.await)
}

/// `DELETE /sessions/{id}` (the session token, or its user's app JWT): 204.
pub async fn delete_session(svc: &ChatService, id: &str, authorization: Option<&str>) -> Response {
    no_content(svc.erase_by(authorization, id).await)
}

/// `DELETE /me`: erases every conversation of the signed-in user; 204.
pub async fn delete_me(svc: &ChatService, authorization: Option<&str>) -> Response {
    let r = async {
        let user = svc.app_user(authorization).await?;
        svc.erase_user(&user).await.map(|_| ())
    };
    no_content(r.await)
}

/// `GET /health` and `GET /webhook`.
pub fn health() -> Response {
    Response {
        status: 200,
        body: r#"{"status":"ok"}"#.into(),
        retry_after: None,
    }
}

/// Any other path.
pub fn not_found() -> Response {
    Response::error(&ChatError::NotFound("no such route".into()))
}
