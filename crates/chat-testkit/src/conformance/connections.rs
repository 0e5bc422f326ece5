//! Statuses, read marks, connections, idempotency lookups and unread counts.

use super::*;

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

/// Connections are stored, read back, listed per session only, and forgotten.
pub async fn connections_put_get_list_delete<S: Store + ?Sized>(store: &S) {
    let a = new_session(store).await;
    let b = new_session(store).await;
    let (c1, c2, c3) = (
        connection("conn-1", &a),
        // One that opted into merged frames: the flag is kept (get and list).
        Connection {
            merged: true,
            ..connection("conn-2=", &a)
        },
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
        ok(store.get_connection(&c2.id).await, "get_connection"),
        Some(c2.clone()),
        "get_connection must keep `merged` (the client's v=2)"
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
