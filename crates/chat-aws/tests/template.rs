//! What `template.yaml` deploys, beyond what the linters check: API throttling on both stages
//! with route settings that can deploy, reserved concurrency only when asked for, and the
//! functions' secret variables in both modes (plain values, or SSM parameter names that a
//! function started from the template's own environment reads), and the attachment bucket
//! held to the code's object keys, pending tag and upload headers. Read through
//! `infra/template_resources.py`, which evaluates the template's conditions for given
//! parameter values.

use chat_testkit::aws::emulator as common;
use common::template_with;

use serde_json::Value;
use std::collections::HashMap;

fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn both_api_stages_throttle_and_name_only_routes_that_exist_before_them() {
    let t = template_with(&[]);
    let apis = t["apis"].as_object().unwrap();
    assert_eq!(apis.len(), 2, "an HTTP and a WebSocket API");
    for (api, a) in apis {
        let stages = a["stages"].as_object().unwrap();
        assert_eq!(stages.len(), 1, "{api}: one stage");
        let (stage_id, stage) = stages.iter().next().unwrap();
        let d = &stage["defaultRouteSettings"];
        let (rate, burst) = (
            number(&d["ThrottlingRateLimit"]),
            number(&d["ThrottlingBurstLimit"]),
        );
        assert!(rate > 0.0 && burst >= rate, "{api}: default throttling {d}");
        let routes = a["routes"].as_object().unwrap();
        let settings = stage["routeSettings"].as_object().unwrap();
        assert!(
            !settings.is_empty(),
            "{api}: no route is throttled on its own"
        );
        for (key, s) in settings {
            // RouteSettings may only name routes that exist when the stage is created.
            let (route_id, route) = routes
                .iter()
                .find(|(_, r)| r["routeKey"] == key.as_str())
                .unwrap_or_else(|| panic!("{api}: RouteSettings names no route {key}"));
            let depends: Vec<_> = stage["dependsOn"].as_array().unwrap().iter().collect();
            assert!(
                depends.iter().any(|d| d == &route_id),
                "{api}: {stage_id} must depend on {route_id}, which its RouteSettings name"
            );
            assert!(
                !route["dependsOn"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d == stage_id),
                "{api}: {route_id} and {stage_id} depend on each other"
            );
            let (r, b) = (
                number(&s["ThrottlingRateLimit"]),
                number(&s["ThrottlingBurstLimit"]),
            );
            assert!(
                r > 0.0 && r < rate && b < burst,
                "{api} {key}: not tighter than the stage"
            );
        }
    }
    let key = |api: &str| -> Vec<String> {
        let mut k: Vec<_> = t["apis"][api]["stages"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|s| s["routeSettings"].as_object().unwrap().keys().cloned())
            .collect();
        k.sort();
        k
    };
    assert_eq!(key("HttpApi"), ["POST /sessions"]);
    assert_eq!(key("WebSocketApi"), ["ping", "typing"]);
}

#[test]
fn reserved_concurrency_is_set_only_when_a_positive_value_is_given() {
    let functions = |t: &Value| -> HashMap<String, Value> {
        t["functions"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v["reservedConcurrency"].clone()))
            .collect()
    };
    let defaults = functions(&template_with(&[]));
    assert_eq!(defaults.len(), 7);
    assert!(
        defaults.values().all(Value::is_null),
        "unset by default: {defaults:?}"
    );
    let zero = functions(&template_with(&[("DispatchReservedConcurrency", "0")]));
    assert!(zero["dispatch"].is_null(), "0 means unset");
    let set = template_with(&[
        ("SessionReservedConcurrency", "5"),
        ("SendReservedConcurrency", "7"),
        ("WebhookReservedConcurrency", "2"),
        ("ConnectReservedConcurrency", "3"),
        ("DisconnectReservedConcurrency", "4"),
        ("DispatchReservedConcurrency", "6"),
        ("AgentReservedConcurrency", "8"),
    ]);
    let set = functions(&set);
    let got: Vec<(&str, f64)> = [
        "session",
        "send",
        "webhook",
        "connect",
        "disconnect",
        "dispatch",
        "agent",
    ]
    .iter()
    .map(|f| (*f, number(&set[*f])))
    .collect();
    assert_eq!(
        got,
        [
            ("session", 5.0),
            ("send", 7.0),
            ("webhook", 2.0),
            ("connect", 3.0),
            ("disconnect", 4.0),
            ("dispatch", 6.0),
            ("agent", 8.0)
        ]
    );
}

