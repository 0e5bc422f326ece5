//! In-memory adapters: a [`MemoryStore`], a [`MemoryQueue`], a [`RecordingPush`], a
//! [`ManualClock`] and a [`ScriptedAgent`].
//!
//! They exist for unit tests of the core and as the reference the real stores are checked
//! against; they keep everything in a mutex and lose it on exit.

use async_trait::async_trait;
use chat_core::model::{
    AgentConnection, CannedReply, Connection, DispatchJob, InboxQuery, Message, MessageChange,
    MessageId, MessageStatus, Millis, Mode, ModeState, NewMessage, Page, PageQuery, Session,
    SessionId,
};
use chat_core::ports::{
    Agent, AgentBody, AgentError, Appended, CannedWrite, Clock, Push, PushError, Queue, QueueError,
    SignedRequest, Store, StoreError, whole_body,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, Session>,
    messages: HashMap<SessionId, BTreeMap<u64, Message>>,
    /// A message's seq by id: lookups by id stay O(1), as the real stores' indexes make them.
    seq_of: HashMap<MessageId, u64>,
    idempotency: HashMap<(SessionId, String), u64>,
    /// Edited or deleted messages by (`updated_at`, `seq`): the sparse index of changes.
    changed: HashMap<SessionId, BTreeSet<(Millis, u64)>>,
    connections: HashMap<String, Connection>,
    canned: BTreeMap<String, CannedReply>,
    agent_connections: HashMap<String, AgentConnection>,
    /// Rate-limit buckets kept on sessions (their TATs), taken by appends.
    tats: HashMap<(SessionId, chat_core::model::SessionBucket), Millis>,
}

