//! Typed errors: what went wrong, where (time, sample, parameter) and how to fix it.

use thiserror::Error;

/// Everything a solve can fail with. Times are reported as `f64` whatever the working precision.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum OdeError {
    /// The state or the derivative became NaN or infinite.
    #[error(
        "non-finite {what} at t = {t} in sample {sample}: the solution blew up or the vector field \
         returned NaN/inf; check the initial state and the field, lower the tolerances or the step \
         size, or use a more stable solver (rk4 or dopri5 instead of euler)"
    )]
    NonFinite {
        /// `"state"`, `"derivative"` or `"initial state"`.
        what: &'static str,
        /// Time at which it was detected.
        t: f64,
        /// Batch row that failed.
        sample: usize,
    },
    /// The adaptive step size fell below `min_step` or below the resolution of `t`.
    #[error(
        "step size underflow at t = {t} in sample {sample}: step {h:e} is below the minimum \
         {min_step:e}; the problem is probably stiff or singular here: loosen rtol/atol, lower \
         min_step, or check the vector field"
    )]
    StepSizeUnderflow {
        /// Time at which the step could not be taken.
        t: f64,
        /// The step size that was too small.
        h: f64,
        /// The effective minimum step (the option, or the floating-point resolution of `t`).
        min_step: f64,
        /// Batch row that failed.
        sample: usize,
    },
    /// More than `max_num_steps` steps (accepted plus rejected) were needed.
    #[error(
        "maximum number of steps ({max_num_steps}) exceeded at t = {t} in sample {sample}: raise \
         max_num_steps, loosen rtol/atol, or use a fixed-step solver"
    )]
    MaxStepsExceeded {
        /// Time reached when the budget ran out.
        t: f64,
        /// The budget.
        max_num_steps: usize,
        /// Batch row that failed.
        sample: usize,
    },
    /// A tolerance is negative, not finite, or both tolerances are zero.
    #[error("invalid tolerance {name} = {value}: {reason}")]
    InvalidTolerance {
        /// `"rtol"` or `"atol"` (with the component index for per-component tolerances).
        name: String,
        /// The offending value.
        value: f64,
        /// Why it is rejected and what is expected.
        reason: &'static str,
    },
    /// Another option is out of its range.
    #[error("invalid option {name} = {value}: {reason}")]
    InvalidOption {
        /// The option name as in [`crate::SolveOptions`].
        name: &'static str,
        /// The offending value.
        value: f64,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The output times are not strictly monotonic (or contain NaN).
    #[error(
        "output times must be strictly increasing or strictly decreasing: ts[{index}] = {next} \
         after ts[{prev_index}] = {prev}",
        prev_index = index - 1
    )]
    NonMonotonicTimes {
        /// Index of the offending time.
        index: usize,
        /// The time before it.
        prev: f64,
        /// The offending time.
        next: f64,
    },
    /// An output time is NaN or infinite.
    #[error("output time ts[{index}] = {value} is not finite; give finite times")]
    NonFiniteTime {
        /// Index of the offending time.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A named choice (step mode, problem, norm) that is not one of the accepted values.
    #[error("invalid {name} '{value}': expected one of {expected}")]
    InvalidChoice {
        /// What was being chosen.
        name: &'static str,
        /// What was given.
        value: String,
        /// The accepted values, comma separated.
        expected: &'static str,
    },
    /// Fewer than two output times were given.
    #[error("need at least two output times (the first is the initial time), got {got}")]
    TooFewTimes {
        /// How many were given.
        got: usize,
    },
    /// A buffer or vector has the wrong length.
    #[error("shape mismatch for {what}: expected {expected} values, got {got}")]
    ShapeMismatch {
        /// Which input.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A solver name that is not known.
    #[error("unknown solver '{name}': expected one of {known}")]
    UnknownSolver {
        /// What was asked for.
        name: String,
        /// The accepted names, comma separated.
        known: String,
    },
    /// A Butcher tableau that violates a consistency condition.
    #[error("invalid Butcher tableau '{name}': {reason}")]
    InvalidTableau {
        /// The tableau's name.
        name: String,
        /// The violated condition.
        reason: String,
    },
    /// A combination of options that is not supported.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What cannot be done, and what to do instead.
        what: &'static str,
    },
    /// A compute backend (the GPU) failed: no adapter, device lost, out of memory.
    #[error("compute backend failed: {message}")]
    Backend {
        /// The backend's own message, with what to do.
        message: String,
    },
}

impl OdeError {
    /// The batch row the error concerns, for per-sample failures.
    pub fn sample(&self) -> Option<usize> {
        match self {
            OdeError::NonFinite { sample, .. }
            | OdeError::StepSizeUnderflow { sample, .. }
            | OdeError::MaxStepsExceeded { sample, .. } => Some(*sample),
            _ => None,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = OdeError> = std::result::Result<T, E>;
