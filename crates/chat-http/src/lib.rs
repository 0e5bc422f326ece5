//! The HTTP API of the contract, written once: an axum [`Router`] over `chat_core::api`.
//!
//! `chat-local` serves it (with its WebSocket, page and dev bot routes beside it); on AWS the
//! `session`, `send` and `webhook` Lambdas run the same router through `lambda_http`, which
//! turns API Gateway's HTTP API events into requests. So a route, a status or an error body
//! cannot differ between the two deployments, and [`ROUTES`] is the list `template.yaml`'s
//! route keys are checked against.
//!
//! The host tells the router who is calling by putting a [`ClientIp`] extension on each
//! request (the peer address locally, the source IP API Gateway saw on Lambda).

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chat_core::error::ErrorCode;
use chat_core::service::ChatService;
use chat_core::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use chat_core::{ChatError, api};
use std::time::Duration;

/// Every route of the HTTP API, as `METHOD /path` with `{id}` for the session id (`{action}`
/// for an agent's change of a session, `{cid}` for a canned reply id, `{messageId}` for a
/// message): the same text as API Gateway's route keys in `template.yaml`.
pub const ROUTES: [&str; 29] = [
    "POST /sessions",
    "GET /sessions/{id}",
    "GET /sessions/{id}/messages",
    "POST /sessions/{id}/messages",
    "POST /sessions/{id}/read",
    "POST /sessions/{id}/attachments",
    "POST /webhook",
    "GET /webhook",
    "GET /health",
    "POST /sessions/{id}/handoff",
    "GET /agent/inbox",
    "GET /agent/sessions/{id}",
    "GET /agent/sessions/{id}/messages",
    "POST /agent/sessions/{id}/messages",
    "POST /agent/sessions/{id}/{action}",
    "GET /agent/canned",
    "POST /agent/canned",
    "PUT /agent/canned/{cid}",
    "DELETE /agent/canned/{cid}",
    "GET /agent/agents",
    "GET /sessions",
    "POST /sessions/{id}/resume",
    "DELETE /sessions/{id}",
    "GET /me/export",
    "DELETE /me",
    "PATCH /sessions/{id}/messages/{messageId}",
    "DELETE /sessions/{id}/messages/{messageId}",
    "PATCH /agent/sessions/{id}/messages/{messageId}",
    "DELETE /agent/sessions/{id}/messages/{messageId}",
];

/// The caller's address, put on each request by the host (anonymous callers are rate-limited
/// by it). Without one the router counts the caller as `unknown`.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

/// What the host decides about reading bodies.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a request body may take to arrive (408 past it).
    pub body_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// What the API's handlers reach.
#[derive(Clone)]
pub struct ApiState {
    pub service: ChatService,
    pub options: Options,
}

/// The HTTP API: every route of [`ROUTES`], the contract's 404 and 405, and bodies refused at
/// once (413) when their announced length is over the limit.
pub fn router(service: ChatService, options: Options) -> Router {
    let state = ApiState { service, options };
    Router::new()
        .route("/health", get(health))
        .route("/sessions", post(create_session).get(list_sessions))
        .route("/sessions/{id}", get(get_session).delete(delete_session))
        .route("/sessions/{id}/resume", post(resume_session))
        .route("/me", axum::routing::delete(delete_me))
        .route("/me/export", get(export_me))
        .route(
            "/sessions/{id}/messages",
            get(list_messages).post(post_message),
        )
        .route(
            "/sessions/{id}/messages/{messageId}",
            axum::routing::patch(edit_message).delete(delete_message),
        )
        .route("/sessions/{id}/read", post(mark_read))
        .route("/sessions/{id}/attachments", post(create_attachment))
        .route("/webhook", get(health).post(webhook))
        .route("/sessions/{id}/handoff", post(handoff))
        .route("/agent/inbox", get(agent_inbox))
        .route("/agent/agents", get(agent_agents))
        .route("/agent/sessions/{id}", get(agent_session))
        .route(
            "/agent/sessions/{id}/messages",
            get(agent_messages).post(agent_post_message),
        )
        .route(
            "/agent/sessions/{id}/messages/{messageId}",
            axum::routing::patch(agent_edit_message).delete(agent_delete_message),
        )
        .route("/agent/sessions/{id}/{action}", post(agent_change))
        .route("/agent/canned", get(agent_canned).post(agent_create_canned))
        .route(
            "/agent/canned/{cid}",
            axum::routing::put(agent_update_canned).delete(agent_delete_canned),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), refuse_large))
        .with_state(state)
}

/// Turns an API answer into a response: JSON, and `Retry-After` when it has one.
pub fn reply(r: api::Response) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (status, r.body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = r.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    res
}

/// An error of the contract as a response.
pub fn error(e: &ChatError) -> Response {
    reply(api::Response::error(e))
}

/// A refusal before the body was read: the connection is not kept for another request.
pub fn closing(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

fn too_large(limit: usize) -> Response {
    closing(error(&ChatError::TooLarge(format!(
        "body is larger than {limit} bytes"
    ))))
}

/// A body announced (`Content-Length`) over the limit is refused at once with 413, before any
/// of it is read; one sent without a length is cut off at the limit by [`Body`].
async fn refuse_large(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let limit = s.service.config().limits.max_body_bytes;
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    next.run(req).await
}

/// The raw body, at most the configured limit (413 in the contract's shape past it), read
/// within the body timeout (408 in the contract's shape past it, and the connection closes).
pub struct Body(pub axum::body::Bytes);

impl<S> FromRequest<S> for Body
where
    ApiState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let s = ApiState::from_ref(state);
        let limit = s.service.config().limits.max_body_bytes;
        let within = s.options.body_timeout;
        match tokio::time::timeout(within, axum::body::to_bytes(req.into_body(), limit)).await {
            Ok(Ok(b)) => Ok(Self(b)),
            Ok(Err(_)) => Err(too_large(limit)),
            Err(_) => Err(closing(error(&ChatError::Transport {
                status: 408,
                code: ErrorCode::RequestTimeout,
                message: format!("the request body did not arrive within {within:?}"),
            }))),
        }
    }
}

