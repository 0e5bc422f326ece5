//! The chat service: Reply deadlines, typing limits, content and reply limits, unread counts past a page, and
//! pushes in `seq` order under racing writers.

mod service_support;

use service_support::*;

#[tokio::test]
async fn every_message_is_queued_with_a_reply_deadline() {
    let h = H::new();
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hi").await;
    assert_eq!(
        h.queue.drain_deadlines(),
        vec![(job.deadline(), m.created_at + 120_000)],
        "the deadline job, due CHAT_REPLY_TIMEOUT_MS (120 s) after the message was stored"
    );
}

#[tokio::test]
async fn a_message_n8n_accepted_but_never_answered_fails_at_its_deadline() {
    let h = H::new();
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, "hi").await;
    let (deadline, due) = h.queue.drain_deadlines()[0];
    assert_eq!(
        h.dispatcher.run(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    h.push.take();

    // Run early (a queue may deliver a little early): nothing happens yet.
    h.clock.set(due - 10_000);
    assert_eq!(
        h.dispatcher.run(deadline, 1).await.unwrap(),
        DispatchOutcome::Retry(Duration::from_secs(10))
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Dispatched);

    h.clock.set(due);
    assert_eq!(
        h.dispatcher.run(deadline, 1).await.unwrap(),
        DispatchOutcome::DeadLettered
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Failed);
    let all = h.all_messages(&s.id).await;
    let notice = &all[1];
    assert_eq!(
        (
            notice.role,
            notice.kind,
            notice.reply_to,
            notice.content.as_str()
        ),
        (
            Role::System,
            MessageType::Error,
            Some(m.id),
            chat_core::service::TIMED_OUT_TEXT
        )
    );
    assert_eq!(
        h.events("c1"),
        vec!["status", "message", "typing"],
        "failed, the notice, and the typing indicator turned off"
    );
    assert_eq!(h.frames("c1")[2]["isTyping"], false);

    // A repeated deadline job changes nothing.
    h.push.take();
    assert_eq!(
        h.dispatcher.run(deadline, 2).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert!(h.push.take().is_empty());

    // A late reply is still stored, shown, and answers the message.
    let r = h
        .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "sorry, late", "eventId": "late"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    assert_eq!(h.events("c1"), vec!["message", "status"]);
}

#[tokio::test]
async fn a_message_whose_delivery_never_finished_fails_at_its_deadline() {
    // The dispatch Lambda died on its last attempt: SQS dead-lettered the record without our
    // code running, so the message is still `received`.
    let h = H::new();
    let s = h.session().await;
    let (m, _job) = h.user_message(&s, "hi").await;
    let (deadline, due) = h.queue.drain_deadlines()[0];
    h.clock.set(due + 5_000);
    assert_eq!(
        h.dispatcher.run(deadline, 1).await.unwrap(),
        DispatchOutcome::DeadLettered
    );
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Failed);
}

#[tokio::test]
async fn the_deadline_of_an_answered_message_does_nothing() {
    let h = H::new();
    let s = h.session().await;
    let (m, job) = h.user_message(&s, "hi").await;
    let (deadline, due) = h.queue.drain_deadlines()[0];
    h.dispatcher.run(job, 1).await.unwrap();
    h.webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "answer"}))
        .await;
    h.clock.set(due);
    assert_eq!(
        h.dispatcher.run(deadline, 1).await.unwrap(),
        DispatchOutcome::Skipped
    );
    assert_eq!(h.all_messages(&s.id).await.len(), 2, "no failure notice");
}

#[tokio::test]
async fn the_reply_timeout_is_configurable() {
    let mut config = chat_testkit::config();
    config.dispatch.reply_timeout = Duration::from_secs(30);
    let h = H::with_config(config);
    let s = h.session().await;
    let (m, _) = h.user_message(&s, "hi").await;
    assert_eq!(h.queue.drain_deadlines()[0].1, m.created_at + 30_000);
}

