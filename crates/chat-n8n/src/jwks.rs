//! The identity provider's JWKS over HTTPS: the [`JwksSource`] of `CHAT_AUTH_JWKS_URL`.
//!
//! The core decides when to fetch (first use, unknown `kid`, rate-limited); this only does one
//! bounded GET: [`TIMEOUT`] in all, at most [`MAX_BYTES`] of body, redirects not followed (so
//! an https URL cannot be bounced to plain http), any non-2xx a failure. The HTTP client is
//! built by the first fetch, so a Lambda cold start pays nothing for it.

use async_trait::async_trait;
use chat_core::config::Config;
use chat_core::ports::{JwksError, JwksSource};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The longest one fetch may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document accepted (real ones are a few KB).
pub const MAX_BYTES: usize = 64 * 1024;

/// Fetches one JWKS URL.
#[derive(Debug)]
pub struct HttpJwks {
    url: String,
    http: OnceLock<reqwest::Client>,
}

impl HttpJwks {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            http: OnceLock::new(),
        }
    }

    /// The source for `config`'s `CHAT_AUTH_JWKS_URL`, if set.
    pub fn from_config(config: &Config) -> Option<Arc<dyn JwksSource>> {
        let url = config.app_auth.jwks_url.as_ref()?;
        Some(Arc::new(Self::new(url.clone())))
    }

    fn client(&self) -> Result<&reqwest::Client, JwksError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("chat-backend/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError(format!("cannot build the HTTP client: {e}")))?;
        Ok(self.http.get_or_init(|| client))
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
        let failed = |e: reqwest::Error| {
            let e = e.without_url();
            JwksError(if e.is_timeout() {
                "timed out".into()
            } else if e.is_connect() {
                "could not connect".into()
            } else {
                e.to_string()
            })
        };
        let mut response = self
            .client()?
            .get(&self.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError(format!("the JWKS URL answered {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BYTES as u64)
        {
            return Err(JwksError(format!("the JWKS is over {MAX_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(JwksError(format!("the JWKS is over {MAX_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
