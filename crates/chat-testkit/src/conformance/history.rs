//! History pages, in every direction.

use super::*;

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
