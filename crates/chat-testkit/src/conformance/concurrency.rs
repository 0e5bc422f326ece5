//! Concurrent appends: distinct gapless seqs, one write per idempotency key.

use super::*;

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