/// A [`Store`] in a mutex.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Applies a page query to messages in ascending `seq`; shared by the in-memory and the
/// reference implementations so all stores page identically.
pub fn page_of<'a>(all: impl DoubleEndedIterator<Item = &'a Message>, q: PageQuery) -> Page {
    let limit = q.limit as usize;
    let in_range =
        |m: &&Message| q.after.is_none_or(|a| m.seq > a) && q.before.is_none_or(|b| m.seq < b);
    let mut messages: Vec<Message>;
    let has_more;
    if q.after.is_some() {
        let mut it = all.filter(in_range);
        messages = it.by_ref().take(limit).cloned().collect();
        has_more = it.next().is_some();
    } else {
        let mut it = all.rev().filter(in_range);
        messages = it.by_ref().take(limit).cloned().collect();
        has_more = it.next().is_some();
        messages.reverse();
    }
    Page { messages, has_more }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        self.lock().sessions.insert(session.id, session.clone());
        Ok(())
    }

    async fn get_session(
        &self,
        id: &SessionId,
        now: Millis,
    ) -> Result<Option<Session>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .get(id)
            .filter(|s| s.expires_at > now)
            .cloned())
    }

    async fn append_message(&self, m: NewMessage) -> Result<Option<Appended>, StoreError> {
        let mut g = self.lock();
        let inner = &mut *g;
        let Some(session) = inner
            .sessions
            .get_mut(&m.session_id)
            .filter(|s| s.expires_at > m.created_at)
        else {
            return Ok(None);
        };
        let mode = session.mode.clone();
        if let Some(key) = &m.idempotency_key
            && let Some(seq) = inner.idempotency.get(&(m.session_id, key.clone()))
        {
            let message = inner.messages[&m.session_id][seq].clone();
            return Ok(Some(Appended {
                message,
                created: false,
                mode,
                retry_after: None,
            }));
        }
        if m.open_only && mode.mode == Mode::Closed {
            return Ok(Some(Appended {
                message: m.with_seq(0),
                created: false,
                mode,
                retry_after: None,
            }));
        }
        let mut tat = None;
        if let Some(limit) = m.limit {
            let bucket = (m.session_id, limit.bucket);
            match chat_core::rate::gcra(inner.tats.get(&bucket).copied(), m.created_at, limit.rate)
            {
                Ok(t) => tat = Some((bucket, t)),
                Err(wait) => {
                    return Ok(Some(Appended {
                        message: m.with_seq(0),
                        created: false,
                        mode,
                        retry_after: Some(wait),
                    }));
                }
            }
        }
        if let Some((bucket, t)) = tat {
            inner.tats.insert(bucket, t);
        }
        session.last_seq += 1;
        session.expires_at = session.slid_expiry(m.created_at);
        session.updated_at = session.updated_at.max(m.created_at);
        if m.role == chat_core::model::Role::User && session.title.is_none() {
            session.title = Some(chat_core::model::title_of(&m.content));
        }
        let seq = session.last_seq;
        if let Some(key) = &m.idempotency_key {
            inner.idempotency.insert((m.session_id, key.clone()), seq);
        }
        let message = m.with_seq(seq);
        inner.seq_of.insert(message.id, seq);
        inner
            .messages
            .entry(message.session_id)
            .or_default()
            .insert(seq, message.clone());
        Ok(Some(Appended {
            message,
            created: true,
            mode,
            retry_after: None,
        }))
    }

    async fn get_message(
        &self,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let g = self.lock();
        Ok(g.seq_of
            .get(id)
            .and_then(|seq| g.messages.get(session)?.get(seq))
            .filter(|m| m.id == *id)
            .cloned())
    }

    async fn list_messages(&self, session: &SessionId, q: PageQuery) -> Result<Page, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let g = self.lock();
        Ok(match g.messages.get(session) {
            // An empty window (BTreeMap::range would panic on it).
            _ if matches!((q.after, q.before), (Some(a), Some(b)) if a >= b) => Page::default(),
            // Only the window is walked, as a key-range query or an index would.
            Some(ms) => {
                let lo = q.after.map_or(Unbounded, Excluded);
                let hi = q.before.map_or(Unbounded, Excluded);
                page_of(ms.range((lo, hi)).map(|(_, m)| m), q)
            }
            None => Page::default(),
        })
    }

    async fn advance_status(
        &self,
        message: &Message,
        status: MessageStatus,
    ) -> Result<Option<Message>, StoreError> {
        let (session, id) = (&message.session_id, &message.id);
        let mut g = self.lock();
        let Some(m) = g
            .messages
            .get_mut(session)
            .and_then(|ms| ms.get_mut(&message.seq))
            .filter(|m| m.id == *id)
        else {
            return Ok(None);
        };
        if m.status.rank() >= status.rank() {
            return Ok(None);
        }
        m.status = status;
        Ok(Some(m.clone()))
    }

    async fn mark_read(
        &self,
        session: &SessionId,
        up_to: u64,
    ) -> Result<Option<Session>, StoreError> {
        let mut g = self.lock();
        Ok(g.sessions.get_mut(session).map(|s| {
            s.read_up_to = s.read_up_to.max(up_to.min(s.last_seq));
            s.clone()
        }))
    }

    async fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        self.lock().connections.insert(c.id.clone(), c.clone());
        Ok(())
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self.lock().connections.get(id).cloned())
    }

    async fn delete_connection(&self, c: &Connection) -> Result<(), StoreError> {
        self.lock().connections.remove(&c.id);
        Ok(())
    }

    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError> {
        let g = self.lock();
        let mut v: Vec<_> = g
            .connections
            .values()
            .filter(|c| c.session_id == *session)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn find_by_key(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<Message>, StoreError> {
        let g = self.lock();
        Ok(g.idempotency
            .get(&(*session, key.to_string()))
            .and_then(|seq| g.messages.get(session)?.get(seq))
            .cloned())
    }

    async fn count_unread(&self, session: &SessionId, after: u64) -> Result<u64, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let g = self.lock();
        Ok(g.messages.get(session).map_or(0, |ms| {
            ms.range((Excluded(after), Unbounded))
                .filter(|(_, m)| m.role != chat_core::model::Role::User)
                .count() as u64
        }))
    }

    async fn set_mode(
        &self,
        session: &SessionId,
        expected: &ModeState,
        next: &ModeState,
        now: Millis,
    ) -> Result<Option<Session>, StoreError> {
        let mut g = self.lock();
        let Some(s) = g.sessions.get_mut(session).filter(|s| s.expires_at > now) else {
            return Ok(None);
        };
        if s.mode.mode != expected.mode || s.mode.holder() != expected.holder() {
            return Ok(None);
        }
        s.mode = next.clone();
        s.expires_at = s.slid_expiry(now);
        s.updated_at = now;
        Ok(Some(s.clone()))
    }

    async fn list_inbox(&self, q: &InboxQuery) -> Result<Vec<Session>, StoreError> {
        let g = self.lock();
        let mut v: Vec<Session> = g
            .sessions
            .values()
            .filter(|s| q.admits(s))
            .cloned()
            .collect();
        v.sort_by(|a, b| q.order(a, b));
        v.truncate(q.limit as usize);
        Ok(v)
    }

    async fn list_canned(&self) -> Result<Vec<CannedReply>, StoreError> {
        let mut v: Vec<CannedReply> = self.lock().canned.values().cloned().collect();
        v.sort_by(|a, b| a.shortcut.cmp(&b.shortcut));
        Ok(v)
    }

    async fn create_canned(&self, r: &CannedReply) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if g.canned.values().any(|c| c.shortcut == r.shortcut) || g.canned.contains_key(&r.id) {
            return Ok(false);
        }
        g.canned.insert(r.id.clone(), r.clone());
        Ok(true)
    }

    async fn update_canned(&self, r: &CannedReply) -> Result<CannedWrite, StoreError> {
        let mut g = self.lock();
        if !g.canned.contains_key(&r.id) {
            return Ok(CannedWrite::NotFound);
        }
        if g.canned
            .values()
            .any(|c| c.shortcut == r.shortcut && c.id != r.id)
        {
            return Ok(CannedWrite::ShortcutTaken);
        }
        g.canned.insert(r.id.clone(), r.clone());
        Ok(CannedWrite::Written)
    }

    async fn delete_canned(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().canned.remove(id).is_some())
    }

    async fn put_agent_connection(&self, c: &AgentConnection) -> Result<(), StoreError> {
        self.lock()
            .agent_connections
            .insert(c.id.clone(), c.clone());
        Ok(())
    }

    async fn get_agent_connection(&self, id: &str) -> Result<Option<AgentConnection>, StoreError> {
        Ok(self.lock().agent_connections.get(id).cloned())
    }

    async fn delete_agent_connection(&self, id: &str) -> Result<(), StoreError> {
        self.lock().agent_connections.remove(id);
        Ok(())
    }

    async fn list_agent_connections(&self) -> Result<Vec<AgentConnection>, StoreError> {
        let mut v: Vec<AgentConnection> = self.lock().agent_connections.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        after: Option<(Millis, SessionId)>,
        limit: u32,
        now: Millis,
    ) -> Result<Vec<Session>, StoreError> {
        let g = self.lock();
        let mut v: Vec<Session> = g
            .sessions
            .values()
            .filter(|s| s.user_id.as_deref() == Some(user_id) && s.expires_at > now)
            .filter(|s| after.is_none_or(|a| (s.updated_at, s.id) < a))
            .cloned()
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse((s.updated_at, s.id)));
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn change_message(
        &self,
        message: &Message,
        change: &MessageChange,
        at: Millis,
    ) -> Result<Option<Message>, StoreError> {
        let (session, id, seq) = (&message.session_id, &message.id, message.seq);
        let mut g = self.lock();
        let inner = &mut *g;
        let Some(m) = inner
            .messages
            .get_mut(session)
            .and_then(|ms| ms.get_mut(&seq))
            .filter(|m| m.id == *id && !m.deleted)
        else {
            return Ok(None);
        };
        let index = inner.changed.entry(*session).or_default();
        index.remove(&(m.updated_at, seq));
        m.apply(change, at);
        index.insert((m.updated_at, seq));
        Ok(Some(m.clone()))
    }

    async fn list_changed(
        &self,
        session: &SessionId,
        after: Millis,
        limit: u32,
    ) -> Result<Page, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let g = self.lock();
        let (Some(index), Some(ms)) = (g.changed.get(session), g.messages.get(session)) else {
            return Ok(Page::default());
        };
        let mut it = index.range((Excluded((after, u64::MAX)), Unbounded));
        let messages = it
            .by_ref()
            .take(limit as usize)
            .filter_map(|(_, seq)| ms.get(seq).cloned())
            .collect();
        Ok(Page {
            messages,
            has_more: it.next().is_some(),
        })
    }

    async fn erase_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let inner = &mut *g;
        inner.changed.remove(id);
        let mut found = inner.sessions.remove(id).is_some();
        if let Some(ms) = inner.messages.remove(id) {
            found = true;
            for m in ms.values() {
                inner.seq_of.remove(&m.id);
            }
        }
        inner.idempotency.retain(|(s, _), _| s != id);
        inner.connections.retain(|_, c| c.session_id != *id);
        Ok(found)
    }
}

