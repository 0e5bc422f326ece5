//! `HttpJwks` against a small HTTP server the test runs on 127.0.0.1: what it returns, and
//! that non-2xx answers, redirects, oversized documents and unreachable URLs are errors
//! (which the core turns into 503), never a panic.

use chat_core::ports::JwksSource;
use chat_n8n::jwks::{HttpJwks, MAX_BYTES};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DOC: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"k1"}]}"#;
/// The longest any wait here may take.
const WAIT: Duration = Duration::from_secs(20);

/// Answers every request by path; records each request's head.
async fn serve(answer: fn(&str) -> Vec<u8>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(head);
                let _ = socket.write_all(&answer(&path)).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (base, seen)
}

fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn answers(path: &str) -> Vec<u8> {
    match path {
        "/jwks.json" => response(
            "200 OK",
            "content-type: application/json\r\n",
            DOC.as_bytes(),
        ),
        "/down" => response("503 Service Unavailable", "", b"try later"),
        "/moved" => response("302 Found", "location: /jwks.json\r\n", b""),
        "/huge" => response("200 OK", "", &vec![b' '; MAX_BYTES + 1]),
        "/huge-chunked" => {
            // No content-length: the limit has to hold while reading.
            let mut r =
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                    .to_vec();
            for _ in 0..(MAX_BYTES / 1000 + 2) {
                r.extend_from_slice(b"3e8\r\n");
                r.extend_from_slice(&[b' '; 1000]);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        }
        _ => response("404 Not Found", "", b""),
    }
}

async fn fetch(url: String) -> Result<Vec<u8>, String> {
    tokio::time::timeout(WAIT, HttpJwks::new(url).fetch())
        .await
        .expect("a fetch ends in time")
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn fetches_the_document_as_served() {
    let (base, seen) = serve(answers).await;
    assert_eq!(
        fetch(format!("{base}/jwks.json")).await.unwrap(),
        DOC.as_bytes()
    );
    let head = seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /jwks.json "), "{head}");
    assert!(head.contains("accept: application/json"), "{head}");
}

#[tokio::test]
async fn non_2xx_redirects_and_oversized_documents_are_errors() {
    let (base, seen) = serve(answers).await;
    let e = fetch(format!("{base}/down")).await.unwrap_err();
    assert!(e.contains("503"), "{e}");
    let e = fetch(format!("{base}/moved")).await.unwrap_err();
    assert!(e.contains("302"), "{e}");
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.starts_with("GET /jwks.json")),
        "the redirect is not followed"
    );
    for path in ["/huge", "/huge-chunked"] {
        let e = fetch(format!("{base}{path}")).await.unwrap_err();
        assert!(e.contains("over"), "{path}: {e}");
    }
}

#[tokio::test]
async fn an_unreachable_url_is_an_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = fetch(format!("http://127.0.0.1:{port}/jwks.json"))
        .await
        .unwrap_err();
    assert!(e.contains("could not connect"), "{e}");
}
