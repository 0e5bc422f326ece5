//! n8n's answer in the response to a dispatch: read whole (an answer or an acknowledgement) or
//! streamed (pushed as coalesced `delta` frames while it is written, then stored once).
//!
//! A reply that arrives this way is stored exactly as the signed callback would store it,
//! under the same idempotency key `reply#<user message id>`, so a callback for the same
//! message that comes after it (with or without `eventId`) stores nothing new
//! ([`ChatService::receive_reply`] checks that key too once the message is answered).

use super::{DispatchOutcome, Dispatcher, FailReason};
use crate::answer::{self, Answer, BadAnswer, Chunk, ReplyParts};
use crate::events::ServerEvent;
use crate::model::{
    Connection, DispatchJob, Message, MessageId, MessageStatus, MessageType, Millis, NewMessage,
    Role, Session,
};
use crate::ports::{AgentBody, AgentError};
use crate::service::ChatService;
use crate::{ChatError, validate};
use futures_util::StreamExt;
use serde_json::{Map, Value};

/// At most one `delta` per this many milliseconds of writing (per connection: each delta
/// goes to every connection once).
pub const DELTA_INTERVAL_MS: Millis = 100;

/// The idempotency key a reply to `message` is stored under, by the response or a callback.
pub(crate) fn reply_key(message: &MessageId) -> String {
    format!("reply#{message}")
}

impl Dispatcher {
    /// Reads n8n's 2xx `body` for `message` and acts on it.
    pub(super) async fn take_answer(
        &self,
        session: &Session,
        message: &Message,
        mut body: AgentBody,
    ) -> Result<DispatchOutcome, ChatError> {
        let mut buf = Vec::new();
        // A body is not polled again once it has ended.
        let mut ended = false;
        // Read until the first non-blank line is whole (it tells a stream from an answer).
        let first_line = loop {
            if let Some(start) = buf.iter().position(|b: &u8| !b.is_ascii_whitespace())
                && let Some(len) = buf[start..].iter().position(|&b| b == b'\n')
            {
                break Some(start..start + len);
            }
            if buf.len() > answer::MAX_ANSWER_BYTES {
                break None;
            }
            match body.next().await {
                None => {
                    ended = true;
                    break None;
                }
                Some(Ok(c)) => buf.extend_from_slice(&c),
                Some(Err(e)) => return self.broken(session, message, &e, None).await,
            }
        };
        if let Some(line) = first_line
            && answer::opens_stream(&buf[line])
        {
            return self.stream(session, message, buf, body).await;
        }
        // A whole body: read the rest, bounded.
        while !ended && buf.len() <= answer::MAX_ANSWER_BYTES {
            match body.next().await {
                None => ended = true,
                Some(Ok(c)) => buf.extend_from_slice(&c),
                Some(Err(e)) => return self.broken(session, message, &e, None).await,
            }
        }
        match answer::classify(&buf) {
            Ok(Answer::Ack) => Ok(DispatchOutcome::Delivered),
            Ok(Answer::Reply(parts)) => self.store_answer(session, message, parts).await,
            Err(bad) => self.refuse(message, bad).await,
        }
    }

    /// A whole answer: stored as the callback would store it.
    async fn store_answer(
        &self,
        session: &Session,
        message: &Message,
        parts: ReplyParts,
    ) -> Result<DispatchOutcome, ChatError> {
        let limits = &self.service.config.limits;
        if let Err(e) = validate::content(&parts.content, limits.max_reply_chars) {
            let bad = BadAnswer::new("invalid_answer", format!("the answer's text: {e}"));
            return self.refuse(message, bad).await;
        }
        let new = self.reply(session, message, MessageId::new(), parts);
        self.store_complete(session, message, new).await?;
        Ok(DispatchOutcome::Delivered)
    }

    fn reply(
        &self,
        session: &Session,
        message: &Message,
        id: MessageId,
        parts: ReplyParts,
    ) -> NewMessage {
        NewMessage {
            id,
            session_id: session.id,
            role: Role::Assistant,
            name: None,
            kind: parts.kind,
            content: parts.content,
            data: parts.data,
            metadata: None,
            status: MessageStatus::Delivered,
            created_at: self.service.now(),
            reply_to: Some(message.id),
            client_message_id: None,
            agent_id: None,
            attachments: Vec::new(),
            open_only: false,
            idempotency_key: Some(reply_key(&message.id)),
            limit: None,
        }
    }

