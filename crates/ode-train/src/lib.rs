#![doc = include_str!("../README.md")]

/// The GPU backend (and through it the CPU reference) this crate trains on.
pub use ode_gpu as gpu;

pub mod data;
pub mod generate;
pub mod model;

pub use model::{LossStats, ModelConfig, NeuralOdeModel, Preset, TENSOR_NAMES, Workspace};
