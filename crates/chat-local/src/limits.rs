//! Limits that protect the process from slow, greedy and hostile clients: how many sockets
//! it holds (in all and per client address), how long a client may take to send a request's
//! headers and body, and how many WebSockets a session or an address may open and how much a
//! WebSocket that does not read may make the server hold for it.
//!
//! Each is a `CHAT_*` variable with a default, validated like the core's limits. The total is
//! derived from the open-file limit, which [`raise_open_file_limit`] lifts to the hard limit
//! at start, so that a flood of connections meets a refusal instead of `EMFILE`.

use chat_core::config::{ConfigError, num};
use std::time::Duration;

/// File descriptors kept back from the connection cap: the database and its WAL, the
/// listener, outbound connections to n8n and the dev bot's own calls to this server.
const FD_RESERVE_SHARE: u64 = 4;

/// The server's protective limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open client sockets in all (HTTP and WebSocket); past it, new ones wait to be accepted.
    pub max_connections: usize,
    /// Open client sockets per client IP address; past it, a new one gets 429 and is closed.
    pub max_connections_per_ip: usize,
    /// A request's headers (and an idle keep-alive connection's next request) must arrive
    /// within this, or the connection is closed.
    pub header_timeout: Duration,
    /// A request's body must arrive within this, or the answer is 408.
    pub body_timeout: Duration,
    /// Open WebSockets per session.
    pub max_websockets_per_session: usize,
    /// Open WebSockets per client IP address.
    pub max_websockets_per_ip: usize,
    /// Bytes of frames a WebSocket may have waiting to be written before it counts as too
    /// slow and is closed (1008).
    pub websocket_outbox_bytes: usize,
}

impl ServerLimits {
    /// Reads the limits; `open_files` is the process's (soft) open-file limit.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        open_files: u64,
    ) -> Result<Self, ConfigError> {
        let most = max_connections_for(open_files);
        let max_connections = num(env, "CHAT_MAX_CONNECTIONS", most, 1, most)?;
        let per_ip = num(
            env,
            "CHAT_MAX_CONNECTIONS_PER_IP",
            256.min(max_connections),
            1,
            max_connections,
        )?;
        let ms =
            |name, default, min, max| num(env, name, default, min, max).map(Duration::from_millis);
        Ok(Self {
            max_connections: max_connections as usize,
            max_connections_per_ip: per_ip as usize,
            header_timeout: ms("CHAT_HEADER_TIMEOUT_MS", 10_000, 100, 600_000)?,
            body_timeout: ms("CHAT_BODY_TIMEOUT_MS", 10_000, 100, 600_000)?,
            max_websockets_per_session: num(env, "CHAT_MAX_WEBSOCKETS_PER_SESSION", 16, 1, 100_000)?
                as usize,
            max_websockets_per_ip: num(
                env,
                "CHAT_MAX_WEBSOCKETS_PER_IP",
                64.min(per_ip),
                1,
                per_ip,
            )? as usize,
            websocket_outbox_bytes: num(
                env,
                "CHAT_WEBSOCKET_OUTBOX_BYTES",
                256 * 1024,
                16 * 1024,
                64 * 1024 * 1024,
            )? as usize,
        })
    }
}

/// The most client sockets `open_files` descriptors allow: three quarters of them (at least
/// one), the rest kept for the database, the listener and outbound HTTP.
pub fn max_connections_for(open_files: u64) -> u64 {
    let open_files = open_files.min(1 << 20);
    (open_files - open_files / FD_RESERVE_SHARE).max(1)
}

/// Lifts the soft open-file limit to the hard one; returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            open_file_limit()
        }
    }
}

/// The soft open-file limit in force (1,024 when it cannot be read).
pub fn open_file_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn limits(vars: &[(&str, &str)], open_files: u64) -> Result<ServerLimits, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServerLimits::from_env(&move |k: &str| map.get(k).cloned(), open_files)
    }

    #[test]
    fn defaults_follow_the_open_file_limit() {
        let l = limits(&[], 1024).unwrap();
        assert_eq!(l.max_connections, 768);
        assert_eq!(l.max_connections_per_ip, 256);
        assert_eq!(l.header_timeout, Duration::from_secs(10));
        assert_eq!(l.body_timeout, Duration::from_secs(10));
        assert_eq!(l.max_websockets_per_session, 16);
        assert_eq!(l.max_websockets_per_ip, 64);
        assert_eq!(l.websocket_outbox_bytes, 256 * 1024);
        // A tiny descriptor budget shrinks the per-address caps with it.
        let l = limits(&[], 40).unwrap();
        assert_eq!((l.max_connections, l.max_connections_per_ip), (30, 30));
        assert_eq!(l.max_websockets_per_ip, 30);
    }

    #[test]
    fn values_out_of_range_name_their_variable() {
        for (name, value) in [
            ("CHAT_MAX_CONNECTIONS", "0"),
            ("CHAT_MAX_CONNECTIONS", "769"),
            ("CHAT_MAX_CONNECTIONS_PER_IP", "many"),
            ("CHAT_HEADER_TIMEOUT_MS", "10"),
            ("CHAT_BODY_TIMEOUT_MS", "-1"),
            ("CHAT_MAX_WEBSOCKETS_PER_SESSION", "0"),
            ("CHAT_MAX_WEBSOCKETS_PER_IP", "257"),
            ("CHAT_WEBSOCKET_OUTBOX_BYTES", "1024"),
        ] {
            match limits(&[(name, value)], 1024) {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
        let l = limits(&[("CHAT_MAX_CONNECTIONS", "100")], 1024).unwrap();
        assert_eq!((l.max_connections, l.max_connections_per_ip), (100, 100));
    }
}
