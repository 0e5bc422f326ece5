//! `chat-admin`: operator commands for a deployed stack, run with the operator's own AWS
//! credentials (the usual `AWS_*` variables or profile), never by a Lambda.
//!
//! `chat-admin redrive --dlq-url <DlqUrl> --queue-url <QueueUrl> --table <TableName>
//! [--reply-timeout-ms <ms>]` moves the dispatches of the dead-letter queue back to the
//! dispatch queue, their messages `received` again (see `chat_aws::redrive`). Each flag may
//! also come from the environment: `DLQ_URL`, `QUEUE_URL`, `TABLE_NAME`,
//! `CHAT_REPLY_TIMEOUT_MS` (default 120000, the template's `ReplyTimeoutMs`).
//!
//! `chat-admin export|erase --user <id> | --session <id> --table <TableName>
//! [--websocket-endpoint <url>]` prints everything of a user (or a session) as JSON, or erases
//! it (see `chat_aws::admin`); `TABLE_NAME` and `WEBSOCKET_ENDPOINT` may come from the
//! environment too.

use chat_aws::admin::{self, Target};
use chat_aws::dynamo::DynamoStore;
use chat_aws::redrive::{self, redrive};
use chat_aws::sqs::SqsQueue;
use std::process::ExitCode;

const USAGE: &str = "usage: chat-admin redrive --dlq-url <DlqUrl> --queue-url <QueueUrl> --table <TableName> [--reply-timeout-ms <ms>]
       chat-admin export --user <id> | --session <id> --table <TableName>
       chat-admin erase --user <id> | --session <id> --table <TableName> [--websocket-endpoint <url>]
  (the stack's outputs; or DLQ_URL, QUEUE_URL, TABLE_NAME, CHAT_REPLY_TIMEOUT_MS, WEBSOCKET_ENDPOINT in the environment)";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("redrive") => run_redrive(&args).await,
        Some(command @ ("export" | "erase")) => run_keep(command, &args).await,
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The value of `--name`, else of the environment variable `var`.
fn flag(args: &[String], name: &str, var: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(var).ok())
        .filter(|v| !v.trim().is_empty())
}

async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(chat_aws::app::https_client())
        .load()
        .await
}

/// `export` and `erase`.
async fn run_keep(command: &str, args: &[String]) -> ExitCode {
    let (Some(target), Some(table)) = (Target::parse(args), flag(args, "--table", "TABLE_NAME"))
    else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let endpoint = flag(args, "--websocket-endpoint", "WEBSOCKET_ENDPOINT");
    let svc = match admin::service(&sdk().await, table, endpoint.as_deref(), &|k| {
        std::env::var(k).ok()
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat-admin {command}: {e}");
            return ExitCode::from(2);
        }
    };
    let done = match command {
        "export" => admin::export(&svc, &target)
            .await
            .map(|json| println!("{json}")),
        _ => admin::erase(&svc, &target)
            .await
            .map(|n| println!("chat-admin: {n} session(s) erased")),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-admin {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `redrive`.
async fn run_redrive(args: &[String]) -> ExitCode {
    let flag = |name: &str, var: &str| flag(args, name, var);
    let (Some(dlq), Some(queue_url), Some(table)) = (
        flag("--dlq-url", "DLQ_URL"),
        flag("--queue-url", "QUEUE_URL"),
        flag("--table", "TABLE_NAME"),
    ) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let Ok(reply_timeout_ms) = flag("--reply-timeout-ms", "CHAT_REPLY_TIMEOUT_MS")
        .unwrap_or_else(|| "120000".into())
        .parse::<i64>()
    else {
        eprintln!("chat-admin: --reply-timeout-ms is a number of milliseconds");
        return ExitCode::from(2);
    };
    let sdk = sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let queue = SqsQueue::new(sqs.clone(), queue_url);
    let target = redrive::Target {
        sqs: &sqs,
        store: &store,
        queue: &queue,
        dead_letter_queue_url: &dlq,
        reply_timeout_ms,
    };
    match redrive(&target).await {
        Ok(done) => {
            println!(
                "chat-admin: {} message(s) redriven, {} record(s) dropped (answered meanwhile or gone), {} unreadable left in the dead-letter queue",
                done.redriven, done.dropped, done.unreadable
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat-admin redrive: {e}");
            ExitCode::FAILURE
        }
    }
}
