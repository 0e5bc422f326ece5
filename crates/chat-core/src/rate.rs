//! Rate limits as token buckets (GCRA, the generic cell rate algorithm).
//!
//! A limit of `n` per `period` lets `n` requests through at once and then one every
//! `period / n`: bursts are bounded by `n`, the sustained rate by `n / period`, and no window
//! boundary doubles them (fixed windows let `2n` through in a moment around a boundary). The
//! whole state of a bucket is one number, its *theoretical arrival time* (TAT): the time at
//! which the bucket will be full again. A request at `now` passes when
//! `TAT <= now + period - interval`, and then moves the TAT to `max(TAT, now) + interval`.
//! A refused request changes nothing, so hammering a limit writes nothing.
//!
//! Where buckets live is a port ([`Limiter`]): in the memory of the one `chat-local` process
//! ([`MemoryLimiter`]), in DynamoDB for the Lambdas (a conditional update per request).

use crate::ChatError;
use crate::model::Millis;
use crate::ports::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// `limit` requests per `period_ms`, all of them at once if the bucket is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u64,
    pub period_ms: Millis,
}

impl Rate {
    pub const fn per(limit: u64, period_ms: Millis) -> Self {
        Self { limit, period_ms }
    }

    /// The time one request costs: `period / limit`, at least 1 ms.
    pub fn interval(self) -> Millis {
        let limit = self.limit.clamp(1, Millis::MAX as u64) as Millis;
        (self.period_ms / limit).max(1)
    }

    /// How far the TAT may run ahead of now and still let a request through.
    pub fn tolerance(self) -> Millis {
        self.period_ms.saturating_sub(self.interval())
    }
}

/// The GCRA step: given the bucket's TAT (`None`: full) at `now`, `Ok(new TAT)` when the
/// request passes, `Err(ms to wait)` when it does not. Every [`Limiter`] applies exactly this.
pub fn gcra(tat: Option<Millis>, now: Millis, rate: Rate) -> Result<Millis, Millis> {
    let tat = tat.unwrap_or(now).max(now);
    let allow_at = tat.saturating_sub(rate.tolerance());
    if allow_at > now {
        Err(allow_at - now)
    } else {
        Ok(tat.saturating_add(rate.interval()))
    }
}

/// Where buckets are kept. Implementations must apply [`gcra`] atomically per key (two
/// concurrent requests never both take the last token) and may forget a bucket once its TAT
/// has passed (it is full again then).
#[async_trait]
pub trait Limiter: Send + Sync {
    /// Takes one token from the bucket `key`. `Ok(None)`: passed; `Ok(Some(ms))`: refused,
    /// the next token comes in `ms`.
    async fn take(&self, key: &str, now: Millis, rate: Rate) -> Result<Option<Millis>, StoreError>;
}

/// Counts one request of `who` in `scope`; a 429 with `Retry-After` when the bucket is empty.
pub async fn hit(
    limiter: &dyn Limiter,
    scope: &str,
    who: &str,
    rate: Rate,
    now: Millis,
) -> Result<(), ChatError> {
    match limiter.take(&format!("{scope}#{who}"), now, rate).await? {
        None => Ok(()),
        Some(wait_ms) => Err(limited(wait_ms)),
    }
}

/// The 429 of a request refused for `wait_ms` (whole seconds in `Retry-After`, at least 1).
pub fn limited(wait_ms: Millis) -> ChatError {
    ChatError::RateLimited {
        retry_after_secs: (wait_ms.max(1) as u64).div_ceil(1000),
    }
}

/// Buckets in this process's memory: right for one process that owns every request
/// (`chat-local`), and for tests. Full buckets are dropped once the map grows, so memory is
/// bounded by the clients active within one period.
#[derive(Default)]
pub struct MemoryLimiter {
    buckets: Mutex<HashMap<String, Millis>>,
}

/// Past this many buckets, full ones are swept out on the next insert.
const SWEEP_AT: usize = 4096;

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Limiter for MemoryLimiter {
    async fn take(&self, key: &str, now: Millis, rate: Rate) -> Result<Option<Millis>, StoreError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match gcra(buckets.get(key).copied(), now, rate) {
            Err(wait) => Ok(Some(wait)),
            Ok(tat) => {
                if buckets.len() >= SWEEP_AT && !buckets.contains_key(key) {
                    buckets.retain(|_, t| *t > now);
                }
                buckets.insert(key.to_string(), tat);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_the_limit_through_at_once_then_one_per_interval() {
        let rate = Rate::per(10, 60_000);
        let mut tat = None;
        for i in 0..10 {
            tat = Some(gcra(tat, 0, rate).unwrap_or_else(|w| panic!("request {i} refused ({w})")));
        }
        assert_eq!(
            gcra(tat, 0, rate),
            Err(6_000),
            "the 11th waits one interval"
        );
        assert_eq!(gcra(tat, 5_999, rate), Err(1));
        assert!(gcra(tat, 6_000, rate).is_ok());
    }

    #[test]
    fn no_window_boundary_doubles_the_burst() {
        // Fixed windows let 20 through between 59 s and 61 s; the bucket lets 10 (plus none).
        let rate = Rate::per(10, 60_000);
        let mut tat = None;
        let mut passed = 0;
        for t in (59_000..61_000).step_by(100) {
            if let Ok(new) = gcra(tat, t, rate) {
                tat = Some(new);
                passed += 1;
            }
        }
        assert_eq!(passed, 10);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let rate = Rate::per(u64::MAX, Millis::MAX);
        assert!(gcra(Some(Millis::MAX), Millis::MAX, rate).is_ok());
        assert!(gcra(Some(Millis::MIN), Millis::MIN, Rate::per(1, 1)).is_ok());
        assert_eq!(Rate::per(0, 10).interval(), 10);
    }

    #[tokio::test]
    async fn memory_limiter_keeps_buckets_apart_and_refuses_without_writing() {
        let l = MemoryLimiter::new();
        let rate = Rate::per(2, 1_000);
        assert_eq!(l.take("a", 0, rate).await.unwrap(), None);
        assert_eq!(l.take("a", 0, rate).await.unwrap(), None);
        assert_eq!(l.take("a", 0, rate).await.unwrap(), Some(500));
        assert_eq!(l.take("b", 0, rate).await.unwrap(), None);
        // Refusals did not push the next token further away.
        assert_eq!(l.take("a", 499, rate).await.unwrap(), Some(1));
        assert_eq!(l.take("a", 500, rate).await.unwrap(), None);
    }
}
