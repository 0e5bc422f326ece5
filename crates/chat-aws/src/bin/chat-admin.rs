//! `chat-admin`: operator commands for a deployed stack, run with the operator's own AWS
//! credentials (the usual `AWS_*` variables or profile), never by a Lambda.
//!
//! `chat-admin redrive --dlq-url <DlqUrl> --queue-url <QueueUrl> --table <TableName>
//! [--reply-timeout-ms <ms>]` moves the dispatches of the dead-letter queue back to the
//! dispatch queue, their messages `received` again (see `chat_aws::redrive`). Each flag may
//! also come from the environment: `DLQ_URL`, `QUEUE_URL`, `TABLE_NAME`,
//! `CHAT_REPLY_TIMEOUT_MS` (default 120000, the template's `ReplyTimeoutMs`).

use chat_aws::dynamo::DynamoStore;
use chat_aws::redrive::{Target, redrive};
use chat_aws::sqs::SqsQueue;
use std::process::ExitCode;

const USAGE: &str = "usage: chat-admin redrive --dlq-url <DlqUrl> --queue-url <QueueUrl> --table <TableName> [--reply-timeout-ms <ms>]
  (the stack's outputs; or DLQ_URL, QUEUE_URL, TABLE_NAME, CHAT_REPLY_TIMEOUT_MS in the environment)";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("redrive") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let flag = |name: &str, var: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .or_else(|| std::env::var(var).ok())
            .filter(|v| !v.trim().is_empty())
    };
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
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(chat_aws::app::https_client())
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let queue = SqsQueue::new(sqs.clone(), queue_url);
    let target = Target {
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
