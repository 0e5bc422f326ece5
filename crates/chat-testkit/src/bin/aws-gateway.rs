//! `aws-gateway`: the Lambda handlers behind a local stand-in for API Gateway, with DynamoDB,
//! SQS and S3 on the AWS emulator ([`chat_testkit::aws::gateway`]), for browser tests of the
//! AWS deployment. Listens on `CHAT_ADDR` (default an ephemeral 127.0.0.1 port) and prints
//! `listening on <url>`; every other `CHAT_*` variable goes to the functions' environment.
//! Stops at SIGTERM or Ctrl-C, and the emulator with it. Not shipped.

#[tokio::main]
async fn main() {
    chat_aws::init_tracing();
    let addr = std::env::var("CHAT_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let extra = std::env::vars()
        .filter(|(k, _)| k.starts_with("CHAT_") && k != "CHAT_ADDR")
        .collect();
    let running = chat_testkit::aws::gateway::start(&addr, &extra).await;
    println!("listening on {}", running.url);
    let _ = tokio::signal::ctrl_c().await;
}
