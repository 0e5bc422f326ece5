//! Slow and greedy HTTP clients, against the real binary over raw TCP: half-open requests are
//! closed after the header timeout, one address cannot take more than its share of sockets,
//! all addresses together cannot take the server's last file descriptors, a body announced
//! over the limit is refused before it is sent, and a body that does not arrive gets 408.

mod common;

use common::{Server, WAIT};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Half a request line: the start of a request that never finishes.
const HALF: &[u8] = b"GET /health HT";

/// The test process opens more than a thousand sockets.
fn enough_files() {
    rlimit::increase_nofile_limit(8192).unwrap();
}

/// Everything the server sends until it closes (bounded); a reset counts as the end.
async fn read_to_close(mut c: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, c.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the server closed the connection in time");
    got
}

/// Status, head and JSON body of one raw HTTP response.
fn parse(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), body)
}

/// Reads one response from `c` (head, then `content-length` bytes of body), bounded.
async fn read_response(c: &mut TcpStream) -> (u16, String, Value) {
    let mut got = Vec::new();
    let complete = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        body.len() >= len
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !complete(&got) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, c.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("readable");
        assert!(
            n > 0,
            "closed before a full response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    parse(&got)
}

#[track_caller]
fn assert_error(what: &str, (status, _, body): &(u16, String, Value), want: &str) {
    let code = body["error"]["code"].as_str().unwrap_or("<no code>");
    assert_eq!(format!("{status} {code}"), want, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_requests_from_one_address_neither_starve_others_nor_stay_open() {
    enough_files();
    let dir = tempfile::tempdir().unwrap();
    // 1,024 descriptors: the limit under which 1,100 half-open requests once left /health
    // unanswered for everyone.
    let env = [("CHAT_HEADER_TIMEOUT_MS", "2000")];
    let server = Server::start_limited(dir.path(), &env, Some(1024)).await;
    let mut held = Vec::new();
    for _ in 0..1100 {
        let mut c = server.tcp_from("127.0.0.2").await;
        // A refused connection may be closed already.
        let _ = c.write_all(HALF).await;
        held.push(c);
    }

    // Another client is answered meanwhile.
    let health = Server::http_from("127.0.0.3")
        .get(format!("{}/health", server.url))
        .send()
        .await
        .expect("GET /health is answered while 1,100 requests hang");
    assert_eq!(health.status(), 200);

    // The address's first 256 sockets were let in and are closed, unanswered, once the
    // header timeout passes; the others were turned away at once with a 429.
    let ends = futures_util::future::join_all(held.into_iter().map(read_to_close)).await;
    let silent = ends.iter().filter(|e| e.is_empty()).count();
    let refused: Vec<_> = ends.iter().filter(|e| !e.is_empty()).collect();
    assert!(silent >= 256, "{silent} closed by the header timeout");
    assert_eq!(silent + refused.len(), 1100);
    assert!(refused.len() >= 500, "{} refused", refused.len());
    for raw in refused {
        let answer = parse(raw);
        assert_error(
            "over the address's cap",
            &answer,
            "429 too_many_connections",
        );
        assert!(answer.1.contains("\r\nretry-after: "), "{}", answer.1);
    }
    assert!(
        server.log().contains("per-address connection cap reached"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_keeps_descriptors_free_when_many_addresses_hang() {
    enough_files();
    let dir = tempfile::tempdir().unwrap();
    let env = [("CHAT_HEADER_TIMEOUT_MS", "2000")];
    let server = Server::start_limited(dir.path(), &env, Some(1024)).await;
    // 100 from each of 11 addresses: under each address's cap, over the total of 768.
    let mut held = Vec::new();
    for i in 0..1100 {
        let mut c = server.tcp_from(&format!("127.0.1.{}", 1 + i / 100)).await;
        let _ = c.write_all(HALF).await;
        held.push(c);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while !server
        .log()
        .contains("connection cap reached: new connections wait")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cap never reached:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fds = server.open_fds();
    assert!(
        fds < 1000,
        "the server holds {fds} of its 1,024 descriptors"
    );

    // Others wait in the backlog, not in vain: they are served as the hanging ones time out.
    let health = Server::http_from("127.0.0.3")
        .get(format!("{}/health", server.url))
        .send()
        .await
        .expect("GET /health is answered once slots free up");
    assert_eq!(health.status(), 200);
    let ends = futures_util::future::join_all(held.into_iter().map(read_to_close)).await;
    assert!(
        ends.iter().all(|e| e.is_empty()),
        "every hanging request is closed, unanswered"
    );
    let log = server.log();
    assert!(
        !log.contains("accept failed"),
        "never out of descriptors:\n{log}"
    );
}

#[tokio::test]
async fn the_default_header_timeout_is_seconds_not_none_and_not_instant() {
    let (server, _dir) = Server::start(&[]).await;
    let mut c = server.tcp_from("127.0.0.2").await;
    c.write_all(HALF).await.unwrap();
    let mut buf = [0u8; 64];
    // A slow client gets a few seconds to finish its headers...
    let early = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await;
    assert!(early.is_err(), "closed too soon: {early:?}");
    // ...but not forever.
    assert!(read_to_close(c).await.is_empty());
}

#[tokio::test]
async fn a_body_announced_over_the_limit_is_refused_before_it_is_sent() {
    let (server, _dir) = Server::start(&[]).await;
    let s = server.create_session().await;
    for path in [
        "/sessions".to_string(),
        format!("/sessions/{}/messages", s.id),
        "/webhook".into(),
    ] {
        let mut c = server.tcp_from("127.0.0.2").await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: 10000000\r\n\r\n",
            s.token
        );
        c.write_all(head.as_bytes()).await.unwrap();
        // Not a byte of the body is sent.
        let answer = read_response(&mut c).await;
        assert_error(&format!("POST {path}"), &answer, "413 too_large");
        assert!(answer.1.contains("\r\nconnection: close"), "{}", answer.1);
    }
    assert!(server.history(&s, "after=0").await.is_empty());
}

#[tokio::test]
async fn a_body_that_does_not_arrive_gets_408_and_the_connection_closes() {
    let (server, _dir) = Server::start(&[("CHAT_BODY_TIMEOUT_MS", "500")]).await;
    let s = server.create_session().await;
    let mut c = server.tcp_from("127.0.0.2").await;
    let head = format!(
        "POST /sessions/{}/messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"content\":",
        s.id, s.token
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let answer = read_response(&mut c).await;
    assert_error("a stalled body", &answer, "408 request_timeout");
    assert!(read_to_close(c).await.is_empty(), "closed after the 408");
    // A whole body within the timeout is fine.
    let (status, v) = server.send(&s, "in time", None).await;
    assert_eq!(status, 202, "{v}");
}

#[tokio::test]
async fn request_headers_over_64_kb_are_refused() {
    let (server, _dir) = Server::start(&[]).await;
    let mut c = server.tcp_from("127.0.0.2").await;
    let filler = "x".repeat(1000);
    let mut head = String::from("GET /health HTTP/1.1\r\nhost: x\r\n");
    for i in 0..70 {
        head.push_str(&format!("x-filler-{i}: {filler}\r\n"));
    }
    head.push_str("\r\n");
    // The server may stop reading (and close) before all of it is written.
    let _ = c.write_all(head.as_bytes()).await;
    let answer = String::from_utf8_lossy(&read_to_close(c).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Headers of a normal size are fine.
    let (status, _, _) = server
        .request("GET", "/health", None, None, &[("x-filler", &filler)])
        .await;
    assert_eq!(status, 200);
}
