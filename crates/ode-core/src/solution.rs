//! What a solve returns: the states at the requested times, and its work counters and failures.

use crate::Scalar;
use crate::error::OdeError;

/// Work counters of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleStats {
    /// Evaluations of the vector field on this sample (including the initial-step probe).
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps.
    pub rejected: usize,
}

/// Work counters of a solve.
///
/// `nfe` counts batched calls of [`VectorField::eval`](crate::VectorField::eval) (what costs time on a batch);
/// `per_sample` counts each sample's own evaluations and steps. In shared mode every sample has
/// the same counts and `accepted`/`rejected` are the batch's step counts; in per-sample mode
/// they are the sums over samples.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Batched vector-field evaluations.
    pub nfe: usize,
    /// Accepted steps (see the type's doc for per-sample mode).
    pub accepted: usize,
    /// Rejected steps (see the type's doc for per-sample mode).
    pub rejected: usize,
    /// Per-sample counters, one entry per batch row.
    pub per_sample: Vec<SampleStats>,
}

/// What [`Solver::solve_into`](crate::Solver::solve_into) reports besides the outputs it wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Work counters.
    pub stats: Stats,
    /// Samples that failed (only with `throw = false` in per-sample mode), with their error;
    /// their outputs after the failure time are NaN.
    pub failures: Vec<OdeError>,
}

/// A solution: the states of every sample at every requested time.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution<T> {
    /// The requested times (the first is the initial time).
    pub ts: Vec<T>,
    /// States, `[time][sample][component]` flattened row-major.
    pub ys: Vec<T>,
    /// Number of samples.
    pub batch: usize,
    /// State dimension.
    pub dim: usize,
    /// Work counters.
    pub stats: Stats,
    /// Failed samples (only with `throw = false` in per-sample mode).
    pub failures: Vec<OdeError>,
}

impl<T: Scalar> Solution<T> {
    /// The state of `sample` at output time index `k`.
    pub fn y(&self, k: usize, sample: usize) -> &[T] {
        let o = (k * self.batch + sample) * self.dim;
        &self.ys[o..o + self.dim]
    }

    /// The states of the whole batch at output time index `k` (`batch × dim`, row-major).
    pub fn at(&self, k: usize) -> &[T] {
        let w = self.batch * self.dim;
        &self.ys[k * w..(k + 1) * w]
    }
}
