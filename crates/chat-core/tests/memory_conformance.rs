//! The store conformance suite on the in-memory reference store.
//!
//! Also checks the suite itself: stores that each break one documented semantic must make it
//! fail, naming the broken check.

use async_trait::async_trait;
use chat_core::model::{
    Connection, Message, MessageChange, MessageId, MessageStatus, Millis, NewMessage, Page,
    PageQuery, Session, SessionId,
};
use chat_core::ports::{Appended, Store, StoreError};
use chat_core::rate::{Limiter, MemoryLimiter, Rate};
use chat_testkit::conformance::run_all;
use chat_testkit::memory::MemoryStore;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[tokio::test]
async fn memory_store_conforms() {
    run_all(|| async { MemoryStore::new() }).await;
}

#[tokio::test]
async fn memory_store_conforms_for_agents() {
    chat_testkit::conformance::run_agents(|| async { MemoryStore::new() }).await;
}

/// One way of getting a store wrong.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Ignores idempotency keys.
    NoIdempotency,
    /// `mark_read` takes any value, even lower or past `last_seq`.
    ReadMarkUnchecked,
    /// `has_more` is always false.
    NeverHasMore,
    /// Seqs come from a global counter instead of the session's.
    GlobalSeq,
    /// `advance_status` allows any change.
    StatusAnyDirection,
    /// Lists every connection, not only the session's.
    ListsAllConnections,
    /// Unread counts stop at one page of 100.
    UnreadOnePage,
    /// Idempotency keys are never found by `find_by_key`.
    KeysNeverFound,
    /// Sessions never expire.
    NoExpiry,
    /// Deleting an unknown connection fails.
    DeleteUnknownFails,
    /// Two concurrent appends can read the same `last_seq` (read, yield, write).
    RacyAppend,
    /// `set_mode` reads, yields, then writes: concurrent claims can all win.
    RacyClaim,
    /// `set_mode` compares the mode but not the holder.
    ClaimIgnoresHolder,
    /// A user's sessions come oldest activity first.
    UserSessionsOldestFirst,
    /// `erase_session` forgets the session but leaves its messages, keys and connections.
    EraseOnlyTheSession,
    /// A tombstone can be edited back to life.
    TombstoneEditable,
    /// Changes come in `seq` order, not by update time.
    ChangesBySeq,
}

/// A [`MemoryStore`] with one fault.
struct Faulty {
    inner: MemoryStore,
    fault: Fault,
    global_seq: AtomicU64,
    racy: Mutex<std::collections::HashMap<SessionId, u64>>,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Self {
            inner: MemoryStore::new(),
            fault,
            global_seq: AtomicU64::new(0),
            racy: Mutex::default(),
        }
    }
}

#[async_trait]
impl Store for Faulty {
    async fn create_session(&self, s: &Session) -> Result<(), StoreError> {
        self.inner.create_session(s).await
    }

    async fn get_session(
        &self,
        id: &SessionId,
        now: Millis,
    ) -> Result<Option<Session>, StoreError> {
        match self.fault {
            Fault::NoExpiry => self.inner.get_session(id, i64::MIN).await,
            _ => self.inner.get_session(id, now).await,
        }
    }

    async fn append_message(&self, mut m: NewMessage) -> Result<Option<Appended>, StoreError> {
        match self.fault {
            Fault::NoIdempotency => m.idempotency_key = None,
            Fault::NoExpiry => m.created_at = i64::MIN,
            Fault::GlobalSeq => {
                let a = self.inner.append_message(m).await?;
                return Ok(a.map(|mut a| {
                    a.message.seq = self.global_seq.fetch_add(1, Ordering::SeqCst) + 1;
                    a
                }));
            }
            Fault::RacyAppend => {
                let Some(s) = self.inner.get_session(&m.session_id, m.created_at).await? else {
                    return Ok(None);
                };
                let seen = *self.racy.lock().unwrap().entry(s.id).or_insert(0);
                tokio::task::yield_now().await;
                let seq = seen + 1;
                self.racy.lock().unwrap().insert(s.id, seq);
                return Ok(Some(Appended {
                    message: m.with_seq(seq),
                    created: true,
                    mode: Default::default(),
                    retry_after: None,
                }));
            }
            _ => {}
        }
        self.inner.append_message(m).await
    }

