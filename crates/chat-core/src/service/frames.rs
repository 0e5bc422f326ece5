//! The WebSocket side: connecting and disconnecting, and the frames a browser sends
//! (`sendMessage`, `typing`, `read`, `ping`), each answered on its own connection.

use super::{SendInput, SessionRef};
use crate::error::ErrorCode;
use crate::events::{ClientAction, ServerEvent};
use crate::model::{Connection, Role};
use crate::rate::Rate;
use crate::service::ChatService;
use crate::{ChatError, validate};
use serde_json::Value;

impl ChatService {
    /// A WebSocket connects with `?sessionId=&token=`; it is remembered for fan-out.
    /// Nothing is pushed here: on API Gateway the connection does not exist until this returns.
    pub async fn connect(
        &self,
        session: Option<&str>,
        token: Option<&str>,
        connection_id: &str,
    ) -> Result<Connection, ChatError> {
        self.connect_version(session, token, connection_id, None)
            .await
    }

    /// [`Self::connect`] with the URL's `v`: `2` (or higher) opts into merged frames
    /// ([`crate::events::merged_frames`]); absent or `1`, today's frames. Anything but a
    /// whole number is a 400.
    pub async fn connect_version(
        &self,
        session: Option<&str>,
        token: Option<&str>,
        connection_id: &str,
        version: Option<&str>,
    ) -> Result<Connection, ChatError> {
        let merged = match version.map(str::parse::<u32>) {
            None => false,
            Some(Ok(v)) if v >= 1 => v >= 2,
            Some(_) => {
                return Err(ChatError::invalid(
                    ErrorCode::InvalidQuery,
                    "v, the frame version in the WebSocket URL, must be 1 or 2",
                ));
            }
        };
        let session = session.filter(|s| !s.is_empty()).ok_or_else(|| {
            ChatError::invalid(
                ErrorCode::InvalidQuery,
                "sessionId is required in the WebSocket URL",
            )
        })?;
        let claims = self.authorize(token, session)?;
        let session = self.load_session(&claims.sid).await?;
        let connection = Connection {
            id: connection_id.to_string(),
            session_id: session.id,
            connected_at: self.now(),
            // A connection lives no longer than its token (the session is kept longer).
            expires_at: claims.exp.saturating_mul(1000),
            merged,
        };
        self.store().put_connection(&connection).await?;
        crate::metrics::connection_opened();
        tracing::info!(session_id = %session.id, connection_id, "connected");
        if session.mode.holder().is_some() {
            let first = self.live_connections(&session.id).await.len() == 1;
            self.user_presence_changed(&session, first).await;
        }
        Ok(connection)
    }

    /// Forgets a connection (a user's, else an agent's). Best effort: stale ones are also
    /// removed when a push finds them gone.
    pub async fn disconnect(&self, connection_id: &str) -> Result<(), ChatError> {
        let Some(c) = self.store().get_connection(connection_id).await? else {
            return self.disconnect_agent(connection_id).await;
        };
        self.store().delete_connection(&c).await?;
        crate::metrics::connection_closed();
        tracing::info!(session_id = %c.session_id, connection_id, "disconnected");
        if let Some(s) = self.store().get_session(&c.session_id, self.now()).await?
            && s.mode.holder().is_some()
        {
            let last = self.live_connections(&s.id).await.is_empty();
            self.user_presence_changed(&s, last).await;
        }
        Ok(())
    }

    /// The connection behind a WebSocket message (`None` if it is unknown or has expired).
    pub async fn connection(&self, connection_id: &str) -> Result<Option<Connection>, ChatError> {
        let c = self.store().get_connection(connection_id).await?;
        Ok(c.filter(|c| c.expires_at > self.now()))
    }

