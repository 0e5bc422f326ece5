//! The attachment records' suite: every documented semantic of [`AttachmentStore`]: the
//! round trip, the all-or-none claim (session, expiry, another message), its release, the
//! purge's listing, and a race of two messages for one file.

use super::*;
use chat_core::attachments::{Attachment, AttachmentStore};
use chat_core::model::AttachmentId;

/// Runs every check of the attachment records, each on a fresh store from `make`, and
/// panics naming every check that failed. `sweeps`: whether the store lists stale records
/// (`false` for a store whose records expire on their own, e.g. by DynamoDB TTL).
pub async fn run_attachments<F, Fut, S>(make: F, sweeps: bool)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: AttachmentStore,
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
        attachment_round_trips_every_field,
        a_claim_is_all_or_none,
        a_claim_checks_session_and_expiry,
        a_claim_by_the_same_message_repeats,
        a_release_frees_only_its_own_claims,
        two_messages_racing_for_one_file_have_one_winner,
        delete_forgets_a_record,
    );
    if sweeps {
        checks!(stale_lists_only_unclaimed_expired_records);
    }
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(name, msg)| format!("  - attachment check `{name}` failed: {msg}"))
            .collect();
        panic!(
            "{} of {total} attachment checks failed:\n{}",
            failures.len(),
            list.join("\n")
        );
    }
}

fn record(session: &SessionId) -> Attachment {
    Attachment {
        id: AttachmentId::new(),
        session_id: *session,
        name: "Résumé \"final\" ✓.pdf".into(),
        content_type: "application/pdf".into(),
        size: 10_485_760,
        created_at: NOW,
        expires_at: NOW + 3_600_000,
        message_id: None,
    }
}

async fn put<S: AttachmentStore + ?Sized>(store: &S, session: &SessionId) -> Attachment {
    let a = record(session);
    ok(store.put_attachment(&a).await, "put_attachment");
    a
}

async fn get<S: AttachmentStore + ?Sized>(store: &S, id: &AttachmentId) -> Option<Attachment> {
    ok(store.get_attachment(id).await, "get_attachment")
}

async fn claim<S: AttachmentStore + ?Sized>(
    store: &S,
    session: &SessionId,
    ids: &[AttachmentId],
    message: &MessageId,
    now: Millis,
) -> bool {
    ok(
        store
            .claim_attachments(session, ids, message, now, NOW + DAY)
            .await,
        "claim_attachments",
    )
}

/// Every field survives; an unknown id is `None`.
pub async fn attachment_round_trips_every_field<S: AttachmentStore + ?Sized>(store: &S) {
    let s = SessionId::new();
    let a = put(store, &s).await;
    assert_eq!(get(store, &a.id).await, Some(a.clone()), "get_attachment");
    assert_eq!(
        get(store, &AttachmentId::new()).await,
        None,
        "an unknown id"
    );
    let m = MessageId::new();
    assert!(claim(store, &s, &[a.id], &m, NOW).await, "a fresh claim");
    assert_eq!(
        get(store, &a.id).await.and_then(|a| a.message_id),
        Some(m),
        "the claim names its message"
    );
}

/// One claimable and one already used by another message: nothing is claimed.
pub async fn a_claim_is_all_or_none<S: AttachmentStore + ?Sized>(store: &S) {
    let s = SessionId::new();
    let (a, b) = (put(store, &s).await, put(store, &s).await);
    let first = MessageId::new();
    assert!(claim(store, &s, &[b.id], &first, NOW).await, "claim b");
    let second = MessageId::new();
    assert!(
        !claim(store, &s, &[a.id, b.id], &second, NOW).await,
        "a claim naming a file of another message must fail"
    );
    assert_eq!(
        get(store, &a.id).await.unwrap().message_id,
        None,
        "a failed claim claimed part of its files"
    );
    assert!(
        !claim(store, &s, &[a.id, AttachmentId::new()], &second, NOW).await,
        "a claim naming an unknown file must fail"
    );
    assert_eq!(
        get(store, &a.id).await.unwrap().message_id,
        None,
        "half a claim"
    );
}

/// Another session's file, or an unclaimed one past its expiry, cannot be claimed.
pub async fn a_claim_checks_session_and_expiry<S: AttachmentStore + ?Sized>(store: &S) {
    let s = SessionId::new();
    let a = put(store, &s).await;
    let m = MessageId::new();
    assert!(
        !claim(store, &SessionId::new(), &[a.id], &m, NOW).await,
        "a file of another session was claimed"
    );
    assert!(
        !claim(store, &s, &[a.id], &m, a.expires_at).await,
        "an expired file was claimed"
    );
    assert!(
        claim(store, &s, &[a.id], &m, a.expires_at - 1).await,
        "before expiry"
    );
}

