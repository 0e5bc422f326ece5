//! Appending messages: seqs, every field, missing and expired sessions, idempotency keys,
//! reading by id.

use super::*;

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
        attachments: vec![
            chat_core::model::AttachmentMeta {
                id: chat_core::model::AttachmentId::new(),
                name: "Résumé \"final\" ✓.pdf".into(),
                content_type: "application/pdf".into(),
                size: 10_485_760,
                url: None,
            },
            chat_core::model::AttachmentMeta {
                id: chat_core::model::AttachmentId::new(),
                name: "a.png".into(),
                content_type: "image/png".into(),
                size: 1,
                url: None,
            },
        ],
        idempotency_key: Some("event#e-1".into()),
        name: None,
        agent_id: None,
        open_only: false,
        limit: None,
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

/// An append with a limit takes a token from the session's bucket in the same write: the
/// limit passes at once, the next is refused with the wait and writes nothing (no message,
/// no key, no token), a repeat is answered from an empty bucket and takes nothing, the
/// other bucket and appends without a limit are not counted, and the bucket refills.
pub async fn an_append_takes_its_limit_in_the_same_write<S: Store + ?Sized>(store: &S) {
    use chat_core::model::{AppendLimit, SessionBucket};
    let s = new_session(store).await;
    let limited = |content: &str, key: Option<&str>, at: Millis, bucket: SessionBucket| {
        let mut m = user_message(&s, content, key);
        m.created_at = at;
        m.limit = Some(AppendLimit {
            bucket,
            rate: chat_core::rate::Rate::per(2, 60_000),
        });
        m
    };
    let msg = SessionBucket::Messages;
    let first = append(store, limited("m1", Some("client#1"), NOW, msg)).await;
    let second = append(store, limited("m2", None, NOW, msg)).await;
    assert!(
        first.created && second.created,
        "two of two per minute must pass"
    );
    assert_eq!(
        (first.retry_after, second.retry_after),
        (None, None),
        "a passed append has no retry_after"
    );
    let refused = append(store, limited("refused", Some("client#3"), NOW, msg)).await;
    assert!(
        !refused.created,
        "the third within the minute must be refused"
    );
    assert_eq!(
        refused.retry_after,
        Some(30_000),
        "refused until the next token (one interval, 30 s)"
    );
    assert_eq!(refused.message.seq, 0, "a refused append is unnumbered");
    assert_eq!(
        live(store, &s.id).await.last_seq,
        2,
        "a refused append wrote"
    );
    assert_eq!(
        ok(store.find_by_key(&s.id, "client#3").await, "find_by_key"),
        None,
        "a refused append kept its idempotency key"
    );
    let repeat = append(store, limited("m1", Some("client#1"), NOW, msg)).await;
    assert!(
        !repeat.created && repeat.message.id == first.message.id && repeat.retry_after.is_none(),
        "a repeat must be answered from an empty bucket: {repeat:?}"
    );
    let mut free = user_message(&s, "m3", None);
    free.created_at = NOW;
    assert!(
        append(store, free).await.created,
        "an append without a limit"
    );
    let other = append(store, limited("m4", None, NOW, SessionBucket::Webhook)).await;
    assert!(other.created, "the other bucket is full");
    // The refusal and the repeat took nothing: one interval later exactly one more passes.
    let later = append(store, limited("m5", None, NOW + 30_000, msg)).await;
    assert!(later.created, "one token back after 30 s");
    let again = append(store, limited("refused again", None, NOW + 30_000, msg)).await;
    assert_eq!(
        again.retry_after,
        Some(30_000),
        "and only one: the refusal and the repeat took no token"
    );
    expect_page(
        &page(store, &s.id, None, None, 10).await,
        &[1, 2, 3, 4, 5],
        false,
        "after the limited appends",
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
