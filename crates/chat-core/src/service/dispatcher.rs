//! Delivery to n8n, from the queue: attempts with backoff, the dead letter, and the reply
//! deadline that fails a message no answer came for.

use super::{AgentPayload, FailReason};
use crate::ChatError;
use crate::events::ServerEvent;
use crate::model::{
    DispatchJob, JobKind, MessageId, MessageStatus, MessageType, Millis, NewMessage, PageQuery,
    Role,
};
use crate::ports::{Agent, SignedRequest};
use crate::service::ChatService;
use crate::signature;
use std::sync::Arc;
use std::time::Duration;

/// What became of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// n8n accepted the message (2xx).
    Delivered,
    /// Nothing to do: the message is gone, already past `received` (a redelivery), or
    /// (a deadline job) already answered or failed.
    Skipped,
    /// Run the job again after this delay (n8n failed; or a deadline job came early).
    Retry(Duration),
    /// The message is now `failed` and the user was told: n8n failed on the last attempt,
    /// or (a deadline job) no reply came in time.
    DeadLettered,
}

/// Delivers queued user messages to n8n, and fails those whose reply never came.
#[derive(Clone)]
pub struct Dispatcher {
    pub(super) service: ChatService,
    pub(super) agent: Arc<dyn Agent>,
}

impl Dispatcher {
    pub fn new(service: ChatService, agent: Arc<dyn Agent>) -> Self {
        Self { service, agent }
    }

    pub fn service(&self) -> &ChatService {
        &self.service
    }

    /// Runs one queued job: attempt number `attempt` (1-based) of a delivery, or a reply
    /// deadline check.
    pub async fn run(&self, job: DispatchJob, attempt: u32) -> Result<DispatchOutcome, ChatError> {
        use tracing::Instrument;
        let work = async {
            match job.kind {
                JobKind::Dispatch => self.dispatch(job, attempt).await,
                JobKind::Deadline => self.expire(job).await,
                JobKind::Handoff => self.service.handoff_timeout(job).await,
                JobKind::SessionStart => self.session_start(job, attempt).await,
            }
        };
        work.instrument(crate::trace::job_span(&job)).await
    }

    /// Attempt number `attempt` (1-based) to deliver `job`. Retries and the dead letter are
    /// decided here, so every queue implementation has the same semantics.
    pub async fn dispatch(
        &self,
        job: DispatchJob,
        attempt: u32,
    ) -> Result<DispatchOutcome, ChatError> {
        let svc = &self.service;
        let store = svc.store();
        let limit = svc.config.limits.history_for_agent;
        // With its seq known, the message comes with its history in one query.
        let (message, history) = match job.seq {
            Some(seq) => {
                let page = PageQuery {
                    after: None,
                    before: Some(seq.saturating_add(1)),
                    limit: limit.saturating_add(1),
                };
                let mut page = store.list_messages(&job.session_id, page).await?;
                match page.messages.pop().filter(|m| m.id == job.message_id) {
                    Some(m) => (Some(m), Some(page.messages)),
                    None => (
                        store.get_message(&job.session_id, &job.message_id).await?,
                        None,
                    ),
                }
            }
            None => (
                store.get_message(&job.session_id, &job.message_id).await?,
                None,
            ),
        };
        let Some(message) = message else {
            tracing::warn!(message_id = %job.message_id, "dispatch of an unknown message dropped");
            return Ok(DispatchOutcome::Skipped);
        };
        // Deleted by its sender before it left: never sent to n8n.
        if message.status != MessageStatus::Received || message.deleted {
            return Ok(DispatchOutcome::Skipped);
        }
        let Some(session) = store.get_session(&job.session_id, svc.now()).await? else {
            tracing::warn!(session_id = %job.session_id, "dispatch for an expired session dropped");
            return Ok(DispatchOutcome::Skipped);
        };
        if !session.mode.bot_answers() {
            // A person was asked for or holds it (a repeat of a message sent meanwhile).
            return Ok(DispatchOutcome::Skipped);
        }
        let history = match history {
            Some(h) => h,
            None => {
                let page = PageQuery {
                    after: None,
                    before: Some(message.seq),
                    limit,
                };
                store.list_messages(&session.id, page).await?.messages
            }
        };
        // Tombstones are not part of the conversation n8n sees.
        let mut history: Vec<_> = history.into_iter().filter(|m| !m.deleted).collect();
        svc.mint_urls(&mut history).await;
        let message = svc.with_urls(message).await;
        let request = self.sign(&AgentPayload {
            action: "sendMessage",
            session_id: session.id,
            message_id: message.id,
            user_id: session.user_id.as_deref(),
            content: &message.content,
            chat_input: &message.content,
            metadata: message.metadata.as_ref(),
            session_metadata: session.metadata.as_ref(),
            history: &history,
            callback_url: format!("{}/webhook", svc.config.public_url.trim_end_matches('/')),
            message: Some(&message),
            attachments: &message.attachments,
        });
        crate::metrics::dispatch_attempted();
        let delivered = self.agent.deliver(request).await;
        match &delivered {
            Ok(_) => crate::metrics::dispatch_accepted(message.created_at, svc.now()),
            Err(_) => crate::metrics::dispatch_failed(attempt >= svc.config.dispatch.max_attempts),
        }
        match delivered {
            Ok(body) => {
                tracing::info!(message_id = %message.id, attempt, "dispatched to n8n");
                let mut message = message;
                if let Some(status) = svc.advance(&message, MessageStatus::Dispatched).await? {
                    message.status = MessageStatus::Dispatched;
                    let typing = ServerEvent::typing(Role::Assistant, true);
                    svc.broadcast_held(&session.id, session.mode.holder(), &[status, typing], None)
                        .await;
                }
                // The answer, a stream, or an acknowledgement (the reply comes by callback).
                self.take_answer(&session, &message, body).await
            }
            Err(e) if attempt >= svc.config.dispatch.max_attempts => {
                tracing::warn!(message_id = %message.id, attempt, error = %e, "n8n failed on the last attempt");
                self.fail(job, FailReason::Unreachable).await?;
                Ok(DispatchOutcome::DeadLettered)
            }
            Err(e) => {
                let delay = svc.config.dispatch.delay_before(attempt + 1);
                tracing::warn!(message_id = %message.id, attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "n8n failed; will retry");
                Ok(DispatchOutcome::Retry(delay))
            }
        }
    }

