//! The device context: adapter, device, queue, the one bind group layout and every compute
//! pipeline, built once and shared (`Arc`) by every solver that runs on it.

use crate::error::{GpuError, Result};
use crate::shaders::{Entry, MLP_WGSL, RK_WGSL, SLOT};
use std::sync::{Arc, Mutex};

/// A GPU device ready to run the solver kernels: device, queue, bind group layout and the
/// compute pipelines of every `.wgsl` entry point, created once.
///
/// Errors are captured, not panicked on: device loss and errors raised while commands run are
/// recorded and returned by the next solver call.
#[derive(Debug)]
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    pub(crate) layout: wgpu::BindGroupLayout,
    pipelines: Vec<wgpu::ComputePipeline>,
    pub(crate) fault: Arc<Mutex<Option<GpuError>>>,
}

impl GpuContext {
    /// Opens the first high-performance adapter wgpu finds (backends can be chosen with wgpu's
    /// `WGPU_BACKEND` environment variable) and builds the pipelines. [`GpuError::NoAdapter`] where there is none.
    pub fn new() -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|_| GpuError::NoAdapter)?;
        Self::from_adapter(adapter)
    }

    /// Builds the context on a given adapter, asking for its full storage-buffer limits so large
    /// batches need fewer chunks.
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        // Everything the adapter offers, so large batches need few chunks.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ode-gpu"),
            // Timestamps, where offered, let solvers measure time spent in kernels.
            required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::RequestDevice {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;
        let fault: Arc<Mutex<Option<GpuError>>> = Arc::new(Mutex::new(None));
        {
            let f = fault.clone();
            device.set_device_lost_callback(move |reason, msg| {
                let mut g = f.lock().unwrap_or_else(|p| p.into_inner());
                g.get_or_insert(GpuError::DeviceLost(format!("{reason:?}: {msg}")));
            });
            let f = fault.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut g = f.lock().unwrap_or_else(|p| p.into_inner());
                g.get_or_insert(match e {
                    wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory {
                        what: "a command",
                        bytes: 0,
                    },
                    other => GpuError::Validation {
                        what: "a submitted command",
                        message: other.to_string(),
                    },
                });
            }));
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("ode-gpu arena + uniforms"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: std::num::NonZeroU64::new(SLOT),
                    },
                    count: None,
                },
            ],
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("ode-gpu pipeline layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mlp = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("mlp.wgsl"),
            source: wgpu::ShaderSource::Wgsl(MLP_WGSL.into()),
        });
        let rk = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("rk.wgsl"),
            source: wgpu::ShaderSource::Wgsl(RK_WGSL.into()),
        });
        let pipelines = Entry::ALL
            .iter()
            .map(|e| {
                let (name, in_mlp) = e.name();
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: Some(&pl),
                    module: if in_mlp { &mlp } else { &rk },
                    entry_point: Some(name),
                    compilation_options: Default::default(),
                    cache: None,
                })
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation {
                what: "shaders and pipelines",
                message: e.to_string(),
            });
        }
        Ok(Self {
            device,
            queue,
            info,
            limits,
            layout,
            pipelines,
            fault,
        })
    }

    /// The adapter's name and backend, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)`.
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// Full adapter information.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Whether the adapter is a CPU (software) implementation such as lavapipe.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether kernel time can be measured (timestamp queries).
    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The device limits in force.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    pub(crate) fn pipeline(&self, e: Entry) -> &wgpu::ComputePipeline {
        &self.pipelines[e as usize]
    }

    /// The first error recorded by the device callbacks, if any (taken).
    pub(crate) fn take_fault(&self) -> Option<GpuError> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Blocks until submitted work is done; errors if the device was lost or a command failed.
    pub(crate) fn wait(&self) -> Result<()> {
        let r = self.device.poll(wgpu::PollType::wait_indefinitely());
        if let Some(e) = self.take_fault() {
            return Err(e);
        }
        r.map(|_| ()).map_err(|e| GpuError::Readback(e.to_string()))
    }
}
