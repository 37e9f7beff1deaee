#![doc = include_str!("../README.md")]

mod adjoint;
mod error;
mod field;
mod grad;
pub mod kernel;
pub mod layers;
mod mlp;
mod names;
mod options;
mod problems;
mod scalar;
mod solver;
mod tableau;

pub use adjoint::{AdjointNorm, AdjointSolver, AdjointStats};
pub use error::{OdeError, Result};
pub use field::{FnField, VectorField};
pub use grad::{BackpropStats, VjpField};
pub use mlp::{MLP_TENSOR_NAMES, Mlp};
pub use options::{PidController, SNAP_ULPS, SolveOptions, StepMode, Tolerance, snap_gap};
pub use problems::{Problem, ProblemField};
pub use scalar::{Scalar, tanh_f32};
pub use solver::{Report, SampleStats, Solution, Solver, Stats, Tape};
pub use tableau::{ButcherTableau, Interpolation, Method};
