//! `send` Lambda: `POST /sessions/{id}/messages` (HTTP API) and the WebSocket routes
//! `sendMessage`, `typing`, `read`, `ping` and `$default`.

use chat_aws::handlers::SendEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    chat_aws::init_tracing();
    chat_aws::init_metrics();
    let app = chat_aws::App::start().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<SendEvent>| async move {
        Ok::<_, Error>(
            chat_aws::invocation(&e.context, chat_aws::handlers::send(app, e.payload)).await,
        )
    }))
    .await
}
