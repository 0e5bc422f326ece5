//! Configuration from the environment, validated once at start.
//!
//! Every limit of the contract has a default and can be changed with a `CHAT_*` variable. A
//! malformed value stops the process with a message naming the variable (never its value,
//! which may be a secret).

use std::fmt;
use std::time::Duration;

/// A secret string whose `Debug` output is redacted, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configuration variable that could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{name} must be {expected}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
    },
}

/// The limits of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest user message, in characters.
    pub max_content_chars: usize,
    /// Longest reply (n8n, agents), in characters: AI answers run long.
    pub max_reply_chars: usize,
    pub max_metadata_bytes: usize,
    pub max_body_bytes: usize,
    /// Per session.
    pub messages_per_minute: u64,
    /// Per client IP.
    pub sessions_per_5min: u64,
    /// Per session; refused (unsigned or badly signed) calls are counted per source IP.
    pub webhooks_per_minute: u64,
    /// `typing` frames per connection per minute; the rest are dropped unseen.
    pub typing_per_minute: u64,
    pub max_page: u32,
    pub guest_session_ttl: Duration,
    pub user_session_ttl: Duration,
    /// How many earlier messages go to n8n as `history`.
    pub history_for_agent: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_content_chars: 4000,
            max_reply_chars: 16_000,
            max_metadata_bytes: 4096,
            max_body_bytes: 64 * 1024,
            messages_per_minute: 10,
            sessions_per_5min: 3,
            webhooks_per_minute: 60,
            typing_per_minute: 30,
            max_page: 100,
            guest_session_ttl: Duration::from_secs(24 * 3600),
            user_session_ttl: Duration::from_secs(7 * 24 * 3600),
            history_for_agent: 20,
        }
    }
}

/// How user messages are delivered to n8n.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchConfig {
    pub max_attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
    /// How long a user message may wait for its reply before it is marked `failed` and the
    /// user is told (at most 15 minutes: SQS delays a message at most that long).
    pub reply_timeout: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Duration::from_millis(1000),
            timeout: Duration::from_millis(10_000),
            reply_timeout: Duration::from_millis(120_000),
        }
    }
}

impl DispatchConfig {
    /// The delay before attempt `next_attempt` (2, 3, ...): the backoff doubled each time.
    pub fn delay_before(&self, next_attempt: u32) -> Duration {
        let doublings = next_attempt.saturating_sub(2).min(20);
        self.backoff.saturating_mul(1 << doublings)
    }
}

/// Everything the service needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub webhook_secret: Secret,
    pub session_secret: Secret,
    /// Verifies the app's own JWTs; `None`: guest sessions only.
    pub auth_jwt_secret: Option<Secret>,
    /// JWKS, audience and issuer of app JWTs ([`crate::auth`]).
    pub app_auth: crate::auth::AppAuthConfig,
    /// Base URL n8n calls back (`<public_url>/webhook`).
    pub public_url: String,
    /// The WebSocket URL clients connect to (without query).
    pub websocket_url: String,
    pub limits: Limits,
    pub dispatch: DispatchConfig,
}

impl Config {
    /// Reads the `CHAT_*` limits and dispatch settings; secrets and URLs are given by the
    /// caller, because each deployment finds them differently.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        webhook_secret: Secret,
        session_secret: Secret,
        public_url: String,
        websocket_url: String,
    ) -> Result<Self, ConfigError> {
        let d = Limits::default();
        let dd = DispatchConfig::default();
        let limits = Limits {
            max_content_chars: num(
                env,
                "CHAT_MAX_CONTENT_CHARS",
                d.max_content_chars as u64,
                1,
                1_000_000,
            )? as usize,
            messages_per_minute: num(
                env,
                "CHAT_RATE_MESSAGES_PER_MINUTE",
                d.messages_per_minute,
                1,
                u32::MAX.into(),
            )?,
            sessions_per_5min: num(
                env,
                "CHAT_RATE_SESSIONS_PER_5MIN",
                d.sessions_per_5min,
                1,
                u32::MAX.into(),
            )?,
            webhooks_per_minute: num(
                env,
                "CHAT_RATE_WEBHOOKS_PER_MINUTE",
                d.webhooks_per_minute,
                1,
                u32::MAX.into(),
            )?,
            max_reply_chars: num(
                env,
                "CHAT_MAX_REPLY_CHARS",
                d.max_reply_chars as u64,
                1,
                1_000_000,
            )? as usize,
            ..d
        };
        let dispatch = DispatchConfig {
            max_attempts: num(
                env,
                "CHAT_DISPATCH_MAX_ATTEMPTS",
                dd.max_attempts.into(),
                1,
                100,
            )? as u32,
            backoff: Duration::from_millis(num(
                env,
                "CHAT_DISPATCH_BACKOFF_MS",
                1000,
                0,
                3_600_000,
            )?),
            timeout: Duration::from_millis(num(
                env,
                "CHAT_DISPATCH_TIMEOUT_MS",
                10_000,
                1,
                900_000,
            )?),
            reply_timeout: Duration::from_millis(num(
                env,
                "CHAT_REPLY_TIMEOUT_MS",
                120_000,
                1_000,
                900_000,
            )?),
        };
        let auth_jwt_secret = env("CHAT_AUTH_JWT_SECRET")
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        Ok(Self {
            webhook_secret,
            session_secret,
            auth_jwt_secret,
            app_auth: crate::auth::AppAuthConfig::from_env(env)?,
            public_url,
            websocket_url,
            limits,
            dispatch,
        })
    }
}

/// A whole number from the environment within `[min, max]`, or the default when unset.
pub fn num(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match env(name) {
        None => Ok(default),
        Some(v) if v.trim().is_empty() => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                expected: "a whole number in range",
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| map.get(k).cloned();
        Config::from_env(
            &env,
            Secret::new("a"),
            Secret::new("b"),
            "http://x".into(),
            "ws://x/ws".into(),
        )
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.limits.max_content_chars, 4000);
        assert_eq!(c.limits.messages_per_minute, 10);
        assert_eq!(c.limits.sessions_per_5min, 3);
        assert_eq!(c.limits.webhooks_per_minute, 60);
        assert_eq!(c.dispatch.max_attempts, 3);
        assert_eq!(c.dispatch.backoff, Duration::from_millis(1000));
        assert_eq!(c.dispatch.reply_timeout, Duration::from_millis(120_000));
        assert_eq!(c.limits.max_reply_chars, 16_000);
        assert!(c.auth_jwt_secret.is_none());
    }

    #[test]
    fn malformed_numbers_name_the_variable() {
        let e = cfg(&[("CHAT_DISPATCH_MAX_ATTEMPTS", "three")]).unwrap_err();
        assert!(e.to_string().contains("CHAT_DISPATCH_MAX_ATTEMPTS"));
        assert!(cfg(&[("CHAT_RATE_MESSAGES_PER_MINUTE", "0")]).is_err());
        assert!(cfg(&[("CHAT_REPLY_TIMEOUT_MS", "900001")]).is_err());
        assert_eq!(
            cfg(&[("CHAT_MAX_CONTENT_CHARS", "12")])
                .unwrap()
                .limits
                .max_content_chars,
            12
        );
    }

    #[test]
    fn backoff_doubles() {
        let d = DispatchConfig {
            max_attempts: 4,
            backoff: Duration::from_millis(100),
            ..DispatchConfig::default()
        };
        assert_eq!(d.delay_before(2), Duration::from_millis(100));
        assert_eq!(d.delay_before(3), Duration::from_millis(200));
        assert_eq!(d.delay_before(4), Duration::from_millis(400));
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
