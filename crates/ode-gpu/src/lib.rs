#![doc = include_str!("../README.md")]

/// The CPU reference backend this crate mirrors.
pub use ode_core as core;
