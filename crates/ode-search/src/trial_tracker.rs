//! A hook for logging each trial to an experiment tracker of the caller's (e.g. a run on a
//! tracking server) besides the trial's own in-memory tracker; see
//! [`SearchConfig::trial_tracker`](crate::SearchConfig::trial_tracker).

use crate::driver::TrialOutcome;
use crate::strategy::Params;
use ode_train::Tracker;
use std::fmt;
use std::sync::Arc;

/// A tracker that receives one attempt at a trial: the parameters and per-epoch metrics the
/// trainer logs, then its outcome.
pub trait TrialTracker: Tracker + Send {
    /// Called once when the attempt ends, with what the worker recorded: complete, pruned,
    /// failed, or still `Running` when the worker abandoned it (lost lease, cancelled). Not
    /// called when a store failure ends the worker; the tracker is dropped instead.
    fn end(self: Box<Self>, outcome: &TrialOutcome);
}

/// A function from a trial's number and parameters to the [`TrialTracker`] of an attempt at it.
pub type MakeTrialTracker = dyn Fn(u64, &Params) -> Box<dyn TrialTracker> + Send + Sync;

/// Makes the [`TrialTracker`] of each attempt at a trial from its number and parameters.
#[derive(Clone)]
pub struct TrialTrackerFn(pub Arc<MakeTrialTracker>);

impl TrialTrackerFn {
    /// Wraps `f`.
    pub fn new(f: impl Fn(u64, &Params) -> Box<dyn TrialTracker> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl fmt::Debug for TrialTrackerFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrialTrackerFn(..)")
    }
}

/// A [`TrialTracker`] seen as a plain [`Tracker`] (for [`ode_train::tracker::Tee`]).
pub(crate) struct AsTracker<'a>(pub &'a mut dyn TrialTracker);

impl Tracker for AsTracker<'_> {
    fn log_param(&mut self, name: &str, value: &str) {
        self.0.log_param(name, value);
    }
    fn log_metric(&mut self, name: &str, value: f64, step: usize) {
        self.0.log_metric(name, value, step);
    }
}
