//! The live WebSocket connections of this process, as a [`Push`] port.
//!
//! Each socket has an outbox drained by its writer task (see [`crate::ws`]), bounded in
//! bytes: a connection whose waiting frames would pass the budget is too slow to keep (its
//! client does not read), so it is closed with 1008 and its frames are dropped; its browser
//! reconnects and catches up with `after`. A push to an unknown, closed or too slow connection
//! is `Gone`, so the service forgets it. The hub also caps how many WebSockets one session and
//! one client address may have open.
//!
//! A frame is queued at once, in the order of the pushes, marked with the last commit made
//! before it; the connection's writer takes it out only once that commit is on disk
//! ([`Outbox::next`], [`Db::sync`]), so what a frame says was stored is, and frames keep the
//! order they were pushed in (a push never waits for the disk, so a later push cannot
//! overtake it). A close waits the same way ([`Outbox::durable`]).

use crate::db::{Db, DbError};
use async_trait::async_trait;
use chat_core::ports::{Push, PushError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Close code and reason of a WebSocket the server closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    /// 1001: the server is shutting down.
    pub fn going_away() -> Self {
        Self {
            code: 1001,
            reason: "server shutting down".into(),
        }
    }

    /// 1008: the client does not read its frames fast enough.
    pub fn too_slow(budget: usize) -> Self {
        Self {
            code: 1008,
            reason: format!("too slow: over {budget} bytes waiting; reconnect and catch up"),
        }
    }

    /// 1000: the session was erased; nothing more will come.
    pub fn erased() -> Self {
        Self {
            code: 1000,
            reason: "conversation erased".into(),
        }
    }

    /// 1011: what the frames would tell could not be made durable; reconnect and catch up.
    pub fn unavailable() -> Self {
        Self {
            code: 1011,
            reason: "storage unavailable; reconnect and catch up".into(),
        }
    }

    /// 1009: the client sent a frame over the size limit.
    pub fn too_big(limit: usize) -> Self {
        Self {
            code: 1009,
            reason: format!("message too big: over {limit} bytes"),
        }
    }
}

/// How many WebSockets may be open, and how much may wait for each.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    pub per_session: usize,
    pub per_address: usize,
    pub outbox_bytes: usize,
}

/// Why a WebSocket was not let in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("this session already has {0} WebSockets open; close one first")]
    Session(usize),
    #[error("this address already has {0} WebSockets open; close one first")]
    Address(usize),
}

/// What one connection's writer and reader share with the hub.
pub struct Link {
    queued: AtomicUsize,
    close: watch::Sender<Option<Close>>,
}

impl Link {
    /// Asks the connection to close with `close` (the first reason given wins).
    pub fn close(&self, close: Close) {
        self.close.send_if_modified(|c| {
            let first = c.is_none();
            if first {
                *c = Some(close);
            }
            first
        });
    }

    /// Watches for a reason to close.
    pub fn closing(&self) -> watch::Receiver<Option<Close>> {
        self.close.subscribe()
    }

    /// A frame of `bytes` has been written out.
    pub fn sent(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One connection's frames to write, in order, each with the last commit made before it.
pub struct Outbox {
    frames: mpsc::UnboundedReceiver<(u64, String)>,
    pub link: Arc<Link>,
    db: Db,
}

impl Outbox {
    /// The next frame, once every commit made before it was pushed is on disk; `None` when
    /// the hub has forgotten the connection. `Err` when the disk failed: the frame must not
    /// be sent.
    pub async fn next(&mut self) -> Option<Result<String, DbError>> {
        let (mark, frame) = self.frames.recv().await?;
        Some(self.db.sync_to(mark).await.map(|()| frame))
    }

    /// Waits until every commit so far is on disk (before a close frame, which may tell that
    /// a conversation was erased).
    pub async fn durable(&self) -> Result<(), DbError> {
        self.db.sync().await
    }
}

struct Entry {
    frames: mpsc::UnboundedSender<(u64, String)>,
    link: Arc<Link>,
    session: String,
    address: IpAddr,
}

#[derive(Default)]
struct Inner {
    connections: HashMap<String, Entry>,
    per_session: HashMap<String, usize>,
    per_address: HashMap<IpAddr, usize>,
}

impl Inner {
    fn remove(&mut self, connection_id: &str) -> Option<Entry> {
        let e = self.connections.remove(connection_id)?;
        fn down<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
            if let Some(n) = m.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(k);
                }
            }
        }
        down(&mut self.per_session, &e.session);
        down(&mut self.per_address, &e.address);
        Some(e)
    }
}

