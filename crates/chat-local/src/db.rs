//! The embedded database: one SQLite file in WAL mode under `CHAT_DATA_DIR`.
//!
//! One thread owns the one connection; SQLite serialises writers anyway, and this keeps `seq`
//! assignment trivially in commit order. Calls are queued to that thread, which runs them in
//! batches: every call waiting when a batch starts runs in its own savepoint (so each call
//! stays atomic, and one that fails is rolled back alone), then the batch commits once.
//!
//! When a commit is fsync'd depends on the [`Durability`] the database was opened with.
//! Short-lived tools ([`Durability::EachCommit`], `synchronous=FULL`) answer a call only once
//! its commit is on disk. The server ([`Durability::AtBarrier`]) commits without an fsync
//! (`synchronous=NORMAL`) and makes everything committed so far durable at a barrier,
//! [`Db::sync`], which it passes before anything leaves the process: a WebSocket frame, an
//! HTTP answer, a delivery to n8n, a file deleted. The WAL is written in commit order and
//! replayed in that order, so one fsync covers every earlier commit, and the several dependent
//! writes of one request (a message and its queued jobs; a reply and the `answered` status)
//! cost one fsync instead of one each. Under load the writes of many requests share one
//! commit and one fsync (group commit) either way.

use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

/// Creates `dir` (and missing parents) 0700, or warns when an existing one is open to others.
fn private_folder(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::metadata(dir) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            tracing::warn!(
                mode = format!("{:o}", m.permissions().mode() & 0o777),
                "CHAT_DATA_DIR can be read by other users; its files are private (0600), but \
                 consider chmod 700 on it"
            );
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
    }
}

/// Makes `path` 0600: created so when `create`, narrowed when it exists with a wider mode.
fn private_file(path: &Path, create: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o777 != 0o600 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        }
        Ok(_) => Ok(()),
        Err(_) if create => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map(drop),
        Err(_) => Ok(()),
    }
}

/// Metric: transactions committed (one per batch of calls).
pub const COMMITS: &str = "chat_local_db_commits_total";
/// Metric: commits fsync'd (with the server's durability, one per barrier that had writes to
/// cover).
pub const FSYNCS: &str = "chat_local_db_fsyncs_total";

/// The most calls one commit covers.
const MAX_BATCH: usize = 256;

/// When commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is fsync'd before its calls are answered (`synchronous=FULL`): for tools
    /// that run a few calls and exit.
    EachCommit,
    /// Commits are not fsync'd (`synchronous=NORMAL`); [`Db::sync`] makes every commit so
    /// far durable. Whoever tells the outside world what it read or wrote passes it first.
    AtBarrier,
}

/// A shared handle to the database.
#[derive(Clone)]
pub struct Db {
    calls: mpsc::Sender<Box<dyn Work>>,
    counters: Arc<Counters>,
}

/// Commits are numbered 1, 2, … in order (one per batch).
#[derive(Default)]
struct Counters {
    /// Transactions committed so far.
    commits: AtomicU64,
    /// The number of the last commit that changed something.
    written: AtomicU64,
    /// Every commit up to this number is on disk.
    synced: AtomicU64,
    /// Commits that were fsync'd (with `EachCommit`, every one that changed something).
    fsyncs: AtomicU64,
}