#[tokio::test]
async fn typing_frames_are_limited_per_connection() {
    let h = H::new();
    let s = h.session().await;
    let c1 = h.connect(&s, "c1").await;
    let c2 = h.connect(&s, "c2").await;
    h.connect(&s, "c3").await;
    for i in 0..40 {
        h.svc
            .handle_frame(
                &c1,
                format!(r#"{{"action":"typing","isTyping":{}}}"#, i % 2 == 0).as_bytes(),
            )
            .await;
    }
    assert_eq!(
        h.events("c3").len(),
        30,
        "30 typing frames per minute per connection"
    );
    assert!(
        h.events("c1").is_empty(),
        "no error frames for dropped typing"
    );
    // Another connection has its own budget.
    h.svc
        .handle_frame(&c2, br#"{"action":"typing","isTyping":true}"#)
        .await;
    assert_eq!(h.events("c3").len(), 31);
    h.clock.advance(2_000);
    h.svc
        .handle_frame(&c1, br#"{"action":"typing","isTyping":false}"#)
        .await;
    assert_eq!(h.events("c3").len(), 32, "one more every 2 s");
}

#[tokio::test]
async fn a_lowercase_session_id_with_its_own_token_works() {
    let h = H::new();
    let s = h.session().await;
    let lower = s.path().to_lowercase();
    let r = api::get_session(&h.svc, &lower, Some(&s.bearer())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let other = h.session().await;
    let r = api::get_session(&h.svc, &other.path().to_lowercase(), Some(&s.bearer())).await;
    assert_eq!(r.status, 403, "another session, lowercase or not");
}

#[tokio::test]
async fn invisible_or_control_content_is_400() {
    let h = H::new();
    let s = h.session().await;
    for (content, code) in [
        ("\u{200B}\u{200C}\u{200D}", "content_empty"),
        ("\u{FEFF}", "content_empty"),
        ("\0", "content_invalid"),
        ("hi\u{1b}[31m", "content_invalid"),
    ] {
        let body = serde_json::to_vec(&json!({ "content": content })).unwrap();
        let r = api::post_message(&h.svc, &s.path(), Some(&s.bearer()), &body).await;
        assert_eq!(
            (r.status, code_of(&r)),
            (400, code.to_string()),
            "{content:?}"
        );
    }
    assert!(h.all_messages(&s.id).await.is_empty());
}

#[tokio::test]
async fn replies_have_their_own_length_limit() {
    let h = H::new();
    let s = h.session().await;
    let long = "é".repeat(16_000);
    let r = h.webhook(json!({"sessionId": s.id, "content": long})).await;
    assert_eq!(r.status, 200, "a 16,000-character answer is fine");
    let r = h
        .webhook(json!({"sessionId": s.id, "content": "x".repeat(16_001)}))
        .await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "content_too_long"));
    let r = h
        .webhook(json!({"sessionId": s.id, "content": "\u{200B}"}))
        .await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "content_empty"));
}