impl MemoryStore {
    /// Whether anything at all of `session` is stored (messages, keys, connections):
    /// what an erasure test reads afterwards.
    pub fn holds_anything_of(&self, session: &SessionId) -> bool {
        let g = self.lock();
        g.sessions.contains_key(session)
            || g.messages.contains_key(session)
            || g.idempotency.keys().any(|(s, _)| s == session)
            || g.connections.values().any(|c| c.session_id == *session)
    }
}

/// A [`Queue`] that collects jobs for the test to run.
#[derive(Default)]
pub struct MemoryQueue {
    jobs: Mutex<Vec<DispatchJob>>,
    deadlines: Mutex<Vec<(DispatchJob, Millis)>>,
    scheduled: Mutex<Vec<(DispatchJob, Millis)>>,
    fail: std::sync::atomic::AtomicBool,
}

impl MemoryQueue {
    /// Takes every delivery job enqueued so far.
    pub fn drain(&self) -> Vec<DispatchJob> {
        std::mem::take(&mut *self.jobs.lock().unwrap())
    }

    /// Takes every deadline job enqueued so far, with the time it is due.
    pub fn drain_deadlines(&self) -> Vec<(DispatchJob, Millis)> {
        std::mem::take(&mut *self.deadlines.lock().unwrap())
    }

