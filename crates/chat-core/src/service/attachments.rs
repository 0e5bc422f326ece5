//! Attachments in the service: asking for an upload, checking and claiming the files a
//! message names (all or none, before the message is stored), minting download URLs when
//! messages go out, and purging attachments no message claimed.

use crate::ChatError;
use crate::attachments::{
    ATTACHMENT_TTL_MS, Attachment, AttachmentInput, AttachmentStore, AttachmentTicket,
    DOWNLOAD_URL_TTL_MS, Files, UPLOAD_URL_TTL_MS,
};
use crate::error::ErrorCode;
use crate::model::{AgentRef, AttachmentId, AttachmentMeta, Message, MessageId, Millis, SessionId};
use crate::rate::{self, Rate};
use crate::service::ChatService;
use std::sync::Arc;

/// The attachment ports of a deployment.
#[derive(Clone)]
pub(super) struct AttachmentPorts {
    records: Arc<dyn AttachmentStore>,
    files: Arc<dyn Files>,
}

/// How many stale attachments one purge deletes at most.
const PURGE_BATCH: u32 = 500;

fn invalid(message: impl Into<String>) -> ChatError {
    ChatError::invalid(ErrorCode::InvalidInput, message)
}

impl ChatService {
    /// Plugs in where attachment records and bytes live. Without it, the attachment routes
    /// answer 404 and messages cannot name attachments.
    pub fn with_attachments(
        mut self,
        records: Arc<dyn AttachmentStore>,
        files: Arc<dyn Files>,
    ) -> Self {
        self.attachments = Some(AttachmentPorts { records, files });
        self
    }

    fn attachment_ports(&self) -> Result<&AttachmentPorts, ChatError> {
        self.attachments
            .as_ref()
            .ok_or_else(|| ChatError::NotFound("attachments are not enabled".into()))
    }

    /// The attachment records, when configured (the upload and download routes of
    /// chat-local read them).
    pub fn attachment_store(&self) -> Option<&dyn AttachmentStore> {
        self.attachments.as_ref().map(|p| &*p.records)
    }

    /// `POST /sessions/{id}/attachments`: checks the declaration, stores a pending record
    /// and returns where to upload the bytes.
    pub async fn create_attachment(
        &self,
        session: &SessionId,
        input: AttachmentInput,
    ) -> Result<AttachmentTicket, ChatError> {
        let ports = self.attachment_ports()?;
        let limits = &self.config.attachments;
        let content_type = crate::attachments::validate(&input, limits)?;
        let now = self.now();
        // Each message may carry `per_message` files: the same pace as messages.
        let per_minute = self
            .config
            .limits
            .messages_per_minute
            .saturating_mul(limits.per_message as u64);
        rate::hit(
            self.limiter(),
            "attachments",
            &session.to_string(),
            Rate::per(per_minute, 60_000),
            now,
        )
        .await?;
        self.load_session(session).await?;
        let a = Attachment {
            id: AttachmentId::new(),
            session_id: *session,
            name: input.name,
            content_type,
            size: input.size,
            created_at: now,
            expires_at: now + ATTACHMENT_TTL_MS,
            message_id: None,
        };
        let expires_at = now + UPLOAD_URL_TTL_MS;
        let target = ports.files.upload_target(&a, expires_at).await?;
        ports.records.put_attachment(&a).await?;
        tracing::info!(session_id = %session, attachment_id = %a.id, size = a.size, content_type = %a.content_type, "attachment asked for");
        Ok(AttachmentTicket {
            attachment_id: a.id,
            upload_url: target.url,
            upload_headers: target.headers,
            expires_at,
        })
    }

    /// `POST /agent/sessions/{id}/attachments`: as the user's, for the session's holder
    /// (409 otherwise).
    pub async fn agent_create_attachment(
        &self,
        agent: &AgentRef,
        id: &str,
        input: AttachmentInput,
    ) -> Result<AttachmentTicket, ChatError> {
        self.attachment_ports()?;
        let session = self.load_session(&id.parse()?).await?;
        if session.mode.holder() != Some(agent.id.as_str()) {
            return Err(ChatError::Conflict(
                "you do not hold this session: claim it first".into(),
            ));
        }
        self.create_attachment(&session.id, input).await
    }

    /// Checks the shape of a message's attachment list and its content: at most
    /// `CHAT_ATTACHMENTS_PER_MESSAGE` distinct ids; content may be empty only with
    /// attachments. Reads and writes nothing.
    pub(super) fn attachment_ids(
        &self,
        ids: &[String],
        content: &str,
        max_chars: usize,
    ) -> Result<Vec<AttachmentId>, ChatError> {
        if !ids.is_empty() {
            self.attachment_ports()?;
        }
        let ids = crate::attachments::parse_ids(ids, self.config.attachments.per_message)?;
        if ids.is_empty() || !content.is_empty() {
            crate::validate::content(content, max_chars)?;
        }
        Ok(ids)
    }