    /// Stores a complete reply (unless a callback answered meanwhile) and marks the user
    /// message answered.
    async fn store_complete(
        &self,
        session: &Session,
        message: &Message,
        new: NewMessage,
    ) -> Result<(), ChatError> {
        let svc = &self.service;
        let current = svc.store().get_message(&session.id, &message.id).await?;
        let Some(current) = current.filter(|m| m.status != MessageStatus::Answered) else {
            tracing::info!(message_id = %message.id, "answered by a callback meanwhile; the response's answer is dropped");
            return Ok(());
        };
        let stored = svc.store_reply(&session.id, new, Some(current)).await?;
        tracing::info!(message_id = %message.id, reply_id = %stored.id, "reply from n8n's response stored");
        Ok(())
    }

    /// A body of no usable shape: a clear failure of the message.
    async fn refuse(
        &self,
        message: &Message,
        bad: BadAnswer,
    ) -> Result<DispatchOutcome, ChatError> {
        tracing::warn!(message_id = %message.id, reason = bad.code, error = %bad, "n8n's answer could not be used");
        self.fail(job_of(message), FailReason::BadAnswer(bad.code))
            .await?;
        Ok(DispatchOutcome::DeadLettered)
    }

    /// The body broke off (`e`): what came of a stream (`partial`) is kept, marked
    /// incomplete, and the message fails.
    async fn broken(
        &self,
        session: &Session,
        message: &Message,
        e: &AgentError,
        partial: Option<(MessageId, String)>,
    ) -> Result<DispatchOutcome, ChatError> {
        let code = if e.0.starts_with("timed out") {
            "stream_timeout"
        } else {
            "stream_broken"
        };
        self.interrupted(session, message, BadAnswer::new(code, e.0.clone()), partial)
            .await
    }

    async fn interrupted(
        &self,
        session: &Session,
        message: &Message,
        bad: BadAnswer,
        partial: Option<(MessageId, String)>,
    ) -> Result<DispatchOutcome, ChatError> {
        let svc = &self.service;
        tracing::warn!(message_id = %message.id, reason = bad.code, error = %bad, "n8n's streamed answer broke off");
        if let Some((id, mut text)) =
            partial.filter(|(_, t)| validate::content(t, usize::MAX).is_ok())
        {
            let max = svc.config.limits.max_reply_chars;
            if let Some((cut, _)) = text.char_indices().nth(max) {
                text.truncate(cut);
            }
            let mut data = Map::new();
            data.insert("incomplete".into(), Value::Bool(true));
            let mut new = self.reply(
                session,
                message,
                id,
                ReplyParts {
                    content: text,
                    kind: MessageType::Text,
                    data: Some(data),
                },
            );
            // Its own key: a full answer by callback may still follow and be stored.
            new.idempotency_key = Some(format!("partial#{}", message.id));
            let current = svc.store().get_message(&session.id, &message.id).await?;
            if current.is_some_and(|m| m.status != MessageStatus::Answered) {
                svc.store_reply(&session.id, new, None).await?;
            }
        }
        self.fail(job_of(message), FailReason::Interrupted(bad.code))
            .await?;
        Ok(DispatchOutcome::DeadLettered)
    }

