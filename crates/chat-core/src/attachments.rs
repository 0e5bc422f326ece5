//! Attachments: files a message carries, uploaded by the browser straight to the blob side.
//!
//! An attachment is asked for first (`POST /sessions/{id}/attachments`: its name, type and
//! size are checked and a record is stored, *pending*), uploaded to a short-lived URL the
//! [`Files`] port mints (an S3 presigned PUT on AWS, chat-local's own upload route), then
//! named by id in one message, which claims it. The blob side never serves a file without a
//! fresh signed URL; URLs are minted when a message is read, pushed or dispatched, never
//! stored. An attachment no message claimed within [`ATTACHMENT_TTL_MS`] is unusable and
//! deleted (chat-local's purge; on AWS the item's TTL and the bucket's lifecycle rule).
//!
//! The records live behind their own port, [`AttachmentStore`], beside the message store, so
//! a deployment keeps them in its own table or partition.

use crate::ChatError;
use crate::error::ErrorCode;
use crate::model::{AttachmentId, AttachmentMeta, MessageId, Millis, SessionId};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// How long an upload URL is valid.
pub const UPLOAD_URL_TTL_MS: Millis = 15 * 60_000;
/// How long an attachment may wait for a message before it is unusable and deleted.
pub const ATTACHMENT_TTL_MS: Millis = 3_600_000;
/// How long a download URL is valid.
pub const DOWNLOAD_URL_TTL_MS: Millis = 3_600_000;
/// The longest file name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The attachment limits (`CHAT_ATTACHMENT_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentConfig {
    /// Largest file, in bytes (`CHAT_ATTACHMENT_MAX_BYTES`).
    pub max_bytes: u64,
    /// Accepted content types, lower case (`CHAT_ATTACHMENT_TYPES`).
    pub types: Vec<String>,
    /// Most attachments one message carries (`CHAT_ATTACHMENTS_PER_MESSAGE`).
    pub per_message: usize,
}

/// The default `CHAT_ATTACHMENT_TYPES`.
pub const DEFAULT_TYPES: &str =
    "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain";

impl Default for AttachmentConfig {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            types: parse_types(DEFAULT_TYPES).unwrap_or_default(),
            per_message: 5,
        }
    }
}

/// Parses a comma-separated list of `type/subtype` media types (no parameters).
pub fn parse_types(s: &str) -> Option<Vec<String>> {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let types: Vec<String> = s
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let ok = !types.is_empty()
        && types
            .iter()
            .all(|t| t.split_once('/').is_some_and(|(a, b)| token(a) && token(b)));
    ok.then_some(types)
}

/// A stored attachment record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: AttachmentId,
    pub session_id: SessionId,
    pub name: String,
    /// As declared, lower case.
    pub content_type: String,
    /// As declared, in bytes.
    pub size: u64,
    pub created_at: Millis,
    /// Unusable from then on unless a message claimed it ([`ATTACHMENT_TTL_MS`] after
    /// `created_at`); the store may forget an unclaimed record after this.
    pub expires_at: Millis,
    /// The message that carries it, once claimed.
    pub message_id: Option<MessageId>,
}

impl Attachment {
    /// What a message stores of it.
    pub fn meta(&self) -> AttachmentMeta {
        AttachmentMeta {
            id: self.id,
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            url: None,
        }
    }
}

/// Durable attachment records.
#[async_trait]
pub trait AttachmentStore: Send + Sync {
    /// Stores a record: a new, unclaimed one, or (the purge) one whose expiry moves with its
    /// session's retention; a record of the same id is replaced.
    async fn put_attachment(&self, a: &Attachment) -> Result<(), crate::ports::StoreError>;

    /// The record, claimed or not (expired unclaimed ones may still be returned; the service
    /// checks `expires_at`).
    async fn get_attachment(
        &self,
        id: &AttachmentId,
    ) -> Result<Option<Attachment>, crate::ports::StoreError>;