/// A database failure; its text is for logs.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("a database call panicked")]
    Panicked,
    #[error("the database thread has stopped")]
    Closed,
    #[error("data folder: {0}")]
    Io(#[from] std::io::Error),
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    read_up_to  INTEGER NOT NULL DEFAULT 0,
    metadata    TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    session_id        TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    id                TEXT NOT NULL UNIQUE,
    role              TEXT NOT NULL,
    kind              TEXT NOT NULL,
    content           TEXT NOT NULL,
    data              TEXT,
    metadata          TEXT,
    status            TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    reply_to          TEXT,
    client_message_id TEXT,
    expires_at        INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    session_id TEXT NOT NULL,
    key        TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS connections (
    id           TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL,
    connected_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    merged       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS connections_by_session ON connections (session_id);
-- The dispatch queue: per user message a delivery job and a reply-deadline job.
CREATE TABLE IF NOT EXISTS queue (
    message_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    session_id TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    due_at     INTEGER NOT NULL,
    PRIMARY KEY (message_id, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_by_due ON queue (due_at);
-- Deliveries given up after their last attempt (their message is `failed`, the user told),
-- kept for `chat-local admin redrive`, as SQS keeps them in the dead-letter queue on AWS.
CREATE TABLE IF NOT EXISTS dead_jobs (
    message_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    failed_at  INTEGER NOT NULL
) WITHOUT ROWID;
-- One row, updated by a barrier (`Db::sync`) that finds no write of its own to commit: a
-- commit that writes nothing is not fsync'd.
CREATE TABLE IF NOT EXISTS barrier (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL
);
-- Earlier versions kept deliveries in `jobs` and rate-limit counters on disk (limits now live
-- in memory): pending deliveries move to `queue`, the old tables go.
CREATE TABLE IF NOT EXISTS jobs (message_id TEXT PRIMARY KEY, session_id TEXT, attempts INTEGER, due_at INTEGER);
INSERT OR IGNORE INTO queue (message_id, kind, session_id, attempts, due_at)
    SELECT message_id, 'dispatch', session_id, attempts, due_at FROM jobs;
DROP TABLE jobs;
DROP TABLE IF EXISTS counters;
"#;

/// Databases made before people in the loop: sessions gain their mode (every old session is
/// with the bot), holder, waiting time and last activity (their creation), messages the
/// agent's name; then the inbox's indexes and the canned replies.
fn migrate_modes(conn: &Connection) -> rusqlite::Result<()> {
    let has = |table: &str, column: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )
    };
    if !has("sessions", "mode")? {
        conn.execute_batch(
            "ALTER TABLE sessions ADD COLUMN mode TEXT NOT NULL DEFAULT 'bot';
             ALTER TABLE sessions ADD COLUMN agent_id TEXT;
             ALTER TABLE sessions ADD COLUMN agent_name TEXT;
             ALTER TABLE sessions ADD COLUMN waiting_since INTEGER;
             ALTER TABLE sessions ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
             UPDATE sessions SET updated_at = created_at;",
        )?;
    }
    // Rate-limit buckets taken by appends, on their session; older databases lack them.
    if !has("sessions", "tat_messages")? {
        conn.execute_batch(
            "ALTER TABLE sessions ADD COLUMN tat_messages INTEGER;
             ALTER TABLE sessions ADD COLUMN tat_webhook INTEGER;",
        )?;
    }
    // Connections opened with `v=2` (merged frames); older databases lack the column.
    if !has("connections", "merged")? {
        conn.execute_batch("ALTER TABLE connections ADD COLUMN merged INTEGER NOT NULL DEFAULT 0")?;
    }
    if !has("messages", "name")? {
        conn.execute_batch("ALTER TABLE messages ADD COLUMN name TEXT")?;
    }
    migrate_keep(conn, &has)?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS sessions_waiting ON sessions (waiting_since, id) WHERE mode = 'waiting';
         CREATE INDEX IF NOT EXISTS sessions_open ON sessions (updated_at, id) WHERE mode IN ('waiting', 'agent');
         CREATE INDEX IF NOT EXISTS sessions_mine ON sessions (agent_id, updated_at, id) WHERE mode = 'agent';
         CREATE TABLE IF NOT EXISTS canned_replies (
             id         TEXT PRIMARY KEY,
             shortcut   TEXT NOT NULL UNIQUE,
             title      TEXT NOT NULL,
             text       TEXT NOT NULL,
             updated_at INTEGER NOT NULL
         ) WITHOUT ROWID;",
    )
}

/// Conversations people keep: sessions gain their title (the first user message's, filled
/// in for sessions that have one) and the index of a user's sessions by activity.
fn migrate_keep(
    conn: &Connection,
    has: &dyn Fn(&str, &str) -> rusqlite::Result<bool>,
) -> rusqlite::Result<()> {
    if !has("sessions", "title")? {
        conn.execute_batch("ALTER TABLE sessions ADD COLUMN title TEXT")?;
        let mut firsts = conn.prepare(
            "SELECT session_id, content FROM messages m WHERE role = 'user'
               AND seq = (SELECT MIN(seq) FROM messages WHERE session_id = m.session_id AND role = 'user')",
        )?;
        let rows = firsts
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (sid, content) in rows {
            conn.execute(
                "UPDATE sessions SET title = ?2 WHERE id = ?1",
                rusqlite::params![sid, chat_core::model::title_of(&content)],
            )?;
        }
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id, updated_at, id) WHERE user_id IS NOT NULL;",
    )?;
    migrate_edits(conn, has)
}

