//! The continuous adjoint method: gradients of a loss on the outputs of a solve by solving the
//! augmented system backwards in time, with memory independent of the number of steps.

use crate::Scalar;
use crate::control::{self, Batch, ControlState};
use crate::error::{OdeError, Result};
use crate::grad::VjpField;
use crate::options::{SolveOptions, StepMode};
use crate::rk::{Coeffs, Zeros, add_to, all_finite, embedded_error, error_scale};
use crate::tableau::Method;
use std::ops::Range;

/// Which parts of the augmented state the adjoint's step-size control looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AdjointNorm {
    /// The state and the state adjoint only; parameter adjoints are left out of the error norm
    /// (Kidger, Chen & Lyons 2021, "Hey, that's not an ODE"): fewer steps, same accuracy of the
    /// gradient in practice. The default.
    #[default]
    Seminorm,
    /// The largest RMS among the state, the state adjoint and each parameter tensor's adjoint
    /// (torchdiffeq's default). Needs `StepMode::Shared`.
    Mixed,
}

crate::choice_names!(AdjointNorm, "adjoint norm" { Seminorm => "seminorm", Mixed => "mixed" });

/// Work counters of a backward (adjoint) solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdjointStats {
    /// Batched vector-Jacobian products (each counts as one evaluation).
    pub nfe: usize,
    /// Accepted steps (summed over samples in per-sample mode).
    pub accepted: usize,
    /// Rejected steps (summed over samples in per-sample mode).
    pub rejected: usize,
    /// VJPs summed over samples (`nfe` weighted by the rows each call covered).
    pub sample_evals: usize,
}

/// Scratch space and per-sample state of the backward solve, kept between calls. `z`/`a` are
/// the state and the state adjoint (`batch × dim`); `kz`/`ka` their stage derivatives and
/// `zin`/`ain` the stage inputs; `g` each stage's weighted parameter VJP (without records) or
/// `rec` each stage's per-row VJP records, with the step `rec_h` their cotangents were weighted
/// by; `theta` the parameter adjoint; `c*` hold the rows gathered for one batched VJP.
#[derive(Debug, Default)]
struct Ws<T> {
    z: Vec<T>,
    a: Vec<T>,
    z_new: Vec<T>,
    a_new: Vec<T>,
    kz: Vec<Vec<T>>,
    ka: Vec<Vec<T>>,
    zin: Vec<Vec<T>>,
    ain: Vec<Vec<T>>,
    g: Vec<Vec<T>>,
    rec: Vec<Vec<T>>,
    rec_h: Vec<Vec<T>>,
    theta: Vec<T>,
    theta_new: Vec<T>,
    // Gathered rows.
    ct: Vec<T>,
    cz: Vec<T>,
    cv: Vec<T>,
    cf: Vec<T>,
    cgy: Vec<T>,
    crec: Vec<T>,
    /// The rows of the current stage's VJP.
    eval_rows: Vec<usize>,
    // Per row.
    t: Vec<T>,
    h: Vec<T>,
    hs: Vec<T>,
    ctrl: Vec<ControlState>,
    live: Vec<bool>,
    /// Stage 1 of the next try is known: the last stage of an accepted FSAL step, or the first
    /// stage of a rejected try (both at the row's current `(t, z, a)`).
    k0_known: Vec<bool>,
    ok: Vec<bool>,
    steps: Vec<usize>,
    active: Vec<usize>,
    acc_rows: Vec<usize>,
    // Hairer's initial step: norm pairs, and (d0 then h0, d1) per row.
    norms: Vec<(f64, f64)>,
    probe: Vec<[f64; 2]>,
    stats: AdjointStats,
}

/// What one backward solve holds fixed.
struct Backward<'a, T> {
    rk: &'a Coeffs<T>,
    opts: &'a SolveOptions<T>,
    norm: AdjointNorm,
    /// The parameter tensors' ranges (the mixed norm takes each one's RMS).
    groups: &'a [Range<usize>],
    batch: Batch,
    /// Error-controlled steps.
    adaptive: bool,
    /// Values per VJP record, 0 when the parameter products are formed stage by stage (a field
    /// without records, or the mixed norm, which needs each stage's parameter VJP).
    rec_len: usize,
    /// A step's first stage is the previous accepted step's last (FSAL with records).
    fsal: bool,
}

impl<T> Backward<'_, T> {
    /// Row `r`'s range in the batch buffers.
    fn row(&self, r: usize) -> Range<usize> {
        r * self.batch.dim..(r + 1) * self.batch.dim
    }
}

/// The output interval being integrated, from its upper time down to `t_lo`.
#[derive(Debug, Clone, Copy)]
struct Interval<T> {
    t_lo: T,
    /// The sign of the steps.
    dir: T,
}