    /// A WebSocket message known only by its connection id (as API Gateway delivers it): finds
    /// the connection's session, then handles the frame. An unknown or expired connection is
    /// told to reconnect.
    pub async fn handle_frame_by_id(&self, connection_id: &str, frame: &[u8]) {
        let error = match self.connection(connection_id).await {
            Ok(Some(c)) => return self.handle_frame(&c, frame).await,
            Ok(None) => match self.store().get_agent_connection(connection_id).await {
                Ok(Some(a)) if a.expires_at > self.now() => {
                    return self.handle_agent_frame(&a, frame).await;
                }
                Err(e) => e.into(),
                Ok(_) => ChatError::unauthorized(
                    ErrorCode::UnknownConnection,
                    "this connection is not open (its session may have expired); reconnect",
                ),
            },
            Err(e) => e,
        };
        if let Err(e) = self
            .ports
            .push
            .push(connection_id, &ServerEvent::error(&error).to_frame())
            .await
        {
            tracing::info!(error = %e, connection_id, "could not tell an unknown connection to reconnect");
        }
    }

    /// Handles one frame from a connection. Answers (`ack`, `pong`, `error`) go back to it.
    pub async fn handle_frame(&self, connection: &Connection, frame: &[u8]) {
        crate::trace::session(&connection.session_id);
        if let Err((e, client_message_id)) = self.try_frame(connection, frame).await {
            let event = match e {
                ChatError::RateLimited { retry_after_secs } => ServerEvent::Error {
                    code: "rate_limited".into(),
                    message: format!("rate limit exceeded, retry in {retry_after_secs} s"),
                },
                e => ServerEvent::error(&e),
            };
            let mut frame: Value = serde_json::to_value(&event).unwrap_or_default();
            if let (Some(id), Some(obj)) = (client_message_id, frame.as_object_mut()) {
                obj.insert("clientMessageId".into(), Value::String(id));
            }
            self.send_to_connection(&connection.session_id, &connection.id, &frame.to_string())
                .await;
        }
    }

    async fn try_frame(
        &self,
        c: &Connection,
        frame: &[u8],
    ) -> Result<(), (ChatError, Option<String>)> {
        validate::body_size(frame.len(), &self.config.limits).map_err(|e| (e, None))?;
        let session = SessionRef::from(c);
        match ClientAction::parse(frame).map_err(|e| (e, None))? {
            ClientAction::SendMessage {
                content,
                client_message_id,
                metadata,
                attachments,
            } => {
                let input = SendInput {
                    content,
                    client_message_id: client_message_id.clone(),
                    metadata,
                    attachments,
                };
                self.send(session, input, Some(c))
                    .await
                    .map_err(|e| (e, client_message_id))?;
            }
            ClientAction::Typing { is_typing } => {
                // Each typing frame fans out to every connection: past the per-connection
                // limit they are dropped unseen (typing is a hint, nothing is lost).
                let rate = Rate::per(self.config.limits.typing_per_minute, 60_000);
                let limited = self
                    .limiter()
                    .take(&format!("typing#{}", c.id), self.now(), rate)
                    .await
                    .map_err(|e| (e.into(), None))?;
                if limited.is_some() {
                    tracing::debug!(connection_id = %c.id, "typing frame over the limit dropped");
                    return Ok(());
                }
                let event = ServerEvent::typing(Role::User, is_typing);
                // The holding agent sees it too; its id needs the session read.
                let holder = self
                    .store()
                    .get_session(&c.session_id, self.now())
                    .await
                    .map_err(|e| (e.into(), None))?
                    .and_then(|s| s.mode.agent);
                let holder = holder.as_ref().map(|a| a.id.as_str());
                self.broadcast_held(&c.session_id, holder, &[event], Some(&c.id))
                    .await;
            }
            ClientAction::Read { up_to } => {
                self.mark_read(session, up_to)
                    .await
                    .map_err(|e| (e, None))?;
            }
            ClientAction::Handoff {} => {
                self.request_handoff(&c.session_id)
                    .await
                    .map_err(|e| (e, None))?;
            }
            ClientAction::Ping {} => {
                self.send_to_connection(&c.session_id, &c.id, &ServerEvent::Pong {}.to_frame())
                    .await
            }
        }
        Ok(())
    }
}
