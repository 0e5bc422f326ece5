//! Rate-limit buckets in the table.

use super::DynamoStore;
use super::item::*;
use async_trait::async_trait;
use chat_core::model::Millis;
use chat_core::ports::StoreError;
use chat_core::rate::{Limiter, Rate};

/// Rate-limit buckets (see [`chat_core::rate`]) as items `RATE#<key>` holding the bucket's
/// theoretical arrival time `tat` (ms). A take is one conditional `UpdateItem` in the usual
/// cases: a full bucket (no item, or its `tat` has passed) or one with a token left. Only a
/// refusal reads the item, to say how long to wait; a refusal writes nothing.
#[async_trait]
impl Limiter for DynamoStore {
    async fn take(&self, key: &str, now: Millis, rate: Rate) -> Result<Option<Millis>, StoreError> {
        let (interval, tolerance) = (rate.interval(), rate.tolerance());
        let limit = now.saturating_add(tolerance);
        // The bucket is full again at its tat, at most `limit + interval`: it may go then.
        let ttl = limit.saturating_add(interval) / 1000 + 1;
        let update = |expression: &str, condition: &str| {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(format!("RATE#{key}"), "RATE")))
                .update_expression(expression)
                .condition_expression(condition)
                .expression_attribute_names("#tat", "tat")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":ttl", n(ttl))
        };
        for _ in 0..3 {
            let full = update(
                "SET #tat = :next, #ttl = :ttl",
                "attribute_not_exists(#tat) OR #tat < :now",
            )
            .expression_attribute_values(":next", n(now.saturating_add(interval)))
            .expression_attribute_values(":now", n(now));
            if conditional(full.send().await)? {
                return Ok(None);
            }
            let in_use = update(
                "SET #tat = #tat + :interval, #ttl = :ttl",
                "#tat BETWEEN :now AND :limit",
            )
            .expression_attribute_values(":interval", n(interval))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":limit", n(limit));
            if conditional(in_use.send().await)? {
                return Ok(None);
            }
            let tat = self
                .get(format!("RATE#{key}"), "RATE")
                .await?
                .and_then(|item| get_n::<Millis>(&item, "tat"));
            match tat {
                Some(tat) if tat > limit => return Ok(Some(tat - limit)),
                // The bucket changed between the calls: try again.
                _ => continue,
            }
        }
        Err(StoreError(
            "rate limit update kept conflicting with concurrent takes".into(),
        ))
    }
}

/// `true` when a conditional update was applied, `false` when its condition failed.
fn conditional<T, R>(
    result: Result<
        T,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
            R,
        >,
    >,
) -> Result<bool, StoreError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
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