/// Edit and delete: messages gain the agent who wrote them, the times of their last edit and
/// their deletion, and `changed_at` (set only by an edit or a deletion) with a partial index
/// of the changed messages, which `?updatedAfter=` reads.
fn migrate_edits(
    conn: &Connection,
    has: &dyn Fn(&str, &str) -> rusqlite::Result<bool>,
) -> rusqlite::Result<()> {
    for column in [
        "agent_id TEXT",
        "edited_at INTEGER",
        "deleted_at INTEGER",
        "changed_at INTEGER",
    ] {
        let name = column.split(' ').next().unwrap_or_default();
        if !has("messages", name)? {
            conn.execute_batch(&format!("ALTER TABLE messages ADD COLUMN {column}"))?;
        }
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS messages_changed ON messages (session_id, changed_at, seq) WHERE changed_at IS NOT NULL;",
    )
}

impl Db {
    /// Opens (creating if needed) `<dir>/chat.db`, every commit fsync'd before it is
    /// answered ([`Durability::EachCommit`]). The data is private: a folder it creates
    /// is 0700, and the database and its `-wal` and `-shm` files are made 0600 (SQLite gives
    /// the last two the database's mode), also when they exist with wider modes. A folder
    /// that exists already keeps its mode (it may be shared, like `/tmp`); a warning says if
    /// other users can read it.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        Self::open_with(dir, Durability::EachCommit)
    }

    /// [`Db::open`] with the given durability.
    pub fn open_with(dir: &Path, durability: Durability) -> Result<Self, DbError> {
        private_folder(dir)?;
        let db = dir.join("chat.db");
        for suffix in ["", "-wal", "-shm"] {
            let mut path = db.clone().into_os_string();
            path.push(suffix);
            private_file(Path::new(&path), suffix.is_empty())?;
        }
        let conn = Connection::open(db)?;
        Self::init(conn, durability)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, DbError> {
        Self::init(Connection::open_in_memory()?, Durability::EachCommit)
    }

    fn init(conn: Connection, durability: Durability) -> Result<Self, DbError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The schema and its migrations are written at once, durably.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // Databases made before sessions had metadata get the column.
        let has_metadata: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('sessions') WHERE name = 'metadata'",
            [],
            |r| r.get(0),
        )?;
        if !has_metadata {
            conn.execute_batch("ALTER TABLE sessions ADD COLUMN metadata TEXT")?;
        }
        migrate_modes(&conn)?;
        crate::attachments::migrate(&conn)?;
        if durability == Durability::AtBarrier {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let (calls, queued) = mpsc::channel();
        let counters = Arc::<Counters>::default();
        let shared = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("chat-db".into())
            .spawn(move || run(conn, queued, &shared, durability))?;
        Ok(Self { calls, counters })
    }

    /// How many transactions the database thread has committed (one per batch of calls).
    pub fn commits(&self) -> u64 {
        self.counters.commits.load(Ordering::Relaxed)
    }

    /// How many commits were fsync'd.
    pub fn fsyncs(&self) -> u64 {
        self.counters.fsyncs.load(Ordering::Relaxed)
    }

    /// Whether every commit that changed something is on disk.
    pub fn is_synced(&self) -> bool {
        self.counters.synced.load(Ordering::Acquire)
            >= self.counters.written.load(Ordering::Acquire)
    }

    /// Runs `f` atomically on the database thread; its answer comes once its writes are
    /// committed, that is visible to every later call. With [`Durability::AtBarrier`] they
    /// are on disk only once a later [`Db::sync`] returns. An `Err` from `f` rolls back what
    /// `f` wrote.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call = Call {
            f: Some(f),
            result: None,
            reply,
        };
        self.calls
            .send(Box::new(call))
            .map_err(|_| DbError::Closed)?;
        answer.await.map_err(|_| DbError::Closed)?
    }

    /// The number of the last commit that changed something: a mark for [`Db::sync_to`].
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Acquire)
    }

    /// The durability barrier: returns once every commit made before it was called is
    /// fsync'd, so whatever a caller read or wrote may be told. Free when nothing changed
    /// since the last barrier; barriers waiting together share one fsync.
    pub async fn sync(&self) -> Result<(), DbError> {
        self.sync_to(self.written()).await
    }

    /// [`Db::sync`] for the commits up to `mark` (from [`Db::written`]); free when they are
    /// on disk already, even if later ones are not.
    pub async fn sync_to(&self, mark: u64) -> Result<(), DbError> {
        if self.counters.synced.load(Ordering::Acquire) >= mark {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Box::new(Barrier(reply)))
            .map_err(|_| DbError::Closed)?;
        answer.await.map_err(|_| DbError::Closed)?
    }
}

