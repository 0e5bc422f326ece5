//! Sessions: round trip and expiry.

use super::*;

/// A created session reads back equal (guest and user, with and without metadata), with
/// `last_seq` and `read_up_to` 0; an unknown id is `None`.
pub async fn session_round_trip<S: Store + ?Sized>(store: &S) {
    let guest = session_until(NOW + DAY);
    let user = Session {
        user_id: Some("user-42".into()),
        expires_at: NOW + 7 * DAY,
        metadata: serde_json::json!({"page": "/pricing", "locale": "de-CH", "plan": {"tier": 2}})
            .as_object()
            .cloned(),
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