/// Solves the adjoint system `dz/dt = f(z)`, `da/dt = -aᵀ ∂f/∂z`, `dθ̄/dt = -aᵀ ∂f/∂θ` backwards
/// from the last output time to the first, adding the loss gradient at each output time to `a`.
/// The forward trajectory is not stored: `z` is re-solved backwards from the final state.
///
/// ```
/// use ode_core::{AdjointNorm, AdjointSolver, Method, Mlp, SolveOptions, Solver};
/// let mut f = Mlp::<f64>::new(2, 4, |fan_in| 0.5 / fan_in as f64);
/// let ts = [0.0, 0.5, 1.0];
/// let y0 = [1.0, -1.0];
/// let opts = SolveOptions::default().rtol(1e-8).atol(1e-10);
/// let sol = Solver::new(Method::Dopri5, opts.clone())?.solve(&mut f, &ts, &y0)?;
/// // d/dθ of the sum of the outputs at t = 1.
/// let mut grad_out = vec![0.0; 6];
/// grad_out[4..].fill(1.0);
/// let (mut gy0, mut gp) = (vec![0.0; 2], vec![0.0; f.num_params()]);
/// let mut adj = AdjointSolver::new(Method::Dopri5, opts, AdjointNorm::Seminorm)?;
/// let stats = adj.backward(&mut f, &ts, &sol.ys, &grad_out, &mut gy0, &mut gp, &[])?;
/// assert!(stats.nfe > 0 && gp.iter().any(|g| *g != 0.0));
/// # Ok::<(), ode_core::OdeError>(())
/// ```
#[derive(Debug)]
pub struct AdjointSolver<T: Scalar> {
    rk: Coeffs<T>,
    opts: SolveOptions<T>,
    norm: AdjointNorm,
    ws: Ws<T>,
}

impl<T: Scalar> AdjointSolver<T> {
    /// An adjoint solver for `method` with its own options (the trainer passes the forward
    /// tolerances by default) and error norm.
    pub fn new(method: Method, opts: SolveOptions<T>, norm: AdjointNorm) -> Result<Self> {
        opts.validate_for(None)?;
        if norm == AdjointNorm::Mixed && opts.step_mode == StepMode::PerSample {
            return Err(OdeError::Unsupported {
                what: "adjoint norm 'mixed' with per-sample steps (parameter adjoints are shared by the batch); \
                       use step mode 'shared' or the 'seminorm' adjoint norm",
            });
        }
        Ok(Self {
            rk: Coeffs::new(&method.tableau()),
            opts,
            norm,
            ws: Ws::default(),
        })
    }

    /// The options of the backward solve.
    pub fn options(&self) -> &SolveOptions<T> {
        &self.opts
    }

    /// Runs the adjoint from `ts.last()` back to `ts[0]`.
    ///
    /// `ys` are the forward solution's states at every output time (`ts.len() × batch × dim`,
    /// as [`crate::Solver::solve_into`] writes them): `z` starts from the last and is reset to the
    /// forward value at each output time (as torchdiffeq does), so errors of the backward
    /// re-integration of `z` do not accumulate across intervals. `grad_out` is the loss gradient with
    /// respect to every output (`ts.len() × batch × dim`). Writes `∂loss/∂y0` into `grad_y0` and
    /// **adds** `∂loss/∂θ` to `grad_params`. `param_groups` are the parameter tensors' ranges,
    /// used by the `mixed` norm (ignored by `seminorm`; empty means one group).
    #[allow(clippy::too_many_arguments)]
    pub fn backward<F: VjpField<T> + ?Sized>(
        &mut self,
        f: &mut F,
        ts: &[T],
        ys: &[T],
        grad_out: &[T],
        grad_y0: &mut [T],
        grad_params: &mut [T],
        param_groups: &[Range<usize>],
    ) -> Result<AdjointStats> {
        let batch = check_shapes(f, ts, ys, grad_out, grad_y0, grad_params)?;
        let (n, p) = (f.dim(), f.num_params());
        self.opts.validate(n)?;
        let all = 0..p;
        let full = std::slice::from_ref(&all);
        let rec_len = if self.norm == AdjointNorm::Mixed {
            0
        } else {
            f.record_len()
        };
        let Self { rk, opts, norm, ws } = self;
        let bw = Backward {
            rk,
            opts,
            norm: *norm,
            groups: if param_groups.is_empty() { full } else { param_groups },
            batch: Batch {
                rows: batch,
                dim: n,
                shared: opts.step_mode == StepMode::Shared,
            },
            adaptive: rk.b_err.is_some() && opts.step_size.is_none(),
            rec_len,
            fsal: rk.fsal && rec_len > 0,
        };
        let w = batch * n;
        let last = ts.len() - 1;
        ws.prepare(&bw, p, &ys[last * w..], &grad_out[last * w..]);
        if rec_len > 0 {
            f.discard_records();
        }
        let restart = bw.opts.controller_kind.restarts_intervals();
        for k in (1..ts.len()).rev() {
            let (t_hi, t_lo) = (ts[k], ts[k - 1]);
            let span = Interval {
                t_lo,
                dir: if t_lo < t_hi { -T::one() } else { T::one() },
            };
            ws.active.clear();
            ws.active.extend(0..batch);
            ws.t.fill(t_hi);
            ws.live.fill(true);
            ws.k0_known.fill(false);
            if bw.adaptive && (k == last || restart) {
                if restart {
                    ws.ctrl.fill(ControlState::default());
                }
                ws.initial_steps(f, &bw, span.dir);
            }
            ws.integrate(f, &bw, span)?;
            // The loss gradient at this output time joins the state adjoint; the state restarts
            // from the forward solution there.
            add_to(&mut ws.a, T::one(), &grad_out[(k - 1) * w..k * w]);
            ws.z.copy_from_slice(&ys[(k - 1) * w..k * w]);
        }
        if rec_len > 0 {
            f.flush_records(&mut ws.theta);
        }
        grad_y0.copy_from_slice(&ws.a);
        add_to(grad_params, T::one(), &ws.theta);
        Ok(ws.stats)
    }
}

