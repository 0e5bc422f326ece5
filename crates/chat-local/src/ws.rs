//! `GET /ws?sessionId=&token=`: the WebSocket of the contract.
//!
//! The token is checked before the upgrade (401/403/404 in the contract's shape). The
//! connection is registered in the hub *before* it is stored, so no broadcast can find it
//! stored but unreachable. Frames are handled in order by the core; the writer task drains
//! the connection's outbox; on shutdown sockets close with 1001 (going away).

use crate::app::AppState;
use crate::routes::reply;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use chat_core::api;
use chat_core::model::Connection;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

pub async fn upgrade(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Not a WebSocket handshake (e.g. a plain GET): axum's status, the contract's body.
    let ws = match ws {
        Ok(ws) => ws,
        Err(r) => {
            let body = serde_json::json!({
                "error": {"code": "upgrade_required", "message": r.body_text()}
            });
            return reply(api::Response {
                status: r.status().as_u16(),
                body: body.to_string(),
                retry_after: None,
            });
        }
    };
    let mut session = None;
    let mut token = None;
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match &*k {
            "sessionId" => session = Some(v.into_owned()),
            "token" => token = Some(v.into_owned()),
            _ => {}
        }
    }
    let id = ulid::Ulid::new().to_string();
    let outbox = s.hub.register(&id);
    let connection = match s
        .service
        .connect(session.as_deref(), token.as_deref(), &id)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            s.hub.unregister(&id);
            return reply(api::Response::error(&e));
        }
    };
    let limit = s.service.config().limits.max_body_bytes;
    let failed = s.clone();
    let failed_id = id.clone();
    ws.max_message_size(limit.saturating_mul(4))
        .on_failed_upgrade(move |_| {
            failed.hub.unregister(&failed_id);
        })
        .on_upgrade(move |socket| run(socket, s, connection, outbox))
}

async fn run(
    socket: WebSocket,
    s: AppState,
    connection: Connection,
    mut outbox: mpsc::Receiver<String>,
) {
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = s.shutdown.clone();
    let writer = tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            if sink.send(Message::Text(frame.into())).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1001,
                reason: "server closing this connection".into(),
            })))
            .await;
    });
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => s.service.handle_frame(&connection, t.as_bytes()).await,
                Some(Ok(Message::Binary(b))) => s.service.handle_frame(&connection, &b).await,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            _ = shutdown.changed() => break,
        }
    }
    s.hub.unregister(&connection.id);
    if let Err(e) = s.service.disconnect(&connection.id).await {
        tracing::warn!(error = %e, connection_id = %connection.id, "could not forget a closed connection");
    }
    let _ = writer.await;
}
