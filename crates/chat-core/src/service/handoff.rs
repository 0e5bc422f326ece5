//! The session's mode machine: bot → waiting → agent → bot or closed.
//!
//! Every change is a compare-and-set on the stored mode and holder ([`Store::set_mode`]), so
//! of two agents claiming at once exactly one wins, and a change decided on a stale read is
//! decided again. Each change that happens stores ONE `system` message saying it, pushes it
//! and a `session` event to the session's connections (and its old and new holder), tells
//! every agent (`inbox`), and, when an agent joins or leaves, pushes `presence`.
//!
//! [`Store::set_mode`]: crate::ports::Store::set_mode

use crate::ChatError;
use crate::error::ErrorCode;
use crate::events::ServerEvent;
use crate::model::{
    AgentRef, DispatchJob, JobKind, Message, MessageId, MessageStatus, MessageType, Millis, Mode,
    ModeState, NewMessage, Role, Session, SessionId,
};
use crate::service::{ChatService, DispatchOutcome};
use serde_json::{Map, Value};
use std::time::Duration;

/// "Connecting you to a person…"
pub const WAITING_TEXT: &str = "Connecting you to a person…";
/// The bot resumes because no one claimed the session in time (or an agent released it
/// while it waited).
pub const NO_ONE_TEXT: &str = "No one is available right now; the assistant is back";
/// The session was closed.
pub const CLOSED_TEXT: &str = "This conversation was closed";

/// How often a change decided on a stale read is decided again before giving up (409).
const CAS_TRIES: usize = 5;

/// What the caller asks of the mode.
#[derive(Debug, Clone)]
enum Ask {
    /// The user (or n8n) asks for a person.
    Handoff,
    Claim(AgentRef),
    Release(AgentRef),
    Close(AgentRef),
    Transfer {
        from: AgentRef,
        to: AgentRef,
    },
    /// The handoff timeout of the waiting period that began at this time.
    Timeout(Millis),
}

/// The next state for `ask` from `current`: `Ok(None)` when nothing is to change.
fn decide(ask: &Ask, current: &ModeState, now: Millis) -> Result<Option<ModeState>, ChatError> {
    let closed = || ChatError::Conflict("this conversation is closed".into());
    let held_by_other = || ChatError::Conflict("another agent holds this session".into());
    match (ask, current.mode) {
        (Ask::Handoff, Mode::Bot) => Ok(Some(ModeState::waiting(now))),
        (Ask::Handoff, Mode::Waiting | Mode::Agent) => Ok(None),
        (Ask::Handoff, Mode::Closed) => Err(closed()),
        (Ask::Claim(_), Mode::Closed) => Err(closed()),
        (Ask::Claim(me), Mode::Agent) if current.holder() == Some(me.id.as_str()) => Ok(None),
        (Ask::Claim(_), Mode::Agent) => Err(held_by_other()),
        (Ask::Claim(me), Mode::Bot | Mode::Waiting) => Ok(Some(ModeState::agent(me.clone()))),
        (Ask::Release(me), Mode::Agent) if current.holder() == Some(me.id.as_str()) => {
            Ok(Some(ModeState::bot()))
        }
        (Ask::Release(_), Mode::Waiting) => Ok(Some(ModeState::bot())),
        (Ask::Release(_), _) => Err(ChatError::Conflict(
            "only a session you hold, or one waiting for a person, can be released".into(),
        )),
        (Ask::Close(_), Mode::Closed) => Err(closed()),
        (Ask::Close(me), Mode::Agent) if current.holder() != Some(me.id.as_str()) => {
            Err(held_by_other())
        }
        (Ask::Close(_), _) => Ok(Some(ModeState::closed())),
        (Ask::Transfer { from, to }, Mode::Agent) if current.holder() == Some(from.id.as_str()) => {
            Ok(Some(ModeState::agent(to.clone())))
        }
        (Ask::Transfer { .. }, _) => Err(ChatError::Conflict(
            "only a session you hold can be transferred".into(),
        )),
        (Ask::Timeout(since), Mode::Waiting) if current.waiting_since == Some(*since) => {
            Ok(Some(ModeState::bot()))
        }
        (Ask::Timeout(_), _) => Ok(None),
    }
}

/// The system message of a change from `old` to `new`: its text and the agent it names.
fn notice(old: &ModeState, new: &ModeState, timeout: bool) -> (String, Option<AgentRef>) {
    match new.mode {
        Mode::Waiting => (WAITING_TEXT.into(), None),
        Mode::Agent => {
            let a = new.agent.clone().expect("agent mode has a holder");
            (format!("{} joined the conversation", a.name), Some(a))
        }
        Mode::Bot => match (&old.agent, timeout) {
            (Some(a), false) => (
                format!("{} left; the assistant is back", a.name),
                Some(a.clone()),
            ),
            _ => (NO_ONE_TEXT.into(), None),
        },
        Mode::Closed => (CLOSED_TEXT.into(), None),
    }
}

