//! The one error type of the contract.
//!
//! Every failure a client or n8n can see maps to an HTTP status and a stable machine-readable
//! `code`; the body is always `{"error":{"code":"...","message":"..."}}`. Messages are written
//! for the caller and never contain secrets, tokens or internal details.

use serde::Serialize;

/// Every machine-readable error `code` of the contract, in one place: the browser client and
/// n8n workflows branch on these strings, so none may change or be spelled twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    AuthExpired,
    AuthNotConfigured,
    AuthNotYetValid,
    ContentEmpty,
    ContentInvalid,
    ContentTooLong,
    InvalidAuth,
    InvalidInput,
    InvalidJson,
    InvalidQuery,
    InvalidSignature,
    InvalidTimestamp,
    InvalidToken,
    MissingAction,
    MissingSignature,
    MissingToken,
    StaleTimestamp,
    TokenExpired,
    UnknownAction,
    UnknownConnection,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    RateLimited,
    Unavailable,
    MethodNotAllowed,
    UpgradeRequired,
    RequestTimeout,
    TooManyConnections,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthExpired => "auth_expired",
            Self::AuthNotConfigured => "auth_not_configured",
            Self::AuthNotYetValid => "auth_not_yet_valid",
            Self::ContentEmpty => "content_empty",
            Self::ContentInvalid => "content_invalid",
            Self::ContentTooLong => "content_too_long",
            Self::InvalidAuth => "invalid_auth",
            Self::InvalidInput => "invalid_input",
            Self::InvalidJson => "invalid_json",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidSignature => "invalid_signature",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::InvalidToken => "invalid_token",
            Self::MissingAction => "missing_action",
            Self::MissingSignature => "missing_signature",
            Self::MissingToken => "missing_token",
            Self::StaleTimestamp => "stale_timestamp",
            Self::TokenExpired => "token_expired",
            Self::UnknownAction => "unknown_action",
            Self::UnknownConnection => "unknown_connection",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UpgradeRequired => "upgrade_required",
            Self::RequestTimeout => "request_timeout",
            Self::TooManyConnections => "too_many_connections",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of a chat operation, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// 400: the request is malformed or breaks a limit.
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },
    /// 401: missing or bad credentials (session token, app JWT, signature).
    #[error("{message}")]
    Unauthorized { code: ErrorCode, message: String },
    /// 403: valid credentials for something else.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such session or message.
    #[error("{0}")]
    NotFound(String),
    /// 409: an idempotency key reused for a different request.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// 429: a rate limit was hit; retry after this many seconds.
    #[error("rate limit exceeded, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 503: a dependency (store, queue) failed; the request may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// A refusal of the transport before any operation ran (405, 408, 426, 429 for too many
    /// connections), with its own status.
    #[error("{message}")]
    Transport {
        status: u16,
        code: ErrorCode,
        message: String,
    },
}

impl ChatError {
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::Unauthorized { .. } => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::TooLarge(_) => 413,
            Self::RateLimited { .. } => 429,
            Self::Unavailable(_) => 503,
            Self::Transport { status, .. } => *status,
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The code as the enum.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Transport { code, .. } => *code,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// `Retry-After` seconds, for errors that have one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::Unavailable(_) => Some(1),
            _ => None,
        }
    }

    /// The JSON body of the contract: `{"error":{"code":"...","message":"..."}}`.
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: String,
        }
        serde_json::to_string(&Body {
            error: Inner {
                code: self.code(),
                message: self.to_string(),
            },
        })
        .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"internal error"}}"#.into())
    }
}

impl From<crate::ports::StoreError> for ChatError {
    fn from(e: crate::ports::StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Self::Unavailable("storage is temporarily unavailable, please retry".into())
    }
}

impl From<crate::ports::QueueError> for ChatError {
    fn from(e: crate::ports::QueueError) -> Self {
        tracing::error!(error = %e, "queue failed");
        Self::Unavailable("the message queue is temporarily unavailable, please retry".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_contract_shape() {
        let e = ChatError::invalid(ErrorCode::ContentEmpty, "content must not be empty");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], "content_empty");
        assert_eq!(v["error"]["message"], "content must not be empty");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let e = ChatError::RateLimited {
            retry_after_secs: 17,
        };
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after(), Some(17));
        assert_eq!(e.code(), "rate_limited");
    }
}
