//! Attachments on chat-local: records in their own SQLite table, bytes in files beside the
//! database (`<CHAT_DATA_DIR>/files/<attachment id>`), and the two routes that stand in for
//! S3's presigned URLs: `PUT /uploads/{id}?token=` (streamed to disk, checked against the
//! declared size and type) and `GET /files/{id}?token=`. Tokens are HMACs with the session
//! secret over what they allow and until when, so a URL is its own permission and expires.

use crate::db::{Db, DbError};
use crate::state::AppState;
use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_core::ChatError;
use chat_core::attachments::{
    Attachment, AttachmentStore, Files, FilesError, Stored, UploadTarget,
};
use chat_core::error::ErrorCode;
use chat_core::model::{AttachmentId, AttachmentMeta, MessageId, Millis, SessionId};
use chat_core::ports::{Clock, StoreError};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use rusqlite::{OptionalExtension, Row, params};
use sha2::Sha256;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// The attachments table and the messages' `attachments` column, for new and old databases.
pub fn migrate(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('messages') WHERE name = 'attachments'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE messages ADD COLUMN attachments TEXT")?;
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS attachments (
             id           TEXT PRIMARY KEY,
             session_id   TEXT NOT NULL,
             name         TEXT NOT NULL,
             content_type TEXT NOT NULL,
             size         INTEGER NOT NULL,
             created_at   INTEGER NOT NULL,
             expires_at   INTEGER NOT NULL,
             message_id   TEXT
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS attachments_by_expiry ON attachments (expires_at);",
    )
}

fn err(e: DbError) -> StoreError {
    StoreError(e.to_string())
}

/// The attachment records on SQLite.
#[derive(Clone)]
pub struct SqliteAttachments {
    db: Db,
}

impl SqliteAttachments {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

const COLUMNS: &str =
    "id, session_id, name, content_type, size, created_at, expires_at, message_id";

fn bad(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_string(), rusqlite::types::Type::Text)
}

fn row(r: &Row<'_>) -> rusqlite::Result<Attachment> {
    let ulid = |i: usize| -> rusqlite::Result<ulid::Ulid> {
        let s: String = r.get(i)?;
        ulid::Ulid::from_string(&s).map_err(|_| bad("ulid"))
    };
    let message: Option<String> = r.get(7)?;
    Ok(Attachment {
        id: AttachmentId(ulid(0)?),
        session_id: SessionId(ulid(1)?),
        name: r.get(2)?,
        content_type: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        message_id: message
            .map(|m| {
                ulid::Ulid::from_string(&m)
                    .map(MessageId)
                    .map_err(|_| bad("ulid"))
            })
            .transpose()?,
    })
}

#[async_trait]
impl AttachmentStore for SqliteAttachments {
    async fn put_attachment(&self, a: &Attachment) -> Result<(), StoreError> {
        let a = a.clone();
        self.db
            .call(move |c| {
                c.execute(
                    &format!("INSERT OR REPLACE INTO attachments ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                    params![
                        a.id.to_string(),
                        a.session_id.to_string(),
                        a.name,
                        a.content_type,
                        a.size as i64,
                        a.created_at,
                        a.expires_at,
                        a.message_id.map(|m| m.to_string()),
                    ],
                )
                .map(drop)
            })
            .await
            .map_err(err)
    }