#[test]
fn plain_secret_parameters_become_plain_variables() {
    let t = template_with(&[
        ("WebhookSecret", "a-webhook-secret-of-length"),
        ("SessionSecret", "a-session-secret-of-length"),
    ]);
    let env = t["environment"].as_object().unwrap();
    assert_eq!(env["CHAT_WEBHOOK_SECRET"], "a-webhook-secret-of-length");
    assert_eq!(env["CHAT_SESSION_SECRET"], "a-session-secret-of-length");
    for k in env.keys() {
        assert!(!k.ends_with("_PARAM"), "{k} set with plain secrets");
    }
    assert!(!env.contains_key("CHAT_AUTH_JWT_SECRET"), "no app JWTs");
    for (name, f) in t["functions"].as_object().unwrap() {
        assert!(
            !f["statements"].to_string().contains("ssm:"),
            "{name} may read SSM with plain secrets"
        );
    }
}

#[tokio::test]
async fn a_function_started_from_the_template_environment_reads_its_secrets_from_ssm() {
    let f = common::fresh().await;
    let prefix = format!("/chat-tpl-{}", ulid::Ulid::new().to_string().to_lowercase());
    let names = [format!("{prefix}/webhook"), format!("{prefix}/session")];
    let values = ["webhook-secret-in-ssm", "session-secret-in-ssm"];
    let ssm = aws_sdk_ssm::Client::new(&f.sdk);
    for (n, v) in names.iter().zip(values) {
        ssm.put_parameter()
            .name(n)
            .value(v)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .unwrap();
    }
    let t = template_with(&[
        ("WebhookSecretParameter", &names[0]),
        ("SessionSecretParameter", &names[1]),
        ("N8nWebhookUrl", "http://127.0.0.1:9/n8n"),
    ]);
    let env = t["environment"].as_object().unwrap();
    assert!(!env.contains_key("CHAT_WEBHOOK_SECRET"));
    assert!(!env.contains_key("CHAT_SESSION_SECRET"));
    // The template's environment, on this test's table, queue and emulator.
    let mut vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    vars.insert("TABLE_NAME".into(), f.table.clone());
    vars.insert("QUEUE_URL".into(), f.queue_url.clone());
    vars.insert("WEBSOCKET_ENDPOINT".into(), common::emulator().url.clone());
    let app = chat_aws::App::from_lookup(&|k| vars.get(k).cloned(), &f.sdk)
        .await
        .expect("starts from the template's environment");
    let c = app.service.config();
    assert_eq!(c.webhook_secret.expose(), values[0]);
    assert_eq!(c.session_secret.expose(), values[1]);
    // Each function may read exactly those parameters.
    let arn = |n: &str| format!("arn:aws:ssm:us-east-1:123456789012:parameter{n}");
    for (name, f) in t["functions"].as_object().unwrap() {
        let secrets: Vec<_> = f["statements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["actions"] == serde_json::json!(["ssm:GetParameters"]))
            .collect();
        assert_eq!(secrets.len(), 1, "{name}");
        assert_eq!(
            secrets[0]["resources"],
            serde_json::json!([arn(&names[0]), arn(&names[1])]),
            "{name}"
        );
    }
}

/// The HTTP API's route keys in the template are exactly the router's routes, both ways, and
/// every one of them is routed (neither the 404 fallback nor a 405), through the Lambda path.
#[tokio::test]
async fn the_template_routes_are_the_routers_routes() {
    let t = template_with(&[]);
    let mut in_template: Vec<String> = t["apis"]["HttpApi"]["routes"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["routeKey"].as_str().unwrap().to_string())
        .collect();
    in_template.sort();
    let mut in_router: Vec<String> = chat_http::ROUTES.iter().map(|r| r.to_string()).collect();
    in_router.sort();
    assert_eq!(
        in_template, in_router,
        "template.yaml's HTTP routes vs chat_http::ROUTES"
    );

    let ports = chat_core::service::Ports {
        store: std::sync::Arc::new(chat_testkit::memory::MemoryStore::new()),
        queue: std::sync::Arc::new(chat_testkit::memory::MemoryQueue::default()),
        push: std::sync::Arc::new(chat_testkit::memory::RecordingPush::default()),
        clock: std::sync::Arc::new(chat_core::ports::SystemClock),
        limiter: std::sync::Arc::new(chat_core::rate::MemoryLimiter::new()),
    };
    let app = chat_aws::App::from_ports(ports, chat_testkit::config(), None);
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("events/send-http.json")).unwrap(),
    )
    .unwrap();
    let call = |method: &str, path: &str| {
        let mut e = sample.clone();
        e["routeKey"] = serde_json::json!(format!("{method} {path}"));
        e["rawPath"] = serde_json::json!(path);
        e["requestContext"]["http"]["method"] = serde_json::json!(method);
        e["requestContext"]["http"]["path"] = serde_json::json!(path);
        let req = serde_json::from_value(e).unwrap();
        let app = app.clone();
        async move {
            let r = chat_aws::handlers::http(&app, req).await;
            let body = match r.body {
                Some(aws_lambda_events::encodings::Body::Text(t)) => t,
                _ => String::new(),
            };
            (r.status_code, body)
        }
    };
    for route in chat_http::ROUTES {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path
            .replace("{id}", "01JD9N0V8019F5A42YAM85WN8G")
            .replace("{action}", "claim")
            .replace("{cid}", "01JD9N0V8019F5A42YAM85WN8H")
            .replace("{messageId}", "01JD9N0V8019F5A42YAM85WN8J");
        let (status, body) = call(method, &path).await;
        assert!(
            !body.contains(r#""code":"not_found","message":"no such route""#) && status != 405,
            "{route} is not routed: {status} {body}"
        );
    }
    // And the router knows nothing else: a path of no route is the contract's 404.
    let (status, body) = call("GET", "/nowhere").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call("DELETE", "/sessions").await;
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("method_not_allowed"), "{body}");
}

