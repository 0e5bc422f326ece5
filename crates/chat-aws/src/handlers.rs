//! One plain async function per Lambda: parse the event, call the core, map the result.
//!
//! HTTP routes are told apart by API Gateway's `routeKey` (so a stage in the path never
//! matters) and answered by `chat_core::api`, exactly as `chat-local` answers them. WebSocket
//! answers go out through `Push`; the Lambda's own return value only accepts or refuses.

use crate::App;
use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayV2httpRequest, ApiGatewayV2httpResponse,
    ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, header};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use base64::Engine;
use chat_core::model::DispatchJob;
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

fn http_response(r: api::Response) -> ApiGatewayV2httpResponse {
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(r.status);
    out.headers = headers_of(&r);
    out.body = Some(Body::Text(r.body));
    out
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
            .map_err(|_| ChatError::invalid("invalid_input", "body is not valid base64"))
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// The caller's address as API Gateway saw it (rate limits of anonymous callers use it).
fn source_ip(req: &ApiGatewayV2httpRequest) -> &str {
    req.request_context
        .http
        .source_ip
        .as_deref()
        .unwrap_or("unknown")
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Every HTTP API route (the `session`, `send` and `webhook` functions each receive theirs).
pub async fn http(app: &App, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let svc = &app.service;
    let body = match body_bytes(req.body.as_deref(), req.is_base64_encoded) {
        Ok(b) => b,
        Err(e) => return http_response(api::Response::error(&e)),
    };
    let route = req
        .route_key
        .as_deref()
        .or(req.request_context.route_key.as_deref())
        .unwrap_or("");
    let id = req
        .path_parameters
        .get("id")
        .map(String::as_str)
        .unwrap_or("");
    let auth = header_str(&req.headers, "authorization");
    let r = match route {
        "POST /sessions" => api::create_session(svc, source_ip(&req), auth, &body).await,
        "GET /sessions/{id}" => api::get_session(svc, id, auth).await,
        "GET /sessions/{id}/messages" => {
            api::list_messages(svc, id, auth, req.raw_query_string.as_deref()).await
        }
        "POST /sessions/{id}/messages" => api::post_message(svc, id, auth, &body).await,
        "POST /sessions/{id}/read" => api::mark_read(svc, id, auth, &body).await,
        "POST /webhook" => {
            let ts = header_str(&req.headers, chat_core::signature::TIMESTAMP_HEADER);
            let sig = header_str(&req.headers, chat_core::signature::SIGNATURE_HEADER);
            api::webhook(svc, source_ip(&req), ts, sig, &body).await
        }
        "GET /webhook" | "GET /health" => api::health(),
        _ => api::not_found(),
    };
    http_response(r)
}

fn connection_id(req: &ApiGatewayWebsocketProxyRequest) -> Result<&str, ChatError> {
    req.request_context
        .connection_id
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ChatError::invalid("invalid_input", "the event has no connectionId"))
}

/// `$connect`: checks `?sessionId=&token=` and remembers the connection; 401/403/404 refuse it.
pub async fn connect(app: &App, req: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let q = &req.query_string_parameters;
    let r = async {
        let id = connection_id(&req)?;
        app.service
            .connect(q.first("sessionId"), q.first("token"), id)
            .await
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
            "invalid_input",
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
    match dispatcher.run(job, attempt).await {
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
