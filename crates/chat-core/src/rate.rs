//! Fixed-window rate limits over the store's atomic counters.
//!
//! A window of `window_ms` has one counter keyed `rate#<scope>#<who>#<window index>`; the
//! store increments it atomically and forgets it after the window. Going over the limit is a
//! 429 whose `Retry-After` is the time left in the window.

use crate::ChatError;
use crate::model::Millis;
use crate::ports::Store;

/// Counts one hit for `who` in `scope`; fails with 429 past `limit` hits per window.
pub async fn hit(
    store: &dyn Store,
    scope: &str,
    who: &str,
    limit: u64,
    window_ms: Millis,
    now: Millis,
) -> Result<(), ChatError> {
    let window = now.div_euclid(window_ms);
    let window_end = (window + 1) * window_ms;
    let key = format!("rate#{scope}#{who}#{window}");
    // Keep the counter a little past its window so a slow clock elsewhere still sees it.
    let count = store.increment_counter(&key, window_end + 60_000).await?;
    if count > limit {
        let retry_after_secs = ((window_end - now) as u64).div_ceil(1000).max(1);
        return Err(ChatError::RateLimited { retry_after_secs });
    }
    Ok(())
}
