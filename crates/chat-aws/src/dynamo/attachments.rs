//! Attachment records on the same table, each in its own partition `ATTACHMENT#<id>` (sort
//! key `ATTACHMENT`): read by key, claimed for a message by one conditional
//! `TransactWriteItems` (all or none). An unclaimed record's `ttl` is its hour, a claimed
//! one's its message's expiry, so DynamoDB's TTL deletes them; the bytes go by the bucket's
//! lifecycle rule, so nothing here sweeps (`stale_attachments` lists none).

use super::DynamoStore;
use super::item::{Item, err, get_s, n, req_n, req_s, s, sdk_err, ulid};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use chat_core::attachments::{ATTACHMENT_TTL_MS, Attachment, AttachmentStore};
use chat_core::model::{AttachmentId, MessageId, Millis, SessionId};
use chat_core::ports::StoreError;
use std::collections::HashMap;

fn key(id: &AttachmentId) -> Item {
    HashMap::from([
        ("pk".to_string(), s(format!("ATTACHMENT#{id}"))),
        ("sk".to_string(), s("ATTACHMENT")),
    ])
}

fn item(a: &Attachment) -> Item {
    let mut item = key(&a.id);
    item.extend([
        ("sessionId".to_string(), s(a.session_id.to_string())),
        ("name".to_string(), s(a.name.clone())),
        ("contentType".to_string(), s(a.content_type.clone())),
        ("size".to_string(), n(a.size)),
        ("createdAt".to_string(), n(a.created_at)),
        ("expiresAtMs".to_string(), n(a.expires_at)),
        ("ttl".to_string(), n(a.expires_at / 1000)),
    ]);
    if let Some(m) = a.message_id {
        item.insert("messageId".into(), s(m.to_string()));
    }
    item
}

fn attachment_of(item: &Item) -> Result<Attachment, StoreError> {
    let id = req_s(item, "pk")?.trim_start_matches("ATTACHMENT#");
    Ok(Attachment {
        id: AttachmentId(ulid(id)?),
        session_id: SessionId(ulid(req_s(item, "sessionId")?)?),
        name: req_s(item, "name")?.to_string(),
        content_type: req_s(item, "contentType")?.to_string(),
        size: req_n(item, "size")?,
        created_at: req_n(item, "createdAt")?,
        expires_at: req_n(item, "expiresAtMs")?,
        message_id: get_s(item, "messageId")
            .map(ulid)
            .transpose()?
            .map(MessageId),
    })
}

#[async_trait]
impl AttachmentStore for DynamoStore {
    async fn put_attachment(&self, a: &Attachment) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(a)))
            .send()
            .await
            .map_err(|e| sdk_err(e.into_service_error()))?;
        Ok(())
    }

    async fn get_attachment(&self, id: &AttachmentId) -> Result<Option<Attachment>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err(e.into_service_error()))?;
        out.item().map(attachment_of).transpose()
    }

    async fn claim_attachments(
        &self,
        session: &SessionId,
        ids: &[AttachmentId],
        message: &MessageId,
        now: Millis,
        keep_until: Millis,
    ) -> Result<bool, StoreError> {
        if ids.is_empty() {
            return Ok(true);
        }
        let values = HashMap::from([
            (":s".to_string(), s(session.to_string())),
            (":m".to_string(), s(message.to_string())),
            (":now".to_string(), n(now)),
            (":keep".to_string(), n(keep_until)),
            (":ttl".to_string(), n(keep_until / 1000)),
        ]);
        let items = ids
            .iter()
            .map(|id| {
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(id)))
                    .update_expression("SET messageId = :m, expiresAtMs = :keep, #ttl = :ttl")
                    .condition_expression(
                        "sessionId = :s AND ((attribute_not_exists(messageId) AND expiresAtMs > :now) OR messageId = :m)",
                    )
                    .expression_attribute_names("#ttl", "ttl")
                    .set_expression_attribute_values(Some(values.clone()))
                    .build()
                    .map(|u| TransactWriteItem::builder().update(u).build())
                    .map_err(err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.transact(items).await
    }

    async fn release_attachments(
        &self,
        ids: &[AttachmentId],
        message: &MessageId,
    ) -> Result<(), StoreError> {
        for id in ids {
            let Some(a) = self.get_attachment(id).await? else {
                continue;
            };
            if a.message_id != Some(*message) {
                continue;
            }
            let expires = a.created_at + ATTACHMENT_TTL_MS;
            let r = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(id)))
                .update_expression("REMOVE messageId SET expiresAtMs = :e, #ttl = :ttl")
                .condition_expression("messageId = :m")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":e", n(expires))
                .expression_attribute_values(":ttl", n(expires / 1000))
                .expression_attribute_values(":m", AttributeValue::S(message.to_string()))
                .send()
                .await;
            if let Err(e) = r {
                match e.into_service_error() {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(_) => {}
                    other => return Err(sdk_err(other)),
                }
            }
        }
        Ok(())
    }

    async fn stale_attachments(
        &self,
        _before: Millis,
        _limit: u32,
    ) -> Result<Vec<Attachment>, StoreError> {
        // The item's TTL and the bucket's lifecycle rule delete them; nothing scans.
        Ok(Vec::new())
    }

    async fn delete_attachment(&self, id: &AttachmentId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .send()
            .await
            .map_err(|e| sdk_err(e.into_service_error()))?;
        Ok(())
    }
}
