//! Wiring: configuration from the environment, the adapters, the server and its shutdown.

use crate::db::{Db, DbError, Durability};
use crate::devbot::DevBot;
use crate::hub::{Hub, HubLimits};
use crate::limits::ServerLimits;
use crate::queue::{self, JobQueue};
pub use crate::state::AppState;
use crate::store::SqliteStore;
use chat_core::config::{ConfigError, Secret};
use chat_core::ports::{Clock, SystemClock};
use chat_core::rate::MemoryLimiter;
use chat_core::service::Ports;
use chat_core::{ChatService, Config, Dispatcher};
use chat_n8n::N8nClient;
use chat_n8n::jwks::HttpJwks;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// `chat-local`'s own settings, on top of the core's.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub webhook_secret: Secret,
    pub session_secret: Secret,
    pub n8n_url: Option<String>,
    pub limits: ServerLimits,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "CHAT_ADDR is not a loopback address, and {missing} not set: the development secrets \
         are public, so set both CHAT_WEBHOOK_SECRET and CHAT_SESSION_SECRET before listening \
         beyond this machine"
    )]
    PublicWithDevSecrets { missing: &'static str },
}

/// Failures that stop `chat-local` from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the data folder: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    N8n(#[from] chat_n8n::ClientError),
    #[error("{0}")]
    Queue(#[from] chat_core::ports::QueueError),
    #[error("{0}")]
    Store(#[from] chat_core::ports::StoreError),
}

const DEV_WEBHOOK_SECRET: &str = "chat-local-dev-webhook-secret";
const DEV_SESSION_SECRET: &str = "chat-local-dev-session-secret";

impl LocalConfig {
    /// Reads the settings; `open_files` is the process's open-file limit (see
    /// [`crate::limits::raise_open_file_limit`]).
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        open_files: u64,
    ) -> Result<Self, LocalConfigError> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let addr = match set("CHAT_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(a) => a.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "CHAT_ADDR",
                expected: "an address like 127.0.0.1:3000",
            })?,
        };
        // Anyone who can reach the server could sign webhooks and mint session tokens with
        // the public development secrets: only this machine may, unless both are set.
        if !addr.ip().to_canonical().is_loopback() {
            let missing = match (set("CHAT_WEBHOOK_SECRET"), set("CHAT_SESSION_SECRET")) {
                (Some(_), Some(_)) => None,
                (None, Some(_)) => Some("CHAT_WEBHOOK_SECRET is"),
                (Some(_), None) => Some("CHAT_SESSION_SECRET is"),
                (None, None) => Some("CHAT_WEBHOOK_SECRET and CHAT_SESSION_SECRET are"),
            };
            if let Some(missing) = missing {
                return Err(LocalConfigError::PublicWithDevSecrets { missing });
            }
        }
        let secret = |name: &'static str, dev: &str| match set(name) {
            Some(s) => Secret::new(s),
            None => {
                tracing::warn!(
                    "{name} is not set: using a development secret; set it before exposing this server"
                );
                Secret::new(dev)
            }
        };
        let public_url = set("CHAT_PUBLIC_URL").map(|u| u.trim().trim_end_matches('/').to_string());
        let n8n_url = set("CHAT_N8N_WEBHOOK_URL").map(|u| u.trim().to_string());
        for (name, url) in [
            ("CHAT_PUBLIC_URL", &public_url),
            ("CHAT_N8N_WEBHOOK_URL", &n8n_url),
        ] {
            if url
                .as_ref()
                .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
            {
                return Err(ConfigError::Invalid {
                    name,
                    expected: "an http:// or https:// URL",
                }
                .into());
            }
        }
        Ok(Self {
            addr,
            data_dir: set("CHAT_DATA_DIR")
                .map_or_else(|| PathBuf::from("./.chat-local"), PathBuf::from),
            public_url,
            webhook_secret: secret("CHAT_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET),
            session_secret: secret("CHAT_SESSION_SECRET", DEV_SESSION_SECRET),
            n8n_url,
            limits: ServerLimits::from_env(env, open_files)?,
        })
    }
}