    /// The reply deadline of `job`'s message has come: if it is still `received` or
    /// `dispatched` (n8n never answered, or its delivery never finished, e.g. a dispatch
    /// Lambda that died on its last attempt), it becomes `failed` and the user is told. A
    /// reply that arrives later is still stored and shown.
    pub async fn expire(&self, job: DispatchJob) -> Result<DispatchOutcome, ChatError> {
        let svc = &self.service;
        let Some(message) = svc
            .store()
            .get_message(&job.session_id, &job.message_id)
            .await?
        else {
            return Ok(DispatchOutcome::Skipped);
        };
        if !matches!(
            message.status,
            MessageStatus::Received | MessageStatus::Dispatched
        ) {
            return Ok(DispatchOutcome::Skipped);
        }
        let timeout = svc.config.dispatch.reply_timeout.as_millis() as Millis;
        let due = message.created_at.saturating_add(timeout);
        let early = due.saturating_sub(svc.now());
        // Queues may deliver a little early (SQS counts whole seconds); never fail early.
        if early > 1000 {
            return Ok(DispatchOutcome::Retry(Duration::from_millis(early as u64)));
        }
        tracing::warn!(message_id = %message.id, status = message.status.as_str(), "no reply before the deadline");
        crate::metrics::reply_timed_out();
        self.fail(job, FailReason::TimedOut).await?;
        Ok(DispatchOutcome::DeadLettered)
    }

    /// Gives up on a message: status `failed`, and a `system` message of type `error` tells
    /// the user. Idempotent; does nothing if the message was answered meanwhile.
    pub async fn dead_letter(&self, job: DispatchJob) -> Result<(), ChatError> {
        self.fail(job, FailReason::Unreachable).await
    }

    pub(super) async fn fail(&self, job: DispatchJob, reason: FailReason) -> Result<(), ChatError> {
        let svc = &self.service;
        let store = svc.store();
        let Some(message) = store.get_message(&job.session_id, &job.message_id).await? else {
            return Ok(());
        };
        // A deleted message gets no failure notice: its sender took it back.
        if message.status == MessageStatus::Answered || message.deleted {
            return Ok(());
        }
        let Some(session) = store.get_session(&job.session_id, svc.now()).await? else {
            return Ok(());
        };
        let now = svc.now();
        let notice = NewMessage {
            id: MessageId::new(),
            session_id: job.session_id,
            role: Role::System,
            name: None,
            kind: MessageType::Error,
            content: reason.text().into(),
            data: reason.data(),
            metadata: None,
            status: MessageStatus::Delivered,
            created_at: now,
            reply_to: Some(message.id),
            client_message_id: None,
            agent_id: None,
            attachments: Vec::new(),
            open_only: false,
            idempotency_key: Some(format!("failed#{}", message.id)),
            limit: None,
        };
        svc.locks
            .run(job.session_id, async {
                let mut events: Vec<ServerEvent> = svc
                    .advance(&message, MessageStatus::Failed)
                    .await?
                    .into_iter()
                    .collect();
                let appended = store.append_message(notice).await?;
                if let Some(a) = appended.filter(|a| a.created) {
                    events.push(ServerEvent::Message { message: a.message });
                    events.push(ServerEvent::typing(Role::Assistant, false));
                }
                svc.broadcast_held(&job.session_id, session.mode.holder(), &events, None)
                    .await;
                Ok(())
            })
            .await
    }

    pub(super) fn sign(&self, payload: &AgentPayload<'_>) -> SignedRequest {
        let body = serde_json::to_vec(payload).expect("payload serializes");
        let timestamp = (self.service.now() / 1000).to_string();
        let signature = signature::sign(
            self.service.config.webhook_secret.expose().as_bytes(),
            &timestamp,
            &body,
        );
        SignedRequest {
            body,
            timestamp,
            signature,
        }
    }
}
