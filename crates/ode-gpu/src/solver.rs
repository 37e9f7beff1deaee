//! [`GpuSolver`]: batched solves, field evaluations, VJPs and adjoint backward passes of the
//! reference-model MLP field on the GPU, with per-sample step control.
//!
//! All data of a solve lives in one storage buffer (the arena), sized for a chunk of rows and
//! reused across calls; every dispatch reads its layout from a 256-byte uniform slot written once
//! per layout. A solve records many attempted steps per submission and reads back only the
//! number of running samples (4 bytes) between submissions.

use crate::context::GpuContext;
use crate::error::{GpuError, Result};
use crate::shaders::{Ctl, Entry, Gemm, SLOT, ctl_flags, field, gemm_flags as gf, status};
use ode_core::{
    AdjointStats, ButcherTableau, Interpolation, Method, Mlp, OdeError, Report, SampleStats, SolveOptions, StepMode,
    Tolerance,
};
use std::sync::Arc;

/// Largest dense-output polynomial degree the shaders evaluate.
const DENSE_MAX: usize = 5;
/// Workgroup width of the per-sample and per-element passes.
const WG: u64 = 64;
/// Output tile edge of the tiled matrix kernel of `mlp.wgsl`.
const TILE: u64 = 64;
/// Most partial sums of a split reduction (tiled schedule).
const MAX_SPLITS: usize = 128;
/// Fewest reduction terms per partial sum.
const MIN_SPLIT: usize = 1024;

/// Partial sums a reduction of `k` terms is split into.
fn splits_for(k: usize) -> usize {
    k.div_ceil(MIN_SPLIT).clamp(1, MAX_SPLITS)
}

/// Float offsets of every region of the arena for a chunk of `rows` samples and `n_out` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Layout {
    rows: usize,
    n_out: usize,
    adjoint: bool,
    params: usize,
    gtheta: usize,
    tab: usize,
    ts: usize,
    count: usize,
    ctl: usize,
    y: usize,
    ynew: usize,
    a: usize,
    anew: usize,
    kend: usize,
    out: usize,
    gout: usize,
    zin: usize,
    ain: usize,
    k: usize,
    ka: usize,
    h1: usize,
    h2: usize,
    g1: usize,
    g2: usize,
    wts: usize,
    partial: usize,
    total: usize,
}

impl Layout {
    fn new(rows: usize, n_out: usize, adjoint: bool, l: usize, m: usize, s: usize, p: usize) -> Self {
        let mut at = 0usize;
        let mut take = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let (rl, rm) = (rows * l, rows * m);
        let sa = if adjoint { s } else { 1 };
        let adj = |n: usize| if adjoint { n } else { 0 };
        let mut lay = Layout {
            rows,
            n_out,
            adjoint,
            params: take(p),
            gtheta: take(adj(p)),
            tab: take(s * s + 3 * s + DENSE_MAX * s),
            ts: take(n_out),
            count: take(4),
            ctl: take(field::FIELDS * rows),
            y: take(rl),
            ynew: take(rl),
            a: take(adj(rl)),
            anew: take(adj(rl)),
            kend: take(rl),
            out: take(n_out * rl),
            gout: take(adj(n_out * rl)),
            zin: take(sa.max(2) * rl),
            ain: take(adj(s.max(2) * rl)),
            k: take(s.max(2) * rl),
            ka: take(adj(s.max(2) * rl)),
            h1: take(sa * rm),
            h2: take(sa * rm),
            g1: take(sa * rm),
            g2: take(sa * rm),
            wts: take(sa * rows),
            partial: take(adj(splits_for(s * rows) * (m * l).max(m * m))),
            total: 0,
        };
        lay.total = at;
        lay
    }
}

/// One dispatch: entry point, uniform slot (byte offset) and workgroup grid.
#[derive(Debug, Clone, Copy)]
struct Op {
    entry: Entry,
    slot: u32,
    groups: (u32, u32, u32),
}

/// The dispatch sequences of one layout and the uniform slots they read.
#[derive(Debug, Default)]
struct Plan {
    layout: Layout,
    blob: Vec<u8>,
    fwd_prologue: Vec<Op>,
    fwd_attempt: Vec<Op>,
    adj_prologue: Vec<Op>,
    adj_attempt: Vec<Op>,
    field: Vec<Op>,
    vjp: Vec<Op>,
    count: Vec<Op>,
    /// Field evaluations per forward attempt and in the forward prologue (batched calls).
    fwd_evals: (usize, usize),
}

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

/// Solves, field evaluations, VJPs and adjoint backward passes of the reference-model MLP field
/// `f(z) = W4·tanh(W2·tanh(W0·z + b0) + b2) + b4` on the GPU, in f32, with per-sample step
/// control, mirroring [`ode_core::Solver`] and [`ode_core::AdjointSolver`] in per-sample mode.
///
/// Build once and reuse: buffers and uniform slots are created on the first call of a shape
/// and kept; a solve records many steps per submission.
///
/// ```no_run
/// use ode_gpu::{GpuContext, GpuSolver};
/// use ode_core::{Method, SolveOptions};
/// use std::sync::Arc;
/// let ctx = Arc::new(GpuContext::new()?);
/// let params = vec![0.05f32; ode_core::Mlp::<f32>::param_count(4, 16)];
/// let mut gpu = GpuSolver::new(ctx, Method::Dopri5, SolveOptions::default(), 4, 16, params)?;
/// let ts = [0.0f32, 0.5, 1.0];
/// let y0 = vec![0.1f32; 4 * 1000];
/// let mut out = vec![0.0f32; ts.len() * y0.len()];
/// let report = gpu.solve_into(&ts, &y0, &mut out)?;
/// assert!(report.failures.is_empty());
/// # Ok::<(), ode_gpu::GpuError>(())
/// ```
#[derive(Debug)]
pub struct GpuSolver {
    ctx: Arc<GpuContext>,
    tableau: ButcherTableau,
    opts: SolveOptions<f32>,
    adj_opts: SolveOptions<f32>,
    latent: usize,
    hidden: usize,
    params: Vec<f32>,
    params_dirty: bool,
    adjoint_layout: bool,
    max_rows: Option<usize>,
    schedule: GemmSchedule,
    bufs: Option<Buffers>,
    plan: Option<Plan>,
    host: Vec<f32>,
    /// Small readbacks (running count, timestamps) and fills, reused.
    small: Vec<f32>,
    attempts_hint: usize,
    adj_attempts_hint: usize,
    submits: usize,
    profiler: Option<Profiler>,
}