impl ChatService {
    /// The user asks for a person (`POST /sessions/{id}/handoff`, the `handoff` frame): bot →
    /// waiting. Already waiting or held: the session as it is, nothing new stored.
    pub async fn request_handoff(&self, session: &SessionId) -> Result<Session, ChatError> {
        self.change_mode(session, Ask::Handoff).await
    }

    /// An agent claims a session (bot or waiting → agent).
    pub async fn claim(&self, agent: &AgentRef, session: &SessionId) -> Result<Session, ChatError> {
        self.change_mode(session, Ask::Claim(agent.clone())).await
    }

    /// An agent gives a session it holds (or one waiting) back to the bot.
    pub async fn release(
        &self,
        agent: &AgentRef,
        session: &SessionId,
    ) -> Result<Session, ChatError> {
        self.change_mode(session, Ask::Release(agent.clone())).await
    }

    /// An agent closes a session not held by another agent.
    pub async fn close(&self, agent: &AgentRef, session: &SessionId) -> Result<Session, ChatError> {
        self.change_mode(session, Ask::Close(agent.clone())).await
    }

    /// An agent hands a session it holds to another agent.
    pub async fn transfer(
        &self,
        agent: &AgentRef,
        session: &SessionId,
        to: AgentRef,
    ) -> Result<Session, ChatError> {
        if to.id == agent.id {
            return Err(ChatError::invalid(
                ErrorCode::InvalidInput,
                "agentId is you: transfer to another agent",
            ));
        }
        let ask = Ask::Transfer {
            from: agent.clone(),
            to,
        };
        self.change_mode(session, ask).await
    }