/// The registry of open sockets.
pub struct Hub {
    limits: HubLimits,
    inner: Mutex<Inner>,
    /// The durability barrier every frame passes (in its connection's writer).
    db: Db,
}

impl Hub {
    pub fn new(limits: HubLimits, db: Db) -> Self {
        Self {
            limits,
            inner: Mutex::default(),
            db,
        }
    }

    /// Registers a connection of `session` from `address`, unless either has its cap of open
    /// WebSockets already; frames pushed to it wait in the returned outbox.
    pub fn register(
        &self,
        connection_id: &str,
        session: &str,
        address: IpAddr,
    ) -> Result<Outbox, Refused> {
        let mut inner = self.inner.lock().unwrap();
        // Ids are fresh ULIDs; should one repeat, the old entry goes first so counts stay right.
        inner.remove(connection_id);
        let of_session = inner.per_session.get(session).copied().unwrap_or(0);
        if of_session >= self.limits.per_session {
            return Err(Refused::Session(of_session));
        }
        let of_address = inner.per_address.get(&address).copied().unwrap_or(0);
        if of_address >= self.limits.per_address {
            return Err(Refused::Address(of_address));
        }
        let (tx, frames) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            queued: AtomicUsize::new(0),
            close: watch::Sender::new(None),
        });
        let entry = Entry {
            frames: tx,
            link: link.clone(),
            session: session.to_string(),
            address,
        };
        inner.connections.insert(connection_id.to_string(), entry);
        *inner.per_session.entry(session.to_string()).or_default() += 1;
        *inner.per_address.entry(address).or_default() += 1;
        Ok(Outbox {
            frames,
            link,
            db: self.db.clone(),
        })
    }

    pub fn unregister(&self, connection_id: &str) {
        self.inner.lock().unwrap().remove(connection_id);
    }

    /// Closes every connection with 1001 (server shutting down).
    pub fn close_all(&self) {
        let mut inner = self.inner.lock().unwrap();
        for (_, e) in inner.connections.drain() {
            e.link.close(Close::going_away());
        }
        inner.per_session.clear();
        inner.per_address.clear();
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Push for Hub {
    async fn push(&self, connection_id: &str, frame: &str) -> Result<(), PushError> {
        // Read before the lock: every commit the caller saw is at or before it.
        let mark = self.db.written();
        let mut inner = self.inner.lock().unwrap();
        let Some(e) = inner.connections.get(connection_id) else {
            return Err(PushError::Gone);
        };
        let budget = self.limits.outbox_bytes;
        let waiting = e.link.queued.load(Ordering::Relaxed);
        // One frame always fits in an empty outbox, however large.
        if waiting > 0 && waiting + frame.len() > budget {
            tracing::warn!(
                connection_id,
                waiting,
                budget,
                "connection too slow: its client does not read; closing it (1008)"
            );
            e.link.close(Close::too_slow(budget));
            inner.remove(connection_id);
            return Err(PushError::Gone);
        }
        e.link.queued.fetch_add(frame.len(), Ordering::Relaxed);
        if e.frames.send((mark, frame.to_string())).is_err() {
            inner.remove(connection_id);
            return Err(PushError::Gone);
        }
        Ok(())
    }

    async fn close(&self, connection_id: &str) -> Result<(), PushError> {
        let mut inner = self.inner.lock().unwrap();
        if let Some(e) = inner.connections.get(connection_id) {
            e.link.close(Close::erased());
            inner.remove(connection_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// `Ok`, `Gone` or another failure, comparable.
    async fn push(hub: &Hub, id: &str, frame: &str) -> Result<(), &'static str> {
        match hub.push(id, frame).await {
            Ok(()) => Ok(()),
            Err(PushError::Gone) => Err("gone"),
            Err(PushError::Failed(_)) => Err("failed"),
        }
    }

    fn hub(per_session: usize, per_address: usize, outbox_bytes: usize) -> Hub {
        Hub::new(
            HubLimits {
                per_session,
                per_address,
                outbox_bytes,
            },
            Db::open_in_memory().unwrap(),
        )
    }

    #[tokio::test]
    async fn a_connection_that_does_not_read_is_closed_once_its_budget_is_spent() {
        let hub = hub(10, 10, 100);
        let mut out = hub.register("c1", "s1", HOME).unwrap();
        let closing = out.link.closing();
        // A first frame larger than the budget still goes: nothing else is waiting.
        assert_eq!(push(&hub, "c1", &"x".repeat(150)).await, Ok(()));
        assert_eq!(out.next().await.unwrap().unwrap().len(), 150);
        out.link.sent(150);
        for _ in 0..2 {
            assert_eq!(push(&hub, "c1", &"y".repeat(40)).await, Ok(()));
        }
        // 80 bytes wait; 40 more would pass the budget of 100.
        assert_eq!(push(&hub, "c1", &"z".repeat(40)).await, Err("gone"));
        assert_eq!(closing.borrow().as_ref().map(|c| c.code), Some(1008));
        assert!(hub.is_empty(), "forgotten");
        assert_eq!(push(&hub, "c1", "late").await, Err("gone"));
        assert_eq!(push(&hub, "unknown", "x").await, Err("gone"));
    }

    /// A frame leaves its outbox only once every write before its push is on disk, and
    /// frames keep the order of their pushes; a close waits for the disk too.
    #[tokio::test]
    async fn frames_leave_in_push_order_once_the_writes_before_them_are_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_with(dir.path(), crate::db::Durability::AtBarrier).unwrap();
        let hub = Hub::new(
            HubLimits {
                per_session: 10,
                per_address: 10,
                outbox_bytes: 1000,
            },
            db.clone(),
        );
        let write = || {
            db.call(|c| {
                c.execute(
                    "INSERT INTO dead_jobs (message_id, session_id, failed_at) VALUES (?1, 's', 0)",
                    [ulid::Ulid::new().to_string()],
                )
            })
        };
        let mut out = hub.register("c1", "s1", HOME).unwrap();
        let closing = out.link.closing();
        write().await.unwrap();
        assert_eq!(push(&hub, "c1", "first").await, Ok(()));
        write().await.unwrap();
        assert_eq!(push(&hub, "c1", "second").await, Ok(()));
        assert!(!db.is_synced(), "a push does not wait for the disk");
        assert_eq!(db.fsyncs(), 0);
        assert_eq!(out.next().await.unwrap().unwrap(), "first");
        assert!(db.is_synced(), "on disk before the first frame left");
        assert_eq!(out.next().await.unwrap().unwrap(), "second");
        assert_eq!(db.fsyncs(), 1, "one fsync for both");
        write().await.unwrap();
        hub.close("c1").await.unwrap();
        assert_eq!(closing.borrow().as_ref().map(|c| c.code), Some(1000));
        out.durable().await.unwrap();
        assert!(db.is_synced(), "on disk before the close frame");
        assert_eq!(db.fsyncs(), 2);
    }

    #[tokio::test]
    async fn an_erased_sessions_connection_is_closed_with_1000() {
        let hub = hub(10, 10, 100);
        let out = hub.register("c1", "s1", HOME).unwrap();
        let closing = out.link.closing();
        hub.close("c1").await.unwrap();
        assert_eq!(closing.borrow().as_ref().map(|c| c.code), Some(1000));
        assert!(hub.is_empty(), "forgotten");
        assert!(hub.close("c1").await.is_ok(), "closing twice is fine");
    }

    #[tokio::test]
    async fn a_closed_connection_is_gone() {
        let hub = hub(10, 10, 100);
        let out = hub.register("c1", "s1", HOME).unwrap();
        drop(out);
        assert_eq!(push(&hub, "c1", "x").await, Err("gone"));
        assert!(hub.is_empty());
    }

    #[test]
    fn sessions_and_addresses_are_capped_and_slots_come_back() {
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let hub = hub(2, 3, 100);
        let _a = hub.register("a", "s1", HOME).unwrap();
        let _b = hub.register("b", "s1", other).unwrap();
        assert_eq!(
            hub.register("c", "s1", other).err(),
            Some(Refused::Session(2))
        );
        let _c = hub.register("c", "s2", HOME).unwrap();
        let _d = hub.register("d", "s3", HOME).unwrap();
        assert_eq!(
            hub.register("e", "s4", HOME).err(),
            Some(Refused::Address(3))
        );
        hub.unregister("a");
        let _e = hub.register("e", "s1", HOME).unwrap();
        hub.close_all();
        assert!(hub.is_empty());
        let _f = hub.register("f", "s1", HOME).unwrap();
    }
}
