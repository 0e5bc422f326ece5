//! n8n's answer in the response to a dispatch, on the in-memory ports: a whole answer stored
//! as a callback would be (and idempotent with one that follows), acknowledgements keeping
//! the callback path, bodies of no usable shape failing the message, streams pushed as
//! coalesced deltas then stored once, and streams that break keeping what came.

mod service_support;
use service_support::*;

use futures_util::StreamExt;

/// A body whose chunks arrive `gap_ms` apart on the harness clock, then maybe an error. Like
/// a real HTTP body it must not be polled again once it has ended (it panics).
fn timed(h: &H, gap_ms: Millis, chunks: &[&str], end: Option<&str>) -> AgentBody {
    let clock = h.clock.clone();
    let mut items: std::collections::VecDeque<Result<Vec<u8>, AgentError>> =
        chunks.iter().map(|c| Ok(c.as_bytes().to_vec())).collect();
    if let Some(e) = end {
        items.push_back(Err(AgentError(e.to_string())));
    }
    Box::pin(futures_util::stream::unfold(items, move |mut items| {
        let clock = clock.clone();
        async move {
            clock.advance(gap_ms);
            let item = items.pop_front()?;
            Some((item, items))
        }
    }))
}

fn item(text: &str) -> String {
    format!(
        "{}\n",
        json!({"type":"item","content":text,"metadata":{"nodeId":"agent","nodeName":"AI Agent"}})
    )
}

const BEGIN: &str = "{\"type\":\"begin\",\"metadata\":{\"nodeId\":\"agent\"}}\n";
const END: &str = "{\"type\":\"end\",\"metadata\":{\"nodeId\":\"agent\"}}\n";

/// A session with connection `c1`, one user message and its job; the pushes so far cleared.
async fn asked(h: &H, text: &str) -> (S, Message, DispatchJob) {
    let s = h.session().await;
    h.connect(&s, "c1").await;
    let (m, job) = h.user_message(&s, text).await;
    h.push.take();
    (s, m, job)
}

fn replies(all: &[Message]) -> Vec<&Message> {
    all.iter().filter(|m| m.role == Role::Assistant).collect()
}

#[tokio::test]
async fn the_dispatch_carries_chat_trigger_fields_and_session_metadata() {
    let h = H::new();
    let c = h
        .svc
        .create_session_with(
            "10.0.0.1",
            None,
            json!({"page":"/pricing","locale":"de"})
                .as_object()
                .cloned(),
        )
        .await
        .unwrap();
    let s = S {
        id: c.session_id,
        token: c.token,
    };
    let m = h
        .svc
        .send(
            h.sref(&s),
            SendInput {
                content: "How much?".into(),
                client_message_id: None,
                metadata: json!({"button":"buy"}).as_object().cloned(),
                attachments: Vec::new(),
            },
            None,
        )
        .await
        .unwrap();
    let job = h.queue.drain()[0];
    h.dispatcher.dispatch(job, 1).await.unwrap();
    let sent: Value = serde_json::from_slice(&h.agent.requests()[0].body).unwrap();
    assert_eq!(sent["action"], "sendMessage");
    assert_eq!(sent["chatInput"], "How much?");
    assert_eq!(sent["content"], "How much?");
    assert_eq!(sent["messageId"], m.id.to_string());
    assert_eq!(sent["metadata"], json!({"button":"buy"}));
    assert_eq!(
        sent["sessionMetadata"],
        json!({"page":"/pricing","locale":"de"})
    );
    // And GET /sessions/{id} returns it.
    let r = api::get_session(&h.svc, &s.path(), Some(&s.bearer())).await;
    assert_eq!(json_of(&r)["session"]["metadata"]["page"], "/pricing");
}

#[tokio::test]
async fn session_metadata_over_4kb_is_refused_and_nothing_is_stored() {
    let h = H::new();
    let big = json!({"metadata": {"blob": "x".repeat(5000)}}).to_string();
    let r = api::create_session(&h.svc, "10.0.0.1", None, big.as_bytes()).await;
    assert_eq!((r.status, code_of(&r).as_str()), (400, "invalid_input"));
    assert!(r.body.contains("metadata"), "{}", r.body);
    let r = api::create_session(&h.svc, "10.0.0.1", None, br#"{"metadata":[1]}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api::create_session(&h.svc, "10.0.0.1", None, br#"{"metadata":{"plan":"pro"}}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn a_welcome_message_opens_every_new_session() {
    let h = H::with_config(Config {
        welcome_message: Some("Hi! Ask me anything.".into()),
        ..chat_testkit::config()
    });
    let s = h.session().await;
    let all = h.all_messages(&s.id).await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        (
            all[0].seq,
            all[0].role,
            all[0].content.as_str(),
            all[0].status
        ),
        (
            1,
            Role::Assistant,
            "Hi! Ask me anything.",
            MessageStatus::Delivered
        )
    );
}

