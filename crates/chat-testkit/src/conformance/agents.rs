//! People in the loop: the mode's compare-and-set (and the claim race), the inbox index,
//! canned replies, agent connections, and what appends do with the mode.

use super::*;
use chat_core::model::{
    AgentConnection, AgentRef, AgentStatus, CannedReply, InboxQuery, InboxView, Mode, ModeState,
};
use chat_core::ports::CannedWrite;

fn agent(i: usize) -> AgentRef {
    AgentRef {
        id: format!("a-{i}"),
        name: format!("Agent {i}"),
    }
}

async fn set<S: Store + ?Sized>(
    store: &S,
    s: &SessionId,
    from: &ModeState,
    to: &ModeState,
    now: Millis,
) -> Option<Session> {
    ok(store.set_mode(s, from, to, now).await, "set_mode")
}

/// Runs every check of people in the loop, each on a fresh store from `make`, and panics
/// naming every check that failed.
pub async fn run_agents<F, Fut, S>(make: F)
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
        a_new_session_is_with_the_bot,
        appends_report_the_mode_and_bump_activity,
        set_mode_is_a_compare_and_set,
        every_transition_round_trips,
        a_closed_session_refuses_open_only_appends,
        concurrent_claims_have_exactly_one_winner,
        inbox_views_filter_order_and_page,
        canned_replies_crud,
        agent_connections_put_get_list_delete,
        agent_message_names_round_trip,
    );
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(name, msg)| format!("  - agents conformance check `{name}` failed: {msg}"))
            .collect();
        panic!(
            "{} of {total} agents conformance checks failed:\n{}",
            failures.len(),
            list.join("\n")
        );
    }
}

pub async fn a_new_session_is_with_the_bot<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let got = live(store, &s.id).await;
    assert_eq!(got.mode, ModeState::bot());
    assert_eq!(got.updated_at, NOW, "updated_at starts as given");
}

pub async fn appends_report_the_mode_and_bump_activity<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let mut m = user_message(&s, "hi", None);
    m.created_at = NOW + 50;
    let a = append(store, m).await;
    assert!(a.created);
    assert_eq!(a.mode, ModeState::bot());
    assert_eq!(live(store, &s.id).await.updated_at, NOW + 50);
    let held = ModeState::agent(agent(1));
    set(store, &s.id, &ModeState::bot(), &held, NOW + 60)
        .await
        .expect("bot → agent");
    let mut older = user_message(&s, "late", None);
    older.created_at = NOW + 55;
    let a = append(store, older).await;
    assert_eq!(a.mode, held, "the append sees the holder");
    assert_eq!(
        live(store, &s.id).await.updated_at,
        NOW + 60,
        "an older message never lowers updated_at"
    );
}

pub async fn set_mode_is_a_compare_and_set<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let waiting = ModeState::waiting(NOW + 1);
    // A wrong expected mode changes nothing.
    assert!(
        set(store, &s.id, &ModeState::closed(), &waiting, NOW + 1)
            .await
            .is_none()
    );
    assert_eq!(live(store, &s.id).await.mode, ModeState::bot());
    let got = set(store, &s.id, &ModeState::bot(), &waiting, NOW + 1)
        .await
        .expect("bot → waiting");
    assert_eq!(got.mode, waiting);
    assert_eq!(got.updated_at, NOW + 1);
    // The same change again: the expected mode is gone.
    assert!(
        set(store, &s.id, &ModeState::bot(), &waiting, NOW + 2)
            .await
            .is_none()
    );
    set(store, &s.id, &waiting, &ModeState::agent(agent(1)), NOW + 3)
        .await
        .expect("waiting → agent");
    // The holder is compared too (by id; the name does not matter).
    let other = ModeState::agent(agent(2));
    assert!(
        set(store, &s.id, &other, &ModeState::bot(), NOW + 4)
            .await
            .is_none()
    );
    let renamed = ModeState::agent(AgentRef {
        id: "a-1".into(),
        name: "Someone".into(),
    });
    let back = set(store, &s.id, &renamed, &ModeState::bot(), NOW + 4)
        .await
        .expect("held by a-1 → bot");
    assert_eq!(
        back.mode,
        ModeState::bot(),
        "holder and waiting time cleared"
    );
    // Unknown and expired sessions change nothing.
    assert!(
        set(store, &SessionId::new(), &ModeState::bot(), &waiting, NOW)
            .await
            .is_none()
    );
    let dead = session_until(NOW + 10);
    ok(store.create_session(&dead).await, "create_session");
    assert!(
        set(store, &dead.id, &ModeState::bot(), &waiting, NOW + 10)
            .await
            .is_none()
    );
}