    async fn get_message(
        &self,
        s: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        self.inner.get_message(s, id).await
    }

    async fn list_messages(&self, s: &SessionId, q: PageQuery) -> Result<Page, StoreError> {
        let mut p = self.inner.list_messages(s, q).await?;
        if let Fault::NeverHasMore = self.fault {
            p.has_more = false;
        }
        Ok(p)
    }

    async fn advance_status(
        &self,
        message: &Message,
        status: MessageStatus,
    ) -> Result<Option<Message>, StoreError> {
        if let Fault::StatusAnyDirection = self.fault {
            let Some(m) = self
                .inner
                .get_message(&message.session_id, &message.id)
                .await?
            else {
                return Ok(None);
            };
            return Ok(Some(Message { status, ..m }));
        }
        self.inner.advance_status(message, status).await
    }

    async fn mark_read(&self, s: &SessionId, up_to: u64) -> Result<Option<Session>, StoreError> {
        let r = self.inner.mark_read(s, up_to).await?;
        if let Fault::ReadMarkUnchecked = self.fault {
            return Ok(r.map(|s| Session {
                read_up_to: up_to,
                ..s
            }));
        }
        Ok(r)
    }

    async fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        self.inner.put_connection(c).await
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.inner.get_connection(id).await
    }

    async fn delete_connection(&self, c: &Connection) -> Result<(), StoreError> {
        if let Fault::DeleteUnknownFails = self.fault
            && self.inner.get_connection(&c.id).await?.is_none()
        {
            return Err(StoreError("no such connection".into()));
        }
        self.inner.delete_connection(c).await
    }

    async fn list_connections(&self, s: &SessionId) -> Result<Vec<Connection>, StoreError> {
        let mut v = self.inner.list_connections(s).await?;
        if let Fault::ListsAllConnections = self.fault {
            v.push(Connection {
                id: "someone-else".into(),
                session_id: SessionId::new(),
                connected_at: 0,
                expires_at: 0,
                merged: false,
            });
        }
        Ok(v)
    }

    async fn find_by_key(&self, s: &SessionId, key: &str) -> Result<Option<Message>, StoreError> {
        if let Fault::KeysNeverFound = self.fault {
            return Ok(None);
        }
        self.inner.find_by_key(s, key).await
    }

    async fn count_unread(&self, s: &SessionId, after: u64) -> Result<u64, StoreError> {
        let n = self.inner.count_unread(s, after).await?;
        Ok(match self.fault {
            Fault::UnreadOnePage => n.min(100),
            _ => n,
        })
    }

    async fn set_mode(
        &self,
        session: &SessionId,
        expected: &chat_core::model::ModeState,
        next: &chat_core::model::ModeState,
        now: Millis,
    ) -> Result<Option<Session>, StoreError> {
        match self.fault {
            Fault::RacyClaim => {
                let Some(s) = self.inner.get_session(session, now).await? else {
                    return Ok(None);
                };
                if s.mode.mode != expected.mode || s.mode.holder() != expected.holder() {
                    return Ok(None);
                }
                tokio::task::yield_now().await;
                // Writes whatever is there now: the check above may be stale.
                let current = self.inner.get_session(session, now).await?.map(|s| s.mode);
                let current = current.unwrap_or_default();
                self.inner.set_mode(session, &current, next, now).await
            }
            Fault::ClaimIgnoresHolder => {
                let Some(s) = self.inner.get_session(session, now).await? else {
                    return Ok(None);
                };
                if s.mode.mode != expected.mode {
                    return Ok(None);
                }
                self.inner.set_mode(session, &s.mode, next, now).await
            }
            _ => self.inner.set_mode(session, expected, next, now).await,
        }
    }

    async fn list_inbox(
        &self,
        q: &chat_core::model::InboxQuery,
    ) -> Result<Vec<Session>, StoreError> {
        self.inner.list_inbox(q).await
    }

    async fn list_canned(&self) -> Result<Vec<chat_core::model::CannedReply>, StoreError> {
        self.inner.list_canned().await
    }

    async fn create_canned(&self, r: &chat_core::model::CannedReply) -> Result<bool, StoreError> {
        self.inner.create_canned(r).await
    }

    async fn update_canned(
        &self,
        r: &chat_core::model::CannedReply,
    ) -> Result<chat_core::ports::CannedWrite, StoreError> {
        self.inner.update_canned(r).await
    }

    async fn delete_canned(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_canned(id).await
    }

    async fn put_agent_connection(
        &self,
        c: &chat_core::model::AgentConnection,
    ) -> Result<(), StoreError> {
        self.inner.put_agent_connection(c).await
    }

    async fn get_agent_connection(
        &self,
        id: &str,
    ) -> Result<Option<chat_core::model::AgentConnection>, StoreError> {
        self.inner.get_agent_connection(id).await
    }

    async fn delete_agent_connection(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete_agent_connection(id).await
    }

    async fn list_agent_connections(
        &self,
    ) -> Result<Vec<chat_core::model::AgentConnection>, StoreError> {
        self.inner.list_agent_connections().await
    }

    async fn list_user_sessions(
        &self,
        user: &str,
        after: Option<(Millis, SessionId)>,
        limit: u32,
        now: Millis,
    ) -> Result<Vec<Session>, StoreError> {
        let mut v = self
            .inner
            .list_user_sessions(user, after, limit, now)
            .await?;
        if let Fault::UserSessionsOldestFirst = self.fault {
            v.reverse();
        }
        Ok(v)
    }

    async fn change_message(
        &self,
        message: &Message,
        change: &MessageChange,
        at: Millis,
    ) -> Result<Option<Message>, StoreError> {
        if let (Fault::TombstoneEditable, MessageChange::Edit(content)) = (self.fault, change)
            && let Some(m) = self
                .inner
                .get_message(&message.session_id, &message.id)
                .await?
            && m.deleted
        {
            let mut m = m;
            m.deleted = false;
            m.content.clone_from(content);
            return Ok(Some(m));
        }
        self.inner.change_message(message, change, at).await
    }

    async fn list_changed(
        &self,
        session: &SessionId,
        after: Millis,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let mut p = self.inner.list_changed(session, after, limit).await?;
        if let Fault::ChangesBySeq = self.fault {
            p.messages.sort_by_key(|m| m.seq);
        }
        Ok(p)
    }

    async fn erase_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        if let Fault::EraseOnlyTheSession = self.fault {
            // Hides the session (as if its row went) and keeps everything else.
            let hidden = Session {
                expires_at: Millis::MIN,
                user_id: None,
                ..match self.inner.get_session(id, Millis::MIN).await? {
                    Some(s) => s,
                    None => return Ok(false),
                }
            };
            self.inner.create_session(&hidden).await?;
            return Ok(true);
        }
        self.inner.erase_session(id).await
    }
}

