//! Shared by the benchmarks: when `CHAT_BENCH_OUT` names a file, each figure is appended to it
//! as one JSON line, and `tests/bench` prints them all as one table (`tests/bench_table.py`).
//! Without the variable the benchmarks only print their own output.

use std::io::Write;

/// One row of the table: `median` and `p99` in `unit` (p99 `None` where it means nothing).
pub fn report(section: &str, item: &str, median: f64, p99: Option<f64>, unit: &str, note: &str) {
    let Some(path) = std::env::var_os("CHAT_BENCH_OUT") else {
        return;
    };
    let line = serde_json::json!({
        "section": section, "item": item, "median": median, "p99": p99, "unit": unit, "note": note,
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("CHAT_BENCH_OUT is writable");
    writeln!(f, "{line}").expect("CHAT_BENCH_OUT is writable");
}

/// The `q` quantile (0..=1) of `xs` (sorted here), nearest-rank.
pub fn quantile(xs: &mut [f64], q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[i]
}