/// Checks the shapes of a backward solve's inputs; returns the batch size.
fn check_shapes<T: Scalar, F: VjpField<T> + ?Sized>(
    f: &F,
    ts: &[T],
    ys: &[T],
    grad_out: &[T],
    grad_y0: &[T],
    grad_params: &[T],
) -> Result<usize> {
    let (n, p) = (f.dim(), f.num_params());
    if ts.len() < 2 {
        return Err(OdeError::TooFewTimes { got: ts.len() });
    }
    let per_time = ys.len() / ts.len();
    if n == 0 || per_time == 0 || ys.len() % ts.len() != 0 || per_time % n != 0 {
        return Err(OdeError::ShapeMismatch {
            what: "forward states (times × batch × dim)",
            expected: n.max(1),
            got: ys.len(),
        });
    }
    let batch = per_time / n;
    for (what, expected, got) in [
        (
            "output cotangents (times × batch × dim)",
            ts.len() * batch * n,
            grad_out.len(),
        ),
        ("initial-state gradient (batch × dim)", batch * n, grad_y0.len()),
        ("parameter gradient", p, grad_params.len()),
    ] {
        if expected != got {
            return Err(OdeError::ShapeMismatch { what, expected, got });
        }
    }
    Ok(batch)
}

impl<T: Scalar> Ws<T> {
    /// Sizes the buffers, resets the per-row state, and starts from the last output's state
    /// `z_end` and cotangent `a_end`.
    fn prepare(&mut self, bw: &Backward<'_, T>, p: usize, z_end: &[T], a_end: &[T]) {
        let (batch, s) = (bw.batch.rows, bw.rk.stages);
        let w = batch * bw.batch.dim;
        let fit = |v: &mut Vec<T>, len: usize| {
            v.clear();
            v.resize(len, T::zero());
        };
        for v in [
            &mut self.z_new,
            &mut self.a_new,
            &mut self.cz,
            &mut self.cv,
            &mut self.cf,
            &mut self.cgy,
        ] {
            fit(v, w);
        }
        for v in [&mut self.kz, &mut self.ka, &mut self.zin, &mut self.ain] {
            v.resize_with(s, Vec::new);
            v.iter_mut().for_each(|x| fit(x, w));
        }
        let (g_len, rec) = if bw.rec_len > 0 { (0, bw.rec_len) } else { (p, 0) };
        self.g.resize_with(s, Vec::new);
        self.g.iter_mut().for_each(|x| fit(x, g_len));
        self.rec.resize_with(s, Vec::new);
        self.rec.iter_mut().for_each(|x| fit(x, batch * rec));
        self.rec_h.resize_with(s, Vec::new);
        self.rec_h.iter_mut().for_each(|x| fit(x, batch));
        fit(&mut self.crec, batch * rec);
        fit(&mut self.theta, p);
        fit(&mut self.theta_new, p);
        for v in [&mut self.t, &mut self.h, &mut self.hs, &mut self.ct] {
            fit(v, batch);
        }
        self.ctrl.clear();
        self.ctrl.resize(batch, ControlState::default());
        for (v, x) in [
            (&mut self.live, true),
            (&mut self.ok, false),
            (&mut self.k0_known, false),
        ] {
            v.clear();
            v.resize(batch, x);
        }
        self.steps.clear();
        self.steps.resize(batch, 0);
        self.probe.clear();
        self.probe.resize(batch, [0.0; 2]);
        self.z.clear();
        self.z.extend_from_slice(z_end);
        self.a.clear();
        self.a.extend_from_slice(a_end);
        self.stats = AdjointStats::default();
    }

    /// The integration loop over one output interval, the forward loop's phases on the
    /// augmented system, until every row has reached `span.t_lo`.
    fn integrate<F: VjpField<T> + ?Sized>(&mut self, f: &mut F, bw: &Backward<'_, T>, span: Interval<T>) -> Result<()> {
        loop {
            let live = &self.live;
            self.active.retain(|&r| live[r]);
            if self.active.is_empty() {
                return Ok(());
            }
            self.choose_steps(bw, span)?;
            self.stages(f, bw);
            self.error_estimate(bw);
            self.accept_reject(bw)?;
            self.param_adjoint(f, bw);
            self.adapt_step_size(bw);
            self.commit(f, bw, span);
        }
    }

