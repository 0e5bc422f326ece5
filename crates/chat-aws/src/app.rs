//! Everything a Lambda needs, built once per cold start from the environment.
//!
//! One `SdkConfig` is loaded (credentials, region, and `AWS_ENDPOINT_URL` for an emulator) and
//! every client is built from it, so they share one HTTP client and TLS setup ([`https_client`]). The management
//! API client gets its endpoint from `WEBSOCKET_ENDPOINT`, which the template builds from the
//! API id, region and stage. Secrets come from the environment or, where `*_PARAM` variables
//! name them, from SSM Parameter Store in one call ([`crate::secrets`]). Missing or malformed
//! variables and unreadable parameters stop the cold start with a message naming the variable
//! or parameter, never its value.

use crate::dynamo::DynamoStore;
use crate::push::ApiGatewayPush;
use crate::secrets::{self, SecretsError};
use crate::sqs::SqsQueue;
use chat_core::config::{ConfigError, Secret};
use chat_core::ports::{Agent, Clock, Push, SystemClock};
use chat_core::service::Ports;
use chat_core::{ChatService, Config, Dispatcher};
use chat_n8n::N8nClient;
use chat_n8n::jwks::HttpJwks;
use std::sync::Arc;

/// The service, its adapters, and (for the dispatch function) the dispatcher.
#[derive(Clone)]
pub struct App {
    pub service: ChatService,
    /// Present when `CHAT_N8N_WEBHOOK_URL` is set (the dispatch function requires it).
    pub dispatcher: Option<Dispatcher>,
    /// Sets a retried record's backoff on SQS; without it the queue's visibility timeout
    /// applies.
    pub retry: Option<Arc<SqsQueue>>,
}

/// The environment a Lambda reads.
#[derive(Debug, Clone)]
pub struct LambdaEnv {
    pub table: String,
    pub queue_url: String,
    pub websocket_endpoint: String,
    pub n8n_url: Option<String>,
    /// `CHAT_ATTACHMENTS_BUCKET`: the S3 bucket of attachments; unset: none.
    pub attachments_bucket: Option<String>,
    pub config: Config,
}

impl LambdaEnv {
    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let need = |k: &'static str| set(k).ok_or(ConfigError::Missing(k));
        let url = |k: &'static str, v: String| {
            if v.starts_with("https://") || v.starts_with("http://") {
                Ok(v.trim_end_matches('/').to_string())
            } else {
                Err(ConfigError::Invalid {
                    name: k,
                    expected: "an http:// or https:// URL",
                })
            }
        };
        let websocket_endpoint = url("WEBSOCKET_ENDPOINT", need("WEBSOCKET_ENDPOINT")?)?;
        let public_url = url("CHAT_PUBLIC_URL", need("CHAT_PUBLIC_URL")?)?;
        let websocket_url = match set("CHAT_WEBSOCKET_URL") {
            Some(u) => u,
            None => websocket_endpoint
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1),
        };
        let n8n_url = set("CHAT_N8N_WEBHOOK_URL")
            .map(|u| url("CHAT_N8N_WEBHOOK_URL", u))
            .transpose()?;
        let config = Config::from_env(
            env,
            Secret::new(need("CHAT_WEBHOOK_SECRET")?),
            Secret::new(need("CHAT_SESSION_SECRET")?),
            public_url,
            websocket_url,
        )?;
        Ok(Self {
            table: need("TABLE_NAME")?,
            queue_url: need("QUEUE_URL")?,
            websocket_endpoint,
            n8n_url,
            attachments_bucket: set("CHAT_ATTACHMENTS_BUCKET"),
            config,
        })
    }
}

/// Checks the environment as [`LambdaEnv::from_lookup`] does, with a stand-in for each secret
/// that Parameter Store will give.
fn check_without_secrets(
    env: &dyn Fn(&str) -> Option<String>,
    wanted: &[secrets::Wanted],
) -> Result<(), ConfigError> {
    LambdaEnv::from_lookup(&|k| match wanted.iter().any(|w| w.variable == k) {
        true => Some("read from Parameter Store".into()),
        false => env(k),
    })
    .map(drop)
}

/// The one HTTPS client every AWS client of a Lambda shares: rustls on ring, the crypto
/// reqwest already brings for n8n, so a binary carries one TLS stack (the SDK's default,
/// aws-lc, is not linked). It trusts the Mozilla root certificates compiled into the binary
/// (as reqwest does), not the system's: reading the system's certificate folder was most of a
/// cold start (4 to 10 ms of 7 to 11 ms on the benchmark machine).
pub fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let mut roots = tls::TrustStore::empty().with_native_roots(false);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        roots.add_pem_certificate(pem(cert));
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(roots)
        .build()
        .expect("a TLS context from the built-in roots");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https()
}

/// A DER certificate as PEM, the form the SDK's trust store takes.
fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    out
}

