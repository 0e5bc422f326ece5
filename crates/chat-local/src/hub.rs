//! The live WebSocket connections of this process, as a [`Push`] port.
//!
//! Each socket has a bounded outbox drained by its writer task. A push to an unknown or
//! closed connection is `Gone`, so the service forgets it; a connection whose outbox is full
//! is too slow to keep and is closed: its browser reconnects and catches up with `after`.

use async_trait::async_trait;
use chat_core::ports::{Push, PushError};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Frames waiting per connection before it counts as too slow.
const OUTBOX: usize = 1024;

/// The registry of open sockets.
#[derive(Default)]
pub struct Hub {
    outboxes: Mutex<HashMap<String, mpsc::Sender<String>>>,
}

impl Hub {
    /// Registers a connection; frames pushed to it wait in the returned receiver.
    pub fn register(&self, connection_id: &str) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(OUTBOX);
        self.outboxes
            .lock()
            .unwrap()
            .insert(connection_id.to_string(), tx);
        rx
    }

    pub fn unregister(&self, connection_id: &str) {
        self.outboxes.lock().unwrap().remove(connection_id);
    }

    /// Closes every connection (their writers see the outbox end).
    pub fn close_all(&self) {
        self.outboxes.lock().unwrap().clear();
    }

    pub fn len(&self) -> usize {
        self.outboxes.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Push for Hub {
    async fn push(&self, connection_id: &str, frame: &str) -> Result<(), PushError> {
        let mut outboxes = self.outboxes.lock().unwrap();
        let Some(tx) = outboxes.get(connection_id) else {
            return Err(PushError::Gone);
        };
        match tx.try_send(frame.to_string()) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                outboxes.remove(connection_id);
                Err(PushError::Gone)
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(connection_id, "connection too slow; closing it");
                outboxes.remove(connection_id);
                Err(PushError::Gone)
            }
        }
    }
}
