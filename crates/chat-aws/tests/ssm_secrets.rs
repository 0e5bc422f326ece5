//! Secrets from SSM Parameter Store (`*_PARAM` variables) against the emulator's SSM: read in
//! one `GetParameters` call with decryption at cold start; a missing or unreadable parameter
//! fails the start naming it, never a value.

use chat_testkit::aws::emulator as common;

use chat_aws::App;
use chat_aws::app::StartError;
use serde_json::Value;
use std::collections::HashMap;

/// The environment of a function with the given extra variables.
fn env_with(f: &common::Fresh, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("TABLE_NAME", f.table.as_str()),
        ("QUEUE_URL", f.queue_url.as_str()),
        ("WEBSOCKET_ENDPOINT", common::emulator().url.as_str()),
        ("CHAT_PUBLIC_URL", "https://api.example.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vars
}

/// A fresh parameter name prefix, so tests of one emulator never meet.
fn prefix() -> String {
    format!(
        "/chat-test-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

async fn put(f: &common::Fresh, name: &str, value: &str) {
    aws_sdk_ssm::Client::new(&f.sdk)
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("parameter stored");
}

async fn start(f: &common::Fresh, vars: &HashMap<String, String>) -> Result<App, StartError> {
    App::from_lookup(&|k| vars.get(k).cloned(), &f.sdk).await
}

/// The recorded SSM requests that name `prefix`, except the tests' own PutParameter.
async fn ssm_requests(prefix: &str) -> Vec<(String, Value)> {
    use base64::Engine;
    common::recorded()
        .await
        .into_iter()
        .filter(|e| {
            let op = common::operation(e);
            op.starts_with("AmazonSSM.") && op != "AmazonSSM.PutParameter"
        })
        .filter_map(|e| {
            let raw = e["body"].as_str().unwrap_or("");
            let raw = match e["body_encoded"] == Value::Bool(true) {
                true => base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .unwrap(),
                false => raw.as_bytes().to_vec(),
            };
            let body: Value = serde_json::from_slice(&raw).ok()?;
            body.to_string()
                .contains(prefix)
                .then(|| (common::operation(&e), body))
        })
        .collect()
}

#[tokio::test]
async fn param_variables_read_every_secret_in_one_decrypting_get_parameters_call() {
    let f = common::fresh().await;
    let p = prefix();
    let names = [
        format!("{p}/webhook"),
        format!("{p}/session"),
        format!("{p}/jwt"),
    ];
    let values = [
        "webhook-secret-from-ssm-1",
        "session-secret-from-ssm-2",
        "jwt-secret-from-ssm-3",
    ];
    for (n, v) in names.iter().zip(values) {
        put(&f, n, v).await;
    }
    let vars = env_with(
        &f,
        &[
            ("CHAT_WEBHOOK_SECRET_PARAM", &names[0]),
            ("CHAT_SESSION_SECRET_PARAM", &names[1]),
            ("CHAT_AUTH_JWT_SECRET_PARAM", &names[2]),
        ],
    );
    let app = start(&f, &vars).await.expect("the app starts");
    let c = app.service.config();
    assert_eq!(c.webhook_secret.expose(), values[0]);
    assert_eq!(c.session_secret.expose(), values[1]);
    assert_eq!(
        c.auth_jwt_secret.as_ref().map(|s| s.expose()),
        Some(values[2])
    );

    let requests = ssm_requests(&p).await;
    assert_eq!(requests.len(), 1, "one call: {requests:#?}");
    let (op, body) = &requests[0];
    assert_eq!(op, "AmazonSSM.GetParameters");
    assert_eq!(body["WithDecryption"], Value::Bool(true));
    let mut asked: Vec<_> = body["Names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    asked.sort();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(asked, want);
}

#[tokio::test]
async fn plain_and_ssm_secrets_mix_and_plain_ones_need_no_ssm_call() {
    let f = common::fresh().await;
    let p = prefix();
    let name = format!("{p}/session");
    put(&f, &name, "session-secret-from-ssm").await;
    let vars = env_with(
        &f,
        &[
            ("CHAT_WEBHOOK_SECRET", "a-plain-webhook-secret"),
            ("CHAT_SESSION_SECRET_PARAM", &name),
        ],
    );
    let app = start(&f, &vars).await.expect("the app starts");
    let c = app.service.config();
    assert_eq!(c.webhook_secret.expose(), "a-plain-webhook-secret");
    assert_eq!(c.session_secret.expose(), "session-secret-from-ssm");
    assert!(c.auth_jwt_secret.is_none());
    let requests = ssm_requests(&p).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].1["Names"], serde_json::json!([name]));
}

#[tokio::test]
async fn a_missing_parameter_fails_the_start_naming_it_and_no_value() {
    let f = common::fresh().await;
    let p = prefix();
    let present = format!("{p}/webhook");
    let missing = format!("{p}/session");
    put(&f, &present, "value-that-must-not-leak").await;
    let vars = env_with(
        &f,
        &[
            ("CHAT_WEBHOOK_SECRET_PARAM", &present),
            ("CHAT_SESSION_SECRET_PARAM", &missing),
        ],
    );
    let Err(e) = start(&f, &vars).await else {
        panic!("started without the session secret");
    };
    let text = e.to_string();
    assert!(matches!(e, StartError::Secrets(_)), "{text}");
    assert!(text.contains(&missing), "{text}");
    assert!(text.contains("CHAT_SESSION_SECRET_PARAM"), "{text}");
    assert!(!text.contains("value-that-must-not-leak"), "{text}");
    assert!(!format!("{e:?}").contains("value-that-must-not-leak"));
}

#[tokio::test]
async fn an_unreachable_parameter_store_fails_the_start_naming_the_parameters() {
    let f = common::fresh().await;
    // Nothing listens on port 9: every SSM call fails.
    let sdk = f
        .sdk
        .to_builder()
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let name = format!("{}/session", prefix());
    let vars = env_with(
        &f,
        &[
            ("CHAT_WEBHOOK_SECRET", "a-plain-webhook-secret"),
            ("CHAT_SESSION_SECRET_PARAM", &name),
        ],
    );
    let Err(e) = App::from_lookup(&|k| vars.get(k).cloned(), &sdk).await else {
        panic!("started without reaching Parameter Store");
    };
    let text = e.to_string();
    assert!(
        text.contains(&name) && text.contains("could not be read"),
        "{text}"
    );
    assert!(!text.contains("a-plain-webhook-secret"), "{text}");
}