/// Why a cold start failed: a variable, or a secret parameter.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl App {
    /// A Lambda's cold start: reads the environment (and the secrets it names in Parameter
    /// Store) and builds the clients, or logs (as a JSON line) which variable or parameter is
    /// missing, malformed or unreadable and fails the start.
    pub async fn start() -> Result<Self, lambda_runtime::Error> {
        Self::from_env().await.map_err(|e| {
            match &e {
                StartError::Config(e) => {
                    tracing::error!(error = %e, "cold start failed: configuration")
                }
                StartError::Secrets(s) => tracing::error!(
                    error = %s,
                    parameter = %s.parameter(),
                    "cold start failed: secret parameter"
                ),
            }
            lambda_runtime::Error::from(format!("configuration: {e}"))
        })
    }

    /// Reads the process environment and builds the AWS clients.
    pub async fn from_env() -> Result<Self, StartError> {
        let lookup = |k: &str| std::env::var(k).ok();
        let wanted = secrets::wanted(&lookup)?;
        // Every other variable is checked before any AWS work.
        check_without_secrets(&lookup, &wanted)?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https_client())
            .load()
            .await;
        Self::from_lookup(&lookup, &sdk).await
    }

    /// Reads the environment `env`, and the secrets it names from Parameter Store through
    /// `sdk`, and builds the app (as [`App::from_env`] does, on another environment).
    pub async fn from_lookup(
        env: &dyn Fn(&str) -> Option<String>,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, StartError> {
        let wanted = secrets::wanted(env)?;
        let values = if wanted.is_empty() {
            Default::default()
        } else {
            secrets::read(&aws_sdk_ssm::Client::new(sdk), &wanted).await?
        };
        let env = LambdaEnv::from_lookup(&|k| values.get(k).cloned().or_else(|| env(k)))?;
        Ok(Self::with_sdk(env, sdk, None)?)
    }

    /// Builds the app on a loaded SDK configuration. `push` replaces the API Gateway push
    /// (tests record pushes with it).
    pub fn with_sdk(
        env: LambdaEnv,
        sdk: &aws_config::SdkConfig,
        push: Option<Arc<dyn Push>>,
    ) -> Result<Self, ConfigError> {
        let store = Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            env.table.clone(),
        ));
        let queue = Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            env.queue_url.clone(),
        ));
        let push = push.unwrap_or_else(|| {
            let conf = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
                .endpoint_url(&env.websocket_endpoint)
                .build();
            Arc::new(ApiGatewayPush::new(
                aws_sdk_apigatewaymanagement::Client::from_conf(conf),
            ))
        });
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store_for_files = store.clone();
        let ports = Ports {
            store: store.clone(),
            queue: queue.clone(),
            push,
            clock,
            // Many Lambda instances share every limit: the buckets live in the table.
            limiter: store,
        };
        let agent = match &env.n8n_url {
            Some(u) => Some(
                N8nClient::with_options(
                    u.clone(),
                    env.config.dispatch.timeout,
                    env.config.dispatch.stream_timeout,
                    env.config.n8n_auth_header.as_ref(),
                )
                .map_err(|e| match e {
                    chat_n8n::ClientError::AuthHeader => ConfigError::Invalid {
                        name: "CHAT_N8N_AUTH_HEADER",
                        expected: "'Name: value' (a header name and a non-empty value)",
                    },
                    chat_n8n::ClientError::Http(_) => ConfigError::Invalid {
                        name: "CHAT_N8N_WEBHOOK_URL",
                        expected: "a URL the HTTP client accepts",
                    },
                })?,
            )
            .map(|c| Arc::new(c) as Arc<dyn Agent>),
            None => None,
        };
        let attachments = env.attachments_bucket.as_ref().map(|bucket| {
            // An emulator (AWS_ENDPOINT_URL) serves buckets by path, not by host name.
            let conf = aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(sdk.endpoint_url().is_some())
                .build();
            let files = crate::s3::S3Files::new(aws_sdk_s3::Client::from_conf(conf), bucket);
            (
                store_for_files as Arc<dyn chat_core::attachments::AttachmentStore>,
                Arc::new(files) as Arc<dyn chat_core::attachments::Files>,
            )
        });
        Ok(Self::from_ports_with(ports, env.config, agent, attachments).with_retry(queue))
    }

    /// The app on any ports (the in-memory ones of `chat_testkit::memory` in benchmarks).
    pub fn from_ports(ports: Ports, config: Config, agent: Option<Arc<dyn Agent>>) -> Self {
        Self::from_ports_with(ports, config, agent, None)
    }

    /// [`Self::from_ports`] with where attachment records and bytes live.
    pub fn from_ports_with(
        ports: Ports,
        config: Config,
        agent: Option<Arc<dyn Agent>>,
        attachments: Option<(
            Arc<dyn chat_core::attachments::AttachmentStore>,
            Arc<dyn chat_core::attachments::Files>,
        )>,
    ) -> Self {
        let mut service = ChatService::new(ports, config);
        if let Some((records, files)) = attachments {
            service = service.with_attachments(records, files);
        }
        // App JWTs from an identity provider: its JWKS is fetched by the first token that
        // needs it, not at cold start.
        if let Some(jwks) = HttpJwks::from_config(service.config()) {
            service = service.with_jwks(jwks);
        }
        let dispatcher = agent.map(|a| Dispatcher::new(service.clone(), a));
        Self {
            service,
            dispatcher,
            retry: None,
        }
    }

    /// Sets retry backoffs on this SQS queue.
    pub fn with_retry(mut self, queue: Arc<SqsQueue>) -> Self {
        self.retry = Some(queue);
        self
    }
}
