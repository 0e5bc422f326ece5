//! A stand-in for API Gateway in front of the Lambda handlers, so that a browser can use the
//! AWS deployment's code on this machine: the HTTP API (every request through
//! [`chat_aws::handlers::http`], as the session, send, webhook and agent functions run it), the
//! WebSocket API (`$connect`, the frames by `$request.body.action`, `$disconnect`), the
//! Management API the functions push through (`POST|GET|DELETE /@connections/{id}`, reached by
//! the SDK over HTTP, as on AWS), and the SQS event source of the dispatch function (receive,
//! run, delete what succeeded). DynamoDB, SQS and S3 are the emulator's, over their real wire
//! protocols, and the attachment bucket gets the template's CORS rule, so a browser's upload
//! and download meet S3's CORS checks. n8n is the fake of this kit, answering by signed
//! callback (and downloading the files it is sent), unless `CHAT_N8N_WEBHOOK_URL` names
//! another.
//!
//! It serves the pages of `web/` too, so tests open the widget and the console from it. It is
//! not API Gateway: no stages, throttling or authorisers (the template's are tested in
//! `chat-aws/tests/template.rs`); a push to a connection that `$connect` has not yet accepted
//! is refused as gone, as API Gateway refuses it.

use crate::aws::emulator;
use crate::fake_n8n::FakeN8n;
use aws_lambda_events::apigw::{
    ApiGatewayV2httpRequest, ApiGatewayV2httpResponse, ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body as LambdaBody;
use aws_lambda_events::sqs::SqsEvent;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use chat_aws::App;
use chat_aws::handlers;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Frames on their way to one browser socket (`None`: close it).
type Outbox = mpsc::UnboundedSender<Option<String>>;

/// The gateway's state: the Lambda app and the open sockets by connection id.
#[derive(Clone)]
struct Gateway {
    app: App,
    sockets: Arc<Mutex<HashMap<String, Outbox>>>,
}

/// A running gateway: its URL, the fake n8n behind it (when it uses the fake), and the
/// emulator's resources it made.
pub struct Running {
    pub url: String,
    pub n8n: Option<FakeN8n>,
    pub fresh: emulator::Fresh,
    pub bucket: String,
}

/// Starts the gateway on `addr` (e.g. `127.0.0.1:0`) with a fresh table, queues and bucket on
/// the emulator; `extra` adds to (or overrides) the functions' environment.
pub async fn start(addr: &str, extra: &HashMap<String, String>) -> Running {
    let fresh = emulator::fresh().await;
    let bucket = bucket(&fresh.sdk).await;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("the gateway binds");
    let local = listener.local_addr().expect("a bound address");
    let url = format!("http://{local}");
    let webhook_secret = format!("gw-{}", ulid::Ulid::new());
    let (n8n, n8n_url) = match extra.get("CHAT_N8N_WEBHOOK_URL") {
        Some(u) => (None, u.clone()),
        None => {
            let secret = extra
                .get("CHAT_WEBHOOK_SECRET")
                .cloned()
                .unwrap_or_else(|| webhook_secret.clone());
            let (fake, u) = FakeN8n::start_on(0, &secret).await;
            *fake.fetch_files.lock().unwrap() = true;
            (Some(fake), u)
        }
    };
    let mut vars: HashMap<String, String> = [
        ("TABLE_NAME", fresh.table.clone()),
        ("QUEUE_URL", fresh.queue_url.clone()),
        ("WEBSOCKET_ENDPOINT", url.clone()),
        ("CHAT_WEBSOCKET_URL", format!("ws://{local}/ws")),
        ("CHAT_PUBLIC_URL", url.clone()),
        ("CHAT_WEBHOOK_SECRET", webhook_secret),
        (
            "CHAT_SESSION_SECRET",
            format!("gw-session-{}", ulid::Ulid::new()),
        ),
        ("CHAT_N8N_WEBHOOK_URL", n8n_url),
        ("CHAT_ATTACHMENTS_BUCKET", bucket.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    vars.extend(extra.clone());
    let app = App::from_lookup(&|k| vars.get(k).cloned(), &fresh.sdk)
        .await
        .expect("the functions' environment is valid");
    let gw = Gateway {
        app,
        sockets: Arc::default(),
    };
    tokio::spawn(poll_queue(
        gw.app.clone(),
        aws_sdk_sqs::Client::new(&fresh.sdk),
        fresh.queue_url.clone(),
    ));
    let router = axum::Router::new()
        .route("/ws", get(upgrade))
        .route(
            "/@connections/{id}",
            get(connection_info)
                .post(post_to_connection)
                .delete(close_connection),
        )
        .route("/", get(|| page("index.html")))
        .route("/agent", get(|| page("agent.html")))
        .route("/{file}", get(web_file).fallback(http_api))
        .fallback(http_api)
        .with_state(gw);
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("the gateway serves")
    });
    Running {
        url,
        n8n,
        fresh,
        bucket,
    }
}

/// A fresh attachment bucket with the CORS rule of `template.yaml`'s `AttachmentsBucket`.
async fn bucket(sdk: &aws_config::SdkConfig) -> String {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    let name = format!("files-{}", ulid::Ulid::new().to_string().to_lowercase());
    s3.create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("bucket created");
    let template = &emulator::template()["buckets"]["AttachmentsBucket"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut cors = CorsConfiguration::builder();
    for rule in template["CorsConfiguration"]["CorsRules"]
        .as_array()
        .expect("the bucket's CORS rules")
    {
        cors = cors.cors_rules(
            CorsRule::builder()
                .set_allowed_origins(Some(strings(&rule["AllowedOrigins"])))
                .set_allowed_methods(Some(strings(&rule["AllowedMethods"])))
                .set_allowed_headers(Some(strings(&rule["AllowedHeaders"])))
                .set_expose_headers(Some(strings(&rule["ExposedHeaders"])))
                .set_max_age_seconds(rule["MaxAge"].as_i64().map(|s| s as i32))
                .build()
                .expect("a CORS rule"),
        );
    }
    s3.put_bucket_cors()
        .bucket(&name)
        .cors_configuration(cors.build().expect("a CORS configuration"))
        .send()
        .await
        .expect("CORS set");
    name
}

/// The dispatch function's event source: receives up to 10 records at a time (as the
/// template's event source mapping), runs the function and deletes the records it did not
/// report as failures. Polls five times a second.
async fn poll_queue(app: App, sqs: aws_sdk_sqs::Client, queue: String) {
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match got {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                eprintln!("aws-gateway: receive from the dispatch queue failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        if messages.is_empty() {
            // Short polls: the emulator serves one request at a time, and a long poll would
            // hold it for every other call.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        let records: Vec<Value> = messages.iter().map(sqs_record).collect();
        let event: SqsEvent =
            serde_json::from_value(json!({ "Records": records })).expect("an SQS event");
        let app = app.clone();
        let sqs = sqs.clone();
        let queue = queue.clone();
        // Batches run side by side, as concurrent invocations of the function would.
        tokio::spawn(async move {
            let out = handlers::dispatch(&app, event).await;
            for m in messages {
                let id = m.message_id.unwrap_or_default();
                if out
                    .batch_item_failures
                    .iter()
                    .any(|f| f.item_identifier == id)
                {
                    continue;
                }
                let _ = sqs
                    .delete_message()
                    .queue_url(&queue)
                    .receipt_handle(m.receipt_handle.unwrap_or_default())
                    .send()
                    .await;
            }
        });
    }
}

fn sqs_record(m: &aws_sdk_sqs::types::Message) -> Value {
    let attrs: HashMap<String, String> = m
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": attrs,
        "messageAttributes": {},
        "md5OfBody": m.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:dispatch",
        "awsRegion": "us-east-1",
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A WebSocket API event for `connection` (the `requestContext` API Gateway sends).
fn ws_event(route: &str, kind: &str, connection: &str, ip: &str, extra: Value) -> Value {
    let mut e = json!({
        "requestContext": {
            "routeKey": route,
            "eventType": kind,
            "messageDirection": "IN",
            "stage": "local",
            "connectedAt": now_ms(),
            "requestTimeEpoch": now_ms(),
            "identity": {"sourceIp": ip},
            "requestId": ulid::Ulid::new().to_string(),
            "domainName": "127.0.0.1",
            "connectionId": connection,
            "apiId": "local",
        },
        "isBase64Encoded": false,
    });
    if let (Some(e), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    e
}

/// `$connect`: the connect function decides; only a 200 opens the socket (API Gateway
/// answers the upgrade with the function's status otherwise).
async fn upgrade(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let id = ulid::Ulid::new().to_string();
    let ip = peer.ip().to_string();
    let hdrs: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let multi: HashMap<String, Vec<String>> = query
        .iter()
        .map(|(k, v)| (k.clone(), vec![v.clone()]))
        .collect();
    let event = ws_event(
        "$connect",
        "CONNECT",
        &id,
        &ip,
        json!({"headers": hdrs, "queryStringParameters": query, "multiValueQueryStringParameters": multi}),
    );
    let req: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(event).expect("a $connect event");
    let answer = handlers::connect(&gw.app, req).await;
    if answer.status_code != 200 {
        let status = StatusCode::from_u16(answer.status_code as u16)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, lambda_body(answer.body)).into_response();
    }
    ws.on_upgrade(move |socket| serve_socket(gw, socket, id, ip))
}

/// One accepted socket: its frames to the send function (route by `action`), pushes from
/// the outbox to the browser, `$disconnect` when either side closes.
async fn serve_socket(gw: Gateway, socket: WebSocket, id: String, ip: String) {
    use futures_util::{SinkExt, StreamExt};
    let (mut tx, mut rx) = socket.split();
    let (out, mut outbox) = mpsc::unbounded_channel::<Option<String>>();
    gw.sockets.lock().unwrap().insert(id.clone(), out);
    let writer = tokio::spawn(async move {
        while let Some(Some(frame)) = outbox.recv().await {
            if tx.send(Message::Text(frame.into())).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Message::Close(None)).await;
    });
    while let Some(Ok(msg)) = rx.next().await {
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        let action = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["action"].as_str().map(str::to_string));
        let route = match action.as_deref() {
            Some(a @ ("sendMessage" | "typing" | "read" | "ping")) => a.to_string(),
            _ => "$default".to_string(),
        };
        let event = ws_event(&route, "MESSAGE", &id, &ip, json!({"body": text}));
        let req: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(event).expect("a message event");
        let gw = gw.clone();
        // API Gateway invokes the function for each frame as it comes.
        tokio::spawn(async move {
            handlers::ws_message(&gw.app, req).await;
        });
    }
    gw.sockets.lock().unwrap().remove(&id);
    writer.abort();
    let event = ws_event("$disconnect", "DISCONNECT", &id, &ip, json!({}));
    let req: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(event).expect("a $disconnect event");
    handlers::disconnect(&gw.app, req).await;
}

fn gone() -> Response {
    (
        StatusCode::GONE,
        [
            ("x-amzn-errortype", "GoneException"),
            ("content-type", "application/json"),
        ],
        r#"{"message":"GoneException"}"#,
    )
        .into_response()
}

/// `PostToConnection`.
async fn post_to_connection(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let outbox = gw.sockets.lock().unwrap().get(&id).cloned();
    match outbox {
        Some(o)
            if o.send(Some(String::from_utf8_lossy(&body).into_owned()))
                .is_ok() =>
        {
            StatusCode::OK.into_response()
        }
        _ => gone(),
    }
}

/// `DeleteConnection`.
async fn close_connection(State(gw): State<Gateway>, Path(id): Path<String>) -> Response {
    match gw.sockets.lock().unwrap().remove(&id) {
        Some(o) => {
            let _ = o.send(None);
            StatusCode::NO_CONTENT.into_response()
        }
        None => gone(),
    }
}

/// `GetConnection`.
async fn connection_info(State(gw): State<Gateway>, Path(id): Path<String>) -> Response {
    if gw.sockets.lock().unwrap().contains_key(&id) {
        axum::Json(json!({"connectionId": id})).into_response()
    } else {
        gone()
    }
}

fn lambda_body(body: Option<LambdaBody>) -> Body {
    match body {
        Some(LambdaBody::Text(t)) => Body::from(t),
        Some(LambdaBody::Binary(b)) => Body::from(b),
        _ => Body::empty(),
    }
}

/// The HTTP API: the request as an API Gateway (payload 2.0) event through the functions'
/// router; the answer back as API Gateway returns it.
async fn http_api(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    // API Gateway's payload limit is 10 MB; files go to S3, not through here.
    let Ok(bytes) = axum::body::to_bytes(body, 10 * 1024 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        if let Ok(v) = v.to_str() {
            let k = k.as_str().to_string();
            let joined = match headers.get(&k).and_then(Value::as_str) {
                Some(prev) => format!("{prev},{v}"),
                None => v.to_string(),
            };
            headers.insert(k, Value::String(joined));
        }
    }
    let (body, base64) = match std::str::from_utf8(&bytes) {
        Ok(t) => (t.to_string(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            true,
        ),
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let query_map: HashMap<String, String> = url_pairs(&query);
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "queryStringParameters": query_map,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": ulid::Ulid::new().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": now_ms(),
        },
        "body": if bytes.is_empty() { Value::Null } else { Value::String(body) },
        "isBase64Encoded": base64,
    });
    let req: ApiGatewayV2httpRequest = match serde_json::from_value(event) {
        Ok(r) => r,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    // `lambda_http`'s adapter holds a body reference across an await, so its future is not
    // `Send`: it runs on a blocking thread of this runtime, as the Lambda runtime runs it.
    let app = gw.app.clone();
    let handle = tokio::runtime::Handle::current();
    let answer: ApiGatewayV2httpResponse =
        match tokio::task::spawn_blocking(move || handle.block_on(handlers::http(&app, req))).await
        {
            Ok(a) => a,
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        };
    let mut res = Response::new(match answer.body {
        Some(LambdaBody::Text(t)) if answer.is_base64_encoded => Body::from(
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .unwrap_or_default(),
        ),
        other => lambda_body(other),
    });
    *res.status_mut() =
        StatusCode::from_u16(answer.status_code as u16).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in &answer.headers {
        res.headers_mut().append(k, v.clone());
    }
    for (k, v) in &answer.multi_value_headers {
        res.headers_mut().append(k, v.clone());
    }
    res
}

fn url_pairs(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// A page of `web/` (the widget's page, the agent console).
async fn page(name: &str) -> Response {
    file_response(name, "text/html; charset=utf-8")
}

/// A browser file of `web/` (`*.js`), else the HTTP API (`/sessions`, `/health`, ...).
async fn web_file(
    Path(file): Path<String>,
    state: State<Gateway>,
    peer: ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if file.ends_with(".js") || file.ends_with(".html") {
        let kind = if file.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/html; charset=utf-8"
        };
        return file_response(&file, kind);
    }
    http_api(state, peer, req).await
}

fn file_response(name: &str, kind: &'static str) -> Response {
    if name.contains('/') || name.contains("..") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match std::fs::read(emulator::repo().join("web").join(name)) {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