/// The agents' suite catches a claim that is not a compare-and-set on mode and holder.
#[tokio::test]
async fn the_agents_suite_catches_racy_claims() {
    for (fault, check) in [
        (
            Fault::RacyClaim,
            "concurrent_claims_have_exactly_one_winner",
        ),
        (Fault::ClaimIgnoresHolder, "set_mode_is_a_compare_and_set"),
    ] {
        let joined = tokio::spawn(chat_testkit::conformance::run_agents(move || async move {
            Faulty::new(fault)
        }))
        .await;
        let payload = joined
            .expect_err("the agents suite passed a faulty store")
            .into_panic();
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(text.contains(check), "{fault:?}: {text}");
    }
}

/// Runs the suite on a faulty store and returns its panic message.
async fn failure_of(fault: Fault) -> String {
    let joined = tokio::spawn(run_all(move || async move { Faulty::new(fault) })).await;
    let payload = match joined {
        Ok(()) => panic!("the conformance suite passed a store with fault {fault:?}"),
        Err(e) => e.into_panic(),
    };
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .expect("a text panic")
}

#[tokio::test]
async fn the_suite_catches_broken_stores_and_names_the_check() {
    let cases = [
        (
            Fault::NoIdempotency,
            "idempotency_key_returns_earlier_message",
        ),
        (Fault::NoIdempotency, "idempotency_keys_are_per_session"),
        (
            Fault::NoIdempotency,
            "concurrent_idempotent_appends_write_once",
        ),
        (
            Fault::ReadMarkUnchecked,
            "mark_read_never_lowers_and_clamps",
        ),
        (Fault::NeverHasMore, "list_without_cursor_is_newest_page"),
        (Fault::NeverHasMore, "list_before_pages_backwards"),
        (Fault::NeverHasMore, "list_after_pages_forwards"),
        (Fault::NeverHasMore, "list_after_and_before"),
        (Fault::GlobalSeq, "append_assigns_gapless_seqs"),
        (Fault::StatusAnyDirection, "advance_status_only_forward"),
        (
            Fault::ListsAllConnections,
            "connections_put_get_list_delete",
        ),
        (
            Fault::UnreadOnePage,
            "count_unread_counts_every_message_not_from_the_user",
        ),
        (Fault::KeysNeverFound, "find_by_key_reads_without_writing"),
        (Fault::NoExpiry, "session_expires_at_its_expiry"),
        (Fault::NoExpiry, "append_to_expired_session_writes_nothing"),
        (Fault::DeleteUnknownFails, "delete_unknown_connection_is_ok"),
        (
            Fault::RacyAppend,
            "concurrent_appends_get_gapless_distinct_seqs",
        ),
        (
            Fault::UserSessionsOldestFirst,
            "user_sessions_newest_activity_first_and_paged",
        ),
        (
            Fault::EraseOnlyTheSession,
            "erase_session_removes_everything_of_it",
        ),
        (
            Fault::TombstoneEditable,
            "edits_and_deletes_keep_id_and_seq",
        ),
        (Fault::ChangesBySeq, "changes_are_listed_by_update_time"),
    ];
    for (fault, check) in cases {
        let text = failure_of(fault).await;
        assert!(
            text.contains(&format!("store conformance check `{check}` failed")),
            "fault {fault:?} should fail check {check}; the suite said:\n{text}"
        );
    }
    // A healthy store is not reported: the names only appear for failing checks.
    let text = failure_of(Fault::UnreadOnePage).await;
    assert!(
        !text.contains("`append_assigns_gapless_seqs`"),
        "a check unrelated to the fault was reported:\n{text}"
    );
}

