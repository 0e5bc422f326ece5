//! Canned replies: the agents' quick responses, shared by every agent of the deployment.

use crate::ChatError;
use crate::error::ErrorCode;
use crate::model::CannedReply;
use crate::ports::CannedWrite;
use crate::service::ChatService;

/// The longest title and text of a canned reply.
pub const MAX_CANNED_TITLE_CHARS: usize = 100;
pub const MAX_CANNED_TEXT_CHARS: usize = 4000;

/// The body of `POST /agent/canned` and `PUT /agent/canned/{id}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedInput {
    pub shortcut: String,
    pub title: String,
    pub text: String,
}

impl CannedInput {
    fn validate(&self) -> Result<(), ChatError> {
        let s = self.shortcut.as_bytes();
        let ok_char =
            |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-';
        let first_ok = s
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !(first_ok && s.len() <= 32 && s.iter().all(ok_char)) {
            return Err(invalid(
                "shortcut must be 1–32 of a-z, 0-9, _ and -, starting with a letter or digit",
            ));
        }
        let title = self.title.chars().count();
        if title == 0 || title > MAX_CANNED_TITLE_CHARS || self.title.trim().is_empty() {
            return Err(invalid("title must have 1–100 characters"));
        }
        let text = self.text.chars().count();
        if text == 0 || text > MAX_CANNED_TEXT_CHARS || self.text.trim().is_empty() {
            return Err(invalid("text must have 1–4000 characters"));
        }
        if self
            .title
            .chars()
            .chain(self.text.chars())
            .any(|c| c == '\0')
        {
            return Err(invalid("title and text may not contain NUL"));
        }
        Ok(())
    }
}

fn invalid(message: &str) -> ChatError {
    ChatError::invalid(ErrorCode::InvalidInput, message)
}

fn taken() -> ChatError {
    ChatError::Conflict("another canned reply has this shortcut".into())
}

impl ChatService {
    /// Every canned reply whose shortcut or title contains `q` (case-insensitive), by shortcut.
    pub async fn canned(&self, q: Option<&str>) -> Result<Vec<CannedReply>, ChatError> {
        let all = self.store().list_canned().await?;
        let q = q.map(|q| q.trim().trim_start_matches('/').to_lowercase());
        Ok(match q.filter(|q| !q.is_empty()) {
            None => all,
            Some(q) => all
                .into_iter()
                .filter(|r| r.shortcut.contains(&q) || r.title.to_lowercase().contains(&q))
                .collect(),
        })
    }

    pub async fn create_canned(&self, input: CannedInput) -> Result<CannedReply, ChatError> {
        input.validate()?;
        let reply = CannedReply {
            id: ulid::Ulid::new().to_string(),
            shortcut: input.shortcut,
            title: input.title,
            text: input.text,
            updated_at: self.now(),
        };
        if !self.store().create_canned(&reply).await? {
            return Err(taken());
        }
        Ok(reply)
    }

    pub async fn update_canned(
        &self,
        id: &str,
        input: CannedInput,
    ) -> Result<CannedReply, ChatError> {
        input.validate()?;
        let reply = CannedReply {
            id: canned_id(id)?,
            shortcut: input.shortcut,
            title: input.title,
            text: input.text,
            updated_at: self.now(),
        };
        match self.store().update_canned(&reply).await? {
            CannedWrite::Written => Ok(reply),
            CannedWrite::NotFound => Err(unknown()),
            CannedWrite::ShortcutTaken => Err(taken()),
        }
    }

    pub async fn delete_canned(&self, id: &str) -> Result<(), ChatError> {
        if self.store().delete_canned(&canned_id(id)?).await? {
            Ok(())
        } else {
            Err(unknown())
        }
    }
}

fn unknown() -> ChatError {
    ChatError::NotFound("unknown canned reply".into())
}

/// A canned reply id is a ULID (in canonical upper case); anything else names none.
fn canned_id(id: &str) -> Result<String, ChatError> {
    ulid::Ulid::from_string(id)
        .map(|u| u.to_string())
        .map_err(|_| unknown())
}
