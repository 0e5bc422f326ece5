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

const DAY_SECS: u64 = 24 * 3600;

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
    /// How long a session token lives (the session's data may live longer: retention).
    pub guest_session_ttl: Duration,
    pub user_session_ttl: Duration,
    /// How long a guest's session and messages are kept after its last activity
    /// (`CHAT_RETENTION_DAYS_GUEST`).
    pub guest_retention: Duration,
    /// The same for a signed-in user's sessions (`CHAT_RETENTION_DAYS_USER`).
    pub user_retention: Duration,
    /// How many earlier messages go to n8n as `history`.
    pub history_for_agent: u32,
    /// How long after sending its sender may edit or delete a message
    /// (`CHAT_EDIT_WINDOW_S`; 0: never).
    pub edit_window: Duration,
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
            guest_retention: Duration::from_secs(30 * DAY_SECS),
            user_retention: Duration::from_secs(365 * DAY_SECS),
            history_for_agent: 20,
            edit_window: Duration::from_secs(300),
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
    /// How long n8n's whole answer (a streamed one, or a body read whole) may take, counted
    /// from the request; `timeout` bounds only the wait for its status and headers.
    pub stream_timeout: Duration,
    /// `CHAT_HANDOFF_TIMEOUT_MS`: how long a session waits for a person before the bot
    /// resumes; `None` (unset): it waits until an agent claims or releases it.
    pub handoff_timeout: Option<Duration>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Duration::from_millis(1000),
            timeout: Duration::from_millis(10_000),
            reply_timeout: Duration::from_millis(120_000),
            stream_timeout: Duration::from_millis(90_000),
            handoff_timeout: None,
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

/// A header sent with every dispatch for n8n's own authentication (`CHAT_N8N_AUTH_HEADER`,
/// `Name: value`). The value is a secret: never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub name: String,
    pub value: Secret,
}

