//! One plain async function per Lambda: parse the event, call the core, map the result.
//!
//! HTTP API events go through `chat_http`'s router (the one `chat-local` serves) by
//! `lambda_http`, so both deployments answer alike. WebSocket answers go out through `Push`;
//! the Lambda's own return value only accepts or refuses.

use crate::App;
use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayV2httpRequest, ApiGatewayV2httpResponse,
    ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, header};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use base64::Engine;
use chat_core::error::ErrorCode;
use chat_core::model::{DispatchJob, JobKind};
use chat_core::service::DispatchOutcome;
use chat_core::{ChatError, api};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn headers_of(r: &api::Response) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = r.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    h
}

fn ws_response(r: api::Response) -> ApiGatewayProxyResponse {
    let mut out = ApiGatewayProxyResponse::default();
    out.status_code = i64::from(r.status);
    out.headers = headers_of(&r);
    out.body = Some(Body::Text(r.body));
    out
}

fn ok_ws() -> ApiGatewayProxyResponse {
    ws_response(api::Response {
        status: 200,
        body: "{}".into(),
        retry_after: None,
    })
}

/// The raw body bytes (API Gateway base64-encodes bodies it considers binary).
fn body_bytes(body: Option<&str>, base64: bool) -> Result<Vec<u8>, ChatError> {
    let body = body.unwrap_or("");
    if base64 {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| ChatError::invalid(ErrorCode::InvalidInput, "body is not valid base64"))
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// The HTTP API as the Lambdas serve it: `chat_http`'s router (the one `chat-local` serves),
/// told the caller's address from API Gateway's request context.
pub fn http_router(app: &App) -> axum::Router {
    chat_http::router(app.service.clone(), chat_http::Options::default())
        .layer(axum::middleware::from_fn(client_ip_from_context))
}

/// Puts API Gateway's `sourceIp` on the request as the router's [`chat_http::ClientIp`].
async fn client_ip_from_context(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use lambda_http::request::RequestContext;
    let ip = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(c)) => c.http.source_ip.clone(),
        _ => None,
    };
    if let Some(ip) = ip {
        req.extensions_mut().insert(chat_http::ClientIp(ip));
    }
    next.run(req).await
}

/// Runs a Lambda that serves the HTTP API (the `session` and `webhook` functions): each event
/// through [`http`], the path the tests and the `send` function take too.
pub async fn run_http(app: App) -> Result<(), lambda_runtime::Error> {
    let app = &app;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, lambda_runtime::Error>(
                crate::invocation(&e.context, http(app, e.payload)).await,
            )
        },
    ))
    .await
}

/// One HTTP API event through the router, by `lambda_http`'s adapter (what `lambda_http::run`
/// does with each event).
pub async fn http(app: &App, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    use lambda_http::tower::ServiceExt;
    // lambda_http panics on a body flagged base64 that is not, and on a path or query that
    // is not a valid URI; API Gateway should never send either, but an event is outside
    // input all the same.
    let uri = format!(
        "http://localhost{}?{}",
        req.raw_path.as_deref().unwrap_or("/"),
        req.raw_query_string.as_deref().unwrap_or("")
    );
    let checked = body_bytes(req.body.as_deref(), req.is_base64_encoded).and_then(|_| {
        uri.parse::<aws_lambda_events::http::Uri>()
            .map(|_| ())
            .map_err(|_| ChatError::invalid(ErrorCode::InvalidQuery, "the URL is not valid"))
    });
    if let Err(e) = checked {
        let mut out = ApiGatewayV2httpResponse::default();
        let r = api::Response::error(&e);
        out.status_code = i64::from(r.status);
        out.headers = headers_of(&r);
        out.body = Some(Body::Text(r.body));
        return out;
    }
    let adapter = lambda_http::Adapter::from(http_router(app));
    let event = lambda_runtime::LambdaEvent::new(
        lambda_http::request::LambdaRequest::ApiGatewayV2(req),
        lambda_runtime::Context::default(),
    );
    let response = match adapter.oneshot(event).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    // LambdaResponse only serializes; its API Gateway v2 form is this type.
    serde_json::to_value(response)
        .and_then(serde_json::from_value)
        .expect("an HTTP API answer is an HTTP API response")
}

fn connection_id(req: &ApiGatewayWebsocketProxyRequest) -> Result<&str, ChatError> {
    req.request_context
        .connection_id
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ChatError::invalid(ErrorCode::InvalidInput, "the event has no connectionId"))
}

/// `$connect`: checks `?sessionId=&token=` (a user) or `?agentToken=` (an agent) and remembers
/// the connection; 401/403/404 refuse it.
pub async fn connect(app: &App, req: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let q = &req.query_string_parameters;
    let r = async {
        let id = connection_id(&req)?;
        if let (None, Some(agent_token)) = (q.first("sessionId"), q.first("agentToken")) {
            return app.service.connect_agent(agent_token, id).await.map(drop);
        }
        app.service
            .connect_version(q.first("sessionId"), q.first("token"), id, q.first("v"))
            .await
            .map(drop)
    };
    match r.await {
        Ok(_) => ok_ws(),
        Err(e) => ws_response(api::Response::error(&e)),
    }
}

/// `$disconnect`: forgets the connection (best effort; TTL removes what is missed).
pub async fn disconnect(
    app: &App,
    req: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let r = async { app.service.disconnect(connection_id(&req)?).await };
    if let Err(e) = r.await {
        tracing::warn!(error = %e, "disconnect failed; the connection will expire by TTL");
    }
    ok_ws()
}