#[tokio::test]
async fn memory_limiter_conforms() {
    chat_testkit::conformance::run_limiter(|| async { MemoryLimiter::new() }).await;
}

/// A fixed-window counter (what the limits were before): bursts at once are right, but it
/// refuses without telling the real wait and lets a refused request count.
struct FixedWindow(Mutex<std::collections::HashMap<(String, Millis), u64>>);

#[async_trait]
impl Limiter for FixedWindow {
    async fn take(&self, key: &str, now: Millis, rate: Rate) -> Result<Option<Millis>, StoreError> {
        let window = now.div_euclid(rate.period_ms);
        let mut m = self.0.lock().unwrap();
        let n = m.entry((key.to_string(), window)).or_insert(0);
        *n += 1;
        Ok((*n > rate.limit).then(|| (window + 1) * rate.period_ms - now))
    }
}

#[tokio::test]
async fn the_limiter_suite_catches_a_fixed_window() {
    let joined = tokio::spawn(chat_testkit::conformance::run_limiter(|| async {
        FixedWindow(Mutex::default())
    }))
    .await;
    let text = joined
        .expect_err("a fixed window must fail the limiter suite")
        .into_panic();
    let text = text.downcast_ref::<String>().expect("a text panic");
    assert!(
        text.contains("`limiter_applies_gcra_per_key` failed"),
        "{text}"
    );
}

#[tokio::test]
async fn memory_attachment_records_pass_the_attachment_suite() {
    chat_testkit::conformance::run_attachments(
        || async { chat_testkit::memory::MemoryAttachments::new() },
        true,
    )
    .await;
}
