//! Sending a user message: validated, answered from its idempotency key before any limit,
//! rate-limited, stored, queued for n8n with its reply deadline, acknowledged and pushed.

use super::{SendInput, SessionRef, ack_of};
use crate::events::ServerEvent;
use crate::model::{
    AppendLimit, AttachmentId, Connection, DispatchJob, Message, MessageId, MessageStatus,
    MessageType, Millis, NewMessage, Role, SessionBucket,
};
use crate::rate::Rate;
use crate::service::ChatService;
use crate::{ChatError, rate, validate};

impl ChatService {
    /// Stores a user message, queues it for n8n and pushes it to the session's connections
    /// (with an `ack` first to `origin`, the sending connection, if any; one opened with
    /// `v=2` gets only the `ack`, carrying the message).
    ///
    /// A repeat with the same `clientMessageId` returns the stored message (and queues it
    /// again if it never left `received`) without counting against the rate limit; the same
    /// id with other content (or other attachments) is a 409.
    ///
    /// Named attachments are checked and claimed before the message is stored, all or none;
    /// a message that is then not stored releases them, so nothing is half-stored.
    pub async fn send(
        &self,
        session: SessionRef,
        input: SendInput,
        origin: Option<&Connection>,
    ) -> Result<Message, ChatError> {
        let limits = &self.config.limits;
        let attachment_ids =
            self.attachment_ids(&input.attachments, &input.content, limits.max_content_chars)?;
        if let Some(id) = &input.client_message_id {
            validate::key("clientMessageId", id)?;
        }
        if let Some(m) = &input.metadata {
            validate::object_size("metadata", m, limits.max_metadata_bytes)?;
        }
        // A client's retry of a stored message is answered by the append itself (its key is
        // used), before the limit: no lookup before a first send.
        let key = input
            .client_message_id
            .as_ref()
            .map(|c| format!("client#{c}"));
        let now = self.now();
        let new = NewMessage {
            id: MessageId::new(),
            session_id: session.id,
            role: Role::User,
            name: None,
            kind: MessageType::Text,
            idempotency_key: key,
            content: input.content,
            data: None,
            metadata: input.metadata,
            status: MessageStatus::Received,
            created_at: now,
            reply_to: None,
            client_message_id: input.client_message_id,
            agent_id: None,
            attachments: Vec::new(),
            open_only: true,
            // Counted in the append's own write; a repeat counts against nothing.
            limit: Some(AppendLimit {
                bucket: SessionBucket::Messages,
                rate: Rate::per(limits.messages_per_minute, 60_000),
            }),
        };
        let content = new.content.clone();
        let (message, paused) = self
            .locks
            .run(session.id, async {
                let mut new = new;
                new.attachments = match self
                    .claim_attachments(&session.id, &attachment_ids, &new.id, session.expires_at)
                    .await
                {
                    Ok(list) => list,
                    Err(e) => {
                        // A concurrent repeat may have stored this message with them.
                        if let Some(key) = &new.idempotency_key
                            && let Some(stored) = self.store().find_by_key(&session.id, key).await?
                        {
                            return self
                                .repeated_send(stored, &content, &attachment_ids, origin)
                                .await
                                .map(|m| (m, false));
                        }
                        return Err(e);
                    }
                };
                let id = new.id;
                let appended = match self.store().append_message(new).await {
                    Ok(Some(a)) if a.created => a,
                    other => {
                        // Not stored as this message: its attachments are free again.
                        self.release_attachments(&attachment_ids, &id).await;
                        let appended = other?
                            .ok_or_else(|| ChatError::NotFound("unknown session".into()))?;
                        if let Some(wait) = appended.retry_after {
                            return Err(rate::limited(wait));
                        }
                        if appended.refused() {
                            return Err(ChatError::Conflict(
                                "this conversation is closed; start a new session".into(),
                            ));
                        }
                        // A concurrent repeat won the race to the idempotency key.
                        return self
                            .repeated_send(
                                appended.message,
                                &content,
                                &attachment_ids,
                                origin,
                            )
                            .await
                            .map(|m| (m, false));
                    }
                };
                let message = self.with_urls(appended.message).await;
                crate::metrics::message_stored();
                let mode = appended.mode;
                // While a person is asked for or holds the session, the bot is paused.
                if mode.bot_answers() {
                    self.enqueue(&message).await?;
                }
                let except = self.ack(origin, &message).await;
                tracing::info!(session_id = %session.id, message_id = %message.id, seq = message.seq, mode = mode.mode.as_str(), "message received");
                self.broadcast_held(
                    &session.id,
                    mode.holder(),
                    &[ServerEvent::Message {
                        message: message.clone(),
                    }],
                    except,
                )
                .await;
                Ok((message, !mode.bot_answers()))
            })
            .await?;
        if paused {
            // Agents see the new last message.
            match self.load_session(&session.id).await {
                Ok(s) => self.notify_inbox(&s).await,
                Err(e) => tracing::warn!(error = %e, "inbox event skipped"),
            }
        }
        Ok(message)
    }

    /// A send whose `clientMessageId` is already stored: 409 for other content, else the
    /// stored message (acked again, and queued again if it never left `received`).
    async fn repeated_send(
        &self,
        stored: Message,
        content: &str,
        attachments: &[AttachmentId],
        origin: Option<&Connection>,
    ) -> Result<Message, ChatError> {
        if stored.content != content
            || !stored
                .attachments
                .iter()
                .map(|a| a.id)
                .eq(attachments.iter().copied())
        {
            return Err(ChatError::Conflict(
                "clientMessageId was already used for a different message".into(),
            ));
        }
        if stored.status == MessageStatus::Received {
            self.enqueue(&stored).await?;
        }
        let stored = self.with_urls(stored).await;
        self.ack(origin, &stored).await;
        Ok(stored)
    }

    /// Acknowledges `message` to the connection that sent it: an `ack`, carrying the message
    /// when the connection was opened with `v=2`. Returns that connection's id then (it needs
    /// no `message` frame), else `None`.
    async fn ack<'c>(&self, origin: Option<&'c Connection>, message: &Message) -> Option<&'c str> {
        let origin = origin?;
        let ack = ack_of(message);
        if origin.merged {
            let frame = crate::events::merged_ack(&ack, message);
            self.push_or_forget(origin, &frame).await;
            Some(origin.id.as_str())
        } else {
            self.push_or_forget(origin, &ack.to_frame()).await;
            None
        }
    }

    /// Queues a user message for n8n, with its reply deadline counted from when it was stored.
    async fn enqueue(&self, message: &Message) -> Result<(), ChatError> {
        let timeout = self.config.dispatch.reply_timeout.as_millis() as Millis;
        self.ports
            .queue
            .enqueue(
                DispatchJob::dispatch(message.session_id, message.id).with_seq(message.seq),
                message.created_at.saturating_add(timeout),
            )
            .await?;
        Ok(())
    }
}