    /// Claims every record of `ids` for `message`, all or none: each must exist, belong to
    /// `session`, and be unclaimed and unexpired at `now`, or already claimed by `message`
    /// (a retry). A claimed record is kept until `keep_until` (the message's expiry).
    /// `false` (nothing written) when any of them is not so.
    async fn claim_attachments(
        &self,
        session: &SessionId,
        ids: &[AttachmentId],
        message: &MessageId,
        now: Millis,
        keep_until: Millis,
    ) -> Result<bool, crate::ports::StoreError>;

    /// Undoes [`Self::claim_attachments`] for the records of `ids` claimed by `message` (the
    /// message was not stored after all); others are left alone.
    async fn release_attachments(
        &self,
        ids: &[AttachmentId],
        message: &MessageId,
    ) -> Result<(), crate::ports::StoreError>;

    /// Records whose `expires_at` is at or before `before` (unclaimed ones after their hour,
    /// claimed ones with their message), at most `limit`: what the purge deletes. A store whose records expire on their own (DynamoDB TTL, with the
    /// bucket's lifecycle rule for the bytes) returns none.
    async fn stale_attachments(
        &self,
        before: Millis,
        limit: u32,
    ) -> Result<Vec<Attachment>, crate::ports::StoreError>;

    /// Forgets a record; an unknown one is not an error.
    async fn delete_attachment(&self, id: &AttachmentId) -> Result<(), crate::ports::StoreError>;
}

/// A failure of the blob side. Its text goes to logs only.
#[derive(Debug, thiserror::Error)]
#[error("files: {0}")]
pub struct FilesError(pub String);

impl From<FilesError> for ChatError {
    fn from(e: FilesError) -> Self {
        tracing::error!(error = %e, "file storage failed");
        ChatError::Unavailable("file storage is unavailable, try again".into())
    }
}

/// Where and how the browser uploads an attachment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTarget {
    pub url: String,
    /// Headers the upload must carry exactly (at least `Content-Type`).
    pub headers: BTreeMap<String, String>,
}

/// What the blob side holds for an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub content_type: String,
}

/// The blob side: presigned (or token-signed) upload and download URLs, and the bytes' life.
#[async_trait]
pub trait Files: Send + Sync {
    /// A URL the declared bytes of `a` can be uploaded to until `expires_at`; an upload of
    /// another size or type is refused.
    async fn upload_target(
        &self,
        a: &Attachment,
        expires_at: Millis,
    ) -> Result<UploadTarget, FilesError>;

    /// What was uploaded for `a` (whole), or `None` when nothing (yet).
    async fn stored(&self, a: &Attachment) -> Result<Option<Stored>, FilesError>;

    /// The bytes belong to a message now: keep them past the pending ones' deletion (S3:
    /// the pending tag is removed so the lifecycle rule leaves the object alone).
    async fn keep(&self, a: &Attachment) -> Result<(), FilesError>;

    /// A URL that serves the bytes of `a` (of `session`) until `expires_at`.
    async fn download_url(
        &self,
        session: &SessionId,
        a: &AttachmentMeta,
        expires_at: Millis,
    ) -> Result<String, FilesError>;

    /// Deletes the bytes; deleting what is not there is not an error.
    async fn delete(&self, session: &SessionId, id: &AttachmentId) -> Result<(), FilesError>;
}

/// What `POST /sessions/{id}/attachments` takes.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachmentInput {
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

/// What `POST /sessions/{id}/attachments` answers (201).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentTicket {
    pub attachment_id: AttachmentId,
    pub upload_url: String,
    pub upload_headers: BTreeMap<String, String>,
    #[serde(serialize_with = "ser_time")]
    pub expires_at: Millis,
}

fn ser_time<S: serde::Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::model::rfc3339(*ms))
}

fn invalid(message: impl Into<String>) -> ChatError {
    ChatError::invalid(ErrorCode::InvalidInput, message)
}

