//! The [`Queue`] on SQS: one message per user message to dispatch.
//!
//! Delivery is at least once; the dispatcher is idempotent (it skips a message already past
//! `received`). Backoff between attempts is done by the dispatch Lambda, which stretches the
//! record's visibility timeout with [`SqsQueue::retry_after`]; after
//! `CHAT_DISPATCH_MAX_ATTEMPTS` receives the queue's redrive policy moves a record that still
//! fails to the dead-letter queue.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chat_core::model::{DispatchJob, Millis};
use chat_core::ports::{Clock, Queue, QueueError};
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
    /// One `SendMessageBatch` of two records: the delivery, and the reply-deadline check
    /// delayed until `deadline_at` (SQS delays a record at most 15 minutes, which is why
    /// `CHAT_REPLY_TIMEOUT_MS` stops there).
    async fn enqueue(&self, job: DispatchJob, deadline_at: Millis) -> Result<(), QueueError> {
        let now = chat_core::ports::SystemClock.now_ms();
        let delay_secs = (deadline_at.saturating_sub(now).max(0) as u64)
            .div_ceil(1000)
            .min(900) as i32;
        let entry = |id: &str, job: DispatchJob, delay: i32| {
            let body = serde_json::to_string(&job).map_err(|e| QueueError(e.to_string()))?;
            SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body(body)
                .delay_seconds(delay)
                .build()
                .map_err(|e| QueueError(e.to_string()))
        };
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .entries(entry("dispatch", job, 0)?)
            .entries(entry("deadline", job.deadline(), delay_secs)?)
            .send()
            .await
            .map_err(|e| QueueError(crate::error_chain(&e)))?;
        // A batch answers 200 even when entries failed; each failure is named in the answer.
        if let Some(failed) = out.failed.first() {
            return Err(QueueError(format!(
                "SendMessageBatch entry {} failed: {} {}",
                failed.id,
                failed.code,
                failed.message.as_deref().unwrap_or("")
            )));
        }
        Ok(())
    }

    /// One `SendMessage` delayed until `at` (at most 15 minutes; a job due later runs
    /// early and asks to be retried).
    async fn schedule(&self, job: DispatchJob, at: Millis) -> Result<(), QueueError> {
        let now = chat_core::ports::SystemClock.now_ms();
        let delay_secs = (at.saturating_sub(now).max(0) as u64)
            .div_ceil(1000)
            .min(900) as i32;
        let body = serde_json::to_string(&job).map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay_secs)
            .send()
            .await
            .map_err(|e| QueueError(crate::error_chain(&e)))?;
        Ok(())
    }
}
