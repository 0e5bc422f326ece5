//! The [`Store`] on the table: one partition per session, appends in one conditional
//! transaction, reads by key or query, never a scan.

use super::DynamoStore;
use super::item::*;
use super::{APPEND_TRIES, backoff};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue, Select, TransactWriteItem, Update};
use chat_core::model::{
    AgentConnection, CannedReply, Connection, InboxQuery, InboxView, Message, MessageChange,
    MessageId, MessageStatus, Millis, Mode, ModeState, NewMessage, Page, PageQuery, Role, Session,
    SessionId,
};
use chat_core::ports::{Appended, CannedWrite, Store, StoreError};
use std::collections::HashMap;

#[async_trait]
impl Store for DynamoStore {
    async fn create_session(&self, x: &Session) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            ("pk".to_string(), s(session_pk(&x.id))),
            ("sk".to_string(), s("SESSION")),
            ("createdAt".to_string(), n(x.created_at)),
            ("expiresAtMs".to_string(), n(x.expires_at)),
            ("lastSeq".to_string(), n(x.last_seq)),
            ("readUpTo".to_string(), n(x.read_up_to)),
            ("ttl".to_string(), n(items_ttl(x.expires_at))),
        ]);
        if let Some(u) = &x.user_id {
            item.insert("userId".into(), s(u.clone()));
        }
        if let Some(t) = &x.title {
            item.insert("title".into(), s(t.clone()));
        }
        if let Some(m) = &x.metadata {
            let json = serde_json::Value::Object(m.clone()).to_string();
            item.insert("metadata".into(), s(json));
        }
        let (fields, _) = mode_fields(&x.id, &x.mode, x.updated_at);
        item.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v)));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn get_session(
        &self,
        id: &SessionId,
        now: Millis,
    ) -> Result<Option<Session>, StoreError> {
        match self.get(session_pk(id), "SESSION").await? {
            Some(item) => Ok(Some(session_of(&item)?).filter(|s| s.expires_at > now)),
            None => Ok(None),
        }
    }

    async fn append_message(&self, m: NewMessage) -> Result<Option<Appended>, StoreError> {
        let pk = session_pk(&m.session_id);
        for try_no in 0..APPEND_TRIES {
            let Some(item) = self.get(pk.clone(), "SESSION").await? else {
                return Ok(None);
            };
            let session = session_of(&item)?;
            if session.expires_at <= m.created_at {
                return Ok(None);
            }
            // The retention slides with the activity; the items' `ttl` follows with headroom.
            let expires_at = session.slid_expiry(m.created_at);
            let current_ttl: i64 = get_n(&item, "ttl").unwrap_or(0);
            let ttl = if expires_at / 1000 >= current_ttl {
                items_ttl(expires_at)
            } else {
                current_ttl
            };
            let mode = session.mode.clone();
            if m.open_only && mode.mode == Mode::Closed {
                // A repeat of a message stored before it closed is still answered.
                if let Some(key) = m.idempotency_key.as_deref()
                    && let Some(message) = self.by_idempotency_key(&m.session_id, key).await?
                {
                    return Ok(Some(Appended {
                        message,
                        created: false,
                        mode,
                        retry_after: None,
                    }));
                }
                return Ok(Some(Appended {
                    message: m.with_seq(0),
                    created: false,
                    mode,
                    retry_after: None,
                }));
            }
            // The session's rate-limit bucket, taken in the append's own update (the
            // condition on `lastSeq` pins it as read).
            let mut tat = None;
            if let Some(limit) = m.limit {
                let attr = tat_attribute(limit.bucket);
                match chat_core::rate::gcra(get_n(&item, attr), m.created_at, limit.rate) {
                    Ok(t) => tat = Some((attr, t)),
                    Err(wait) => {
                        // A repeat is answered even from an empty bucket.
                        let key = m.idempotency_key.as_deref();
                        if let Some(key) = key
                            && let Some(message) =
                                self.by_idempotency_key(&m.session_id, key).await?
                        {
                            return Ok(Some(Appended {
                                message,
                                created: false,
                                mode,
                                retry_after: None,
                            }));
                        }
                        return Ok(Some(Appended {
                            message: m.with_seq(0),
                            created: false,
                            mode,
                            retry_after: Some(wait),
                        }));
                    }
                }
            }
            let last = session.last_seq;
            let next = last + 1;
            // Activity never moves back; the condition on it (and on `lastSeq`) makes a
            // change by another writer since the read a retry.
            let updated = session.updated_at.max(m.created_at);
            let mut condition =
                "lastSeq = :last AND expiresAtMs > :now AND (attribute_not_exists(updatedAt) OR updatedAt = :pu)"
                    .to_string();
            if m.open_only {
                condition.push_str(" AND (attribute_not_exists(#m) OR #m <> :closed)");
            }
            let title = (m.role == Role::User && session.title.is_none())
                .then(|| chat_core::model::title_of(&m.content));
            let mut set = "SET lastSeq = :next, updatedAt = :u, activity = :act, expiresAtMs = :exp, #ttl = :ttl".to_string();
            if title.is_some() {
                set.push_str(", #title = if_not_exists(#title, :title)");
            }
            if tat.is_some() {
                set.push_str(", #tat = :tat");
            }
            let mut bump = Update::builder()
                .table_name(&self.table)
                .set_key(Some(Self::key(pk.clone(), "SESSION")))
                .update_expression(set)
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":exp", n(expires_at))
                .expression_attribute_values(":ttl", n(ttl))
                .condition_expression(condition)
                .expression_attribute_values(":next", n(next))
                .expression_attribute_values(":last", n(last))
                .expression_attribute_values(":now", n(m.created_at))
                .expression_attribute_values(":pu", n(session.updated_at))
                .expression_attribute_values(":u", n(updated))
                .expression_attribute_values(":act", s(time_key(updated, &m.session_id)));
            if let Some(t) = title {
                bump = bump
                    .expression_attribute_names("#title", "title")
                    .expression_attribute_values(":title", s(t));
            }
            if let Some((attr, t)) = tat {
                bump = bump
                    .expression_attribute_names("#tat", attr)
                    .expression_attribute_values(":tat", n(t));
            }
            if m.open_only {
                bump = bump
                    .expression_attribute_names("#m", "mode")
                    .expression_attribute_values(":closed", s(Mode::Closed.as_str()));
            }
            let bump = bump.build().map_err(err)?;
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(message_item(&m, next, ttl)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(err)?;
            let mut items = vec![
                TransactWriteItem::builder().update(bump).build(),
                TransactWriteItem::builder().put(put).build(),
            ];
            if let Some(key) = &m.idempotency_key {
                let idem = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(HashMap::from([
                        ("pk".to_string(), s(pk.clone())),
                        ("sk".to_string(), s(format!("IDEM#{key}"))),
                        ("seq".to_string(), n(next)),
                        ("ttl".to_string(), n(ttl)),
                    ])))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(err)?;
                items.push(TransactWriteItem::builder().put(idem).build());
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            match result {
                Ok(_) => {
                    if ttl > current_ttl {
                        self.extend_ttl(&m.session_id, ttl).await?;
                    }
                    return Ok(Some(Appended {
                        message: m.with_seq(next),
                        created: true,
                        mode,
                        retry_after: None,
                    }));
                }
                Err(e) => {
                    let service = e.into_service_error();
                    let reasons: Vec<String> = match &service {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => c
                            .cancellation_reasons()
                            .iter()
                            .map(|r| r.code().unwrap_or("None").to_string())
                            .collect(),
                        _ => return Err(sdk_err(service)),
                    };
                    if reasons
                        .get(2)
                        .is_some_and(|r| r == "ConditionalCheckFailed")
                    {
                        let key = m.idempotency_key.as_deref().unwrap_or_default();
                        if let Some(message) = self.by_idempotency_key(&m.session_id, key).await? {
                            return Ok(Some(Appended {
                                message,
                                created: false,
                                mode,
                                retry_after: None,
                            }));
                        }
                    }
                    // Another writer took this seq (or a transaction conflicted): read again.
                    backoff(try_no).await;
                }
            }
        }
        Err(StoreError(
            "append kept conflicting with concurrent writers".into(),
        ))
    }

    async fn get_message(
        &self,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        self.message_item_by_id(session, id)
            .await?
            .map(|i| message_of(&i))
            .transpose()
    }

    async fn list_messages(&self, session: &SessionId, q: PageQuery) -> Result<Page, StoreError> {
        let lo = q.after.map_or(Some(1), |a| a.checked_add(1));
        let hi = q.before.map_or(Some(u64::MAX), |b| b.checked_sub(1));
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(Page::default());
        };
        if lo > hi || q.limit == 0 {
            return Ok(Page::default());
        }
        let forward = q.after.is_some();
        let want = q.limit as usize + 1;
        let mut items: Vec<Item> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(session_pk(session)))
                .expression_attribute_values(":lo", s(msg_sk(lo)))
                .expression_attribute_values(":hi", s(msg_sk(hi)))
                .scan_index_forward(forward)
                .limit((want - items.len()) as i32)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_err)?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if items.len() >= want || start.is_none() {
                break;
            }
        }
        let has_more = items.len() > q.limit as usize;
        items.truncate(q.limit as usize);
        let mut messages = items
            .iter()
            .map(message_of)
            .collect::<Result<Vec<_>, _>>()?;
        if !forward {
            messages.reverse();
        }
        Ok(Page { messages, has_more })
    }

    async fn change_message(
        &self,
        message: &Message,
        change: &MessageChange,
        at: Millis,
    ) -> Result<Option<Message>, StoreError> {
        // One conditional UpdateItem on the message's key (the caller holds it). `changedAt`
        // is written only here, so the `byChange` index holds only changed messages.
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(session_pk(&message.session_id)))
            .key("sk", s(msg_sk(message.seq)))
            .condition_expression("msgId = :id AND attribute_not_exists(deletedAt)")
            .expression_attribute_values(":id", s(message.id.to_string()))
            .expression_attribute_values(":at", n(at))
            .return_values(ReturnValue::AllNew);
        req = match change {
            MessageChange::Edit(content) => req
                .update_expression("SET content = :c, editedAt = :at, changedAt = :at")
                .expression_attribute_values(":c", s(content.clone())),
            MessageChange::Delete => req
                .update_expression(
                    "SET content = :c, deletedAt = :at, changedAt = :at REMOVE #data, metadata, attachments",
                )
                .expression_attribute_names("#data", "data")
                .expression_attribute_values(":c", s("")),
        };
        updated_message(req.send().await)
    }

    async fn list_changed(
        &self,
        session: &SessionId,
        after: Millis,
        limit: u32,
    ) -> Result<Page, StoreError> {
        // The sparse index `byChange` (hash `pk`, range `changedAt`): only edited or deleted
        // messages are in it. Eventually consistent, as every GSI read.
        let want = limit as usize + 1;
        let mut items: Vec<Item> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("byChange")
                .key_condition_expression("pk = :pk AND changedAt > :after")
                .expression_attribute_values(":pk", s(session_pk(session)))
                .expression_attribute_values(":after", n(after))
                .limit((want - items.len()) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_err)?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if items.len() >= want || start.is_none() {
                break;
            }
        }
        let mut messages = items
            .iter()
            .map(message_of)
            .collect::<Result<Vec<_>, _>>()?;
        messages.sort_by_key(|m| (m.updated_at, m.seq));
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        Ok(Page { messages, has_more })
    }

    async fn advance_status(
        &self,
        message: &Message,
        status: MessageStatus,
    ) -> Result<Option<Message>, StoreError> {
        // The caller holds the message, so its key is known: one conditional UpdateItem.
        let lower: Vec<MessageStatus> = [
            MessageStatus::Received,
            MessageStatus::Dispatched,
            MessageStatus::Failed,
            MessageStatus::Answered,
            MessageStatus::Delivered,
        ]
        .into_iter()
        .filter(|s| s.rank() < status.rank())
        .collect();
        if lower.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = (0..lower.len()).map(|i| format!(":l{i}")).collect();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(session_pk(&message.session_id)))
            .key("sk", s(msg_sk(message.seq)))
            .update_expression("SET #st = :new")
            .condition_expression(format!("msgId = :id AND #st IN ({})", names.join(", ")))
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":id", s(message.id.to_string()))
            .expression_attribute_values(":new", s(status.as_str()))
            .return_values(ReturnValue::AllNew);
        for (name, st) in names.iter().zip(&lower) {
            req = req.expression_attribute_values(name, s(st.as_str()));
        }
        updated_message(req.send().await)
    }

    async fn mark_read(
        &self,
        session: &SessionId,
        up_to: u64,
    ) -> Result<Option<Session>, StoreError> {
        let Some(item) = self.get(session_pk(session), "SESSION").await? else {
            return Ok(None);
        };
        let mut current = session_of(&item)?;
        let target = current.read_up_to.max(up_to.min(current.last_seq));
        if target == current.read_up_to {
            return Ok(Some(current));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(session_pk(session), "SESSION")))
            .update_expression("SET readUpTo = :t")
            .condition_expression("readUpTo < :t")
            .expression_attribute_values(":t", n(target))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes.map(|a| session_of(&a)).transpose(),
            // Someone marked further meanwhile: read the winner.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                if let Some(item) = self.get(session_pk(session), "SESSION").await? {
                    current = session_of(&item)?;
                }
                Ok(Some(current))
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    async fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let common = |pk: String, sk: String| {
            HashMap::from([
                ("pk".to_string(), s(pk)),
                ("sk".to_string(), s(sk)),
                ("connectedAt".to_string(), n(c.connected_at)),
                ("expiresAtMs".to_string(), n(c.expires_at)),
                ("ttl".to_string(), n(c.expires_at / 1000)),
            ])
        };
        let mut fan_out = common(session_pk(&c.session_id), format!("CONN#{}", c.id));
        let mut lookup = common(format!("CONN#{}", c.id), "CONN".into());
        if c.merged {
            // Only when set: connections of older clients keep today's items.
            fan_out.insert("v".into(), n(2));
            lookup.insert("v".into(), n(2));
        }
        lookup.insert("sessionId".into(), s(c.session_id.to_string()));
        let puts = [fan_out, lookup]
            .into_iter()
            .map(|item| {
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .build()
                    .map(|p| TransactWriteItem::builder().put(p).build())
                    .map_err(err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .transact_write_items()
            .set_transact_items(Some(puts))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let Some(item) = self.get(format!("CONN#{id}"), "CONN").await? else {
            return Ok(None);
        };
        let session = SessionId(ulid(req_s(&item, "sessionId")?)?);
        Ok(Some(connection_of(&item, session, id)?))
    }

    async fn delete_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let deletes = [
            (session_pk(&c.session_id), format!("CONN#{}", c.id)),
            (format!("CONN#{}", c.id), "CONN".into()),
        ]
        .into_iter()
        .map(|(pk, sk)| {
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(Self::key(pk, &sk)))
                .build()
                .map(|d| TransactWriteItem::builder().delete(d).build())
                .map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
        self.client
            .transact_write_items()
            .set_transact_items(Some(deletes))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :conn)")
            .expression_attribute_values(":pk", s(session_pk(session)))
            .expression_attribute_values(":conn", s("CONN#"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(sdk_err)?;
        items
            .iter()
            .map(|item| {
                let id = req_s(item, "sk")?.trim_start_matches("CONN#").to_string();
                connection_of(item, *session, &id)
            })
            .collect()
    }

    async fn find_by_key(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<Message>, StoreError> {
        self.by_idempotency_key(session, key).await
    }

    async fn count_unread(&self, session: &SessionId, after: u64) -> Result<u64, StoreError> {
        let Some(lo) = after.checked_add(1) else {
            return Ok(0);
        };
        let mut count = 0u64;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .filter_expression("#role <> :user")
                .expression_attribute_names("#role", "role")
                .expression_attribute_values(":pk", s(session_pk(session)))
                .expression_attribute_values(":lo", s(msg_sk(lo)))
                .expression_attribute_values(":hi", s(msg_sk(u64::MAX)))
                .expression_attribute_values(":user", s("user"))
                .select(Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_err)?;
            count += out.count.max(0) as u64;
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }

    async fn set_mode(
        &self,
        session: &SessionId,
        expected: &ModeState,
        next: &ModeState,
        now: Millis,
    ) -> Result<Option<Session>, StoreError> {
        // Read first: the retention slides by as much as the activity moves, so the write is
        // conditional on the activity read too (another writer moving it means a retry).
        for try_no in 0..APPEND_TRIES {
            let Some(item) = self.get(session_pk(session), "SESSION").await? else {
                return Ok(None);
            };
            let read = session_of(&item)?;
            if read.expires_at <= now
                || read.mode.mode != expected.mode
                || read.mode.holder() != expected.holder()
            {
                return Ok(None);
            }
            let current_ttl: i64 = get_n(&item, "ttl").unwrap_or(0);
            let expires_at = read.slid_expiry(now);
            let ttl = if expires_at / 1000 >= current_ttl {
                items_ttl(expires_at)
            } else {
                current_ttl
            };
            let had_updated = item.contains_key("updatedAt");
            match self
                .set_mode_if(
                    session,
                    expected,
                    next,
                    now,
                    (read.updated_at, had_updated),
                    (expires_at, ttl),
                )
                .await?
            {
                Some(Some(s)) => {
                    if ttl > current_ttl {
                        self.extend_ttl(session, ttl).await?;
                    }
                    return Ok(Some(s));
                }
                Some(None) => backoff(try_no).await,
                None => return Ok(None),
            }
        }
        Err(StoreError(
            "a change of mode kept conflicting with concurrent writers".into(),
        ))
    }

    async fn list_inbox(&self, q: &InboxQuery) -> Result<Vec<Session>, StoreError> {
        // Each view is a sparse global index: only sessions in that view have its keys.
        let (index, pk_name, pk, sk_name, forward) = match &q.view {
            InboxView::Waiting => ("byWaiting", "waitPk", "WAITING".to_string(), "waitSk", true),
            InboxView::Open => (
                "byActivity",
                "openPk",
                "OPEN".to_string(),
                "activity",
                false,
            ),
            InboxView::Mine(a) => ("byHolder", "heldBy", a.clone(), "activity", false),
        };
        let mut key = format!("{pk_name} = :pk");
        if q.after.is_some() {
            key.push_str(&format!(
                " AND {sk_name} {} :after",
                if forward { ">" } else { "<" }
            ));
        }
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(&key)
                .filter_expression("expiresAtMs > :now")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":now", n(q.now))
                .scan_index_forward(forward)
                .limit((q.limit as usize - found.len()).max(1) as i32)
                .set_exclusive_start_key(start);
            if let Some((t, id)) = q.after {
                req = req.expression_attribute_values(":after", s(time_key(t, &id)));
            }
            let out = req.send().await.map_err(sdk_err)?;
            for item in out.items.unwrap_or_default() {
                found.push(session_of(&item)?);
            }
            start = out.last_evaluated_key;
            if found.len() >= q.limit as usize || start.is_none() {
                break;
            }
        }
        found.truncate(q.limit as usize);
        Ok(found)
    }

    async fn list_canned(&self) -> Result<Vec<CannedReply>, StoreError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :reply)")
            .expression_attribute_values(":pk", s(CANNED_PK))
            .expression_attribute_values(":reply", s("REPLY#"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(sdk_err)?;
        let mut all = items.iter().map(canned_of).collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| a.shortcut.cmp(&b.shortcut));
        Ok(all)
    }

    async fn create_canned(&self, r: &CannedReply) -> Result<bool, StoreError> {
        // The reply and its shortcut's claim, both only if absent: a used shortcut cancels.
        let items = vec![
            self.put_if_absent(canned_item(r))?,
            self.put_if_absent(self.shortcut_item(&r.shortcut, &r.id))?,
        ];
        self.transact(items).await
    }

    async fn update_canned(&self, r: &CannedReply) -> Result<CannedWrite, StoreError> {
        let Some(old) = self
            .get(CANNED_PK.into(), &format!("REPLY#{}", r.id))
            .await?
        else {
            return Ok(CannedWrite::NotFound);
        };
        let old = canned_of(&old)?;
        let mut items = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(canned_item(r)))
                        .condition_expression("shortcut = :old")
                        .expression_attribute_values(":old", s(old.shortcut.clone()))
                        .build()
                        .map_err(err)?,
                )
                .build(),
        ];
        if old.shortcut != r.shortcut {
            items.push(self.put_if_absent(self.shortcut_item(&r.shortcut, &r.id))?);
            items.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(Self::key(
                                CANNED_PK.into(),
                                &format!("SHORTCUT#{}", old.shortcut),
                            )))
                            .build()
                            .map_err(err)?,
                    )
                    .build(),
            );
        }
        Ok(if self.transact(items).await? {
            CannedWrite::Written
        } else if self
            .get(CANNED_PK.into(), &format!("REPLY#{}", r.id))
            .await?
            .is_none()
        {
            CannedWrite::NotFound
        } else {
            CannedWrite::ShortcutTaken
        })
    }

    async fn delete_canned(&self, id: &str) -> Result<bool, StoreError> {
        let Some(old) = self.get(CANNED_PK.into(), &format!("REPLY#{id}")).await? else {
            return Ok(false);
        };
        let old = canned_of(&old)?;
        let delete = |sk: String| {
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(Self::key(CANNED_PK.into(), &sk)))
                .build()
                .map(|d| TransactWriteItem::builder().delete(d).build())
                .map_err(err)
        };
        self.transact(vec![
            delete(format!("REPLY#{id}"))?,
            delete(format!("SHORTCUT#{}", old.shortcut))?,
        ])
        .await
    }

    async fn put_agent_connection(&self, c: &AgentConnection) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(agent_connection_item(c)))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn get_agent_connection(&self, id: &str) -> Result<Option<AgentConnection>, StoreError> {
        self.get(AGENTS_PK.into(), &format!("CONN#{id}"))
            .await?
            .map(|i| agent_connection_of(&i))
            .transpose()
    }

    async fn delete_agent_connection(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(AGENTS_PK.into(), &format!("CONN#{id}"))))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// One Query on the agents' partition.
    async fn list_agent_connections(&self) -> Result<Vec<AgentConnection>, StoreError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(AGENTS_PK))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(sdk_err)?;
        items.iter().map(agent_connection_of).collect()
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        after: Option<(Millis, SessionId)>,
        limit: u32,
        now: Millis,
    ) -> Result<Vec<Session>, StoreError> {
        // The sparse index `byUser` (hash `userId`: only user sessions have it, range
        // `activity`), newest activity first.
        let mut key = "userId = :u".to_string();
        if after.is_some() {
            key.push_str(" AND activity < :after");
        }
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("byUser")
                .key_condition_expression(&key)
                .filter_expression("expiresAtMs > :now")
                .expression_attribute_values(":u", s(user_id))
                .expression_attribute_values(":now", n(now))
                .scan_index_forward(false)
                .limit((limit as usize - found.len()).max(1) as i32)
                .set_exclusive_start_key(start);
            if let Some((t, id)) = after {
                req = req.expression_attribute_values(":after", s(time_key(t, &id)));
            }
            let out = req.send().await.map_err(sdk_err)?;
            for item in out.items.unwrap_or_default() {
                found.push(session_of(&item)?);
            }
            start = out.last_evaluated_key;
            if found.len() >= limit as usize || start.is_none() {
                break;
            }
        }
        found.truncate(limit as usize);
        Ok(found)
    }

    async fn erase_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        // Every item of the partition (the session, messages, keys, connections), and the
        // lookup side of each connection; the indexes follow their items.
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(session_pk(id)))
            .projection_expression("pk, sk")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(sdk_err)?;
        let mut keys = Vec::new();
        for item in &items {
            let sk = req_s(item, "sk")?.to_string();
            if let Some(conn) = sk.strip_prefix("CONN#") {
                keys.push(Self::key(format!("CONN#{conn}"), "CONN"));
            }
            keys.push(Self::key(session_pk(id), &sk));
        }
        let found = !keys.is_empty();
        self.delete_all(keys).await?;
        Ok(found)
    }
}