    /// `kz[slot] = f(z)` and `ka[slot] = -aᵀ∂f/∂z` for every row at its time `t`, with `z` and `a`
    /// in the gather buffers `cz` and `cv`. Slot 0 is the first stage at every row's `(t, z, a)`:
    /// with FSAL records it is kept, with its record (cotangent weight 1), as the first try's.
    fn eval_derivatives<F: VjpField<T> + ?Sized>(&mut self, f: &mut F, bw: &Backward<'_, T>, slot: usize) {
        let (batch, len) = (bw.batch.rows, bw.rec_len);
        let w = self.z.len();
        self.ct[..batch].copy_from_slice(&self.t[..batch]);
        let (t, z, v) = (&self.ct[..batch], &self.cz[..w], &self.cv[..w]);
        let keep = slot == 0 && bw.fsal;
        if keep {
            f.vjp_record(t, z, v, Some(&mut self.cf[..w]), &mut self.cgy[..w], &mut self.rec[0]);
            self.rec_h[0].fill(T::one());
            self.k0_known.fill(true);
            debug_assert_eq!(self.rec[0].len(), batch * len);
        } else {
            f.vjp(t, z, v, Some(&mut self.cf[..w]), &mut self.cgy[..w], None);
        }
        self.stats.nfe += 1;
        self.stats.sample_evals += batch;
        self.kz[slot][..w].copy_from_slice(&self.cf[..w]);
        for (d, g) in self.ka[slot][..w].iter_mut().zip(&self.cgy[..w]) {
            *d = -*g;
        }
    }

    /// Hairer's initial step for the augmented `(z, a)` system, per sample or over the batch
    /// (the norm of a row is the larger of its `z` and `a` norms), or `first_step` when given.
    fn initial_steps<F: VjpField<T> + ?Sized>(&mut self, f: &mut F, bw: &Backward<'_, T>, dir: T) {
        if let Some(h) = bw.opts.first_step.map(|h| h.abs().f64()) {
            self.h.iter_mut().for_each(|x| *x = dir * T::c(h));
            return;
        }
        let (opts, batch, n) = (bw.opts, bw.batch.rows, bw.batch.dim);
        let sc = |i: usize, x: T| control::state_scale(opts, i, x);
        self.cz.copy_from_slice(&self.z);
        self.cv.copy_from_slice(&self.a);
        self.eval_derivatives(f, bw, 0);
        let (z, a, kz0, ka0) = (&self.z, &self.a, &self.kz[0], &self.ka[0]);
        control::rms_pairs(&mut self.norms, bw.batch, |j| {
            (z[j].f64() / sc(j % n, z[j]), a[j].f64() / sc(j % n, a[j]))
        });
        for r in 0..batch {
            self.probe[r][0] = self.norms[r].0.max(self.norms[r].1);
        }
        control::rms_pairs(&mut self.norms, bw.batch, |j| {
            (kz0[j].f64() / sc(j % n, z[j]), ka0[j].f64() / sc(j % n, a[j]))
        });
        // An explicit Euler step of the trial size h0 (the time shift is undone below).
        for r in 0..batch {
            let d1 = self.norms[r].0.max(self.norms[r].1);
            let h0 = control::trial_step(self.probe[r][0], d1);
            self.probe[r] = [h0, d1];
            let ht = dir * T::c(h0);
            self.t[r] = self.t[r] + ht;
            for j in bw.row(r) {
                self.cz[j] = self.z[j] + ht * self.kz[0][j];
                self.cv[j] = self.a[j] + ht * self.ka[0][j];
            }
        }
        self.eval_derivatives(f, bw, 1);
        for r in 0..batch {
            self.t[r] = self.t[r] - dir * T::c(self.probe[r][0]);
        }
        let (z, a, kz, ka) = (&self.z, &self.a, &self.kz, &self.ka);
        control::rms_pairs(&mut self.norms, bw.batch, |j| {
            (
                (kz[1][j] - kz[0][j]).f64() / sc(j % n, z[j]),
                (ka[1][j] - ka[0][j]).f64() / sc(j % n, a[j]),
            )
        });
        let order = bw.opts.controller_kind.initial_step_order(bw.rk.order);
        for r in 0..batch {
            let [h0, d1] = self.probe[r];
            let h = control::initial_step(h0, d1, self.norms[r].0.max(self.norms[r].1), order);
            self.h[r] = dir * T::c(h);
        }
    }

    /// Each active row's step `hs` towards `span.t_lo`; over the step budget or without a
    /// possible step, the backward solve fails.
    fn choose_steps(&mut self, bw: &Backward<'_, T>, span: Interval<T>) -> Result<()> {
        for idx in 0..self.active.len() {
            let r = self.active[idx];
            let t = self.t[r];
            if self.steps[r] >= bw.opts.max_num_steps {
                return Err(OdeError::MaxStepsExceeded {
                    t: t.f64(),
                    max_num_steps: bw.opts.max_num_steps,
                    sample: r,
                });
            }
            let nonfinite = self.ctrl[r].nonfinite;
            self.hs[r] = bw
                .opts
                .next_step(bw.adaptive, t, span.t_lo, self.h[r], span.dir)
                .map_err(|hf| control::no_step_error("adjoint state", nonfinite, t, hf, r))?;
        }
        Ok(())
    }

