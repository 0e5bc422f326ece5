//! The HTTP routes: thin axum handlers over `chat_core::api`.
//!
//! Each handler extracts the request parts the contract needs and hands them to the
//! framework-neutral API, which the Lambdas call too, so both deployments answer alike.

use crate::app::AppState;
use crate::security;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chat_core::api;
use chat_core::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use std::net::SocketAddr;
use std::sync::Arc;

/// The chat page (the widget, with how to embed it).
const PAGE: &str = include_str!("../../../web/index.html");
/// A complete page embedding the widget, as a page of another site would.
const EMBED: &str = include_str!("../../../web/embed.html");

/// The browser client and widget (`web/`), embedded so the binary stays self-contained.
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "/chat-client.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/chat-client.js"),
    ),
    (
        "/chat-logic.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/chat-logic.js"),
    ),
    (
        "/chat-client.d.ts",
        "application/typescript; charset=utf-8",
        include_str!("../../../web/chat-client.d.ts"),
    ),
    (
        "/chat-widget.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/chat-widget.js"),
    ),
    ("/embed.html", "text/html; charset=utf-8", EMBED),
];

pub fn router(state: AppState) -> Router {
    let policy = security::page_policy(&[PAGE, EMBED], &state.service.config().websocket_url);
    let policy =
        Arc::new(HeaderValue::from_str(&policy).expect("the page policy is a valid header value"));
    let mut router = Router::new();
    for (path, content_type, body) in ASSETS {
        router = router.route(path, get(move || asset(content_type, body)));
    }
    router
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
        .layer(middleware::from_fn_with_state(state.clone(), refuse_large))
        .layer(middleware::from_fn(cors))
        .layer(middleware::from_fn_with_state(policy, security::headers))
        .with_state(state)
}

/// A body announced (`Content-Length`) over the limit is refused at once with 413, before
/// any of it is read; one sent without a length is cut off at the limit by [`Body`].
async fn refuse_large(State(s): State<AppState>, req: Request, next: Next) -> Response {
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

fn too_large(limit: usize) -> Response {
    closing(reply(api::Response::error(
        &chat_core::ChatError::TooLarge(format!("body is larger than {limit} bytes")),
    )))
}

/// A refusal before the body was read: the connection is not kept for another request.
fn closing(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// CORS, as the HTTP API has on AWS (`template.yaml`): pages on other origins embed the widget,
/// which calls this server with a bearer token (no cookies), so any origin may.
async fn cors(req: Request, next: Next) -> Response {
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = if preflight {
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        res
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
    );
    res
}

/// One embedded file of `web/`; browsers revalidate it, so a new build is picked up at once.
async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
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

/// The raw body, at most the configured limit (413 in the contract's shape past it), read
/// within the body timeout (408 in the contract's shape past it, and the connection closes).
pub struct Body(pub axum::body::Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.service.config().limits.max_body_bytes;
        let within = state.limits.body_timeout;
        match tokio::time::timeout(within, axum::body::to_bytes(req.into_body(), limit)).await {
            Ok(Ok(b)) => Ok(Self(b)),
            Ok(Err(_)) => Err(too_large(limit)),
            Err(_) => {
                let body = serde_json::json!({"error": {
                    "code": "request_timeout",
                    "message": format!("the request body did not arrive within {within:?}"),
                }});
                Err(closing(reply(api::Response {
                    status: 408,
                    body: body.to_string(),
                    retry_after: None,
                })))
            }
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

async fn webhook(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let (ts, sig) = (
        header(&headers, TIMESTAMP_HEADER),
        header(&headers, SIGNATURE_HEADER),
    );
    let ip = peer.ip().to_string();
    reply(api::webhook(&s.service, &ip, ts, sig, &body).await)
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
