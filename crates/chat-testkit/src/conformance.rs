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

/// A fixed "now" for every check (2023-11-14T22:13:20Z).
pub const NOW: Millis = 1_700_000_000_000;
const DAY: Millis = 86_400_000;

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

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked (non-text payload)".to_string()
    }
}

// ----- helpers ---------------------------------------------------------------------------

fn ok<T>(r: Result<T, StoreError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} returned an error: {e}"),
    }
}

fn session_until(expires_at: Millis) -> Session {
    Session {
        id: SessionId::new(),
        user_id: None,
        created_at: NOW,
        expires_at,
        last_seq: 0,
        read_up_to: 0,
    }
}

async fn new_session<S: Store + ?Sized>(store: &S) -> Session {
    let s = session_until(NOW + DAY);
    ok(store.create_session(&s).await, "create_session");
    s
}

/// A user message of `session`, created at [`NOW`].
fn user_message(session: &Session, content: &str, key: Option<&str>) -> NewMessage {
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
        idempotency_key: key.map(str::to_string),
        expires_at: session.expires_at,
    }
}

async fn append<S: Store + ?Sized>(store: &S, m: NewMessage) -> Appended {
    let what = format!("append_message(content {:?})", m.content);
    match ok(store.append_message(m).await, &what) {
        Some(a) => a,
        None => panic!("{what} returned None for a live session"),
    }
}

/// Appends `n` messages with contents `m1`, `m2`, ... (so content names the expected seq).
async fn fill<S: Store + ?Sized>(store: &S, session: &Session, n: u64) -> Vec<Message> {
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

async fn live<S: Store + ?Sized>(store: &S, id: &SessionId) -> Session {
    match ok(store.get_session(id, NOW).await, "get_session") {
        Some(s) => s,
        None => panic!("get_session({id}, NOW) returned None for a live session"),
    }
}

async fn page<S: Store + ?Sized>(
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
fn expect_page(p: &Page, seqs: &[u64], has_more: bool, what: &str) {
    let got: Vec<u64> = p.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, seqs, "{what}: wrong messages (by seq) or order");
    assert_eq!(p.has_more, has_more, "{what}: wrong has_more");
}

fn connection(id: &str, session: &Session) -> Connection {
    Connection {
        id: id.to_string(),
        session_id: session.id,
        connected_at: NOW,
        expires_at: session.expires_at,
    }
}

fn sorted(mut v: Vec<Connection>) -> Vec<Connection> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

// ----- sessions --------------------------------------------------------------------------

/// A created session reads back equal (guest and user), with `last_seq` and `read_up_to` 0;
/// an unknown id is `None`.
pub async fn session_round_trip<S: Store + ?Sized>(store: &S) {
    let guest = session_until(NOW + DAY);
    let user = Session {
        user_id: Some("user-42".into()),
        expires_at: NOW + 7 * DAY,
        ..session_until(0)
    };
    ok(store.create_session(&guest).await, "create_session(guest)");
    ok(store.create_session(&user).await, "create_session(user)");
    assert_eq!(
        ok(store.get_session(&guest.id, NOW).await, "get_session"),
        Some(guest.clone()),
        "a guest session does not read back as created"
    );
    assert_eq!(
        ok(store.get_session(&user.id, NOW).await, "get_session"),
        Some(user.clone()),
        "a user session does not read back as created"
    );
    assert_eq!(
        ok(
            store.get_session(&SessionId::new(), NOW).await,
            "get_session"
        ),
        None,
        "an unknown session id must be None"
    );
}

/// `get_session` is `None` once the session has expired at `now` (at `expires_at` itself and
/// after), and `Some` just before.
pub async fn session_expires_at_its_expiry<S: Store + ?Sized>(store: &S) {
    let s = session_until(NOW + 1_000);
    ok(store.create_session(&s).await, "create_session");
    for (now, alive) in [
        (NOW, true),
        (NOW + 999, true),
        (NOW + 1_000, false),
        (NOW + 5_000, false),
    ] {
        let got = ok(store.get_session(&s.id, now).await, "get_session");
        assert_eq!(
            got.is_some(),
            alive,
            "get_session at expires_at{:+} ms: expected {}",
            now - s.expires_at,
            if alive {
                "the session"
            } else {
                "None (expired)"
            }
        );
    }
}

// ----- appending -------------------------------------------------------------------------

/// Appends get seq 1, 2, 3 (per session), `created: true`, and the session's `last_seq`
/// follows.
pub async fn append_assigns_gapless_seqs<S: Store + ?Sized>(store: &S) {
    let a = new_session(store).await;
    let b = new_session(store).await;
    for i in 1..=3u64 {
        let new = user_message(&a, &format!("m{i}"), None);
        let got = append(store, new.clone()).await;
        assert!(got.created, "a fresh append must report created: true");
        assert_eq!(got.message.seq, i, "append number {i} in a session");
        assert_eq!(
            got.message,
            new.with_seq(i),
            "the appended message differs from what was given"
        );
        assert_eq!(
            live(store, &a.id).await.last_seq,
            i,
            "last_seq after {i} appends"
        );
    }
    let first_b = append(store, user_message(&b, "m1", None)).await;
    assert_eq!(
        first_b.message.seq, 1,
        "seq is per session: the first message of another session must be seq 1"
    );
    assert_eq!(
        live(store, &a.id).await.last_seq,
        3,
        "appending to one session moved another's last_seq"
    );
}

/// Every field of a message survives the store: returned by the append, `get_message` and
/// `list_messages`; absent optional fields stay absent.
pub async fn message_round_trips_every_field<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let plain = user_message(&s, "m1", None);
    let mut data = Map::new();
    data.insert(
        "when".into(),
        json!({"start": "2025-01-02T10:00:00Z", "slots": [1, 2.5, null, true], "ok": false}),
    );
    data.insert("note".into(), json!("ünïcödé ✓ \"quoted\" \n newline"));
    let mut metadata = Map::new();
    metadata.insert("page".into(), json!("/pricing"));
    metadata.insert("n".into(), json!(12345678901_i64));
    let full = NewMessage {
        id: MessageId::new(),
        session_id: s.id,
        role: Role::Assistant,
        kind: MessageType::SchedulingUpdate,
        content: "m2".into(),
        data: Some(data),
        metadata: Some(metadata),
        status: MessageStatus::Delivered,
        created_at: NOW + 1,
        reply_to: Some(plain.id),
        client_message_id: Some("client-1".into()),
        idempotency_key: Some("event#e-1".into()),
        expires_at: s.expires_at,
    };
    let p = append(store, plain.clone()).await;
    let f = append(store, full.clone()).await;
    let expected = [plain.with_seq(1), full.with_seq(2)];
    assert_eq!(
        p.message, expected[0],
        "append returned a different plain message"
    );
    assert_eq!(
        f.message, expected[1],
        "append returned a different full message"
    );
    for m in &expected {
        assert_eq!(
            ok(store.get_message(&s.id, &m.id).await, "get_message"),
            Some(m.clone()),
            "get_message does not return the message as appended (seq {})",
            m.seq
        );
    }
    let listed = page(store, &s.id, Some(0), None, 10).await;
    assert_eq!(
        listed.messages, expected,
        "list_messages does not return the messages as appended"
    );
}