    async fn get_attachment(&self, id: &AttachmentId) -> Result<Option<Attachment>, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |c| {
                c.query_row(
                    &format!("SELECT {COLUMNS} FROM attachments WHERE id = ?1"),
                    [id],
                    row,
                )
                .optional()
            })
            .await
            .map_err(err)
    }

    async fn claim_attachments(
        &self,
        session: &SessionId,
        ids: &[AttachmentId],
        message: &MessageId,
        now: Millis,
        keep_until: Millis,
    ) -> Result<bool, StoreError> {
        let (session, message) = (session.to_string(), message.to_string());
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        self.db
            .call(move |c| {
                // One call is one savepoint: a failed claim rolls back the ones before it.
                for id in &ids {
                    let n = c.execute(
                        "UPDATE attachments SET message_id = ?3, expires_at = MAX(expires_at, ?5)
                         WHERE id = ?1 AND session_id = ?2
                           AND ((message_id IS NULL AND expires_at > ?4) OR message_id = ?3)",
                        params![id, session, message, now, keep_until],
                    )?;
                    if n == 0 {
                        return Err(rusqlite::Error::QueryReturnedNoRows);
                    }
                }
                Ok(())
            })
            .await
            .map(|()| true)
            .or_else(|e| match e {
                DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows) => Ok(false),
                e => Err(err(e)),
            })
    }

    async fn release_attachments(
        &self,
        ids: &[AttachmentId],
        message: &MessageId,
    ) -> Result<(), StoreError> {
        let message = message.to_string();
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        self.db
            .call(move |c| {
                for id in &ids {
                    c.execute(
                        "UPDATE attachments SET message_id = NULL, expires_at = created_at + ?3
                         WHERE id = ?1 AND message_id = ?2",
                        params![id, message, chat_core::attachments::ATTACHMENT_TTL_MS],
                    )?;
                }
                Ok(())
            })
            .await
            .map_err(err)
    }

    async fn stale_attachments(
        &self,
        before: Millis,
        limit: u32,
    ) -> Result<Vec<Attachment>, StoreError> {
        self.db
            .call(move |c| {
                let mut st = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM attachments WHERE expires_at <= ?1
                     ORDER BY expires_at, id LIMIT ?2"
                ))?;
                st.query_map(params![before, limit], row)?.collect()
            })
            .await
            .map_err(err)
    }

    async fn delete_attachment(&self, id: &AttachmentId) -> Result<(), StoreError> {
        let id = id.to_string();
        self.db
            .call(move |c| {
                c.execute("DELETE FROM attachments WHERE id = ?1", [id])
                    .map(drop)
            })
            .await
            .map_err(err)
    }
}

/// The bytes on disk and the signed URLs that reach them.
pub struct DiskFiles {
    dir: PathBuf,
    public_url: String,
    key: Vec<u8>,
    clock: Arc<dyn Clock>,
    db: crate::db::Db,
}

/// What a token allows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    Upload,
    Download,
}

impl Grant {
    fn tag(self) -> &'static str {
        match self {
            Self::Upload => "up",
            Self::Download => "dl",
        }
    }
}

impl DiskFiles {
    /// Files under `<data_dir>/files` (created 0700), URLs under `public_url`, tokens signed
    /// with `secret`; a file is deleted only once the writes before it (the message that no
    /// longer needs it) are on disk in `db`.
    pub fn open(
        data_dir: &FsPath,
        public_url: &str,
        secret: &[u8],
        clock: Arc<dyn Clock>,
        db: crate::db::Db,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = data_dir.join("files");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        // A key of its own, derived from the secret: a file token is never a session token.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(b"chat-local attachment tokens");
        Ok(Self {
            dir,
            public_url: public_url.trim_end_matches('/').to_string(),
            key: mac.finalize().into_bytes().to_vec(),
            clock,
            db,
        })
    }

    fn path(&self, id: &AttachmentId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn mac(&self, grant: Grant, id: &AttachmentId, exp: Millis) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(format!("{}:{id}:{exp}", grant.tag()).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn token(&self, grant: Grant, id: &AttachmentId, exp: Millis) -> String {
        format!("{exp}.{}", self.mac(grant, id, exp))
    }

    /// Checks a token of `grant` for `id`: 401 when forged, for another file or expired.
    fn verify(&self, grant: Grant, id: &AttachmentId, token: &str) -> Result<(), ChatError> {
        let invalid = || {
            ChatError::unauthorized(
                ErrorCode::InvalidToken,
                "this URL is not valid for this file",
            )
        };
        let (exp, mac) = token.split_once('.').ok_or_else(invalid)?;
        let exp: Millis = exp.parse().map_err(|_| invalid())?;
        let expected = self.mac(grant, id, exp);
        let same = expected.len() == mac.len()
            && expected
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(invalid());
        }
        if exp <= self.clock.now_ms() {
            return Err(ChatError::unauthorized(
                ErrorCode::TokenExpired,
                "this URL has expired; ask for a new one",
            ));
        }
        Ok(())
    }
}

fn io(e: std::io::Error) -> FilesError {
    FilesError(e.to_string())
}

#[async_trait]
impl Files for DiskFiles {
    async fn upload_target(
        &self,
        a: &Attachment,
        expires_at: Millis,
    ) -> Result<UploadTarget, FilesError> {
        Ok(UploadTarget {
            url: format!(
                "{}/uploads/{}?token={}",
                self.public_url,
                a.id,
                self.token(Grant::Upload, &a.id, expires_at)
            ),
            headers: [("Content-Type".to_string(), a.content_type.clone())].into(),
        })
    }

