//! The HTTP routes: thin axum handlers over `chat_core::api`.
//!
//! Each handler extracts the request parts the contract needs and hands them to the
//! framework-neutral API, which the Lambdas call too, so both deployments answer alike.

use crate::app::AppState;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chat_core::api;
use chat_core::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use std::net::SocketAddr;

/// The chat page (a plain client for trying the product).
const PAGE: &str = include_str!("../../../web/index.html");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/sessions", post(create_session))
        .route("/sessions/{id}", get(get_session))
        .route(
            "/sessions/{id}/messages",
            get(list_messages).post(post_message),
        )
        .route("/sessions/{id}/read", post(mark_read))
        .route("/webhook", get(health).post(webhook))
        .route("/ws", get(crate::ws::upgrade))
        .route("/dev/n8n", post(dev_bot))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Turns an API answer into an axum response.
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

/// The raw body, at most the configured limit (413 in the contract's shape past it).
pub struct Body(pub axum::body::Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.service.config().limits.max_body_bytes;
        match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(b) => Ok(Self(b)),
            Err(_) => Err(reply(api::Response::error(
                &chat_core::ChatError::TooLarge(format!("body is larger than {limit} bytes")),
            ))),
        }
    }
}

/// The `{id}` of a session path. One axum cannot read (not UTF-8) names no session: it goes
/// on as an empty id, answered like any malformed id (401 without a valid token, else 404)
/// in the contract's shape, not as axum's plain-text 400.
fn session_id(id: Result<Path<String>, PathRejection>) -> String {
    id.map(|Path(id)| id).unwrap_or_default()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn health() -> Response {
    reply(api::health())
}

async fn not_found() -> Response {
    reply(api::not_found())
}

async fn method_not_allowed() -> Response {
    let body =
        r#"{"error":{"code":"method_not_allowed","message":"method not allowed on this route"}}"#;
    reply(api::Response {
        status: 405,
        body: body.into(),
        retry_after: None,
    })
}

async fn create_session(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let ip = peer.ip().to_string();
    reply(api::create_session(&s.service, &ip, header(&headers, "authorization"), &body).await)
}

async fn get_session(
    State(s): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    reply(
        api::get_session(
            &s.service,
            &session_id(id),
            header(&headers, "authorization"),
        )
        .await,
    )
}

async fn list_messages(
    State(s): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    reply(
        api::list_messages(
            &s.service,
            &session_id(id),
            header(&headers, "authorization"),
            query.as_deref(),
        )
        .await,
    )
}

async fn post_message(
    State(s): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    reply(
        api::post_message(
            &s.service,
            &session_id(id),
            header(&headers, "authorization"),
            &body,
        )
        .await,
    )
}

async fn mark_read(
    State(s): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    reply(
        api::mark_read(
            &s.service,
            &session_id(id),
            header(&headers, "authorization"),
            &body,
        )
        .await,
    )
}

async fn webhook(State(s): State<AppState>, headers: HeaderMap, Body(body): Body) -> Response {
    let (ts, sig) = (
        header(&headers, TIMESTAMP_HEADER),
        header(&headers, SIGNATURE_HEADER),
    );
    reply(api::webhook(&s.service, ts, sig, &body).await)
}

async fn dev_bot(State(s): State<AppState>, headers: HeaderMap, Body(body): Body) -> Response {
    let Some(bot) = &s.dev_bot else {
        return reply(api::not_found());
    };
    let status = bot.receive(
        header(&headers, TIMESTAMP_HEADER),
        header(&headers, SIGNATURE_HEADER),
        &body,
    );
    let body = if status == 200 {
        r#"{"accepted":true}"#
    } else {
        r#"{"accepted":false}"#
    };
    reply(api::Response {
        status,
        body: body.into(),
        retry_after: None,
    })
}
