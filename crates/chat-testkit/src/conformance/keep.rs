//! Conversations people keep: a user's sessions by activity, retention that slides with
//! activity, the title, and erasure of everything of a session.

use super::*;
use chat_core::model::{InboxQuery, InboxView, ModeState, title_of};

fn users_session(user: &str, updated_at: Millis) -> Session {
    Session {
        user_id: Some(user.into()),
        created_at: updated_at,
        updated_at,
        ..session_until(updated_at + DAY)
    }
}

async fn user_page<S: Store + ?Sized>(
    store: &S,
    user: &str,
    after: Option<&Session>,
    limit: u32,
    now: Millis,
) -> Vec<SessionId> {
    ok(
        store
            .list_user_sessions(user, after.map(|s| (s.updated_at, s.id)), limit, now)
            .await,
        "list_user_sessions",
    )
    .into_iter()
    .map(|s| s.id)
    .collect()
}

/// A user's sessions come newest activity first (an append moves one to the front), paged
/// by `(updated_at, id)`, without other users', guests' or expired sessions.
pub async fn user_sessions_newest_activity_first_and_paged<S: Store + ?Sized>(store: &S) {
    let a = users_session("u1", NOW);
    let b = users_session("u1", NOW + 10);
    let c = users_session("u1", NOW + 20);
    // Same activity as `c`: ties go by id, descending.
    let d = Session {
        id: SessionId::new(),
        ..c.clone()
    };
    let other = users_session("u2", NOW + 30);
    let guest = session_until(NOW + DAY);
    let old = Session {
        expires_at: NOW + 50,
        ..users_session("u1", NOW + 40)
    };
    for s in [&a, &b, &c, &d, &other, &guest, &old] {
        ok(store.create_session(s).await, "create_session");
    }
    let (hi, lo) = if d.id > c.id { (&d, &c) } else { (&c, &d) };
    let all = user_page(store, "u1", None, 10, NOW + 60).await;
    assert_eq!(
        all,
        vec![hi.id, lo.id, b.id, a.id],
        "u1's live sessions, newest activity first (ties by id, descending); no other user's, guest's or expired one"
    );
    assert_eq!(
        user_page(store, "u1", None, 10, NOW + 45).await.first(),
        Some(&old.id),
        "a session alive at `now` is listed"
    );
    // Activity moves `a` to the front.
    let moved = NewMessage {
        created_at: NOW + 100,
        ..user_message(&a, "hello", None)
    };
    append(store, moved).await;
    let page1 = user_page(store, "u1", None, 2, NOW + 60).await;
    assert_eq!(
        page1,
        vec![a.id, hi.id],
        "after an append to the oldest, it comes first"
    );
    let a_now = live(store, &a.id).await;
    let hi_now = live(store, &hi.id).await;
    assert_eq!(a_now.updated_at, NOW + 100, "the append moved updated_at");
    let page2 = user_page(store, "u1", Some(&hi_now), 2, NOW + 60).await;
    assert_eq!(
        page2,
        vec![lo.id, b.id],
        "the second page follows the first"
    );
    let page3 = user_page(store, "u1", Some(&b), 2, NOW + 60).await;
    assert!(page3.is_empty(), "nothing after the last: {page3:?}");
    assert!(
        user_page(store, "nobody", None, 10, NOW).await.is_empty(),
        "an unknown user has no sessions"
    );
}

/// An append moves `expires_at` by as much as it moves `updated_at` (the retention slides);
/// so does a change of mode. The first `user` message sets the title, nothing else does.
pub async fn activity_slides_retention_and_the_first_user_message_titles<S: Store + ?Sized>(
    store: &S,
) {
    let s = new_session(store).await;
    let reply = NewMessage {
        role: Role::Assistant,
        status: MessageStatus::Delivered,
        created_at: NOW + 1_000,
        ..user_message(&s, "Welcome!", None)
    };
    append(store, reply).await;
    let after_reply = live(store, &s.id).await;
    assert_eq!(
        after_reply.expires_at,
        s.expires_at + 1_000,
        "an append 1 s after the last activity must move expires_at by 1 s"
    );
    assert_eq!(
        after_reply.title, None,
        "an assistant message must not title the session"
    );
    let long = format!("  Where is\nmy order {}", "x".repeat(200));
    let first = NewMessage {
        created_at: NOW + 3_000,
        ..user_message(&s, &long, None)
    };
    append(store, first).await;
    let second = NewMessage {
        created_at: NOW + 2_000,
        ..user_message(&s, "a later question", None)
    };
    append(store, second).await;
    let got = live(store, &s.id).await;
    assert_eq!(
        got.title.as_deref(),
        Some(title_of(&long).as_str()),
        "the title is title_of(the first user message)"
    );
    assert_eq!(got.title.as_ref().map(|t| t.chars().count()), Some(80));
    assert_eq!(
        got.expires_at,
        s.expires_at + 3_000,
        "an append older than the last activity must not move expires_at"
    );
    let moved = ok(
        store
            .set_mode(
                &s.id,
                &ModeState::bot(),
                &ModeState::waiting(NOW + 5_000),
                NOW + 5_000,
            )
            .await,
        "set_mode",
    )
    .expect("set_mode of a live session in bot mode");
    assert_eq!(
        moved.expires_at,
        s.expires_at + 5_000,
        "a change of mode is activity too"
    );
    assert_eq!(live(store, &s.id).await.expires_at, s.expires_at + 5_000);
    // Kept for its retention after the last activity: alive past the first expiry.
    assert!(
        ok(
            store.get_session(&s.id, s.expires_at + 1).await,
            "get_session"
        )
        .is_some(),
        "a session with recent activity must outlive its first expiry"
    );
}

