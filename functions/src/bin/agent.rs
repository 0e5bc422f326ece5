//! `agent` Lambda: people in the loop over the HTTP API: the agents' routes (`/agent/*`:
//! inbox, a session's history, claim, release, close, transfer, messages, canned replies, the
//! agents list) and the user's `POST /sessions/{id}/handoff`.

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    chat_aws::init_tracing();
    chat_aws::init_metrics();
    let app = chat_aws::App::start().await?;
    chat_aws::handlers::run_http(app).await
}
