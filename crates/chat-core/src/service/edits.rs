//! Edit and delete of one's own messages: a user's own `user` messages (session token), an
//! agent's own `agent` messages, within `CHAT_EDIT_WINDOW_S` of sending. The message keeps its
//! `id` and `seq`; the change is pushed as the usual `message` event (clients replace by id),
//! and clients that were away learn it from `GET …/messages?updatedAfter=`.

use super::ChatService;
use crate::ChatError;
use crate::events::ServerEvent;
use crate::model::{AgentRef, Message, MessageChange, MessageId, Millis, Page, Role, SessionId};
use crate::validate;

/// Who asks for a change: the session's user, or an agent.
#[derive(Debug, Clone, Copy)]
pub enum Editor<'a> {
    /// The bearer of the session's token.
    User,
    Agent(&'a AgentRef),
}

impl ChatService {
    /// `PATCH|DELETE …/messages/{messageId}`: applies `change` to the caller's own message
    /// and pushes it. 404 for no such message in this session, 403 for another's, 409 past
    /// the edit window or for a tombstone, 400 for bad content.
    pub async fn change_own_message(
        &self,
        editor: Editor<'_>,
        session: &SessionId,
        message: &str,
        change: MessageChange,
    ) -> Result<Message, ChatError> {
        if let MessageChange::Edit(content) = &change {
            validate::content(content, self.config.limits.max_content_chars)?;
        }
        let mid: MessageId = message.parse()?;
        let s = self.load_session(session).await?;
        let stored = self
            .store()
            .get_message(&s.id, &mid)
            .await?
            .ok_or_else(|| ChatError::NotFound("unknown message".into()))?;
        let own = match editor {
            Editor::User => stored.role == Role::User,
            Editor::Agent(a) => {
                stored.role == Role::Agent && stored.agent_id.as_deref() == Some(a.id.as_str())
            }
        };
        if !own {
            return Err(ChatError::Forbidden(
                "only your own messages can be edited or deleted".into(),
            ));
        }
        if stored.deleted {
            return Err(ChatError::Conflict("this message was deleted".into()));
        }
        let now = self.now();
        let window = self.config.limits.edit_window.as_millis() as Millis;
        if now.saturating_sub(stored.created_at) > window {
            return Err(ChatError::Conflict(format!(
                "messages can be edited or deleted only within {} seconds of sending",
                self.config.limits.edit_window.as_secs()
            )));
        }
        let deleting = matches!(change, MessageChange::Delete);
        self.locks
            .run(s.id, async {
                let changed = self
                    .store()
                    .change_message(&stored, &change, now.max(stored.updated_at))
                    .await?
                    .ok_or_else(|| ChatError::Conflict("this message was deleted".into()))?;
                tracing::info!(session_id = %s.id, message_id = %mid, deleted = deleting, "message changed by its sender");
                if deleting {
                    self.delete_message_attachments(&stored).await;
                }
                let changed = self.with_urls(changed).await;
                let event = ServerEvent::Message {
                    message: changed.clone(),
                };
                self.broadcast_held(&s.id, s.mode.holder(), &[event], None)
                    .await;
                Ok(changed)
            })
            .await
    }

    /// `GET …/messages?updatedAfter=`: the messages of `session` edited or deleted after
    /// `after`, oldest change first. 404 for a session that is gone.
    pub async fn changed_messages(
        &self,
        session: &SessionId,
        after: Millis,
        limit: u32,
    ) -> Result<Page, ChatError> {
        let s = self.load_session(session).await?;
        Ok(self.store().list_changed(&s.id, after, limit).await?)
    }
}
