//! The product's operational figures, by name, and the one-line calls the service makes.
//!
//! The core emits through the [`metrics`] facade and installs nothing: a deployment installs
//! a recorder (the Lambdas write CloudWatch Embedded Metric Format lines on stdout,
//! `chat-local` serves Prometheus text at `GET /metrics`). Without one every call is a no-op.
//! The names are the same everywhere, so a dashboard, an alarm and a Prometheus query speak of
//! the same thing. Counters end in `_total`, durations in `_ms`; no metric carries labels
//! (each label would be one more CloudWatch dimension, billed as its own metric).

use crate::model::Millis;
use metrics::Unit;

/// User message stored → its reply stored (by callback or from n8n's response), ms.
pub const ANSWER_LATENCY_MS: &str = "chat_answer_latency_ms";
/// User message stored → n8n accepted its delivery (2xx), ms; queueing and retries included.
pub const DISPATCH_LATENCY_MS: &str = "chat_dispatch_latency_ms";
/// Deliveries to n8n attempted (every try counts).
pub const DISPATCH_ATTEMPTS: &str = "chat_dispatch_attempts_total";
/// Attempts n8n did not accept (an error, a timeout or a non-2xx status).
pub const DISPATCH_FAILURES: &str = "chat_dispatch_failures_total";
/// User messages given up after n8n failed their last attempt (now `failed`, the user told,
/// the job kept for a redrive).
pub const DEAD_LETTERED: &str = "chat_dead_lettered_total";
/// User messages failed at their reply deadline (n8n accepted them but never answered).
pub const REPLY_TIMEOUTS: &str = "chat_reply_timeouts_total";
/// User messages stored (repeats of a stored message not counted).
pub const MESSAGES: &str = "chat_messages_total";
/// Frames pushed to a connection (every attempt, gone ones included).
pub const PUSHES: &str = "chat_pushes_total";
/// Pushes that found the connection gone (API Gateway's 410; a closed local socket).
pub const PUSHES_GONE: &str = "chat_pushes_gone_total";
/// Replies that n8n streamed, stored whole.
pub const STREAMED_REPLIES: &str = "chat_streamed_replies_total";
/// WebSocket connections accepted.
pub const CONNECTIONS_OPENED: &str = "chat_connections_opened_total";
/// WebSocket connections forgotten (closed, or found gone by a push).
pub const CONNECTIONS_CLOSED: &str = "chat_connections_closed_total";
/// WebSocket connections open now, as this process saw them open and close. Meaningful in
/// `chat-local` (one process sees them all); a Lambda sees only its own share, so the EMF
/// recorder does not emit gauges: on AWS, opened minus closed says it.
pub const CONNECTIONS_OPEN: &str = "chat_connections_open";

/// Every counter, for recorders and tests that list them.
pub const COUNTERS: [&str; 10] = [
    DISPATCH_ATTEMPTS,
    DISPATCH_FAILURES,
    DEAD_LETTERED,
    REPLY_TIMEOUTS,
    MESSAGES,
    PUSHES,
    PUSHES_GONE,
    STREAMED_REPLIES,
    CONNECTIONS_OPENED,
    CONNECTIONS_CLOSED,
];

/// Every histogram (all in milliseconds).
pub const HISTOGRAMS: [&str; 2] = [ANSWER_LATENCY_MS, DISPATCH_LATENCY_MS];

/// Tells the installed recorder each metric's unit and meaning (Prometheus `# HELP`, EMF
/// `Unit`). Call once, after installing a recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        ANSWER_LATENCY_MS,
        Unit::Milliseconds,
        "User message stored to its reply stored"
    );
    describe_histogram!(
        DISPATCH_LATENCY_MS,
        Unit::Milliseconds,
        "User message stored to n8n accepting it"
    );
    describe_counter!(
        DISPATCH_ATTEMPTS,
        Unit::Count,
        "Deliveries to n8n attempted"
    );
    describe_counter!(
        DISPATCH_FAILURES,
        Unit::Count,
        "Deliveries n8n did not accept"
    );
    describe_counter!(
        DEAD_LETTERED,
        Unit::Count,
        "User messages given up after the last attempt"
    );
    describe_counter!(
        REPLY_TIMEOUTS,
        Unit::Count,
        "User messages failed at their reply deadline"
    );
    describe_counter!(MESSAGES, Unit::Count, "User messages stored");
    describe_counter!(PUSHES, Unit::Count, "Frames pushed to connections");
    describe_counter!(
        PUSHES_GONE,
        Unit::Count,
        "Pushes that found the connection gone"
    );
    describe_counter!(STREAMED_REPLIES, Unit::Count, "Replies n8n streamed");
    describe_counter!(
        CONNECTIONS_OPENED,
        Unit::Count,
        "WebSocket connections accepted"
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        Unit::Count,
        "WebSocket connections forgotten"
    );
    describe_gauge!(CONNECTIONS_OPEN, Unit::Count, "WebSocket connections open");
}

fn elapsed(from: Millis, to: Millis) -> f64 {
    to.saturating_sub(from) as f64
}

pub(crate) fn message_stored() {
    metrics::counter!(MESSAGES).increment(1);
}

/// A reply to the user message stored at `asked_at` was stored at `answered_at`.
pub(crate) fn answered(asked_at: Millis, answered_at: Millis) {
    metrics::histogram!(ANSWER_LATENCY_MS).record(elapsed(asked_at, answered_at));
}

pub(crate) fn dispatch_attempted() {
    metrics::counter!(DISPATCH_ATTEMPTS).increment(1);
}

/// n8n accepted the user message stored at `stored_at`.
pub(crate) fn dispatch_accepted(stored_at: Millis, now: Millis) {
    metrics::histogram!(DISPATCH_LATENCY_MS).record(elapsed(stored_at, now));
}

/// n8n did not accept an attempt; `last` when the message is given up.
pub(crate) fn dispatch_failed(last: bool) {
    metrics::counter!(DISPATCH_FAILURES).increment(1);
    if last {
        metrics::counter!(DEAD_LETTERED).increment(1);
    }
}

pub(crate) fn reply_timed_out() {
    metrics::counter!(REPLY_TIMEOUTS).increment(1);
}

/// One push; `gone` when the connection was found gone.
pub(crate) fn pushed(gone: bool) {
    metrics::counter!(PUSHES).increment(1);
    if gone {
        metrics::counter!(PUSHES_GONE).increment(1);
    }
}

pub(crate) fn streamed_reply() {
    metrics::counter!(STREAMED_REPLIES).increment(1);
}

pub(crate) fn connection_opened() {
    metrics::counter!(CONNECTIONS_OPENED).increment(1);
    metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
}

pub(crate) fn connection_closed() {
    metrics::counter!(CONNECTIONS_CLOSED).increment(1);
    metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
}
