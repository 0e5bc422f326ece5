//! [`Files`] on S3: the browser uploads with a presigned `PutObject` (content type, length and
//! the pending tag signed, so S3 refuses other bytes), a `HeadObject` confirms what arrived,
//! downloads are presigned `GetObject`s. Objects live under `attachments/<session>/<id>`.
//!
//! An upload carries the tag `chat-pending=1`; the bucket's lifecycle rule deletes tagged
//! objects after a day (template.yaml's `AttachmentsBucket`), so files no message took go by
//! themselves. When a message takes a file, its tag is removed (`DeleteObjectTagging`) and the
//! object stays.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use chat_core::attachments::{Attachment, Files, FilesError, Stored, UploadTarget};
use chat_core::model::{AttachmentId, AttachmentMeta, Millis, SessionId};
use std::collections::BTreeMap;
use std::time::Duration;

/// The tag an object carries until a message takes it.
pub const PENDING_TAG: &str = "chat-pending=1";

/// The attachment bucket.
#[derive(Clone, Debug)]
pub struct S3Files {
    client: Client,
    bucket: String,
}

fn failed<E: std::error::Error + 'static>(e: E) -> FilesError {
    FilesError(crate::error_chain(&e))
}

/// The object key of an attachment.
pub fn object_key(session: &SessionId, id: &AttachmentId) -> String {
    format!("attachments/{session}/{id}")
}

fn now_ms() -> Millis {
    chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock)
}

/// How long from now until `expires_at` (at least a second: S3 wants a positive expiry).
fn until(expires_at: Millis) -> Result<PresigningConfig, FilesError> {
    let ms = (expires_at - now_ms()).max(1000) as u64;
    PresigningConfig::expires_in(Duration::from_millis(ms)).map_err(failed)
}

/// `Content-Disposition` for a download: inline for raster images, else an attachment; the
/// name as RFC 6266's UTF-8 form with an ASCII fallback.
fn disposition(a: &AttachmentMeta) -> String {
    let kind = match a.content_type.as_str() {
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" => "inline",
        _ => "attachment",
    };
    let ascii: String = a
        .name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let utf8: String = a
        .name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{utf8}")
}

impl S3Files {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl Files for S3Files {
    async fn upload_target(
        &self,
        a: &Attachment,
        expires_at: Millis,
    ) -> Result<UploadTarget, FilesError> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(object_key(&a.session_id, &a.id))
            .content_type(&a.content_type)
            .content_length(a.size as i64)
            .tagging(PENDING_TAG)
            .presigned(until(expires_at)?)
            .await
            .map_err(failed)?;
        // Browsers set Content-Length (and Host) themselves; the rest they send as given.
        let headers: BTreeMap<String, String> = req
            .headers()
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host")
            })
            .map(|(k, v)| {
                let k = if k.eq_ignore_ascii_case("content-type") {
                    "Content-Type".to_string()
                } else {
                    k.to_string()
                };
                (k, v.to_string())
            })
            .collect();
        Ok(UploadTarget {
            url: req.uri().to_string(),
            headers,
        })
    }

    async fn stored(&self, a: &Attachment) -> Result<Option<Stored>, FilesError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(object_key(&a.session_id, &a.id))
            .send()
            .await
        {
            Ok(o) => Ok(Some(Stored {
                size: o.content_length().unwrap_or(0).max(0) as u64,
                content_type: o.content_type().unwrap_or_default().to_string(),
            })),
            Err(e) => match e.into_service_error() {
                aws_sdk_s3::operation::head_object::HeadObjectError::NotFound(_) => Ok(None),
                other => Err(failed(other)),
            },
        }
    }

    async fn keep(&self, a: &Attachment) -> Result<(), FilesError> {
        self.client
            .delete_object_tagging()
            .bucket(&self.bucket)
            .key(object_key(&a.session_id, &a.id))
            .send()
            .await
            .map_err(|e| failed(e.into_service_error()))?;
        Ok(())
    }

    async fn download_url(
        &self,
        session: &SessionId,
        a: &AttachmentMeta,
        expires_at: Millis,
    ) -> Result<String, FilesError> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(object_key(session, &a.id))
            .response_content_type(&a.content_type)
            .response_content_disposition(disposition(a))
            .presigned(until(expires_at)?)
            .await
            .map_err(failed)?;
        Ok(req.uri().to_string())
    }

    async fn delete(&self, session: &SessionId, id: &AttachmentId) -> Result<(), FilesError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(object_key(session, id))
            .send()
            .await
            .map_err(|e| failed(e.into_service_error()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_name_the_file_safely() {
        let a = AttachmentMeta {
            id: AttachmentId::new(),
            name: "Résumé \"v2\".pdf".into(),
            content_type: "application/pdf".into(),
            size: 1,
            url: None,
        };
        assert_eq!(
            disposition(&a),
            "attachment; filename=\"R_sum_ _v2_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
        let img = AttachmentMeta {
            content_type: "image/png".into(),
            ..a
        };
        assert!(disposition(&img).starts_with("inline;"));
    }
}
