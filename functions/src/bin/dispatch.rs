//! `dispatch` Lambda: the SQS consumer that delivers user messages to n8n, with partial batch
//! failures (`ReportBatchItemFailures`) and visibility-timeout backoff.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    chat_aws::init_tracing();
    chat_aws::init_metrics();
    let app = chat_aws::App::start().await?;
    if app.dispatcher.is_none() {
        return Err("CHAT_N8N_WEBHOOK_URL is required by the dispatch function".into());
    }
    let app = &app;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(
            chat_aws::invocation(&e.context, chat_aws::handlers::dispatch(app, e.payload)).await,
        )
    }))
    .await
}
