//! Test harness for the AWS adapters: a real AWS emulator (moto's server application, installed
//! into `.venv` by `infra/tools`, started by `infra/emulator.py`) on an ephemeral 127.0.0.1 port, and a fresh table and queue pair
//! per test, created from `template.yaml`'s own definitions. The emulator stops by itself when
//! the test process exits (it watches its stdin, which only this process holds).

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Emulator {
    pub url: String,
    /// The watchdog shell: it stops the emulator when this stdin closes (at process exit).
    _watchdog: Mutex<(Child, ChildStdin)>,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn venv_bin(name: &str) -> PathBuf {
    let p = repo().join(".venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run ./tests/run, which installs the emulator (infra/tools)",
        p.display()
    );
    p
}

/// The emulator of this test process, started on first use.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("moto-{port}.log"));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" "$1" "$2" >"$3" 2>&1 & pid=$!; read _; kill $pid"#)
            .arg(venv_bin("python"))
            .arg(repo().join("infra/emulator.py"))
            .arg(port.to_string())
            .arg(&log)
            // Record every request, so tests can read back what was pushed and count calls.
            .env("MOTO_ENABLE_RECORDING", "true")
            .env(
                "MOTO_RECORDER_FILEPATH",
                std::env::temp_dir().join(format!("moto-{port}.recording")),
            )
            .stdin(Stdio::piped())
            .spawn()
            .expect("the emulator starts");
        let stdin = child.stdin.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the emulator did not listen in time: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Emulator {
            url: format!("http://127.0.0.1:{port}"),
            _watchdog: Mutex::new((child, stdin)),
        }
    })
}

/// The table and queue definitions of `template.yaml`.
pub fn template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| template_with(&[]))
}

/// What `infra/template_resources.py` reads from `template.yaml` with these parameter values
/// (`Name=value`): the table, the queues, each function's policy, the APIs, the environment.
pub fn template_with(params: &[(&str, &str)]) -> Value {
    let out = Command::new(venv_bin("python"))
        .arg(repo().join("infra/template_resources.py"))
        .arg(repo().join("template.yaml"))
        .args(params.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// SDK configuration for the emulator: dummy credentials, fixed region, no metadata lookups.
pub async fn sdk() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(chat_aws::app::https_client())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&emulator().url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// A fresh table and queue pair, as the template defines them.
pub struct Fresh {
    pub sdk: SdkConfig,
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

pub async fn create_table(sdk: &SdkConfig) -> String {
    let t = &template()["table"];
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let name = unique("chat");
    let key = |k: &Value| {
        KeySchemaElement::builder()
            .attribute_name(k["AttributeName"].as_str().unwrap())
            .key_type(KeyType::from(k["KeyType"].as_str().unwrap()))
            .build()
            .unwrap()
    };
    let mut req = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in t["AttributeDefinitions"].as_array().unwrap() {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().unwrap())
                .attribute_type(ScalarAttributeType::from(
                    a["AttributeType"].as_str().unwrap(),
                ))
                .build()
                .unwrap(),
        );
    }
    for k in t["KeySchema"].as_array().unwrap() {
        req = req.key_schema(key(k));
    }
    for i in t["LocalSecondaryIndexes"].as_array().unwrap() {
        let mut lsi = LocalSecondaryIndex::builder()
            .index_name(i["IndexName"].as_str().unwrap())
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(
                        i["Projection"]["ProjectionType"].as_str().unwrap(),
                    ))
                    .build(),
            );
        for k in i["KeySchema"].as_array().unwrap() {
            lsi = lsi.key_schema(key(k));
        }
        req = req.local_secondary_indexes(lsi.build().unwrap());
    }
    for i in t["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(i["IndexName"].as_str().unwrap())
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(
                        i["Projection"]["ProjectionType"].as_str().unwrap(),
                    ))
                    .build(),
            );
        for k in i["KeySchema"].as_array().unwrap() {
            gsi = gsi.key_schema(key(k));
        }
        req = req.global_secondary_indexes(gsi.build().unwrap());
    }
    req.send().await.expect("table created");
    client
        .update_time_to_live()
        .table_name(&name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(template()["ttlAttribute"].as_str().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("TTL enabled");
    name
}

pub async fn fresh() -> Fresh {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let dlq_url = sqs
        .create_queue()
        .queue_name(unique("dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": template()["maxReceiveCount"].to_string(),
    });
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("dispatch"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            template()["queueVisibilityTimeout"].to_string(),
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            redrive.to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    Fresh {
        sdk,
        table,
        queue_url,
        dlq_url,
    }
}

/// Every request the emulator has seen so far (its recorder), oldest first.
pub async fn recorded() -> Vec<Value> {
    let text = reqwest::get(format!(
        "{}/moto-api/recorder/download-recording",
        emulator().url
    ))
    .await
    .expect("recorder reachable")
    .text()
    .await
    .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("recording line"))
        .collect()
}

/// The S3 operation of a recorded request to an attachment object (path style:
/// `/<bucket>/attachments/...`), by its method and `?tagging` subresource.
fn s3_operation(entry: &Value) -> Option<&'static str> {
    let url = entry["url"].as_str()?;
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = path.split_once("://").map_or(path, |(_, rest)| rest);
    let mut segments = path.split('/').skip(2);
    if segments.next() != Some("attachments") {
        return None;
    }
    let tagging = query
        .split('&')
        .any(|p| p == "tagging" || p.starts_with("tagging="));
    Some(match (entry["method"].as_str()?, tagging) {
        ("PUT", false) => "S3.PutObject",
        ("HEAD", _) => "S3.HeadObject",
        ("GET", false) => "S3.GetObject",
        ("DELETE", false) => "S3.DeleteObject",
        ("PUT", true) => "S3.PutObjectTagging",
        ("GET", true) => "S3.GetObjectTagging",
        ("DELETE", true) => "S3.DeleteObjectTagging",
        _ => return None,
    })
}

