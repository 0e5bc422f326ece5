//! Validation of everything that comes from outside.
//!
//! Bodies are parsed with [`parse_json`], which tells malformed JSON (`invalid_json`) from
//! JSON of the wrong shape (`invalid_input`); the field checks below enforce the contract's
//! limits. Nothing is written before validation has passed.

use crate::ChatError;
use crate::config::Limits;
use crate::error::ErrorCode;
use crate::model::{Millis, PageQuery};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Parses a JSON body into `T`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ChatError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ChatError::invalid(ErrorCode::InvalidInput, clean(&e)),
        _ => ChatError::invalid(ErrorCode::InvalidJson, "body is not valid JSON"),
    })
}

/// serde's message without the line/column suffix, which means nothing to API callers.
fn clean(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Content of 1 to `max` characters with at least one visible character (not only white
/// space, zero-width or other invisible formatting characters), and no control characters
/// but tab, line feed and carriage return.
pub fn content(s: &str, max: usize) -> Result<(), ChatError> {
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(ChatError::invalid(
            ErrorCode::ContentInvalid,
            "content must not contain control characters",
        ));
    }
    if !s.chars().any(visible) {
        return Err(ChatError::invalid(
            ErrorCode::ContentEmpty,
            "content must not be empty",
        ));
    }
    if s.chars().count() > max {
        return Err(ChatError::invalid(
            ErrorCode::ContentTooLong,
            format!("content is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// Whether a character shows: not white space, and not one of Unicode's invisible format
/// characters (zero-width spaces and joiners, direction marks, variation selectors, fillers,
/// tags, the byte-order mark, ...).
fn visible(c: char) -> bool {
    !c.is_whitespace()
        && !c.is_control()
        && !matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// An idempotency key chosen by a client (`clientMessageId`, `eventId`): 1 to 128 printable
/// ASCII characters without spaces.
pub fn key(field: &'static str, s: &str) -> Result<(), ChatError> {
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ChatError::invalid(
            ErrorCode::InvalidInput,
            format!("{field} must be 1 to 128 printable ASCII characters"),
        ));
    }
    Ok(())
}

/// A free JSON object of at most `max_bytes` when serialized.
pub fn object_size(
    field: &'static str,
    m: &Map<String, Value>,
    max_bytes: usize,
) -> Result<(), ChatError> {
    let size = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > max_bytes {
        return Err(ChatError::invalid(
            ErrorCode::InvalidInput,
            format!("{field} is larger than {max_bytes} bytes"),
        ));
    }
    Ok(())
}

/// A body no larger than the limit.
pub fn body_size(len: usize, limits: &Limits) -> Result<(), ChatError> {
    if len > limits.max_body_bytes {
        return Err(ChatError::TooLarge(format!(
            "body is larger than {} bytes",
            limits.max_body_bytes
        )));
    }
    Ok(())
}

/// A history request: a page by `seq`, or the messages changed after a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    Page(PageQuery),
    /// `?updatedAfter=<RFC 3339 or Unix ms>&limit=`: edits and deletions since then.
    Changed {
        after: Millis,
        limit: u32,
    },
}

/// Parses a history request: `after`, `before` and `limit`, or `updatedAfter` and `limit`
/// (`updatedAfter` with `after` or `before` is refused).
pub fn history_or_changes(raw: Option<&str>, limits: &Limits) -> Result<HistoryQuery, ChatError> {
    let page = history_query(raw, limits)?;
    let Some((_, v)) =
        form_urlencoded::parse(raw.unwrap_or("").as_bytes()).find(|(k, _)| k == "updatedAfter")
    else {
        return Ok(HistoryQuery::Page(page));
    };
    if page.after.is_some() || page.before.is_some() {
        return Err(ChatError::invalid(
            ErrorCode::InvalidQuery,
            "updatedAfter cannot be combined with after or before",
        ));
    }
    let after = match v.parse::<Millis>() {
        Ok(ms) if ms >= 0 => ms,
        _ => time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as Millis)
            .map_err(|_| {
                ChatError::invalid(
                    ErrorCode::InvalidQuery,
                    "updatedAfter must be an RFC 3339 time or Unix milliseconds",
                )
            })?,
    };
    Ok(HistoryQuery::Changed {
        after,
        limit: page.limit,
    })
}

/// Parses `after`, `before` and `limit` of a history request.
pub fn history_query(raw: Option<&str>, limits: &Limits) -> Result<PageQuery, ChatError> {
    let mut q = PageQuery {
        after: None,
        before: None,
        limit: 50.min(limits.max_page),
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let n = || {
            v.parse::<u64>().map_err(|_| {
                ChatError::invalid(
                    ErrorCode::InvalidQuery,
                    format!("{k} must be a whole number"),
                )
            })
        };
        match &*k {
            "after" => q.after = Some(n()?),
            "before" => q.before = Some(n()?),
            "limit" => {
                let l = n()?;
                if l == 0 || l > u64::from(limits.max_page) {
                    return Err(ChatError::invalid(
                        ErrorCode::InvalidQuery,
                        format!("limit must be between 1 and {}", limits.max_page),
                    ));
                }
                q.limit = l as u32;
            }
            _ => {}
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        content: String,
    }

    #[test]
    fn json_errors_are_classified() {
        assert_eq!(
            parse_json::<T>(b"{nope").unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(parse_json::<T>(b"").unwrap_err().code(), "invalid_json");
        let e = parse_json::<T>(br#"{"content":5}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_input");
        assert!(!e.to_string().contains("line"), "{e}");
        assert_eq!(parse_json::<T>(b"{}").unwrap_err().code(), "invalid_input");
    }

    #[test]
    fn content_limits_count_characters() {
        assert_eq!(content("", 5).unwrap_err().code(), "content_empty");
        assert_eq!(content(" \n\t", 5).unwrap_err().code(), "content_empty");
        assert_eq!(
            content("\u{200B}\u{200D}\u{FEFF}", 5).unwrap_err().code(),
            "content_empty"
        );
        assert_eq!(
            content("\u{2060}\u{E0041}", 5).unwrap_err().code(),
            "content_empty"
        );
        assert_eq!(content("\0", 5).unwrap_err().code(), "content_invalid");
        assert_eq!(content("a\u{7}b", 5).unwrap_err().code(), "content_invalid");
        assert!(content("a\tb\r\nc", 9).is_ok());
        assert!(content("👍🏽", 5).is_ok());
        assert!(content("\u{200B}x", 5).is_ok());
        assert!(content("ééééé", 5).is_ok());
        assert_eq!(content("éééééé", 5).unwrap_err().code(), "content_too_long");
    }

    #[test]
    fn keys_and_objects() {
        assert!(key("clientMessageId", "abc-123").is_ok());
        assert!(key("clientMessageId", "").is_err());
        assert!(key("clientMessageId", "has space").is_err());
        assert!(key("clientMessageId", &"x".repeat(129)).is_err());
        let mut m = Map::new();
        m.insert("k".into(), Value::String("x".repeat(10)));
        assert!(object_size("metadata", &m, 100).is_ok());
        assert!(object_size("metadata", &m, 10).is_err());
    }

    #[test]
    fn history_query_parsing() {
        let l = Limits::default();
        let q = history_query(Some("after=3&limit=10"), &l).unwrap();
        assert_eq!((q.after, q.before, q.limit), (Some(3), None, 10));
        assert_eq!(history_query(None, &l).unwrap().limit, 50);
        assert_eq!(
            history_query(Some("after=x"), &l).unwrap_err().code(),
            "invalid_query"
        );
        assert_eq!(
            history_query(Some("limit=0"), &l).unwrap_err().code(),
            "invalid_query"
        );
        assert_eq!(
            history_query(Some("limit=101"), &l).unwrap_err().code(),
            "invalid_query"
        );
        assert_eq!(
            history_query(Some("before=-1"), &l).unwrap_err().code(),
            "invalid_query"
        );
    }
}
