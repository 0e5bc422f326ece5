//! What every `chat-local` handler can reach: the service, the WebSocket hub, the dev bot,
//! the server's limits and the shutdown signal.

use crate::devbot::DevBot;
use crate::hub::Hub;
use crate::limits::ServerLimits;
use axum::extract::FromRef;
use chat_core::ChatService;
use chat_http::{ApiState, Options};
use std::sync::Arc;
use tokio::sync::watch;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: ChatService,
    pub hub: Arc<Hub>,
    pub dev_bot: Option<DevBot>,
    pub limits: ServerLimits,
    pub shutdown: watch::Receiver<bool>,
    /// Attachment bytes on disk and their signed URLs.
    pub files: Arc<crate::attachments::DiskFiles>,
    /// The database, for the durability barrier every answer passes ([`crate::durable`]).
    pub db: crate::db::Db,
}

impl FromRef<AppState> for ApiState {
    fn from_ref(s: &AppState) -> Self {
        ApiState {
            service: s.service.clone(),
            options: Options {
                body_timeout: s.limits.body_timeout,
            },
        }
    }
}
