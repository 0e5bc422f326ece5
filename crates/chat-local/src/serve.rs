//! The accept loop, in place of `axum::serve`, which offers no header timeout and no cap on
//! connections: a flood of half-open requests could take every file descriptor and leave
//! `GET /health` unanswered for everyone.
//!
//! Here every client socket takes one of a fixed number of slots before it is accepted (past
//! the total, new connections wait in the kernel's backlog) and one of its address's slots
//! (past that, it gets a 429 and is closed). A socket keeps its slots until it closes, also
//! after an upgrade to a WebSocket. Hyper closes a connection whose request headers (or next
//! request, on an idle keep-alive connection) do not arrive within the header timeout. On
//! shutdown no new connection is accepted, requests under way finish, WebSockets close with
//! 1001 (see [`crate::ws`]), and the loop returns once every socket is closed (bounded).

use crate::limits::ServerLimits;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::Layer;

/// How long shutdown waits for requests under way and WebSockets to close.
const DRAIN: Duration = Duration::from_secs(10);
/// The most a request's headers may take (431 past it), and about the most a connection
/// buffers while reading (hyper's default, ~400 KB, times every socket is a lot of memory).
const READ_BUFFER: usize = 64 * 1024;

/// Serves `app` on `listener` until `stop` turns true, then drains (see the module doc).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let addresses = Arc::new(PerAddress {
        max: limits.max_connections_per_ip,
        open: Mutex::default(),
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(READ_BUFFER)
        .max_buf_size(READ_BUFFER);
    let mut full = Throttle::default();
    let mut refused = Throttle::default();
    let mut failed = Throttle::default();
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(n) = full.hit() {
                    tracing::warn!(
                        max = limits.max_connections,
                        times = n,
                        "connection cap reached: new connections wait until some close"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = stopped(&mut stop) => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors despite the cap (other files): back off briefly.
                    if let Some(n) = failed.hit() {
                        tracing::warn!(error = %e, times = n, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let Some(address) = PerAddress::take(&addresses, peer.ip()) else {
            if let Some(n) = refused.hit() {
                tracing::warn!(
                    max = limits.max_connections_per_ip,
                    times = n,
                    "per-address connection cap reached: refusing connections (429)"
                );
            }
            // Best effort, without reading the request: the socket is new, so this fits.
            let _ = tcp.try_write(too_many_response().as_bytes());
            continue;
        };
        // Small frames must leave at once: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let io = TokioIo::new(Counted {
            tcp,
            _slots: (slot, address),
        });
        let service = TowerToHyperService::new(
            (
                axum::Extension(ConnectInfo(peer)),
                axum::Extension(chat_http::ClientIp(peer.ip().to_string())),
            )
                .layer(app.clone()),
        );
        let conn = http.serve_connection(io, service).with_upgrades();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
        });
    }
    drop(listener);
    // Every socket, WebSockets included, holds a slot until it is closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, slots.acquire_many(all))
        .await
        .is_err()
    {
        let open = limits.max_connections - slots.available_permits();
        tracing::warn!(open, "connections still open after {DRAIN:?}; closing them");
    }
}

/// Resolves once the server is to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What a client over its address's cap is told before its socket is closed (written on the
/// raw socket: no request of it is read).
fn too_many_response() -> String {
    let body = chat_core::ChatError::Transport {
        status: 429,
        code: chat_core::error::ErrorCode::TooManyConnections,
        message: "too many connections from this address; close some and retry".into(),
    }
    .body();
    format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 5\r\nx-content-type-options: nosniff\r\n\
         access-control-allow-origin: *\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Open sockets per client address.
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// A slot for one more socket from `ip`, or `None` when it has `max` already.
    fn take(this: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = this.open.lock().unwrap();
        let n = open.entry(ip).or_default();
        if *n >= this.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            of: this.clone(),
            ip,
        })
    }
}

/// One socket's place in its address's count; given back when dropped.
struct AddressSlot {
    of: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A client socket with its slots: wherever the socket goes (into a WebSocket after an
/// upgrade), its slots go with it and are given back when it is closed.
struct Counted {
    tcp: TcpStream,
    _slots: (OwnedSemaphorePermit, AddressSlot),
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Lets a warning through at most every 10 s, with how often it happened meanwhile, so that
/// a flood does not also flood the log.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if !due {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.count))
    }
}
