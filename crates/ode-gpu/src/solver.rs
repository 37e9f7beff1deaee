//! [`GpuSolver`]: batched solves, field evaluations, VJPs and adjoint backward passes of the
//! reference-model MLP field on the GPU, with per-sample step control.
//!
//! All data of a solve lives in one storage buffer (the arena, `layout.rs`), sized for a chunk of
//! rows and reused across calls; every dispatch reads its layout from a 256-byte uniform slot
//! written once per layout (`plan.rs`). A solve records many attempted steps per submission and
//! reads back only the number of running samples (4 bytes) between submissions (`device.rs`).

use crate::context::GpuContext;
use crate::device::{Attempts, Runner};
use crate::dispatch::GemmSchedule;
use crate::error::Result;
use crate::layout::{Dims, Layout, tableau_block};
use crate::plan::{Plan, PlanSpec};
use crate::report::sample_report;
use crate::shaders::field;
use crate::validate::{check_batch, check_field, check_options, check_times, same_len};
use ode_core::{AdjointStats, ButcherTableau, Method, OdeError, Report, SolveOptions};
use std::sync::Arc;

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
    /// Device buffers, submissions and readbacks.
    run: Runner,
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
    plan: Option<Plan>,
    attempts_hint: usize,
    adj_attempts_hint: usize,
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

impl GpuSolver {
    /// A solver of `method` for a field of latent size `latent` and hidden size `hidden` with
    /// the flat parameters `params` (ode-core's [`Mlp`](ode_core::Mlp) order). The adjoint uses
    /// the same options until [`GpuSolver::set_adjoint_options`].
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
        check_field(&tableau, latent, hidden, &params)?;
        check_options(&opts, latent)?;
        let schedule = if ctx.is_software() {
            GemmSchedule::Rows
        } else {
            GemmSchedule::Tiled
        };
        Ok(Self {
            schedule,
            run: Runner::new(ctx),
            tableau,
            adj_opts: opts.clone(),
            opts,
            latent,
            hidden,
            params,
            params_dirty: true,
            adjoint_layout: false,
            max_rows: None,
            plan: None,
            attempts_hint: 0,
            adj_attempts_hint: 0,
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
        &self.run.ctx
    }

    /// Counters of the work done so far.
    pub fn counters(&self) -> GpuCounters {
        GpuCounters {
            submits: self.run.submits,
            kernel_seconds: self.run.kernel_seconds(),
        }
    }

    /// Measures the time spent in kernels with timestamp queries (one pair per submission; a
    /// small cost). Returns whether profiling is on: false where the adapter has no timestamps.
    pub fn set_profiling(&mut self, on: bool) -> bool {
        self.run.set_profiling(on)
    }

    /// Rows per chunk for `n_out` output times: what fits the device's storage-buffer binding
    /// limit and dispatch grid, or the cap set by [`GpuSolver::set_max_rows_per_chunk`].
    pub fn rows_per_chunk(&self, n_out: usize, adjoint: bool) -> usize {
        let one = Layout::new(1, n_out, adjoint, self.dims()).total;
        let two = Layout::new(2, n_out, adjoint, self.dims()).total;
        let per_row = two - one;
        let fixed = one - per_row;
        let lim = &self.run.ctx.limits;
        let max_bytes = lim
            .max_storage_buffer_binding_size
            .min(lim.max_buffer_size)
            .min(u32::MAX as u64);
        let by_mem = ((max_bytes / 4) as usize).saturating_sub(fixed) / per_row;
        let by_grid = lim.max_compute_workgroups_per_dimension as usize * 16;
        let cap = self.max_rows.unwrap_or(usize::MAX);
        by_mem.min(by_grid).min(cap).max(1)
    }

    fn dims(&self) -> Dims {
        Dims {
            l: self.latent,
            m: self.hidden,
            s: self.tableau.stages(),
            p: self.params.len(),
        }
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
            self.run.upload(lay.y, &y[r0 * l..(r0 + n) * l]);
            self.run.run_once(&self.plan.as_ref().expect("plan").field)?;
            self.run.read_regions(&[(lay.k, n * l)])?;
            dy[r0 * l..(r0 + n) * l].copy_from_slice(&self.run.host[..n * l]);
        }
        Ok(())
    }

