//! The SQLite store passes the same conformance suite as every other store, on a real
//! database file on disk (WAL, synchronous=FULL), one fresh file per check.

use chat_local::db::Db;
use chat_local::store::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let root = tempfile::tempdir().unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    chat_testkit::conformance::run_all(|| {
        let dir = root.path().join(
            next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .to_string(),
        );
        async move { SqliteStore::new(Db::open(&dir).expect("database opens")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms_for_agents() {
    let root = tempfile::tempdir().unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    chat_testkit::conformance::run_agents(|| {
        let dir = root.path().join(
            next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .to_string(),
        );
        async move { SqliteStore::new(Db::open(&dir).expect("database opens")) }
    })
    .await;
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    use chat_core::model::{
        MessageId, MessageStatus, MessageType, NewMessage, PageQuery, Role, Session, SessionId,
    };
    use chat_core::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let id = SessionId::new();
    {
        let store = SqliteStore::new(Db::open(dir.path()).unwrap());
        let s = Session {
            id,
            user_id: Some("u1".into()),
            created_at: 1,
            expires_at: i64::MAX,
            last_seq: 0,
            read_up_to: 0,
            metadata: None,
            mode: Default::default(),
            updated_at: 1,
            title: None,
        };
        store.create_session(&s).await.unwrap();
        let m = NewMessage {
            id: MessageId::new(),
            session_id: id,
            role: Role::User,
            kind: MessageType::Text,
            content: "kept".into(),
            data: None,
            metadata: None,
            status: MessageStatus::Received,
            created_at: 2,
            reply_to: None,
            client_message_id: Some("c".into()),
            attachments: Vec::new(),
            idempotency_key: Some("client#c".into()),
            limit: None,
            name: None,
            agent_id: None,
            open_only: false,
        };
        assert!(store.append_message(m).await.unwrap().unwrap().created);
    }
    let store = SqliteStore::new(Db::open(dir.path()).unwrap());
    let s = store
        .get_session(&id, 3)
        .await
        .unwrap()
        .expect("session kept");
    assert_eq!((s.last_seq, s.user_id.as_deref()), (1, Some("u1")));
    let page = store
        .list_messages(
            &id,
            PageQuery {
                after: Some(0),
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].content, "kept");
}

#[tokio::test]
async fn purge_removes_only_what_has_expired() {
    use chat_core::model::{
        Connection, MessageId, MessageStatus, MessageType, NewMessage, PageQuery, Role, Session,
        SessionId,
    };
    use chat_core::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::new(Db::open(dir.path()).unwrap());
    let (old, live) = (SessionId::new(), SessionId::new());
    for (id, expires_at) in [(old, 1_000), (live, 10_000)] {
        let s = Session {
            id,
            user_id: None,
            created_at: 1,
            expires_at,
            last_seq: 0,
            read_up_to: 0,
            metadata: None,
            mode: Default::default(),
            updated_at: 1,
            title: None,
        };
        store.create_session(&s).await.unwrap();
        let m = NewMessage {
            id: MessageId::new(),
            session_id: id,
            role: Role::User,
            kind: MessageType::Text,
            content: "m".into(),
            data: None,
            metadata: None,
            status: MessageStatus::Received,
            created_at: 2,
            reply_to: None,
            client_message_id: Some("k".into()),
            attachments: Vec::new(),
            idempotency_key: Some("client#k".into()),
            limit: None,
            name: None,
            agent_id: None,
            open_only: false,
        };
        store.append_message(m).await.unwrap().unwrap();
        let c = Connection {
            id: format!("conn-{id}"),
            session_id: id,
            connected_at: 3,
            expires_at,
            merged: false,
        };
        store.put_connection(&c).await.unwrap();
    }

    // At t = 5000: the old session's message, key, connection and session are gone (4 rows);
    // everything of the live one stays.
    assert_eq!(store.purge_expired(5_000).await.unwrap(), 4);
    assert!(store.get_session(&old, 0).await.unwrap().is_none());
    assert!(store.list_connections(&old).await.unwrap().is_empty());
    let q = PageQuery {
        after: Some(0),
        before: None,
        limit: 10,
    };
    assert!(
        store
            .list_messages(&old, q)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    assert!(store.get_session(&live, 0).await.unwrap().is_some());
    assert_eq!(
        store.list_messages(&live, q).await.unwrap().messages.len(),
        1
    );
    assert_eq!(store.list_connections(&live).await.unwrap().len(), 1);
    assert!(
        store
            .find_by_key(&live, "client#k")
            .await
            .unwrap()
            .is_some(),
        "the live session's idempotency key stays"
    );
}

#[tokio::test]
async fn a_database_from_before_session_metadata_gains_the_column() {
    use chat_core::model::{Session, SessionId};
    use chat_core::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let old = SessionId::new();
    {
        // The sessions table as earlier versions made it, with one session in it.
        let c = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id TEXT, created_at INTEGER NOT NULL,
             expires_at INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
             read_up_to INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;",
        )
        .unwrap();
        c.execute(
            "INSERT INTO sessions (id, created_at, expires_at) VALUES (?1, 1, ?2)",
            rusqlite::params![old.to_string(), i64::MAX],
        )
        .unwrap();
    }
    let store = SqliteStore::new(Db::open(dir.path()).unwrap());
    let read = store.get_session(&old, 2).await.unwrap().expect("kept");
    assert_eq!(read.metadata, None);
    let new = Session {
        id: SessionId::new(),
        user_id: None,
        created_at: 1,
        expires_at: i64::MAX,
        last_seq: 0,
        read_up_to: 0,
        metadata: serde_json::json!({"locale": "fr"}).as_object().cloned(),
        mode: Default::default(),
        updated_at: 1,
        title: None,
    };
    store.create_session(&new).await.unwrap();
    assert_eq!(store.get_session(&new.id, 2).await.unwrap(), Some(new));
}

/// A database from before people in the loop (sessions without a mode, messages without a
/// name, no canned replies): its sessions come back with the bot, their activity at their
/// creation, its messages readable; modes, the inbox and canned replies work on it.
#[tokio::test]
async fn a_database_from_before_modes_gains_them() {
    use chat_core::model::{
        AgentRef, CannedReply, InboxQuery, InboxView, ModeState, PageQuery, SessionId,
    };
    use chat_core::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let old = SessionId::new();
    let mid = chat_core::model::MessageId::new();
    {
        let c = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id TEXT, created_at INTEGER NOT NULL,
             expires_at INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
             read_up_to INTEGER NOT NULL DEFAULT 0, metadata TEXT) WITHOUT ROWID;
             CREATE TABLE messages (session_id TEXT NOT NULL, seq INTEGER NOT NULL,
             id TEXT NOT NULL UNIQUE, role TEXT NOT NULL, kind TEXT NOT NULL, content TEXT NOT NULL,
             data TEXT, metadata TEXT, status TEXT NOT NULL, created_at INTEGER NOT NULL,
             reply_to TEXT, client_message_id TEXT, expires_at INTEGER NOT NULL,
             PRIMARY KEY (session_id, seq)) WITHOUT ROWID;",
        )
        .unwrap();
        c.execute(
            "INSERT INTO sessions (id, created_at, expires_at, last_seq) VALUES (?1, 7, ?2, 1)",
            rusqlite::params![old.to_string(), i64::MAX],
        )
        .unwrap();
        c.execute(
            "INSERT INTO messages (session_id, seq, id, role, kind, content, status, created_at, expires_at)
             VALUES (?1, 1, ?2, 'user', 'text', 'hello from before', 'answered', 7, ?3)",
            rusqlite::params![old.to_string(), mid.to_string(), i64::MAX],
        )
        .unwrap();
    }
    let store = SqliteStore::new(Db::open(dir.path()).unwrap());
    let read = store.get_session(&old, 8).await.unwrap().expect("kept");
    assert_eq!(read.mode, ModeState::bot());
    assert_eq!(read.updated_at, 7, "activity starts at creation");
    assert_eq!(
        read.title.as_deref(),
        Some("hello from before"),
        "the title is filled in from the first user message"
    );
    let m = store.get_message(&old, &mid).await.unwrap().expect("kept");
    assert_eq!((m.content.as_str(), m.name), ("hello from before", None));
    let alex = ModeState::agent(AgentRef {
        id: "a-1".into(),
        name: "Alex".into(),
    });
    let held = store
        .set_mode(&old, &ModeState::bot(), &alex, 9)
        .await
        .unwrap()
        .expect("an old session can be claimed");
    assert_eq!(held.mode, alex);
    let mine = store
        .list_inbox(&InboxQuery {
            view: InboxView::Mine("a-1".into()),
            after: None,
            limit: 10,
            now: 10,
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    let page = PageQuery {
        after: Some(0),
        before: None,
        limit: 10,
    };
    assert_eq!(
        store
            .list_messages(&old, page)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
    let reply = CannedReply {
        id: ulid::Ulid::new().to_string(),
        shortcut: "hi".into(),
        title: "Hi".into(),
        text: "Hello!".into(),
        updated_at: 1,
    };
    assert!(store.create_canned(&reply).await.unwrap());
    drop(store);
    // Opening it again migrates nothing twice.
    let again = SqliteStore::new(Db::open(dir.path()).unwrap());
    assert_eq!(
        again.get_session(&old, 10).await.unwrap().unwrap().mode,
        alex
    );
    assert_eq!(again.list_canned().await.unwrap(), [reply]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_attachment_records_conform() {
    let root = tempfile::tempdir().unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    chat_testkit::conformance::run_attachments(
        || {
            let dir = root.path().join(
                next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    .to_string(),
            );
            async move {
                chat_local::attachments::SqliteAttachments::new(
                    Db::open(&dir).expect("database opens"),
                )
            }
        },
        true,
    )
    .await;
}