/// `erase_session` removes the session, its messages, idempotency keys, connections and
/// user-index entry; another session is untouched; erasing again reports `false`.
pub async fn erase_session_removes_everything_of_it<S: Store + ?Sized>(store: &S) {
    let gone = users_session("u1", NOW);
    let kept = users_session("u1", NOW + 1);
    ok(store.create_session(&gone).await, "create_session");
    ok(store.create_session(&kept).await, "create_session");
    for s in [&gone, &kept] {
        append(store, user_message(s, "m1", Some("client#k"))).await;
        append(store, user_message(s, "m2", None)).await;
        ok(
            store
                .put_connection(&connection(&format!("c-{}", s.id), s))
                .await,
            "put_connection",
        );
    }
    let first =
        ok(store.find_by_key(&gone.id, "client#k").await, "find_by_key").expect("the key was used");
    assert!(
        ok(store.erase_session(&gone.id).await, "erase_session"),
        "erasing a stored session reports true"
    );
    assert_eq!(
        ok(store.get_session(&gone.id, NOW).await, "get_session"),
        None,
        "the erased session still reads back"
    );
    let p = page(store, &gone.id, Some(0), None, 10).await;
    assert!(p.messages.is_empty(), "erased messages still listed");
    assert_eq!(
        ok(store.get_message(&gone.id, &first.id).await, "get_message"),
        None,
        "an erased message still reads by id"
    );
    assert_eq!(
        ok(store.find_by_key(&gone.id, "client#k").await, "find_by_key"),
        None,
        "an erased idempotency key still points somewhere"
    );
    assert!(
        ok(store.list_connections(&gone.id).await, "list_connections").is_empty(),
        "erased connections still listed"
    );
    assert_eq!(
        ok(
            store.get_connection(&format!("c-{}", gone.id)).await,
            "get_connection"
        ),
        None,
        "an erased connection still reads by id"
    );
    assert_eq!(
        user_page(store, "u1", None, 10, NOW).await,
        vec![kept.id],
        "the erased session is still in its user's list"
    );
    assert!(
        !ok(store.erase_session(&gone.id).await, "erase_session"),
        "erasing twice reports false"
    );
    assert_eq!(
        page(store, &kept.id, Some(0), None, 10)
            .await
            .messages
            .len(),
        2,
        "the other session lost messages"
    );
    assert!(
        ok(store.find_by_key(&kept.id, "client#k").await, "find_by_key").is_some(),
        "the other session lost its key"
    );
    assert_eq!(
        ok(store.list_connections(&kept.id).await, "list_connections").len(),
        1,
        "the other session lost its connection"
    );
}

/// An erased session that waited for a person is gone from the agents' inbox.
pub async fn erased_sessions_leave_the_inbox<S: Store + ?Sized>(store: &S) {
    let s = users_session("u1", NOW);
    ok(store.create_session(&s).await, "create_session");
    ok(
        store
            .set_mode(
                &s.id,
                &ModeState::bot(),
                &ModeState::waiting(NOW + 1),
                NOW + 1,
            )
            .await,
        "set_mode",
    )
    .expect("set_mode");
    let q = InboxQuery {
        view: InboxView::Waiting,
        after: None,
        limit: 10,
        now: NOW + 2,
    };
    let before = ok(store.list_inbox(&q).await, "list_inbox");
    assert_eq!(before.len(), 1, "the waiting session is in the inbox");
    ok(store.erase_session(&s.id).await, "erase_session");
    let after = ok(store.list_inbox(&q).await, "list_inbox");
    assert!(after.is_empty(), "an erased session is still in the inbox");
}
