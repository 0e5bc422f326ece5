//! `session` Lambda: `POST /sessions`, `GET /sessions/{id}`, `GET /sessions/{id}/messages`,
//! `POST /sessions/{id}/read` (HTTP API).

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    chat_aws::init_tracing();
    chat_aws::init_metrics();
    let app = chat_aws::App::start().await?;
    chat_aws::handlers::run_http(app).await
}