/// The operation of a recorded request: `DynamoDB.GetItem`, `SQS.SendMessage`,
/// `PostToConnection`, `DeleteConnection`, `S3.PutObject`, ...
pub fn operation(entry: &Value) -> String {
    if let Some(op) = s3_operation(entry) {
        return op.to_string();
    }
    let headers = entry["headers"].as_object().cloned().unwrap_or_default();
    let target = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
        .and_then(|(_, v)| v.as_str());
    match target {
        Some(t) if t.starts_with("DynamoDB_") => {
            format!("DynamoDB.{}", t.rsplit('.').next().unwrap())
        }
        Some(t) if t.starts_with("AmazonSQS.") => format!("SQS.{}", t.rsplit('.').next().unwrap()),
        Some(t) => t.to_string(),
        None if entry["url"]
            .as_str()
            .unwrap_or("")
            .contains("/@connections/") =>
        {
            match entry["method"].as_str() {
                Some("DELETE") => "DeleteConnection".into(),
                _ => "PostToConnection".into(),
            }
        }
        None => format!(
            "{} {}",
            entry["method"].as_str().unwrap_or(""),
            entry["url"].as_str().unwrap_or("")
        ),
    }
}

/// The JSON frames posted to one connection, in order (connection ids here are URL-safe).
pub async fn pushed_to(connection_id: &str) -> Vec<Value> {
    use base64::Engine;
    let suffix = format!("/@connections/{connection_id}");
    recorded()
        .await
        .into_iter()
        .filter(|e| {
            e["method"] == "POST" && e["url"].as_str().is_some_and(|u| u.ends_with(&suffix))
        })
        .map(|e| {
            let body = e["body"].as_str().unwrap_or("");
            let bytes = if e["body_encoded"] == true {
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap()
            } else {
                body.as_bytes().to_vec()
            };
            serde_json::from_slice(&bytes).expect("pushed frames are JSON")
        })
        .collect()
}