/// Checks a declared attachment against the limits; returns the content type lower-cased.
pub fn validate(input: &AttachmentInput, limits: &AttachmentConfig) -> Result<String, ChatError> {
    let name = &input.name;
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.trim().is_empty() {
        return Err(invalid(format!(
            "name must have 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == ".."
    {
        return Err(invalid(
            "name must not contain path separators or control characters",
        ));
    }
    let content_type = input.content_type.trim().to_ascii_lowercase();
    if !limits.types.contains(&content_type) {
        return Err(invalid(format!(
            "contentType must be one of {}",
            limits.types.join(", ")
        )));
    }
    if input.size == 0 {
        return Err(invalid("size must be at least 1 byte"));
    }
    if input.size > limits.max_bytes {
        return Err(ChatError::TooLarge(format!(
            "size is larger than {} bytes",
            limits.max_bytes
        )));
    }
    Ok(content_type)
}

/// Parses the ids a message names: at most `max`, each a known-shaped id, none twice.
pub fn parse_ids(ids: &[String], max: usize) -> Result<Vec<AttachmentId>, ChatError> {
    if ids.len() > max {
        return Err(invalid(format!(
            "a message carries at most {max} attachments"
        )));
    }
    let mut out: Vec<AttachmentId> = Vec::with_capacity(ids.len());
    for raw in ids {
        let id = ulid::Ulid::from_string(raw)
            .map(AttachmentId)
            .map_err(|_| invalid(format!("attachment {raw:.40} is not an attachment id")))?;
        if out.contains(&id) {
            return Err(invalid(format!("attachment {id} is named twice")));
        }
        out.push(id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, t: &str, size: u64) -> AttachmentInput {
        AttachmentInput {
            name: name.into(),
            content_type: t.into(),
            size,
        }
    }

    #[test]
    fn declarations_are_checked() {
        let l = AttachmentConfig::default();
        assert_eq!(
            validate(&input("a.png", "Image/PNG", 1), &l).unwrap(),
            "image/png"
        );
        let code = |i: AttachmentInput| validate(&i, &l).unwrap_err();
        assert_eq!(code(input("", "image/png", 1)).status(), 400);
        assert_eq!(code(input(&"x".repeat(201), "image/png", 1)).status(), 400);
        assert!(validate(&input(&"é".repeat(200), "image/png", 1), &l).is_ok());
        assert_eq!(code(input("../a.png", "image/png", 1)).status(), 400);
        assert_eq!(code(input("a\\b.png", "image/png", 1)).status(), 400);
        assert_eq!(code(input("a\nb.png", "image/png", 1)).status(), 400);
        assert_eq!(
            code(input("a.exe", "application/x-msdownload", 1)).status(),
            400
        );
        assert_eq!(code(input("a.png", "image/png", 0)).status(), 400);
        assert!(validate(&input("a.png", "image/png", 10 * 1024 * 1024), &l).is_ok());
        let big = code(input("a.png", "image/png", 10 * 1024 * 1024 + 1));
        assert_eq!((big.status(), big.code()), (413, "too_large"));
    }

    #[test]
    fn ids_are_bounded_and_distinct() {
        let a = AttachmentId::new().to_string();
        let b = AttachmentId::new().to_string();
        assert_eq!(parse_ids(&[a.clone(), b.clone()], 5).unwrap().len(), 2);
        assert_eq!(
            parse_ids(&[a.clone(), a.clone()], 5).unwrap_err().status(),
            400
        );
        assert_eq!(parse_ids(&["nope".into()], 5).unwrap_err().status(), 400);
        assert_eq!(parse_ids(&vec![a; 6], 5).unwrap_err().status(), 400);
    }

    #[test]
    fn type_lists_parse() {
        assert_eq!(
            parse_types(" image/PNG , text/plain").unwrap(),
            vec!["image/png", "text/plain"]
        );
        assert!(parse_types("").is_none());
        assert!(parse_types("png").is_none());
        assert!(parse_types("text/plain; charset=utf-8").is_none());
        assert_eq!(AttachmentConfig::default().types.len(), 6);
    }
}