/// One queued call, type-erased for the database thread.
trait Work: Send {
    /// Runs the call; false when it failed (its savepoint is then rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's fate is known (`Some`: the commit failed).
    fn finish(self: Box<Self>, commit_error: Option<&str>);
    /// Whether this is a barrier: the batch's commit must be fsync'd, with every earlier one.
    fn is_barrier(&self) -> bool {
        false
    }
}

struct Call<T, F> {
    f: Option<F>,
    result: Option<Result<T, DbError>>,
    reply: oneshot::Sender<Result<T, DbError>>,
}

impl<T, F> Work for Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else { return false };
        let result = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
            Ok(r) => r.map_err(DbError::from),
            Err(_) => Err(DbError::Panicked),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit_error: Option<&str>) {
        let answer = match (self.result, commit_error) {
            (Some(Err(e)), _) => Err(e),
            (_, Some(e)) => Err(DbError::Commit(e.to_string())),
            (Some(Ok(v)), None) => Ok(v),
            (None, None) => Err(DbError::Commit("the call did not run".into())),
        };
        // The caller may have gone (a dropped request); its writes stand, like any commit.
        let _ = self.reply.send(answer);
    }
}

/// A [`Db::sync`] waiting for its batch's fsync.
struct Barrier(oneshot::Sender<Result<(), DbError>>);

impl Work for Barrier {
    fn run(&mut self, _: &Connection) -> bool {
        true
    }

    fn finish(self: Box<Self>, commit_error: Option<&str>) {
        let answer = match commit_error {
            None => Ok(()),
            Some(e) => Err(DbError::Commit(e.to_string())),
        };
        let _ = self.0.send(answer);
    }

    fn is_barrier(&self) -> bool {
        true
    }
}

