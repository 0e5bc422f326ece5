//! Session tokens.
//!
//! A session token is an HS256 JWT signed with `CHAT_SESSION_SECRET` that names exactly one
//! session (`sid`) and expires with it. Browsers send it as `Authorization: Bearer` on HTTP
//! and as `?token=` on the WebSocket URL. Expiry is checked against the service's
//! [`Clock`](crate::ports::Clock), not the system clock, so tests can move time. (App JWTs,
//! which turn a new session into a user session, are [`crate::auth`]'s.)

use crate::ChatError;
use crate::error::ErrorCode;
use crate::model::{Millis, SessionId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The session this token opens.
    pub sid: SessionId,
    /// The app's user id, for user sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
}

/// Signs and checks session tokens.
#[derive(Clone)]
pub struct SessionTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionTokens(***)")
    }
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    // Expiry is checked against the service clock below.
    v.validate_exp = false;
    v.required_spec_claims.clear();
    v
}

impl SessionTokens {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    pub fn issue(&self, claims: &SessionClaims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Checks signature and expiry. Every failure is a 401 that says what to do.
    pub fn verify(&self, token: &str, now: Millis) -> Result<SessionClaims, ChatError> {
        let data = jsonwebtoken::decode::<SessionClaims>(token, &self.decoding, &validation())
            .map_err(|_| {
                ChatError::unauthorized(ErrorCode::InvalidToken, "session token is invalid")
            })?;
        if data.claims.exp.saturating_mul(1000) <= now {
            return Err(ChatError::unauthorized(
                ErrorCode::TokenExpired,
                "session token has expired; create a new session",
            ));
        }
        Ok(data.claims)
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> SessionClaims {
        SessionClaims {
            sid: SessionId::new(),
            sub: None,
            exp,
            iat: 0,
        }
    }

    #[test]
    fn round_trip() {
        let t = SessionTokens::new(b"k");
        let c = claims(100);
        assert_eq!(t.verify(&t.issue(&c), 99_999).unwrap(), c);
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_fail() {
        let t = SessionTokens::new(b"k");
        let tok = t.issue(&claims(100));
        assert_eq!(t.verify(&tok, 100_000).unwrap_err().code(), "token_expired");
        assert_eq!(
            SessionTokens::new(b"other")
                .verify(&tok, 0)
                .unwrap_err()
                .code(),
            "invalid_token"
        );
        let mut bad = tok.clone();
        bad.insert(bad.len() - 2, 'x');
        assert_eq!(t.verify(&bad, 0).unwrap_err().code(), "invalid_token");
        assert_eq!(t.verify("garbage", 0).unwrap_err().status(), 401);
    }

    #[test]
    fn a_crafted_far_future_exp_does_not_overflow() {
        let t = SessionTokens::new(b"k");
        for exp in [i64::MAX, i64::MAX / 999, i64::MIN] {
            let r = t.verify(&t.issue(&claims(exp)), 1_700_000_000_000);
            assert_eq!(r.is_ok(), exp > 0, "exp {exp}");
        }
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
