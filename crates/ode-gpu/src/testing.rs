//! Internals for the workspace's cross-crate tests, behind the `testing` feature and outside the
//! crate's API: the WGSL sources, the uniform structs, flags, control fields, status codes and
//! workgroup sizes the host shares with them, and the compute entry points.

pub use crate::shaders::*;

/// Every shader file with its name, for validation.
pub const ALL: [(&str, &str); 2] = [("mlp.wgsl", MLP_WGSL), ("rk.wgsl", RK_WGSL)];
