//! Request spans: every log line of a request carries its request id and session id.
//!
//! A deployment opens [`request_span`] around each request (a Lambda invocation; in
//! `chat-local` an HTTP request, a WebSocket connection and each of its frames) with the
//! session id still empty; the
//! service records it with [`session`] as soon as it knows the session (a verified token, a
//! stored connection, n8n's reply), so the lines that follow carry both. Queued jobs run in a
//! [`job_span`] of their own. Only ids go into spans: never a token, a secret or content.

use crate::model::{DispatchJob, SessionId};

/// The span of one request; `request_id` is Lambda's request id, or one of our own.
pub fn request_span(request_id: &str) -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id = %request_id,
        session_id = tracing::field::Empty
    )
}

/// The span of one queued job.
pub fn job_span(job: &DispatchJob) -> tracing::Span {
    tracing::info_span!(
        "job",
        session_id = %job.session_id,
        message_id = %job.message_id,
        kind = job.kind.as_str()
    )
}

/// Records the session of the request under way (in its [`request_span`]).
pub fn session(id: &SessionId) {
    tracing::Span::current().record("session_id", tracing::field::display(id));
}
