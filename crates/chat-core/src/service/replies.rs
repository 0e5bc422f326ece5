//! n8n's replies (`POST /webhook`): verified, idempotent by event id, reply-to or signature,
//! limited per session, stored once, the user message marked answered, the reply pushed.

use super::WebhookReply;
use super::answers::reply_key;
use crate::events::ServerEvent;
use crate::model::{
    AppendLimit, Message, MessageId, MessageStatus, MessageType, NewMessage, Role, SessionBucket,
    SessionId,
};
use crate::rate::Rate;
use crate::service::ChatService;
use crate::{ChatError, rate, signature, validate};

impl ChatService {
    /// `POST /webhook`: verifies n8n's signature, stores the reply once, marks the user
    /// message answered and pushes the reply.
    ///
    /// Every reply is idempotent: by its `eventId`, else its `replyTo`, else its signature
    /// (so a captured request replayed within the timestamp window stores nothing new). A
    /// repeat returns the stored reply, writes nothing and counts against no limit. Calls are
    /// limited per session; refused calls (no or a bad signature) per `source_ip`.
    pub async fn receive_reply(
        &self,
        source_ip: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Message, ChatError> {
        let now = self.now();
        let limits = &self.config.limits;
        let per_minute = Rate::per(limits.webhooks_per_minute, 60_000);
        validate::body_size(body.len(), limits)?;
        if let Err(refused) = signature::verify(
            self.config.webhook_secret.expose().as_bytes(),
            timestamp,
            signature,
            body,
            now / 1000,
        ) {
            rate::hit(
                self.limiter(),
                "webhook-refused",
                source_ip,
                per_minute,
                now,
            )
            .await?;
            return Err(refused);
        }
        let reply: WebhookReply = validate::parse_json(body)?;
        crate::trace::session(&reply.session_id);
        validate::content(&reply.content, limits.max_reply_chars)?;
        if let Some(e) = &reply.event_id {
            validate::key("eventId", e)?;
        }
        // The session is read by the append (unknown or expired: 404 there); a repeat is
        // answered by the append too (its key is used), before the limit.
        let session = reply.session_id;
        let key = match (&reply.event_id, &reply.reply_to, signature) {
            (Some(e), _, _) => format!("event#{e}"),
            (None, Some(r), _) => reply_key(r),
            (None, None, sig) => format!("sig#{}", sig.unwrap_or_default().trim()),
        };
        // The message replied to, which becomes `answered`.
        let replied = match &reply.reply_to {
            None => None,
            Some(id) => self.store().get_message(&session, id).await?,
        };
        // n8n may have answered in its response to the dispatch: that reply is stored under
        // `reply#<replyTo>` too, so this callback (even with its own `eventId`) repeats it.
        // Looked up only for a message already answered, so a first reply costs no read.
        if let Some(r) = replied
            .as_ref()
            .filter(|r| r.status == MessageStatus::Answered)
            && key != reply_key(&r.id)
            && let Some(stored) = self
                .store()
                .find_by_key(&session, &reply_key(&r.id))
                .await?
        {
            return Ok(stored);
        }
        if reply.reply_to.is_some() && replied.is_none() {
            return Err(ChatError::NotFound(
                "replyTo names no message of this session".into(),
            ));
        }
        let new = NewMessage {
            id: MessageId::new(),
            session_id: session,
            role: Role::Assistant,
            name: None,
            kind: reply.kind.unwrap_or_default(),
            content: reply.content,
            data: reply.data,
            metadata: None,
            status: MessageStatus::Delivered,
            created_at: now,
            reply_to: reply.reply_to,
            client_message_id: None,
            agent_id: None,
            attachments: Vec::new(),
            open_only: false,
            idempotency_key: Some(key),
            // Counted in the append's own write; a repeat counts against nothing.
            limit: Some(AppendLimit {
                bucket: SessionBucket::Webhook,
                rate: per_minute,
            }),
        };
        self.store_reply(&session, new, replied).await
    }

    /// Appends a reply once (by its idempotency key) and pushes it; `replied`, the message
    /// it answers, becomes `answered`. The webhook and n8n's response both store this way.
    ///
    /// A reply of type `handoff` is stored as `text` and asks for a person (bot → waiting;
    /// nothing when the session is not with the bot any more).
    pub(super) async fn store_reply(
        &self,
        session: &SessionId,
        mut new: NewMessage,
        replied: Option<Message>,
    ) -> Result<Message, ChatError> {
        let handoff = new.kind == MessageType::Handoff;
        if handoff {
            new.kind = MessageType::Text;
        }
        let (message, created) = self.locks
            .run(*session, async {
                let appended = self
                    .store()
                    .append_message(new)
                    .await?
                    .ok_or_else(|| ChatError::NotFound("unknown session".into()))?;
                if let Some(wait) = appended.retry_after {
                    return Err(rate::limited(wait));
                }
                let message = appended.message;
                let mut events = Vec::new();
                if appended.created {
                    tracing::info!(session_id = %session, message_id = %message.id, seq = message.seq, "reply stored");
                    events.push(ServerEvent::Message {
                        message: message.clone(),
                    });
                }
                if let Some(original) = replied.filter(|r| message.reply_to == Some(r.id)) {
                    if appended.created {
                        crate::metrics::answered(original.created_at, message.created_at);
                    }
                    events.extend(self.advance(&original, MessageStatus::Answered).await?);
                }
                self.broadcast_held(session, appended.mode.holder(), &events, None)
                    .await;
                Ok::<_, ChatError>((message, appended.created))
            })
            .await?;
        if handoff && created {
            self.bot_handoff(session).await;
        }
        Ok(message)
    }

    /// Moves a message's status forward; returns the `status` event to push, or `None` when
    /// it already was there.
    pub(super) async fn advance(
        &self,
        message: &Message,
        status: MessageStatus,
    ) -> Result<Option<ServerEvent>, ChatError> {
        Ok(self
            .store()
            .advance_status(message, status)
            .await?
            .map(|m| ServerEvent::Status {
                session_id: m.session_id,
                message_id: m.id,
                status: m.status,
            }))
    }
}
