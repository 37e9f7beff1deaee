//! [`Runner`]: a solver's buffers on the device (the arena, the uniform slots, readback
//! buffers), recording and submitting dispatch sequences, uploads and readbacks, and the
//! optional kernel timer.

use crate::context::GpuContext;
use crate::dispatch::Op;
use crate::error::{GpuError, Result};
use crate::shaders::SLOT;
use std::sync::Arc;
use wgpu::BufferUsages as U;

/// GPU buffers sized for a layout, grown (never shrunk) as needed.
#[derive(Debug)]
struct Buffers {
    arena: wgpu::Buffer,
    arena_floats: usize,
    uniforms: wgpu::Buffer,
    uniform_bytes: u64,
    bind: wgpu::BindGroup,
    staging: wgpu::Buffer,
    staging_bytes: u64,
    count_rb: wgpu::Buffer,
}

/// Timestamp queries around every compute pass.
#[derive(Debug)]
struct Profiler {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    seconds: f64,
}

/// The ops of a solve's attempted steps: run `prologue` once, then `attempt` in rounds, each
/// followed by `count`, which leaves the number of running samples at float `count_at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempts<'a> {
    pub prologue: &'a [Op],
    pub attempt: &'a [Op],
    pub count: &'a [Op],
    pub count_at: usize,
}

/// Runs dispatch sequences on one context and moves data in and out of the arena.
#[derive(Debug)]
pub(crate) struct Runner {
    pub ctx: Arc<GpuContext>,
    bufs: Option<Buffers>,
    /// The last readback of [`Runner::read_regions`].
    pub host: Vec<f32>,
    /// Small readbacks (running count, timestamps) and fills, reused.
    small: Vec<f32>,
    /// Queue submissions so far.
    pub submits: usize,
    profiler: Option<Profiler>,
}

impl Runner {
    pub fn new(ctx: Arc<GpuContext>) -> Self {
        Self {
            ctx,
            bufs: None,
            host: Vec::new(),
            small: Vec::new(),
            submits: 0,
            profiler: None,
        }
    }

    /// Seconds spent in kernels, when profiling is on.
    pub fn kernel_seconds(&self) -> Option<f64> {
        self.profiler.as_ref().map(|p| p.seconds)
    }