#[test]
fn the_dispatch_function_and_its_queue_fit_a_long_streamed_answer() {
    let t = template_with(&[
        ("N8nAuthHeader", "Authorization: Basic dXNlcjpwYXNz"),
        ("StreamTimeoutMs", "840000"),
        ("WelcomeMessage", "Hi! How can I help?"),
    ]);
    let functions = t["functions"].as_object().unwrap();
    let dispatch = &functions["dispatch"];
    // The longest allowed answer, plus room for the store writes.
    let timeout = number(&dispatch["timeout"]);
    assert!(
        timeout * 1000.0 >= 840_000.0 + 30_000.0,
        "dispatch timeout {timeout} s"
    );
    assert!(
        number(&t["queueVisibilityTimeout"]) >= 6.0 * timeout,
        "the queue's visibility is at least 6x the dispatch function's timeout"
    );
    // The n8n credentials go to the function that calls n8n, and no other.
    assert_eq!(
        dispatch["environment"]["CHAT_N8N_AUTH_HEADER"],
        "Authorization: Basic dXNlcjpwYXNz"
    );
    assert!(
        !t["environment"]
            .as_object()
            .unwrap()
            .contains_key("CHAT_N8N_AUTH_HEADER")
    );
    for (name, f) in functions {
        if name != "dispatch" {
            assert!(
                f["environment"].get("CHAT_N8N_AUTH_HEADER").is_none(),
                "{name}"
            );
        }
    }
    let env = &t["environment"];
    assert_eq!(env["CHAT_STREAM_TIMEOUT_MS"], "840000");
    assert_eq!(env["CHAT_WELCOME_MESSAGE"], "Hi! How can I help?");
    // And a function reads them as the core does.
    let mut vars: HashMap<String, String> = env
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    vars.insert(
        "CHAT_N8N_AUTH_HEADER".into(),
        "Authorization: Basic dXNlcjpwYXNz".into(),
    );
    let config = chat_core::Config::from_env(
        &|k| vars.get(k).cloned(),
        chat_core::config::Secret::new("w"),
        chat_core::config::Secret::new("s"),
        "https://x".into(),
        "wss://x".into(),
    )
    .unwrap();
    assert_eq!(config.dispatch.stream_timeout.as_millis(), 840_000);
    assert_eq!(
        config.welcome_message.as_deref(),
        Some("Hi! How can I help?")
    );
    assert_eq!(config.n8n_auth_header.unwrap().name, "Authorization");
}

