//! `chat-admin export|erase --user <id> | --session <id>`: what an operator runs on a deployed
//! stack when a person asks for their data or its deletion. The same core functions as the
//! user's own routes (`GET /me/export`, `DELETE /me`) and as `chat-local admin`, on the
//! stack's table; with the WebSocket API's endpoint, an erased session's open sockets are
//! closed (1000), else only their records go (each socket then fails at its next frame).

use crate::dynamo::DynamoStore;
use crate::push::ApiGatewayPush;
use async_trait::async_trait;
use chat_core::config::{ConfigError, Secret};
use chat_core::model::{DispatchJob, Millis, SessionId};
use chat_core::ports::{Push, PushError, Queue, QueueError, SystemClock};
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
    /// `--user <id>` or `--session <id>`, exactly one (other flags around them are skipped).
    pub fn parse(args: &[String]) -> Option<Self> {
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .filter(|v| !v.trim().is_empty() && !v.starts_with("--"))
                .cloned()
        };
        match (value("--user"), value("--session")) {
            (Some(u), None) => Some(Self::User(u)),
            (None, Some(s)) => Some(Self::Session(s)),
            _ => None,
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Chat(#[from] ChatError),
}

/// Export and erasure queue nothing: a queue that refuses.
struct NoQueue;

#[async_trait]
impl Queue for NoQueue {
    async fn enqueue(&self, _: DispatchJob, _: Millis) -> Result<(), QueueError> {
        Err(QueueError("chat-admin queues nothing".into()))
    }
    async fn schedule(&self, _: DispatchJob, _: Millis) -> Result<(), QueueError> {
        Err(QueueError("chat-admin queues nothing".into()))
    }
}

/// Without the WebSocket endpoint: no socket is reachable; closing one is left to its next frame.
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

/// The service on the stack's table. `websocket_endpoint`: the WebSocket API's management
/// endpoint (the stack's `WebSocketEndpoint`-style https URL), to close erased sessions' sockets.
pub fn service(
    sdk: &aws_types::SdkConfig,
    table: String,
    websocket_endpoint: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ChatService, AdminError> {
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table));
    let records = store.clone();
    let push: Arc<dyn Push> = match websocket_endpoint {
        Some(e) => {
            let conf = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
                .endpoint_url(e)
                .build();
            Arc::new(ApiGatewayPush::new(
                aws_sdk_apigatewaymanagement::Client::from_conf(conf),
            ))
        }
        None => Arc::new(NoSockets),
    };
    // Neither command signs or checks a token: the secrets are throwaway values.
    let throwaway = || Secret::new(format!("unused-{}", ulid::Ulid::new()));
    let config = Config::from_env(
        env,
        throwaway(),
        throwaway(),
        "https://chat-admin.invalid".into(),
        "wss://chat-admin.invalid".into(),
    )?;
    let ports = Ports {
        store,
        queue: Arc::new(NoQueue),
        push,
        clock: Arc::new(SystemClock),
        limiter: Arc::new(MemoryLimiter::new()),
    };
    let service = ChatService::new(ports, config);
    // With the stack's attachment bucket (its `AttachmentsBucketName` output), an erasure
    // deletes the conversations' files too, and an export carries their download URLs.
    Ok(
        match env("CHAT_ATTACHMENTS_BUCKET").filter(|b| !b.is_empty()) {
            Some(bucket) => {
                let conf = aws_sdk_s3::config::Builder::from(sdk)
                    .force_path_style(sdk.endpoint_url().is_some())
                    .build();
                let files = crate::s3::S3Files::new(aws_sdk_s3::Client::from_conf(conf), &bucket);
                service.with_attachments(records, Arc::new(files))
            }
            None => service,
        },
    )
}

/// `export`: the JSON document of `GET /me/export` (or of one session).
pub async fn export(svc: &ChatService, target: &Target) -> Result<String, AdminError> {
    let export = match target {
        Target::User(u) => svc.export_user(u).await?,
        Target::Session(s) => svc.export_session(s).await?,
    };
    Ok(serde_json::to_string_pretty(&export).expect("exports serialize"))
}

/// `erase`: how many sessions were erased.
pub async fn erase(svc: &ChatService, target: &Target) -> Result<usize, AdminError> {
    Ok(match target {
        Target::User(u) => svc.erase_user(u).await?,
        Target::Session(s) => {
            let id: SessionId = s.parse()?;
            usize::from(svc.erase(&id).await?)
        }
    })
}
