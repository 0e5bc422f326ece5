//! The Lambda handlers under property tests: whatever API Gateway or SQS hands them (any
//! record body and receive count, any route, header, query and body of an HTTP event, any
//! WebSocket frame), they answer in the contract's shape, never panic, never a 5xx. Run on
//! the in-memory ports (the parsers are what is tested; the adapters have their own tests).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::SqsEvent;
use chat_aws::{App, handlers};
use chat_core::ports::SystemClock;
use chat_core::service::Ports;
use chat_testkit::memory::{MemoryQueue, MemoryStore, RecordingPush, ScriptedAgent};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

fn app() -> App {
    let ports = Ports {
        store: Arc::new(MemoryStore::new()),
        queue: Arc::new(MemoryQueue::default()),
        push: Arc::new(RecordingPush::default()),
        clock: Arc::new(SystemClock),
        limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
    };
    App::from_ports(
        ports,
        chat_testkit::config(),
        Some(Arc::new(ScriptedAgent::default())),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn event(name: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
    serde_json::from_str(&std::fs::read_to_string(format!("{path}{name}.json")).unwrap()).unwrap()
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        Just(String::new()),
        Just(u64::MAX.to_string()),
        Just("-1".into()),
        Just("01HZZZZZZZZZZZZZZZZZZZZZZZ".into()),
    ]
}

/// A record body: a job of the right shape with odd values, JSON of another shape, or bytes.
fn record_body() -> impl Strategy<Value = String> {
    prop_oneof![
        (text(), text(), prop_oneof![Just("dispatch"), Just("deadline"), Just("other")]).prop_map(
            |(s, m, k)| json!({"sessionId": s, "messageId": m, "kind": k}).to_string()
        ),
        Just(
            json!({"sessionId": "01HZZZZZZZZZZZZZZZZZZZZZZZ", "messageId": "01HZZZZZZZZZZZZZZZZZZZZZZY"})
                .to_string()
        ),
        text(),
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn status_of(v: &Value) -> i64 {
    v["statusCode"].as_i64().unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_sqs_batch_is_answered_record_by_record(
        bodies in prop::collection::vec(record_body(), 1..5),
        counts in prop::collection::vec(text(), 1..5),
    ) {
        let mut e = event("dispatch-batch");
        let template = e["Records"][0].clone();
        let records: Vec<Value> = bodies.iter().enumerate().map(|(i, b)| {
            let mut r = template.clone();
            r["messageId"] = json!(format!("m{i}"));
            r["body"] = json!(b);
            r["attributes"]["ApproximateReceiveCount"] = json!(counts[i % counts.len()]);
            r
        }).collect();
        e["Records"] = json!(records);
        let batch: SqsEvent = serde_json::from_value(e).unwrap();
        let out = runtime().block_on(handlers::dispatch(&app(), batch));
        // Unreadable records (and those naming nothing) are reported or skipped, one by one.
        prop_assert!(out.batch_item_failures.len() <= bodies.len());
        for f in &out.batch_item_failures {
            prop_assert!(f.item_identifier.starts_with('m'));
        }
    }

    #[test]
    fn any_http_event_gets_a_2xx_or_4xx(
        route in prop_oneof![
            Just("POST /sessions"), Just("GET /sessions/{id}"), Just("GET /sessions/{id}/messages"),
            Just("POST /sessions/{id}/messages"), Just("POST /sessions/{id}/read"),
            Just("POST /webhook"), Just("GET /health"), Just("DELETE /nowhere"),
        ],
        id in text(),
        body in prop_oneof![text(), any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned())],
        base64 in any::<bool>(),
        auth in text(),
        query in text(),
        ts in text(),
    ) {
        let mut e = event("send-http");
        e["routeKey"] = json!(route);
        e["requestContext"]["routeKey"] = json!(route);
        e["pathParameters"] = json!({"id": id});
        e["body"] = json!(body);
        e["isBase64Encoded"] = json!(base64);
        e["headers"]["authorization"] = json!(auth);
        e["headers"]["x-chat-timestamp"] = json!(ts);
        e["headers"]["x-chat-signature"] = json!(format!("sha256={auth}"));
        e["rawQueryString"] = json!(query);
        let req: ApiGatewayV2httpRequest = serde_json::from_value(e).unwrap();
        let res = runtime().block_on(handlers::http(&app(), req));
        let v = serde_json::to_value(&res).unwrap();
        let status = status_of(&v);
        prop_assert!((200..300).contains(&status) || (400..500).contains(&status), "{v}");
        if status >= 400 {
            let Some(Body::Text(b)) = &res.body else { return Err(TestCaseError::fail("no body")) };
            let body: Value = serde_json::from_str(b).unwrap();
            prop_assert!(body["error"]["code"].is_string(), "{b}");
        }
    }

    #[test]
    fn any_websocket_event_is_accepted_or_refused_never_a_panic(
        frame in text(),
        connection in text(),
        base64 in any::<bool>(),
        session in text(),
        token in text(),
    ) {
        runtime().block_on(async {
            let app = app();
            let mut e = event("send-ws-message");
            e["requestContext"]["connectionId"] = json!(connection);
            e["body"] = json!(frame);
            e["isBase64Encoded"] = json!(base64);
            let req: ApiGatewayWebsocketProxyRequest = serde_json::from_value(e).unwrap();
            let res = handlers::ws_message(&app, req).await;
            prop_assert!((200..500).contains(&res.status_code));
            let mut c = event("connect");
            c["queryStringParameters"] = json!({"sessionId": session, "token": token});
            c["requestContext"]["connectionId"] = json!(connection);
            let req: ApiGatewayWebsocketProxyRequest = serde_json::from_value(c).unwrap();
            let res = handlers::connect(&app, req).await;
            prop_assert!((200..500).contains(&res.status_code), "{}", res.status_code);
            Ok::<(), TestCaseError>(())
        })?;
    }
}