/// Appending to a session that does not exist returns `None` and writes nothing (a session
/// created later with that id starts empty at seq 1).
pub async fn append_to_missing_session_writes_nothing<S: Store + ?Sized>(store: &S) {
    let s = session_until(NOW + DAY);
    let stray = user_message(&s, "m1", Some("k"));
    let stray_id = stray.id;
    let r = ok(store.append_message(stray).await, "append_message");
    assert!(
        r.is_none(),
        "append to a missing session must return None, got {r:?}"
    );
    assert_eq!(
        ok(store.get_session(&s.id, NOW).await, "get_session"),
        None,
        "append to a missing session created it"
    );
    ok(store.create_session(&s).await, "create_session");
    expect_page(
        &page(store, &s.id, None, None, 10).await,
        &[],
        false,
        "after a rejected append",
    );
    assert_eq!(
        ok(store.get_message(&s.id, &stray_id).await, "get_message"),
        None,
        "a rejected append left its message behind"
    );
    let a = append(store, user_message(&s, "m1", Some("k"))).await;
    assert!(
        a.created && a.message.seq == 1,
        "after a rejected append the first real one must be created with seq 1 (its key unused), got created={} seq={}",
        a.created,
        a.message.seq
    );
}

/// Appending to a session that has expired at the message's `created_at` returns `None` and
/// writes nothing; just before expiry it succeeds.
pub async fn append_to_expired_session_writes_nothing<S: Store + ?Sized>(store: &S) {
    let s = session_until(NOW + 1_000);
    ok(store.create_session(&s).await, "create_session");
    for at in [s.expires_at, s.expires_at + 60_000] {
        let m = NewMessage {
            created_at: at,
            ..user_message(&s, "late", Some("k"))
        };
        let r = ok(store.append_message(m).await, "append_message");
        assert!(
            r.is_none(),
            "append at expires_at{:+} ms must return None (expired), got {r:?}",
            at - s.expires_at
        );
    }
    assert_eq!(
        live(store, &s.id).await.last_seq,
        0,
        "a rejected append moved last_seq"
    );
    expect_page(
        &page(store, &s.id, None, None, 10).await,
        &[],
        false,
        "after rejected appends",
    );
    let m = NewMessage {
        created_at: s.expires_at - 1,
        ..user_message(&s, "m1", Some("k"))
    };
    let a = append(store, m).await;
    assert!(
        a.created && a.message.seq == 1,
        "an append 1 ms before expiry must be created with seq 1, got created={} seq={}",
        a.created,
        a.message.seq
    );
}

