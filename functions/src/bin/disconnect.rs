//! `disconnect` Lambda: WebSocket `$disconnect` (best effort; connections also expire by TTL).

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    chat_aws::init_tracing();
    chat_aws::init_metrics();
    let app = chat_aws::App::start().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |e: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, Error>(
                chat_aws::invocation(&e.context, chat_aws::handlers::disconnect(app, e.payload))
                    .await,
            )
        },
    ))
    .await
}
