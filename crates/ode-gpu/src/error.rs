//! Typed errors of the GPU backend: every failure of the device, of a shader or of a solve is
//! returned, never a panic.

use ode_core::OdeError;

/// What went wrong on the GPU side.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuError {
    /// No adapter (GPU or software renderer) could be found.
    #[error(
        "no GPU adapter found (wgpu saw none on Vulkan, Metal, DX12 or GL); on Linux without a GPU install \
         Mesa's software Vulkan driver (`apt-get install mesa-vulkan-drivers`) or use `device = \"cpu\"`"
    )]
    NoAdapter,
    /// The adapter refused to open a device.
    #[error("the GPU adapter `{adapter}` refused to open a device: {reason}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's reason.
        reason: String,
    },
    /// The device was lost (driver reset, GPU removed, timeout).
    #[error("the GPU device was lost: {0}; create a new `GpuContext`")]
    DeviceLost(String),
    /// An allocation failed.
    #[error("out of GPU memory allocating {what} ({bytes} bytes); lower the batch size or `max_rows_per_chunk`")]
    OutOfMemory {
        /// The buffer being created.
        what: &'static str,
        /// Its size.
        bytes: u64,
    },
    /// wgpu rejected a shader, a pipeline or a command (a bug in this crate or an unusual adapter).
    #[error("GPU validation error in {what}: {message}")]
    Validation {
        /// What was being created or run.
        what: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// Waiting for the device or reading a buffer back failed.
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),
    /// A solver error, with the same variants as on the CPU (bad input, a sample that failed).
    #[error(transparent)]
    Ode(#[from] OdeError),
}

/// Result alias of this crate.
pub type Result<T, E = GpuError> = std::result::Result<T, E>;

impl From<GpuError> for OdeError {
    /// Solver errors pass through; device errors become [`OdeError::Backend`] messages so
    /// callers that only know `OdeError` (the trainer) can stop with the reason.
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::Ode(e) => e,
            other => OdeError::Backend {
                message: other.to_string(),
            },
        }
    }
}