    /// Takes every job scheduled so far (handoff timeouts), with the time it is due.
    pub fn drain_scheduled(&self) -> Vec<(DispatchJob, Millis)> {
        std::mem::take(&mut *self.scheduled.lock().unwrap())
    }

    /// Makes the next enqueues fail (or succeed again).
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn enqueue(&self, job: DispatchJob, deadline_at: Millis) -> Result<(), QueueError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(QueueError("queue is down".into()));
        }
        self.jobs.lock().unwrap().push(job);
        self.deadlines
            .lock()
            .unwrap()
            .push((job.deadline(), deadline_at));
        Ok(())
    }

    async fn schedule(&self, job: DispatchJob, at: Millis) -> Result<(), QueueError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(QueueError("queue is down".into()));
        }
        self.scheduled.lock().unwrap().push((job, at));
        Ok(())
    }
}

/// A [`Push`] that records every frame, and answers `Gone` for connections marked gone.
#[derive(Default)]
pub struct RecordingPush {
    frames: Mutex<Vec<(String, String)>>,
    gone: Mutex<HashSet<String>>,
    closed: Mutex<Vec<String>>,
}

impl RecordingPush {
    /// Takes the `(connection id, frame)` pairs pushed so far.
    pub fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.frames.lock().unwrap())
    }

    /// The parsed frames pushed to one connection so far (keeps them recorded).
    pub fn frames_for(&self, connection: &str) -> Vec<serde_json::Value> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == connection)
            .map(|(_, f)| serde_json::from_str(f).expect("frames are JSON"))
            .collect()
    }

    /// The connections closed by the server so far, in order.
    pub fn closed(&self) -> Vec<String> {
        self.closed.lock().unwrap().clone()
    }

    pub fn mark_gone(&self, connection: &str) {
        self.gone.lock().unwrap().insert(connection.to_string());
    }
}