#[tokio::test]
async fn unread_count_counts_past_one_page() {
    let h = H::new();
    let s = h.session().await;
    for i in 0..150 {
        let r = h
            .webhook(
                json!({"sessionId": s.id, "content": format!("r{i}"), "eventId": format!("e{i}")}),
            )
            .await;
        assert_eq!(r.status, 200);
        h.clock.advance(1_000);
    }
    let r = api::get_session(&h.svc, &s.path(), Some(&s.bearer())).await;
    assert_eq!(json_of(&r)["session"]["unreadCount"], 150);
    let r = api::mark_read(&h.svc, &s.path(), Some(&s.bearer()), br#"{"upTo":20}"#).await;
    assert_eq!(json_of(&r)["unreadCount"], 130);
}

/// A store whose first append answers late: until the second append is done (or 300 ms).
struct SlowFirstAppend {
    inner: MemoryStore,
    appended: tokio::sync::Notify,
    first: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Store for SlowFirstAppend {
    async fn create_session(
        &self,
        s: &chat_core::model::Session,
    ) -> Result<(), chat_core::ports::StoreError> {
        self.inner.create_session(s).await
    }
    async fn get_session(
        &self,
        id: &SessionId,
        now: Millis,
    ) -> Result<Option<chat_core::model::Session>, chat_core::ports::StoreError> {
        self.inner.get_session(id, now).await
    }
    async fn append_message(
        &self,
        m: chat_core::model::NewMessage,
    ) -> Result<Option<chat_core::ports::Appended>, chat_core::ports::StoreError> {
        let r = self.inner.append_message(m).await;
        if self.first.swap(false, Ordering::SeqCst) {
            let _ =
                tokio::time::timeout(Duration::from_millis(300), self.appended.notified()).await;
        } else {
            self.appended.notify_one();
        }
        r
    }
    async fn get_message(
        &self,
        s: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Message>, chat_core::ports::StoreError> {
        self.inner.get_message(s, id).await
    }
    async fn list_messages(
        &self,
        s: &SessionId,
        q: PageQuery,
    ) -> Result<chat_core::model::Page, chat_core::ports::StoreError> {
        self.inner.list_messages(s, q).await
    }
    async fn advance_status(
        &self,
        m: &Message,
        st: MessageStatus,
    ) -> Result<Option<Message>, chat_core::ports::StoreError> {
        self.inner.advance_status(m, st).await
    }
    async fn mark_read(
        &self,
        s: &SessionId,
        up_to: u64,
    ) -> Result<Option<chat_core::model::Session>, chat_core::ports::StoreError> {
        self.inner.mark_read(s, up_to).await
    }
    async fn put_connection(&self, c: &Connection) -> Result<(), chat_core::ports::StoreError> {
        self.inner.put_connection(c).await
    }
    async fn get_connection(
        &self,
        id: &str,
    ) -> Result<Option<Connection>, chat_core::ports::StoreError> {
        self.inner.get_connection(id).await
    }
    async fn delete_connection(&self, c: &Connection) -> Result<(), chat_core::ports::StoreError> {
        self.inner.delete_connection(c).await
    }
    async fn list_connections(
        &self,
        s: &SessionId,
    ) -> Result<Vec<Connection>, chat_core::ports::StoreError> {
        self.inner.list_connections(s).await
    }
    async fn find_by_key(
        &self,
        s: &SessionId,
        key: &str,
    ) -> Result<Option<Message>, chat_core::ports::StoreError> {
        self.inner.find_by_key(s, key).await
    }
    async fn count_unread(
        &self,
        s: &SessionId,
        after: u64,
    ) -> Result<u64, chat_core::ports::StoreError> {
        self.inner.count_unread(s, after).await
    }

    async fn set_mode(
        &self,
        session: &chat_core::model::SessionId,
        expected: &chat_core::model::ModeState,
        next: &chat_core::model::ModeState,
        now: chat_core::model::Millis,
    ) -> Result<Option<chat_core::model::Session>, chat_core::ports::StoreError> {
        self.inner.set_mode(session, expected, next, now).await
    }

    async fn list_inbox(
        &self,
        q: &chat_core::model::InboxQuery,
    ) -> Result<Vec<chat_core::model::Session>, chat_core::ports::StoreError> {
        self.inner.list_inbox(q).await
    }

    async fn list_canned(
        &self,
    ) -> Result<Vec<chat_core::model::CannedReply>, chat_core::ports::StoreError> {
        self.inner.list_canned().await
    }

    async fn create_canned(
        &self,
        r: &chat_core::model::CannedReply,
    ) -> Result<bool, chat_core::ports::StoreError> {
        self.inner.create_canned(r).await
    }

    async fn update_canned(
        &self,
        r: &chat_core::model::CannedReply,
    ) -> Result<chat_core::ports::CannedWrite, chat_core::ports::StoreError> {
        self.inner.update_canned(r).await
    }

    async fn delete_canned(&self, id: &str) -> Result<bool, chat_core::ports::StoreError> {
        self.inner.delete_canned(id).await
    }

    async fn put_agent_connection(
        &self,
        c: &chat_core::model::AgentConnection,
    ) -> Result<(), chat_core::ports::StoreError> {
        self.inner.put_agent_connection(c).await
    }

    async fn get_agent_connection(
        &self,
        id: &str,
    ) -> Result<Option<chat_core::model::AgentConnection>, chat_core::ports::StoreError> {
        self.inner.get_agent_connection(id).await
    }

    async fn delete_agent_connection(&self, id: &str) -> Result<(), chat_core::ports::StoreError> {
        self.inner.delete_agent_connection(id).await
    }

    async fn list_agent_connections(
        &self,
    ) -> Result<Vec<chat_core::model::AgentConnection>, chat_core::ports::StoreError> {
        self.inner.list_agent_connections().await
    }

    async fn list_user_sessions(
        &self,
        user: &str,
        after: Option<(chat_core::model::Millis, SessionId)>,
        limit: u32,
        now: chat_core::model::Millis,
    ) -> Result<Vec<chat_core::model::Session>, chat_core::ports::StoreError> {
        self.inner.list_user_sessions(user, after, limit, now).await
    }

    async fn erase_session(&self, id: &SessionId) -> Result<bool, chat_core::ports::StoreError> {
        self.inner.erase_session(id).await
    }

    async fn change_message(
        &self,
        message: &Message,
        change: &chat_core::model::MessageChange,
        at: Millis,
    ) -> Result<Option<Message>, chat_core::ports::StoreError> {
        self.inner.change_message(message, change, at).await
    }

    async fn list_changed(
        &self,
        session: &SessionId,
        after: Millis,
        limit: u32,
    ) -> Result<chat_core::model::Page, chat_core::ports::StoreError> {
        self.inner.list_changed(session, after, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_push_a_sessions_messages_in_seq_order() {
    let store = Arc::new(SlowFirstAppend {
        inner: MemoryStore::new(),
        appended: tokio::sync::Notify::new(),
        first: std::sync::atomic::AtomicBool::new(false),
    });
    let push = Arc::new(RecordingPush::default());
    let svc = ChatService::new(
        Ports {
            store: store.clone(),
            queue: Arc::new(MemoryQueue::default()),
            push: push.clone(),
            clock: Arc::new(ManualClock::new(T0)),
            limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
        },
        chat_testkit::config(),
    );
    let created = svc.create_session("10.0.0.1", None).await.unwrap();
    let claims = svc
        .authorize(Some(&created.token), &created.session_id.to_string())
        .unwrap();
    svc.connect(
        Some(&created.session_id.to_string()),
        Some(&created.token),
        "c1",
    )
    .await
    .unwrap();
    store.first.store(true, Ordering::SeqCst);
    let send = |text: &'static str| {
        let svc = svc.clone();
        let sref = SessionRef::from(&claims);
        tokio::spawn(async move {
            let input = SendInput {
                content: text.into(),
                client_message_id: None,
                metadata: None,
                attachments: Vec::new(),
            };
            svc.send(sref, input, None).await.unwrap()
        })
    };
    let first = send("first");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = send("second");
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!((a.seq, b.seq), (1, 2));
    let seqs: Vec<u64> = push
        .frames_for("c1")
        .iter()
        .filter(|f| f["event"] == "message")
        .map(|f| f["message"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2], "pushed in seq order");
}
