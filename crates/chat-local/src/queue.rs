//! The in-process dispatch queue, persisted in the `queue` table.
//!
//! It gives `chat-local` the same semantics SQS gives the Lambdas: a user message's delivery
//! job and its reply-deadline job are written (durably, together) before the user's send is
//! acknowledged, each run at least once, a delivery retried with the dispatcher's backoff,
//! and dropped after success. A delivery given up after its last attempt moves to the
//! `dead_jobs` table (SQS's dead-letter queue on AWS), which [`JobQueue::redrive`]
//! (`chat-local admin redrive`) puts back. Which jobs are being worked on is known only in
//! memory, so after a crash or `kill -9` every remaining job runs again.

use crate::db::Db;
use async_trait::async_trait;
use chat_core::Dispatcher;
use chat_core::model::{DispatchJob, JobKind, MessageId, Millis, SessionId};
use chat_core::ports::{Clock, Queue, QueueError};
use chat_core::service::DispatchOutcome;
use rusqlite::params;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};

/// How many jobs are delivered at once.
const CONCURRENCY: usize = 64;

/// The durable queue; cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    db: Db,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

/// A job's identity in the table.
type JobKey = (MessageId, JobKind);

impl JobQueue {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Prepares the queue after a start: queues a delivery for any user message still
    /// `received` without one (cut off between store and queue by a crash), and a reply
    /// deadline (`reply_timeout_ms` after it was stored) for any still unanswered. Returns the
    /// jobs waiting.
    pub async fn recover(&self, reply_timeout_ms: Millis) -> Result<usize, QueueError> {
        let now = self.clock.now_ms();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO queue (message_id, kind, session_id, attempts, due_at)
                     SELECT id, 'dispatch', session_id, 0, ?1 FROM messages
                     WHERE role = 'user' AND status = 'received'",
                    [now],
                )?;
                c.execute(
                    "INSERT OR IGNORE INTO queue (message_id, kind, session_id, attempts, due_at)
                     SELECT id, 'deadline', session_id, 0, created_at + ?1 FROM messages
                     WHERE role = 'user' AND status IN ('received', 'dispatched')",
                    [reply_timeout_ms],
                )?;
                let n: usize = c.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))?;
                Ok(n)
            })
            .await
            .map_err(|e| QueueError(e.to_string()))
    }

    async fn due(
        &self,
        now: Millis,
        skip: Vec<JobKey>,
    ) -> Result<(Vec<(DispatchJob, u32)>, Option<Millis>), QueueError> {
        self.db
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT message_id, kind, session_id, attempts, due_at FROM queue ORDER BY due_at LIMIT ?1",
                )?;
                let rows = stmt.query_map([(CONCURRENCY * 2) as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, Millis>(4)?,
                    ))
                })?;
                let mut due = Vec::new();
                let mut next = None;
                for row in rows {
                    let (mid, kind, sid, attempts, due_at) = row?;
                    let parsed = (
                        ulid::Ulid::from_string(&mid),
                        JobKind::parse(&kind),
                        ulid::Ulid::from_string(&sid),
                    );
                    let (Ok(m), Some(kind), Ok(s)) = parsed else {
                        c.execute(
                            "DELETE FROM queue WHERE message_id = ?1 AND kind = ?2",
                            [&mid, &kind],
                        )?;
                        continue;
                    };
                    if skip.contains(&(MessageId(m), kind)) {
                        continue;
                    }
                    if due_at > now {
                        next = Some(due_at);
                        break;
                    }
                    let job = DispatchJob {
                        session_id: SessionId(s),
                        message_id: MessageId(m),
                        kind,
                        // Not kept here: the delivery reads the message by its id.
                        seq: None,
                    };
                    due.push((job, attempts + 1));
                }
                Ok((due, next))
            })
            .await
            .map_err(|e| QueueError(e.to_string()))
    }

    async fn finish(&self, job: DispatchJob) -> Result<(), QueueError> {
        let (id, kind) = (job.message_id.to_string(), job.kind.as_str());
        self.db
            .call(move |c| {
                c.execute(
                    "DELETE FROM queue WHERE message_id = ?1 AND kind = ?2",
                    [id.as_str(), kind],
                )
                .map(|_| ())
            })
            .await
            .map_err(|e| QueueError(e.to_string()))
    }

    /// Moves a delivery given up after its last attempt to `dead_jobs`.
    async fn bury(&self, job: DispatchJob, now: Millis) -> Result<(), QueueError> {
        let (id, sid) = (job.message_id.to_string(), job.session_id.to_string());
        self.db
            .call(move |c| {
                c.execute(
                    "DELETE FROM queue WHERE message_id = ?1 AND kind = 'dispatch'",
                    [&id],
                )?;
                c.execute(
                    "INSERT OR REPLACE INTO dead_jobs (message_id, session_id, failed_at) VALUES (?1, ?2, ?3)",
                    params![id, sid, now],
                )
                .map(|_| ())
            })
            .await
            .map_err(|e| QueueError(e.to_string()))
    }

    /// Puts every dead delivery back: its message (unless answered meanwhile) becomes
    /// `received` again and is queued for delivery now, with a new reply deadline
    /// `reply_timeout_ms` from now. One transaction; a server running on the same database
    /// picks the jobs up at its next look at the queue (within a minute).
    pub async fn redrive(&self, reply_timeout_ms: Millis) -> Result<Redriven, QueueError> {
        let now = self.clock.now_ms();
        let done = self
            .db
            .call(move |c| {
                let dead: Vec<(String, String)> = c
                    .prepare("SELECT message_id, session_id FROM dead_jobs ORDER BY failed_at")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let mut done = Redriven::default();
                for (mid, sid) in dead {
                    let reset = c.execute(
                        "UPDATE messages SET status = 'received'
                         WHERE id = ?1 AND session_id = ?2 AND status IN ('received', 'dispatched', 'failed')",
                        [&mid, &sid],
                    )?;
                    if reset == 1 {
                        let mut insert = c.prepare_cached(
                            "INSERT OR REPLACE INTO queue (message_id, kind, session_id, attempts, due_at)
                             VALUES (?1, ?2, ?3, 0, ?4)",
                        )?;
                        insert.execute(params![mid, JobKind::Dispatch.as_str(), sid, now])?;
                        insert.execute(params![
                            mid,
                            JobKind::Deadline.as_str(),
                            sid,
                            now + reply_timeout_ms
                        ])?;
                        done.redriven += 1;
                    } else {
                        done.dropped += 1;
                    }
                    c.execute("DELETE FROM dead_jobs WHERE message_id = ?1", [&mid])?;
                }
                Ok(done)
            })
            .await
            .map_err(|e| QueueError(e.to_string()))?;
        self.wake.notify_one();
        Ok(done)
    }

    async fn reschedule(
        &self,
        job: DispatchJob,
        attempts: u32,
        due_at: Millis,
    ) -> Result<(), QueueError> {
        let (id, kind) = (job.message_id.to_string(), job.kind.as_str());
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE queue SET attempts = ?3, due_at = ?4 WHERE message_id = ?1 AND kind = ?2",
                    params![id, kind, attempts, due_at],
                )
                .map(|_| ())
            })
            .await
            .map_err(|e| QueueError(e.to_string()))
    }
}

