//! ode-train's integration tests, one module per topic, in one test binary: the model and the
//! trainer are generic over the scalar type, so every test binary compiles its own copy of them
//! (and of ode-core's solvers) at opt-level 3, and one binary instead of seven saves most of
//! that compile time in CI.

mod baselines;
mod checkpoint;
mod common;
mod data;
mod gradients;
mod time_order;
mod trainer;
mod window_norm;