/// The `{id}` of a session path. One axum cannot read (not UTF-8) names no session: it goes
/// on as an empty id, answered like any malformed id (401 without a valid token, else 404)
/// in the contract's shape, not as axum's plain-text 400.
fn session_id(id: Result<Path<String>, PathRejection>) -> String {
    id.map(|Path(id)| id).unwrap_or_default()
}

/// A header as text (absent when missing or not visible ASCII).
pub fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn client_ip(req_ip: Option<axum::Extension<ClientIp>>) -> String {
    req_ip.map_or_else(|| "unknown".into(), |axum::Extension(ClientIp(ip))| ip)
}

async fn health() -> Response {
    reply(api::health())
}

async fn not_found() -> Response {
    reply(api::not_found())
}

/// The contract's 405, for every route of a router (the host's routes too).
pub async fn method_not_allowed() -> Response {
    error(&ChatError::Transport {
        status: 405,
        code: ErrorCode::MethodNotAllowed,
        message: "method not allowed on this route".into(),
    })
}

async fn create_session(
    State(s): State<ApiState>,
    ip: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let ip = client_ip(ip);
    reply(api::create_session(&s.service, &ip, header(&headers, "authorization"), &body).await)
}

async fn get_session(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::get_session(&s.service, &session_id(id), auth).await)
}

async fn list_messages(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::list_messages(&s.service, &session_id(id), auth, query.as_deref()).await)
}

async fn post_message(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::post_message(&s.service, &session_id(id), auth, &body).await)
}

/// A session id and a message id from the path (empty when missing: the API answers 404).
fn message_path(path: Result<Path<(String, String)>, PathRejection>) -> (String, String) {
    path.map(|Path(p)| p).unwrap_or_default()
}

async fn edit_message(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let (id, mid) = message_path(path);
    let auth = header(&headers, "authorization");
    reply(api::change_message(&s.service, &id, &mid, true, auth, &body).await)
}

async fn delete_message(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let (id, mid) = message_path(path);
    let auth = header(&headers, "authorization");
    reply(api::change_message(&s.service, &id, &mid, false, auth, &body).await)
}

async fn agent_edit_message(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let (id, mid) = message_path(path);
    let auth = header(&headers, "authorization");
    reply(api::agent_change_message(&s.service, &id, &mid, true, auth, &body).await)
}

async fn agent_delete_message(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let (id, mid) = message_path(path);
    let auth = header(&headers, "authorization");
    reply(api::agent_change_message(&s.service, &id, &mid, false, auth, &body).await)
}

async fn mark_read(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::mark_read(&s.service, &session_id(id), auth, &body).await)
}

async fn webhook(
    State(s): State<ApiState>,
    ip: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let (ts, sig) = (
        header(&headers, TIMESTAMP_HEADER),
        header(&headers, SIGNATURE_HEADER),
    );
    let ip = client_ip(ip);
    reply(api::webhook(&s.service, &ip, ts, sig, &body).await)
}

async fn create_attachment(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::create_attachment(&s.service, &session_id(id), auth, &body).await)
}

async fn handoff(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::handoff(&s.service, &session_id(id), auth, &body).await)
}

async fn agent_inbox(
    State(s): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::agent_inbox(&s.service, auth, query.as_deref()).await)
}

async fn agent_agents(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    reply(api::agent_agents(&s.service, header(&headers, "authorization")).await)
}

async fn agent_session(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::agent_session(&s.service, &session_id(id), auth).await)
}

async fn agent_messages(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::agent_messages(&s.service, &session_id(id), auth, query.as_deref()).await)
}

async fn agent_post_message(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::agent_post_message(&s.service, &session_id(id), auth, &body).await)
}

async fn agent_change(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let (id, action) = path.map(|Path(p)| p).unwrap_or_default();
    let auth = header(&headers, "authorization");
    if action == "attachments" {
        return reply(api::agent_create_attachment(&s.service, &id, auth, &body).await);
    }
    let Some(change) = api::AgentChange::parse(&action) else {
        return reply(api::not_found());
    };
    reply(api::agent_change(&s.service, &id, change, auth, &body).await)
}

async fn agent_canned(
    State(s): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::agent_canned(&s.service, auth, query.as_deref()).await)
}

async fn agent_create_canned(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::agent_put_canned(&s.service, None, auth, &body).await)
}

async fn agent_update_canned(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::agent_put_canned(&s.service, Some(&session_id(id)), auth, &body).await)
}

async fn agent_delete_canned(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::agent_delete_canned(&s.service, &session_id(id), auth).await)
}

async fn list_sessions(
    State(s): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::list_sessions(&s.service, auth, query.as_deref()).await)
}

async fn resume_session(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    reply(api::resume_session(&s.service, &session_id(id), auth).await)
}

async fn delete_session(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let auth = header(&headers, "authorization");
    no_body(api::delete_session(&s.service, &session_id(id), auth).await)
}

async fn export_me(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    reply(api::export_me(&s.service, header(&headers, "authorization")).await)
}

async fn delete_me(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    no_body(api::delete_me(&s.service, header(&headers, "authorization")).await)
}

/// A 204 carries no body and no content type; anything else is a normal reply.
fn no_body(r: api::Response) -> Response {
    if r.status == 204 {
        StatusCode::NO_CONTENT.into_response()
    } else {
        reply(r)
    }
}