/// Our rows of the dashboards and alarms: `(metric name, dimensions)` of every metric in the
/// functions' namespace.
fn our_metrics(t: &Value) -> Vec<(String, Vec<String>)> {
    let ns = t["environment"]["CHAT_METRICS_NAMESPACE"].as_str().unwrap();
    let mut out = Vec::new();
    for d in t["dashboards"].as_array().unwrap() {
        for w in d["widgets"].as_array().unwrap() {
            for row in w["properties"]["metrics"].as_array().unwrap() {
                let row = row.as_array().unwrap();
                if row[0] == ns {
                    let dims = row[2..]
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect();
                    out.push((row[1].as_str().unwrap().to_string(), dims));
                }
            }
        }
    }
    for a in t["alarms"].as_object().unwrap().values() {
        let mut stats: Vec<&Value> = a["Metrics"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|q| q.get("MetricStat"))
                    .map(|s| &s["Metric"])
                    .collect()
            })
            .unwrap_or_default();
        stats.push(a);
        for m in stats.into_iter().filter(|m| m["Namespace"] == ns) {
            let dims = m["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|d| [d["Name"].as_str().unwrap(), d["Value"].as_str().unwrap()])
                .map(str::to_string)
                .collect();
            out.push((m["MetricName"].as_str().unwrap().to_string(), dims));
        }
    }
    out
}

#[test]
fn the_dashboard_and_alarms_read_every_metric_the_functions_emit_and_no_other() {
    use chat_core::metrics::{COUNTERS, HISTOGRAMS};
    let t = template_with(&[("Stage", "blue")]);
    assert_eq!(t["environment"]["CHAT_STAGE"], "blue");
    let used = our_metrics(&t);
    let emitted: std::collections::BTreeSet<&str> =
        COUNTERS.iter().chain(&HISTOGRAMS).copied().collect();
    let shown: std::collections::BTreeSet<&str> = used.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(shown, emitted, "the dashboard shows what the code emits");
    for (name, dims) in &used {
        // The EMF recorder declares [Stage] and [Stage, Function]: a figure read by [Stage]
        // alone is the whole stage's.
        assert_eq!(
            dims,
            &["Stage", "blue"],
            "{name} is read by the Stage dimension"
        );
    }
    let latency = &t["alarms"]["AnswerLatencyAlarm"];
    assert_eq!(latency["MetricName"], chat_core::metrics::ANSWER_LATENCY_MS);
    assert_eq!(latency["ExtendedStatistic"], "p99");
    let t = template_with(&[("AnswerLatencyAlarmMs", "4321")]);
    assert_eq!(
        number(&t["alarms"]["AnswerLatencyAlarm"]["Threshold"]),
        4321.0
    );
}

