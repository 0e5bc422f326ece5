//! The DynamoDB store passes the same conformance suite as the in-memory and SQLite stores,
//! over the real wire protocol against the emulator, one fresh table per check.

use chat_testkit::aws::emulator as common;

use aws_sdk_dynamodb::types::AttributeValue;
use chat_aws::dynamo::DynamoStore;
use chat_core::model::{
    Connection, MessageId, MessageStatus, MessageType, NewMessage, Role, Session, SessionId,
};
use chat_core::ports::Store;
use chat_core::rate::Limiter;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_store_conforms() {
    let sdk = common::sdk().await;
    chat_testkit::conformance::run_all(|| {
        let sdk = sdk.clone();
        async move {
            let table = common::create_table(&sdk).await;
            DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
        }
    })
    .await;
}

/// People in the loop on the table: the claim as a conditional write, the inbox from its
/// sparse indexes, canned replies and agent connections under their own partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_store_conforms_for_agents() {
    let sdk = common::sdk().await;
    chat_testkit::conformance::run_agents(|| {
        let sdk = sdk.clone();
        async move {
            let table = common::create_table(&sdk).await;
            DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_limiter_conforms() {
    let sdk = common::sdk().await;
    chat_testkit::conformance::run_limiter(|| {
        let sdk = sdk.clone();
        async move {
            let table = common::create_table(&sdk).await;
            DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
        }
    })
    .await;
}

#[tokio::test]
async fn every_item_carries_its_ttl() {
    let sdk = common::sdk().await;
    let table = common::create_table(&sdk).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoStore::new(client.clone(), table.clone());
    let id = SessionId::new();
    let expires = 1_900_000_000_000;
    store
        .create_session(&Session {
            id,
            user_id: None,
            created_at: 1,
            expires_at: expires,
            last_seq: 0,
            read_up_to: 0,
            metadata: None,
            mode: Default::default(),
            updated_at: 1,
            title: None,
        })
        .await
        .unwrap();
    let m = NewMessage {
        id: MessageId::new(),
        session_id: id,
        role: Role::User,
        kind: MessageType::Text,
        content: "x".into(),
        data: None,
        metadata: None,
        status: MessageStatus::Received,
        created_at: 2,
        reply_to: None,
        client_message_id: Some("c".into()),
        attachments: Vec::new(),
        idempotency_key: Some("client#c".into()),
        name: None,
        agent_id: None,
        open_only: false,
        limit: None,
    };
    store.append_message(m).await.unwrap();
    let conn = Connection {
        id: "conn-1".into(),
        session_id: id,
        connected_at: 3,
        expires_at: expires,
        merged: false,
    };
    store.put_connection(&conn).await.unwrap();
    let rate = chat_core::rate::Rate::per(1, 60_000);
    assert_eq!(
        store.take("rate#x", 1_800_000_000_000, rate).await.unwrap(),
        None
    );

    let items = client
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("SESSION#{id}")))
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    // session, message, idempotency key, connection
    assert_eq!(items.len(), 4, "{items:#?}");
    for item in &items {
        // The connection expires with its token; the rest a week (the headroom) after the
        // session's retention, which the append at t = 2 moved by 1 ms.
        let want = match item["sk"].as_s().unwrap().starts_with("CONN#") {
            true => "1900000000",
            false => "1900604800",
        };
        assert_eq!(item["ttl"], AttributeValue::N(want.into()), "{item:#?}");
    }
    for (pk, sk, ttl) in [
        ("CONN#conn-1", "CONN", "1900000000"),
        // A bucket is full again one interval after its last take: it may go then.
        ("RATE#rate#x", "RATE", "1800000061"),
    ] {
        let item = client
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap_or_else(|| panic!("{pk} stored"));
        assert_eq!(item["ttl"], AttributeValue::N(ttl.into()));
    }
}

/// Everything of a user erased through the service on the table: a Scan of the whole table
/// afterwards (a test may scan; the code never does) finds nothing of the user, while another
/// user's session stays. Connections' lookup items go too.
#[tokio::test]
async fn erasing_a_user_leaves_nothing_in_the_table() {
    use chat_core::service::{ChatService, Ports};
    use std::sync::Arc;
    let sdk = common::sdk().await;
    let table = common::create_table(&sdk).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let push = Arc::new(chat_testkit::memory::RecordingPush::default());
    let svc = ChatService::new(
        Ports {
            store: Arc::new(DynamoStore::new(client.clone(), table.clone())),
            queue: Arc::new(chat_testkit::memory::MemoryQueue::default()),
            push: push.clone(),
            clock: Arc::new(chat_core::ports::SystemClock),
            limiter: Arc::new(chat_core::rate::MemoryLimiter::new()),
        },
        chat_testkit::config(),
    );
    let jwt = |sub: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"sub": sub, "exp": 4_000_000_000_i64}),
            &jsonwebtoken::EncodingKey::from_secret(b"test-app-jwt-secret"),
        )
        .unwrap()
    };
    let mut ids = Vec::new();
    for (i, sub) in ["gone-user", "gone-user", "kept-user"]
        .into_iter()
        .enumerate()
    {
        let c = svc
            .create_session(&format!("192.0.2.{i}"), Some(&jwt(sub)))
            .await
            .unwrap();
        let claims = svc
            .authorize(Some(&c.token), &c.session_id.to_string())
            .unwrap();
        let input = chat_core::service::SendInput {
            content: format!("words of {sub}"),
            client_message_id: Some(format!("k-{i}")),
            metadata: None,
            attachments: Vec::new(),
        };
        svc.send((&claims).into(), input, None).await.unwrap();
        svc.connect(
            Some(&c.session_id.to_string()),
            Some(&c.token),
            &format!("conn-{i}"),
        )
        .await
        .unwrap();
        ids.push(c.session_id.to_string());
    }
    let listed = svc.conversations("gone-user", 20, None).await.unwrap();
    assert_eq!(listed.sessions.len(), 2, "the byUser index lists both");
    assert_eq!(svc.erase_user("gone-user").await.unwrap(), 2);
    assert_eq!(
        push.closed(),
        ["conn-1", "conn-0"],
        "newest first, each closed"
    );

    let items = client
        .scan()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let text = format!("{items:?}");
    for needle in [
        "gone-user",
        &ids[0],
        &ids[1],
        "conn-0",
        "conn-1",
        "words of gone",
    ] {
        assert!(
            !text.contains(needle),
            "{needle} is still in the table: {items:#?}"
        );
    }
    for needle in ["kept-user", &ids[2], "conn-2", "words of kept-user"] {
        assert!(
            text.contains(needle),
            "{needle}: another user's data went too"
        );
    }
}

