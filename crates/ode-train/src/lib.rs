#![doc = include_str!("../README.md")]

/// The GPU backend (and through it the CPU reference) this crate trains on.
pub use ode_gpu as gpu;