#[async_trait]
impl Push for RecordingPush {
    async fn push(&self, connection_id: &str, frame: &str) -> Result<(), PushError> {
        if self.gone.lock().unwrap().contains(connection_id) {
            return Err(PushError::Gone);
        }
        self.frames
            .lock()
            .unwrap()
            .push((connection_id.to_string(), frame.to_string()));
        Ok(())
    }

    async fn close(&self, connection_id: &str) -> Result<(), PushError> {
        self.closed.lock().unwrap().push(connection_id.to_string());
        Ok(())
    }
}

/// A [`Clock`] the test moves by hand.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: Millis) -> Self {
        Self(AtomicI64::new(now))
    }
    pub fn advance(&self, ms: Millis) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, now: Millis) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// An [`Agent`] that records requests, fails while told to, and answers with the bodies it
/// is given (in order; an empty body, an acknowledgement, when none is left).
#[derive(Default)]
pub struct ScriptedAgent {
    requests: Mutex<Vec<SignedRequest>>,
    fail: std::sync::atomic::AtomicBool,
    answers: Mutex<std::collections::VecDeque<AgentBody>>,
}

impl ScriptedAgent {
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }
    pub fn requests(&self) -> Vec<SignedRequest> {
        self.requests.lock().unwrap().clone()
    }
    /// The body of the next 2xx answer.
    pub fn answer_with(&self, body: AgentBody) {
        self.answers.lock().unwrap().push_back(body);
    }
}

#[async_trait]
impl Agent for ScriptedAgent {
    async fn deliver(&self, request: SignedRequest) -> Result<AgentBody, AgentError> {
        self.requests.lock().unwrap().push(request);
        if self.fail.load(Ordering::SeqCst) {
            return Err(AgentError("n8n answered 502".into()));
        }
        Ok(self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| whole_body(Vec::new())))
    }
}

// ----- attachments -------------------------------------------------------------------------

/// An [`AttachmentStore`](chat_core::attachments::AttachmentStore) in a mutex.
#[derive(Default)]
pub struct MemoryAttachments {
    records: Mutex<HashMap<chat_core::model::AttachmentId, chat_core::attachments::Attachment>>,
}

impl MemoryAttachments {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds (tests check nothing was half-stored).
    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl chat_core::attachments::AttachmentStore for MemoryAttachments {
    async fn put_attachment(
        &self,
        a: &chat_core::attachments::Attachment,
    ) -> Result<(), StoreError> {
        let mut r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        r.insert(a.id, a.clone());
        Ok(())
    }

    async fn get_attachment(
        &self,
        id: &chat_core::model::AttachmentId,
    ) -> Result<Option<chat_core::attachments::Attachment>, StoreError> {
        let r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        Ok(r.get(id).cloned())
    }

    async fn claim_attachments(
        &self,
        session: &SessionId,
        ids: &[chat_core::model::AttachmentId],
        message: &MessageId,
        now: Millis,
        keep_until: Millis,
    ) -> Result<bool, StoreError> {
        let mut r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let claimable = |a: &chat_core::attachments::Attachment| {
            a.session_id == *session
                && match a.message_id {
                    Some(m) => m == *message,
                    None => a.expires_at > now,
                }
        };
        if !ids.iter().all(|id| r.get(id).is_some_and(claimable)) {
            return Ok(false);
        }
        for id in ids {
            if let Some(a) = r.get_mut(id) {
                a.message_id = Some(*message);
                a.expires_at = a.expires_at.max(keep_until);
            }
        }
        Ok(true)
    }

    async fn release_attachments(
        &self,
        ids: &[chat_core::model::AttachmentId],
        message: &MessageId,
    ) -> Result<(), StoreError> {
        let mut r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if let Some(a) = r.get_mut(id)
                && a.message_id == Some(*message)
            {
                a.message_id = None;
                a.expires_at = a.created_at + chat_core::attachments::ATTACHMENT_TTL_MS;
            }
        }
        Ok(())
    }

