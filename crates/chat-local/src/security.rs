//! Response headers that keep browsers from misusing what this server sends:
//! `X-Content-Type-Options: nosniff` on every response, and on the HTML pages (`/` and
//! `/embed.html`) a Content-Security-Policy that lets them load only this server's scripts
//! (plus their own inline configuration script, by hash), talk only to this server over HTTP
//! and WebSocket, and not be framed by any page (`frame-ancestors 'none'`).
//!
//! Styles may be inline: the widget styles its shadow root with a `<style>` element.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The policy of the HTML pages `pages`, for a server whose WebSockets are at `websocket_url`.
pub fn page_policy(pages: &[&str], websocket_url: &str) -> String {
    let scripts: Vec<String> = pages
        .iter()
        .flat_map(|p| inline_scripts(p))
        .map(|s| {
            let digest = Sha256::digest(s.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    // 'self' covers ws: and wss: of the page's own origin; the configured WebSocket origin
    // (from CHAT_PUBLIC_URL) may differ from the one the page was loaded from.
    let websocket_origin = websocket_url
        .split_once("://")
        .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or("")))
        .filter(|o| o.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' {}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self' {websocket_origin}; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        scripts.join(" ")
    )
}

/// The contents of the `<script>` elements of `html` that have no `src` (outside comments).
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        if let Some(comment) = rest.find("<!--").filter(|&c| c < start) {
            let Some(end) = rest[comment..].find("-->") else {
                break;
            };
            rest = &rest[comment + end + 3..];
            continue;
        }
        let after = &rest[start..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let tag = &after[..tag_end];
        let body = &after[tag_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !tag.contains("src=") {
            found.push(&body[..close]);
        }
        rest = &body[close..];
    }
    found
}

/// Middleware: `nosniff` on everything, the page policy on HTML.
pub async fn headers(State(policy): State<Arc<HeaderValue>>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if html {
        h.insert(header::CONTENT_SECURITY_POLICY, (*policy).clone());
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_found_and_sourced_ones_skipped() {
        let html = r#"<!-- the two <script> tags --><p>x</p><script>one()</script><!-- <script>no()</script> -->
<script type="module" src="/a.js"></script>
<script>
  two();
</script>"#;
        assert_eq!(inline_scripts(html), ["one()", "\n  two();\n"]);
    }

    #[test]
    fn the_policy_hashes_inline_scripts_and_names_the_websocket_origin() {
        let p = page_policy(&["<script>one()</script>"], "wss://chat.example.com/ws");
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"one()"));
        assert!(
            p.contains(&format!("script-src 'self' 'sha256-{hash}';")),
            "{p}"
        );
        assert!(
            p.contains("connect-src 'self' wss://chat.example.com;"),
            "{p}"
        );
        assert!(p.ends_with("frame-ancestors 'none'"), "{p}");
        assert!(HeaderValue::from_str(&p).is_ok());
    }
}