impl DynamoStore {
    fn shortcut_item(&self, shortcut: &str, id: &str) -> Item {
        HashMap::from([
            ("pk".to_string(), s(CANNED_PK)),
            ("sk".to_string(), s(format!("SHORTCUT#{shortcut}"))),
            ("replyId".to_string(), s(id)),
        ])
    }

    fn put_if_absent(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map(|p| TransactWriteItem::builder().put(p).build())
            .map_err(err)
    }

    /// Runs a transaction; `false` when a condition cancelled it.
    pub(super) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(_) => Ok(false),
                other => Err(sdk_err(other)),
            },
        }
    }
}

impl DynamoStore {
    /// The conditional write of [`Store::set_mode`], with the activity and retention as
    /// read: `None` when the session is gone or its mode or holder differ (no retry),
    /// `Some(None)` when only the activity moved meanwhile (retry).
    #[allow(clippy::too_many_arguments)]
    async fn set_mode_if(
        &self,
        session: &SessionId,
        expected: &ModeState,
        next: &ModeState,
        now: Millis,
        (read_updated, had_updated): (Millis, bool),
        (expires_at, ttl): (Millis, i64),
    ) -> Result<Option<Option<Session>>, StoreError> {
        let (mut set, remove) = mode_fields(session, next, now);
        set.push(("expiresAtMs", n(expires_at)));
        set.push(("ttl", n(ttl)));
        let mut sets = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(session_pk(session), "SESSION")))
            .expression_attribute_names("#m", "mode")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":em", s(expected.mode.as_str()))
            .return_values(ReturnValue::AllNew);
        for (i, (k, v)) in set.into_iter().enumerate() {
            let (name, value) = (format!("#a{i}"), format!(":a{i}"));
            sets.push(format!("{name} = {value}"));
            req = req
                .expression_attribute_names(&name, k)
                .expression_attribute_values(value, v);
        }
        let mut update = format!("SET {}", sets.join(", "));
        if !remove.is_empty() {
            let mut names = Vec::new();
            for (i, k) in remove.iter().enumerate() {
                let name = format!("#r{i}");
                req = req.expression_attribute_names(&name, *k);
                names.push(name);
            }
            update.push_str(&format!(" REMOVE {}", names.join(", ")));
        }
        // The compare: the mode (absent is `bot`) and the holder.
        let mode_is = if expected.mode == Mode::Bot {
            "(attribute_not_exists(#m) OR #m = :em)"
        } else {
            "#m = :em"
        };
        let holder_is = match expected.holder() {
            Some(h) => {
                req = req.expression_attribute_values(":eh", s(h));
                "agentId = :eh"
            }
            None => "attribute_not_exists(agentId)",
        };
        let activity_is = if had_updated {
            req = req.expression_attribute_values(":pu", n(read_updated));
            "updatedAt = :pu"
        } else {
            "attribute_not_exists(updatedAt)"
        };
        let result = req
            .update_expression(update)
            .condition_expression(format!(
                "expiresAtMs > :now AND {mode_is} AND {holder_is} AND {activity_is}"
            ))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(out.attributes.map(|a| session_of(&a)).transpose()?)),
            // The mode, the holder or the activity changed since the read: read again.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Some(None))
            }
            Err(e) => Err(sdk_err(e)),
        }
    }
}