/// The database thread: runs queued calls in batches until every handle is dropped, then
/// closes the connection (after finishing what was queued).
fn run(
    conn: Connection,
    queued: mpsc::Receiver<Box<dyn Work>>,
    counters: &Counters,
    durability: Durability,
) {
    while let Ok(first) = queued.recv() {
        let mut batch = vec![first];
        batch.extend(queued.try_iter().take(MAX_BATCH - 1));
        // A barrier behind a commit not yet on disk: this batch's commit is fsync'd, which
        // puts every earlier one on disk too (the WAL is written and replayed in order).
        let fsync = durability == Durability::AtBarrier
            && batch.iter().any(|w| w.is_barrier())
            && counters.synced.load(Ordering::Acquire) < counters.written.load(Ordering::Acquire);
        let changes = conn.total_changes();
        let done = run_batch(&conn, &mut batch, fsync);
        let number = counters.commits.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::counter!(COMMITS).increment(1);
        if done.is_ok() && conn.total_changes() != changes {
            counters.written.store(number, Ordering::Release);
            if fsync || durability == Durability::EachCommit {
                counters.synced.store(number, Ordering::Release);
                counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(FSYNCS).increment(1);
            }
        }
        let commit_error = done.err().map(|e| e.to_string());
        for call in batch {
            call.finish(commit_error.as_deref());
        }
    }
}