    async fn stored(&self, a: &Attachment) -> Result<Option<Stored>, FilesError> {
        match tokio::fs::metadata(self.path(&a.id)).await {
            // Only a whole, checked upload is renamed to its final name, with the declared type.
            Ok(m) => Ok(Some(Stored {
                size: m.len(),
                content_type: a.content_type.clone(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn keep(&self, _a: &Attachment) -> Result<(), FilesError> {
        // Files live until the purge deletes their record: nothing to mark.
        Ok(())
    }

    async fn download_url(
        &self,
        _session: &SessionId,
        a: &AttachmentMeta,
        expires_at: Millis,
    ) -> Result<String, FilesError> {
        Ok(format!(
            "{}/files/{}?token={}",
            self.public_url,
            a.id,
            self.token(Grant::Download, &a.id, expires_at)
        ))
    }

    async fn delete(&self, _session: &SessionId, id: &AttachmentId) -> Result<(), FilesError> {
        // A power loss must not leave a message whose file is gone.
        self.db
            .sync()
            .await
            .map_err(|e| FilesError(e.to_string()))?;
        for path in [self.path(id), self.dir.join(format!("{id}.part"))] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(())
    }
}

fn error(e: &ChatError) -> Response {
    chat_http::error(e)
}

fn invalid(message: impl Into<String>) -> ChatError {
    ChatError::invalid(ErrorCode::InvalidInput, message)
}

fn token_of(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// The media type of a `Content-Type` header, lower case, without parameters.
fn essence(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `PUT /uploads/{id}?token=`: the declared bytes, streamed to disk. 400 for another type or
/// fewer bytes, 413 for more, 409 when the file is already there or sent, 401 for a bad or
/// expired token; a refused upload leaves nothing behind.
pub async fn upload(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    match receive(&s, &id, query.as_deref(), req).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(&e),
    }
}

async fn receive(
    s: &AppState,
    id: &str,
    query: Option<&str>,
    req: Request,
) -> Result<(), ChatError> {
    let files = &s.files;
    let id: AttachmentId = id.parse()?;
    let token = token_of(query).ok_or_else(|| {
        ChatError::unauthorized(ErrorCode::MissingToken, "the upload URL lacks its token")
    })?;
    files.verify(Grant::Upload, &id, &token)?;
    let store = s
        .service
        .attachment_store()
        .ok_or_else(|| ChatError::NotFound("attachments are not enabled".into()))?;
    let a = store
        .get_attachment(&id)
        .await?
        .ok_or_else(|| ChatError::NotFound("unknown attachment".into()))?;
    if a.message_id.is_some() {
        return Err(ChatError::Conflict("this file was already sent".into()));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(essence)
        .unwrap_or_default();
    if declared != a.content_type {
        return Err(invalid(format!(
            "Content-Type must be {}, as declared",
            a.content_type
        )));
    }
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > a.size {
            return Err(ChatError::TooLarge(format!(
                "the file has more bytes than the {} declared",
                a.size
            )));
        }
        if len < a.size {
            return Err(invalid(format!(
                "the file has fewer bytes than the {} declared",
                a.size
            )));
        }
    }
    let done = files.path(&id);
    if tokio::fs::try_exists(&done).await.unwrap_or(false) {
        return Err(ChatError::Conflict("this file was already uploaded".into()));
    }
    let part = files.dir.join(format!("{id}.part"));
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true).mode(0o600);
        match o.open(&part) {
            Ok(f) => tokio::fs::File::from_std(f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ChatError::Conflict(
                    "this file is being uploaded already".into(),
                ));
            }
            Err(e) => return Err(FilesError(e.to_string()).into()),
        }
    };
    let written = write(file, req.into_body(), a.size, s.limits.body_timeout).await;
    let result = match written {
        Ok(n) if n == a.size => tokio::fs::rename(&part, &done)
            .await
            .map_err(|e| FilesError(e.to_string()).into()),
        Ok(n) => Err(invalid(format!(
            "the file has {n} bytes, not the {} declared",
            a.size
        ))),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    } else {
        tracing::info!(attachment_id = %id, size = a.size, "attachment uploaded");
    }
    result
}

/// Streams `body` into `file`, at most `max` bytes (413 past them), each chunk within
/// `idle` of the one before (408 otherwise); returns how many bytes came.
async fn write(
    mut file: tokio::fs::File,
    body: Body,
    max: u64,
    idle: std::time::Duration,
) -> Result<u64, ChatError> {
    let mut stream = body.into_data_stream();
    let mut n: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => {
                return Err(ChatError::Transport {
                    status: 408,
                    code: ErrorCode::RequestTimeout,
                    message: format!("the upload stalled for {idle:?}"),
                });
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(invalid("the upload broke off")),
            Ok(Some(Ok(c))) => c,
        };
        n += chunk.len() as u64;
        if n > max {
            return Err(ChatError::TooLarge(format!(
                "the file has more bytes than the {max} declared"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ChatError::from(FilesError(e.to_string())))?;
    }
    file.sync_all()
        .await
        .map_err(|e| ChatError::from(FilesError(e.to_string())))?;
    Ok(n)
}

/// Raster images a browser may show inline; everything else downloads.
fn inline(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// A `Content-Disposition` with an ASCII fallback name and the UTF-8 one (RFC 6266).
fn disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let utf8: String = form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{utf8}")
}

/// `GET /files/{id}?token=`: the bytes, with the declared type, `nosniff`, and as a download
/// unless an image.
pub async fn download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let r = async {
        let id: AttachmentId = id.parse()?;
        let token = token_of(query.as_deref()).ok_or_else(|| {
            ChatError::unauthorized(ErrorCode::MissingToken, "the file URL lacks its token")
        })?;
        s.files.verify(Grant::Download, &id, &token)?;
        let a = s
            .service
            .attachment_store()
            .ok_or_else(|| ChatError::NotFound("attachments are not enabled".into()))?
            .get_attachment(&id)
            .await?
            .ok_or_else(|| ChatError::NotFound("unknown attachment".into()))?;
        let file = tokio::fs::File::open(s.files.path(&id))
            .await
            .map_err(|_| ChatError::NotFound("unknown attachment".into()))?;
        Ok::<_, ChatError>((a, file))
    };
    let (a, file) = match r.await {
        Ok(v) => v,
        Err(e) => return error(&e),
    };
    let kind = if inline(&a.content_type) {
        "inline"
    } else {
        "attachment"
    };
    let mut res = Body::from_stream(tokio_util_stream(file)).into_response();
    let h = res.headers_mut();
    let value = |v: &str| {
        HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    h.insert(header::CONTENT_TYPE, value(&a.content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(a.size));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition(kind, &a.name))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    res
}

/// A file as a stream of chunks, read as it is sent (never whole in memory).
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_in_content_disposition() {
        assert_eq!(
            disposition("attachment", "Résumé \"v2\".pdf"),
            "attachment; filename=\"R_sum_ _v2_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
        assert!(HeaderValue::from_str(&disposition("inline", "a\u{202e}b.png")).is_ok());
    }

    #[test]
    fn tokens_are_bound_to_grant_file_and_time() {
        let clock = Arc::new(chat_testkit_free_clock::Fixed(1_000));
        let dir = std::env::temp_dir().join(format!("chat-files-{}", ulid::Ulid::new()));
        let f = DiskFiles::open(
            &dir,
            "http://x",
            b"secret",
            clock,
            crate::db::Db::open_in_memory().unwrap(),
        )
        .unwrap();
        let id = AttachmentId::new();
        let t = f.token(Grant::Upload, &id, 2_000);
        assert!(f.verify(Grant::Upload, &id, &t).is_ok());
        assert!(f.verify(Grant::Download, &id, &t).is_err(), "another grant");
        assert!(
            f.verify(Grant::Upload, &AttachmentId::new(), &t).is_err(),
            "another file"
        );
        let forged = t.replacen("2000", "9000", 1);
        assert!(
            f.verify(Grant::Upload, &id, &forged).is_err(),
            "a later expiry"
        );
        let old = f.token(Grant::Upload, &id, 1_000);
        assert_eq!(
            f.verify(Grant::Upload, &id, &old).unwrap_err().code(),
            "token_expired"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    mod chat_testkit_free_clock {
        pub struct Fixed(pub i64);
        impl chat_core::ports::Clock for Fixed {
            fn now_ms(&self) -> i64 {
                self.0
            }
        }
    }
}