/// Work counters of a solver so far, beyond the per-sample statistics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GpuCounters {
    /// Queue submissions.
    pub submits: usize,
    /// Seconds the device spent inside compute passes (timestamp queries), when profiling is on
    /// ([`GpuSolver::set_profiling`]) and the adapter supports timestamps.
    pub kernel_seconds: Option<f64>,
}

/// Timestamp queries around every compute pass.
#[derive(Debug)]
struct Profiler {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    seconds: f64,
}

impl GpuSolver {
    /// A solver of `method` for a field of latent size `latent` and hidden size `hidden` with
    /// the flat parameters `params` (ode-core's [`Mlp`] order). The adjoint uses the same options
    /// until [`GpuSolver::set_adjoint_options`].
    pub fn new(
        ctx: Arc<GpuContext>,
        method: Method,
        opts: SolveOptions<f32>,
        latent: usize,
        hidden: usize,
        params: Vec<f32>,
    ) -> Result<Self> {
        Self::from_tableau(ctx, method.tableau(), opts, latent, hidden, params)
    }

    /// As [`GpuSolver::new`] for any explicit tableau.
    pub fn from_tableau(
        ctx: Arc<GpuContext>,
        tableau: ButcherTableau,
        opts: SolveOptions<f32>,
        latent: usize,
        hidden: usize,
        params: Vec<f32>,
    ) -> Result<Self> {
        if latent == 0 || hidden == 0 {
            return Err(OdeError::ShapeMismatch {
                what: "MLP latent and hidden sizes",
                expected: 1,
                got: 0,
            }
            .into());
        }
        let want = Mlp::<f32>::param_count(latent, hidden);
        if params.len() != want {
            return Err(OdeError::ShapeMismatch {
                what: "MLP parameter vector",
                expected: want,
                got: params.len(),
            }
            .into());
        }
        if let Interpolation::Polynomial(p) = &tableau.interpolation {
            if p.iter().any(|r| r.len() > DENSE_MAX) {
                return Err(OdeError::Unsupported {
                    what: "dense output polynomials above degree 5 on the GPU",
                }
                .into());
            }
        }
        check_options(&opts, latent)?;
        let schedule = if ctx.is_software() {
            GemmSchedule::Rows
        } else {
            GemmSchedule::Tiled
        };
        Ok(Self {
            schedule,
            ctx,
            tableau,
            adj_opts: opts.clone(),
            opts,
            latent,
            hidden,
            params,
            params_dirty: true,
            adjoint_layout: false,
            max_rows: None,
            bufs: None,
            plan: None,
            host: Vec::new(),
            small: Vec::new(),
            attempts_hint: 0,
            adj_attempts_hint: 0,
            submits: 0,
            profiler: None,
        })
    }

    /// Options of the adjoint's backward solve (tolerances, step budget). Also lays the arena
    /// out for the adjoint from now on, so forward and backward passes of training share one
    /// layout (no rebuild between them).
    pub fn set_adjoint_options(&mut self, opts: SolveOptions<f32>) -> Result<()> {
        check_options(&opts, self.latent)?;
        self.adj_opts = opts;
        self.adjoint_layout = true;
        self.plan = None;
        Ok(())
    }

    /// Options of forward solves.
    pub fn set_options(&mut self, opts: SolveOptions<f32>) -> Result<()> {
        check_options(&opts, self.latent)?;
        self.opts = opts;
        self.plan = None;
        Ok(())
    }

    /// Caps the rows per chunk (larger batches are split into chunks of at most this many
    /// samples); by default chunks are as large as the device's buffer limits allow.
    pub fn set_max_rows_per_chunk(&mut self, rows: usize) {
        self.max_rows = Some(rows.max(1));
    }

    /// Chooses how matrix products are scheduled (by default [`GemmSchedule::Rows`] on CPU
    /// adapters, [`GemmSchedule::Tiled`] on GPUs).
    pub fn set_gemm_schedule(&mut self, schedule: GemmSchedule) {
        self.schedule = schedule;
        self.plan = None;
    }

    /// The matrix schedule in use.
    pub fn gemm_schedule(&self) -> GemmSchedule {
        self.schedule
    }

    /// Replaces the field parameters (uploaded before the next call).
    pub fn set_params(&mut self, params: &[f32]) -> Result<()> {
        if params.len() != self.params.len() {
            return Err(OdeError::ShapeMismatch {
                what: "MLP parameter vector",
                expected: self.params.len(),
                got: params.len(),
            }
            .into());
        }
        self.params.copy_from_slice(params);
        self.params_dirty = true;
        Ok(())
    }

    /// The context this solver runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Counters of the work done so far.
    pub fn counters(&self) -> GpuCounters {
        GpuCounters {
            submits: self.submits,
            kernel_seconds: self.profiler.as_ref().map(|p| p.seconds),
        }
    }

    /// Measures the time spent in kernels with timestamp queries (one pair per submission; a
    /// small cost). Returns whether profiling is on: false where the adapter has no timestamps.
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

    /// Rows per chunk for `n_out` output times: what fits the device's storage-buffer binding
    /// limit and dispatch grid, or the cap set by [`GpuSolver::set_max_rows_per_chunk`].
    pub fn rows_per_chunk(&self, n_out: usize, adjoint: bool) -> usize {
        let (l, m, s, p) = self.dims();
        let one = Layout::new(1, n_out, adjoint, l, m, s, p).total;
        let two = Layout::new(2, n_out, adjoint, l, m, s, p).total;
        let per_row = two - one;
        let fixed = one - per_row;
        let lim = &self.ctx.limits;
        let max_bytes = lim
            .max_storage_buffer_binding_size
            .min(lim.max_buffer_size)
            .min(u32::MAX as u64);
        let by_mem = ((max_bytes / 4) as usize).saturating_sub(fixed) / per_row;
        let by_grid = lim.max_compute_workgroups_per_dimension as usize * 16;
        let cap = self.max_rows.unwrap_or(usize::MAX);
        by_mem.min(by_grid).min(cap).max(1)
    }

