//! Fan-out: pushing events to a session's connections (and to the connections of the agent
//! holding it), and to every agent; forgetting connections that are gone.

use crate::events::ServerEvent;
use crate::model::{AgentConnection, Connection, SessionId};
use crate::ports::PushError;
use crate::service::ChatService;

impl ChatService {
    /// Pushes `event` to every connection of the session (but `except`). Connections that
    /// are gone are forgotten; other failures are logged and do not stop the others.
    pub async fn broadcast(&self, session: &SessionId, event: &ServerEvent, except: Option<&str>) {
        self.broadcast_many(session, std::slice::from_ref(event), except)
            .await;
    }

    /// Pushes `events`, in order, to every connection of the session (but `except`), looking
    /// the connections up once.
    pub async fn broadcast_many(
        &self,
        session: &SessionId,
        events: &[ServerEvent],
        except: Option<&str>,
    ) {
        self.broadcast_held(session, None, events, except).await;
    }

    /// [`Self::broadcast_many`], and the same events (naming the session, see
    /// [`ServerEvent::for_agent`]) to the connections of `holder`, the agent holding it.
    pub async fn broadcast_held(
        &self,
        session: &SessionId,
        holder: Option<&str>,
        events: &[ServerEvent],
        except: Option<&str>,
    ) {
        if events.is_empty() {
            return;
        }
        let to_agent = async {
            if let Some(agent) = holder {
                let frames: Vec<String> = events
                    .iter()
                    .map(|e| e.for_agent(*session).to_frame())
                    .collect();
                self.push_agents(Some(agent), &frames, except).await;
            }
        };
        futures_util::future::join(self.push_session(session, events, except), to_agent).await;
    }

    /// Pushes frames, in order, to the live connections of `agent` (of every agent: `None`).
    pub async fn push_agents(&self, agent: Option<&str>, frames: &[String], except: Option<&str>) {
        let connections = match self.store().list_agent_connections().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not list agent connections; push skipped");
                return;
            }
        };
        let now = self.now();
        let pushes = connections
            .iter()
            .filter(|c| c.expires_at > now && Some(c.id.as_str()) != except)
            .filter(|c| agent.is_none_or(|a| c.agent.id == a))
            .map(|c| async {
                for frame in frames {
                    if !self.push_agent_or_forget(c, frame).await {
                        break;
                    }
                }
            });
        futures_util::future::join_all(pushes).await;
    }

    /// Pushes one frame to an agent connection; `false` when it is gone (and now forgotten).
    pub(super) async fn push_agent_or_forget(&self, c: &AgentConnection, frame: &str) -> bool {
        match self.ports.push.push(&c.id, frame).await {
            Ok(()) => true,
            Err(PushError::Gone) => {
                tracing::info!(connection_id = %c.id, "agent connection gone; forgetting it");
                if let Err(e) = self.store().delete_agent_connection(&c.id).await {
                    tracing::warn!(error = %e, connection_id = %c.id, "could not forget a gone agent connection");
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, connection_id = %c.id, "push failed");
                true
            }
        }
    }

    async fn push_session(
        &self,
        session: &SessionId,
        events: &[ServerEvent],
        except: Option<&str>,
    ) {
        let connections = match self.store().list_connections(session).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, session_id = %session, "could not list connections; push skipped");
                return;
            }
        };
        let frames: Vec<String> = events.iter().map(ServerEvent::to_frame).collect();
        // Connections opened with `v=2` get the same events in fewer frames.
        let merged = connections
            .iter()
            .any(|c| c.merged)
            .then(|| crate::events::merged_frames(events));
        // A store may still hold connections past their expiry (DynamoDB's TTL deletes
        // lazily): they are absent.
        let now = self.now();
        let pushes = connections
            .iter()
            .filter(|c| c.expires_at > now && Some(c.id.as_str()) != except)
            .map(|c| async {
                let frames = match &merged {
                    Some(m) if c.merged => m,
                    _ => &frames,
                };
                for frame in frames {
                    if !self.push_or_forget(c, frame).await {
                        break;
                    }
                }
            });
        futures_util::future::join_all(pushes).await;
    }

    pub(super) async fn send_to_connection(
        &self,
        session: &SessionId,
        connection_id: &str,
        frame: &str,
    ) {
        let c = Connection {
            id: connection_id.to_string(),
            session_id: *session,
            connected_at: 0,
            expires_at: 0,
            merged: false,
        };
        self.push_or_forget(&c, frame).await;
    }

    /// Pushes one frame; `false` when the connection is gone (and is now forgotten).
    pub(super) async fn push_or_forget(&self, c: &Connection, frame: &str) -> bool {
        let pushed = self.ports.push.push(&c.id, frame).await;
        crate::metrics::pushed(matches!(pushed, Err(PushError::Gone)));
        match pushed {
            Ok(()) => true,
            Err(PushError::Gone) => {
                tracing::info!(connection_id = %c.id, "connection gone; forgetting it");
                match self.store().delete_connection(c).await {
                    Ok(()) => crate::metrics::connection_closed(),
                    Err(e) => {
                        tracing::warn!(error = %e, connection_id = %c.id, "could not forget a gone connection");
                    }
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, connection_id = %c.id, "push failed");
                true
            }
        }
    }
}
