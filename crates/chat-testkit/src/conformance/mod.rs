//! The store conformance suite: every documented semantic of [`Store`], checked against any
//! implementation.
//!
//! A store's tests call [`run_all`] with a
//! function that builds a fresh, empty store; each check gets its own store, runs as a named
//! async function, and the suite panics at the end naming every check that failed:
//!
//! ```
//! # async fn example() {
//! // In a store's tests, inside `#[tokio::test] async fn ...`:
//! chat_testkit::conformance::run_all(|| async { chat_testkit::memory::MemoryStore::new() }).await;
//! # }
//! ```
//!
//! The checks are also public, so a failing one can be run alone while debugging.
//!
//! Conventions the suite relies on (the same as the service's): times are Unix milliseconds,
//! a session or message whose `expires_at` is `t` has expired *at* `t` (alive strictly before),
//! and a message belongs to exactly one session (reading it through another session finds
//! nothing).

use chat_core::model::{
    Connection, Message, MessageId, MessageStatus, MessageType, Millis, NewMessage, Page,
    PageQuery, Role, Session, SessionId,
};
use chat_core::ports::{Appended, Store, StoreError};
use futures_util::FutureExt;
use serde_json::{Map, json};
use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;

mod agents;
mod attachments;
mod concurrency;
mod connections;
mod edits;
mod history;
mod keep;
mod limiter;
mod messages;
mod sessions;

pub use agents::*;
pub use attachments::*;
pub use concurrency::*;
pub use connections::*;
pub use edits::*;
pub use history::*;
pub use keep::*;
pub use limiter::*;
pub use messages::*;
pub use sessions::*;

/// A fixed "now" for every check (2023-11-14T22:13:20Z).
pub const NOW: Millis = 1_700_000_000_000;
pub(super) const DAY: Millis = 86_400_000;

/// Runs every check, each on a fresh store from `make`, and panics naming every check that
/// failed (with its message).
pub async fn run_all<F, Fut, S>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let mut failures: Vec<(&'static str, String)> = Vec::new();
    let mut total = 0usize;

    macro_rules! checks {
        ($($name:ident),* $(,)?) => {$(
            total += 1;
            let store = make().await;
            if let Err(payload) = AssertUnwindSafe($name(&store)).catch_unwind().await {
                failures.push((stringify!($name), panic_text(payload.as_ref())));
            }
            drop(store);
        )*};
    }

    checks!(
        session_round_trip,
        session_expires_at_its_expiry,
        append_assigns_gapless_seqs,
        message_round_trips_every_field,
        append_to_missing_session_writes_nothing,
        append_to_expired_session_writes_nothing,
        idempotency_key_returns_earlier_message,
        idempotency_keys_are_per_session,
        an_append_takes_its_limit_in_the_same_write,
        get_message_by_session_and_id,
        list_without_cursor_is_newest_page,
        list_before_pages_backwards,
        list_after_pages_forwards,
        list_after_and_before,
        list_empty_and_isolated,
        advance_status_only_forward,
        advance_status_of_unknown_message,
        mark_read_never_lowers_and_clamps,
        connections_put_get_list_delete,
        delete_unknown_connection_is_ok,
        find_by_key_reads_without_writing,
        count_unread_counts_every_message_not_from_the_user,
        concurrent_appends_get_gapless_distinct_seqs,
        concurrent_idempotent_appends_write_once,
        user_sessions_newest_activity_first_and_paged,
        activity_slides_retention_and_the_first_user_message_titles,
        erase_session_removes_everything_of_it,
        erased_sessions_leave_the_inbox,
        edits_and_deletes_keep_id_and_seq,
        changes_are_listed_by_update_time,
    );

    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(name, msg)| format!("  - store conformance check `{name}` failed: {msg}"))
            .collect();
        panic!(
            "{} of {total} store conformance checks failed:\n{}",
            failures.len(),
            list.join("\n")
        );
    }
}

pub(super) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked (non-text payload)".to_string()
    }
}

// ----- helpers ---------------------------------------------------------------------------

pub(super) fn ok<T>(r: Result<T, StoreError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} returned an error: {e}"),
    }
}

pub(super) fn session_until(expires_at: Millis) -> Session {
    Session {
        id: SessionId::new(),
        user_id: None,
        created_at: NOW,
        expires_at,
        last_seq: 0,
        read_up_to: 0,
        metadata: None,
        mode: Default::default(),
        updated_at: NOW,
        title: None,
    }
}

pub(super) async fn new_session<S: Store + ?Sized>(store: &S) -> Session {
    let s = session_until(NOW + DAY);
    ok(store.create_session(&s).await, "create_session");
    s
}

/// A user message of `session`, created at [`NOW`].
pub(super) fn user_message(session: &Session, content: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        session_id: session.id,
        role: Role::User,
        kind: MessageType::Text,
        content: content.to_string(),
        data: None,
        metadata: None,
        status: MessageStatus::Received,
        created_at: NOW,
        reply_to: None,
        client_message_id: None,
        attachments: Vec::new(),
        idempotency_key: key.map(str::to_string),
        name: None,
        agent_id: None,
        open_only: false,
        limit: None,
    }
}

pub(super) async fn append<S: Store + ?Sized>(store: &S, m: NewMessage) -> Appended {
    let what = format!("append_message(content {:?})", m.content);
    match ok(store.append_message(m).await, &what) {
        Some(a) => a,
        None => panic!("{what} returned None for a live session"),
    }
}

/// Appends `n` messages with contents `m1`, `m2`, ... (so content names the expected seq).
pub(super) async fn fill<S: Store + ?Sized>(store: &S, session: &Session, n: u64) -> Vec<Message> {
    let mut out = Vec::new();
    for i in 1..=n {
        let a = append(store, user_message(session, &format!("m{i}"), None)).await;
        assert_eq!(
            a.message.seq, i,
            "append number {i} got seq {}",
            a.message.seq
        );
        out.push(a.message);
    }
    out
}

pub(super) async fn live<S: Store + ?Sized>(store: &S, id: &SessionId) -> Session {
    match ok(store.get_session(id, NOW).await, "get_session") {
        Some(s) => s,
        None => panic!("get_session({id}, NOW) returned None for a live session"),
    }
}

pub(super) async fn page<S: Store + ?Sized>(
    store: &S,
    session: &SessionId,
    after: Option<u64>,
    before: Option<u64>,
    limit: u32,
) -> Page {
    let q = PageQuery {
        after,
        before,
        limit,
    };
    let p = ok(
        store.list_messages(session, q).await,
        &format!("list_messages({q:?})"),
    );
    for m in &p.messages {
        assert_eq!(
            m.session_id, *session,
            "list_messages({q:?}) returned a message of another session"
        );
        assert_eq!(
            m.content,
            format!("m{}", m.seq),
            "list_messages({q:?}) returned seq {} with the content of another message",
            m.seq
        );
    }
    p
}

/// Checks a page: exactly these seqs, in this (ascending) order, and this `has_more`.
pub(super) fn expect_page(p: &Page, seqs: &[u64], has_more: bool, what: &str) {
    let got: Vec<u64> = p.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, seqs, "{what}: wrong messages (by seq) or order");
    assert_eq!(p.has_more, has_more, "{what}: wrong has_more");
}

pub(super) fn connection(id: &str, session: &Session) -> Connection {
    Connection {
        id: id.to_string(),
        session_id: session.id,
        connected_at: NOW,
        expires_at: session.expires_at,
        merged: false,
    }
}

pub(super) fn sorted(mut v: Vec<Connection>) -> Vec<Connection> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}