/// A second append with a used idempotency key writes nothing, returns the earlier message
/// with `created: false`, and does not consume a seq.
pub async fn idempotency_key_returns_earlier_message<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let first = append(store, user_message(&s, "m1", Some("client#abc"))).await;
    assert!(first.created, "the first use of a key must be created");
    let mut again = user_message(&s, "other content", Some("client#abc"));
    again.role = Role::Assistant;
    let repeat = append(store, again.clone()).await;
    assert!(!repeat.created, "a repeated key must report created: false");
    assert_eq!(
        repeat.message, first.message,
        "a repeated key must return the earlier message, unchanged"
    );
    assert_eq!(
        ok(store.get_message(&s.id, &again.id).await, "get_message"),
        None,
        "the repeat's own message was stored"
    );
    assert_eq!(
        live(store, &s.id).await.last_seq,
        1,
        "a repeated key consumed a seq"
    );
    let next = append(store, user_message(&s, "m2", None)).await;
    assert_eq!(
        next.message.seq, 2,
        "the append after a repeat must get the next seq"
    );
    let other_key = append(store, user_message(&s, "m3", Some("client#abd"))).await;
    assert!(
        other_key.created && other_key.message.seq == 3,
        "a different key must be a new message with seq 3"
    );
    let third = append(store, user_message(&s, "m1", Some("client#abc"))).await;
    assert!(
        !third.created && third.message.id == first.message.id,
        "a key must stay used after later appends"
    );
    expect_page(
        &page(store, &s.id, None, None, 10).await,
        &[1, 2, 3],
        false,
        "after repeats",
    );
}

/// The same idempotency key in two sessions names two independent messages.
pub async fn idempotency_keys_are_per_session<S: Store + ?Sized>(store: &S) {
    let a = new_session(store).await;
    let b = new_session(store).await;
    let in_a = append(store, user_message(&a, "m1", Some("event#1"))).await;
    let in_b = append(store, user_message(&b, "m1", Some("event#1"))).await;
    assert!(
        in_b.created,
        "a key used in another session must not make this append a repeat"
    );
    assert_ne!(
        in_b.message.id, in_a.message.id,
        "the key leaked across sessions"
    );
    assert_eq!(
        in_b.message.session_id, b.id,
        "the message landed in the wrong session"
    );
    assert_eq!(in_b.message.seq, 1, "first message of session b");
    let again_a = append(store, user_message(&a, "m1", Some("event#1"))).await;
    assert!(
        !again_a.created && again_a.message.id == in_a.message.id,
        "the key must still name session a's own message"
    );
}

/// `get_message` finds a message by session and id; an unknown id, an unknown session, or
/// another session than the message's finds nothing.
pub async fn get_message_by_session_and_id<S: Store + ?Sized>(store: &S) {
    let a = new_session(store).await;
    let b = new_session(store).await;
    let ms = fill(store, &a, 3).await;
    fill(store, &b, 1).await;
    for m in &ms {
        assert_eq!(
            ok(store.get_message(&a.id, &m.id).await, "get_message"),
            Some(m.clone()),
            "get_message of seq {}",
            m.seq
        );
    }
    assert_eq!(
        ok(
            store.get_message(&a.id, &MessageId::new()).await,
            "get_message"
        ),
        None,
        "an unknown message id must be None"
    );
    assert_eq!(
        ok(store.get_message(&b.id, &ms[0].id).await, "get_message"),
        None,
        "a message read through another session must be None"
    );
    assert_eq!(
        ok(
            store.get_message(&SessionId::new(), &ms[0].id).await,
            "get_message"
        ),
        None,
        "a message read through an unknown session must be None"
    );
}

