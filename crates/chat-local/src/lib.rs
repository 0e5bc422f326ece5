//! `chat-local`: the whole chat product in one process, for development and small installs.
//!
//! The same core as on AWS, with local adapters: SQLite for the [`Store`](store::SqliteStore)
//! and the durable [`queue`], a [`hub`] of WebSockets for `Push`, and a [`devbot`] that
//! stands in for n8n over the real signed HTTP path. [`routes`] adds the page, the
//! browser files, the WebSocket ([`ws`]) and the dev bot to the HTTP API of `chat-http`, served by the accept loop of [`serve`] within the
//! [`limits`] that protect the process from slow, greedy and hostile clients; [`durable`]
//! holds what leaves the process until what it says was stored is on disk. [`metrics`]
//! serves the core's operational figures as Prometheus text at `GET /metrics`.

pub mod admin;
pub mod agent_token;
pub mod app;
pub mod attachments;
pub mod db;
pub mod devbot;
pub mod durable;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod queue;
pub mod routes;
pub mod security;
pub mod serve;
pub mod state;
pub mod store;
pub mod ws;

pub use app::{LocalConfig, run};