    /// Checks that every attachment of `ids` belongs to `session`, was uploaded as declared
    /// and is not used by another message, then claims them all for `message` and keeps
    /// their bytes. Nothing is claimed when one fails (400 naming it).
    pub(super) async fn claim_attachments(
        &self,
        session: &SessionId,
        ids: &[AttachmentId],
        message: &MessageId,
        keep_until: Millis,
    ) -> Result<Vec<AttachmentMeta>, ChatError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ports = self.attachment_ports()?;
        let now = self.now();
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let a = ports
                .records
                .get_attachment(id)
                .await?
                .filter(|a| a.session_id == *session)
                .ok_or_else(|| {
                    invalid(format!(
                        "attachment {id} is not an attachment of this session"
                    ))
                })?;
            match a.message_id {
                Some(m) if m != *message => {
                    return Err(invalid(format!(
                        "attachment {id} is already used by another message"
                    )));
                }
                None if a.expires_at <= now => {
                    return Err(invalid(format!(
                        "attachment {id} has expired; upload the file again"
                    )));
                }
                _ => {}
            }
            match ports.files.stored(&a).await? {
                None => {
                    return Err(invalid(format!("attachment {id} has not been uploaded")));
                }
                Some(s)
                    if s.size != a.size
                        || !s.content_type.eq_ignore_ascii_case(&a.content_type) =>
                {
                    tracing::warn!(attachment_id = %id, declared = a.size, stored = s.size, "an upload differs from its declaration");
                    return Err(invalid(format!(
                        "attachment {id}: the uploaded file is not the declared size and type"
                    )));
                }
                Some(_) => {}
            }
            found.push(a);
        }
        if !ports
            .records
            .claim_attachments(session, ids, message, now, keep_until)
            .await?
        {
            return Err(invalid(
                "an attachment was used by another message meanwhile or has expired",
            ));
        }
        for a in &found {
            if let Err(e) = ports.files.keep(a).await {
                self.release_attachments(ids, message).await;
                return Err(e.into());
            }
        }
        Ok(found.iter().map(Attachment::meta).collect())
    }

    /// Undoes a claim for a message that was not stored after all (best effort: a claim left
    /// behind only makes those files unusable).
    pub(super) async fn release_attachments(&self, ids: &[AttachmentId], message: &MessageId) {
        if ids.is_empty() {
            return;
        }
        if let Ok(ports) = self.attachment_ports()
            && let Err(e) = ports.records.release_attachments(ids, message).await
        {
            tracing::warn!(error = %e, message_id = %message, "attachments not released");
        }
    }

    /// Fills in fresh download URLs (valid [`DOWNLOAD_URL_TTL_MS`]) on messages about to go
    /// out. A URL that cannot be minted is left out (logged); the message still goes.
    pub async fn mint_urls(&self, messages: &mut [Message]) {
        let Some(ports) = self.attachments.as_ref() else {
            return;
        };
        let expires_at = self.now() + DOWNLOAD_URL_TTL_MS;
        for m in messages.iter_mut() {
            for a in m.attachments.iter_mut() {
                match ports.files.download_url(&m.session_id, a, expires_at).await {
                    Ok(url) => a.url = Some(url),
                    Err(e) => {
                        tracing::warn!(error = %e, attachment_id = %a.id, "no download URL")
                    }
                }
            }
        }
    }

    /// [`Self::mint_urls`] for one message.
    pub async fn with_urls(&self, mut message: Message) -> Message {
        self.mint_urls(std::slice::from_mut(&mut message)).await;
        message
    }

    /// Deletes attachments no message claimed within their hour, and those of messages whose
    /// session is gone (records and bytes); returns how many. A sent attachment whose session
    /// is still kept (its retention slides with activity) is kept as long, not deleted. Run
    /// hourly by chat-local; on AWS the item TTL and the bucket's lifecycle rule do it.
    pub async fn purge_attachments(&self) -> Result<usize, ChatError> {
        let Some(ports) = self.attachments.as_ref() else {
            return Ok(0);
        };
        let now = self.now();
        let stale = ports.records.stale_attachments(now, PURGE_BATCH).await?;
        let mut deleted = 0;
        for a in &stale {
            if a.message_id.is_some()
                && let Some(s) = self.store().get_session(&a.session_id, now).await?
                && s.expires_at > now
            {
                let kept = Attachment {
                    expires_at: s.expires_at,
                    ..a.clone()
                };
                ports.records.put_attachment(&kept).await?;
                continue;
            }
            ports.files.delete(&a.session_id, &a.id).await?;
            ports.records.delete_attachment(&a.id).await?;
            deleted += 1;
        }
        if deleted > 0 {
            tracing::info!(count = deleted, "attachments deleted");
        }
        Ok(deleted)
    }

    /// A deleted message's files and records (best effort: a failure is logged, and the
    /// erasure or the purge deletes them with the session).
    pub(super) async fn delete_message_attachments(&self, message: &Message) {
        let Some(ports) = self.attachments.as_ref() else {
            return;
        };
        for a in &message.attachments {
            if let Err(e) = ports.files.delete(&message.session_id, &a.id).await {
                tracing::warn!(error = %e, attachment_id = %a.id, "a deleted message's file was not deleted");
            } else if let Err(e) = ports.records.delete_attachment(&a.id).await {
                tracing::warn!(error = %e, attachment_id = %a.id, "a deleted message's file record was not deleted");
            }
        }
    }

    /// Erasure: deletes the files and records of every attachment of `session`'s messages;
    /// returns how many. (Unsent uploads of the session go with the hourly purge.)
    pub(super) async fn erase_attachments(&self, session: &SessionId) -> Result<usize, ChatError> {
        let Some(ports) = self.attachments.as_ref() else {
            return Ok(0);
        };
        let mut count = 0;
        for m in self.all_messages(session).await? {
            for a in &m.attachments {
                ports.files.delete(session, &a.id).await?;
                ports.records.delete_attachment(&a.id).await?;
                count += 1;
            }
        }
        Ok(count)
    }
}
