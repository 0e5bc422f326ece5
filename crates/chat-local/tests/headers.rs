//! Security headers, against the real binary: `X-Content-Type-Options: nosniff` on every
//! response, and on the HTML pages a Content-Security-Policy that forbids framing and allows
//! exactly the pages' own inline scripts (by hash) besides this server's files.

mod common;

use base64::Engine;
use common::Server;
use sha2::{Digest, Sha256};

/// `(status, headers, body)` of `GET path`.
async fn get(
    server: &Server,
    method: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let res = server
        .http
        .request(method.parse().unwrap(), format!("{}{path}", server.url))
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.text().await.unwrap())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn every_response_is_nosniff_and_the_pages_carry_a_policy_that_forbids_framing() {
    let (server, _dir) = Server::start(&[]).await;
    #[rustfmt::skip]
    let responses = [
        ("GET", "/", 200), ("GET", "/embed.html", 200), ("GET", "/chat-widget.js", 200),
        ("GET", "/chat-client.js", 200), ("GET", "/chat-logic.js", 200), ("GET", "/chat-markdown.js", 200), ("GET", "/chat-client.d.ts", 200), ("GET", "/health", 200),
        ("GET", "/nope", 404), ("PUT", "/health", 405), ("GET", "/sessions/x", 401),
        ("GET", "/ws", 400), ("OPTIONS", "/sessions", 204),
    ];
    for (method, path, want) in responses {
        let (status, h, _) = get(&server, method, path).await;
        assert_eq!(status, want, "{method} {path}");
        assert_eq!(
            header(&h, "x-content-type-options"),
            Some("nosniff"),
            "{method} {path}"
        );
    }

    let ws_origin = server.url.replace("http://", "ws://");
    for page in ["/", "/embed.html"] {
        let (_, h, html) = get(&server, "GET", page).await;
        let csp = header(&h, "content-security-policy").expect("a policy");
        let directive = |name: &str| {
            csp.split(';')
                .map(str::trim)
                .find_map(|d| d.strip_prefix(name).map(str::trim))
                .unwrap_or_else(|| panic!("{page}: no {name} in {csp}"))
        };
        assert_eq!(directive("frame-ancestors"), "'none'", "{page}");
        assert_eq!(directive("object-src"), "'none'", "{page}");
        assert_eq!(header(&h, "x-frame-options"), Some("DENY"), "{page}");
        let connect = directive("connect-src");
        assert!(
            connect.starts_with("'self'") && connect.contains(&ws_origin),
            "{connect}"
        );
        // Each inline script of the page is allowed by its hash; nothing else inline is.
        let scripts = directive("script-src");
        assert!(
            !scripts.contains("unsafe-inline") && !scripts.contains("unsafe-eval"),
            "{scripts}"
        );
        let mut inline = 0;
        let uncommented: String = html
            .split("<!--")
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    part.split_once("-->").map_or("", |(_, after)| after)
                }
            })
            .collect();
        for chunk in uncommented.split("<script").skip(1) {
            let (tag, rest) = chunk.split_once('>').unwrap();
            if tag.contains("src=") {
                continue;
            }
            let body = rest.split("</script>").next().unwrap();
            let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
            assert!(
                scripts.contains(&format!("'sha256-{hash}'")),
                "{page}: {scripts}"
            );
            inline += 1;
        }
        assert!(inline >= 1, "{page} has its configuration script inline");
    }
    // Scripts and data are not pages: no policy of their own.
    for path in ["/chat-widget.js", "/health"] {
        let (_, h, _) = get(&server, "GET", path).await;
        assert_eq!(header(&h, "content-security-policy"), None, "{path}");
    }
}