/// Runs the server until `stop` resolves (or SIGINT/SIGTERM from `main`), then shuts down
/// gracefully: stop accepting, finish requests under way, close sockets, let dispatches
/// record their outcome. `ready` receives the bound address once the server listens.
pub async fn run(
    local: LocalConfig,
    env: &dyn Fn(&str) -> Option<String>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), StartError> {
    let listener = TcpListener::bind(local.addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: local.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: local.addr,
        source,
    })?;
    let public_url = local
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let websocket_url = match public_url.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}/ws"),
        None => format!("ws://{}/ws", public_url.trim_start_matches("http://")),
    };
    let config = Config::from_env(
        env,
        local.webhook_secret.clone(),
        local.session_secret.clone(),
        public_url.clone(),
        websocket_url,
    )?;

    crate::metrics::install();
    // Commits are fsync'd at the barrier that everything leaving the process passes
    // (`crate::durable`): a request's dependent writes share one fsync.
    let db = Db::open_with(&local.data_dir, Durability::AtBarrier)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(SqliteStore::new(db.clone()));
    store.clear_connections().await?;
    let purged = store.purge_expired(clock.now_ms()).await?;
    let jobs = JobQueue::new(db.clone(), clock.clone());
    let pending = jobs
        .recover(config.dispatch.reply_timeout.as_millis() as i64)
        .await?;
    let hub = Arc::new(Hub::new(
        HubLimits {
            per_session: local.limits.max_websockets_per_session,
            per_address: local.limits.max_websockets_per_ip,
            outbox_bytes: local.limits.websocket_outbox_bytes,
        },
        db.clone(),
    ));
    let ports = Ports {
        store: store.clone(),
        queue: Arc::new(jobs.clone()),
        push: hub.clone(),
        clock: clock.clone(),
        // One process owns every request, so rate limits live in its memory (a restart
        // refills the buckets) and cost no disk write.
        limiter: Arc::new(MemoryLimiter::new()),
    };
    let files = Arc::new(
        crate::attachments::DiskFiles::open(
            &local.data_dir,
            &public_url,
            local.session_secret.expose().as_bytes(),
            clock.clone(),
            db.clone(),
        )
        .map_err(DbError::Io)?,
    );
    let mut service = ChatService::new(ports, config.clone()).with_attachments(
        Arc::new(crate::attachments::SqliteAttachments::new(db.clone())),
        files.clone(),
    );
    // App JWTs from an identity provider: its JWKS is fetched by the first token needing it.
    if let Some(jwks) = HttpJwks::from_config(&config) {
        service = service.with_jwks(jwks);
    }

    let (agent_url, dev_bot) = match &local.n8n_url {
        Some(u) => (u.clone(), None),
        None => (format!("{public_url}/dev/n8n"), Some(())),
    };
    // The dev bot is ours: it gets no auth header.
    let auth = local.n8n_url.as_ref().and(config.n8n_auth_header.as_ref());
    let agent = N8nClient::with_options(
        agent_url.clone(),
        config.dispatch.timeout,
        config.dispatch.stream_timeout,
        auth,
    )?;
    let dev_bot = dev_bot.map(|()| DevBot::new(local.webhook_secret.clone(), agent.http().clone()));
    let agent = crate::durable::SyncedAgent {
        db: db.clone(),
        agent,
    };
    let dispatcher = Dispatcher::new(service.clone(), Arc::new(agent));

    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState {
        service,
        hub: hub.clone(),
        dev_bot,
        limits: local.limits.clone(),
        shutdown: stop_rx.clone(),
        files,
        db: db.clone(),
    };
    let worker = tokio::spawn(queue::run_worker(jobs, dispatcher, stop_rx.clone()));
    tokio::spawn(purge_hourly(
        store.clone(),
        state.service.clone(),
        clock.clone(),
        stop_rx.clone(),
    ));

    let app = crate::routes::router(state);
    let limits = &local.limits;
    tracing::info!(
        %addr,
        data_dir = %local.data_dir.display(),
        n8n = if local.n8n_url.is_some() { "external" } else { "built-in dev bot" },
        pending_dispatches = pending,
        purged_expired = purged,
        max_connections = limits.max_connections,
        max_connections_per_ip = limits.max_connections_per_ip,
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        body_timeout_ms = limits.body_timeout.as_millis() as u64,
        "chat-local ready"
    );
    if config.auth_jwt_secret.is_some() {
        tracing::info!(
            "agent console: {public_url}/agent, signed in with a token from \
             `chat-local agent-token --name Alex` (same CHAT_AUTH_JWT_SECRET)"
        );
    } else {
        tracing::info!(
            "agent console: {public_url}/agent needs agent tokens: set CHAT_AUTH_JWT_SECRET, \
             then `chat-local agent-token --name Alex` prints one"
        );
    }
    ready(addr);

    tokio::spawn(async move {
        stop.await;
        tracing::info!("shutting down: no new connections; finishing work under way");
        let _ = stop_tx.send(true);
    });
    crate::serve::serve(listener, app, limits, stop_rx.clone()).await;
    hub.close_all();
    let _ = worker.await;
    tracing::info!("stopped");
    Ok(())
}

