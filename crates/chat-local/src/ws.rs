//! `GET /ws?sessionId=&token=`: the WebSocket of the contract; `GET /ws?agentToken=`: an
//! agent's (its inbox and the sessions it holds; registered in the hub under the agent's id,
//! so the per-session cap bounds one agent's sockets).
//!
//! The token is checked before the upgrade (401/403/404 in the contract's shape), then the
//! caps of open WebSockets per session and per client address (429 with `Retry-After`). The
//! connection is registered in the hub *before* it is stored, so no broadcast can find it
//! stored but unreachable. Frames are handled in order by the core; the writer task drains
//! the connection's outbox. The server closes a socket with 1001 when it shuts down, 1008 when
//! its client does not read its frames (see [`crate::hub`]), and 1009 when a frame is over
//! the body limit.

use crate::hub::{Close, Outbox, Refused};
use crate::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::Response;
use chat_core::ChatError;
use chat_core::error::ErrorCode;
use chat_core::model::{AgentConnection, Connection};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// Read buffer per socket (tungstenite's default, 128 KiB, is held by every idle socket).
const READ_BUFFER: usize = 4 * 1024;
/// How long a closing socket may take to take its close frame before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// `Retry-After` of a WebSocket refused for a cap, in seconds.
const RETRY_AFTER_SECS: u64 = 10;

pub async fn upgrade(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Not a WebSocket handshake (e.g. a plain GET): axum's status, the contract's body.
    let ws = match ws {
        Ok(ws) => ws,
        Err(r) => {
            return chat_http::error(&ChatError::Transport {
                status: r.status().as_u16(),
                code: ErrorCode::UpgradeRequired,
                message: r.body_text(),
            });
        }
    };
    let mut session = None;
    let mut token = None;
    let mut agent_token = None;
    let mut version = None;
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match &*k {
            "sessionId" => session = Some(v.into_owned()),
            "token" => token = Some(v.into_owned()),
            "agentToken" => agent_token = Some(v.into_owned()),
            "v" => version = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(agent_token) = agent_token.filter(|_| session.is_none()) {
        return upgrade_agent(s, peer, ws, &agent_token).await;
    }
    // What is wrong with the token is said first, then whether a cap is reached.
    if let Some(sid) = session.as_deref().filter(|s| !s.is_empty())
        && let Err(e) = s.service.authorize(token.as_deref(), sid)
    {
        return chat_http::error(&e);
    }
    let id = ulid::Ulid::new().to_string();
    let outbox = match s
        .hub
        .register(&id, session.as_deref().unwrap_or(""), peer.ip())
    {
        Ok(outbox) => outbox,
        Err(refused) => return too_many(&refused),
    };
    let connection = match s
        .service
        .connect_version(
            session.as_deref(),
            token.as_deref(),
            &id,
            version.as_deref(),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            s.hub.unregister(&id);
            return chat_http::error(&e);
        }
    };
    let limit = s.service.config().limits.max_body_bytes;
    let failed = s.clone();
    let failed_id = id.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_failed_upgrade(move |_| {
            failed.hub.unregister(&failed_id);
        })
        .on_upgrade(move |socket| {
            // The socket's lines carry its connection id as their request id, and its session;
            // each frame is a request of its own within it (as on API Gateway).
            use tracing::Instrument;
            let span = chat_core::trace::request_span(&connection.id);
            span.record("session_id", tracing::field::display(connection.session_id));
            run(socket, s, connection, outbox).instrument(span)
        })
}

/// An agent's WebSocket: the token is checked before the upgrade (401/403 like the routes).
async fn upgrade_agent(
    s: AppState,
    peer: SocketAddr,
    ws: WebSocketUpgrade,
    token: &str,
) -> Response {
    let id = ulid::Ulid::new().to_string();
    // Checked first (nothing registered for a bad token), then registered before it is
    // stored, as for users.
    let agent = match s.service.agent(Some(&format!("Bearer {token}"))).await {
        Ok(a) => a,
        Err(e) => return chat_http::error(&e),
    };
    let outbox = match s
        .hub
        .register(&id, &format!("agent#{}", agent.id), peer.ip())
    {
        Ok(outbox) => outbox,
        Err(refused) => return too_many(&refused),
    };
    let connection = match s.service.connect_agent(token, &id).await {
        Ok(c) => c,
        Err(e) => {
            s.hub.unregister(&id);
            return chat_http::error(&e);
        }
    };
    let limit = s.service.config().limits.max_body_bytes;
    let failed = s.clone();
    let failed_id = id.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_failed_upgrade(move |_| {
            failed.hub.unregister(&failed_id);
            let (svc, id) = (failed.service.clone(), failed_id.clone());
            tokio::spawn(async move { svc.disconnect_agent(&id).await });
        })
        .on_upgrade(move |socket| {
            use tracing::Instrument;
            let span = chat_core::trace::request_span(&connection.id);
            run_agent(socket, s, connection, outbox).instrument(span)
        })
}

