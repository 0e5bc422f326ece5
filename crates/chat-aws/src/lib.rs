//! AWS adapters for the chat core, and the glue from Lambda events to core calls.
//!
//! - [`dynamo::DynamoStore`]: the `Store` on one DynamoDB table (layout in `infra/TABLE.md`).
//! - [`sqs::SqsQueue`]: the `Queue` on SQS, with visibility-timeout backoff.
//! - [`push::ApiGatewayPush`]: the `Push` on the API Gateway Management API.
//! - [`app::App`]: configuration from the environment and the clients, built once per cold
//!   start and shared by every invocation.
//! - [`secrets`]: secrets from SSM Parameter Store, read once per cold start.
//! - [`emf`]: the metrics recorder, CloudWatch Embedded Metric Format lines on stdout.
//! - [`redrive`]: the dead-letter queue's dispatches back to the queue (`chat-admin redrive`).
//! - [`handlers`]: one plain async function per Lambda, from its event to its response; the
//!   binaries under `functions/` only wire one of them to `lambda_runtime`.

pub mod admin;
pub mod app;
pub mod dynamo;
pub mod emf;
pub mod handlers;
pub mod push;
pub mod redrive;
pub mod s3;
pub mod secrets;
pub mod sqs;

pub use app::App;

/// An error with its whole cause chain (the SDK's `Display` alone says only "service error").
/// The SDK's errors carry no credentials or secrets.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// JSON logs on stdout, one object per line with its spans (`request_id`, `session_id`), as
/// CloudWatch Logs expects, at the level of
/// `AWS_LAMBDA_LOG_LEVEL` (Lambda's log-level setting) or else `RUST_LOG`: `error`, `warn`,
/// `info` (the default), `debug` or `trace`. A plain level, not an `EnvFilter` directive, so
/// the binaries do not carry a regex engine.
pub fn init_tracing() {
    let level = ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_target(false)
        // Every span of the line (the invocation's request id, the session id, a job's
        // message id): see chat_core::trace.
        .with_current_span(false)
        .with_span_list(true)
        .flatten_event(true)
        .without_time()
        .init();
}

/// Installs the metrics recorder of the Lambdas ([`emf`]): namespace, stage and function
/// from the environment.
pub fn init_metrics() {
    emf::install(emf::EmfConfig::from_lookup(&|k| std::env::var(k).ok()));
}

/// One invocation: `work` runs in a `request` span carrying Lambda's request id (and the
/// session id once the core knows it), then what it recorded is written as EMF lines.
pub async fn invocation<R>(
    context: &lambda_runtime::Context,
    work: impl std::future::Future<Output = R>,
) -> R {
    use tracing::Instrument;
    let out = work
        .instrument(chat_core::trace::request_span(&context.request_id))
        .await;
    emf::flush();
    out
}