    fn dims(&self) -> (usize, usize, usize, usize) {
        (self.latent, self.hidden, self.tableau.stages(), self.params.len())
    }

    /// Evaluates the field on a batch: `dy = f(y)` (`rows × latent`).
    pub fn eval(&mut self, y: &[f32], dy: &mut [f32]) -> Result<()> {
        let l = self.latent;
        check_batch(y, l, "state batch (rows × latent)")?;
        same_len(dy.len(), y.len(), "derivative buffer (rows × latent)")?;
        let rows = y.len() / l;
        let cap = self.rows_per_chunk(1, self.adjoint_layout);
        for r0 in (0..rows).step_by(cap) {
            let n = cap.min(rows - r0);
            self.prepare(n, 1, self.adjoint_layout)?;
            let lay = self.plan.as_ref().expect("plan").layout;
            self.upload(lay.y, &y[r0 * l..(r0 + n) * l]);
            let ops = std::mem::take(&mut self.plan.as_mut().expect("plan").field);
            let res = self.run_once(&ops);
            self.plan.as_mut().expect("plan").field = ops;
            res?;
            self.read_regions(&[(lay.k, n * l)])?;
            dy[r0 * l..(r0 + n) * l].copy_from_slice(&self.host[..n * l]);
        }
        Ok(())
    }

    /// Vector-Jacobian products as [`Mlp::vjp`]: `gy = vᵀ∂f/∂y`, `f_out = f(y)` when given, and
    /// `Σ_rows vᵀ∂f/∂θ` **added** to `gparams` when given.
    pub fn vjp(
        &mut self,
        y: &[f32],
        v: &[f32],
        f_out: Option<&mut [f32]>,
        gy: &mut [f32],
        gparams: Option<&mut [f32]>,
    ) -> Result<()> {
        let l = self.latent;
        check_batch(y, l, "state batch (rows × latent)")?;
        same_len(v.len(), y.len(), "cotangent batch (rows × latent)")?;
        same_len(gy.len(), y.len(), "state gradient buffer (rows × latent)")?;
        if let Some(f) = f_out.as_deref() {
            same_len(f.len(), y.len(), "field output buffer (rows × latent)")?;
        }
        if let Some(g) = gparams.as_deref() {
            same_len(g.len(), self.params.len(), "parameter gradient buffer")?;
        }
        self.adjoint_layout = true;
        let rows = y.len() / l;
        let cap = self.rows_per_chunk(1, true);
        let mut f_out = f_out;
        let mut gparams = gparams;
        for r0 in (0..rows).step_by(cap) {
            let n = cap.min(rows - r0);
            self.prepare(n, 1, true)?;
            let lay = self.plan.as_ref().expect("plan").layout;
            self.upload(lay.zin, &y[r0 * l..(r0 + n) * l]);
            self.upload(lay.ain, &v[r0 * l..(r0 + n) * l]);
            self.fill(lay.wts, n, 1.0);
            self.fill(lay.gtheta, self.params.len(), 0.0);
            let ops = std::mem::take(&mut self.plan.as_mut().expect("plan").vjp);
            let res = self.run_once(&ops);
            self.plan.as_mut().expect("plan").vjp = ops;
            res?;
            let p = self.params.len();
            self.read_regions(&[(lay.ka, n * l), (lay.k, n * l), (lay.gtheta, p)])?;
            gy[r0 * l..(r0 + n) * l].copy_from_slice(&self.host[..n * l]);
            if let Some(f) = f_out.as_deref_mut() {
                f[r0 * l..(r0 + n) * l].copy_from_slice(&self.host[n * l..2 * n * l]);
            }
            if let Some(g) = gparams.as_deref_mut() {
                for (a, b) in g.iter_mut().zip(&self.host[2 * n * l..2 * n * l + p]) {
                    *a += *b;
                }
            }
        }
        Ok(())
    }

    /// Solves from `y0` (`batch × latent`) and writes the states at every time of `ts` into `out`
    /// (`ts.len() × batch × latent`, `out[0] = y0`), as [`ode_core::Solver::solve_into`] in
    /// per-sample mode: each sample has its own steps and status. With `throw = false` failed
    /// samples are listed in the report and their later outputs are NaN.
    pub fn solve_into(&mut self, ts: &[f32], y0: &[f32], out: &mut [f32]) -> Result<Report> {
        let l = self.latent;
        check_batch(y0, l, "y0 (batch × dim)")?;
        check_times(ts)?;
        same_len(out.len(), ts.len() * y0.len(), "output buffer (times × batch × dim)")?;
        if let Some(r) = y0.iter().position(|v| !v.is_finite()) {
            return Err(OdeError::NonFinite {
                what: "initial state",
                t: ts[0] as f64,
                sample: r / l,
            }
            .into());
        }
        let batch = y0.len() / l;
        let n_out = ts.len();
        let w = batch * l;
        let cap = self.rows_per_chunk(n_out, self.adjoint_layout);
        let mut report = Report::default();
        report.stats.per_sample.reserve(batch);
        let mut failures: Vec<(usize, OdeError)> = Vec::new();
        for r0 in (0..batch).step_by(cap) {
            let n = cap.min(batch - r0);
            self.prepare(n, n_out, self.adjoint_layout)?;
            let lay = self.plan.as_ref().expect("plan").layout;
            self.upload(lay.ts, ts);
            self.upload(lay.y, &y0[r0 * l..(r0 + n) * l]);
            let evals = self.plan.as_ref().expect("plan").fwd_evals;
            let attempts = self.run_attempts(false)?;
            report.stats.nfe += evals.1 + attempts * evals.0;
            self.read_regions(&[(lay.out, n_out * n * l), (lay.ctl, field::FIELDS * n)])?;
            for k in 0..n_out {
                let src = &self.host[k * n * l..(k + 1) * n * l];
                out[k * w + r0 * l..k * w + (r0 + n) * l].copy_from_slice(src);
            }
            let ctl = &self.host[n_out * n * l..];
            let (stats, fails) = sample_report(ctl, n, r0, &self.opts, false);
            report.stats.per_sample.extend(stats);
            failures.extend(fails);
        }
        report.stats.accepted = report.stats.per_sample.iter().map(|s| s.accepted).sum();
        report.stats.rejected = report.stats.per_sample.iter().map(|s| s.rejected).sum();
        if let Some((_, e)) = failures.first() {
            if self.opts.throw {
                return Err(e.clone().into());
            }
        }
        report.failures = failures.into_iter().map(|(_, e)| e).collect();
        Ok(report)
    }

