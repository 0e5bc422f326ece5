//! The HTTP API of the contract, independent of any web framework.
//!
//! Each route is a plain async function from request parts (path parameter, headers, raw
//! query, raw body) to a [`Response`]: a status, a JSON body and maybe `Retry-After`.
//! `chat-local` calls these from axum handlers and the Lambdas from API Gateway events, so
//! both deployments answer byte for byte the same.

use crate::error::ErrorCode;
use crate::model::{Message, PageQuery, SessionView};
use crate::service::{ChatService, SendInput, SessionRef};
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
        let (session, page) = svc.session_view(&claims).await?;
        Ok(SessionBody {
            session,
            messages: page.messages,
            has_more: page.has_more,
        })
    };
    Response::from_result(200, r.await)
}

/// `GET /sessions/{id}/messages?after=&before=&limit=`.
pub async fn list_messages(
    svc: &ChatService,
    id: &str,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Response {
    let r = async {
        let claims = svc.authorize(token::bearer(authorization), id)?;
        let q: PageQuery = validate::history_query(query, &svc.config().limits)?;
        let page = svc.history(&claims, q).await?;
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