    /// The stages of the augmented system, one batched VJP each: `kz_i = f(Z_i)`,
    /// `ka_i = -A_iᵀ∂f/∂z(Z_i)` and either each row's record or `G_i = Σ_r h_r A_iᵀ∂f/∂θ(Z_i)`
    /// (weighting each row by its own step lets one batched VJP give the parameters' sum); then
    /// the solutions `z_new`, `a_new`. Rows whose first stage is known skip it.
    fn stages<F: VjpField<T> + ?Sized>(&mut self, f: &mut F, bw: &Backward<'_, T>) {
        let rk = bw.rk;
        let mut rows = std::mem::take(&mut self.eval_rows);
        for i in 0..rk.stages {
            rows.clear();
            let known = &self.k0_known;
            rows.extend(self.active.iter().copied().filter(|&r| i > 0 || !known[r]));
            if !rows.is_empty() {
                self.eval_stage(f, bw, i, &rows);
            }
        }
        self.eval_rows = rows;
        if bw.fsal {
            for &r in &self.active {
                self.k0_known[r] = true;
            }
        }
        for &r in self.active.iter() {
            let (h, row) = (self.hs[r], bw.row(r));
            let (z, z_new) = (&self.z[row.clone()], &mut self.z_new[row.clone()]);
            rk.solution(h, z, &self.kz, row.clone(), z_new, Zeros::Skip);
            let (a, a_new) = (&self.a[row.clone()], &mut self.a_new[row.clone()]);
            rk.solution(h, a, &self.ka, row, a_new, Zeros::Skip);
        }
    }

    /// Stage `i` of `rows`: gathered, one batched VJP (with records or with `G_i`), scattered.
    /// When every row takes part, the records go straight to `rec[i]`.
    fn eval_stage<F: VjpField<T> + ?Sized>(&mut self, f: &mut F, bw: &Backward<'_, T>, i: usize, rows: &[usize]) {
        let (m, mn) = (rows.len(), rows.len() * bw.batch.dim);
        self.gather_stage(bw, i, rows);
        let (t, z, v) = (&self.ct[..m], &self.cz[..mn], &self.cv[..mn]);
        let (fz, gy) = (Some(&mut self.cf[..mn]), &mut self.cgy[..mn]);
        if bw.rec_len > 0 {
            // `rows` is an ascending subset of the batch, so all of it is the whole batch in order.
            debug_assert!(m < bw.batch.rows || rows.iter().enumerate().all(|(j, &r)| j == r));
            let rec = if m == bw.batch.rows {
                &mut self.rec[i]
            } else {
                &mut self.crec
            };
            f.vjp_record(t, z, v, fz, gy, &mut rec[..m * bw.rec_len]);
        } else {
            self.g[i].fill(T::zero());
            f.vjp(t, z, v, fz, gy, Some(&mut self.g[i]));
        }
        self.stats.nfe += 1;
        self.stats.sample_evals += m;
        self.scatter_stage(f, bw, i, rows);
    }

    /// Stage `i`'s inputs `Z_i`, `A_i` of `rows`, gathered with their times and the
    /// step-weighted cotangents `h·A_i` for one batched VJP.
    fn gather_stage(&mut self, bw: &Backward<'_, T>, i: usize, rows: &[usize]) {
        let (rk, n) = (bw.rk, bw.batch.dim);
        for (j, &r) in rows.iter().enumerate() {
            let (h, row, cj) = (self.hs[r], bw.row(r), j * n);
            let (zin, ain) = (&mut self.zin[i][row.clone()], &mut self.ain[i][row.clone()]);
            rk.stage_input(i, h, &self.z[row.clone()], &self.kz, row.clone(), zin);
            rk.stage_input(i, h, &self.a[row.clone()], &self.ka, row, ain);
            self.ct[j] = rk.stage_time(i, self.t[r], h);
            self.cz[cj..cj + n].copy_from_slice(zin);
            for (v, x) in self.cv[cj..cj + n].iter_mut().zip(ain.iter()) {
                *v = h * *x;
            }
        }
    }

    /// Stage `i`'s derivatives of `rows` from the batched VJP: `kz_i = f`,
    /// `ka_i = -(h·A_i)ᵀ∂f/∂z / h`, and their records.
    fn scatter_stage<F: VjpField<T> + ?Sized>(&mut self, f: &F, bw: &Backward<'_, T>, i: usize, rows: &[usize]) {
        let (n, m, batch) = (bw.batch.dim, rows.len(), bw.batch.rows);
        for (j, &r) in rows.iter().enumerate() {
            let (h, row, cj) = (self.hs[r], bw.row(r), j * n);
            self.kz[i][row.clone()].copy_from_slice(&self.cf[cj..cj + n]);
            for (d, g) in self.ka[i][row].iter_mut().zip(&self.cgy[cj..cj + n]) {
                *d = -(*g / h);
            }
            if m < batch && bw.rec_len > 0 {
                f.copy_record(&self.crec, m, j, &mut self.rec[i], batch, r);
            }
            self.rec_h[i][r] = h;
        }
    }

    /// Whether row `r`'s new state and state adjoint are finite.
    fn finite_row(&self, bw: &Backward<'_, T>, r: usize) -> bool {
        all_finite(&self.z_new[bw.row(r)]) && all_finite(&self.a_new[bw.row(r)])
    }

