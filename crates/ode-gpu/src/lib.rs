//! GPU backend of the Neural ODE toolkit: hand-written WGSL kernels (in the workspace's
//! top-level `shaders/`) run the batched MLP vector field, its VJPs, Runge-Kutta steps with
//! per-sample adaptive control and dense output, and the adjoint's backward dynamics, through
//! wgpu on Vulkan, Metal, DX12 or a software adapter (lavapipe).
//!
//! ```
//! use ode_core::{Method, Mlp, SolveOptions};
//! use ode_gpu::{GpuContext, GpuError, GpuSolver};
//! use std::sync::Arc;
//!
//! let ctx = match GpuContext::new() {
//!     Ok(ctx) => Arc::new(ctx),
//!     Err(GpuError::NoAdapter) => return Ok(()), // no GPU here: use ode-core on the CPU
//!     Err(e) => return Err(e),
//! };
//! let (latent, hidden) = (4, 16);
//! let params: Vec<f32> = (0..Mlp::<f32>::param_count(latent, hidden)).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect();
//! let mut gpu = GpuSolver::new(ctx, Method::Dopri5, SolveOptions::default(), latent, hidden, params)?;
//! let ts = [0.0f32, 0.5, 1.0];
//! let y0 = vec![0.1f32; latent * 100];
//! let mut out = vec![0.0f32; ts.len() * y0.len()];
//! let report = gpu.solve_into(&ts, &y0, &mut out)?;
//! assert!(report.failures.is_empty());
//! assert_eq!(report.stats.per_sample.len(), 100);
//! # Ok::<(), GpuError>(())
//! ```

mod context;
mod error;
pub mod shaders;
mod solver;

/// The CPU reference backend this crate mirrors.
pub use ode_core as core;

pub use context::GpuContext;
pub use error::{GpuError, Result};
pub use solver::{GpuCounters, GpuSolver};
