#![doc = include_str!("../README.md")]

/// The GPU backend (and through it the CPU reference) this crate trains on.
pub use ode_gpu as gpu;

pub mod baselines;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod forecast;
pub mod generate;
pub mod model;
pub mod shared_data;
pub mod tracker;
pub mod trainer;
mod update_watch;
pub mod verdict;
pub mod window_norm;

pub use baselines::{Baseline, Baselines};
pub use config::{Resolved, RunConfig};
pub use forecast::Forecaster;
pub use model::{
    Device, LossStats, ModelConfig, NeuralOdeModel, Preset, REVIN_BIAS, REVIN_WEIGHT, TENSOR_NAMES, Workspace,
};
pub use tracker::{JsonlTracker, MemoryTracker, Tracker};
pub use trainer::{Adam, EpochMetrics, History, TrainConfig, TrainError, Trainer, clip_grad_norm, grad_norm};
pub use update_watch::LargeUpdate;
pub use window_norm::Normalization;
