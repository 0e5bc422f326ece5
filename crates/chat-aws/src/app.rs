//! Everything a Lambda needs, built once per cold start from the environment.
//!
//! One `SdkConfig` is built straight from what Lambda sets ([`lambda_sdk`]: region, the
//! function role's credentials, and `AWS_ENDPOINT_URL` for an emulator), without
//! `aws-config`'s provider chains (profile files, IMDS, SSO, STS: work and code a Lambda never
//! needs), and every client is built from it, so they share one HTTP client and TLS setup
//! ([`https_client`]). The management
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
/// cold start (4 to 10 ms of 7 to 11 ms on the benchmark machine). It is built by the first
/// request ([`LazyHttpsClient`]), not at cold start.
pub fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    aws_sdk_dynamodb::config::SharedHttpClient::new(LazyHttpsClient::default())
}

/// The HTTPS client of [`https_client`], built (the roots turned into the PEM the SDK's trust
/// store takes) when the first request asks for a connector: init does none of that work.
#[derive(Debug, Default)]
pub struct LazyHttpsClient(std::sync::OnceLock<aws_sdk_dynamodb::config::SharedHttpClient>);

impl aws_sdk_dynamodb::config::HttpClient for LazyHttpsClient {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        self.0
            .get_or_init(build_https_client)
            .http_connector(settings, components)
    }
}

fn build_https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
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

/// The SDK configuration of a Lambda from its environment: the region (`AWS_REGION`, else
/// `AWS_DEFAULT_REGION`), the execution role's credentials Lambda puts in `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (they stay valid for the life of the
/// execution environment), `AWS_ENDPOINT_URL` when set (the emulator), [`https_client`], and
/// the retries and connect timeout `aws-config` would give (standard, 3 attempts; 3.1 s).
/// Nothing is read from files or the network. A missing variable is named, never a value.
pub fn lambda_sdk(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<aws_types::SdkConfig, ConfigError> {
    use aws_sdk_dynamodb::config::{
        BehaviorVersion, Credentials, Region, SharedCredentialsProvider, retry::RetryConfig,
        timeout::TimeoutConfig,
    };
    let set = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let region = set("AWS_REGION")
        .or_else(|| set("AWS_DEFAULT_REGION"))
        .ok_or(ConfigError::Missing("AWS_REGION"))?;
    let credentials = Credentials::new(
        set("AWS_ACCESS_KEY_ID").ok_or(ConfigError::Missing("AWS_ACCESS_KEY_ID"))?,
        set("AWS_SECRET_ACCESS_KEY").ok_or(ConfigError::Missing("AWS_SECRET_ACCESS_KEY"))?,
        set("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut sdk = aws_types::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(https_client())
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_millis(3100))
                .build(),
        );
    if let Some(url) = set("AWS_ENDPOINT_URL") {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: "AWS_ENDPOINT_URL",
                expected: "an http:// or https:// URL",
            });
        }
        sdk = sdk.endpoint_url(url);
    }
    Ok(sdk.build())
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
        let sdk = lambda_sdk(&lookup)?;
        Self::from_lookup(&lookup, &sdk).await
    }

    /// Reads the environment `env`, and the secrets it names from Parameter Store through
    /// `sdk`, and builds the app (as [`App::from_env`] does, on another environment).
    pub async fn from_lookup(
        env: &dyn Fn(&str) -> Option<String>,
        sdk: &aws_types::SdkConfig,
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
        sdk: &aws_types::SdkConfig,
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::ProvideCredentials;
    use std::collections::HashMap;

    const SECRET_KEY: &str = "secret-access-key-must-not-leak";

    fn lambda_vars() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEKEY"),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_SESSION_TOKEN", "session-token-of-the-role"),
        ])
    }

    fn sdk_of(vars: &HashMap<&str, &str>) -> Result<aws_types::SdkConfig, ConfigError> {
        lambda_sdk(&|k| vars.get(k).map(|v| v.to_string()))
    }

    #[tokio::test]
    async fn the_sdk_configuration_comes_from_the_lambda_environment() {
        let sdk = sdk_of(&lambda_vars()).unwrap();
        assert_eq!(sdk.region().unwrap().as_ref(), "eu-west-1");
        assert_eq!(sdk.endpoint_url(), None);
        let creds = sdk
            .credentials_provider()
            .expect("credentials")
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "ASIAEXAMPLEKEY");
        assert_eq!(creds.secret_access_key(), SECRET_KEY);
        assert_eq!(creds.session_token(), Some("session-token-of-the-role"));
        assert_eq!(sdk.retry_config().unwrap().max_attempts(), 3);
        assert_eq!(
            sdk.timeout_config().unwrap().connect_timeout(),
            Some(std::time::Duration::from_millis(3100))
        );

        let mut vars = lambda_vars();
        vars.remove("AWS_REGION");
        vars.remove("AWS_SESSION_TOKEN");
        vars.insert("AWS_ENDPOINT_URL", "http://127.0.0.1:5000");
        let sdk = sdk_of(&vars).unwrap();
        assert_eq!(sdk.region().unwrap().as_ref(), "us-east-2");
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:5000"));
        let creds = sdk
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.session_token(), None);
    }

    #[test]
    fn a_missing_lambda_variable_is_named_without_values() {
        for (missing, named) in [
            (&["AWS_REGION", "AWS_DEFAULT_REGION"][..], "AWS_REGION"),
            (&["AWS_ACCESS_KEY_ID"], "AWS_ACCESS_KEY_ID"),
            (&["AWS_SECRET_ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY"),
        ] {
            let mut vars = lambda_vars();
            for k in missing {
                vars.remove(k);
            }
            let text = sdk_of(&vars).unwrap_err().to_string();
            assert_eq!(text, format!("{named} is required"));
        }
        let mut vars = lambda_vars();
        vars.insert("AWS_ENDPOINT_URL", "127.0.0.1:5000");
        let text = sdk_of(&vars).unwrap_err().to_string();
        assert!(text.starts_with("AWS_ENDPOINT_URL must be"), "{text}");
        assert!(
            !text.contains(SECRET_KEY) && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
}