    /// Sums of squared scaled embedded errors of row `r`'s `z` and `a` (divided in `f64`, where
    /// the forward solve divides in the working precision).
    fn row_error(&self, bw: &Backward<'_, T>, be: &[T], r: usize) -> (f64, f64) {
        let (h, o) = (self.hs[r], r * bw.batch.dim);
        let (mut qz, mut qa) = (0.0f64, 0.0f64);
        for i in 0..bw.batch.dim {
            let ez = embedded_error(be, &self.kz, o + i);
            let ea = embedded_error(be, &self.ka, o + i);
            let xz = (h * ez).f64() / error_scale(bw.opts, i, self.z[o + i], self.z_new[o + i]).f64();
            let xa = (h * ea).f64() / error_scale(bw.opts, i, self.a[o + i], self.a_new[o + i]).f64();
            qz += xz * xz;
            qa += xa * xa;
        }
        (qz, qa)
    }

    /// Error ratios of adaptive steps: the larger of the RMS errors of `z` and `a` (NaN when
    /// not finite), per row or over the batch in shared mode, where the mixed norm also takes
    /// each parameter tensor's.
    fn error_estimate(&mut self, bw: &Backward<'_, T>) {
        let Some(be) = bw.rk.error_weights(bw.opts.controller_kind).filter(|_| bw.adaptive) else {
            return;
        };
        let n = bw.batch.dim as f64;
        let (mut sz, mut sa, mut nonfinite_any) = (0.0f64, 0.0f64, false);
        for idx in 0..self.active.len() {
            let r = self.active[idx];
            let (mut qz, qa) = self.row_error(bw, be, r);
            let finite = self.finite_row(bw, r);
            if !finite {
                nonfinite_any = true;
                qz = f64::NAN;
            }
            if bw.batch.shared {
                sz += qz;
                sa += qa;
            } else {
                self.ctrl[r].ratio = (qz / n).sqrt().max((qa / n).sqrt());
                if !finite {
                    self.ctrl[r].ratio = f64::NAN;
                }
            }
        }
        if bw.batch.shared {
            let cnt = (self.active.len() * bw.batch.dim) as f64;
            let mut ratio = (sz / cnt).sqrt().max((sa / cnt).sqrt());
            if nonfinite_any {
                ratio = f64::NAN;
            }
            if bw.norm == AdjointNorm::Mixed {
                // θ̄_new = θ̄ - Σ b_i G_i.
                self.theta_new.copy_from_slice(&self.theta);
                for (i, &bi) in bw.rk.b.iter().enumerate() {
                    add_to(&mut self.theta_new, -bi, &self.g[i]);
                }
                ratio = self.mixed_norm(bw, be, ratio);
            }
            for &r in self.active.iter() {
                self.ctrl[r].ratio = ratio;
            }
        }
    }

    /// The mixed norm: `ratio` raised to each parameter tensor's RMS error `Σ b_err_i G_i`.
    fn mixed_norm(&self, bw: &Backward<'_, T>, be: &[T], mut ratio: f64) -> f64 {
        for grp in bw.groups {
            let mut q = 0.0f64;
            for idx in grp.clone() {
                let e = embedded_error(be, &self.g, idx);
                let x = e.f64() / error_scale(bw.opts, 0, self.theta[idx], self.theta_new[idx]).f64();
                q += x * x;
            }
            if !grp.is_empty() {
                ratio = ratio.max((q / grp.len() as f64).sqrt());
            }
        }
        ratio
    }

    /// Accepts or rejects each row's try by its error ratio (`acc_rows` lists the accepted);
    /// a fixed step must give a finite state.
    fn accept_reject(&mut self, bw: &Backward<'_, T>) -> Result<()> {
        self.acc_rows.clear();
        for idx in 0..self.active.len() {
            let r = self.active[idx];
            if !bw.adaptive && !self.finite_row(bw, r) {
                return Err(OdeError::NonFinite {
                    what: "adjoint state",
                    t: (self.t[r] + self.hs[r]).f64(),
                    sample: r,
                });
            }
            let ok = !bw.adaptive || self.ctrl[r].accepts();
            self.ok[r] = ok;
            if ok {
                self.acc_rows.push(r);
            }
        }
        Ok(())
    }

    /// The parameter adjoint of the accepted rows, `θ̄ -= Σ_r Σ_i b_i h_r A_iᵀ∂f/∂θ`: from their
    /// records in one product, or `θ̄ -= Σ b_i G_i`, or, when some rows were rejected, the
    /// weighted parameter VJPs again for the accepted ones only.
    fn param_adjoint<F: VjpField<T> + ?Sized>(&mut self, f: &mut F, bw: &Backward<'_, T>) {
        if bw.rec_len > 0 {
            self.param_adjoint_records(f, bw);
            return;
        }
        let (rk, n, m) = (bw.rk, bw.batch.dim, self.acc_rows.len());
        if m == self.active.len() {
            for (i, &bi) in rk.b.iter().enumerate() {
                add_to(&mut self.theta, -bi, &self.g[i]);
            }
            return;
        }
        if m == 0 {
            return;
        }
        for (i, &bi) in rk.b.iter().enumerate() {
            if bi == T::zero() {
                continue;
            }
            for (j, &r) in self.acc_rows.iter().enumerate() {
                let (h, row, cj) = (self.hs[r], bw.row(r), j * n);
                self.ct[j] = rk.stage_time(i, self.t[r], h);
                self.cz[cj..cj + n].copy_from_slice(&self.zin[i][row.clone()]);
                for (v, x) in self.cv[cj..cj + n].iter_mut().zip(&self.ain[i][row]) {
                    *v = -(bi * h * *x);
                }
            }
            f.vjp(
                &self.ct[..m],
                &self.cz[..m * n],
                &self.cv[..m * n],
                None,
                &mut self.cgy[..m * n],
                Some(&mut self.theta),
            );
            self.stats.nfe += 1;
            self.stats.sample_evals += m;
        }
    }