/// Removes expired sessions, messages, connections and idempotency keys every hour
/// (what DynamoDB's TTL does on AWS), so a long-running server does not grow without bound.
async fn purge_hourly(
    store: Arc<SqliteStore>,
    service: ChatService,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = every.tick() => {
                match store.purge_expired(clock.now_ms()).await {
                    Ok(n) => tracing::info!(removed = n, "expired data purged"),
                    Err(e) => tracing::warn!(error = %e, "purge of expired data failed; will retry in an hour"),
                }
                // Attachments no message took within their hour, and those of expired
                // messages: records and files.
                if let Err(e) = service.purge_attachments().await {
                    tracing::warn!(error = %e, "purge of attachments failed; will retry in an hour");
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// `chat-local admin redrive`: puts the deliveries given up after their last attempt (the
/// `dead_jobs` of the database in `local.data_dir`) back on the queue, their messages
/// `received` again with a new reply deadline (`CHAT_REPLY_TIMEOUT_MS` from now).
pub async fn redrive(
    local: &LocalConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<crate::queue::Redriven, StartError> {
    // Only the reply timeout is read here; the URLs are not used.
    let config = Config::from_env(
        env,
        local.webhook_secret.clone(),
        local.session_secret.clone(),
        "http://127.0.0.1".into(),
        "ws://127.0.0.1/ws".into(),
    )?;
    let db = Db::open(&local.data_dir)?;
    let jobs = JobQueue::new(db, Arc::new(SystemClock));
    Ok(jobs
        .redrive(config.dispatch.reply_timeout.as_millis() as i64)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<LocalConfig, LocalConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LocalConfig::from_env(&move |k: &str| map.get(k).cloned(), 1024)
    }

    #[test]
    fn beyond_loopback_both_secrets_must_be_set() {
        let both = [
            ("CHAT_WEBHOOK_SECRET", "a long webhook secret"),
            ("CHAT_SESSION_SECRET", "a long session secret"),
        ];
        for addr in ["0.0.0.0:3000", "[::]:3000", "192.0.2.1:80"] {
            for secrets in [&both[..0], &both[..1], &both[1..]] {
                let mut vars = secrets.to_vec();
                vars.push(("CHAT_ADDR", addr));
                let e = config(&vars).expect_err(addr);
                assert!(
                    matches!(e, LocalConfigError::PublicWithDevSecrets { .. }),
                    "{e}"
                );
                assert!(!e.to_string().contains("long"), "no secret in {e}");
            }
            let mut vars = both.to_vec();
            vars.push(("CHAT_ADDR", addr));
            assert!(config(&vars).is_ok(), "{addr} with both secrets");
        }
        for addr in [
            "127.0.0.1:3000",
            "127.0.0.5:0",
            "[::1]:3000",
            "[::ffff:127.0.0.1]:3000",
        ] {
            assert!(config(&[("CHAT_ADDR", addr)]).is_ok(), "{addr} on loopback");
        }
    }
}
