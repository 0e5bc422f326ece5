//! What the tests and benchmarks of every crate share, kept out of the shipped crates.
//!
//! - [`memory`]: in-memory adapters (store, queue, push, clock, agent) for tests of the core
//!   and as the reference the real stores are checked against;
//! - [`conformance`]: the suites every `Store` and every `Limiter` must pass;
//! - [`config`]: a configuration with fixed secrets and default limits;
//! - [`fake_n8n`]: the other end of the n8n contract, for tests that do not run n8n;
//! - [`bench`]: how benchmarks report their figures to `tests/bench`;
//! - `aws` (feature `aws`): the AWS emulator, a Lambda Runtime API server, and Lambda
//!   binaries started as Lambda starts them.

#[cfg(feature = "aws")]
pub mod aws;
pub mod bench;
pub mod conformance;
pub mod fake_n8n;
pub mod memory;

use chat_core::config::{Config, DispatchConfig, Limits, Secret};

/// A configuration for tests and examples: fixed secrets, default limits.
pub fn config() -> Config {
    Config {
        webhook_secret: Secret::new("test-webhook-secret"),
        session_secret: Secret::new("test-session-secret"),
        auth_jwt_secret: Some(Secret::new("test-app-jwt-secret")),
        app_auth: Default::default(),
        public_url: "http://127.0.0.1:3000".into(),
        websocket_url: "ws://127.0.0.1:3000/ws".into(),
        limits: Limits::default(),
        dispatch: DispatchConfig::default(),
        n8n_auth_header: None,
        welcome_message: None,
        n8n_session_start: false,
        attachments: Default::default(),
    }
}