    /// `θ̄ -= Σ_r Σ_i b_i h_r A_iᵀ∂f/∂θ` over the accepted rows from the stage records, whose
    /// cotangents were weighted by `rec_h` (the step of the try that evaluated them). The field
    /// queues them and forms their products many records at a time ([`VjpField::push_record`]).
    fn param_adjoint_records<F: VjpField<T> + ?Sized>(&mut self, f: &mut F, bw: &Backward<'_, T>) {
        let batch = bw.batch.rows;
        for &r in &self.acc_rows {
            for (i, &bi) in bw.rk.b.iter().enumerate() {
                if bi == T::zero() {
                    continue;
                }
                let w = -(bi * (self.hs[r] / self.rec_h[i][r]));
                f.push_record(&self.rec[i], batch, r, w, &mut self.theta);
            }
        }
    }

    /// Row `r`'s last stage becomes its next first (FSAL): derivatives, record and its step.
    fn carry_last_stage<F: VjpField<T> + ?Sized>(&mut self, f: &F, bw: &Backward<'_, T>, r: usize) {
        let (last, row, batch) = (bw.rk.stages - 1, bw.row(r), bw.batch.rows);
        let (first, rest) = self.kz.split_at_mut(1);
        first[0][row.clone()].copy_from_slice(&rest[last - 1][row.clone()]);
        let (first, rest) = self.ka.split_at_mut(1);
        first[0][row.clone()].copy_from_slice(&rest[last - 1][row]);
        let (first, rest) = self.rec.split_at_mut(1);
        f.copy_record(&rest[last - 1], batch, r, &mut first[0], batch, r);
        self.rec_h[0][r] = self.rec_h[last][r];
    }

    /// The controller's next step for every try, accepted or not.
    fn adapt_step_size(&mut self, bw: &Backward<'_, T>) {
        if !bw.adaptive {
            return;
        }
        for &r in self.active.iter() {
            let factor = self.ctrl[r].adapt(control::Rules::of(bw.opts), self.ok[r], bw.rk.err_order);
            self.h[r] = self.hs[r] * T::c(factor);
        }
    }

