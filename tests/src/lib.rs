//! Cross-crate tests of the workspace (in `tests/`): end-to-end runs of the `ode` command now,
//! GPU-against-CPU-reference checks as the GPU backend lands.