#[async_trait]
impl Queue for JobQueue {
    async fn enqueue(&self, job: DispatchJob, deadline_at: Millis) -> Result<(), QueueError> {
        let now = self.clock.now_ms();
        self.db
            .call(move |c| {
                let mut insert = c.prepare_cached(
                    "INSERT OR IGNORE INTO queue (message_id, kind, session_id, attempts, due_at)
                     VALUES (?1, ?2, ?3, 0, ?4)",
                )?;
                let (mid, sid) = (job.message_id.to_string(), job.session_id.to_string());
                insert.execute(params![mid, JobKind::Dispatch.as_str(), sid, now])?;
                insert.execute(params![mid, JobKind::Deadline.as_str(), sid, deadline_at])?;
                Ok(())
            })
            .await
            .map_err(|e| QueueError(e.to_string()))?;
        self.wake.notify_one();
        Ok(())
    }

    async fn schedule(&self, job: DispatchJob, at: Millis) -> Result<(), QueueError> {
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO queue (message_id, kind, session_id, attempts, due_at)
                     VALUES (?1, ?2, ?3, 0, ?4)",
                    params![
                        job.message_id.to_string(),
                        job.kind.as_str(),
                        job.session_id.to_string(),
                        at
                    ],
                )
                .map(|_| ())
            })
            .await
            .map_err(|e| QueueError(e.to_string()))?;
        self.wake.notify_one();
        Ok(())
    }
}

