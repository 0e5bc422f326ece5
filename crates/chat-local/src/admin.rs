//! `chat-local admin export|erase --user <id> | --session <id>`: what an operator runs when a
//! person asks for their data or its deletion. Same database (`CHAT_DATA_DIR`) as the
//! server, the same core functions as the user's own routes; it may run while the server
//! runs (an erased session's open sockets then see it gone at their next frame).

use crate::app::{LocalConfig, StartError};
use crate::db::Db;
use crate::queue::JobQueue;
use crate::store::SqliteStore;
use async_trait::async_trait;
use chat_core::model::SessionId;
use chat_core::ports::{Push, PushError, SystemClock};
use chat_core::rate::MemoryLimiter;
use chat_core::service::Ports;
use chat_core::{ChatError, ChatService, Config};
use std::sync::Arc;

/// Whose data a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User(String),
    Session(String),
}

impl Target {
    /// `--user <id>` or `--session <id>`, exactly one.
    pub fn parse(args: &[&str]) -> Option<Self> {
        match args {
            ["--user", id] if !id.is_empty() => Some(Self::User(id.to_string())),
            ["--session", id] if !id.is_empty() => Some(Self::Session(id.to_string())),
            _ => None,
        }
    }
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Chat(#[from] ChatError),
}

/// This process holds no sockets: the server's own are not reachable from here.
struct NoSockets;

#[async_trait]
impl Push for NoSockets {
    async fn push(&self, _: &str, _: &str) -> Result<(), PushError> {
        Err(PushError::Gone)
    }
    async fn close(&self, _: &str) -> Result<(), PushError> {
        Ok(())
    }
}

fn service(
    local: &LocalConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ChatService, StartError> {
    let config = Config::from_env(
        env,
        local.webhook_secret.clone(),
        local.session_secret.clone(),
        "http://127.0.0.1".into(),
        "ws://127.0.0.1/ws".into(),
    )?;
    let db = Db::open(&local.data_dir)?;
    let clock = Arc::new(SystemClock);
    let ports = Ports {
        store: Arc::new(SqliteStore::new(db.clone())),
        queue: Arc::new(JobQueue::new(db, clock.clone())),
        push: Arc::new(NoSockets),
        clock,
        limiter: Arc::new(MemoryLimiter::new()),
    };
    Ok(ChatService::new(ports, config))
}

/// `admin export`: the JSON document of `GET /me/export` (or of one session).
pub async fn export(
    local: &LocalConfig,
    env: &dyn Fn(&str) -> Option<String>,
    target: &Target,
) -> Result<String, AdminError> {
    let svc = service(local, env)?;
    let export = match target {
        Target::User(u) => svc.export_user(u).await?,
        Target::Session(s) => svc.export_session(s).await?,
    };
    Ok(serde_json::to_string_pretty(&export).expect("exports serialize"))
}

/// `admin erase`: how many sessions were erased.
pub async fn erase(
    local: &LocalConfig,
    env: &dyn Fn(&str) -> Option<String>,
    target: &Target,
) -> Result<usize, AdminError> {
    let svc = service(local, env)?;
    Ok(match target {
        Target::User(u) => svc.erase_user(u).await?,
        Target::Session(s) => {
            let id: SessionId = s.parse()?;
            usize::from(svc.erase(&id).await?)
        }
    })
}