/// A retry of the same message's claim succeeds (and still holds after the file's own
/// expiry, as the message keeps it).
pub async fn a_claim_by_the_same_message_repeats<S: AttachmentStore + ?Sized>(store: &S) {
    let s = SessionId::new();
    let a = put(store, &s).await;
    let m = MessageId::new();
    assert!(claim(store, &s, &[a.id], &m, NOW).await, "first");
    assert!(claim(store, &s, &[a.id], &m, NOW + 1).await, "a repeat");
    assert!(
        claim(store, &s, &[a.id], &m, a.expires_at + 1).await,
        "a repeat after the file's hour"
    );
    assert!(
        get(store, &a.id).await.is_some(),
        "a claimed file must outlive its hour"
    );
}

/// A release frees the files its message claimed, and leaves another message's alone.
pub async fn a_release_frees_only_its_own_claims<S: AttachmentStore + ?Sized>(store: &S) {
    let s = SessionId::new();
    let (a, b) = (put(store, &s).await, put(store, &s).await);
    let (m1, m2) = (MessageId::new(), MessageId::new());
    assert!(claim(store, &s, &[a.id], &m1, NOW).await);
    assert!(claim(store, &s, &[b.id], &m2, NOW).await);
    ok(
        store.release_attachments(&[a.id, b.id], &m1).await,
        "release_attachments",
    );
    assert_eq!(
        get(store, &a.id).await.unwrap().message_id,
        None,
        "a released"
    );
    assert_eq!(
        get(store, &b.id).await.unwrap().message_id,
        Some(m2),
        "a release undid another message's claim"
    );
    assert!(
        claim(store, &s, &[a.id], &m2, NOW).await,
        "a released file is free"
    );
}

/// Two messages claim one file at once: exactly one wins.
pub async fn two_messages_racing_for_one_file_have_one_winner<S: AttachmentStore + ?Sized>(
    store: &S,
) {
    let s = SessionId::new();
    for _ in 0..5 {
        let a = put(store, &s).await;
        let (m1, m2) = (MessageId::new(), MessageId::new());
        let (r1, r2) = futures_util::future::join(
            store.claim_attachments(&s, &[a.id], &m1, NOW, NOW + DAY),
            store.claim_attachments(&s, &[a.id], &m2, NOW, NOW + DAY),
        )
        .await;
        let wins = [ok(r1, "claim 1"), ok(r2, "claim 2")];
        assert_eq!(
            wins.iter().filter(|w| **w).count(),
            1,
            "two racing claims: {wins:?}"
        );
    }
}

/// Only records at or past their expiry are stale (a claimed one lives with its message), at
/// most `limit` of them.
pub async fn stale_lists_only_unclaimed_expired_records<S: AttachmentStore + ?Sized>(store: &S) {
    let s = SessionId::new();
    let (old, claimed, fresh) = (put(store, &s).await, put(store, &s).await, record(&s));
    let fresh = Attachment {
        expires_at: NOW + 7_200_000,
        ..fresh
    };
    ok(store.put_attachment(&fresh).await, "put_attachment");
    assert!(claim(store, &s, &[claimed.id], &MessageId::new(), NOW).await);
    let stale = ok(
        store.stale_attachments(old.expires_at, 10).await,
        "stale_attachments",
    );
    assert_eq!(
        stale.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![old.id],
        "stale at the first record's expiry"
    );
    assert!(
        ok(
            store.stale_attachments(old.expires_at - 1, 10).await,
            "stale"
        )
        .is_empty(),
        "nothing is stale before its expiry"
    );
    let many = ok(store.stale_attachments(NOW + DAY, 1).await, "stale");
    assert_eq!(many.len(), 1, "the limit");
}

/// A deleted record is gone; deleting it again is not an error.
pub async fn delete_forgets_a_record<S: AttachmentStore + ?Sized>(store: &S) {
    let s = SessionId::new();
    let a = put(store, &s).await;
    ok(store.delete_attachment(&a.id).await, "delete_attachment");
    assert_eq!(get(store, &a.id).await, None, "deleted");
    ok(store.delete_attachment(&a.id).await, "delete again");
}