    /// A streamed answer: deltas pushed while it is written, then the whole reply stored once.
    async fn stream(
        &self,
        session: &Session,
        message: &Message,
        buf: Vec<u8>,
        mut body: AgentBody,
    ) -> Result<DispatchOutcome, ChatError> {
        let svc = &self.service;
        let reply_id = MessageId::new();
        // Deltas go to the connections open when the stream starts; one that connects later
        // gets the whole reply (pushed, or by `after`) once it is stored.
        let mut connections = svc.live_connections(&session.id).await;
        let mut state = StreamState::new(buf, svc.config.limits.max_reply_chars);
        let mut deltas = 0u32;
        let started = svc.now();
        let outcome = loop {
            if let Err(bad) = state.feed(false) {
                break Err(bad);
            }
            if let Some(text) = state.delta(svc.now()) {
                let frame = ServerEvent::Delta {
                    message_id: reply_id,
                    reply_to: Some(message.id),
                    index: deltas,
                    text,
                }
                .to_frame();
                deltas += 1;
                svc.push_each(&mut connections, &frame).await;
            }
            match body.next().await {
                None => break state.feed(true).and_then(|()| state.finished()),
                Some(Ok(c)) => {
                    if let Err(bad) = state.extend(&c) {
                        break Err(bad);
                    }
                }
                Some(Err(e)) => {
                    let code = if e.0.starts_with("timed out") {
                        "stream_timeout"
                    } else {
                        "stream_broken"
                    };
                    break Err(BadAnswer::new(code, e.0));
                }
            }
        };
        tracing::info!(message_id = %message.id, reply_id = %reply_id, deltas, chars = state.text.chars().count(), ms = svc.now() - started, "n8n's stream ended");
        match outcome {
            Err(bad) => {
                self.interrupted(session, message, bad, Some((reply_id, state.text)))
                    .await
            }
            Ok(()) => {
                let parts = ReplyParts {
                    content: state.text,
                    kind: MessageType::Text,
                    data: None,
                };
                if let Err(e) = validate::content(&parts.content, usize::MAX) {
                    let bad = BadAnswer::new("invalid_answer", format!("the streamed text: {e}"));
                    return self.refuse(message, bad).await;
                }
                let new = self.reply(session, message, reply_id, parts);
                self.store_complete(session, message, new).await?;
                crate::metrics::streamed_reply();
                Ok(DispatchOutcome::Delivered)
            }
        }
    }
}

fn job_of(message: &Message) -> DispatchJob {
    DispatchJob::dispatch(message.session_id, message.id)
}

/// The text of a stream as it is read: lines parsed, text gathered, deltas coalesced.
pub(super) struct StreamState {
    /// Bytes not yet split into lines.
    buf: Vec<u8>,
    /// Bytes read in all.
    total: usize,
    pub(super) text: String,
    chars: usize,
    max_chars: usize,
    /// How much of `text` went out in deltas.
    sent: usize,
    last_delta: Option<Millis>,
    /// Begun and not yet ended nodes; whether any ended.
    open: i64,
    ended: bool,
}