/// A WebSocket message (`sendMessage`, `typing`, `read`, `ping`, `$default`).
pub async fn ws_message(
    app: &App,
    req: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Ok(id) = connection_id(&req) else {
        return ws_response(api::Response::error(&ChatError::invalid(
            ErrorCode::InvalidInput,
            "no connectionId",
        )));
    };
    let frame = match body_bytes(req.body.as_deref(), req.is_base64_encoded) {
        Ok(b) => b,
        Err(e) => return ws_response(api::Response::error(&e)),
    };
    app.service.handle_frame_by_id(id, &frame).await;
    ok_ws()
}

/// The `send` function's event: an HTTP API request or a WebSocket message, told apart by
/// the WebSocket's `requestContext.connectionId`.
#[derive(Debug, Clone)]
pub enum SendEvent {
    Http(Box<ApiGatewayV2httpRequest>),
    WebSocket(Box<ApiGatewayWebsocketProxyRequest>),
}

impl<'de> Deserialize<'de> for SendEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if v.pointer("/requestContext/connectionId")
            .is_some_and(Value::is_string)
        {
            serde_json::from_value(v)
                .map(|r| Self::WebSocket(Box::new(r)))
                .map_err(serde::de::Error::custom)
        } else {
            serde_json::from_value(v)
                .map(|r| Self::Http(Box::new(r)))
                .map_err(serde::de::Error::custom)
        }
    }
}

/// The `send` function's answer, in the shape of its event's kind.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum SendResponse {
    Http(ApiGatewayV2httpResponse),
    WebSocket(ApiGatewayProxyResponse),
}

pub async fn send(app: &App, event: SendEvent) -> SendResponse {
    match event {
        SendEvent::Http(r) => SendResponse::Http(http(app, *r).await),
        SendEvent::WebSocket(r) => SendResponse::WebSocket(ws_message(app, *r).await),
    }
}

/// The `dispatch` function: delivers each record to n8n. Records that must run again are
/// reported as batch item failures, so one bad record never re-runs the others; a retry's
/// backoff is set on the record's visibility timeout.
///
/// Copies of one job in a batch (a client's retry queues its message again) run once: the
/// records of a batch run concurrently, and two runs would both find the message `received`
/// and deliver it twice. The copies are acknowledged; if the one that runs fails, it comes
/// back by itself.
pub async fn dispatch(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let mut seen = std::collections::HashSet::new();
    let runs = event.records.iter().map(|r| {
        let first = r.body.as_deref().is_none_or(|b| seen.insert(b));
        async move {
            if !first {
                tracing::info!(
                    record = r.message_id.as_deref().unwrap_or(""),
                    "copy of a job in the same batch; runs once"
                );
                return (r, true);
            }
            (r, dispatch_one(app, r).await)
        }
    });
    let mut out = SqsBatchResponse::default();
    for (record, ok) in futures_util::future::join_all(runs).await {
        if !ok {
            let mut f = BatchItemFailure::default();
            f.item_identifier = record.message_id.clone().unwrap_or_default();
            out.batch_item_failures.push(f);
        }
    }
    out
}

async fn dispatch_one(app: &App, record: &SqsMessage) -> bool {
    let Some(dispatcher) = &app.dispatcher else {
        tracing::error!("CHAT_N8N_WEBHOOK_URL is not set; cannot dispatch");
        return false;
    };
    let id = record.message_id.as_deref().unwrap_or("");
    let job: DispatchJob = match record.body.as_deref().map(serde_json::from_str) {
        Some(Ok(job)) => job,
        _ => {
            tracing::error!(
                record = id,
                "unreadable dispatch record; it will go to the dead-letter queue"
            );
            return false;
        }
    };
    let attempt = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let last = attempt >= dispatcher.service().config().dispatch.max_attempts;
    match dispatcher.run(job, attempt).await {
        // Given up after its last attempt (the message is `failed`, the user told): the
        // record is made visible again after a second (SQS's least), and its next receive
        // makes the queue's redrive policy (maxReceiveCount = the attempts) move it to the
        // dead-letter queue, where `chat-admin redrive` finds it.
        Ok(DispatchOutcome::DeadLettered) if job.kind == JobKind::Dispatch && last => {
            let receipt = record.receipt_handle.as_deref().unwrap_or_default();
            if let Some(queue) = &app.retry
                && let Err(e) = queue.retry_after(receipt, std::time::Duration::ZERO).await
            {
                tracing::warn!(error = %e, record = id, "could not release the record to the dead-letter queue; it goes after the visibility timeout");
            }
            false
        }
        Ok(
            DispatchOutcome::Delivered | DispatchOutcome::Skipped | DispatchOutcome::DeadLettered,
        ) => true,
        Ok(DispatchOutcome::Retry(delay)) => {
            let receipt = record.receipt_handle.as_deref().unwrap_or_default();
            if let Some(queue) = &app.retry
                && let Err(e) = queue.retry_after(receipt, delay).await
            {
                tracing::warn!(error = %e, record = id, "could not set the retry delay; the queue's default applies");
            }
            false
        }
        Err(e) => {
            tracing::error!(error = %e, record = id, "dispatch could not run; the record will be retried");
            false
        }
    }
}