// ----- history pages ---------------------------------------------------------------------

/// Without cursors: the newest `limit` messages, ascending, `has_more` when older exist.
pub async fn list_without_cursor_is_newest_page<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    fill(store, &s, 7).await;
    let id = &s.id;
    expect_page(
        &page(store, id, None, None, 3).await,
        &[5, 6, 7],
        true,
        "newest 3 of 7",
    );
    expect_page(
        &page(store, id, None, None, 6).await,
        &[2, 3, 4, 5, 6, 7],
        true,
        "newest 6 of 7",
    );
    expect_page(
        &page(store, id, None, None, 7).await,
        &[1, 2, 3, 4, 5, 6, 7],
        false,
        "newest 7 of 7",
    );
    expect_page(
        &page(store, id, None, None, 100).await,
        &[1, 2, 3, 4, 5, 6, 7],
        false,
        "newest 100 of 7",
    );
    expect_page(
        &page(store, id, None, None, 1).await,
        &[7],
        true,
        "newest 1 of 7",
    );
}

/// `before` alone: the last `limit` messages with `seq < before`, `has_more` when older
/// exist.
pub async fn list_before_pages_backwards<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    fill(store, &s, 7).await;
    let id = &s.id;
    expect_page(
        &page(store, id, None, Some(6), 2).await,
        &[4, 5],
        true,
        "before=6 limit=2",
    );
    expect_page(
        &page(store, id, None, Some(4), 3).await,
        &[1, 2, 3],
        false,
        "before=4 limit=3 (exactly the rest)",
    );
    expect_page(
        &page(store, id, None, Some(3), 5).await,
        &[1, 2],
        false,
        "before=3 limit=5",
    );
    expect_page(
        &page(store, id, None, Some(1), 5).await,
        &[],
        false,
        "before=1",
    );
    expect_page(
        &page(store, id, None, Some(8), 2).await,
        &[6, 7],
        true,
        "before=8 (past the end) limit=2",
    );
    expect_page(
        &page(store, id, None, Some(100), 10).await,
        &[1, 2, 3, 4, 5, 6, 7],
        false,
        "before=100",
    );
}

/// `after` alone: the first `limit` messages with `seq > after`, `has_more` when newer ones
/// follow.
pub async fn list_after_pages_forwards<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    fill(store, &s, 7).await;
    let id = &s.id;
    expect_page(
        &page(store, id, Some(0), None, 3).await,
        &[1, 2, 3],
        true,
        "after=0 limit=3",
    );
    expect_page(
        &page(store, id, Some(3), None, 3).await,
        &[4, 5, 6],
        true,
        "after=3 limit=3",
    );
    expect_page(
        &page(store, id, Some(4), None, 3).await,
        &[5, 6, 7],
        false,
        "after=4 limit=3 (exactly the rest)",
    );
    expect_page(
        &page(store, id, Some(5), None, 3).await,
        &[6, 7],
        false,
        "after=5 limit=3",
    );
    expect_page(
        &page(store, id, Some(7), None, 3).await,
        &[],
        false,
        "after=7 (the last)",
    );
    expect_page(
        &page(store, id, Some(50), None, 3).await,
        &[],
        false,
        "after=50 (past the end)",
    );
    expect_page(
        &page(store, id, Some(0), None, 100).await,
        &[1, 2, 3, 4, 5, 6, 7],
        false,
        "after=0 limit=100",
    );
}

/// `after` and `before` together: the first `limit` messages strictly between them,
/// `has_more` when more follow before `before`.
pub async fn list_after_and_before<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    fill(store, &s, 7).await;
    let id = &s.id;
    expect_page(
        &page(store, id, Some(1), Some(6), 2).await,
        &[2, 3],
        true,
        "after=1 before=6 limit=2",
    );
    expect_page(
        &page(store, id, Some(3), Some(6), 2).await,
        &[4, 5],
        false,
        "after=3 before=6 limit=2 (exactly the rest)",
    );
    expect_page(
        &page(store, id, Some(1), Some(6), 10).await,
        &[2, 3, 4, 5],
        false,
        "after=1 before=6 limit=10",
    );
    expect_page(
        &page(store, id, Some(3), Some(4), 10).await,
        &[],
        false,
        "after=3 before=4 (empty range)",
    );
    expect_page(
        &page(store, id, Some(0), Some(100), 7).await,
        &[1, 2, 3, 4, 5, 6, 7],
        false,
        "after=0 before=100 limit=7",
    );
}

