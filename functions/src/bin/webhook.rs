//! `webhook` Lambda: `POST /webhook` (n8n's signed replies), `GET /webhook` and `GET /health`.

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    chat_aws::init_tracing();
    chat_aws::init_metrics();
    let app = chat_aws::App::start().await?;
    chat_aws::handlers::run_http(app).await
}
