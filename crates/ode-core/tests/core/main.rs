//! ode-core's integration tests, one module per topic, in one test binary: the solvers are
//! generic over the scalar type, so every test binary compiles its own copy of them at
//! opt-level 3, and one binary instead of ten saves most of that compile time in CI.
//! `no_alloc.rs` and `memory.rs` stay binaries of their own: each installs a counting global
//! allocator and must not share its process with other tests.

mod adjoint;
mod backprop;
mod common;
mod convergence;
mod errors;
mod landing;
mod mlp;
mod options;
mod properties;
mod torchdiffeq_problems;
mod torchdiffeq_rules;