fn too_many(refused: &Refused) -> Response {
    tracing::info!(%refused, "WebSocket refused");
    let mut res = chat_http::error(&ChatError::Transport {
        status: 429,
        code: ErrorCode::TooManyConnections,
        message: refused.to_string(),
    });
    res.headers_mut()
        .insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    res
}

/// Whose socket it is: frames go to the user's or the agent's handler.
enum Who {
    User(Connection),
    Agent(AgentConnection),
}

async fn run(socket: WebSocket, s: AppState, connection: Connection, outbox: Outbox) {
    serve(socket, s, Who::User(connection), outbox).await
}

async fn run_agent(socket: WebSocket, s: AppState, connection: AgentConnection, outbox: Outbox) {
    serve(socket, s, Who::Agent(connection), outbox).await
}

async fn serve(socket: WebSocket, s: AppState, who: Who, outbox: Outbox) {
    let id = match &who {
        Who::User(c) => c.id.clone(),
        Who::Agent(c) => c.id.clone(),
    };
    // Each frame is a request of its own within the socket's span (as on API Gateway).
    let handle = |frame: Vec<u8>| {
        use tracing::Instrument;
        let (s, who) = (&s, &who);
        let span = chat_core::trace::request_span(&ulid::Ulid::new().to_string());
        async move {
            match who {
                Who::User(c) => s.service.handle_frame(c, &frame).await,
                Who::Agent(c) => {
                    // The status may have changed since the socket opened.
                    let current = s.service.store().get_agent_connection(&c.id).await;
                    let c = current.ok().flatten().unwrap_or_else(|| c.clone());
                    s.service.handle_agent_frame(&c, &frame).await
                }
            }
        }
        .instrument(span)
    };
    let (sink, mut stream) = socket.split();
    let link = outbox.link.clone();
    let mut closing = link.closing();
    let writer = tokio::spawn(write(sink, outbox));
    let mut shutdown = s.shutdown.clone();
    let limit = s.service.config().limits.max_body_bytes;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => handle(t.as_bytes().to_vec()).await,
                Some(Ok(Message::Binary(b))) => handle(b.to_vec()).await,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) if too_big(&e) => {
                    tracing::info!(connection_id = %id, limit, "frame over the limit; closing (1009)");
                    link.close(Close::too_big(limit));
                    break;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            _ = until(&mut shutdown, |s| *s) => {
                link.close(Close::going_away());
                break;
            }
            _ = until(&mut closing, Option::is_some) => break,
        }
    }
    s.hub.unregister(&id);
    let forgotten = match &who {
        Who::User(_) => s.service.disconnect(&id).await,
        Who::Agent(_) => s.service.disconnect_agent(&id).await,
    };
    if let Err(e) = forgotten {
        tracing::warn!(error = %e, connection_id = %id, "could not forget a closed connection");
    }
    let _ = writer.await;
}

/// Writes the outbox's frames, each once what it tells is on disk, until the connection is
/// to close; then sends the close frame (bounded: a client that does not read never takes
/// it) and ends. When the disk fails, the socket is closed with 1011 instead: its client
/// reconnects and catches up.
async fn write(mut sink: SplitSink<WebSocket, Message>, mut outbox: Outbox) {
    let mut closing = outbox.link.closing();
    loop {
        let frame = tokio::select! {
            biased;
            _ = until(&mut closing, Option::is_some) => break,
            frame = outbox.next() => match frame {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "could not make writes durable; closing the socket (1011)");
                    outbox.link.close(Close::unavailable());
                    break;
                }
                None => break,
            },
        };
        let bytes = frame.len();
        // A frame stuck on a client that does not read is abandoned when the close comes.
        let sent = tokio::select! {
            biased;
            _ = until(&mut closing, Option::is_some) => break,
            sent = sink.send(Message::Text(frame.into())) => sent,
        };
        outbox.link.sent(bytes);
        if sent.is_err() {
            return;
        }
    }
    let mut close = closing.borrow().clone();
    if let Err(e) = outbox.durable().await {
        tracing::error!(error = %e, "could not make writes durable before a close; closing with 1011");
        close = Some(Close::unavailable());
    }
    let closed = async {
        match close {
            Some(Close { code, reason }) => {
                sink.send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await
            }
            // The client closed or the reader ended: finish the closing handshake.
            None => sink.close().await,
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, closed).await;
}

/// Resolves once `rx` holds a value `pred` accepts (or its sender is gone).
async fn until<T>(rx: &mut watch::Receiver<T>, pred: impl FnMut(&T) -> bool) {
    let _ = rx.wait_for(pred).await;
}

/// Whether a read failed because the client's frame is over the size limit.
fn too_big(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}
