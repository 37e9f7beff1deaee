//! The cross-crate tests, one module per topic, in one test binary: ode-core's solvers and the
//! trainer are generic over the scalar type, so every test binary compiles its own copy of them
//! at opt-level 3, and one binary instead of six saves most of that compile time in CI.
//! `gpu_no_adapter.rs` stays a binary of its own: it re-runs itself with an environment that
//! hides every GPU adapter.

mod f32_vs_f64;
mod gpu_field;
mod gpu_landing;
mod gpu_solve;
mod gpu_train;
mod shaders;
