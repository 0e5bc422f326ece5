//! `chat-local`'s routes: the HTTP API of `chat-http` (the same router the Lambdas run),
//! and beside it the chat page, the browser files, the WebSocket and the dev bot; CORS and
//! the security headers over all of them, and the durability barrier under them (every
//! answer waits until what it says was stored is on disk).

use crate::security;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chat_core::api;
use chat_core::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use chat_http::{Body, header, reply};
use std::sync::Arc;

/// The chat page (the widget, with how to embed it).
const PAGE: &str = include_str!("../../../web/index.html");
/// A complete page embedding the widget, as a page of another site would.
const EMBED: &str = include_str!("../../../web/embed.html");
/// The agent console (at `/agent`).
const AGENT: &str = include_str!("../../../web/agent.html");

/// The browser client, widget and agent console (`web/`), embedded so the binary stays
/// self-contained.
const ASSETS: [(&str, &str, &str); 11] = [
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
        "/chat-markdown.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/chat-markdown.js"),
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
    (
        "/agent-console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/agent-console.js"),
    ),
    (
        "/agent-client.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/agent-client.js"),
    ),
    (
        "/agent-logic.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/agent-logic.js"),
    ),
    ("/agent", "text/html; charset=utf-8", AGENT),
    ("/agent.html", "text/html; charset=utf-8", AGENT),
];

pub fn router(state: AppState) -> Router {
    let policy =
        security::page_policy(&[PAGE, EMBED, AGENT], &state.service.config().websocket_url);
    let policy =
        Arc::new(HeaderValue::from_str(&policy).expect("the page policy is a valid header value"));
    let api = chat_http::router(
        state.service.clone(),
        chat_http::Options {
            body_timeout: state.limits.body_timeout,
        },
    );
    let db = state.db.clone();
    let mut local = Router::new();
    for (path, content_type, body) in ASSETS {
        local = local.route(path, get(move || asset(content_type, body)));
    }
    local
        .route("/", get(page))
        .route("/ws", get(crate::ws::upgrade))
        .route("/metrics", get(crate::metrics::serve))
        .route("/dev/n8n", post(dev_bot))
        .route(
            "/uploads/{id}",
            axum::routing::put(crate::attachments::upload),
        )
        .route("/files/{id}", get(crate::attachments::download))
        .with_state(state)
        .merge(api)
        .method_not_allowed_fallback(chat_http::method_not_allowed)
        .layer(middleware::from_fn_with_state(db, crate::durable::answer))
        .layer(middleware::from_fn(cors))
        .layer(middleware::from_fn_with_state(policy, security::headers))
        .layer(middleware::from_fn(request_span))
}

/// Every log line of a request carries an id of its own and, once the service knows it, the
/// session's id (`chat_core::trace`).
async fn request_span(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let id = ulid::Ulid::new().to_string();
    next.run(req)
        .instrument(chat_core::trace::request_span(&id))
        .await
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
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
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

async fn page() -> Html<&'static str> {
    Html(PAGE)
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
