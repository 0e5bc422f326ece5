//! The [`Queue`] on SQS: one message per user message to dispatch.
//!
//! Delivery is at least once; the dispatcher is idempotent (it skips a message already past
//! `received`). Backoff between attempts is done by the dispatch Lambda, which stretches the
//! record's visibility timeout with [`SqsQueue::retry_after`]; after
//! `CHAT_DISPATCH_MAX_ATTEMPTS` receives the queue's redrive policy moves a record that still
//! fails to the dead-letter queue.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use chat_core::model::DispatchJob;
use chat_core::ports::{Queue, QueueError};
use std::time::Duration;

/// The dispatch queue.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// Makes a received record visible again after `delay` (SQS counts whole seconds, up to
    /// 12 hours; a delay under one second becomes one second).
    pub async fn retry_after(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let secs = delay.as_millis().div_ceil(1000).clamp(1, 43_200) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| QueueError(crate::error_chain(&e)))?;
        Ok(())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn enqueue(&self, job: DispatchJob) -> Result<(), QueueError> {
        let body = serde_json::to_string(&job).map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| QueueError(crate::error_chain(&e)))?;
        Ok(())
    }
}