    async fn stale_attachments(
        &self,
        before: Millis,
        limit: u32,
    ) -> Result<Vec<chat_core::attachments::Attachment>, StoreError> {
        let r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut stale: Vec<_> = r
            .values()
            .filter(|a| a.expires_at <= before)
            .cloned()
            .collect();
        stale.sort_by_key(|a| (a.expires_at, a.id));
        stale.truncate(limit as usize);
        Ok(stale)
    }

    async fn delete_attachment(
        &self,
        id: &chat_core::model::AttachmentId,
    ) -> Result<(), StoreError> {
        let mut r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        r.remove(id);
        Ok(())
    }
}

/// [`Files`](chat_core::attachments::Files) in memory: tests "upload" with [`Self::upload`];
/// URLs are `memory://` ones naming the file and their expiry.
#[derive(Default)]
pub struct MemoryFiles {
    inner: Mutex<MemoryFilesInner>,
}

#[derive(Default)]
struct MemoryFilesInner {
    bytes: HashMap<chat_core::model::AttachmentId, (Vec<u8>, String)>,
    kept: HashSet<chat_core::model::AttachmentId>,
    deleted: Vec<chat_core::model::AttachmentId>,
}

impl MemoryFiles {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryFilesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores bytes as uploaded for `id` with `content_type` (what the browser's PUT does).
    pub fn upload(&self, id: chat_core::model::AttachmentId, bytes: &[u8], content_type: &str) {
        self.lock()
            .bytes
            .insert(id, (bytes.to_vec(), content_type.to_string()));
    }

    /// The bytes held for `id`.
    pub fn bytes(&self, id: &chat_core::model::AttachmentId) -> Option<Vec<u8>> {
        self.lock().bytes.get(id).map(|(b, _)| b.clone())
    }

    /// Whether `keep` was called for `id`.
    pub fn kept(&self, id: &chat_core::model::AttachmentId) -> bool {
        self.lock().kept.contains(id)
    }

    /// The ids deleted so far, in order.
    pub fn deleted(&self) -> Vec<chat_core::model::AttachmentId> {
        self.lock().deleted.clone()
    }
}

#[async_trait]
impl chat_core::attachments::Files for MemoryFiles {
    async fn upload_target(
        &self,
        a: &chat_core::attachments::Attachment,
        expires_at: Millis,
    ) -> Result<chat_core::attachments::UploadTarget, chat_core::attachments::FilesError> {
        Ok(chat_core::attachments::UploadTarget {
            url: format!("memory://upload/{}?expires={expires_at}", a.id),
            headers: [("Content-Type".to_string(), a.content_type.clone())].into(),
        })
    }

    async fn stored(
        &self,
        a: &chat_core::attachments::Attachment,
    ) -> Result<Option<chat_core::attachments::Stored>, chat_core::attachments::FilesError> {
        Ok(self
            .lock()
            .bytes
            .get(&a.id)
            .map(|(b, t)| chat_core::attachments::Stored {
                size: b.len() as u64,
                content_type: t.clone(),
            }))
    }

    async fn keep(
        &self,
        a: &chat_core::attachments::Attachment,
    ) -> Result<(), chat_core::attachments::FilesError> {
        self.lock().kept.insert(a.id);
        Ok(())
    }

    async fn download_url(
        &self,
        session: &SessionId,
        a: &chat_core::model::AttachmentMeta,
        expires_at: Millis,
    ) -> Result<String, chat_core::attachments::FilesError> {
        Ok(format!(
            "memory://files/{session}/{}?expires={expires_at}",
            a.id
        ))
    }

    async fn delete(
        &self,
        _session: &SessionId,
        id: &chat_core::model::AttachmentId,
    ) -> Result<(), chat_core::attachments::FilesError> {
        let mut inner = self.lock();
        inner.bytes.remove(id);
        inner.deleted.push(*id);
        Ok(())
    }
}