/// An unknown session and a session without messages list nothing; another session's
/// messages never appear.
pub async fn list_empty_and_isolated<S: Store + ?Sized>(store: &S) {
    let a = new_session(store).await;
    let b = new_session(store).await;
    expect_page(
        &page(store, &SessionId::new(), None, None, 10).await,
        &[],
        false,
        "unknown session",
    );
    expect_page(
        &page(store, &SessionId::new(), Some(0), None, 10).await,
        &[],
        false,
        "unknown session, after=0",
    );
    expect_page(
        &page(store, &a.id, None, None, 10).await,
        &[],
        false,
        "session without messages",
    );
    fill(store, &a, 2).await;
    fill(store, &b, 3).await;
    expect_page(
        &page(store, &a.id, None, None, 10).await,
        &[1, 2],
        false,
        "session a (b has 3)",
    );
    expect_page(
        &page(store, &a.id, Some(0), None, 10).await,
        &[1, 2],
        false,
        "session a after=0 (b has 3)",
    );
    expect_page(
        &page(store, &b.id, None, None, 10).await,
        &[1, 2, 3],
        false,
        "session b",
    );
}

// ----- status and read marks ---------------------------------------------------------------

/// `advance_status` moves a status forward by rank and returns the updated message; to the
/// same or a lower rank it returns `None` and changes nothing.
pub async fn advance_status_only_forward<S: Store + ?Sized>(store: &S) {
    use MessageStatus::*;
    let s = new_session(store).await;
    let ms = fill(store, &s, 2).await;
    let (m, n) = (&ms[0], &ms[1]);
    let sid = s.id;
    let adv = |msg: &Message, st: MessageStatus| {
        let msg = msg.clone();
        async move {
            ok(
                store.advance_status(&msg, st).await,
                &format!("advance_status({})", st.as_str()),
            )
        }
    };
    let status_of = |id: MessageId| async move {
        ok(store.get_message(&sid, &id).await, "get_message")
            .expect("the message exists")
            .status
    };

    let up = adv(m, Dispatched).await;
    assert_eq!(
        up,
        Some(Message {
            status: Dispatched,
            ..m.clone()
        }),
        "received -> dispatched must return the updated message (only the status changed)"
    );
    assert_eq!(
        status_of(m.id).await,
        Dispatched,
        "received -> dispatched was not stored"
    );
    assert_eq!(
        adv(m, Dispatched).await,
        None,
        "dispatched -> dispatched must be None"
    );
    assert_eq!(
        adv(m, Received).await,
        None,
        "dispatched -> received must be None"
    );
    assert_eq!(
        status_of(m.id).await,
        Dispatched,
        "a refused advance changed the status"
    );
    assert_eq!(
        adv(m, Answered).await.map(|x| x.status),
        Some(Answered),
        "dispatched -> answered must advance"
    );
    assert_eq!(
        adv(m, Dispatched).await,
        None,
        "answered -> dispatched must be None"
    );
    assert_eq!(
        adv(m, Failed).await,
        None,
        "answered -> failed must be None"
    );
    assert_eq!(
        status_of(m.id).await,
        Answered,
        "a late dispatched/failed regressed answered"
    );

    assert_eq!(
        adv(n, Failed).await.map(|x| x.status),
        Some(Failed),
        "received -> failed must advance (skipping dispatched)"
    );
    assert_eq!(
        adv(n, Dispatched).await,
        None,
        "failed -> dispatched must be None"
    );
    assert_eq!(
        adv(n, Answered).await.map(|x| x.status),
        Some(Answered),
        "failed -> answered must advance"
    );
    assert_eq!(
        adv(n, Delivered).await.map(|x| x.status),
        Some(Delivered),
        "answered -> delivered must advance"
    );
    assert_eq!(
        adv(n, Answered).await,
        None,
        "delivered -> answered must be None"
    );
    assert_eq!(status_of(n.id).await, Delivered, "final status");
    assert_eq!(
        status_of(m.id).await,
        Answered,
        "advancing one message changed another"
    );
}

