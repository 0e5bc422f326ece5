//! The floor for the cold-start benchmark: the smallest `lambda_runtime` function (no AWS
//! clients, no configuration), built with the same release profile as the six functions.
//! It answers every event with the event itself.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|e: LambdaEvent<Value>| async move {
        Ok::<_, Error>(e.payload)
    }))
    .await
}
