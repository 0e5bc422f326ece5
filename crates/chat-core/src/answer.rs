//! What n8n's 2xx answer to a dispatch means, read without I/O so every shape is unit-tested.
//!
//! Stock n8n workflows answer in the HTTP response instead of calling our webhook: a Webhook
//! node "when last node finishes" answers the last node's item (`{"output": "..."}`), a Chat
//! Trigger answers `{"output": ...}` or streams. So the body decides how the reply arrives:
//!
//! - a JSON answer: an object with `content`, `output` or `text` (a string), which is also our
//!   inbound shape (`type` and `data` are honoured), or an array whose first item is one;
//! - a stream: newline-delimited JSON chunks `{"type":"begin"|"item"|"end"|"error", ...}`;
//! - an acknowledgement (the reply comes later by callback): an empty body, `{}`, or an object
//!   of acknowledgement fields only (`accepted`, `ok`, `status`, `success`, `message`,
//!   `executionId`: n8n's own "Workflow was started" is `{"message": ...}`);
//! - anything else is an error with a [`BadAnswer`] saying what was wrong.

use crate::model::MessageType;
use serde_json::{Map, Value};

/// The largest answer body read whole (a bigger one is a failure, not a truncation).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The longest line of a stream.
pub const MAX_STREAM_LINE_BYTES: usize = 64 * 1024;

/// The most bytes one stream may carry in all (n8n's metadata makes each token's chunk about
/// 200 bytes, so this allows far more than the longest reply).
pub const MAX_STREAM_BYTES: usize = 16 * 1024 * 1024;

/// Fields an acknowledgement may have.
const ACK_FIELDS: [&str; 6] = [
    "accepted",
    "ok",
    "status",
    "success",
    "message",
    "executionId",
];

/// A reply carried by the response body.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyParts {
    pub content: String,
    pub kind: MessageType,
    pub data: Option<Map<String, Value>>,
}

/// What a whole (not streamed) body means.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// No answer in the body: the reply comes by the signed callback.
    Ack,
    Reply(ReplyParts),
}

/// Why an answer could not be used; `code` goes into the failed message's `data.reason`,
/// `detail` into the log (it describes the shape, never repeats the body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct BadAnswer {
    pub code: &'static str,
    pub detail: String,
}

impl BadAnswer {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    fn invalid(detail: impl Into<String>) -> Self {
        Self::new("invalid_answer", detail)
    }
}

/// Reads a whole body.
pub fn classify(body: &[u8]) -> Result<Answer, BadAnswer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Answer::Ack);
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(BadAnswer::new(
            "answer_too_large",
            format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| BadAnswer::invalid("the answer is neither JSON nor a stream of JSON lines"))?;
    match value {
        Value::Array(items) => match items.into_iter().next() {
            Some(Value::Object(first)) => object(first),
            Some(_) => Err(BadAnswer::invalid(
                "the answer is an array whose first item is not an object",
            )),
            None => Err(BadAnswer::invalid("the answer is an empty array")),
        },
        Value::Object(o) => object(o),
        _ => Err(BadAnswer::invalid(
            "the answer is JSON but neither an object nor an array",
        )),
    }
}

fn object(mut o: Map<String, Value>) -> Result<Answer, BadAnswer> {
    let text = ["content", "output", "text"]
        .into_iter()
        .find_map(|k| o.get(k).filter(|v| !v.is_null()).map(|v| (k, v.clone())));
    let Some((field, text)) = text else {
        if o.keys().all(|k| ACK_FIELDS.contains(&k.as_str()))
            && o.values().all(|v| !v.is_object() && !v.is_array())
        {
            return Ok(Answer::Ack);
        }
        return Err(BadAnswer::invalid(
            "the answer is a JSON object with none of content, output or text",
        ));
    };
    let Value::String(content) = text else {
        return Err(BadAnswer::invalid(format!(
            "the answer's {field} is not a string"
        )));
    };
    let kind = match o.get("type") {
        None | Some(Value::Null) => MessageType::Text,
        Some(Value::String(t)) => MessageType::parse(t)
            .ok_or_else(|| BadAnswer::invalid("the answer's type is not a reply type"))?,
        Some(_) => return Err(BadAnswer::invalid("the answer's type is not a string")),
    };
    let data = match o.remove("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => Some(d),
        Some(_) => return Err(BadAnswer::invalid("the answer's data is not an object")),
    };
    Ok(Answer::Reply(ReplyParts {
        content,
        kind,
        data,
    }))
}

/// One line of an n8n stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Begin,
    /// Text to append (a token or a few).
    Item(String),
    End,
    /// The workflow failed; its message is for the log.
    Error(String),
    /// A chunk type this version does not know: skipped.
    Other,
}

/// Whether `line` (the first non-blank line of a body) opens an n8n stream rather than a
/// one-line JSON answer. A lone `{"type":"error", ...}` is n8n's stream error unless it has
/// fields of our inbound shape (`sessionId`, `replyTo`, `eventId`, `data`), which make it a
/// reply of type `error`.
pub fn opens_stream(line: &[u8]) -> bool {
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(line) else {
        return false;
    };
    match o.get("type").and_then(Value::as_str) {
        Some("begin" | "item" | "end") => true,
        Some("error") => !["sessionId", "replyTo", "eventId", "data"]
            .iter()
            .any(|k| o.contains_key(*k)),
        _ => false,
    }
}

