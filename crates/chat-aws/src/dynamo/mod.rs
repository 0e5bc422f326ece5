//! The [`Store`] on one DynamoDB table (layout in `infra/TABLE.md`).
//!
//! Everything of a session lives in its partition `SESSION#<id>`: the session item, messages
//! under `MSG#<seq>` (zero-padded, so the sort key orders them), idempotency keys and the
//! session's connections. Appends are one `TransactWriteItems` (counter update, message put,
//! idempotency key put, all conditional), so `seq` has no gaps and follows commit order.
//! Reads are `GetItem` or `Query`; nothing here ever scans. DynamoDB's TTL deletes lazily, so
//! expired items are treated as absent when read.
//!
//! [`item`] maps domain values to items and back; [`store`] is the `Store`; [`limiter`] keeps
//! rate-limit buckets in the same table.

mod attachments;
mod item;
mod limiter;
mod reset;
mod store;

use aws_sdk_dynamodb::Client;
use chat_core::model::{Message, MessageId, SessionId};
use chat_core::ports::StoreError;
use item::*;
use std::collections::HashMap;

/// The DynamoDB store; cheap to clone (the SDK client is shared).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// Appends retried this many times when another writer took the same `seq` first, with a
/// jittered backoff of up to [`APPEND_BACKOFF_MAX_MS`] between tries.
pub(crate) const APPEND_TRIES: u32 = 100;
pub(crate) const APPEND_BACKOFF_MAX_MS: u64 = 50;

/// A short random-ish pause before retrying a lost race (jitter keeps racers apart).
pub(crate) async fn backoff(try_no: u32) {
    let cap = (1u64 << try_no.min(6)).min(APPEND_BACKOFF_MAX_MS);
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(jitter % (cap + 1))).await;
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub(crate) fn key(pk: String, sk: &str) -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    }

    pub(crate) async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.item)
    }

    pub(crate) async fn message_item_by_id(
        &self,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("byMessageId")
            .key_condition_expression("pk = :pk AND msgId = :id")
            .expression_attribute_values(":pk", s(session_pk(session)))
            .expression_attribute_values(":id", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.items.and_then(|mut v| v.pop()))
    }

    /// The message an idempotency key points to.
    pub(crate) async fn by_idempotency_key(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<Message>, StoreError> {
        let Some(idem) = self
            .get(session_pk(session), &format!("IDEM#{key}"))
            .await?
        else {
            return Ok(None);
        };
        let seq: u64 = req_n(&idem, "seq")?;
        match self.get(session_pk(session), &msg_sk(seq)).await? {
            Some(item) => Ok(Some(message_of(&item)?)),
            None => Ok(None),
        }
    }
}