/// `advance_status` of an unknown message, or through another session, is `None` and
/// changes nothing.
pub async fn advance_status_of_unknown_message<S: Store + ?Sized>(store: &S) {
    let a = new_session(store).await;
    let b = new_session(store).await;
    let m = fill(store, &a, 1).await.remove(0);
    let r = ok(
        store
            .advance_status(
                &Message {
                    id: MessageId::new(),
                    ..m.clone()
                },
                MessageStatus::Answered,
            )
            .await,
        "advance_status",
    );
    assert_eq!(r, None, "advancing an unknown message must be None");
    let r = ok(
        store
            .advance_status(
                &Message {
                    session_id: b.id,
                    ..m.clone()
                },
                MessageStatus::Answered,
            )
            .await,
        "advance_status",
    );
    assert_eq!(
        r, None,
        "advancing a message through another session must be None"
    );
    let stored = ok(store.get_message(&a.id, &m.id).await, "get_message");
    assert_eq!(
        stored.map(|x| x.status),
        Some(MessageStatus::Received),
        "advancing through another session changed the message"
    );
}

/// `mark_read` raises `read_up_to`, never lowers it, clamps it to `last_seq`, and returns
/// the session; for an unknown session it is `None`.
pub async fn mark_read_never_lowers_and_clamps<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let sid = s.id;
    let mark = |up_to: u64| async move {
        match ok(store.mark_read(&sid, up_to).await, "mark_read") {
            Some(x) => x,
            None => panic!("mark_read({up_to}) returned None for a live session"),
        }
    };
    assert_eq!(
        mark(5).await.read_up_to,
        0,
        "read_up_to must be clamped to last_seq (0)"
    );
    fill(store, &s, 3).await;
    let after = mark(2).await;
    assert_eq!(after.read_up_to, 2, "mark_read(2) with 3 messages");
    assert_eq!(
        after.last_seq, 3,
        "mark_read must return the whole session (last_seq)"
    );
    assert_eq!(
        (after.id, after.expires_at),
        (s.id, s.expires_at),
        "mark_read returned another session"
    );
    assert_eq!(
        mark(1).await.read_up_to,
        2,
        "mark_read must never lower read_up_to"
    );
    assert_eq!(
        mark(0).await.read_up_to,
        2,
        "mark_read(0) must never lower read_up_to"
    );
    assert_eq!(
        mark(99).await.read_up_to,
        3,
        "read_up_to must be clamped to last_seq (3)"
    );
    assert_eq!(
        live(store, &s.id).await.read_up_to,
        3,
        "mark_read was not stored"
    );
    assert_eq!(
        ok(store.mark_read(&SessionId::new(), 1).await, "mark_read"),
        None,
        "mark_read of an unknown session must be None"
    );
}

// ----- connections and counters --------------------------------------------------------

/// Connections are stored, read back, listed per session only, and forgotten.
pub async fn connections_put_get_list_delete<S: Store + ?Sized>(store: &S) {
    let a = new_session(store).await;
    let b = new_session(store).await;
    let (c1, c2, c3) = (
        connection("conn-1", &a),
        connection("conn-2=", &a),
        connection("conn-3", &b),
    );
    for c in [&c1, &c2, &c3] {
        ok(store.put_connection(c).await, "put_connection");
    }
    assert_eq!(
        ok(store.get_connection(&c1.id).await, "get_connection"),
        Some(c1.clone()),
        "get_connection does not return the connection as put"
    );
    assert_eq!(
        ok(store.get_connection(&c3.id).await, "get_connection"),
        Some(c3.clone()),
        "get_connection of another session's connection"
    );
    assert_eq!(
        ok(store.get_connection("nobody").await, "get_connection"),
        None,
        "an unknown connection must be None"
    );
    let list = |id: SessionId| async move {
        sorted(ok(store.list_connections(&id).await, "list_connections"))
    };
    assert_eq!(
        list(a.id).await,
        vec![c1.clone(), c2.clone()],
        "connections of session a"
    );
    assert_eq!(
        list(b.id).await,
        vec![c3.clone()],
        "connections of session b"
    );
    assert_eq!(
        list(SessionId::new()).await,
        vec![],
        "connections of an unknown session"
    );

    ok(store.delete_connection(&c1).await, "delete_connection");
    assert_eq!(
        ok(store.get_connection(&c1.id).await, "get_connection"),
        None,
        "a deleted connection is still there"
    );
    assert_eq!(
        list(a.id).await,
        vec![c2.clone()],
        "session a after deleting conn-1"
    );
    assert_eq!(
        list(b.id).await,
        vec![c3.clone()],
        "deleting a's connection changed b's"
    );
}

