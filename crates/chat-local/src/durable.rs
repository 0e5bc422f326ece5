//! The durability barrier at the edges of the process: what `chat-local` tells the outside
//! world (an HTTP answer here; a WebSocket frame or close in its writer, [`crate::hub`]; a
//! delivery to n8n here; a file deleted in [`crate::attachments`]) waits for [`Db::sync`], so
//! whatever it says was stored is committed and fsync'd first, while the several dependent
//! writes of one request share one fsync (see [`crate::db`]).

use crate::db::Db;
use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chat_core::ChatError;
use chat_core::ports::{Agent, AgentBody, AgentError, SignedRequest};

/// Answers a request only once what it read and wrote is on disk; 503 when it cannot be.
pub async fn answer(State(db): State<Db>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    match db.sync().await {
        Ok(()) => res,
        Err(e) => {
            tracing::error!(error = %e, "could not make the request's writes durable");
            chat_http::error(&ChatError::Unavailable(
                "storage is unavailable; try again".into(),
            ))
        }
    }
}

/// An [`Agent`] (n8n) reached only once the message it is sent, and its history, are on disk.
pub struct SyncedAgent<A> {
    pub db: Db,
    pub agent: A,
}

#[async_trait]
impl<A: Agent> Agent for SyncedAgent<A> {
    async fn deliver(&self, request: SignedRequest) -> Result<AgentBody, AgentError> {
        self.db
            .sync()
            .await
            .map_err(|e| AgentError(format!("not durable yet: {e}")))?;
        self.agent.deliver(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Durability;
    use axum::Router;
    use axum::routing::post;
    use chat_core::ports::whole_body;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    fn write(db: &Db) -> impl std::future::Future<Output = Result<usize, crate::db::DbError>> {
        db.call(|c| {
            c.execute(
                "INSERT INTO dead_jobs (message_id, session_id, failed_at) VALUES (?1, 's', 0)",
                [ulid::Ulid::new().to_string()],
            )
        })
    }

    /// An answer leaves only once what the handler wrote is on disk.
    #[tokio::test]
    async fn an_answer_waits_for_its_writes_to_be_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_with(dir.path(), Durability::AtBarrier).unwrap();
        let handler_db = db.clone();
        let app = Router::new()
            .route(
                "/write",
                post(move || async move {
                    write(&handler_db).await.unwrap();
                    assert!(!handler_db.is_synced());
                    "stored"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(db.clone(), answer));
        let req = axum::http::Request::post("/write")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(db.is_synced(), "on disk before the answer");
        assert_eq!(db.fsyncs(), 1);
    }

    struct Recording(Arc<Mutex<Vec<bool>>>, Db);

    #[async_trait]
    impl Agent for Recording {
        async fn deliver(&self, _: SignedRequest) -> Result<AgentBody, AgentError> {
            self.0.lock().unwrap().push(self.1.is_synced());
            Ok(whole_body("{}"))
        }
    }

    /// n8n is sent a message only once every write before the delivery is on disk.
    #[tokio::test]
    async fn a_delivery_waits_for_the_writes_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_with(dir.path(), Durability::AtBarrier).unwrap();
        let seen = Arc::default();
        let agent = SyncedAgent {
            db: db.clone(),
            agent: Recording(Arc::clone(&seen), db.clone()),
        };
        write(&db).await.unwrap();
        assert!(!db.is_synced());
        let request = SignedRequest {
            body: b"{}".to_vec(),
            timestamp: "0".into(),
            signature: "x".into(),
        };
        assert!(agent.deliver(request).await.is_ok());
        assert_eq!(*seen.lock().unwrap(), [true]);
    }
}
