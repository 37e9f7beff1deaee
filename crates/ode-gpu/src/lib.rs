#![doc = include_str!("../README.md")]

mod context;
mod control;
mod device;
mod dispatch;
mod error;
mod layout;
mod plan;
mod report;
mod shaders;
mod solver;
#[cfg(feature = "testing")]
pub mod testing;
mod validate;

/// The CPU reference backend this crate mirrors.
pub use ode_core as core;

pub use context::*;
pub use dispatch::GemmSchedule;
pub use error::*;
pub use solver::*;