#[tokio::test]
async fn a_whole_answer_is_the_reply_and_a_later_callback_repeats_it() {
    let h = H::new();
    let (s, m, job) = asked(&h, "hi").await;
    h.agent
        .answer_with(whole_body(r#"[{"output":"Hello from n8n"}]"#));
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let all = h.all_messages(&s.id).await;
    let reply = replies(&all)[0].clone();
    assert_eq!(reply.content, "Hello from n8n");
    assert_eq!(reply.reply_to, Some(m.id));
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    assert_eq!(
        h.events("c1"),
        ["status", "typing", "message", "status"],
        "dispatched, typing, the reply, answered"
    );
    h.push.take();
    // The same reply sent again by callback, with and without an eventId: nothing new.
    for body in [
        json!({"sessionId": s.id, "replyTo": m.id, "content": "Hello from n8n", "eventId": "e-1"}),
        json!({"sessionId": s.id, "replyTo": m.id, "content": "Hello from n8n"}),
    ] {
        let r = h.webhook(body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(json_of(&r)["messageId"], reply.id.to_string());
    }
    assert_eq!(
        h.all_messages(&s.id).await.len(),
        2,
        "one user message, one reply"
    );
    assert!(h.frames("c1").is_empty(), "repeats push nothing");
}

#[tokio::test]
async fn an_answer_in_our_inbound_shape_keeps_its_type_and_data() {
    let h = H::new();
    let (s, _, job) = asked(&h, "book it").await;
    h.agent.answer_with(whole_body(
        r#"{"content":"Book a table for two?","type":"confirmation","data":{"suggestions":["Yes","No"]}}"#,
    ));
    h.dispatcher.dispatch(job, 1).await.unwrap();
    let all = h.all_messages(&s.id).await;
    let reply = replies(&all)[0];
    assert_eq!(reply.kind, MessageType::Confirmation);
    assert_eq!(
        reply.data.as_ref().unwrap()["suggestions"],
        json!(["Yes", "No"])
    );
}

/// A workflow that calls back (with an eventId) and then also answers in its response.
struct CallsBackThenAnswers {
    svc: ChatService,
}

#[async_trait]
impl Agent for CallsBackThenAnswers {
    async fn deliver(&self, request: SignedRequest) -> Result<AgentBody, AgentError> {
        let v: Value = serde_json::from_slice(&request.body).unwrap();
        let body = serde_json::to_vec(&json!({
            "sessionId": v["sessionId"], "replyTo": v["messageId"],
            "content": "by callback", "eventId": "evt-1"
        }))
        .unwrap();
        let ts = (self.svc.now() / 1000).to_string();
        let sig = signature::sign(WEBHOOK_SECRET, &ts, &body);
        self.svc
            .receive_reply("192.0.2.1", Some(&ts), Some(&sig), &body)
            .await
            .map_err(|e| AgentError(e.to_string()))?;
        Ok(whole_body(r#"{"output":"by response"}"#))
    }
}

#[tokio::test]
async fn a_callback_during_the_call_wins_and_the_response_answer_is_dropped() {
    let h = H::with_agent(chat_testkit::config(), |svc| {
        Arc::new(CallsBackThenAnswers { svc: svc.clone() })
    });
    let (s, m, job) = asked(&h, "hi").await;
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let all = h.all_messages(&s.id).await;
    assert_eq!(replies(&all).len(), 1);
    assert_eq!(replies(&all)[0].content, "by callback");
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
}

#[tokio::test]
async fn acknowledgements_keep_the_callback_path() {
    for body in [
        "",
        "{}",
        r#"{"accepted":true}"#,
        r#"{"message":"Workflow was started"}"#,
    ] {
        let h = H::new();
        let (s, m, job) = asked(&h, "hi").await;
        h.agent.answer_with(whole_body(body));
        assert_eq!(
            h.dispatcher.dispatch(job, 1).await.unwrap(),
            DispatchOutcome::Delivered,
            "{body:?}"
        );
        assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Dispatched);
        assert_eq!(
            h.all_messages(&s.id).await.len(),
            1,
            "{body:?}: nothing stored"
        );
    }
}

/// Each bad body: the message `failed` with a system notice naming the reason, no reply.
async fn fails_with(body: AgentBody, h: &H, s: &S, m: &Message, job: DispatchJob, reason: &str) {
    h.agent.answer_with(body);
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::DeadLettered,
        "{reason}"
    );
    assert_eq!(h.message(s, &m.id).await.status, MessageStatus::Failed);
    let all = h.all_messages(&s.id).await;
    let notice = all.iter().find(|x| x.role == Role::System).expect("notice");
    assert_eq!(notice.kind, MessageType::Error);
    assert_eq!(notice.data.as_ref().unwrap()["reason"], reason);
}

#[tokio::test]
async fn bodies_of_no_usable_shape_fail_the_message_clearly() {
    for (body, reason) in [
        ("Thanks!".to_string(), "invalid_answer"),
        (r#"{"answer":"hi"}"#.into(), "invalid_answer"),
        ("[]".into(), "invalid_answer"),
        (r#"{"output":""}"#.into(), "invalid_answer"),
        (r#"{"output":"x","type":"dance"}"#.into(), "invalid_answer"),
        (
            format!(r#"{{"output":"{}"}}"#, "x".repeat(16_001)),
            "invalid_answer",
        ),
    ] {
        let h = H::new();
        let (s, m, job) = asked(&h, "hi").await;
        fails_with(whole_body(body.clone()), &h, &s, &m, job, reason).await;
        let all = h.all_messages(&s.id).await;
        assert!(replies(&all).is_empty(), "{body:.40}: no reply stored");
        assert_eq!(h.agent.requests().len(), 1, "not retried");
    }
}

#[tokio::test]
async fn a_10_mb_body_is_a_failure_read_no_further_than_the_bound() {
    let h = H::new();
    let (s, m, job) = asked(&h, "hi").await;
    let read = Arc::new(AtomicU32::new(0));
    let counter = read.clone();
    // 10 MB in 64 KB pieces, counting how many are pulled.
    let body: AgentBody = Box::pin(futures_util::stream::iter(0..160).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut c = vec![b'x'; 64 * 1024];
        if i == 0 {
            c[..12].copy_from_slice(br#"{"output":"x"#);
        }
        Ok(c)
    }));
    fails_with(body, &h, &s, &m, job, "answer_too_large").await;
    assert!(
        read.load(Ordering::SeqCst) <= 18,
        "read past 1 MB: {read:?}"
    );
}

#[tokio::test]
async fn a_stream_is_pushed_as_coalesced_deltas_then_stored_once() {
    let h = H::new();
    let (s, m, job) = asked(&h, "tell me").await;
    h.connect(&s, "c2").await;
    h.push.take();
    let words: Vec<String> = (0..40).map(|i| format!("w{i} ")).collect();
    let mut chunks = vec![BEGIN.to_string()];
    chunks.extend(words.iter().map(|w| item(w)));
    chunks.push(END.to_string());
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    // A token every 10 ms: 400 ms of writing.
    h.agent.answer_with(timed(&h, 10, &refs, None));
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let whole: String = words.concat();
    for c in ["c1", "c2"] {
        let frames = h.frames(c);
        let deltas: Vec<&Value> = frames.iter().filter(|f| f["event"] == "delta").collect();
        assert!(
            (2..=6).contains(&deltas.len()),
            "{c}: {} deltas for 40 tokens over 420 ms",
            deltas.len()
        );
        let text: String = deltas.iter().map(|d| d["text"].as_str().unwrap()).collect();
        assert!(
            whole.starts_with(&text) && !text.is_empty(),
            "{c}: in order"
        );
        for (i, d) in deltas.iter().enumerate() {
            assert_eq!(d["index"], i);
            assert_eq!(d["replyTo"], m.id.to_string());
        }
        let message = frames.iter().find(|f| f["event"] == "message").unwrap();
        assert_eq!(message["message"]["content"], whole);
        assert_eq!(
            message["message"]["id"], deltas[0]["messageId"],
            "{c}: same id"
        );
        assert!(
            frames.iter().position(|f| f["event"] == "message").unwrap()
                > frames.iter().rposition(|f| f["event"] == "delta").unwrap()
        );
    }
    let all = h.all_messages(&s.id).await;
    assert_eq!(replies(&all).len(), 1);
    assert_eq!(replies(&all)[0].content, whole);
    assert!(replies(&all)[0].data.is_none());
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
}

#[tokio::test]
async fn deltas_flush_on_idle_ticks_while_the_agent_pauses() {
    let h = H::new();
    let (_s, _m, job) = asked(&h, "tell me").await;
    let (a, b) = (item("first "), item("second"));
    // "first " at once, "second" 10 ms later, then 200 ms of idle ticks before the end.
    let chunks = [BEGIN, &a, &b, "", "", "", "", END];
    h.agent.answer_with(timed(&h, 40, &chunks, None));
    h.dispatcher.dispatch(job, 1).await.unwrap();
    let texts: Vec<String> = h
        .frames("c1")
        .iter()
        .filter(|f| f["event"] == "delta")
        .map(|f| f["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["first ", "second"], "the pause pushed the rest");
}

#[tokio::test]
async fn broken_streams_keep_what_came_marked_incomplete_and_fail_the_message() {
    let (a, b) = (item("Half an "), item("answer"));
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            vec![
                BEGIN,
                &a,
                &b,
                "{\"type\":\"error\",\"content\":\"model overloaded\"}\n",
            ],
            None,
            "stream_error",
        ),
        (
            vec![BEGIN, &a, &b, "this is not json\n"],
            None,
            "stream_invalid",
        ),
        (
            vec![BEGIN, &a, &b],
            Some("timed out: the answer did not end within 90000 ms"),
            "stream_timeout",
        ),
        (
            vec![BEGIN, &a, &b],
            Some("the answer broke off: connection reset"),
            "stream_broken",
        ),
        (vec![BEGIN, &a, &b], None, "stream_broken"),
    ];
    for (chunks, end, reason) in cases {
        let h = H::new();
        let (s, m, job) = asked(&h, "hi").await;
        fails_with(timed(&h, 10, &chunks, end), &h, &s, &m, job, reason).await;
        let all = h.all_messages(&s.id).await;
        let partial = replies(&all);
        assert_eq!(partial.len(), 1, "{reason}");
        assert_eq!(partial[0].content, "Half an answer", "{reason}");
        assert_eq!(partial[0].data.as_ref().unwrap()["incomplete"], true);
        assert_eq!(partial[0].reply_to, Some(m.id));
        let events = h.events("c1");
        assert!(
            events.contains(&"delta".to_string()),
            "{reason}: {events:?}"
        );
        assert_eq!(
            events.iter().filter(|e| *e == "message").count(),
            2,
            "{reason}: the partial reply and the notice"
        );
        // A full answer by callback may still follow, and is stored.
        let r = h
            .webhook(json!({"sessionId": s.id, "replyTo": m.id, "content": "Full answer"}))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Answered);
    }
}

#[tokio::test]
async fn a_stream_that_breaks_before_any_text_stores_no_reply() {
    for (chunks, end, reason) in [
        (
            vec![
                "{\"type\":\"error\",\"content\":\"Expected to find the prompt in an input field called 'chatInput'\"}\n",
            ],
            None,
            "stream_error",
        ),
        (vec![BEGIN, END], None, "empty_answer"),
        (
            vec![BEGIN],
            Some("timed out: the answer did not end within 5 ms"),
            "stream_timeout",
        ),
    ] {
        let h = H::new();
        let (s, m, job) = asked(&h, "hi").await;
        fails_with(timed(&h, 1, &chunks, end), &h, &s, &m, job, reason).await;
        let all = h.all_messages(&s.id).await;
        assert!(replies(&all).is_empty(), "{reason}");
    }
}

#[tokio::test]
async fn a_whole_answer_in_pieces_is_read_to_its_end_once() {
    let h = H::new();
    let (s, _, job) = asked(&h, "hi").await;
    h.agent
        .answer_with(timed(&h, 5, &["{\n  \"output\": \"Hel", "lo\"\n}\n"], None));
    assert_eq!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Delivered
    );
    let all = h.all_messages(&s.id).await;
    assert_eq!(replies(&all)[0].content, "Hello");
}

#[tokio::test]
async fn a_whole_body_that_breaks_off_fails_the_message() {
    let h = H::new();
    let (s, m, job) = asked(&h, "hi").await;
    let body = timed(
        &h,
        1,
        &[r#"{"output":"Hel"#],
        Some("the answer broke off: reset"),
    );
    fails_with(body, &h, &s, &m, job, "stream_broken").await;
}

#[tokio::test]
async fn a_failed_delivery_is_still_retried_as_before() {
    let h = H::new();
    let (s, m, job) = asked(&h, "hi").await;
    h.agent.set_failing(true);
    assert!(matches!(
        h.dispatcher.dispatch(job, 1).await.unwrap(),
        DispatchOutcome::Retry(_)
    ));
    assert_eq!(h.message(&s, &m.id).await.status, MessageStatus::Received);
}