    /// Turns the kernel timer on or off; returns whether it is on (false where the adapter has
    /// no timestamps).
    pub fn set_profiling(&mut self, on: bool) -> bool {
        if !on || !self.ctx.has_timestamps() {
            self.profiler = None;
            return false;
        }
        if self.profiler.is_none() {
            let dev = &self.ctx.device;
            self.profiler = Some(Profiler {
                set: dev.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("ode-gpu pass timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                resolve: dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("ode-gpu timestamp resolve"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                readback: dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("ode-gpu timestamp readback"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                seconds: 0.0,
            });
        }
        true
    }

    /// Makes sure the arena holds `floats`, the uniform buffer `uniform_bytes` and the readback
    /// buffer `staging_bytes` (recreating all of them, at least as large as before, if not).
    pub fn ensure_buffers(&mut self, floats: usize, uniform_bytes: u64, staging_bytes: u64) -> Result<()> {
        let fits = self.bufs.as_ref().is_some_and(|b| {
            b.arena_floats >= floats && b.uniform_bytes >= uniform_bytes && b.staging_bytes >= staging_bytes
        });
        if fits {
            return Ok(());
        }
        let (old_a, old_u, old_s) = self
            .bufs
            .as_ref()
            .map_or((0, 0, 0), |b| (b.arena_floats, b.uniform_bytes, b.staging_bytes));
        self.bufs = None;
        self.bufs = Some(create_buffers(
            &self.ctx,
            floats.max(old_a),
            uniform_bytes.max(old_u).max(SLOT),
            staging_bytes.max(old_s),
        )?);
        Ok(())
    }

    fn bufs(&self) -> &Buffers {
        self.bufs.as_ref().expect("buffers")
    }

    /// Writes the uniform slots of a plan.
    pub fn write_uniforms(&self, blob: &[u8]) {
        self.ctx.queue.write_buffer(&self.bufs().uniforms, 0, blob);
    }

    /// Records `ops` into one compute pass of a new encoder.
    fn encode(&self, enc: &mut wgpu::CommandEncoder, seqs: &[(&[Op], usize)]) {
        let b = self.bufs();
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("ode-gpu steps"),
            timestamp_writes: self.profiler.as_ref().map(|p| wgpu::ComputePassTimestampWrites {
                query_set: &p.set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        });
        for &(ops, times) in seqs {
            for _ in 0..times {
                for o in ops {
                    pass.set_pipeline(self.ctx.pipeline(o.entry));
                    pass.set_bind_group(0, &b.bind, &[o.slot]);
                    pass.dispatch_workgroups(o.groups.0, o.groups.1, o.groups.2);
                }
            }
        }
        drop(pass);
        if let Some(p) = &self.profiler {
            enc.resolve_query_set(&p.set, 0..2, &p.resolve, 0);
            enc.copy_buffer_to_buffer(&p.resolve, 0, &p.readback, 0, 16);
        }
    }

    /// After a submission that recorded a pass: adds its kernel time (waits for the device).
    fn collect_time(&mut self) -> Result<()> {
        let Some(p) = self.profiler.as_mut() else {
            return Ok(());
        };
        map_read(&self.ctx, &p.readback, 16, &mut self.small)?;
        let v = &self.small;
        // Two little-endian u64 tick counts, read back as four f32 bit patterns.
        let tick = |i: usize| (v[2 * i].to_bits() as u64) | ((v[2 * i + 1].to_bits() as u64) << 32);
        let ticks = [tick(0), tick(1)];
        let period = self.ctx.queue.get_timestamp_period() as f64;
        p.seconds += ticks[1].saturating_sub(ticks[0]) as f64 * period * 1e-9;
        Ok(())
    }

    /// Runs `ops` once, in one submission.
    pub fn run_once(&mut self, ops: &[Op]) -> Result<()> {
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        self.encode(&mut enc, &[(ops, 1)]);
        self.ctx.queue.submit([enc.finish()]);
        self.submits += 1;
        self.collect_time()
    }

    /// Runs the prologue and rounds of attempted steps, `batch` attempts in the first round,
    /// until no sample is running or `cap` attempts are done; returns the attempts.
    pub fn run_attempts(&mut self, steps: Attempts<'_>, mut batch: usize, cap: usize) -> Result<usize> {
        let mut done = 0usize;
        let mut first = true;
        loop {
            batch = batch.clamp(1, 256);
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            let pro: &[Op] = if first { steps.prologue } else { &[] };
            self.encode(&mut enc, &[(pro, 1), (steps.attempt, batch), (steps.count, 1)]);
            let b = self.bufs();
            enc.copy_buffer_to_buffer(&b.arena, (steps.count_at * 4) as u64, &b.count_rb, 0, 4);
            self.ctx.queue.submit([enc.finish()]);
            self.submits += 1;
            first = false;
            done += batch;
            let running = self.read_count()?;
            self.collect_time()?;
            // Every sample stops by the step budget (the kernels fail it), so `cap` attempts end it.
            if running == 0 || done >= cap {
                break;
            }
            // Most samples are done: a few more attempts per round.
            batch = (batch / 2).max(4);
        }
        Ok(done)
    }

    fn read_count(&mut self) -> Result<usize> {
        let b = self.bufs.as_ref().expect("buffers");
        map_read(&self.ctx, &b.count_rb, 4, &mut self.small)?;
        Ok(self.small[0] as usize)
    }

    /// Copies the float regions `(offset, len)` back, concatenated into `self.host`.
    pub fn read_regions(&mut self, regions: &[(usize, usize)]) -> Result<()> {
        let total: usize = regions.iter().map(|r| r.1).sum();
        let b = self.bufs.as_ref().expect("buffers");
        debug_assert!(
            (total * 4) as u64 <= b.staging_bytes,
            "readback larger than the staging buffer"
        );
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        let mut dst = 0u64;
        for &(off, len) in regions {
            enc.copy_buffer_to_buffer(&b.arena, (off * 4) as u64, &b.staging, dst, (len * 4) as u64);
            dst += (len * 4) as u64;
        }
        self.ctx.queue.submit([enc.finish()]);
        self.submits += 1;
        map_read(&self.ctx, &b.staging, (total * 4) as u64, &mut self.host)
    }

    /// Writes `data` into the arena at float `offset`.
    pub fn upload(&self, offset: usize, data: &[f32]) {
        if data.is_empty() {
            return;
        }
        self.ctx
            .queue
            .write_buffer(&self.bufs().arena, (offset * 4) as u64, bytemuck::cast_slice(data));
    }

    /// Sets `len` floats of the arena at `offset` to `value`.
    pub fn fill(&mut self, offset: usize, len: usize, value: f32) {
        let mut v = std::mem::take(&mut self.small);
        v.clear();
        v.resize(len, value);
        self.upload(offset, &v);
        self.small = v;
    }
}

/// The arena, uniform, readback and count buffers and their bind group, inside error scopes.
fn create_buffers(ctx: &GpuContext, arena_floats: usize, uniform_bytes: u64, staging_bytes: u64) -> Result<Buffers> {
    let dev = &ctx.device;
    let scope = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let vscope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
    let arena_bytes = (arena_floats * 4) as u64;
    let buffer = |label, size, usage| {
        dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let arena = buffer("ode-gpu arena", arena_bytes, U::STORAGE | U::COPY_DST | U::COPY_SRC);
    let uniforms = buffer("ode-gpu uniform slots", uniform_bytes, U::UNIFORM | U::COPY_DST);
    let staging = buffer("ode-gpu readback", staging_bytes, U::MAP_READ | U::COPY_DST);
    let count_rb = buffer("ode-gpu running count", 16, U::MAP_READ | U::COPY_DST);
    let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("ode-gpu bind group"),
        layout: &ctx.layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: arena.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniforms,
                    offset: 0,
                    size: std::num::NonZeroU64::new(SLOT),
                }),
            },
        ],
    });
    let verr = pollster::block_on(vscope.pop());
    if pollster::block_on(scope.pop()).is_some() {
        return Err(GpuError::OutOfMemory {
            what: "the solver arena",
            bytes: arena_bytes,
        });
    }
    if let Some(e) = verr {
        return Err(GpuError::Validation {
            what: "solver buffers",
            message: e.to_string(),
        });
    }
    Ok(Buffers {
        arena,
        arena_floats,
        uniforms,
        uniform_bytes,
        bind,
        staging,
        staging_bytes,
        count_rb,
    })
}

/// Reads `bytes` from the start of a mappable buffer into `out` (replacing its contents).
fn map_read(ctx: &GpuContext, buf: &wgpu::Buffer, bytes: u64, out: &mut Vec<f32>) -> Result<()> {
    let slice = buf.slice(..bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait()?;
    rx.recv()
        .map_err(|e| GpuError::Readback(e.to_string()))?
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    {
        let view = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        out.clear();
        out.extend_from_slice(bytemuck::cast_slice::<u8, f32>(&view));
    }
    buf.unmap();
    Ok(())
}
