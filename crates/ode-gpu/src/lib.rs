//! wgpu backend: batched Neural ODE solves and training on any GPU (Vulkan, Metal, DX12, WebGPU).
//!
//! ```
//! // The CPU reference every kernel here will be tested against is re-exported:
//! use ode_gpu::core::Method;
//! assert_eq!("dopri5".parse::<Method>().unwrap(), Method::Dopri5);
//! ```
//!
//! Status: not built yet (issue "ode-gpu"). This crate will hold the device context (device,
//! queue, pipelines, bind group layouts and reusable buffers, built once), and drive the WGSL
//! kernels of the top-level `shaders/` folder: the batched MLP vector field and its
//! vector-Jacobian products, fused euler/rk4/dopri5 steps with per-sample adaptive control and
//! dense output, and the adjoint backward dynamics. It is tested against [`ode_core`].

/// The CPU reference backend this crate mirrors.
pub use ode_core as core;
