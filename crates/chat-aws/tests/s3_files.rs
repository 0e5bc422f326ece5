//! Attachments on S3, over real HTTP against the emulator: the presigned PUT the browser
//! uses, `HeadObject` confirming what arrived, the pending tag and its removal, the presigned
//! GET, and an upload of another size that never becomes usable.

use chat_testkit::aws::emulator as common;

use chat_aws::s3::{PENDING_TAG, S3Files, object_key};
use chat_core::attachments::{Attachment, Files};
use chat_core::model::{AttachmentId, SessionId};

async fn bucket() -> (aws_sdk_s3::Client, String) {
    let sdk = common::sdk().await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    let name = format!("files-{}", ulid::Ulid::new().to_string().to_lowercase());
    client.create_bucket().bucket(&name).send().await.unwrap();
    (client, name)
}

fn record(size: u64, content_type: &str) -> Attachment {
    let now = chat_core::ports::Clock::now_ms(&chat_core::ports::SystemClock);
    Attachment {
        id: AttachmentId::new(),
        session_id: SessionId::new(),
        name: "Résumé.pdf".into(),
        content_type: content_type.into(),
        size,
        created_at: now,
        expires_at: now + 3_600_000,
        message_id: None,
    }
}

async fn put(
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    body: Vec<u8>,
) -> u16 {
    let mut req = reqwest::Client::new().put(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.body(body).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_upload_is_confirmed_kept_and_downloaded() {
    let (client, name) = bucket().await;
    let files = S3Files::new(client.clone(), &name);
    let a = record(1024 * 1024, "application/pdf");
    let target = files
        .upload_target(&a, a.created_at + 900_000)
        .await
        .unwrap();
    println!(
        "upload URL: {}\nupload headers: {:?}",
        target.url, target.headers
    );
    assert_eq!(target.headers["Content-Type"], "application/pdf");
    assert_eq!(target.headers["x-amz-tagging"], PENDING_TAG);
    assert!(
        !target
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-length"))
    );
    for signed in ["content-length", "content-type", "x-amz-tagging"] {
        assert!(
            target.url.contains(signed),
            "{signed} must be a signed header: {}",
            target.url
        );
    }
    assert_eq!(
        files.stored(&a).await.unwrap(),
        None,
        "nothing before the upload"
    );
    let bytes: Vec<u8> = (0..a.size).map(|i| (i % 251) as u8).collect();
    assert_eq!(put(&target.url, &target.headers, bytes.clone()).await, 200);
    let stored = files.stored(&a).await.unwrap().expect("uploaded");
    assert_eq!(
        (stored.size, stored.content_type.as_str()),
        (a.size, "application/pdf")
    );

    let key = object_key(&a.session_id, &a.id);
    let tags = client
        .get_object_tagging()
        .bucket(&name)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 1, "pending until a message takes it");
    files.keep(&a).await.unwrap();
    let tags = client
        .get_object_tagging()
        .bucket(&name)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_set().is_empty(),
        "kept: the lifecycle rule leaves it alone"
    );

    let url = files
        .download_url(&a.session_id, &a.meta(), a.created_at + 3_600_000)
        .await
        .unwrap();
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"R_sum_.pdf\"")
    );
    assert!(res.bytes().await.unwrap().as_ref() == bytes.as_slice());

    files.delete(&a.session_id, &a.id).await.unwrap();
    assert_eq!(files.stored(&a).await.unwrap(), None, "deleted");
    files.delete(&a.session_id, &a.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_of_another_size_is_refused_or_never_usable() {
    let (client, name) = bucket().await;
    let files = S3Files::new(client, &name);
    let a = record(1000, "text/plain");
    let target = files
        .upload_target(&a, a.created_at + 900_000)
        .await
        .unwrap();
    let status = put(&target.url, &target.headers, vec![b'x'; 999]).await;
    let stored = files.stored(&a).await.unwrap();
    println!("a 999-byte PUT of a 1000-byte declaration: {status}, stored {stored:?}");
    // Real S3 refuses it (content-length is signed: 403); should one arrive anyway, its
    // HeadObject shows the other size, and the service refuses every message naming it.
    assert!(
        status >= 400 || stored.as_ref().is_some_and(|s| s.size != a.size),
        "status {status}, stored {stored:?}"
    );
}
