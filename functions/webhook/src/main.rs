//! `webhook` Lambda: `POST /webhook` (n8n's signed replies), `GET /webhook` and `GET /health`.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    chat_aws::init_tracing();
    let app = chat_aws::App::start().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |e: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, Error>(chat_aws::handlers::http(app, e.payload).await)
        },
    ))
    .await
}
