//! The one write that goes backwards: a redriven message set back to `received`, for
//! [`crate::redrive`] only (the service's statuses only ever move forward).

use super::DynamoStore;
use super::item::*;
use aws_sdk_dynamodb::types::AttributeValue;
use chat_core::model::{Message, MessageStatus};
use chat_core::ports::StoreError;

impl DynamoStore {
    /// Sets `message` (found by its session, id and `seq`) back to `received`, unless it was
    /// answered meanwhile. `true` when it was reset (or already `received`).
    pub async fn reset_to_received(&self, message: &Message) -> Result<bool, StoreError> {
        let v = |st: MessageStatus| AttributeValue::S(st.as_str().to_string());
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(session_pk(&message.session_id)))
            .key("sk", s(msg_sk(message.seq)))
            .update_expression("SET #st = :received")
            .condition_expression("msgId = :id AND #st IN (:received, :dispatched, :failed)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":id", s(message.id.to_string()))
            .expression_attribute_values(":received", v(MessageStatus::Received))
            .expression_attribute_values(":dispatched", v(MessageStatus::Dispatched))
            .expression_attribute_values(":failed", v(MessageStatus::Failed))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_err(e)),
        }
    }
}