/// What a redrive did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    /// Messages set back to `received` and queued again.
    pub redriven: u64,
    /// Dead jobs dropped: their message was answered meanwhile, or is gone.
    pub dropped: u64,
}

/// Delivers due jobs until `shutdown` turns true, then waits for deliveries under way.
pub async fn run_worker(
    queue: JobQueue,
    dispatcher: Dispatcher,
    mut shutdown: watch::Receiver<bool>,
) {
    let in_flight: Arc<Mutex<HashSet<JobKey>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = queue.clock.now_ms();
        let skip: Vec<JobKey> = in_flight.lock().unwrap().iter().copied().collect();
        let (due, next) = match queue.due(now, skip).await {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "queue read failed; retrying in 1 s");
                (Vec::new(), Some(now + 1000))
            }
        };
        for (job, attempt) in due {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            in_flight.lock().unwrap().insert((job.message_id, job.kind));
            let (queue, dispatcher, in_flight) =
                (queue.clone(), dispatcher.clone(), in_flight.clone());
            tokio::spawn(async move {
                run_job(&queue, &dispatcher, job, attempt).await;
                in_flight
                    .lock()
                    .unwrap()
                    .remove(&(job.message_id, job.kind));
                drop(permit);
                queue.wake.notify_one();
            });
        }
        let sleep = next.map_or(Duration::from_secs(60), |t| {
            Duration::from_millis((t - now).clamp(1, 60_000) as u64)
        });
        tokio::select! {
            _ = queue.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
        }
    }
    // Let deliveries under way record their outcome; what is cut off runs again next start.
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        permits.acquire_many(CONCURRENCY as u32),
    )
    .await;
}

async fn run_job(queue: &JobQueue, dispatcher: &Dispatcher, job: DispatchJob, attempt: u32) {
    let outcome = dispatcher.run(job, attempt).await;
    let now = queue.clock.now_ms();
    let last = attempt >= dispatcher.service().config().dispatch.max_attempts;
    let written = match outcome {
        // Given up after its last attempt: kept for a redrive.
        Ok(DispatchOutcome::DeadLettered) if job.kind == JobKind::Dispatch && last => {
            queue.bury(job, now).await
        }
        Ok(
            DispatchOutcome::Delivered | DispatchOutcome::Skipped | DispatchOutcome::DeadLettered,
        ) => queue.finish(job).await,
        Ok(DispatchOutcome::Retry(delay)) => {
            queue
                .reschedule(job, attempt, now + delay.as_millis() as Millis)
                .await
        }
        Err(e) => {
            // Our own store failed: try again soon without spending one of n8n's attempts.
            tracing::error!(error = %e, message_id = %job.message_id, "dispatch could not run; retrying");
            queue.reschedule(job, attempt - 1, now + 1000).await
        }
    };
    if let Err(e) = written {
        tracing::error!(error = %e, message_id = %job.message_id, "could not record the dispatch outcome");
    }
}
