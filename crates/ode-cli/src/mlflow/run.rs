//! One MLflow run as an [`ode_train::Tracker`]: what the trainer logs is queued for the
//! sending thread, each metric stamped with the time it was logged.

use super::batch::Record;
use super::sender::{RunHandle, Sender, now_ms};
use ode_search::TrialState;
use ode_search::driver::TrialOutcome;
use ode_search::trial_tracker::TrialTracker;
use ode_train::Tracker;
use std::collections::HashMap;
use std::path::Path;

/// A run on the server (created in the background), logged to like any tracker.
pub struct MlflowRun {
    sender: Sender,
    run: RunHandle,
    /// The last timestamp of each metric: a metric logged twice in a millisecond gets the next
    /// one, so that no two points of a history are taken for the same one.
    last: HashMap<String, i64>,
    ended: bool,
}

impl MlflowRun {
    /// Logs to `run` through `sender`.
    pub fn new(sender: Sender, run: RunHandle) -> Self {
        Self {
            sender,
            run,
            last: HashMap::new(),
            ended: false,
        }
    }

    /// Sets a tag.
    pub fn tag(&mut self, key: &str, value: &str) {
        self.sender.log(
            self.run,
            Record::Tag {
                key: key.into(),
                value: value.into(),
            },
        );
    }

    /// Uploads the file at `path` as the artifact `name`, if it exists (read now).
    pub fn artifact(&mut self, path: &Path, name: &str) {
        match std::fs::read(path) {
            Ok(bytes) => self.sender.artifact(self.run, name, bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: MLflow: cannot read {} to upload it: {e}", path.display()),
        }
    }

    /// Ends the run with `status` (`FINISHED`, `FAILED`, `KILLED`).
    pub fn end(mut self, status: &'static str) {
        self.ended = true;
        self.sender.end(self.run, status);
    }
}

impl Drop for MlflowRun {
    /// A run dropped without [`MlflowRun::end`] (an error cut it short) ends as `FAILED`.
    fn drop(&mut self) {
        if !self.ended {
            self.sender.end(self.run, "FAILED");
        }
    }
}

impl Tracker for MlflowRun {
    fn log_param(&mut self, name: &str, value: &str) {
        self.sender.log(
            self.run,
            Record::Param {
                key: name.into(),
                value: value.into(),
            },
        );
        if name == "solver" {
            self.tag("solver", value);
        }
    }

    fn log_metric(&mut self, name: &str, value: f64, step: usize) {
        let last = self.last.entry(name.to_string()).or_insert(i64::MIN);
        let timestamp = now_ms().max(last.saturating_add(1));
        *last = timestamp;
        self.sender.log(
            self.run,
            Record::Metric {
                key: name.into(),
                value,
                timestamp,
                step: step as i64,
            },
        );
    }
}

impl TrialTracker for MlflowRun {
    /// Complete and pruned trials end `FINISHED`, failed ones `FAILED`, abandoned ones
    /// (`Running`: lost lease, interrupted) `KILLED`; the tag `state` says which.
    fn end(mut self: Box<Self>, outcome: &TrialOutcome) {
        let (state, status) = match outcome.state {
            TrialState::Complete => ("COMPLETE", "FINISHED"),
            TrialState::Pruned => ("PRUNED", "FINISHED"),
            TrialState::Fail => ("FAIL", "FAILED"),
            TrialState::Running | TrialState::Waiting => ("ABANDONED", "KILLED"),
        };
        self.tag("state", state);
        if let Some(r) = &outcome.reason {
            self.tag("reason", r);
        }
        MlflowRun::end(*self, status);
    }
}
