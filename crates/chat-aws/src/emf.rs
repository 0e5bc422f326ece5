//! The Lambdas' metrics recorder: CloudWatch Embedded Metric Format (EMF) lines on stdout,
//! flushed after each invocation, so CloudWatch Logs turns them into metrics with no extra
//! AWS call.
//!
//! A recorder of our own rather than `metrics_cloudwatch_embedded`: that crate writes one
//! dimension set holding every dimension, so a figure two functions emit (answer latency,
//! from `webhook` and from `dispatch`) would exist only per function, and an alarm on its p99
//! across the stage could not be written (percentiles cannot be combined by metric math).
//! Here each line declares two dimension sets, `[Stage]` (the figure of the whole stage, what
//! the dashboard and alarms read) and `[Stage, Function]` (the breakdown). It is small because
//! a Lambda runs one invocation at a time: counters are atomics, histograms keep their values
//! until the flush (at most [`MAX_VALUES`] per line, as EMF allows; more go on further lines).
//! Gauges are not emitted: a Lambda process sees only its own share of, say, open connections.
//! Labels are not used by our metrics and are ignored (a key is its name).
//!
//! Configuration from the environment: `CHAT_METRICS_NAMESPACE` (the template sets it; default
//! `ChatBackend`), `CHAT_STAGE` (default `default`) and `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda).

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// EMF's limit of values per metric in one line.
pub const MAX_VALUES: usize = 100;

/// Where the lines go and what they are tagged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmfConfig {
    pub namespace: String,
    pub stage: String,
    pub function: String,
}

impl EmfConfig {
    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str, default: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Self {
            namespace: get("CHAT_METRICS_NAMESPACE", "ChatBackend"),
            stage: get("CHAT_STAGE", "default"),
            function: get("AWS_LAMBDA_FUNCTION_NAME", "unknown"),
        }
    }
}

#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(value);
    }
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<String, Arc<AtomicU64>>,
    histograms: BTreeMap<String, Arc<Values>>,
    units: BTreeMap<String, Unit>,
}

/// The recorder; [`EmfRecorder::flush`] writes what was recorded since the last flush.
#[derive(Clone)]
pub struct EmfRecorder {
    config: Arc<EmfConfig>,
    registry: Arc<Mutex<Registry>>,
}

impl EmfRecorder {
    pub fn new(config: EmfConfig) -> Self {
        Self {
            config: Arc::new(config),
            registry: Arc::default(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The EMF documents of what was recorded since the last call (none when nothing was),
    /// each one JSON object; counters start again from zero, histograms empty.
    pub fn take_lines(&self, timestamp_ms: u64) -> Vec<Value> {
        let r = self.registry();
        let mut counters = Vec::new();
        for (name, c) in &r.counters {
            let v = c.swap(0, Ordering::Relaxed);
            if v > 0 {
                counters.push((name.clone(), v));
            }
        }
        let mut histograms = Vec::new();
        for (name, h) in &r.histograms {
            let values = std::mem::take(&mut *h.0.lock().unwrap_or_else(|p| p.into_inner()));
            if !values.is_empty() {
                histograms.push((name.clone(), values));
            }
        }
        let unit = |name: &str| match r.units.get(name) {
            Some(Unit::Milliseconds) => "Milliseconds",
            Some(Unit::Seconds) => "Seconds",
            Some(Unit::Bytes) => "Bytes",
            Some(Unit::Count) => "Count",
            _ if name.ends_with("_ms") => "Milliseconds",
            _ => "Count",
        };
        let lines = histograms
            .iter()
            .map(|(_, v)| v.len().div_ceil(MAX_VALUES))
            .max()
            .unwrap_or(0)
            .max(usize::from(!counters.is_empty()));
        (0..lines)
            .map(|i| {
                let mut doc = Map::new();
                doc.insert("Stage".into(), json!(self.config.stage));
                doc.insert("Function".into(), json!(self.config.function));
                let mut declared = Vec::new();
                if i == 0 {
                    for (name, v) in &counters {
                        declared.push(json!({"Name": name, "Unit": unit(name)}));
                        doc.insert(name.clone(), json!(v));
                    }
                }
                for (name, values) in &histograms {
                    let chunk = values.chunks(MAX_VALUES).nth(i).unwrap_or_default();
                    if !chunk.is_empty() {
                        declared.push(json!({"Name": name, "Unit": unit(name)}));
                        doc.insert(name.clone(), json!(chunk));
                    }
                }
                doc.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": self.config.namespace,
                            "Dimensions": [["Stage"], ["Stage", "Function"]],
                            "Metrics": declared,
                        }],
                    }),
                );
                Value::Object(doc)
            })
            .collect()
    }

    /// Writes the lines of [`EmfRecorder::take_lines`] to `out`, one JSON object per line.
    pub fn flush_to(&self, mut out: impl Write) -> std::io::Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut text = String::new();
        for line in self.take_lines(now) {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        // One write, so a line is never split by another writer's.
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        if let Some(u) = unit {
            self.registry().units.insert(key.as_str().to_string(), u);
        }
    }

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        if let Some(u) = unit {
            self.registry().units.insert(key.as_str().to_string(), u);
        }
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = self
            .registry()
            .counters
            .entry(key.name().to_string())
            .or_default()
            .clone();
        Counter::from_arc(Arc::new(Count(c)))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let h = self
            .registry()
            .histograms
            .entry(key.name().to_string())
            .or_default()
            .clone();
        Histogram::from_arc(h)
    }
}