/// Parses one non-blank line of a stream.
pub fn chunk(line: &[u8]) -> Result<Chunk, BadAnswer> {
    let v: Value = serde_json::from_slice(line)
        .map_err(|_| BadAnswer::new("stream_invalid", "a stream line is not valid JSON"))?;
    let Value::Object(o) = v else {
        return Err(BadAnswer::new(
            "stream_invalid",
            "a stream line is not a JSON object",
        ));
    };
    let content =
        |o: &Map<String, Value>| o.get("content").and_then(Value::as_str).map(str::to_string);
    Ok(match o.get("type").and_then(Value::as_str) {
        Some("begin") => Chunk::Begin,
        Some("end") => Chunk::End,
        Some("item") => Chunk::Item(content(&o).unwrap_or_default()),
        Some("error") => Chunk::Error(content(&o).unwrap_or_else(|| "no message".into())),
        Some(_) => Chunk::Other,
        None => {
            return Err(BadAnswer::new(
                "stream_invalid",
                "a stream line has no type",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(body: &str) -> ReplyParts {
        match classify(body.as_bytes()) {
            Ok(Answer::Reply(r)) => r,
            other => panic!("{body}: {other:?}"),
        }
    }

    fn bad(body: &[u8]) -> BadAnswer {
        classify(body).expect_err(&String::from_utf8_lossy(body))
    }

    #[test]
    fn answers_in_every_accepted_shape() {
        assert_eq!(reply(r#"{"output":"hi"}"#).content, "hi");
        assert_eq!(reply(r#"{"text":"hi"}"#).content, "hi");
        assert_eq!(
            reply(r#"[{"output":"first"},{"output":"second"}]"#).content,
            "first"
        );
        let ours = reply(
            r#"{"sessionId":"x","content":"Booked?","type":"confirmation","data":{"slot":3}}"#,
        );
        assert_eq!(ours.kind, MessageType::Confirmation);
        assert_eq!(ours.data, json!({"slot":3}).as_object().cloned());
        // content wins over output and text.
        assert_eq!(
            reply(r#"{"text":"t","output":"o","content":"c"}"#).content,
            "c"
        );
    }

    #[test]
    fn acknowledgements_keep_the_callback_path() {
        for body in [
            "",
            "  \n",
            "{}",
            r#"{"accepted":true}"#,
            r#"{"message":"Workflow was started"}"#,
            r#"{"ok":true,"executionId":"42"}"#,
        ] {
            assert_eq!(classify(body.as_bytes()), Ok(Answer::Ack), "{body:?}");
        }
    }

    #[test]
    fn other_shapes_are_errors_that_say_why() {
        assert!(bad(b"OK").detail.contains("neither JSON"));
        assert!(bad(b"[]").detail.contains("empty array"));
        assert!(bad(b"[1,2]").detail.contains("first item"));
        assert!(bad(b"42").detail.contains("neither an object"));
        assert!(bad(br#"{"answer":"hi"}"#).detail.contains("none of"));
        assert!(
            bad(br#"{"accepted":true,"result":{"x":1}}"#)
                .detail
                .contains("none of")
        );
        assert!(bad(br#"{"output":5}"#).detail.contains("not a string"));
        assert!(
            bad(br#"{"output":"x","type":"dance"}"#)
                .detail
                .contains("type")
        );
        assert!(bad(br#"{"output":"x","data":[1]}"#).detail.contains("data"));
        let big = vec![b' '; MAX_ANSWER_BYTES + 2];
        let mut big = big;
        big[0] = b'{';
        assert_eq!(bad(&big).code, "answer_too_large");
        assert_eq!(bad(b"{").code, "invalid_answer");
    }

    #[test]
    fn stream_openings_are_told_from_one_line_answers() {
        assert!(opens_stream(
            br#"{"type":"begin","metadata":{"nodeId":"a"}}"#
        ));
        assert!(opens_stream(br#"{"type":"item","content":"Hi"}"#));
        assert!(opens_stream(
            br#"{"type":"error","content":"Expected to find the prompt"}"#
        ));
        assert!(!opens_stream(
            br#"{"type":"error","content":"x","replyTo":"01H"}"#
        ));
        assert!(!opens_stream(br#"{"type":"text","content":"x"}"#));
        assert!(!opens_stream(br#"{"output":"x"}"#));
        assert!(!opens_stream(b"{"));
    }

    #[test]
    fn stream_chunks() {
        assert_eq!(chunk(br#"{"type":"begin"}"#), Ok(Chunk::Begin));
        assert_eq!(
            chunk(br#"{"type":"item","content":"Str","metadata":{"nodeId":"n"}}"#),
            Ok(Chunk::Item("Str".into()))
        );
        assert_eq!(chunk(br#"{"type":"end"}"#), Ok(Chunk::End));
        assert_eq!(
            chunk(br#"{"type":"error","content":"boom"}"#),
            Ok(Chunk::Error("boom".into()))
        );
        assert_eq!(chunk(br#"{"type":"progress"}"#), Ok(Chunk::Other));
        assert_eq!(chunk(b"not json").unwrap_err().code, "stream_invalid");
        assert_eq!(chunk(b"[1]").unwrap_err().code, "stream_invalid");
        assert_eq!(
            chunk(br#"{"content":"x"}"#).unwrap_err().code,
            "stream_invalid"
        );
    }
}