impl AuthHeader {
    /// Parses `Name: value`: a header name of token characters (not one we set ourselves)
    /// and a non-empty value of visible ASCII, spaces and tabs.
    pub fn parse(s: &str) -> Option<Self> {
        let (name, value) = s.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        let reserved = [
            "content-type",
            "content-length",
            "host",
            "transfer-encoding",
        ];
        let lower = name.to_ascii_lowercase();
        if name.is_empty()
            || !name.chars().all(token)
            || reserved.contains(&lower.as_str())
            || lower.starts_with("x-chat-")
            || value.is_empty()
            || !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
        {
            return None;
        }
        Some(Self {
            name: name.to_string(),
            value: Secret::new(value),
        })
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
    /// Sent with every dispatch (`CHAT_N8N_AUTH_HEADER`).
    pub n8n_auth_header: Option<AuthHeader>,
    /// Stored as every new session's first assistant message (`CHAT_WELCOME_MESSAGE`).
    pub welcome_message: Option<String>,
    /// Ask n8n for a greeting when a session starts (`CHAT_N8N_SESSION_START=true`).
    pub n8n_session_start: bool,
    /// Attachment limits (`CHAT_ATTACHMENT_*`).
    pub attachments: crate::attachments::AttachmentConfig,
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
            // At least as long as the session token lives, so a valid token finds its session.
            guest_retention: Duration::from_secs(
                num(env, "CHAT_RETENTION_DAYS_GUEST", 30, 1, 36_500)? * DAY_SECS,
            ),
            user_retention: Duration::from_secs(
                num(env, "CHAT_RETENTION_DAYS_USER", 365, 7, 36_500)? * DAY_SECS,
            ),
            edit_window: Duration::from_secs(num(
                env,
                "CHAT_EDIT_WINDOW_S",
                d.edit_window.as_secs(),
                0,
                7 * DAY_SECS,
            )?),
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
            stream_timeout: Duration::from_millis(num(
                env,
                "CHAT_STREAM_TIMEOUT_MS",
                dd.stream_timeout.as_millis() as u64,
                1,
                900_000,
            )?),
            handoff_timeout: match env("CHAT_HANDOFF_TIMEOUT_MS").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(_) => Some(Duration::from_millis(num(
                    env,
                    "CHAT_HANDOFF_TIMEOUT_MS",
                    0,
                    1_000,
                    86_400_000,
                )?)),
            },
        };
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let n8n_auth_header = set("CHAT_N8N_AUTH_HEADER")
            .map(|v| {
                AuthHeader::parse(&v).ok_or(ConfigError::Invalid {
                    name: "CHAT_N8N_AUTH_HEADER",
                    expected: "'Name: value' (a header name and a non-empty value)",
                })
            })
            .transpose()?;
        let welcome_message = set("CHAT_WELCOME_MESSAGE")
            .map(|v| {
                crate::validate::content(&v, limits.max_reply_chars)
                    .map(|()| v)
                    .map_err(|_| ConfigError::Invalid {
                        name: "CHAT_WELCOME_MESSAGE",
                        expected: "visible text of at most CHAT_MAX_REPLY_CHARS characters",
                    })
            })
            .transpose()?;
        let n8n_session_start = match set("CHAT_N8N_SESSION_START").as_deref().map(str::trim) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "CHAT_N8N_SESSION_START",
                    expected: "true or false",
                });
            }
        };
        let da = crate::attachments::AttachmentConfig::default();
        let attachments = crate::attachments::AttachmentConfig {
            max_bytes: num(
                env,
                "CHAT_ATTACHMENT_MAX_BYTES",
                da.max_bytes,
                1,
                5 * 1024 * 1024 * 1024,
            )?,
            types: match set("CHAT_ATTACHMENT_TYPES") {
                None => da.types,
                Some(v) => crate::attachments::parse_types(&v).ok_or(ConfigError::Invalid {
                    name: "CHAT_ATTACHMENT_TYPES",
                    expected: "a comma-separated list of media types (type/subtype)",
                })?,
            },
            per_message: num(
                env,
                "CHAT_ATTACHMENTS_PER_MESSAGE",
                da.per_message as u64,
                1,
                20,
            )? as usize,
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
            n8n_auth_header,
            welcome_message,
            n8n_session_start,
            attachments,
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
        assert_eq!(c.limits.guest_retention, Duration::from_secs(30 * DAY_SECS));
        assert_eq!(c.limits.user_retention, Duration::from_secs(365 * DAY_SECS));
        assert_eq!(c.limits.edit_window, Duration::from_secs(300));
    }

    #[test]
    fn the_edit_window_is_read_in_seconds() {
        let c = cfg(&[("CHAT_EDIT_WINDOW_S", "0")]).unwrap();
        assert_eq!(c.limits.edit_window, Duration::ZERO);
        let c = cfg(&[("CHAT_EDIT_WINDOW_S", "3600")]).unwrap();
        assert_eq!(c.limits.edit_window, Duration::from_secs(3600));
        for v in ["-1", "five minutes", "604801"] {
            let e = cfg(&[("CHAT_EDIT_WINDOW_S", v)]).unwrap_err().to_string();
            assert!(e.contains("CHAT_EDIT_WINDOW_S"), "{e}");
        }
    }

    #[test]
    fn retention_is_read_in_days_and_never_shorter_than_a_token() {
        let c = cfg(&[
            ("CHAT_RETENTION_DAYS_GUEST", "2"),
            ("CHAT_RETENTION_DAYS_USER", "90"),
        ])
        .unwrap();
        assert_eq!(c.limits.guest_retention, Duration::from_secs(2 * DAY_SECS));
        assert_eq!(c.limits.user_retention, Duration::from_secs(90 * DAY_SECS));
        for (k, v) in [
            ("CHAT_RETENTION_DAYS_GUEST", "0"),
            ("CHAT_RETENTION_DAYS_USER", "6"),
            ("CHAT_RETENTION_DAYS_USER", "a year"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn malformed_numbers_name_the_variable() {
        let e = cfg(&[("CHAT_DISPATCH_MAX_ATTEMPTS", "three")]).unwrap_err();
        assert!(e.to_string().contains("CHAT_DISPATCH_MAX_ATTEMPTS"));
        assert!(cfg(&[("CHAT_RATE_MESSAGES_PER_MINUTE", "0")]).is_err());
        assert!(cfg(&[("CHAT_REPLY_TIMEOUT_MS", "900001")]).is_err());
        assert!(cfg(&[("CHAT_HANDOFF_TIMEOUT_MS", "10")]).is_err());
        assert_eq!(cfg(&[]).unwrap().dispatch.handoff_timeout, None);
        assert_eq!(
            cfg(&[("CHAT_HANDOFF_TIMEOUT_MS", "60000")])
                .unwrap()
                .dispatch
                .handoff_timeout,
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            cfg(&[("CHAT_MAX_CONTENT_CHARS", "12")])
                .unwrap()
                .limits
                .max_content_chars,
            12
        );
    }

    #[test]
    fn attachment_limits_have_defaults_and_are_validated() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.attachments.max_bytes, 10_485_760);
        assert_eq!(c.attachments.per_message, 5);
        assert!(c.attachments.types.contains(&"application/pdf".to_string()));
        let c = cfg(&[
            ("CHAT_ATTACHMENT_MAX_BYTES", "100"),
            ("CHAT_ATTACHMENT_TYPES", "image/png, Text/CSV"),
            ("CHAT_ATTACHMENTS_PER_MESSAGE", "2"),
        ])
        .unwrap();
        assert_eq!(c.attachments.max_bytes, 100);
        assert_eq!(c.attachments.types, vec!["image/png", "text/csv"]);
        assert_eq!(c.attachments.per_message, 2);
        for (k, v) in [
            ("CHAT_ATTACHMENT_MAX_BYTES", "0"),
            ("CHAT_ATTACHMENT_TYPES", "png"),
            ("CHAT_ATTACHMENTS_PER_MESSAGE", "0"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(e.starts_with(k) && !e.contains(v), "{e}");
        }
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
    fn the_n8n_settings_are_validated_without_echoing_values() {
        let c = cfg(&[
            ("CHAT_N8N_AUTH_HEADER", "Authorization: Basic dXNlcjpwYXNz"),
            ("CHAT_WELCOME_MESSAGE", "Hi! How can I help?"),
            ("CHAT_STREAM_TIMEOUT_MS", "5000"),
        ])
        .unwrap();
        let h = c.n8n_auth_header.unwrap();
        assert_eq!(
            (h.name.as_str(), h.value.expose()),
            ("Authorization", "Basic dXNlcjpwYXNz")
        );
        assert_eq!(c.welcome_message.as_deref(), Some("Hi! How can I help?"));
        assert_eq!(c.dispatch.stream_timeout, Duration::from_millis(5000));
        let d = cfg(&[]).unwrap();
        assert!(d.n8n_auth_header.is_none() && d.welcome_message.is_none());
        assert!(!d.n8n_session_start);
        assert!(
            cfg(&[("CHAT_N8N_SESSION_START", "true")])
                .unwrap()
                .n8n_session_start
        );
        assert!(
            !cfg(&[("CHAT_N8N_SESSION_START", "false")])
                .unwrap()
                .n8n_session_start
        );
        let e = cfg(&[("CHAT_N8N_SESSION_START", "yes")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CHAT_N8N_SESSION_START") && !e.contains("yes"),
            "{e}"
        );
        assert_eq!(d.dispatch.stream_timeout, Duration::from_millis(90_000));
        for bad in [
            "no colon",
            ": value",
            "Bad Name: v",
            "X-Key:",
            "Content-Type: text/plain",
            "X-Chat-Signature: forged",
            "X-Key: s3cret\u{7f}",
        ] {
            let e = cfg(&[("CHAT_N8N_AUTH_HEADER", bad)]).unwrap_err();
            assert!(e.to_string().contains("CHAT_N8N_AUTH_HEADER"), "{bad}");
            assert!(!e.to_string().contains("s3cret") && !e.to_string().contains("forged"));
        }
        assert!(cfg(&[("CHAT_WELCOME_MESSAGE", "\u{200B}")]).is_err());
        let debug = format!(
            "{:?}",
            cfg(&[("CHAT_N8N_AUTH_HEADER", "X-Key: s3cret")]).unwrap()
        );
        assert!(
            debug.contains("X-Key") && !debug.contains("s3cret"),
            "{debug}"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
