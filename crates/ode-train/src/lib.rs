//! Neural ODE training: the data pipeline, the reference model, gradients by the continuous
//! adjoint and by backpropagation through the solver, Adam, the trainer and checkpoints.
//!
//! ```
//! use ode_train::gpu::core::Mlp;
//! // The reference vector field the trainer will fit: latent 32, hidden 64.
//! assert_eq!(Mlp::<f32>::param_count(32, 64), 64 * 32 + 64 + 64 * 64 + 64 + 32 * 64 + 32);
//! ```
//!
//! Status: not built yet (issue "ode-train"); see `../shared/reference-model.md` for the
//! contract it will implement.

/// The GPU backend (and through it the CPU reference) this crate trains on.
pub use ode_gpu as gpu;