pub async fn every_transition_round_trips<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let steps = [
        ModeState::waiting(NOW + 1),
        ModeState::agent(agent(1)),
        ModeState::agent(agent(2)),
        ModeState::bot(),
        ModeState::waiting(NOW + 5),
        ModeState::bot(),
        ModeState::agent(agent(3)),
        ModeState::closed(),
    ];
    let mut current = ModeState::bot();
    for (i, next) in steps.iter().enumerate() {
        let now = NOW + 10 + i as Millis;
        let got = set(store, &s.id, &current, next, now)
            .await
            .unwrap_or_else(|| panic!("{:?} → {:?} refused", current.mode, next.mode));
        assert_eq!(&got.mode, next);
        assert_eq!(&live(store, &s.id).await.mode, next, "read back");
        current = next.clone();
    }
    assert_eq!(live(store, &s.id).await.mode.mode, Mode::Closed);
}

pub async fn a_closed_session_refuses_open_only_appends<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    set(store, &s.id, &ModeState::bot(), &ModeState::closed(), NOW)
        .await
        .expect("bot → closed");
    let mut m = user_message(&s, "anyone?", Some("k1"));
    m.open_only = true;
    let a = append(store, m).await;
    assert!(a.refused(), "nothing written: {a:?}");
    assert_eq!(a.mode.mode, Mode::Closed);
    assert_eq!(live(store, &s.id).await.last_seq, 0);
    assert!(ok(store.find_by_key(&s.id, "k1").await, "find_by_key").is_none());
    // Other writers (the system's notices, late replies) still append.
    let a = append(store, user_message(&s, "notice", None)).await;
    assert!(a.created && a.message.seq == 1);
}

pub async fn concurrent_claims_have_exactly_one_winner<S: Store + ?Sized>(store: &S) {
    const N: usize = 20;
    let s = new_session(store).await;
    let waiting = ModeState::waiting(NOW);
    set(store, &s.id, &ModeState::bot(), &waiting, NOW)
        .await
        .expect("bot → waiting");
    let claims: Vec<ModeState> = (0..N).map(|i| ModeState::agent(agent(i))).collect();
    let results = futures_util::future::join_all(
        claims
            .iter()
            .map(|c| store.set_mode(&s.id, &waiting, c, NOW + 1)),
    )
    .await;
    let winners: Vec<usize> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| ok(r, "concurrent set_mode").map(|_| i))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {winners:?}");
    let held = live(store, &s.id).await.mode;
    assert_eq!(held, claims[winners[0]], "the stored holder is the winner");
}

pub async fn inbox_views_filter_order_and_page<S: Store + ?Sized>(store: &S) {
    // w1..w3 wait (w2 longest), h1 held by a-1 (older activity), h2 by a-2, b with the bot,
    // c closed, x waiting but expired.
    let mut made = Vec::new();
    for _ in 0..7 {
        made.push(new_session(store).await);
    }
    let id = |i: usize| made[i].id;
    let to = |i: usize, m: ModeState, at: Millis| {
        let sid = made[i].id;
        async move {
            set(store, &sid, &ModeState::bot(), &m, at)
                .await
                .expect("set_mode from bot");
        }
    };
    to(0, ModeState::waiting(NOW + 20), NOW + 20).await;
    to(1, ModeState::waiting(NOW + 10), NOW + 10).await;
    to(2, ModeState::waiting(NOW + 30), NOW + 30).await;
    to(3, ModeState::agent(agent(1)), NOW + 5).await;
    to(4, ModeState::agent(agent(2)), NOW + 40).await;
    to(6, ModeState::closed(), NOW + 50).await;
    let dead = session_until(NOW + 100);
    ok(store.create_session(&dead).await, "create_session");
    set(
        store,
        &dead.id,
        &ModeState::bot(),
        &ModeState::waiting(NOW),
        NOW,
    )
    .await
    .expect("waiting");
    let page = |view: InboxView, after: Option<(Millis, SessionId)>, limit: u32| async move {
        let q = InboxQuery {
            view,
            after,
            limit,
            now: NOW + 100,
        };
        let got = ok(store.list_inbox(&q).await, "list_inbox");
        got.iter().map(|s| s.id).collect::<Vec<_>>()
    };
    assert_eq!(
        page(InboxView::Waiting, None, 10).await,
        [id(1), id(0), id(2)],
        "waiting: oldest first, expired left out"
    );
    assert_eq!(page(InboxView::Mine("a-1".into()), None, 10).await, [id(3)]);
    assert_eq!(page(InboxView::Mine("a-9".into()), None, 10).await, []);
    assert_eq!(
        page(InboxView::Open, None, 10).await,
        [id(4), id(2), id(0), id(1), id(3)],
        "open: waiting and held, newest activity first"
    );
    // Paging: limit, then after the last one's (time, id).
    assert_eq!(page(InboxView::Waiting, None, 2).await, [id(1), id(0)]);
    assert_eq!(
        page(InboxView::Waiting, Some((NOW + 20, id(0))), 2).await,
        [id(2)]
    );
    assert_eq!(
        page(InboxView::Open, Some((NOW + 30, id(2))), 10).await,
        [id(0), id(1), id(3)]
    );
    // A message moves a session up in open (activity), not in waiting.
    let mut m = user_message(&made[1], "still there?", None);
    m.created_at = NOW + 60;
    append(store, m).await;
    assert_eq!(page(InboxView::Open, None, 1).await, [id(1)]);
    assert_eq!(page(InboxView::Waiting, None, 1).await, [id(1)]);
}