/// Runs a batch in one transaction, each call in its own savepoint, and commits it; with
/// `fsync`, the commit also updates the barrier row (a commit that writes nothing is not
/// fsync'd) under `synchronous=FULL`.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Work>], fsync: bool) -> rusqlite::Result<()> {
    if fsync {
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    conn.execute_batch("BEGIN")?;
    let ran = (|| {
        for call in batch.iter_mut() {
            conn.execute_batch("SAVEPOINT call")?;
            if !call.run(conn) {
                conn.execute_batch("ROLLBACK TO call")?;
            }
            conn.execute_batch("RELEASE call")?;
        }
        if fsync {
            conn.execute(
                "INSERT INTO barrier (id, count) VALUES (1, 1)
                 ON CONFLICT (id) DO UPDATE SET count = count + 1",
                [],
            )?;
        }
        conn.execute_batch("COMMIT")
    })();
    if ran.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    if fsync && let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
        // Later commits would be fsync'd each: slower, never less durable.
        tracing::warn!(error = %e, "could not go back to synchronous=NORMAL");
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(key: &str) -> impl FnOnce(&Connection) -> rusqlite::Result<()> + use<> {
        let key = key.to_string();
        move |c| {
            c.execute(
                "INSERT INTO idempotency (session_id, key, seq, expires_at) VALUES ('s', ?1, 0, 0)",
                [key],
            )
            .map(|_| ())
        }
    }

    fn keys(c: &Connection) -> rusqlite::Result<Vec<String>> {
        let mut s = c.prepare("SELECT key FROM idempotency ORDER BY key")?;
        s.query_map([], |r| r.get(0))?.collect()
    }

    /// Calls queued together commit together, yet each stays atomic: the one that fails
    /// is rolled back alone, the others stand.
    #[tokio::test]
    async fn a_failing_call_rolls_back_alone_within_its_batch() {
        let db = Db::open_in_memory().unwrap();
        // A call that holds the database thread until released, so the next calls queue up.
        let (started, is_running) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let hold = tokio::spawn({
            let db = db.clone();
            async move {
                db.call(move |_| {
                    let _ = started.send(());
                    let _ = released.recv_timeout(std::time::Duration::from_secs(10));
                    Ok(())
                })
                .await
            }
        });
        is_running.await.unwrap();
        let before = db.commits();
        type Call = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;
        let spawn = |f: Call| {
            let db = db.clone();
            tokio::spawn(async move { db.call(f).await })
        };
        let ok_a = spawn(Box::new(insert("a")));
        let bad = spawn(Box::new(|c| {
            insert("b")(c)?;
            Err::<(), _>(rusqlite::Error::InvalidQuery)
        }));
        let dup = spawn(Box::new(|c| {
            insert("c")(c)?;
            insert("a")(c) // a unique-key violation after a write of its own
        }));
        let ok_d = spawn(Box::new(insert("d")));
        // Let the four calls reach the queue (each sends on its first poll), then release.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        let (h, a, b, c, d) = tokio::join!(hold, ok_a, bad, dup, ok_d);
        let (h, a, b, c, d) = (h.unwrap(), a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap());
        assert!(h.is_ok() && a.is_ok() && d.is_ok());
        // The held call commits alone; the four queued behind it commit together.
        assert_eq!(
            db.commits() - before,
            2,
            "one commit for the four queued calls"
        );
        assert!(matches!(b, Err(DbError::Sqlite(_))), "{b:?}");
        assert!(matches!(c, Err(DbError::Sqlite(_))), "{c:?}");
        assert_eq!(db.call(keys).await.unwrap(), ["a", "d"]);
    }

    /// What a call acknowledged is in the file when the database is opened again.
    #[tokio::test]
    async fn acknowledged_writes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let writes: Vec<_> = (0..100)
            .map(|i| db.call(insert(&format!("k{i:03}"))))
            .collect();
        for w in futures_util::future::join_all(writes).await {
            w.unwrap();
        }
        drop(db);
        let again = Db::open(dir.path()).unwrap();
        let got = again.call(keys).await.unwrap();
        assert_eq!(got.len(), 100);
        assert_eq!(got[0], "k000");
        assert_eq!(got[99], "k099");
    }

    /// With `AtBarrier`, a commit is not fsync'd until a barrier asks; one barrier covers
    /// every commit before it, a barrier with nothing new to cover costs no fsync, and
    /// neither do reads.
    #[tokio::test]
    async fn at_barrier_one_fsync_covers_every_commit_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_with(dir.path(), Durability::AtBarrier).unwrap();
        db.sync().await.unwrap();
        assert_eq!(db.fsyncs(), 0, "nothing written yet");
        for i in 0..3 {
            db.call(insert(&format!("k{i}"))).await.unwrap();
        }
        assert!(!db.is_synced(), "three commits, none on disk yet");
        assert_eq!(db.fsyncs(), 0);
        let barriers: Vec<_> = (0..5).map(|_| db.sync()).collect();
        for b in futures_util::future::join_all(barriers).await {
            b.unwrap();
        }
        assert!(db.is_synced());
        assert_eq!(
            db.fsyncs(),
            1,
            "one fsync for three commits and five barriers"
        );
        db.call(keys).await.unwrap();
        db.sync().await.unwrap();
        assert_eq!(db.fsyncs(), 1, "a read needs no fsync");
        db.call(insert("k3")).await.unwrap();
        db.sync().await.unwrap();
        assert_eq!(db.fsyncs(), 2);
        drop(db);
        let again = Db::open(dir.path()).unwrap();
        assert_eq!(again.call(keys).await.unwrap(), ["k0", "k1", "k2", "k3"]);
    }

    /// With `EachCommit` (tools), a call is answered only once its commit is on disk.
    #[tokio::test]
    async fn each_commit_is_fsynced_before_it_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        for i in 0..3 {
            db.call(insert(&format!("k{i}"))).await.unwrap();
            assert!(db.is_synced());
            assert_eq!(db.fsyncs(), i + 1);
        }
        db.sync().await.unwrap();
        assert_eq!(db.fsyncs(), 3, "the barrier has nothing to do");
    }

    /// A panicking call fails alone; the database thread keeps serving.
    #[tokio::test]
    async fn a_panicking_call_does_not_stop_the_database() {
        let db = Db::open_in_memory().unwrap();
        let r = db.call(|_| -> rusqlite::Result<()> { panic!("bug") }).await;
        assert!(matches!(r, Err(DbError::Panicked)), "{r:?}");
        db.call(insert("after")).await.unwrap();
        assert_eq!(db.call(keys).await.unwrap(), ["after"]);
    }
}