    /// Vector-Jacobian products as [`Mlp::vjp`](ode_core::Mlp::vjp): `gy = vᵀ∂f/∂y`, `f_out = f(y)` when given, and
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
            self.run.upload(lay.zin, &y[r0 * l..(r0 + n) * l]);
            self.run.upload(lay.ain, &v[r0 * l..(r0 + n) * l]);
            self.run.fill(lay.wts, n, 1.0);
            self.run.fill(lay.gtheta, self.params.len(), 0.0);
            self.run.run_once(&self.plan.as_ref().expect("plan").vjp)?;
            let p = self.params.len();
            self.run
                .read_regions(&[(lay.ka, n * l), (lay.k, n * l), (lay.gtheta, p)])?;
            let host = &self.run.host;
            gy[r0 * l..(r0 + n) * l].copy_from_slice(&host[..n * l]);
            if let Some(f) = f_out.as_deref_mut() {
                f[r0 * l..(r0 + n) * l].copy_from_slice(&host[n * l..2 * n * l]);
            }
            if let Some(g) = gparams.as_deref_mut() {
                for (a, b) in g.iter_mut().zip(&host[2 * n * l..2 * n * l + p]) {
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
            self.run.upload(lay.ts, ts);
            self.run.upload(lay.y, &y0[r0 * l..(r0 + n) * l]);
            let evals = self.plan.as_ref().expect("plan").fwd_evals;
            let attempts = self.run_attempts(false)?;
            report.stats.nfe += evals.1 + attempts * evals.0;
            self.run
                .read_regions(&[(lay.out, n_out * n * l), (lay.ctl, field::FIELDS * n)])?;
            for k in 0..n_out {
                let src = &self.run.host[k * n * l..(k + 1) * n * l];
                out[k * w + r0 * l..k * w + (r0 + n) * l].copy_from_slice(src);
            }
            let ctl = &self.run.host[n_out * n * l..];
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
            self.run.upload(lay.ts, ts);
            for k in 0..n_out {
                self.run
                    .upload(lay.out + k * n * l, &ys[k * w + r0 * l..k * w + (r0 + n) * l]);
                self.run
                    .upload(lay.gout + k * n * l, &grad_out[k * w + r0 * l..k * w + (r0 + n) * l]);
            }
            self.run.fill(lay.gtheta, p, 0.0);
            let attempts = self.run_attempts(true)?;
            let s = self.tableau.stages();
            stats.nfe += attempts * s;
            self.run
                .read_regions(&[(lay.a, n * l), (lay.gtheta, p), (lay.ctl, field::FIELDS * n)])?;
            let host = &self.run.host;
            grad_y0[r0 * l..(r0 + n) * l].copy_from_slice(&host[..n * l]);
            for (g, d) in grad_params.iter_mut().zip(&host[n * l..n * l + p]) {
                *g += *d;
            }
            let ctl = &host[n * l + p..];
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
        if let Some(e) = self.run.ctx.take_fault() {
            return Err(e);
        }
        let dims = self.dims();
        let lay = Layout::new(rows, n_out, adjoint, dims);
        let need_plan = self.plan.as_ref().is_none_or(|pl| pl.layout != lay);
        if need_plan {
            let plan = self.plan_spec().build(lay);
            // The largest readback: outputs and control (forward) or a, θ̄ and control (adjoint).
            let rb = (n_out * rows * dims.l).max(rows * dims.l + dims.p) + field::FIELDS * rows;
            self.run
                .ensure_buffers(lay.total, plan.blob.len() as u64, (rb * 4) as u64)?;
            self.run.write_uniforms(&plan.blob);
            self.plan = Some(plan);
            self.run.upload(lay.tab, &tableau_block(&self.tableau));
            self.params_dirty = true;
        }
        if self.params_dirty {
            self.run.upload(0, &self.params);
            self.params_dirty = false;
        }
        Ok(())
    }

    fn plan_spec(&self) -> PlanSpec<'_> {
        PlanSpec {
            tableau: &self.tableau,
            opts: &self.opts,
            adj_opts: &self.adj_opts,
            schedule: self.schedule,
            latent: self.latent,
            hidden: self.hidden,
        }
    }

    /// Runs the prologue and attempted steps of the current plan until no sample is running;
    /// returns the attempts.
    fn run_attempts(&mut self, adjoint: bool) -> Result<usize> {
        let plan = self.plan.as_ref().expect("plan");
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
        let batch = if fixed && opts.step_size.is_none() {
            plan.layout.n_out - 1
        } else {
            hint.max(4)
        };
        let cap = opts.max_num_steps.saturating_add(1);
        let steps = Attempts {
            prologue,
            attempt,
            count: &plan.count,
            count_at: plan.layout.count,
        };
        let done = self.run.run_attempts(steps, batch, cap)?;
        if adjoint {
            self.adj_attempts_hint = done;
        } else {
            self.attempts_hint = done;
        }
        Ok(done)
    }
}
