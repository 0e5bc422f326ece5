//! Redrive: the dispatches in the dead-letter queue go back to the dispatch queue.
//!
//! A delivery lands in the dead-letter queue when n8n failed its last attempt (its message is
//! `failed` and the user was told) or when its record could not be handled at all. Once n8n
//! works again, [`redrive`] takes every record out of the dead-letter queue: its message
//! (unless answered meanwhile) is set back to `received` and queued again, a delivery and a
//! new reply deadline `reply_timeout` from now, in one `SendMessageBatch` as the send path
//! queues them; then the record is deleted. A record whose message was answered meanwhile or
//! is gone is deleted; an unreadable one is left where it is. `chat-admin redrive` runs it.

use crate::dynamo::DynamoStore;
use crate::sqs::SqsQueue;
use chat_core::model::{DispatchJob, Millis};
use chat_core::ports::{Clock, Queue, Store, SystemClock};
use std::collections::HashSet;

/// What a redrive did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    /// Messages set back to `received` and queued again.
    pub redriven: u64,
    /// Records deleted: their message was answered meanwhile, or is gone (or was redriven by
    /// another record of the same run).
    pub dropped: u64,
    /// Records that are not dispatch jobs, left in the dead-letter queue.
    pub unreadable: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RedriveError(String);

/// Where a redrive reads and writes.
pub struct Target<'a> {
    pub sqs: &'a aws_sdk_sqs::Client,
    pub store: &'a DynamoStore,
    pub queue: &'a SqsQueue,
    pub dead_letter_queue_url: &'a str,
    pub reply_timeout_ms: Millis,
}

/// Empties the dead-letter queue into the dispatch queue (see the module's doc).
pub async fn redrive(t: &Target<'_>) -> Result<Redriven, RedriveError> {
    let err = |e: &(dyn std::error::Error + 'static)| RedriveError(crate::error_chain(e));
    let mut done = Redriven::default();
    let mut seen = HashSet::new();
    loop {
        // Records received stay hidden for the run, so an unreadable one is read once.
        let out = t
            .sqs
            .receive_message()
            .queue_url(t.dead_letter_queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .send()
            .await
            .map_err(|e| err(&e))?;
        let records = out.messages.unwrap_or_default();
        if records.is_empty() {
            return Ok(done);
        }
        for r in records {
            let job = r
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<DispatchJob>(b).ok());
            let Some(job) = job else {
                tracing::warn!(
                    record = r.message_id.as_deref().unwrap_or(""),
                    "not a dispatch job; left in the dead-letter queue"
                );
                done.unreadable += 1;
                continue;
            };
            if seen.insert(job.message_id) && requeue(t, job).await? {
                done.redriven += 1;
            } else {
                done.dropped += 1;
            }
            t.sqs
                .delete_message()
                .queue_url(t.dead_letter_queue_url)
                .receipt_handle(r.receipt_handle.unwrap_or_default())
                .send()
                .await
                .map_err(|e| err(&e))?;
        }
    }
}

/// Resets `job`'s message and queues it again; `false` when it was answered or is gone.
async fn requeue(t: &Target<'_>, job: DispatchJob) -> Result<bool, RedriveError> {
    let err = |e: &dyn std::error::Error| RedriveError(e.to_string());
    let Some(message) = t
        .store
        .get_message(&job.session_id, &job.message_id)
        .await
        .map_err(|e| err(&e))?
    else {
        return Ok(false);
    };
    if !t
        .store
        .reset_to_received(&message)
        .await
        .map_err(|e| err(&e))?
    {
        return Ok(false);
    }
    let deadline = SystemClock.now_ms() + t.reply_timeout_ms;
    t.queue
        .enqueue(
            DispatchJob::dispatch(job.session_id, job.message_id),
            deadline,
        )
        .await
        .map_err(|e| err(&e))?;
    tracing::info!(session_id = %job.session_id, message_id = %job.message_id, "redriven");
    Ok(true)
}