impl StreamState {
    pub(super) fn new(buf: Vec<u8>, max_chars: usize) -> Self {
        Self {
            total: buf.len(),
            buf,
            text: String::new(),
            chars: 0,
            max_chars,
            sent: 0,
            last_delta: None,
            open: 0,
            ended: false,
        }
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), BadAnswer> {
        self.total += bytes.len();
        if self.total > answer::MAX_STREAM_BYTES {
            return Err(BadAnswer::new(
                "answer_too_large",
                format!(
                    "the stream is larger than {} bytes",
                    answer::MAX_STREAM_BYTES
                ),
            ));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Takes every whole line (and with `last`, what is left) from the buffer.
    pub(super) fn feed(&mut self, last: bool) -> Result<(), BadAnswer> {
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            self.line(&line)?;
        }
        if last {
            let rest = std::mem::take(&mut self.buf);
            self.line(&rest)?;
        } else if self.buf.len() > answer::MAX_STREAM_LINE_BYTES {
            return Err(BadAnswer::new(
                "stream_invalid",
                format!(
                    "a stream line is longer than {} bytes",
                    answer::MAX_STREAM_LINE_BYTES
                ),
            ));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> Result<(), BadAnswer> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        match answer::chunk(line)? {
            Chunk::Begin => self.open += 1,
            Chunk::End => {
                self.open -= 1;
                self.ended = true;
            }
            Chunk::Item(t) => {
                self.chars += t.chars().count();
                self.text.push_str(&t);
                if self.chars > self.max_chars {
                    return Err(BadAnswer::new(
                        "answer_too_long",
                        format!(
                            "the streamed text is longer than {} characters",
                            self.max_chars
                        ),
                    ));
                }
            }
            Chunk::Error(m) => {
                let m: String = m.chars().take(300).collect();
                return Err(BadAnswer::new(
                    "stream_error",
                    format!("n8n reported an error in the stream: {m}"),
                ));
            }
            Chunk::Other => {}
        }
        Ok(())
    }

    /// Whether the stream, now at its end, was whole.
    pub(super) fn finished(&self) -> Result<(), BadAnswer> {
        if !self.ended || self.open > 0 {
            return Err(BadAnswer::new(
                "stream_broken",
                "the stream ended before its end chunk",
            ));
        }
        if self.text.trim().is_empty() {
            return Err(BadAnswer::new("empty_answer", "the stream carried no text"));
        }
        Ok(())
    }

    /// The text to push now, if any is waiting and the last delta is old enough.
    fn delta(&mut self, now: Millis) -> Option<String> {
        if self.text.len() == self.sent
            || self.last_delta.is_some_and(|t| now - t < DELTA_INTERVAL_MS)
        {
            return None;
        }
        let text = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        self.last_delta = Some(now);
        Some(text)
    }
}

impl ChatService {
    /// The session's connections that have not expired.
    pub(super) async fn live_connections(
        &self,
        session: &crate::model::SessionId,
    ) -> Vec<Connection> {
        let now = self.now();
        match self.store().list_connections(session).await {
            Ok(c) => c.into_iter().filter(|c| c.expires_at > now).collect(),
            Err(e) => {
                tracing::warn!(error = %e, session_id = %session, "could not list connections; deltas skipped");
                Vec::new()
            }
        }
    }

    /// Pushes one frame to each of `connections` at once, dropping those that are gone.
    pub(super) async fn push_each(&self, connections: &mut Vec<Connection>, frame: &str) {
        let kept = futures_util::future::join_all(
            connections.iter().map(|c| self.push_or_forget(c, frame)),
        )
        .await;
        let mut kept = kept.into_iter();
        connections.retain(|_| kept.next().unwrap_or(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(lines: &str) -> StreamState {
        StreamState::new(lines.as_bytes().to_vec(), 100)
    }

    #[test]
    fn lines_gather_text_across_chunk_boundaries() {
        let mut s = state(r#"{"type":"begin"}"#);
        s.extend(b"\n{\"type\":\"item\",\"con").unwrap();
        s.feed(false).unwrap();
        assert_eq!(s.text, "");
        s.extend(b"tent\":\"Hel\"}\n{\"type\":\"item\",\"content\":\"lo\"}\n{\"type\":\"end\"}")
            .unwrap();
        s.feed(false).unwrap();
        assert_eq!(s.text, "Hello");
        assert!(s.finished().is_err(), "end not yet read");
        s.feed(true).unwrap();
        assert_eq!(s.finished(), Ok(()));
    }

    #[test]
    fn deltas_are_coalesced_to_one_per_interval() {
        let mut s = state("");
        s.text.push('a');
        assert_eq!(
            s.delta(0).as_deref(),
            Some("a"),
            "the first text goes at once"
        );
        s.text.push('b');
        assert_eq!(s.delta(50), None);
        s.text.push('c');
        assert_eq!(s.delta(99), None);
        assert_eq!(s.delta(100).as_deref(), Some("bc"));
        assert_eq!(s.delta(500), None, "nothing new");
    }

    #[test]
    fn broken_streams_say_why() {
        let mut s = state("{\"type\":\"begin\"}\nnot json\n");
        assert_eq!(s.feed(false).unwrap_err().code, "stream_invalid");
        let mut s = state("{\"type\":\"error\",\"content\":\"boom\"}\n");
        assert_eq!(s.feed(false).unwrap_err().code, "stream_error");
        let mut s = state("{\"type\":\"begin\"}\n{\"type\":\"item\",\"content\":\"x\"}\n");
        s.feed(true).unwrap();
        assert_eq!(s.finished().unwrap_err().code, "stream_broken");
        let mut s = state("{\"type\":\"begin\"}\n{\"type\":\"end\"}\n");
        s.feed(true).unwrap();
        assert_eq!(s.finished().unwrap_err().code, "empty_answer");
        let mut s = StreamState::new(Vec::new(), 3);
        s.extend(b"{\"type\":\"item\",\"content\":\"four\"}\n")
            .unwrap();
        assert_eq!(s.feed(false).unwrap_err().code, "answer_too_long");
        let mut s = state("");
        s.extend(&vec![b'x'; answer::MAX_STREAM_LINE_BYTES + 1])
            .unwrap();
        assert_eq!(s.feed(false).unwrap_err().code, "stream_invalid");
    }
}