struct Count(Arc<AtomicU64>);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

static INSTALLED: OnceLock<EmfRecorder> = OnceLock::new();

/// Installs the EMF recorder as this process's metrics recorder (once; later calls do
/// nothing) and describes the core's metrics.
pub fn install(config: EmfConfig) {
    let mut fresh = false;
    let recorder = INSTALLED.get_or_init(|| {
        fresh = true;
        EmfRecorder::new(config)
    });
    if fresh && metrics::set_global_recorder(recorder.clone()).is_ok() {
        chat_core::metrics::describe();
    }
}

/// Writes what this invocation recorded to stdout (nothing when no recorder is installed or
/// nothing was recorded). Called after each invocation.
pub fn flush() {
    if let Some(r) = INSTALLED.get()
        && let Err(e) = r.flush_to(std::io::stdout().lock())
    {
        tracing::warn!(error = %e, "could not write the metrics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> EmfRecorder {
        EmfRecorder::new(EmfConfig {
            namespace: "Chat".into(),
            stage: "prod".into(),
            function: "chat-send".into(),
        })
    }

    #[test]
    fn counters_and_histograms_are_one_line_with_two_dimension_sets() {
        let r = recorder();
        metrics::with_local_recorder(&r, || {
            chat_core::metrics::describe();
            metrics::counter!("chat_pushes_total").increment(2);
            metrics::histogram!("chat_answer_latency_ms").record(12.0);
            metrics::gauge!("chat_connections_open").increment(1.0);
        });
        let lines = r.take_lines(7);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["chat_pushes_total"], json!(2));
        assert_eq!(l["chat_answer_latency_ms"], json!([12.0]));
        assert!(l.get("chat_connections_open").is_none(), "no gauges");
        let d = &l["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "Chat");
        assert_eq!(d["Dimensions"], json!([["Stage"], ["Stage", "Function"]]));
        assert_eq!(
            (l["Stage"].as_str(), l["Function"].as_str()),
            (Some("prod"), Some("chat-send"))
        );
        let units: BTreeMap<&str, &str> = d["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["Name"].as_str().unwrap(), m["Unit"].as_str().unwrap()))
            .collect();
        assert_eq!(units["chat_answer_latency_ms"], "Milliseconds");
        assert_eq!(units["chat_pushes_total"], "Count");
        assert!(
            r.take_lines(8).is_empty(),
            "a flush starts again from nothing"
        );
    }

    #[test]
    fn more_than_a_hundred_values_go_on_further_lines() {
        let r = recorder();
        metrics::with_local_recorder(&r, || {
            for i in 0..250 {
                metrics::histogram!("chat_dispatch_latency_ms").record(f64::from(i));
            }
            metrics::counter!("chat_messages_total").increment(1);
        });
        let lines = r.take_lines(1);
        let sizes: Vec<usize> = lines
            .iter()
            .map(|l| l["chat_dispatch_latency_ms"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(lines[0]["chat_messages_total"], json!(1));
        assert!(
            lines[1].get("chat_messages_total").is_none(),
            "counted once"
        );
        let declared = |l: &Value| {
            l["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len()
        };
        assert_eq!((declared(&lines[0]), declared(&lines[1])), (2, 1));
    }
}