#[test]
fn errors_and_throttles_are_watched_on_every_function() {
    let t = template_with(&[]);
    let functions: std::collections::BTreeSet<String> = t["functions"]
        .as_object()
        .unwrap()
        .values()
        .map(|f| f["logicalId"].as_str().unwrap().to_string())
        .collect();
    for alarm in ["FunctionErrorsAlarm", "FunctionThrottlesAlarm"] {
        let a = &t["alarms"][alarm];
        let queries = a["Metrics"].as_array().unwrap();
        let watched: std::collections::BTreeSet<String> = queries
            .iter()
            .filter_map(|q| q.get("MetricStat"))
            .map(|s| {
                s["Metric"]["Dimensions"][0]["Value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(watched, functions, "{alarm}");
        // The expression adds up every query it is given.
        let expression = queries[0]["Expression"].as_str().unwrap();
        for q in &queries[1..] {
            let id = q["Id"].as_str().unwrap();
            assert!(
                expression.split(" + ").any(|term| term == id),
                "{alarm}: {expression} leaves out {id}"
            );
        }
    }
}

#[test]
fn every_alarm_tells_the_topic_when_one_is_given_and_none_without() {
    let topic = "arn:aws:sns:us-east-1:123456789012:chat-alarms";
    let with = template_with(&[("AlarmTopicArn", topic)]);
    let without = template_with(&[]);
    let alarms = with["alarms"].as_object().unwrap();
    assert!(alarms.len() >= 5, "{:?}", alarms.keys());
    for (name, a) in alarms {
        assert_eq!(a["AlarmActions"], serde_json::json!([topic]), "{name}");
        assert!(
            without["alarms"][name].get("AlarmActions").is_none(),
            "{name} without a topic"
        );
        assert_eq!(
            a["TreatMissingData"], "notBreaching",
            "{name}: no traffic is no alarm"
        );
    }
}

/// The attachment bucket as the code needs it and no wider: private (every public access
/// blocked, ACLs off), encrypted with S3's own key, kept with the stack's data; its one
/// lifecycle rule expires exactly the code's pending tag under the code's key prefix after a
/// day; its CORS lets the browser send exactly the headers the code's presigned upload asks
/// for, from the HTTP API's origins; and the bucket's name reaches exactly the functions that
/// hold S3 grants, each grant on the objects under that prefix.
#[tokio::test]
async fn the_attachment_bucket_is_private_and_forgets_unsent_files() {
    use chat_aws::s3::{PENDING_TAG, S3Files, object_key};
    use chat_core::attachments::{Attachment, Files};
    use chat_core::model::{AttachmentId, SessionId};
    use serde_json::json;

    let t = template_with(&[]);
    let buckets = t["buckets"].as_object().unwrap();
    assert_eq!(buckets.len(), 1, "one bucket");
    let b = &buckets["AttachmentsBucket"];
    for block in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            b["PublicAccessBlockConfiguration"][block],
            json!(true),
            "{block}"
        );
    }
    assert_eq!(
        b["OwnershipControls"]["Rules"],
        json!([{"ObjectOwnership": "BucketOwnerEnforced"}])
    );
    assert_eq!(
        b["BucketEncryption"]["ServerSideEncryptionConfiguration"],
        json!([{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}])
    );
    assert_eq!(
        b["DeletionPolicy"], "Retain",
        "sent files outlive the stack"
    );

    // The lifecycle rule: the code's tag, under the code's keys, after a day.
    let (tag_key, tag_value) = PENDING_TAG.split_once('=').unwrap();
    let key = object_key(&SessionId::new(), &AttachmentId::new());
    let rules = b["LifecycleConfiguration"]["Rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    assert_eq!(rule["Status"], "Enabled");
    assert_eq!(rule["ExpirationInDays"].as_f64(), Some(1.0), "{rule}");
    assert_eq!(
        rule["TagFilters"],
        json!([{"Key": tag_key, "Value": tag_value}])
    );
    let prefix = rule["Prefix"].as_str().unwrap();
    assert!(key.starts_with(prefix), "{key} under {prefix}");

    // CORS: the upload's headers (signed locally: no request), from the HTTP API's origins.
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "AKIDEXAMPLE",
            "offline",
            None,
            None,
            "test",
        ))
        .build();
    let files = S3Files::new(aws_sdk_s3::Client::from_conf(conf), "bucket");
    let now = chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock);
    let a = Attachment {
        id: AttachmentId::new(),
        session_id: SessionId::new(),
        name: "a.png".into(),
        content_type: "image/png".into(),
        size: 10,
        created_at: now,
        expires_at: now + 3_600_000,
        message_id: None,
    };
    let target = files.upload_target(&a, now + 900_000).await.unwrap();
    let mut sent: Vec<String> = target.headers.keys().map(|k| k.to_lowercase()).collect();
    sent.sort();
    let rules = b["CorsConfiguration"]["CorsRules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let cors = &rules[0];
    let mut allowed: Vec<String> = cors["AllowedHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_lowercase())
        .collect();
    allowed.sort();
    assert_eq!(allowed, sent, "exactly the headers the upload sends");
    let mut methods: Vec<&str> = cors["AllowedMethods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    methods.sort();
    assert_eq!(methods, ["GET", "PUT"]);
    assert_eq!(
        cors["AllowedOrigins"], t["httpCors"]["AllowOrigins"],
        "the origins the HTTP API allows"
    );

    // The name where the grants are, the grants on the attachments' keys.
    for (name, f) in t["functions"].as_object().unwrap() {
        let s3: Vec<&Value> = f["statements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a.as_str().unwrap().starts_with("s3:"))
            })
            .collect();
        let var = &f["environment"]["CHAT_ATTACHMENTS_BUCKET"];
        assert_eq!(
            !s3.is_empty(),
            !var.is_null(),
            "{name}: the bucket's name exactly where S3 is granted"
        );
        assert!(var.is_null() || var == "AttachmentsBucket", "{name}: {var}");
        for s in s3 {
            assert_eq!(
                s["resources"],
                json!([format!("AttachmentsBucket/{prefix}*")]),
                "{name}"
            );
        }
    }
    assert!(
        t["environment"]["CHAT_ATTACHMENTS_BUCKET"].is_null(),
        "not in every function's environment"
    );
}
