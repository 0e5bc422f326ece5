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
        expires_at: expires,
        name: None,
        open_only: false,
    };
    store.append_message(m).await.unwrap();
    let conn = Connection {
        id: "conn-1".into(),
        session_id: id,
        connected_at: 3,
        expires_at: expires,
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
        assert_eq!(
            item["ttl"],
            AttributeValue::N("1900000000".into()),
            "{item:#?}"
        );
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