    /// The continuous adjoint, as [`ode_core::AdjointSolver::backward`] with the seminorm in
    /// per-sample mode: from the forward outputs `ys` (`ts.len() × batch × latent`) and the loss
    /// gradient on them `grad_out` (same shape), writes the gradient with respect to the initial
    /// state into `grad_y0` and **adds** the parameter gradient to `grad_params`.
    pub fn adjoint_backward(
        &mut self,
        ts: &[f32],
        ys: &[f32],
        grad_out: &[f32],
        grad_y0: &mut [f32],
        grad_params: &mut [f32],
    ) -> Result<AdjointStats> {
        let l = self.latent;
        check_times(ts)?;
        check_batch(grad_y0, l, "initial-state gradient (batch × dim)")?;
        let batch = grad_y0.len() / l;
        let n_out = ts.len();
        let w = batch * l;
        same_len(ys.len(), n_out * w, "forward outputs (times × batch × dim)")?;
        same_len(grad_out.len(), n_out * w, "output gradients (times × batch × dim)")?;
        same_len(grad_params.len(), self.params.len(), "parameter gradient buffer")?;
        self.adjoint_layout = true;
        let cap = self.rows_per_chunk(n_out, true);
        let p = self.params.len();
        let mut stats = AdjointStats::default();
        for r0 in (0..batch).step_by(cap) {
            let n = cap.min(batch - r0);
            self.prepare(n, n_out, true)?;
            let lay = self.plan.as_ref().expect("plan").layout;
            self.upload(lay.ts, ts);
            for k in 0..n_out {
                self.upload(lay.out + k * n * l, &ys[k * w + r0 * l..k * w + (r0 + n) * l]);
                self.upload(lay.gout + k * n * l, &grad_out[k * w + r0 * l..k * w + (r0 + n) * l]);
            }
            self.fill(lay.gtheta, p, 0.0);
            let attempts = self.run_attempts(true)?;
            let s = self.tableau.stages();
            stats.nfe += attempts * s;
            self.read_regions(&[(lay.a, n * l), (lay.gtheta, p), (lay.ctl, field::FIELDS * n)])?;
            grad_y0[r0 * l..(r0 + n) * l].copy_from_slice(&self.host[..n * l]);
            for (g, d) in grad_params.iter_mut().zip(&self.host[n * l..n * l + p]) {
                *g += *d;
            }
            let ctl = &self.host[n * l + p..];
            let (per, fails) = sample_report(ctl, n, r0, &self.adj_opts, true);
            if let Some((_, e)) = fails.into_iter().next() {
                return Err(e.into());
            }
            for st in per {
                stats.accepted += st.accepted;
                stats.rejected += st.rejected;
                stats.sample_evals += st.nfe;
            }
        }
        Ok(stats)
    }

    /// Makes sure buffers and the plan fit a chunk of `rows` rows and `n_out` times, and that
    /// the parameters and coefficients on the device are current.
    fn prepare(&mut self, rows: usize, n_out: usize, adjoint: bool) -> Result<()> {
        if let Some(e) = self.ctx.take_fault() {
            return Err(e);
        }
        let (l, m, s, p) = self.dims();
        let lay = Layout::new(rows, n_out, adjoint, l, m, s, p);
        let need_plan = self.plan.as_ref().is_none_or(|pl| pl.layout != lay);
        if need_plan {
            let plan = self.build_plan(lay);
            // The largest readback: outputs and control (forward) or a, θ̄ and control (adjoint).
            let rb = (n_out * rows * l).max(rows * l + p) + field::FIELDS * rows;
            self.ensure_buffers(lay.total, plan.blob.len() as u64, (rb * 4) as u64)?;
            let b = self.bufs.as_ref().expect("buffers");
            self.ctx.queue.write_buffer(&b.uniforms, 0, &plan.blob);
            self.plan = Some(plan);
            let tab = self.tableau_block();
            self.upload(lay.tab, &tab);
            self.params_dirty = true;
        }
        if self.params_dirty {
            let params = std::mem::take(&mut self.params);
            self.upload(0, &params);
            self.params = params;
            self.params_dirty = false;
        }
        Ok(())
    }

    fn ensure_buffers(&mut self, floats: usize, uniform_bytes: u64, staging_bytes: u64) -> Result<()> {
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
        let arena_floats = floats.max(old_a);
        let uniform_bytes = uniform_bytes.max(old_u).max(SLOT);
        let staging_bytes = staging_bytes.max(old_s);
        self.bufs = None;
        let dev = &self.ctx.device;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let vscope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let arena_bytes = (arena_floats * 4) as u64;
        let arena = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ode-gpu arena"),
            size: arena_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let uniforms = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ode-gpu uniform slots"),
            size: uniform_bytes,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let staging = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ode-gpu readback"),
            size: staging_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let count_rb = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ode-gpu running count"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("ode-gpu bind group"),
            layout: &self.ctx.layout,
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
        self.bufs = Some(Buffers {
            arena,
            arena_floats,
            uniforms,
            uniform_bytes,
            bind,
            staging,
            staging_bytes,
            count_rb,
        });
        Ok(())
    }