    /// n8n answered with `type: "handoff"`: bot → waiting (nothing when a person is already
    /// asked for or holds the session, or it is closed).
    pub(super) async fn bot_handoff(&self, session: &SessionId) {
        match self.change_mode(session, Ask::Handoff).await {
            Ok(_) | Err(ChatError::Conflict(_)) | Err(ChatError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, session_id = %session, "n8n's handoff could not be done")
            }
        }
    }

    /// The handoff timeout of `job` (its message is the waiting notice): a session still
    /// waiting since then goes back to the bot.
    pub(super) async fn handoff_timeout(
        &self,
        job: DispatchJob,
    ) -> Result<DispatchOutcome, ChatError> {
        let Some(timeout) = self.config.dispatch.handoff_timeout else {
            return Ok(DispatchOutcome::Skipped);
        };
        let Some(notice) = self
            .store()
            .get_message(&job.session_id, &job.message_id)
            .await?
        else {
            return Ok(DispatchOutcome::Skipped);
        };
        let due = notice
            .created_at
            .saturating_add(timeout.as_millis() as Millis);
        let early = due.saturating_sub(self.now());
        // Queues may deliver early (SQS delays at most 15 minutes); never resume early.
        if early > 1000 {
            return Ok(DispatchOutcome::Retry(Duration::from_millis(early as u64)));
        }
        match self
            .change_mode(&job.session_id, Ask::Timeout(notice.created_at))
            .await
        {
            Ok(_) | Err(ChatError::NotFound(_)) => Ok(DispatchOutcome::Delivered),
            Err(e) => Err(e),
        }
    }

    /// Decides and applies `ask` by compare-and-set, then tells everyone.
    async fn change_mode(&self, id: &SessionId, ask: Ask) -> Result<Session, ChatError> {
        for _ in 0..CAS_TRIES {
            let session = self.load_session(id).await?;
            let now = self.now();
            let Some(next) = decide(&ask, &session.mode, now)? else {
                return Ok(session);
            };
            // A waiting period starts at the time of its notice, which the timeout names.
            if let Some(updated) = self.store().set_mode(id, &session.mode, &next, now).await? {
                let timeout = matches!(ask, Ask::Timeout(_));
                // Boxed: the notices and events make a large future.
                Box::pin(self.announce(&session, &updated, timeout)).await?;
                return Ok(updated);
            }
        }
        Err(ChatError::Conflict(
            "the session changed meanwhile; try again".into(),
        ))
    }

    /// After a change from `old` to `new`: the system message, the events, the timeout job.
    async fn announce(&self, old: &Session, new: &Session, timeout: bool) -> Result<(), ChatError> {
        let (text, agent) = notice(&old.mode, &new.mode, timeout);
        let mut data = Map::new();
        data.insert("mode".into(), Value::String(new.mode.mode.as_str().into()));
        if let Some(a) = &agent {
            data.insert(
                "agent".into(),
                serde_json::to_value(a).expect("an agent serializes"),
            );
        }
        let created_at = new.mode.waiting_since.unwrap_or(new.updated_at);
        let message = NewMessage {
            id: MessageId::new(),
            session_id: new.id,
            role: Role::System,
            name: None,
            kind: MessageType::Text,
            content: text,
            data: Some(data),
            metadata: None,
            status: MessageStatus::Delivered,
            created_at,
            reply_to: None,
            client_message_id: None,
            agent_id: None,
            attachments: Vec::new(),
            open_only: false,
            idempotency_key: None,
            limit: None,
        };
        tracing::info!(session_id = %new.id, from = old.mode.mode.as_str(), to = new.mode.mode.as_str(), "session mode changed");
        let stored = self
            .locks
            .run(new.id, async {
                let appended = self
                    .store()
                    .append_message(message)
                    .await?
                    .ok_or_else(|| ChatError::NotFound("unknown session".into()))?;
                let unread = self.unread_count(&new.id, new.read_up_to).await?;
                let events = [
                    ServerEvent::Message {
                        message: appended.message.clone(),
                    },
                    ServerEvent::Session {
                        session: crate::model::SessionView::new(new, unread),
                    },
                ];
                self.broadcast_held(&new.id, new.mode.holder(), &events, None)
                    .await;
                if let Some(old_holder) =
                    old.mode.holder().filter(|h| Some(*h) != new.mode.holder())
                {
                    let frames: Vec<String> = events
                        .iter()
                        .map(|e| e.for_agent(new.id).to_frame())
                        .collect();
                    self.push_agents(Some(old_holder), &frames, None).await;
                }
                Ok::<Message, ChatError>(appended.message)
            })
            .await?;
        if new.mode.mode == Mode::Waiting
            && let Some(t) = self.config.dispatch.handoff_timeout
        {
            let job = DispatchJob {
                session_id: new.id,
                message_id: stored.id,
                kind: JobKind::Handoff,
                seq: None,
            };
            self.ports
                .queue
                .schedule(
                    job,
                    stored.created_at.saturating_add(t.as_millis() as Millis),
                )
                .await?;
        }
        Box::pin(self.notify_inbox(new)).await;
        if old.mode.holder() != new.mode.holder() {
            Box::pin(self.push_presence(new)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alex() -> AgentRef {
        AgentRef {
            id: "a-1".into(),
            name: "Alex".into(),
        }
    }
    fn sam() -> AgentRef {
        AgentRef {
            id: "a-2".into(),
            name: "Sam".into(),
        }
    }

    #[test]
    fn every_ask_from_every_mode() {
        let states = [
            ModeState::bot(),
            ModeState::waiting(5),
            ModeState::agent(alex()),
            ModeState::closed(),
        ];
        let code = |r: Result<Option<ModeState>, ChatError>| match r {
            Ok(Some(s)) => s.mode.as_str().to_string(),
            Ok(None) => "same".into(),
            Err(e) => e.code().to_string(),
        };
        let row =
            |ask: Ask| -> Vec<String> { states.iter().map(|s| code(decide(&ask, s, 9))).collect() };
        assert_eq!(row(Ask::Handoff), ["waiting", "same", "same", "conflict"]);
        assert_eq!(
            row(Ask::Claim(alex())),
            ["agent", "agent", "same", "conflict"]
        );
        assert_eq!(
            row(Ask::Claim(sam())),
            ["agent", "agent", "conflict", "conflict"]
        );
        assert_eq!(
            row(Ask::Release(alex())),
            ["conflict", "bot", "bot", "conflict"]
        );
        assert_eq!(
            row(Ask::Release(sam())),
            ["conflict", "bot", "conflict", "conflict"]
        );
        assert_eq!(
            row(Ask::Close(alex())),
            ["closed", "closed", "closed", "conflict"]
        );
        assert_eq!(
            row(Ask::Close(sam())),
            ["closed", "closed", "conflict", "conflict"]
        );
        let transfer = |from: AgentRef| Ask::Transfer { from, to: sam() };
        assert_eq!(
            row(transfer(alex())),
            ["conflict", "conflict", "agent", "conflict"]
        );
        assert_eq!(
            row(transfer(sam())),
            ["conflict", "conflict", "conflict", "conflict"]
        );
        assert_eq!(row(Ask::Timeout(5)), ["same", "bot", "same", "same"]);
        assert_eq!(
            row(Ask::Timeout(4)),
            ["same", "same", "same", "same"],
            "an older wait"
        );
    }

    #[test]
    fn notices_say_who() {
        let (t, a) = notice(&ModeState::waiting(1), &ModeState::agent(alex()), false);
        assert_eq!(
            (t.as_str(), a),
            ("Alex joined the conversation", Some(alex()))
        );
        let (t, _) = notice(&ModeState::agent(alex()), &ModeState::bot(), false);
        assert_eq!(t, "Alex left; the assistant is back");
        let (t, a) = notice(&ModeState::waiting(1), &ModeState::bot(), true);
        assert_eq!((t.as_str(), a), (NO_ONE_TEXT, None));
        assert_eq!(
            notice(&ModeState::bot(), &ModeState::waiting(1), false).0,
            WAITING_TEXT
        );
        assert_eq!(
            notice(&ModeState::bot(), &ModeState::closed(), false).0,
            CLOSED_TEXT
        );
    }
}