/// Deleting an unknown (or already deleted) connection is not an error.
pub async fn delete_unknown_connection_is_ok<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let c = connection("conn-x", &s);
    if let Err(e) = store.delete_connection(&c).await {
        panic!("deleting an unknown connection must be Ok, got {e}");
    }
    ok(store.put_connection(&c).await, "put_connection");
    ok(store.delete_connection(&c).await, "delete_connection");
    if let Err(e) = store.delete_connection(&c).await {
        panic!("deleting a connection twice must be Ok, got {e}");
    }
    assert_eq!(
        ok(store.list_connections(&s.id).await, "list_connections"),
        vec![],
        "connections after deleting"
    );
}

/// `find_by_key` returns the message a key was first used for, per session, and `None`
/// for an unused key; it writes nothing (no seq is consumed).
pub async fn find_by_key_reads_without_writing<S: Store + ?Sized>(store: &S) {
    let a = new_session(store).await;
    let b = new_session(store).await;
    assert_eq!(
        ok(store.find_by_key(&a.id, "client#x").await, "find_by_key"),
        None,
        "an unused key"
    );
    let first = append(store, user_message(&a, "m1", Some("client#x"))).await;
    append(store, user_message(&a, "m2", None)).await;
    assert_eq!(
        ok(store.find_by_key(&a.id, "client#x").await, "find_by_key"),
        Some(first.message),
        "the key's message"
    );
    assert_eq!(
        ok(store.find_by_key(&b.id, "client#x").await, "find_by_key"),
        None,
        "a key of another session"
    );
    assert_eq!(live(store, &a.id).await.last_seq, 2, "find_by_key wrote");
}

/// `count_unread` counts the messages after a seq whose role is not `user`, all of them
/// (not one page), in one session only.
pub async fn count_unread_counts_every_message_not_from_the_user<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let other = new_session(store).await;
    for i in 1..=130u64 {
        let mut m = user_message(&s, &format!("m{i}"), None);
        if i % 10 != 0 {
            m.role = if i % 2 == 0 {
                Role::Assistant
            } else {
                Role::System
            };
        }
        append(store, m).await;
    }
    append(store, user_message(&other, "m1", None)).await;
    let count = |after| async move { ok(store.count_unread(&s.id, after).await, "count_unread") };
    assert_eq!(count(0).await, 117, "130 messages, 13 of them the user's");
    assert_eq!(count(100).await, 27, "after seq 100");
    assert_eq!(count(130).await, 0, "after the last");
    assert_eq!(count(u64::MAX).await, 0, "after u64::MAX");
    assert_eq!(
        ok(
            store.count_unread(&SessionId::new(), 0).await,
            "count_unread"
        ),
        0,
        "an unknown session"
    );
}

// ----- concurrency -------------------------------------------------------------------------

/// 50 concurrent appends to one session get exactly seqs 1..=50, each once, and all are
/// stored.
pub async fn concurrent_appends_get_gapless_distinct_seqs<S: Store + ?Sized>(store: &S) {
    const N: u64 = 50;
    let s = new_session(store).await;
    let results = futures_util::future::join_all(
        (1..=N).map(|i| store.append_message(user_message(&s, &format!("c{i}"), None))),
    )
    .await;
    let mut seqs = Vec::new();
    for r in results {
        let a = ok(r, "concurrent append_message").expect("a live session");
        assert!(a.created, "a concurrent append without key must be created");
        seqs.push(a.message.seq);
    }
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        seqs.len(),
        "concurrent appends got duplicate seqs: {seqs:?}"
    );
    assert_eq!(
        distinct,
        (1..=N).collect::<BTreeSet<u64>>(),
        "concurrent appends must get exactly 1..={N}"
    );
    assert_eq!(
        live(store, &s.id).await.last_seq,
        N,
        "last_seq after concurrent appends"
    );
    let q = PageQuery {
        after: Some(0),
        before: None,
        limit: 100,
    };
    let listed = ok(store.list_messages(&s.id, q).await, "list_messages");
    let listed_seqs: Vec<u64> = listed.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        listed_seqs,
        (1..=N).collect::<Vec<u64>>(),
        "every concurrent append must be stored, in seq order"
    );
}

