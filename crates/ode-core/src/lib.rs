#![doc = include_str!("../README.md")]

mod adjoint;
mod backprop;
mod control;
mod controller_kind;
mod error;
mod field;
mod forward;
mod grad;
pub mod kernel;
pub mod layers;
mod mlp;
mod names;
mod options;
mod problems;
mod record_queue;
mod rk;
mod scalar;
mod solution;
mod solver;
mod tableau;
mod tape;

pub use adjoint::{AdjointNorm, AdjointSolver, AdjointStats};
pub use backprop::BackpropStats;
pub use controller_kind::ControllerKind;
pub use error::{OdeError, Result};
pub use field::{FnField, VectorField};
pub use grad::VjpField;
pub use mlp::{MLP_TENSOR_NAMES, Mlp};
pub use options::{PidController, SNAP_ULPS, SolveOptions, StepMode, Tolerance, snap_gap};
pub use problems::{Problem, ProblemField};
pub use scalar::{Scalar, tanh_f32};
pub use solution::{Report, SampleStats, Solution, Stats};
pub use solver::Solver;
pub use tableau::{ButcherTableau, Interpolation, Method};
pub use tape::Tape;
