//! Pushes reach every connection in `seq` order, even when many senders of one session race:
//! a client that sees seq N and then N+2 must be able to trust that it missed N+1.

mod common;

use common::{Server, is_event};
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_of_one_session_are_pushed_in_seq_order() {
    // The per-session message limit is not what this is about: 400 sends at once.
    let (server, _dir) = Server::start(&[("CHAT_RATE_MESSAGES_PER_MINUTE", "100000")]).await;
    let s = server.create_session().await;
    let mut ws = server.connect(&s).await;
    let (server, s) = (&server, &s);
    let sends = (0..400).map(|i| async move {
        server
            .send(s, &format!("m{i}"), Some(&format!("c{i}")))
            .await
    });
    // 128 in flight at once: half the default cap of connections from one address.
    let answers: Vec<_> = futures_util::stream::iter(sends)
        .buffer_unordered(128)
        .collect()
        .await;
    for (status, body) in answers {
        assert_eq!(status, 202, "{body}");
    }
    let mut seqs = Vec::new();
    while seqs.len() < 400 {
        let f = ws
            .until("a user message", |v| {
                is_event(v, "message") && v["message"]["role"] == "user"
            })
            .await;
        seqs.push(f["message"]["seq"].as_u64().unwrap());
    }
    let out_of_order = seqs.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(out_of_order, 0, "seqs as pushed: {seqs:?}");
}
