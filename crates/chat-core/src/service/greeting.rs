//! `CHAT_N8N_SESSION_START=true`: when a session starts, n8n is asked for its greeting.
//!
//! The request is a dispatch with `action: "sessionStart"`, empty `content`/`chatInput`, no
//! history, the session's metadata, and a fresh `messageId` that no stored message has. n8n
//! answers the greeting in its response (whole, or streamed: the text is stored whole, without
//! deltas, since no one is reading yet) or later by a signed callback without `replyTo`.
//! The greeting is stored once as an assistant message (idempotency key
//! `greeting#<messageId>`, so a redelivered job stores nothing new). Failures are retried
//! like a delivery; when n8n never answers, the session simply starts without a greeting:
//! no one asked anything, so no one is told.

use super::answers::StreamState;
use super::{AgentPayload, DispatchOutcome, Dispatcher};
use crate::ChatError;
use crate::answer::{self, Answer, BadAnswer, ReplyParts};
use crate::model::{
    DispatchJob, MessageId, MessageStatus, MessageType, Millis, NewMessage, Role, Session,
};
use crate::ports::AgentBody;
use crate::validate;
use futures_util::StreamExt;

impl Dispatcher {
    /// Attempt number `attempt` (1-based) to get the greeting of `job`'s session.
    pub(super) async fn session_start(
        &self,
        job: DispatchJob,
        attempt: u32,
    ) -> Result<DispatchOutcome, ChatError> {
        let svc = &self.service;
        let store = svc.store();
        let key = format!("greeting#{}", job.message_id);
        let Some(session) = store.get_session(&job.session_id, svc.now()).await? else {
            return Ok(DispatchOutcome::Skipped);
        };
        if !session.mode.bot_answers() || store.find_by_key(&session.id, &key).await?.is_some() {
            return Ok(DispatchOutcome::Skipped);
        }
        let request = self.sign(&AgentPayload {
            action: "sessionStart",
            session_id: session.id,
            message_id: job.message_id,
            user_id: session.user_id.as_deref(),
            content: "",
            chat_input: "",
            metadata: None,
            session_metadata: session.metadata.as_ref(),
            history: &[],
            callback_url: format!("{}/webhook", svc.config.public_url.trim_end_matches('/')),
            message: None,
            attachments: &[],
        });
        let body = match self.agent.deliver(request).await {
            Ok(body) => body,
            Err(e) if attempt >= svc.config.dispatch.max_attempts => {
                tracing::warn!(session_id = %session.id, attempt, error = %e, "n8n gave no greeting; the session starts without one");
                return Ok(DispatchOutcome::Skipped);
            }
            Err(e) => {
                let delay = svc.config.dispatch.delay_before(attempt + 1);
                tracing::warn!(session_id = %session.id, attempt, error = %e, "n8n failed the session start; will retry");
                return Ok(DispatchOutcome::Retry(delay));
            }
        };
        match self.read_greeting(body).await {
            Ok(None) => {
                tracing::info!(session_id = %session.id, "session start acknowledged; a greeting may come by callback");
            }
            Ok(Some(parts)) => {
                let stored = svc
                    .store_reply(&session.id, greeting(&session, svc.now(), key, parts), None)
                    .await?;
                tracing::info!(session_id = %session.id, reply_id = %stored.id, "greeting from n8n stored");
            }
            Err(bad) => {
                tracing::warn!(session_id = %session.id, reason = bad.code, error = %bad, "n8n's greeting could not be used");
            }
        }
        Ok(DispatchOutcome::Delivered)
    }

    /// The greeting in n8n's 2xx body: `None` for an acknowledgement.
    async fn read_greeting(&self, mut body: AgentBody) -> Result<Option<ReplyParts>, BadAnswer> {
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BadAnswer::new("stream_broken", e.0))?;
            buf.extend_from_slice(&chunk);
            if buf.len() > answer::MAX_STREAM_BYTES {
                return Err(BadAnswer::new(
                    "answer_too_large",
                    "the greeting is too large",
                ));
            }
        }
        let max_chars = self.service.config.limits.max_reply_chars;
        let first_line = buf
            .split(|&b| b == b'\n')
            .find(|l| !l.trim_ascii().is_empty());
        let parts = if first_line.is_some_and(answer::opens_stream) {
            let mut state = StreamState::new(buf, max_chars);
            state.feed(true)?;
            state.finished()?;
            ReplyParts {
                content: state.text,
                kind: MessageType::Text,
                data: None,
            }
        } else if buf.len() > answer::MAX_ANSWER_BYTES {
            return Err(BadAnswer::new(
                "answer_too_large",
                "the greeting is too large",
            ));
        } else {
            match answer::classify(&buf)? {
                Answer::Ack => return Ok(None),
                Answer::Reply(parts) => parts,
            }
        };
        validate::content(&parts.content, max_chars)
            .map_err(|e| BadAnswer::new("invalid_answer", format!("the greeting's text: {e}")))?;
        Ok(Some(parts))
    }
}

fn greeting(session: &Session, now: Millis, key: String, parts: ReplyParts) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        session_id: session.id,
        role: Role::Assistant,
        name: None,
        kind: parts.kind,
        content: parts.content,
        data: parts.data,
        metadata: None,
        status: MessageStatus::Delivered,
        created_at: now,
        reply_to: None,
        client_message_id: None,
        agent_id: None,
        attachments: Vec::new(),
        open_only: false,
        idempotency_key: Some(key),
        limit: None,
    }
}