fn canned(shortcut: &str) -> CannedReply {
    CannedReply {
        id: ulid::Ulid::new().to_string(),
        shortcut: shortcut.into(),
        title: format!("Title {shortcut}"),
        text: format!("Text of {shortcut}"),
        updated_at: NOW,
    }
}

pub async fn canned_replies_crud<S: Store + ?Sized>(store: &S) {
    let (b, a) = (canned("refund"), canned("hello"));
    assert!(ok(store.create_canned(&b).await, "create_canned"));
    assert!(ok(store.create_canned(&a).await, "create_canned"));
    assert!(
        !ok(store.create_canned(&canned("hello")).await, "create_canned"),
        "a used shortcut is refused"
    );
    assert_eq!(
        ok(store.list_canned().await, "list_canned"),
        [a.clone(), b.clone()]
    );
    let mut edited = a.clone();
    edited.text = "Hi there".into();
    edited.updated_at = NOW + 1;
    assert_eq!(
        ok(store.update_canned(&edited).await, "update"),
        CannedWrite::Written
    );
    let mut clash = b.clone();
    clash.shortcut = "hello".into();
    assert_eq!(
        ok(store.update_canned(&clash).await, "update"),
        CannedWrite::ShortcutTaken
    );
    assert_eq!(
        ok(store.update_canned(&canned("nobody")).await, "update"),
        CannedWrite::NotFound
    );
    // Keeping its own shortcut is no clash.
    assert_eq!(
        ok(store.update_canned(&b).await, "update"),
        CannedWrite::Written
    );
    assert_eq!(
        ok(store.list_canned().await, "list_canned"),
        [edited, b.clone()]
    );
    assert!(ok(store.delete_canned(&a.id).await, "delete_canned"));
    assert!(!ok(store.delete_canned(&a.id).await, "delete_canned"));
    assert_eq!(ok(store.list_canned().await, "list_canned"), [b]);
    // The deleted shortcut is free again.
    assert!(ok(
        store.create_canned(&canned("hello")).await,
        "create_canned"
    ));
}

pub async fn agent_connections_put_get_list_delete<S: Store + ?Sized>(store: &S) {
    let c = |id: &str, a: usize| AgentConnection {
        id: id.into(),
        agent: agent(a),
        status: AgentStatus::Online,
        connected_at: NOW,
        expires_at: NOW + DAY,
    };
    ok(store.put_agent_connection(&c("c2", 1)).await, "put");
    ok(store.put_agent_connection(&c("c1", 2)).await, "put");
    let mut away = c("c2", 1);
    away.status = AgentStatus::Away;
    ok(
        store.put_agent_connection(&away).await,
        "put (status change)",
    );
    assert_eq!(
        ok(store.get_agent_connection("c2").await, "get"),
        Some(away.clone())
    );
    assert_eq!(
        ok(store.list_agent_connections().await, "list"),
        [c("c1", 2), away]
    );
    ok(store.delete_agent_connection("c2").await, "delete");
    ok(
        store.delete_agent_connection("unknown").await,
        "delete unknown",
    );
    assert_eq!(ok(store.get_agent_connection("c2").await, "get"), None);
    assert_eq!(
        ok(store.list_agent_connections().await, "list"),
        [c("c1", 2)]
    );
    // User connections are another thing.
    assert!(ok(store.get_connection("c1").await, "get_connection").is_none());
}

pub async fn agent_message_names_round_trip<S: Store + ?Sized>(store: &S) {
    let s = new_session(store).await;
    let mut m = user_message(&s, "Hello, I am Alex", None);
    m.role = Role::Agent;
    m.name = Some("Alex".into());
    m.status = MessageStatus::Delivered;
    let a = append(store, m).await;
    let got = ok(store.get_message(&s.id, &a.message.id).await, "get_message").unwrap();
    assert_eq!(got.name.as_deref(), Some("Alex"));
    assert_eq!(got.role, Role::Agent);
    assert_eq!(got, a.message);
}
