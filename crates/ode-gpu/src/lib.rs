#![doc = include_str!("../README.md")]

mod context;
mod error;
pub mod shaders;
mod solver;

/// The CPU reference backend this crate mirrors.
pub use ode_core as core;

pub use context::GpuContext;
pub use error::{GpuError, Result};
pub use solver::{GemmSchedule, GpuCounters, GpuSolver};
