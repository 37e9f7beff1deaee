//! Experiment tracking: parameters and per-step metrics, to a JSON-lines file or to memory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Receives a run's parameters and metrics (the tuning guide's `tracker`).
pub trait Tracker {
    /// Records a parameter of the run (configuration value).
    fn log_param(&mut self, name: &str, value: &str);
    /// Records a metric value at a step (an epoch for the trainer's metrics).
    fn log_metric(&mut self, name: &str, value: f64, step: usize);
}

/// Keeps everything in memory, for tests and for callers that inspect metrics afterwards.
#[derive(Debug, Clone, Default)]
pub struct MemoryTracker {
    /// Parameters by name.
    pub params: BTreeMap<String, String>,
    /// Metric series by name: `(step, value)` in logging order.
    pub metrics: BTreeMap<String, Vec<(usize, f64)>>,
}

impl Tracker for MemoryTracker {
    fn log_param(&mut self, name: &str, value: &str) {
        self.params.insert(name.to_string(), value.to_string());
    }
    fn log_metric(&mut self, name: &str, value: f64, step: usize) {
        self.metrics.entry(name.to_string()).or_default().push((step, value));
    }
}

/// Appends one JSON object per line to a file: `{"param": name, "value": v}` or
/// `{"metric": name, "value": x, "step": k}`; flushed after every line, so a crash loses nothing.
#[derive(Debug)]
pub struct JsonlTracker {
    file: std::fs::File,
}

impl JsonlTracker {
    /// Creates (truncating) `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: std::fs::File::create(path)?,
        })
    }

    /// Opens `path` for appending (resumed runs).
    pub fn append(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: std::fs::OpenOptions::new().create(true).append(true).open(path)?,
        })
    }

    fn line(&mut self, v: serde_json::Value) {
        // A failed metrics write must not kill a training run; it is reported once per line.
        if let Err(e) = writeln!(self.file, "{v}").and_then(|_| self.file.flush()) {
            eprintln!("warning: could not write metrics: {e}");
        }
    }
}

impl Tracker for JsonlTracker {
    fn log_param(&mut self, name: &str, value: &str) {
        self.line(serde_json::json!({ "param": name, "value": value }));
    }
    fn log_metric(&mut self, name: &str, value: f64, step: usize) {
        let v = if value.is_finite() {
            serde_json::json!(value)
        } else {
            serde_json::json!(value.to_string())
        };
        self.line(serde_json::json!({ "metric": name, "value": v, "step": step }));
    }
}

/// Forwards to several trackers.
pub struct Tee<'a>(pub Vec<&'a mut dyn Tracker>);

impl Tracker for Tee<'_> {
    fn log_param(&mut self, name: &str, value: &str) {
        self.0.iter_mut().for_each(|t| t.log_param(name, value));
    }
    fn log_metric(&mut self, name: &str, value: f64, step: usize) {
        self.0.iter_mut().for_each(|t| t.log_metric(name, value, step));
    }
}