    /// Counts the tries (once per batch in shared mode) and moves the accepted rows to their
    /// step end; a row that reaches `span.t_lo` is done with the interval.
    fn commit<F: VjpField<T> + ?Sized>(&mut self, f: &F, bw: &Backward<'_, T>, span: Interval<T>) {
        for idx in 0..self.active.len() {
            let r = self.active[idx];
            self.steps[r] += 1;
            let counted = usize::from(!bw.batch.shared || idx == 0);
            if !self.ok[r] {
                self.stats.rejected += counted;
                continue;
            }
            self.stats.accepted += counted;
            let row = bw.row(r);
            self.z[row.clone()].copy_from_slice(&self.z_new[row.clone()]);
            self.a[row.clone()].copy_from_slice(&self.a_new[row]);
            let tn = control::step_end(self.t[r], self.hs[r], span.t_lo);
            self.t[r] = tn;
            if tn == span.t_lo {
                self.live[r] = false;
            } else if bw.fsal {
                self.carry_last_stage(f, bw, r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AdjointNorm, Backward, Interval, Ws};
    use crate::control::{self, Batch};
    use crate::grad::Scale;
    use crate::options::{SolveOptions, StepMode};
    use crate::rk::Coeffs;
    use crate::tableau::Method;

    struct Case {
        rk: Coeffs<f64>,
        opts: SolveOptions<f64>,
        params: std::ops::Range<usize>,
    }

    impl Case {
        fn new(m: Method, opts: SolveOptions<f64>) -> Self {
            Self {
                rk: Coeffs::new(&m.tableau()),
                opts,
                params: 0..1,
            }
        }

        fn backward(&self, rows: usize) -> Backward<'_, f64> {
            Backward {
                rk: &self.rk,
                opts: &self.opts,
                norm: AdjointNorm::Seminorm,
                groups: std::slice::from_ref(&self.params),
                batch: Batch {
                    rows,
                    dim: 1,
                    shared: self.opts.step_mode == StepMode::Shared,
                },
                adaptive: self.rk.b_err.is_some() && self.opts.step_size.is_none(),
                rec_len: 0,
                fsal: false,
            }
        }
    }

    /// A workspace at `t = 1` with states `z` and cotangents `a`, integrating towards 0.
    fn started(bw: &Backward<'_, f64>, z: &[f64], a: &[f64]) -> Ws<f64> {
        let mut ws = Ws::default();
        ws.prepare(bw, 1, z, a);
        ws.active.extend(0..z.len());
        ws.t.fill(1.0);
        ws
    }

    const SPAN: Interval<f64> = Interval { t_lo: 0.0, dir: -1.0 };

    /// With a zero cotangent the augmented state's norms are the state's: Hairer's step for
    /// `dz/dt = θz` backwards in time.
    #[test]
    fn the_initial_step_is_hairers_on_the_augmented_state() {
        let c = Case::new(Method::Dopri5, SolveOptions::default().rtol(1e-3).atol(1e-6));
        let bw = c.backward(1);
        let (theta, z) = (0.8, 2.0);
        let mut ws = started(&bw, &[z], &[0.0]);
        ws.initial_steps(&mut Scale { dim: 1, theta }, &bw, -1.0);
        let sc = 1e-6 + 1e-3 * z;
        let (d0, d1) = (z / sc, theta * z / sc);
        let h0 = control::trial_step(d0, d1);
        let dd = (theta * (z - h0 * theta * z) - theta * z).abs() / sc;
        let h = control::initial_step(h0, d1, dd, 5);
        assert!((ws.h[0] + h).abs() < 1e-13 * h, "{} vs {}", ws.h[0], -h);
        assert!((ws.t[0] - 1.0).abs() < 1e-15 && ws.stats.nfe == 2);
    }

    /// Euler backwards on `dz/dt = θz`: `a` grows by `1 + |h|θ` per step and the parameter
    /// adjoint gains `|h|·a·z`.
    #[test]
    fn one_step_of_the_augmented_system() {
        let c = Case::new(Method::Euler, SolveOptions::default().step_size(0.25));
        let bw = c.backward(2);
        let theta = 0.5;
        let mut ws = started(&bw, &[1.0, 2.0], &[3.0, -1.0]);
        let f = &mut Scale { dim: 1, theta };
        ws.choose_steps(&bw, SPAN).unwrap();
        assert_eq!(ws.hs, vec![-0.25; 2]);
        ws.stages(f, &bw);
        ws.error_estimate(&bw);
        ws.accept_reject(&bw).unwrap();
        ws.param_adjoint(f, &bw);
        ws.adapt_step_size(&bw);
        ws.commit(f, &bw, SPAN);
        assert_eq!(ws.z, vec![1.0 - 0.25 * theta, 2.0 * (1.0 - 0.25 * theta)]);
        assert_eq!(ws.a, vec![3.0 * (1.0 + 0.25 * theta), -(1.0 + 0.25 * theta)]);
        assert_eq!(ws.theta[0], 0.25 * (3.0 * 1.0 - 2.0));
        assert_eq!((ws.t.clone(), ws.stats.accepted, ws.stats.nfe), (vec![0.75; 2], 2, 1));
    }

    /// A rejected row leaves the parameter adjoint as if it had not been in the batch.
    #[test]
    fn rejected_rows_leave_the_parameter_adjoint_alone() {
        let c = Case::new(Method::Heun2, SolveOptions::default().first_step(0.1));
        let f = &mut Scale { dim: 1, theta: 0.5 };
        let mut run = |z: &[f64], a: &[f64], ratios: &[f64]| {
            let bw = c.backward(z.len());
            let mut ws = started(&bw, z, a);
            ws.initial_steps(f, &bw, -1.0);
            ws.choose_steps(&bw, SPAN).unwrap();
            ws.stages(f, &bw);
            for (r, &x) in ratios.iter().enumerate() {
                ws.ctrl[r].ratio = x;
            }
            ws.accept_reject(&bw).unwrap();
            ws.param_adjoint(f, &bw);
            ws.commit(f, &bw, SPAN);
            (ws.theta[0], ws.stats)
        };
        let (both, stats) = run(&[1.0, 2.0], &[3.0, -1.0], &[0.5, 2.0]);
        let (alone, _) = run(&[1.0], &[3.0], &[0.5]);
        assert!((both - alone).abs() < 1e-15 && both != 0.0);
        assert_eq!((stats.accepted, stats.rejected), (1, 1));
        // Redoing the accepted row's weighted VJPs costs one call per nonzero weight.
        assert_eq!(stats.nfe, 2 + 2);
    }

    #[test]
    fn shared_steps_are_counted_once_per_batch() {
        let c = Case::new(Method::Heun2, SolveOptions::default().step_mode(StepMode::Shared));
        let bw = c.backward(2);
        let mut ws = started(&bw, &[1.0, 2.0], &[3.0, -1.0]);
        let f = Scale { dim: 1, theta: 0.5 };
        ws.hs.fill(-0.5);
        ws.ok.fill(true);
        ws.commit(&f, &bw, SPAN);
        ws.ok.fill(false);
        ws.commit(&f, &bw, SPAN);
        assert_eq!((ws.stats.accepted, ws.stats.rejected), (1, 1));
        assert_eq!(ws.steps, vec![2, 2]);
    }
}
