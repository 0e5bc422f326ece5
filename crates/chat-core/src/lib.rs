//! The chat backend's core: what a chat *is*, independent of where it runs.
//!
//! Everything that decides behaviour lives here: domain types ([`model`]), input limits
//! ([`validate`]), session tokens ([`token`]), app JWTs ([`auth`]), the n8n signature
//! ([`signature`]), the wire events ([`events`]) and the [`service::ChatService`] that ties
//! them together. The service talks to the outside world only through the traits in
//! [`ports`] (`Store`, `Queue`, `Push`, `Clock`, `Agent`, `JwksSource`), so the same code
//! runs on AWS Lambda (DynamoDB, SQS, API Gateway) and in the single-process `chat-local`
//! server (SQLite, an in-process queue, local WebSockets).
//!
//! [`metrics`] names the operational figures the service emits through the `metrics` facade.
//!
//! [`api`] is the framework-neutral HTTP layer both deployments share: it turns raw request
//! parts into service calls and results into status codes and JSON bodies of the contract.

pub mod answer;
pub mod api;
pub mod attachments;
pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod rate;
pub mod service;
pub mod signature;
pub mod token;
pub mod trace;
pub mod validate;

pub use config::Config;
pub use error::ChatError;
pub use service::{ChatService, Dispatcher};
