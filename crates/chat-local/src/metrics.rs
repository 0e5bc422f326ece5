//! Prometheus text at `GET /metrics`: the core's figures ([`chat_core::metrics`]) recorded by
//! `metrics-exporter-prometheus` and served by our own router (the exporter's HTTP listener
//! is not built). Durations are histograms with fixed millisecond buckets, so a Prometheus
//! server can compute any percentile over any window.

use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Bucket bounds of every histogram, in ms: from a fast answer to the longest reply deadline.
const BUCKETS_MS: [f64; 16] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0,
    60_000.0, 120_000.0, 300_000.0, 900_000.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's metrics recorder (once) and describes
/// the core's metrics; returns its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS_MS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_ok() {
            chat_core::metrics::describe();
            metrics::describe_counter!(crate::db::COMMITS, "Database transactions committed");
            metrics::describe_counter!(
                crate::db::FSYNCS,
                "Database commits fsync'd (one covers every commit before it)"
            );
        }
        handle
    })
}

/// `GET /metrics`: the Prometheus text exposition format.
pub async fn serve() -> impl IntoResponse {
    let handle = install();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
