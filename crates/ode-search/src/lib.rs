//! Hyperparameter search over Neural ODE configurations: grid, random and successive-halving
//! drivers, an Optuna-compatible study store, local and distributed workers.
//!
//! ```
//! // The trainer this crate will drive is re-exported:
//! use ode_search::train::gpu::core::StepMode;
//! assert_eq!(StepMode::default(), StepMode::PerSample);
//! ```
//!
//! Status: not built yet (issue "ode-search").

/// The trainer that search trials run.
pub use ode_train as train;
