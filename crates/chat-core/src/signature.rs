//! The n8n signature, both directions.
//!
//! `X-Chat-Timestamp: <unix seconds>` and
//! `X-Chat-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body bytes>")>`.
//! Verification is constant-time (`Mac::verify_slice`) and rejects timestamps more than
//! [`MAX_SKEW_SECS`] away from now, so a captured request cannot be replayed later.

use crate::ChatError;
use crate::error::ErrorCode;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-chat-timestamp";
pub const SIGNATURE_HEADER: &str = "x-chat-signature";
/// How far a timestamp may be from now, either way.
pub const MAX_SKEW_SECS: i64 = 300;

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Chat-Signature` value for `body` sent at `timestamp` (unix seconds, as sent).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks the two headers against the raw body. All failures are 401 with distinct codes.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), ChatError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(ChatError::unauthorized(
            ErrorCode::MissingSignature,
            "X-Chat-Timestamp and X-Chat-Signature headers are required",
        ));
    };
    let ts: i64 = timestamp.trim().parse().map_err(|_| {
        ChatError::unauthorized(
            ErrorCode::InvalidTimestamp,
            "X-Chat-Timestamp must be unix seconds",
        )
    })?;
    // abs_diff: a timestamp like i64::MIN must not overflow the subtraction.
    if now_secs.abs_diff(ts) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(ChatError::unauthorized(
            ErrorCode::StaleTimestamp,
            format!("X-Chat-Timestamp is more than {MAX_SKEW_SECS} s away from now"),
        ));
    }
    let bad = || ChatError::unauthorized(ErrorCode::InvalidSignature, "signature does not match");
    let hex_part = signature.trim().strip_prefix("sha256=").ok_or_else(bad)?;
    let raw = hex::decode(hex_part).map_err(|_| bad())?;
    mac(secret, timestamp, body)
        .verify_slice(&raw)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret";

    #[test]
    fn known_vector() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b's3cret',b'1700000000.{}',hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(SECRET, "1700000000", b"{}"),
            "sha256=97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf"
        );
    }

    #[test]
    fn round_trip() {
        let sig = sign(SECRET, "1000", b"hello");
        assert!(verify(SECRET, Some("1000"), Some(&sig), b"hello", 1000).is_ok());
        assert!(verify(SECRET, Some("1000"), Some(&sig), b"hello", 1300).is_ok());
    }

    #[test]
    fn rejects_tampering_skew_and_missing_headers() {
        let sig = sign(SECRET, "1000", b"hello");
        let code = |r: Result<(), ChatError>| r.unwrap_err().code();
        assert_eq!(
            code(verify(SECRET, Some("1000"), Some(&sig), b"hellO", 1000)),
            "invalid_signature"
        );
        assert_eq!(
            code(verify(b"other", Some("1000"), Some(&sig), b"hello", 1000)),
            "invalid_signature"
        );
        assert_eq!(
            code(verify(SECRET, Some("1001"), Some(&sig), b"hello", 1001)),
            "invalid_signature"
        );
        assert_eq!(
            code(verify(SECRET, Some("1000"), Some(&sig), b"hello", 1301)),
            "stale_timestamp"
        );
        assert_eq!(
            code(verify(SECRET, Some("1000"), Some(&sig), b"hello", 699)),
            "stale_timestamp"
        );
        assert_eq!(
            code(verify(SECRET, Some("abc"), Some(&sig), b"hello", 1000)),
            "invalid_timestamp"
        );
        for extreme in ["-9223372036854775808", "9223372036854775807"] {
            assert_eq!(
                code(verify(SECRET, Some(extreme), Some(&sig), b"hello", 1000)),
                "stale_timestamp"
            );
            assert_eq!(
                code(verify(
                    SECRET,
                    Some("1000"),
                    Some(&sig),
                    b"hello",
                    extreme.parse().unwrap()
                )),
                "stale_timestamp"
            );
        }
        assert_eq!(
            code(verify(SECRET, None, Some(&sig), b"hello", 1000)),
            "missing_signature"
        );
        assert_eq!(
            code(verify(
                SECRET,
                Some("1000"),
                Some("sha256=zz"),
                b"hello",
                1000
            )),
            "invalid_signature"
        );
        assert_eq!(
            code(verify(
                SECRET,
                Some("1000"),
                Some(&sig[7..]),
                b"hello",
                1000
            )),
            "invalid_signature"
        );
    }
}
