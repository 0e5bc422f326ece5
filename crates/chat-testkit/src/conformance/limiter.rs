//! Rate-limit buckets: every `Limiter` applies GCRA per key, atomically.

use super::*;

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

pub(super) fn unique_key(what: &str) -> String {
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