/// Activity past the headroom of the items' `ttl` raises it on every item of the session
/// (its connections keep theirs), so no message expires before its session.
#[tokio::test]
async fn activity_past_the_headroom_moves_every_items_ttl() {
    let sdk = common::sdk().await;
    let table = common::create_table(&sdk).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoStore::new(client.clone(), table.clone());
    let id = SessionId::new();
    let day = 86_400_000;
    store
        .create_session(&Session {
            id,
            user_id: None,
            created_at: 1_000,
            expires_at: 1_000 + 30 * day,
            last_seq: 0,
            read_up_to: 0,
            metadata: None,
            mode: Default::default(),
            updated_at: 1_000,
            title: None,
        })
        .await
        .unwrap();
    let message = |at: i64, key: &str| NewMessage {
        id: MessageId::new(),
        session_id: id,
        role: Role::User,
        kind: MessageType::Text,
        content: "x".into(),
        data: None,
        metadata: None,
        status: MessageStatus::Received,
        created_at: at,
        reply_to: None,
        client_message_id: Some(key.into()),
        idempotency_key: Some(format!("client#{key}")),
        name: None,
        agent_id: None,
        open_only: false,
        attachments: Vec::new(),
        limit: None,
    };
    store.append_message(message(2_000, "a")).await.unwrap();
    let ttls = || async {
        client
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("SESSION#{id}")))
            .send()
            .await
            .unwrap()
            .items
            .unwrap()
            .into_iter()
            .map(|i| i["ttl"].as_n().unwrap().parse::<i64>().unwrap())
            .collect::<Vec<_>>()
    };
    // Set at creation; the 1 s of activity stays within it.
    let first = (1_000 + 30 * day + 7 * day) / 1000;
    assert_eq!(ttls().await, vec![first; 3], "within the headroom");
    // Ten days of activity later: past the headroom, every item moves together.
    let later = 2_000 + 10 * day;
    store.append_message(message(later, "b")).await.unwrap();
    let s = store.get_session(&id, later).await.unwrap().unwrap();
    assert_eq!(s.expires_at, 1_000 + 30 * day + later - 1_000);
    let moved = (s.expires_at + 7 * day) / 1000;
    assert_eq!(
        ttls().await,
        vec![moved; 5],
        "session, two messages, two keys"
    );
}

/// Attachment records on the table: all-or-none claims as one conditional transaction; the
/// item TTL (not a sweep) removes stale ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_attachment_records_conform() {
    let sdk = common::sdk().await;
    chat_testkit::conformance::run_attachments(
        || {
            let sdk = sdk.clone();
            async move {
                let table = common::create_table(&sdk).await;
                DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
            }
        },
        false,
    )
    .await;
}