/// 10 concurrent appends with the same idempotency key store one message; all return it.
pub async fn concurrent_idempotent_appends_write_once<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let results = futures_util::future::join_all(
        (0..10).map(|i| store.append_message(user_message(&s, &format!("m{i}"), Some("same")))),
    )
    .await;
    let appended: Vec<Appended> = results
        .into_iter()
        .map(|r| ok(r, "concurrent append_message").expect("a live session"))
        .collect();
    let created = appended.iter().filter(|a| a.created).count();
    assert_eq!(
        created, 1,
        "exactly one of 10 concurrent appends with one key may be created"
    );
    let ids: BTreeSet<MessageId> = appended.iter().map(|a| a.message.id).collect();
    assert_eq!(
        ids.len(),
        1,
        "concurrent appends with one key returned different messages"
    );
    assert_eq!(
        live(store, &s.id).await.last_seq,
        1,
        "concurrent repeats consumed seqs"
    );
}

// ----- rate limiting -----------------------------------------------------------------

/// Runs every check of a [`Limiter`](chat_core::rate::Limiter) on fresh ones from `make`, and
/// panics naming every check that failed.
pub async fn run_limiter<F, Fut, L>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = L>,
    L: chat_core::rate::Limiter,
{
    let mut failures: Vec<(&'static str, String)> = Vec::new();
    macro_rules! checks {
        ($($name:ident),* $(,)?) => {$(
            let limiter = make().await;
            if let Err(payload) = AssertUnwindSafe($name(&limiter)).catch_unwind().await {
                failures.push((stringify!($name), panic_text(payload.as_ref())));
            }
        )*};
    }
    checks!(
        limiter_applies_gcra_per_key,
        limiter_refusals_change_nothing,
        concurrent_takes_never_overdraw,
    );
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(name, msg)| format!("  - limiter check `{name}` failed: {msg}"))
            .collect();
        panic!("limiter checks failed:\n{}", list.join("\n"));
    }
}

fn unique_key(what: &str) -> String {
    format!("{what}#{}", ulid::Ulid::new())
}

/// 4 per second: four pass at once, the fifth waits one interval (250 ms); keys are apart;
/// an interval later one more passes; a bucket idle for a period is full again.
pub async fn limiter_applies_gcra_per_key<L: chat_core::rate::Limiter + ?Sized>(limiter: &L) {
    let rate = chat_core::rate::Rate::per(4, 1_000);
    let (a, b) = (unique_key("a"), unique_key("b"));
    for i in 0..4 {
        assert_eq!(
            ok(limiter.take(&a, NOW, rate).await, "take"),
            None,
            "take {i} of a full bucket"
        );
    }
    assert_eq!(
        ok(limiter.take(&a, NOW, rate).await, "take"),
        Some(250),
        "the fifth at once"
    );
    assert_eq!(
        ok(limiter.take(&b, NOW, rate).await, "take"),
        None,
        "another key is full"
    );
    assert_eq!(
        ok(limiter.take(&a, NOW + 250, rate).await, "take"),
        None,
        "one interval later"
    );
    assert_eq!(
        ok(limiter.take(&a, NOW + 250, rate).await, "take"),
        Some(250),
        "and then empty again"
    );
    for i in 0..4 {
        assert_eq!(
            ok(limiter.take(&a, NOW + 10_000, rate).await, "take"),
            None,
            "take {i} after a long idle time"
        );
    }
}

/// Refused takes do not move the next token further away.
pub async fn limiter_refusals_change_nothing<L: chat_core::rate::Limiter + ?Sized>(limiter: &L) {
    let rate = chat_core::rate::Rate::per(1, 60_000);
    let k = unique_key("r");
    assert_eq!(ok(limiter.take(&k, NOW, rate).await, "take"), None);
    for t in [1, 1_000, 30_000, 59_999] {
        assert_eq!(
            ok(limiter.take(&k, NOW + t, rate).await, "take"),
            Some(60_000 - t),
            "refused at +{t} ms"
        );
    }
    assert_eq!(ok(limiter.take(&k, NOW + 60_000, rate).await, "take"), None);
}

/// 20 concurrent takes from a bucket of 5: exactly 5 pass.
pub async fn concurrent_takes_never_overdraw<L: chat_core::rate::Limiter + ?Sized>(limiter: &L) {
    let rate = chat_core::rate::Rate::per(5, 60_000);
    let k = unique_key("c");
    let results =
        futures_util::future::join_all((0..20).map(|_| limiter.take(&k, NOW, rate))).await;
    let passed = results
        .into_iter()
        .map(|r| ok(r, "concurrent take"))
        .filter(Option::is_none)
        .count();
    assert_eq!(passed, 5, "of 20 concurrent takes from a bucket of 5");
}
