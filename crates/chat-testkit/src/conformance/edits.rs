//! Edit and delete: a change keeps the message's `id` and `seq`, a tombstone is final, and
//! the changes are listed by `updated_at` (a sparse index of changed messages).

use super::*;
use chat_core::model::MessageChange;

async fn change<S: Store + ?Sized>(
    store: &S,
    session: &Session,
    m: &Message,
    change: MessageChange,
    at: Millis,
) -> Option<Message> {
    ok(
        store
            .change_message(
                &Message {
                    session_id: session.id,
                    ..m.clone()
                },
                &change,
                at,
            )
            .await,
        &format!("change_message({change:?})"),
    )
}

async fn changed<S: Store + ?Sized>(
    store: &S,
    session: &Session,
    after: Millis,
    limit: u32,
) -> (Vec<u64>, bool) {
    let p = ok(
        store.list_changed(&session.id, after, limit).await,
        "list_changed",
    );
    for m in &p.messages {
        assert_eq!(m.session_id, session.id, "list_changed: another session's");
        assert!(m.updated_at > after, "list_changed({after}): {m:?}");
    }
    (p.messages.iter().map(|m| m.seq).collect(), p.has_more)
}

/// An edit sets content and `edited_at`, a deletion makes a tombstone (content, data and
/// metadata emptied, `deleted_at`); both keep `id` and `seq`, move `updated_at`, and read
/// back the same through `get_message` and `list_messages`. A tombstone cannot change again,
/// an unknown message or one of another session is not changed.
pub async fn edits_and_deletes_keep_id_and_seq<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let other = new_session(store).await;
    let mut first = user_message(&s, "first", None);
    first.metadata = Some(Map::from_iter([("page".to_string(), json!("/pricing"))]));
    first.attachments = vec![chat_core::model::AttachmentMeta {
        id: Default::default(),
        name: "card.png".into(),
        content_type: "image/png".into(),
        size: 3,
        url: None,
    }];
    let first = append(store, first).await.message;
    let second = append(store, user_message(&s, "second", None))
        .await
        .message;
    let agent = NewMessage {
        role: Role::Agent,
        name: Some("Alex".into()),
        agent_id: Some("a-1".into()),
        ..user_message(&s, "from an agent", None)
    };
    let agent = append(store, agent).await.message;
    let read = ok(store.get_message(&s.id, &agent.id).await, "get_message").unwrap();
    assert_eq!(read.agent_id.as_deref(), Some("a-1"), "agent_id is kept");
    assert_eq!(
        (
            read.updated_at,
            read.edited_at,
            read.deleted,
            read.deleted_at
        ),
        (NOW, None, false, None),
        "an unchanged message: updated_at = created_at"
    );

    let edited = change(
        store,
        &s,
        &second,
        MessageChange::Edit("second, fixed".into()),
        NOW + 10,
    )
    .await
    .expect("an edit of a stored message");
    assert_eq!((edited.id, edited.seq), (second.id, second.seq));
    assert_eq!(edited.content, "second, fixed");
    assert_eq!(
        (edited.edited_at, edited.updated_at, edited.deleted),
        (Some(NOW + 10), NOW + 10, false)
    );
    assert_eq!(edited.created_at, NOW, "created_at stays");

    let gone = change(store, &s, &first, MessageChange::Delete, NOW + 20)
        .await
        .expect("a deletion of a stored message");
    assert_eq!((gone.id, gone.seq), (first.id, first.seq));
    assert_eq!(
        (
            gone.content.as_str(),
            gone.deleted,
            gone.deleted_at,
            gone.updated_at
        ),
        ("", true, Some(NOW + 20), NOW + 20)
    );
    assert_eq!(
        (&gone.data, &gone.metadata),
        (&None, &None),
        "a tombstone keeps no data"
    );

    let stored = ok(
        store
            .list_messages(
                &s.id,
                PageQuery {
                    after: None,
                    before: None,
                    limit: 10,
                },
            )
            .await,
        "list_messages",
    );
    assert_eq!(
        stored.messages,
        vec![gone.clone(), edited.clone(), read.clone()],
        "history reads the changes back, field by field"
    );
    assert_eq!(
        ok(store.get_message(&s.id, &first.id).await, "get_message"),
        Some(gone.clone())
    );

    assert_eq!(
        change(
            store,
            &s,
            &first,
            MessageChange::Edit("back".into()),
            NOW + 30
        )
        .await,
        None,
        "a tombstone cannot be edited"
    );
    assert_eq!(
        change(store, &s, &first, MessageChange::Delete, NOW + 30).await,
        None,
        "nor deleted again"
    );
    assert_eq!(
        ok(store.get_message(&s.id, &first.id).await, "get_message"),
        Some(gone),
        "a refused change writes nothing"
    );
    assert_eq!(
        change(store, &other, &second, MessageChange::Delete, NOW + 30).await,
        None,
        "a message is changed only through its own session"
    );
    let unknown = Message {
        id: MessageId::new(),
        ..second.clone()
    };
    assert_eq!(
        change(store, &s, &unknown, MessageChange::Delete, NOW + 30).await,
        None,
        "an unknown id"
    );
    let wrong_seq = Message {
        seq: 99,
        ..second.clone()
    };
    assert_eq!(
        change(store, &s, &wrong_seq, MessageChange::Delete, NOW + 30).await,
        None,
        "a message is found by id and seq"
    );
    assert_eq!(
        ok(store.get_message(&s.id, &second.id).await, "get_message"),
        Some(edited)
    );
}

/// The changes of a session, oldest change first and paged by `updated_at`; a message edited
/// again moves to its new time (listed once); untouched messages and other sessions' changes
/// are never listed; an erased session leaves none.
pub async fn changes_are_listed_by_update_time<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let other = new_session(store).await;
    let ms = fill(store, &s, 4).await;
    let theirs = fill(store, &other, 1).await;
    assert_eq!(
        changed(store, &s, 0, 10).await,
        (vec![], false),
        "nothing changed yet"
    );
    change(
        store,
        &s,
        &ms[2],
        MessageChange::Edit("three".into()),
        NOW + 10,
    )
    .await;
    change(store, &s, &ms[0], MessageChange::Delete, NOW + 20).await;
    change(
        store,
        &s,
        &ms[1],
        MessageChange::Edit("two".into()),
        NOW + 30,
    )
    .await;
    change(
        store,
        &other,
        &theirs[0],
        MessageChange::Edit("x".into()),
        NOW + 15,
    )
    .await;
    assert_eq!(changed(store, &s, NOW, 10).await, (vec![3, 1, 2], false));
    assert_eq!(
        changed(store, &s, NOW, 2).await,
        (vec![3, 1], true),
        "a page"
    );
    assert_eq!(
        changed(store, &s, NOW + 20, 2).await,
        (vec![2], false),
        "strictly after"
    );
    assert_eq!(changed(store, &s, NOW + 30, 10).await, (vec![], false));
    change(
        store,
        &s,
        &ms[2],
        MessageChange::Edit("three again".into()),
        NOW + 40,
    )
    .await;
    assert_eq!(
        changed(store, &s, NOW, 10).await,
        (vec![1, 2, 3], false),
        "edited again: listed once, at its new time"
    );
    assert_eq!(changed(store, &other, NOW, 10).await, (vec![1], false));
    ok(store.erase_session(&s.id).await, "erase_session");
    assert_eq!(changed(store, &s, 0, 10).await, (vec![], false), "erased");
}