    /// The coefficient block of `rk.wgsl`: a[S·S], b[S], e[S], c[S], dense[S·5].
    fn tableau_block(&self) -> Vec<f32> {
        let t = &self.tableau;
        let s = t.stages();
        let mut v = vec![0.0f32; s * s + 3 * s + DENSE_MAX * s];
        for (i, row) in t.a.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                v[i * s + j] = x as f32;
            }
        }
        for j in 0..s {
            v[s * s + j] = t.b[j] as f32;
            v[s * s + s + j] = t.b_err.as_ref().map_or(0.0, |e| e[j] as f32);
            v[s * s + 2 * s + j] = t.c[j] as f32;
        }
        if let Interpolation::Polynomial(p) = &t.interpolation {
            for (j, row) in p.iter().enumerate() {
                for (m, &x) in row.iter().enumerate() {
                    v[s * s + 3 * s + j * DENSE_MAX + m] = x as f32;
                }
            }
        }
        v
    }

    fn ctl(&self, lay: &Layout, opts: &SolveOptions<f32>, adjoint: bool, stage: usize) -> Ctl {
        let t = &self.tableau;
        let adaptive = t.b_err.is_some() && opts.step_size.is_none();
        let mut flags = 0;
        if adaptive {
            flags |= ctl_flags::ADAPTIVE;
        }
        if t.is_fsal() {
            flags |= ctl_flags::FSAL;
        }
        let dense_deg = match &t.interpolation {
            Interpolation::Polynomial(p) => {
                flags |= ctl_flags::DENSE;
                p.iter().map(Vec::len).max().unwrap_or(0)
            }
            Interpolation::Hermite => 0,
        };
        if opts.step_size.is_some() {
            flags |= ctl_flags::STEP_SIZE;
        }
        if opts.max_step.is_some() {
            flags |= ctl_flags::MAX_STEP;
        }
        if opts.first_step.is_some() {
            flags |= ctl_flags::FIRST_STEP;
        }
        let pid = &opts.controller;
        let tol = |x: &Tolerance<f32>| x.get(0);
        let u = |x: usize| x as u32;
        Ctl {
            rows: u(lay.rows),
            dim: u(self.latent),
            stages: u(t.stages()),
            n_out: u(lay.n_out),
            y: u(lay.y),
            ynew: u(lay.ynew),
            ystage: u(lay.zin),
            k: u(lay.k),
            out: u(lay.out),
            ts: u(lay.ts),
            ctl: u(lay.ctl),
            tab: u(lay.tab),
            stage: u(stage),
            flags,
            max_steps: opts.max_num_steps.min(u32::MAX as usize) as u32,
            count: u(lay.count),
            rtol: tol(&opts.rtol),
            atol: tol(&opts.atol),
            step_size: opts.step_size.unwrap_or(0.0),
            max_step: opts.max_step.unwrap_or(0.0),
            min_step: opts.min_step,
            safety: pid.safety as f32,
            min_factor: pid.min_factor as f32,
            max_factor: pid.max_factor as f32,
            b1: (pid.pcoeff + pid.icoeff + pid.dcoeff) as f32,
            b2: -(pid.pcoeff + 2.0 * pid.dcoeff) as f32,
            b3: pid.dcoeff as f32,
            err_order: t.embedded_order.map_or(1.0, |q| q as f32 + 1.0),
            order: t.order as f32,
            first_step: opts.first_step.unwrap_or(0.0),
            dense_deg: u(dense_deg),
            kend: u(lay.kend),
            a: u(lay.a),
            anew: u(lay.anew),
            ain: u(lay.ain),
            ka: u(lay.ka),
            gout: u(lay.gout),
            wts: u(lay.wts),
            // The sign of the time direction is fixed per call: see `dir_slots`.
            dir: if adjoint { -1.0 } else { 1.0 },
            _pad: 0,
        }
    }

    fn build_plan(&self, lay: Layout) -> Plan {
        let (l, m, s, _) = self.dims();
        let r = lay.rows;
        let mut b = Builder {
            blob: Vec::new(),
            schedule: self.schedule,
        };
        let p = ParamOffsets::new(0, l, m);
        let gt = ParamOffsets::new(lay.gtheta, l, m);
        let per_sample = groups(r as u64, WG);
        let per_elem = groups((r * l) as u64, WG);
        let fwd: Vec<u32> = (0..s)
            .map(|i| b.push(bytemuck::bytes_of(&self.ctl(&lay, &self.opts, false, i))))
            .collect();
        let adj: Vec<u32> = (0..s)
            .map(|i| b.push(bytemuck::bytes_of(&self.ctl(&lay, &self.adj_opts, true, i))))
            .collect();
        let op = |entry, slot, groups| Op { entry, slot, groups };
        // The field from the rows at `x` into `y` with activations in stage `st` of h1/h2.
        // With `stage = Some(i)` the first layer forms stage i's input from y and the stages on
        // load (fused stage combination; `x` is then y).
        let field_ops = |b: &mut Builder, x: usize, y: usize, st: usize, stage: Option<usize>| -> Vec<Op> {
            let (h1, h2) = (lay.h1 + st * r * m, lay.h2 + st * r * m);
            let mut first = times_wt(r, m, l, x, p.w0, h1).bias(p.b0, gf::TANH);
            if let Some(i) = stage {
                first.flags |= gf::STAGE;
                first.st_k = lay.k as u32;
                first.st_stride = (r * l) as u32;
                first.st_hs = (lay.ctl + field::HS * r) as u32;
                first.st_tab = (lay.tab + i * s) as u32;
                first.st_n = i as u32;
            }
            vec![
                b.gemm(first),
                b.gemm(times_wt(r, m, m, h1, p.w1, h2).bias(p.b1, gf::TANH)),
                b.gemm(times_wt(r, l, m, h2, p.w2, y).bias(p.b2, 0)),
            ]
        };
        // Backward through the field at stage `st`: ka = alpha · (ain ᵀ∂f/∂z), through tanh
        // with the stage's activations.
        let vjp_ops = |b: &mut Builder, st: usize, alpha: f32| -> Vec<Op> {
            let (h1, h2) = (lay.h1 + st * r * m, lay.h2 + st * r * m);
            let (g1, g2) = (lay.g1 + st * r * m, lay.g2 + st * r * m);
            let (ain, ka) = (lay.ain + st * r * l, lay.ka + st * r * l);
            vec![
                b.gemm(times_w(r, m, l, ain, p.w2, g2).dtanh(h2)),
                b.gemm(times_w(r, m, m, g2, p.w1, g1).dtanh(h1)),
                b.gemm(Gemm {
                    alpha,
                    ..times_w(r, l, m, g1, p.w0, ka)
                }),
            ]
        };
        // Parameter VJPs summed over `stages × rows` with the quadrature weights at `wts`.
        let param_ops = |b: &mut Builder, stages: usize| -> Vec<Op> {
            let kk = (stages * r) as u32;
            let acc = gf::KSCALE | gf::ACCUM;
            let mk = |b: &mut Builder, mo: usize, no: usize, a: (usize, usize), bb: Option<usize>, c: usize| {
                b.gemm_long_k(
                    Gemm {
                        m: mo as u32,
                        n: no as u32,
                        k: kk,
                        flags: acc | if bb.is_none() { gf::BONES } else { 0 },
                        a_off: a.0 as u32,
                        a_rs: 1,
                        a_cs: a.1 as u32,
                        b_off: bb.unwrap_or(0) as u32,
                        b_rs: no as u32,
                        b_cs: 1,
                        c_off: c as u32,
                        c_rs: no as u32,
                        c_cs: 1,
                        scale_off: lay.wts as u32,
                        alpha: 1.0,
                        ..Default::default()
                    },
                    lay.partial,
                )
            };
            [
                mk(b, m, l, (lay.g1, m), Some(lay.zin), gt.w0),
                mk(b, m, 1, (lay.g1, m), None, gt.b0),
                mk(b, m, m, (lay.g2, m), Some(lay.h1), gt.w1),
                mk(b, m, 1, (lay.g2, m), None, gt.b1),
                mk(b, l, m, (lay.ain, l), Some(lay.h2), gt.w2),
                mk(b, l, 1, (lay.ain, l), None, gt.b2),
            ]
            .concat()
        };
        let t = &self.tableau;
        let fsal = t.is_fsal();
        let adaptive_f = t.b_err.is_some() && self.opts.step_size.is_none();
        let hairer_f = adaptive_f && self.opts.first_step.is_none();
        let mut plan = Plan {
            layout: lay,
            ..Default::default()
        };
        // Forward.
        plan.field = field_ops(&mut b, lay.y, lay.k, 0, None);
        plan.fwd_prologue.push(op(Entry::FwdInit, fwd[0], per_sample));
        plan.fwd_prologue.extend(plan.field.iter().copied());
        plan.fwd_evals.1 = 1;
        if hairer_f {
            plan.fwd_prologue.push(op(Entry::FwdInitA, fwd[0], per_sample));
            plan.fwd_prologue
                .extend(field_ops(&mut b, lay.zin, lay.k + r * l, 0, None));
            plan.fwd_prologue.push(op(Entry::FwdInitB, fwd[0], per_sample));
            plan.fwd_evals.1 += 1;
        }
        plan.fwd_attempt.push(op(Entry::FwdChoose, fwd[0], per_sample));
        for i in 1..s {
            if self.schedule == GemmSchedule::Tiled {
                // Fused: the first layer forms the stage input itself (one pass fewer per stage;
                // each row's combination is recomputed per 64-column tile, at most twice here).
                plan.fwd_attempt
                    .extend(field_ops(&mut b, lay.y, lay.k + i * r * l, 0, Some(i)));
            } else {
                // Rows schedule: every 4 columns would recompute it; a separate pass is cheaper.
                plan.fwd_attempt.push(op(Entry::StageInput, fwd[i], per_elem));
                plan.fwd_attempt
                    .extend(field_ops(&mut b, lay.zin, lay.k + i * r * l, 0, None));
            }
        }
        plan.fwd_evals.0 = s - 1;
        if fsal {
            plan.fwd_attempt.push(op(Entry::FwdSolutionFinish, fwd[0], per_sample));
        } else {
            // The derivative at the step end (Hermite output, next first stage) sits between.
            plan.fwd_attempt.push(op(Entry::FwdSolution, fwd[0], per_sample));
            plan.fwd_attempt.extend(field_ops(&mut b, lay.ynew, lay.kend, 0, None));
            plan.fwd_attempt.push(op(Entry::FwdFinish, fwd[0], per_sample));
            plan.fwd_evals.0 += 1;
        }
        plan.count.push(op(Entry::CountActive, fwd[0], (1, 1, 1)));
        if lay.adjoint {
            // Standalone VJP at stage 0 (inputs in zin[0], ain[0]; weights 1).
            plan.vjp = field_ops(&mut b, lay.zin, lay.k, 0, None);
            plan.vjp.extend(vjp_ops(&mut b, 0, 1.0));
            plan.vjp.extend(param_ops(&mut b, 1));
            // Adjoint.
            let adaptive_a = t.b_err.is_some() && self.adj_opts.step_size.is_none();
            let hairer_a = adaptive_a && self.adj_opts.first_step.is_none();
            let stage_eval = |b: &mut Builder, i: usize| -> Vec<Op> {
                let mut v = field_ops(b, lay.zin + i * r * l, lay.k + i * r * l, i, None);
                v.extend(vjp_ops(b, i, -1.0));
                v
            };
            plan.adj_prologue.push(op(Entry::AdjInit, adj[0], per_sample));
            if hairer_a {
                plan.adj_prologue.push(op(Entry::AdjStageInput, adj[0], per_elem));
                plan.adj_prologue.extend(stage_eval(&mut b, 0));
                plan.adj_prologue.push(op(Entry::AdjInitA, adj[0], per_sample));
                plan.adj_prologue.extend(stage_eval(&mut b, 1));
                plan.adj_prologue.push(op(Entry::AdjInitB, adj[0], per_sample));
            }
            plan.adj_attempt.push(op(Entry::AdjChoose, adj[0], per_sample));
            for i in 0..s {
                plan.adj_attempt.push(op(Entry::AdjStageInput, adj[i], per_elem));
                plan.adj_attempt.extend(stage_eval(&mut b, i));
            }
            plan.adj_attempt.push(op(Entry::AdjFinish, adj[0], per_sample));
            plan.adj_attempt.extend(param_ops(&mut b, s));
        }
        plan.blob = b.blob;
        plan
    }

    /// Records `ops` into one compute pass of a new encoder.
    fn encode(&self, enc: &mut wgpu::CommandEncoder, seqs: &[(&[Op], usize)]) {
        let b = self.bufs.as_ref().expect("buffers");
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

    fn run_once(&mut self, ops: &[Op]) -> Result<()> {
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        self.encode(&mut enc, &[(ops, 1)]);
        self.ctx.queue.submit([enc.finish()]);
        self.submits += 1;
        self.collect_time()
    }

    /// Runs the prologue and attempted steps until no sample is running; returns the attempts.
    fn run_attempts(&mut self, adjoint: bool) -> Result<usize> {
        let plan = self.plan.take().expect("plan");
        let res = self.attempt_loop(&plan, adjoint);
        self.plan = Some(plan);
        res
    }

    fn attempt_loop(&mut self, plan: &Plan, adjoint: bool) -> Result<usize> {
        let (prologue, attempt) = if adjoint {
            (&plan.adj_prologue, &plan.adj_attempt)
        } else {
            (&plan.fwd_prologue, &plan.fwd_attempt)
        };
        let opts = if adjoint { &self.adj_opts } else { &self.opts };
        let hint = if adjoint {
            self.adj_attempts_hint
        } else {
            self.attempts_hint
        };
        let fixed = self.tableau.b_err.is_none() || opts.step_size.is_some();
        let mut batch = if fixed && opts.step_size.is_none() {
            plan.layout.n_out - 1
        } else {
            hint.max(4)
        };
        let cap = opts.max_num_steps.saturating_add(1);
        let mut done = 0usize;
        let mut first = true;
        loop {
            batch = batch.clamp(1, 256);
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            let pro: &[Op] = if first { prologue } else { &[] };
            self.encode(&mut enc, &[(pro, 1), (attempt, batch), (&plan.count, 1)]);
            let b = self.bufs.as_ref().expect("buffers");
            enc.copy_buffer_to_buffer(&b.arena, (plan.layout.count * 4) as u64, &b.count_rb, 0, 4);
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
        if adjoint {
            self.adj_attempts_hint = done;
        } else {
            self.attempts_hint = done;
        }
        Ok(done)
    }

    fn read_count(&mut self) -> Result<usize> {
        let b = self.bufs.as_ref().expect("buffers");
        map_read(&self.ctx, &b.count_rb, 4, &mut self.small)?;
        Ok(self.small[0] as usize)
    }

    /// Copies the float regions `(offset, len)` back, concatenated into `self.host`.
    fn read_regions(&mut self, regions: &[(usize, usize)]) -> Result<()> {
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

    fn upload(&self, offset: usize, data: &[f32]) {
        if data.is_empty() {
            return;
        }
        let b = self.bufs.as_ref().expect("buffers");
        self.ctx
            .queue
            .write_buffer(&b.arena, (offset * 4) as u64, bytemuck::cast_slice(data));
    }

    fn fill(&mut self, offset: usize, len: usize, value: f32) {
        let mut v = std::mem::take(&mut self.small);
        v.clear();
        v.resize(len, value);
        self.upload(offset, &v);
        self.small = v;
    }
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

/// `C = A · Wᵀ` for a row-major `A` (`m × k`) at `a`, a PyTorch weight `W` (`n × k`) at `w` and a
/// row-major `C` (`m × n`) at `c`: a forward layer.
fn times_wt(m: usize, n: usize, k: usize, a: usize, w: usize, c: usize) -> Gemm {
    Gemm {
        b_rs: 1,
        b_cs: k as u32,
        ..times_w(m, n, k, a, w, c)
    }
}

/// `C = A · W` for a row-major `A` (`m × k`) at `a`, `W` (`k × n`) at `w` and a row-major `C`
/// (`m × n`) at `c`: a layer's state VJP.
fn times_w(m: usize, n: usize, k: usize, a: usize, w: usize, c: usize) -> Gemm {
    Gemm {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        a_off: a as u32,
        a_rs: k as u32,
        a_cs: 1,
        b_off: w as u32,
        b_rs: n as u32,
        b_cs: 1,
        c_off: c as u32,
        c_rs: n as u32,
        c_cs: 1,
        alpha: 1.0,
        ..Default::default()
    }
}

impl Gemm {
    /// Adds the bias at `bias` and the epilogue `flags` (e.g. tanh).
    fn bias(self, bias: usize, flags: u32) -> Self {
        Gemm {
            flags: self.flags | gf::BIAS | flags,
            bias_off: bias as u32,
            ..self
        }
    }

    /// Multiplies by `1 − h²` of the activations at `h` (same shape as C): back through tanh.
    fn dtanh(self, h: usize) -> Self {
        Gemm {
            flags: self.flags | gf::DTANH,
            aux_off: h as u32,
            aux_rs: self.n,
            ..self
        }
    }
}

/// Offsets of the six field tensors in a flat parameter block starting at `base`.
#[derive(Debug, Clone, Copy)]
struct ParamOffsets {
    w0: usize,
    b0: usize,
    w1: usize,
    b1: usize,
    w2: usize,
    b2: usize,
}

impl ParamOffsets {
    fn new(base: usize, l: usize, m: usize) -> Self {
        let w0 = base;
        let b0 = w0 + m * l;
        let w1 = b0 + m;
        let b1 = w1 + m * m;
        let w2 = b1 + m;
        let b2 = w2 + l * m;
        Self { w0, b0, w1, b1, w2, b2 }
    }
}

/// How the matrix products are scheduled on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmSchedule {
    /// 16×16 tiles staged in workgroup memory (`gemm`): for GPUs. The default on them.
    Tiled,
    /// One row and four columns per invocation, no workgroup memory or barriers
    /// (`gemm_rows`): for CPU adapters such as lavapipe. The default on them.
    Rows,
}

/// Collects uniform slots.
#[derive(Debug)]
struct Builder {
    blob: Vec<u8>,
    schedule: GemmSchedule,
}

impl Builder {
    fn push(&mut self, bytes: &[u8]) -> u32 {
        let off = self.blob.len();
        self.blob.extend_from_slice(bytes);
        self.blob.resize(off + SLOT as usize, 0);
        off as u32
    }

    fn gemm(&mut self, g: Gemm) -> Op {
        let slot = self.push(bytemuck::bytes_of(&g));
        match self.schedule {
            GemmSchedule::Tiled => Op {
                entry: Entry::Gemm,
                slot,
                groups: (
                    div_up(g.n as u64, TILE) as u32,
                    div_up(g.m as u64, TILE) as u32,
                    if g.k_split > 0 { g.k.div_ceil(g.k_split) } else { 1 },
                ),
            },
            GemmSchedule::Rows => Op {
                entry: Entry::GemmRows,
                slot,
                groups: (div_up(g.m as u64, WG) as u32, div_up(g.n as u64, 4) as u32, 1),
            },
        }
    }

    /// A reduction over a long `k` (the batch): on the tiled schedule split into partial sums at
    /// `partial` and added up by a second pass, so the whole device works on it.
    fn gemm_long_k(&mut self, g: Gemm, partial: usize) -> Vec<Op> {
        let splits = splits_for(g.k as usize);
        if self.schedule == GemmSchedule::Rows || splits == 1 {
            return vec![self.gemm(g)];
        }
        let count = g.m * g.n;
        let k_split = g.k.div_ceil(splits as u32);
        let part = self.gemm(Gemm {
            k_split,
            c_split: count,
            c_off: partial as u32,
            c_rs: g.n,
            c_cs: 1,
            ..g
        });
        let reduce = Gemm {
            m: count,
            k: g.k.div_ceil(k_split),
            flags: g.flags & gf::ACCUM,
            a_off: partial as u32,
            a_cs: count,
            c_off: g.c_off,
            ..Default::default()
        };
        let slot = self.push(bytemuck::bytes_of(&reduce));
        vec![
            part,
            Op {
                entry: Entry::ReducePartials,
                slot,
                groups: groups(count as u64, WG),
            },
        ]
    }
}

fn div_up(a: u64, b: u64) -> u64 {
    a.div_ceil(b).max(1)
}

/// A 2-D grid of `wg`-wide workgroups covering `n` invocations (rows of at most 65535).
fn groups(n: u64, wg: u64) -> (u32, u32, u32) {
    let total = div_up(n, wg);
    if total <= 65535 {
        (total as u32, 1, 1)
    } else {
        (65535, total.div_ceil(65535) as u32, 1)
    }
}

fn check_options(opts: &SolveOptions<f32>, dim: usize) -> Result<()> {
    opts.validate(dim)?;
    if opts.step_mode == StepMode::Shared {
        return Err(OdeError::Unsupported {
            what: "step_mode = shared on the GPU (every sample has its own steps there); use step_mode = per_sample",
        }
        .into());
    }
    if matches!(opts.rtol, Tolerance::PerComponent(_)) || matches!(opts.atol, Tolerance::PerComponent(_)) {
        return Err(OdeError::Unsupported {
            what: "per-component tolerances on the GPU; use scalar rtol and atol",
        }
        .into());
    }
    Ok(())
}

fn check_batch(y: &[f32], dim: usize, what: &'static str) -> Result<()> {
    if y.is_empty() || y.len() % dim != 0 {
        return Err(OdeError::ShapeMismatch {
            what,
            expected: dim * y.len().div_ceil(dim).max(1),
            got: y.len(),
        }
        .into());
    }
    Ok(())
}

fn same_len(got: usize, expected: usize, what: &'static str) -> Result<()> {
    if got != expected {
        return Err(OdeError::ShapeMismatch { what, expected, got }.into());
    }
    Ok(())
}

fn check_times(ts: &[f32]) -> Result<()> {
    if ts.len() < 2 {
        return Err(OdeError::TooFewTimes { got: ts.len() }.into());
    }
    if let Some(index) = ts.iter().position(|t| !t.is_finite()) {
        return Err(OdeError::NonFiniteTime {
            index,
            value: ts[index] as f64,
        }
        .into());
    }
    for i in 1..ts.len() {
        if ts[i] <= ts[i - 1] {
            return Err(if ts[1] < ts[0] {
                OdeError::Unsupported {
                    what: "decreasing output times on the GPU; solve forward in time",
                }
            } else {
                OdeError::NonMonotonicTimes {
                    index: i,
                    prev: ts[i - 1] as f64,
                    next: ts[i] as f64,
                }
            }
            .into());
        }
    }
    Ok(())
}

/// Per-sample statistics and failures from the control block of `n` rows starting at `r0`.
fn sample_report(
    ctl: &[f32],
    n: usize,
    r0: usize,
    opts: &SolveOptions<f32>,
    adjoint: bool,
) -> (Vec<SampleStats>, Vec<(usize, OdeError)>) {
    let f = |fld: usize, b: usize| ctl[fld * n + b];
    let mut stats = Vec::with_capacity(n);
    let mut fails = Vec::new();
    for b in 0..n {
        stats.push(SampleStats {
            nfe: f(field::NFE, b) as usize,
            accepted: f(field::ACC, b) as usize,
            rejected: f(field::REJ, b) as usize,
        });
        let t = f(field::T, b) as f64;
        let sample = r0 + b;
        let st = f(field::ST, b);
        let what = if adjoint { "adjoint state" } else { "state" };
        let e = if st == status::UNDERFLOW {
            OdeError::StepSizeUnderflow {
                t,
                h: f(field::HS, b).abs() as f64,
                min_step: (opts.min_step as f64).max(t.abs() * f32::EPSILON as f64 * 4.0),
                sample,
            }
        } else if st == status::MAX_STEPS {
            OdeError::MaxStepsExceeded {
                t,
                max_num_steps: opts.max_num_steps,
                sample,
            }
        } else if st == status::NON_FINITE {
            OdeError::NonFinite { what, t, sample }
        } else if st == status::RUNNING {
            // Cannot happen (the step budget stops every sample); never report a partial solve.
            OdeError::MaxStepsExceeded {
                t,
                max_num_steps: opts.max_num_steps,
                sample,
            }
        } else {
            continue;
        };
        fails.push((sample, e));
    }
    (stats, fails)
}
