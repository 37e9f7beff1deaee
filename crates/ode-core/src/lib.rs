//! CPU reference ODE solvers for batched Neural ODEs.
//!
//! ```
//! use ode_core::{Method, Problem, SolveOptions, Solver, StepMode};
//! // Lotka-Volterra for a batch of two initial states, dopri5, one step size per sample.
//! let mut field = Problem::LotkaVolterra.field::<f64>();
//! let opts = SolveOptions::default().rtol(1e-6).atol(1e-8).step_mode(StepMode::PerSample);
//! let mut solver = Solver::new("dopri5".parse::<Method>()?, opts)?;
//! let ts: Vec<f64> = (0..=10).map(|i| i as f64).collect();
//! let sol = solver.solve(&mut field, &ts, &[1.0, 1.0, 2.0, 0.5])?;
//! println!("prey at t=10: {:.4}, {} batched evaluations", sol.y(10, 0)[0], sol.stats.nfe);
//! # Ok::<(), ode_core::OdeError>(())
//! ```
//!
//! Every other backend of the workspace (the wgpu kernels, the trainer) is tested against
//! this crate. Its pieces:
//! - [`ButcherTableau`] and [`Method`]: explicit Runge-Kutta methods as validated data
//!   (`euler`, `midpoint`, `heun2`, `rk4` (3/8 rule, torchdiffeq's), `rk4_classic`, `bosh3`,
//!   `dopri5`, `tsit5`), all run by one engine, [`Solver`].
//! - [`SolveOptions`]: scalar or per-component `rtol`/`atol`, a [`PidController`], Hairer's
//!   initial step, step limits, and the batch [`StepMode`] (`Shared` like torchdiffeq,
//!   `PerSample` like torchode).
//! - Dense output at any requested times, forward or backward in time; [`Stats`] with NFE and
//!   accepted/rejected steps per sample; typed [`OdeError`]s that say where and how to fix.
//! - [`Mlp`]: the reference model's batched tanh vector field with its vector-Jacobian
//!   products, for Neural ODE training.
//! - [`Problem`]: built-in test problems.
//!
//! Generic over `f32` (speed) and `f64` (reference checks) through [`Scalar`].

mod error;
mod field;
mod mlp;
mod options;
mod problems;
mod scalar;
mod solver;
mod tableau;

pub use error::{OdeError, Result};
pub use field::{FnField, VectorField};
pub use mlp::{MLP_TENSOR_NAMES, Mlp};
pub use options::{PidController, SolveOptions, StepMode, Tolerance};
pub use problems::{Problem, ProblemField};
pub use scalar::{Scalar, tanh_f32};
pub use solver::{Report, SampleStats, Solution, Solver, Stats};
pub use tableau::{ButcherTableau, Interpolation, Method};