impl DynamoStore {
    /// Raises the `ttl` of every item of a session's partition (but its connections, which
    /// expire with their token) to `ttl`: the retention moved past the headroom.
    async fn extend_ttl(&self, session: &SessionId, ttl: i64) -> Result<(), StoreError> {
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression("#ttl < :ttl AND NOT begins_with(sk, :conn)")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":pk", s(session_pk(session)))
                .expression_attribute_values(":ttl", n(ttl))
                .expression_attribute_values(":conn", s("CONN#"))
                .projection_expression("pk, sk")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_err)?;
            for item in page.items.unwrap_or_default() {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::key(session_pk(session), req_s(&item, "sk")?)))
                    .update_expression("SET #ttl = :ttl")
                    .condition_expression("attribute_exists(pk) AND #ttl < :ttl")
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":ttl", n(ttl))
                    .send()
                    .await
                    .map_or_else(
                        |e| match e.as_service_error() {
                            Some(e) if e.is_conditional_check_failed_exception() => Ok(()),
                            _ => Err(sdk_err(e)),
                        },
                        |_| Ok(()),
                    )?;
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(());
            }
        }
    }

    /// Deletes items by key, 25 to a `BatchWriteItem`, until none is left unprocessed.
    async fn delete_all(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        for chunk in keys.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            for try_no in 0..APPEND_TRIES {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(sdk_err)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                backoff(try_no).await;
            }
            if !requests.is_empty() {
                return Err(StoreError("deletes kept coming back unprocessed".into()));
            }
        }
        Ok(())
    }
}

/// The session item's attribute holding a rate-limit bucket's TAT (ms).
fn tat_attribute(bucket: chat_core::model::SessionBucket) -> &'static str {
    match bucket {
        chat_core::model::SessionBucket::Messages => "tatMessages",
        chat_core::model::SessionBucket::Webhook => "tatWebhook",
    }
}

/// The message a conditional `UpdateItem` returned (`ReturnValues` ALL_NEW), or `None` when
/// its condition failed (no such message, or not in a state the update allows).
fn updated_message(
    result: Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        >,
    >,
) -> Result<Option<Message>, StoreError> {
    match result {
        Ok(out) => out.attributes.map(|a| message_of(&a)).transpose(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_err(e)),
    }
}
