//! The one Runge-Kutta engine that runs every tableau, in shared or per-sample step mode.

use crate::Scalar;
use crate::error::{OdeError, Result};
use crate::field::VectorField;
use crate::options::{SolveOptions, StepMode};
use crate::tableau::{ButcherTableau, Interpolation, Method};

/// Work counters of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleStats {
    /// Evaluations of the vector field on this sample (including the initial-step probe).
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps.
    pub rejected: usize,
}

/// Work counters of a solve.
///
/// `nfe` counts batched calls of [`VectorField::eval`] (what costs time on a batch);
/// `per_sample` counts each sample's own evaluations and steps. In shared mode every sample has
/// the same counts and `accepted`/`rejected` are the batch's step counts; in per-sample mode
/// they are the sums over samples.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Batched vector-field evaluations.
    pub nfe: usize,
    /// Accepted steps (see the type's doc for per-sample mode).
    pub accepted: usize,
    /// Rejected steps (see the type's doc for per-sample mode).
    pub rejected: usize,
    /// Per-sample counters, one entry per batch row.
    pub per_sample: Vec<SampleStats>,
}

/// What [`Solver::solve_into`] reports besides the outputs it wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Work counters.
    pub stats: Stats,
    /// Samples that failed (only with `throw = false` in per-sample mode), with their error;
    /// their outputs after the failure time are NaN.
    pub failures: Vec<OdeError>,
}

/// A solution: the states of every sample at every requested time.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution<T> {
    /// The requested times (the first is the initial time).
    pub ts: Vec<T>,
    /// States, `[time][sample][component]` flattened row-major.
    pub ys: Vec<T>,
    /// Number of samples.
    pub batch: usize,
    /// State dimension.
    pub dim: usize,
    /// Work counters.
    pub stats: Stats,
    /// Failed samples (only with `throw = false` in per-sample mode).
    pub failures: Vec<OdeError>,
}

impl<T: Scalar> Solution<T> {
    /// The state of `sample` at output time index `k`.
    pub fn y(&self, k: usize, sample: usize) -> &[T] {
        let o = (k * self.batch + sample) * self.dim;
        &self.ys[o..o + self.dim]
    }

    /// The states of the whole batch at output time index `k` (`batch × dim`, row-major).
    pub fn at(&self, k: usize) -> &[T] {
        let w = self.batch * self.dim;
        &self.ys[k * w..(k + 1) * w]
    }
}

/// One accepted step on a [`Tape`].
#[derive(Debug, Clone)]
pub(crate) struct TapeStep<T> {
    pub(crate) row: usize,
    pub(crate) t: T,
    pub(crate) h: T,
    /// Range into [`Tape::outs`] of the outputs that fell inside this step.
    pub(crate) outs: std::ops::Range<usize>,
}

/// The accepted steps of a solve (per sample: time, step size, state at the step start, and
/// the outputs inside the step), recorded by [`Solver::solve_taped`] for backpropagation
/// through the solver. Memory grows with the number of steps; reuse one tape across solves
/// so it stops allocating once it has grown.
#[derive(Debug, Clone, Default)]
pub struct Tape<T> {
    pub(crate) iters: Vec<usize>,
    pub(crate) steps: Vec<TapeStep<T>>,
    pub(crate) ys: Vec<T>,
    /// `(output index, θ)`: θ = None when the output is the step end itself.
    pub(crate) outs: Vec<(usize, Option<T>)>,
    pub(crate) dim: usize,
    pub(crate) batch: usize,
    pub(crate) n_ts: usize,
}

impl<T> Tape<T> {
    /// An empty tape.
    pub fn new() -> Self {
        Self {
            iters: Vec::new(),
            steps: Vec::new(),
            ys: Vec::new(),
            outs: Vec::new(),
            dim: 0,
            batch: 0,
            n_ts: 0,
        }
    }

    /// Forgets the recorded steps, keeping the memory.
    pub fn clear(&mut self) {
        self.iters.clear();
        self.steps.clear();
        self.ys.clear();
        self.outs.clear();
    }

    /// Number of recorded accepted steps (summed over samples).
    pub fn num_steps(&self) -> usize {
        self.steps.len()
    }

    /// Number of values held (states at step starts), a measure of the tape's memory.
    pub fn stored_values(&self) -> usize {
        self.ys.len()
    }
}

/// Scratch buffers, kept between solves so repeated solves of the same shape allocate nothing.
#[derive(Debug, Default)]
struct Workspace<T> {
    batch: usize,
    dim: usize,
    k: Vec<Vec<T>>,
    k_end: Vec<T>,
    y: Vec<T>,
    y_new: Vec<T>,
    y_stage: Vec<T>,
    t_eval: Vec<T>,
    gather_t: Vec<T>,
    gather_in: Vec<T>,
    gather_out: Vec<T>,
    // Per-sample state.
    t: Vec<T>,
    h: Vec<T>,
    h_step: Vec<T>,
    ratio: Vec<f64>,
    hist: Vec<[f64; 2]>,
    k1_valid: Vec<bool>,
    nonfinite_trial: Vec<bool>,
    next_out: Vec<usize>,
    live: Vec<bool>,
    status: Vec<Option<OdeError>>,
    stats: Vec<SampleStats>,
    // Row lists.
    active: Vec<usize>,
    rows: Vec<usize>,
    accepted: Vec<bool>,
    norms: Vec<(f64, f64)>,
    culprit: usize,
}

impl<T: Scalar> Workspace<T> {
    fn ensure(&mut self, stages: usize, batch: usize, dim: usize) {
        let w = batch * dim;
        if self.batch != batch || self.dim != dim || self.k.len() != stages {
            self.k = vec![vec![T::zero(); w]; stages];
            for v in [
                &mut self.k_end,
                &mut self.y,
                &mut self.y_new,
                &mut self.y_stage,
                &mut self.gather_in,
                &mut self.gather_out,
            ] {
                *v = vec![T::zero(); w];
            }
            self.batch = batch;
            self.dim = dim;
        }
        let reset = |v: &mut Vec<T>| {
            v.clear();
            v.resize(batch, T::zero());
        };
        reset(&mut self.t);
        reset(&mut self.h);
        reset(&mut self.h_step);
        reset(&mut self.t_eval);
        self.gather_t.clear();
        self.gather_t.reserve(batch);
        self.ratio.clear();
        self.ratio.resize(batch, 0.0);
        self.hist.clear();
        self.hist.resize(batch, [1.0, 1.0]);
        self.k1_valid.clear();
        self.k1_valid.resize(batch, false);
        self.nonfinite_trial.clear();
        self.nonfinite_trial.resize(batch, false);
        self.next_out.clear();
        self.next_out.resize(batch, 1);
        self.live.clear();
        self.live.resize(batch, true);
        self.status.clear();
        self.status.resize(batch, None);
        self.stats.clear();
        self.stats.resize(batch, SampleStats::default());
        self.active.clear();
        self.active.reserve(batch);
        self.rows.clear();
        self.rows.reserve(batch);
        self.accepted.clear();
        self.accepted.resize(batch, false);
        self.culprit = 0;
    }
}

/// Evaluates the field on the listed rows only: directly on the full buffers when every row is
/// listed, otherwise through the gather/scatter scratch (no allocation either way).
#[allow(clippy::too_many_arguments)]
fn eval_rows<T: Scalar, F: VectorField<T> + ?Sized>(
    f: &mut F,
    dim: usize,
    batch: usize,
    rows: &[usize],
    times: &[T],
    input: &[T],
    output: &mut [T],
    gather_t: &mut Vec<T>,
    gather_in: &mut [T],
    gather_out: &mut [T],
    stats: &mut [SampleStats],
    nfe: &mut usize,
) {
    if rows.is_empty() {
        return;
    }
    *nfe += 1;
    for &r in rows {
        stats[r].nfe += 1;
    }
    if rows.len() == batch {
        f.eval(times, input, output);
        return;
    }
    let m = rows.len();
    gather_t.clear();
    for (j, &r) in rows.iter().enumerate() {
        gather_t.push(times[r]);
        gather_in[j * dim..(j + 1) * dim].copy_from_slice(&input[r * dim..(r + 1) * dim]);
    }
    f.eval(gather_t, &gather_in[..m * dim], &mut gather_out[..m * dim]);
    for (j, &r) in rows.iter().enumerate() {
        output[r * dim..(r + 1) * dim].copy_from_slice(&gather_out[j * dim..(j + 1) * dim]);
    }
}

/// An explicit Runge-Kutta solver: a tableau, options, and reusable scratch space.
///
/// ```
/// use ode_core::{FnField, Method, SolveOptions, Solver};
/// // dy/dt = -y for a batch of two samples, to t = 1.
/// let mut field = FnField::new(1, |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -y[0]);
/// let mut solver = Solver::new(Method::Dopri5, SolveOptions::default().rtol(1e-8).atol(1e-10)).unwrap();
/// let sol = solver.solve(&mut field, &[0.0, 1.0], &[1.0, 2.0]).unwrap();
/// assert!((sol.y(1, 1)[0] - 2.0 * (-1.0f64).exp()).abs() < 1e-7);
/// println!("{} evaluations, {} accepted steps", sol.stats.nfe, sol.stats.accepted);
/// ```
#[derive(Debug)]
pub struct Solver<T: Scalar> {
    pub(crate) tableau: ButcherTableau,
    pub(crate) a: Vec<Vec<T>>,
    pub(crate) b: Vec<T>,
    pub(crate) c: Vec<T>,
    pub(crate) b_err: Option<Vec<T>>,
    pub(crate) dense: Option<Vec<Vec<T>>>,
    pub(crate) opts: SolveOptions<T>,
    ws: Workspace<T>,
    pub(crate) bws: crate::grad::BackpropWorkspace<T>,
}

impl<T: Scalar> Solver<T> {
    /// A solver for a built-in method. Options are checked against the state at solve time.
    pub fn new(method: Method, opts: SolveOptions<T>) -> Result<Self> {
        Self::from_tableau(method.tableau(), opts)
    }

    /// A solver for any validated tableau.
    pub fn from_tableau(tableau: ButcherTableau, opts: SolveOptions<T>) -> Result<Self> {
        opts.validate_for(None)?;
        let cv = |v: &[f64]| v.iter().map(|&x| T::c(x)).collect::<Vec<T>>();
        Ok(Self {
            a: tableau.a.iter().map(|r| cv(r)).collect(),
            b: cv(&tableau.b),
            c: cv(&tableau.c),
            b_err: tableau.b_err.as_deref().map(cv),
            dense: match &tableau.interpolation {
                Interpolation::Polynomial(p) => Some(p.iter().map(|r| cv(r)).collect()),
                Interpolation::Hermite => None,
            },
            tableau,
            opts,
            ws: Workspace::default(),
            bws: Default::default(),
        })
    }

    /// The method's tableau.
    pub fn tableau(&self) -> &ButcherTableau {
        &self.tableau
    }

    /// The options.
    pub fn options(&self) -> &SolveOptions<T> {
        &self.opts
    }

    /// Mutable options, e.g. to change tolerances between solves without losing the scratch space.
    pub fn options_mut(&mut self) -> &mut SolveOptions<T> {
        &mut self.opts
    }

    /// Solves from `ts[0]` through every time in `ts` (strictly increasing or strictly
    /// decreasing) for the batch `y0` (`batch × dim`, row-major), returning states at all `ts`.
    pub fn solve<F: VectorField<T> + ?Sized>(&mut self, f: &mut F, ts: &[T], y0: &[T]) -> Result<Solution<T>> {
        let dim = f.dim();
        let batch = y0.len().checked_div(dim).unwrap_or(0);
        let mut ys = vec![T::zero(); ts.len() * y0.len()];
        let report = self.solve_into(f, ts, y0, &mut ys)?;
        Ok(Solution {
            ts: ts.to_vec(),
            ys,
            batch,
            dim,
            stats: report.stats,
            failures: report.failures,
        })
    }

    /// Like [`solve`](Self::solve) but writes the states into `out` (`ts.len() × batch × dim`),
    /// so repeated solves of one shape allocate nothing.
    pub fn solve_into<F: VectorField<T> + ?Sized>(
        &mut self,
        f: &mut F,
        ts: &[T],
        y0: &[T],
        out: &mut [T],
    ) -> Result<Report> {
        self.solve_inner(f, ts, y0, out, None)
    }

    /// Like [`solve_into`](Self::solve_into), and records every accepted step on `tape` (cleared
    /// first) so [`backprop`](Self::backprop) can differentiate the solve afterwards.
    pub fn solve_taped<F: VectorField<T> + ?Sized>(
        &mut self,
        f: &mut F,
        ts: &[T],
        y0: &[T],
        out: &mut [T],
        tape: &mut Tape<T>,
    ) -> Result<Report> {
        tape.clear();
        self.solve_inner(f, ts, y0, out, Some(tape))
    }

    fn solve_inner<F: VectorField<T> + ?Sized>(
        &mut self,
        f: &mut F,
        ts: &[T],
        y0: &[T],
        out: &mut [T],
        tape: Option<&mut Tape<T>>,
    ) -> Result<Report> {
        let dim = f.dim();
        if dim == 0 {
            return Err(OdeError::ShapeMismatch {
                what: "vector field dimension",
                expected: 1,
                got: 0,
            });
        }
        if y0.is_empty() || y0.len() % dim != 0 {
            return Err(OdeError::ShapeMismatch {
                what: "y0 (batch × dim)",
                expected: dim * y0.len().div_ceil(dim).max(1),
                got: y0.len(),
            });
        }
        let batch = y0.len() / dim;
        if ts.len() < 2 {
            return Err(OdeError::TooFewTimes { got: ts.len() });
        }
        if let Some(index) = ts.iter().position(|t| !t.is_finite()) {
            return Err(OdeError::NonFiniteTime {
                index,
                value: ts[index].f64(),
            });
        }
        let dir_pos = ts[1] > ts[0];
        for i in 1..ts.len() {
            let ok = if dir_pos { ts[i] > ts[i - 1] } else { ts[i] < ts[i - 1] };
            if !ok {
                return Err(OdeError::NonMonotonicTimes {
                    index: i,
                    prev: ts[i - 1].f64(),
                    next: ts[i].f64(),
                });
            }
        }
        if out.len() != ts.len() * y0.len() {
            return Err(OdeError::ShapeMismatch {
                what: "output buffer (times × batch × dim)",
                expected: ts.len() * y0.len(),
                got: out.len(),
            });
        }
        self.opts.validate(dim)?;
        if let Some(r) = y0.iter().position(|v| !v.is_finite()) {
            return Err(OdeError::NonFinite {
                what: "initial state",
                t: ts[0].f64(),
                sample: r / dim,
            });
        }
        let stages = self.tableau.stages();
        self.ws.ensure(stages, batch, dim);
        if let Some(tp) = tape.as_deref() {
            debug_assert!(tp.steps.is_empty());
        }
        let mut tape = tape;
        if let Some(tp) = tape.as_deref_mut() {
            tp.dim = dim;
            tp.batch = batch;
            tp.n_ts = ts.len();
        }
        self.run(f, ts, y0, out, batch, dim, tape)
    }

    fn run<F: VectorField<T> + ?Sized>(
        &mut self,
        f: &mut F,
        ts: &[T],
        y0: &[T],
        out: &mut [T],
        batch: usize,
        dim: usize,
        mut tape: Option<&mut Tape<T>>,
    ) -> Result<Report> {
        let Self {
            tableau,
            a,
            b,
            c,
            b_err,
            dense,
            opts,
            ws,
            ..
        } = self;
        let s = tableau.stages();
        let w = batch * dim;
        let shared = opts.step_mode == StepMode::Shared;
        // An embedded method given a step size runs at that constant step, without error control.
        let adaptive = b_err.is_some() && opts.step_size.is_none();
        let fsal = tableau.is_fsal();
        let t0 = ts[0];
        let t_end = ts[ts.len() - 1];
        let dir = if t_end > t0 { T::one() } else { -T::one() };
        let err_order = tableau.embedded_order.map_or(1.0, |q| q as f64 + 1.0);
        let mut nfe = 0usize;

        ws.y.copy_from_slice(y0);
        out[..w].copy_from_slice(y0);
        for r in 0..batch {
            ws.t[r] = t0;
        }
        ws.active.clear();
        ws.active.extend(0..batch);

        // Initial step sizes.
        if adaptive {
            if let Some(h) = opts.first_step {
                ws.h.iter_mut().for_each(|x| *x = dir * h.abs());
            } else {
                // Hairer, Nørsett & Wanner (1993), II.4: torchdiffeq's `_select_initial_step`.
                let Workspace {
                    k,
                    k_end,
                    y,
                    y_stage,
                    t,
                    t_eval,
                    gather_t,
                    gather_in,
                    gather_out,
                    stats,
                    active,
                    k1_valid,
                    norms,
                    ..
                } = ws;
                let k0 = &mut k[0];
                eval_rows(
                    f, dim, batch, active, t, y, k0, gather_t, gather_in, gather_out, stats, &mut nfe,
                );
                for r in 0..batch {
                    k1_valid[r] = true;
                    if k0[r * dim..(r + 1) * dim].iter().any(|v| !v.is_finite()) {
                        let e = OdeError::NonFinite {
                            what: "derivative",
                            t: t0.f64(),
                            sample: r,
                        };
                        if shared {
                            return Err(e);
                        }
                        ws.live[r] = false;
                        ws.status[r] = Some(e);
                    }
                }
                scaled_norms(norms, batch, dim, shared, y, k0, None, opts);
                for r in 0..batch {
                    let (d0, d1) = norms[r];
                    let h0 = if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 };
                    let h0t = dir * T::c(h0);
                    t_eval[r] = t[r] + h0t;
                    ws.ratio[r] = h0;
                    for i in r * dim..(r + 1) * dim {
                        y_stage[i] = y[i] + h0t * k0[i];
                    }
                }
                eval_rows(
                    f, dim, batch, active, t_eval, y_stage, k_end, gather_t, gather_in, gather_out, stats, &mut nfe,
                );
                for r in 0..batch {
                    ws.hist[r][0] = norms[r].1;
                }
                scaled_norms(norms, batch, dim, shared, y, k0, Some(k_end), opts);
                for r in 0..batch {
                    let h0 = ws.ratio[r];
                    let d1 = ws.hist[r][0];
                    let d2 = norms[r].1 / h0;
                    let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
                        (h0 * 1e-3).max(1e-6)
                    } else {
                        (0.01 / d1.max(d2)).powf(1.0 / (tableau.order as f64 + 1.0))
                    };
                    let mut h = (100.0 * h0).min(h1);
                    if !h.is_finite() {
                        h = 1e-6;
                    }
                    ws.h[r] = dir * T::c(h);
                    ws.hist[r] = [1.0, 1.0];
                    ws.ratio[r] = 0.0;
                }
            }
        }

        loop {
            // Drop finished or failed samples.
            ws.active.retain(|&r| ws.live[r]);
            if ws.active.is_empty() {
                break;
            }
            // Choose this iteration's step per sample; check limits.
            let mut shared_fail: Option<OdeError> = None;
            for idx in 0..ws.active.len() {
                let r = ws.active[idx];
                let t = ws.t[r];
                let st = ws.stats[r];
                if st.accepted + st.rejected >= opts.max_num_steps {
                    let e = OdeError::MaxStepsExceeded {
                        t: t.f64(),
                        max_num_steps: opts.max_num_steps,
                        sample: r,
                    };
                    fail(ws, r, e, &mut shared_fail, shared);
                    continue;
                }
                let target = if adaptive || opts.step_size.is_some() {
                    t_end
                } else {
                    ts[ws.next_out[r]]
                };
                let h = match opts.next_step(adaptive, t, target, ws.h[r], dir) {
                    Ok(h) => h,
                    Err((h, floor)) => {
                        // In shared mode, blame the sample with the largest error at the last try.
                        let sample = if shared { ws.culprit } else { r };
                        let e = if ws.nonfinite_trial[r] {
                            OdeError::NonFinite {
                                what: "state",
                                t: t.f64(),
                                sample,
                            }
                        } else {
                            OdeError::StepSizeUnderflow {
                                t: t.f64(),
                                h: h.abs().f64(),
                                min_step: floor.f64(),
                                sample,
                            }
                        };
                        fail(ws, r, e, &mut shared_fail, shared);
                        continue;
                    }
                };
                ws.h_step[r] = h;
            }
            if let Some(e) = shared_fail {
                return Err(e);
            }
            ws.active.retain(|&r| ws.live[r]);
            if ws.active.is_empty() {
                break;
            }

            // Stage 1 where not carried over from the previous step (FSAL or a rejected step).
            {
                let Workspace {
                    k,
                    y,
                    t,
                    gather_t,
                    gather_in,
                    gather_out,
                    stats,
                    active,
                    rows,
                    k1_valid,
                    ..
                } = ws;
                rows.clear();
                rows.extend(active.iter().copied().filter(|&r| !k1_valid[r]));
                eval_rows(
                    f, dim, batch, rows, t, y, &mut k[0], gather_t, gather_in, gather_out, stats, &mut nfe,
                );
                for &r in rows.iter() {
                    k1_valid[r] = true;
                }
            }
            for &r in ws.rows.iter() {
                if ws.k[0][r * dim..(r + 1) * dim].iter().any(|v| !v.is_finite()) {
                    let e = OdeError::NonFinite {
                        what: "derivative",
                        t: ws.t[r].f64(),
                        sample: r,
                    };
                    if shared {
                        return Err(e);
                    }
                    ws.live[r] = false;
                    ws.status[r] = Some(e);
                }
            }
            ws.active.retain(|&r| ws.live[r]);
            if ws.active.is_empty() {
                break;
            }

            // Remaining stages.
            for i in 1..s {
                let Workspace {
                    k,
                    y,
                    y_stage,
                    t,
                    t_eval,
                    h_step,
                    gather_t,
                    gather_in,
                    gather_out,
                    stats,
                    active,
                    ..
                } = ws;
                let (done, todo) = k.split_at_mut(i);
                let ai = &a[i];
                for &r in active.iter() {
                    let h = h_step[r];
                    t_eval[r] = t[r] + c[i] * h;
                    let o = r * dim;
                    let ys = &mut y_stage[o..o + dim];
                    ys.copy_from_slice(&y[o..o + dim]);
                    for (j, &aij) in ai.iter().enumerate() {
                        if aij != T::zero() {
                            let coef = h * aij;
                            for (v, kk) in ys.iter_mut().zip(&done[j][o..o + dim]) {
                                *v = *v + coef * *kk;
                            }
                        }
                    }
                }
                eval_rows(
                    f,
                    dim,
                    batch,
                    active,
                    t_eval,
                    y_stage,
                    &mut todo[0],
                    gather_t,
                    gather_in,
                    gather_out,
                    stats,
                    &mut nfe,
                );
            }

            // Solution and error estimate.
            let mut shared_sum = 0.0f64;
            let mut shared_cnt = 0usize;
            let mut worst = (0usize, -1.0f64);
            for &r in ws.active.iter() {
                let h = ws.h_step[r];
                let o = r * dim;
                let yn = &mut ws.y_new[o..o + dim];
                yn.copy_from_slice(&ws.y[o..o + dim]);
                for (j, &bj) in b.iter().enumerate() {
                    if bj != T::zero() {
                        let coef = h * bj;
                        for (v, kk) in yn.iter_mut().zip(&ws.k[j][o..o + dim]) {
                            *v = *v + coef * *kk;
                        }
                    }
                }
                if let Some(be) = b_err.as_ref().filter(|_| adaptive) {
                    let mut sum = 0.0f64;
                    for i in 0..dim {
                        let mut e = T::zero();
                        for (j, &bj) in be.iter().enumerate() {
                            e = e + bj * ws.k[j][o + i];
                        }
                        let e = h * e;
                        let y0 = ws.y[o + i].abs();
                        let y1 = ws.y_new[o + i].abs();
                        let sc = opts.atol.get(i) + opts.rtol.get(i) * y0.max(y1);
                        let q = (e / sc).f64();
                        sum += q * q;
                    }
                    if !ws.y_new[o..o + dim].iter().all(|v| v.is_finite()) {
                        sum = f64::NAN;
                    }
                    if shared {
                        shared_sum += sum;
                        shared_cnt += dim;
                        // The largest error, a NaN one (a blown-up sample) above all.
                        if !worst.1.is_nan() && (sum.is_nan() || sum > worst.1) {
                            worst = (r, sum);
                        }
                    } else {
                        ws.ratio[r] = (sum / dim as f64).sqrt();
                    }
                }
            }
            if shared && adaptive {
                ws.culprit = worst.0;
                let ratio = (shared_sum / shared_cnt as f64).sqrt();
                for &r in ws.active.iter() {
                    ws.ratio[r] = ratio;
                }
            }

            // Accept or reject.
            for &r in ws.active.iter() {
                let ok = if adaptive {
                    ws.ratio[r] <= 1.0
                } else {
                    ws.y_new[r * dim..(r + 1) * dim].iter().all(|v| v.is_finite())
                };
                ws.accepted[r] = ok;
                if !adaptive && !ok {
                    let e = OdeError::NonFinite {
                        what: "state",
                        t: (ws.t[r] + ws.h_step[r]).f64(),
                        sample: r,
                    };
                    if shared {
                        return Err(e);
                    }
                    ws.live[r] = false;
                    ws.status[r] = Some(e);
                }
            }
            ws.active.retain(|&r| ws.live[r]);

            // Derivative at the step end for Hermite output of non-FSAL methods, only where an
            // output time falls strictly inside an accepted step; it is reused as the next k1.
            let need_end = dense.is_none() && !fsal;
            ws.rows.clear();
            if need_end {
                for &r in ws.active.iter() {
                    if ws.accepted[r] && ws.next_out[r] < ts.len() {
                        let tn = ws.t[r] + ws.h_step[r];
                        let tk = ts[ws.next_out[r]];
                        if (tk - tn) * dir < T::zero() {
                            ws.rows.push(r);
                            ws.t_eval[r] = tn;
                        }
                    }
                }
                let Workspace {
                    k_end,
                    y_new,
                    t_eval,
                    gather_t,
                    gather_in,
                    gather_out,
                    stats,
                    rows,
                    ..
                } = ws;
                eval_rows(
                    f, dim, batch, rows, t_eval, y_new, k_end, gather_t, gather_in, gather_out, stats, &mut nfe,
                );
            }

            // Commit accepted steps: outputs, state, FSAL; next step size.
            let mut step_shared_h: Option<T> = None;
            if let Some(tp) = tape.as_deref_mut() {
                tp.iters.push(tp.steps.len());
            }
            for idx in 0..ws.active.len() {
                let r = ws.active[idx];
                let h = ws.h_step[r];
                let o = r * dim;
                let accepted = ws.accepted[r];
                if adaptive {
                    let ratio = ws.ratio[r];
                    let [r1, r2] = ws.hist[r];
                    let factor = opts.controller.factor(accepted, ratio, r1, r2, err_order);
                    ws.nonfinite_trial[r] = !ratio.is_finite();
                    if accepted {
                        ws.hist[r] = [ratio.max(1e-10), r1];
                    }
                    let hn = h * T::c(factor);
                    ws.h[r] = hn;
                    step_shared_h = Some(hn);
                }
                if !accepted {
                    ws.stats[r].rejected += 1;
                    continue;
                }
                ws.stats[r].accepted += 1;
                let t = ws.t[r];
                let target = if adaptive || opts.step_size.is_some() {
                    t_end
                } else {
                    ts[ws.next_out[r]]
                };
                let tn = if h == target - t { target } else { t + h };
                let has_end = ws.rows.binary_search(&r).is_ok();
                if let Some(tp) = tape.as_deref_mut() {
                    tp.steps.push(TapeStep {
                        row: r,
                        t,
                        h,
                        outs: tp.outs.len()..tp.outs.len(),
                    });
                    tp.ys.extend_from_slice(&ws.y[o..o + dim]);
                }
                // Outputs inside (t, tn].
                while ws.next_out[r] < ts.len() {
                    let kidx = ws.next_out[r];
                    let tk = ts[kidx];
                    if (tk - tn) * dir > T::zero() {
                        break;
                    }
                    let dst = &mut out[kidx * w + o..kidx * w + o + dim];
                    if let Some(tp) = tape.as_deref_mut() {
                        let theta = if tk == tn { None } else { Some((tk - t) / h) };
                        tp.outs.push((kidx, theta));
                        tp.steps.last_mut().expect("step recorded").outs.end += 1;
                    }
                    if tk == tn {
                        dst.copy_from_slice(&ws.y_new[o..o + dim]);
                    } else {
                        let theta = (tk - t) / h;
                        if let Some(d) = dense.as_ref() {
                            dst.copy_from_slice(&ws.y[o..o + dim]);
                            for (j, row) in d.iter().enumerate() {
                                let mut bj = T::zero();
                                let mut p = theta;
                                for &cj in row {
                                    bj = bj + cj * p;
                                    p = p * theta;
                                }
                                let coef = h * bj;
                                if coef != T::zero() {
                                    for (v, kk) in dst.iter_mut().zip(&ws.k[j][o..o + dim]) {
                                        *v = *v + coef * *kk;
                                    }
                                }
                            }
                        } else {
                            let f1 = if fsal {
                                &ws.k[s - 1][o..o + dim]
                            } else {
                                debug_assert!(has_end);
                                &ws.k_end[o..o + dim]
                            };
                            let th2 = theta * theta;
                            let th3 = th2 * theta;
                            let two = T::c(2.0);
                            let three = T::c(3.0);
                            let h00 = two * th3 - three * th2 + T::one();
                            let h10 = (th3 - two * th2 + theta) * h;
                            let h01 = three * th2 - two * th3;
                            let h11 = (th3 - th2) * h;
                            for i in 0..dim {
                                dst[i] = h00 * ws.y[o + i] + h10 * ws.k[0][o + i] + h01 * ws.y_new[o + i] + h11 * f1[i];
                            }
                        }
                    }
                    ws.next_out[r] += 1;
                }
                let (yd, yn) = (&mut ws.y[o..o + dim], &ws.y_new[o..o + dim]);
                yd.copy_from_slice(yn);
                ws.t[r] = tn;
                if fsal {
                    let (k0, rest) = ws.k.split_first_mut().expect("stages");
                    k0[o..o + dim].copy_from_slice(&rest[s - 2][o..o + dim]);
                    ws.k1_valid[r] = true;
                } else if has_end {
                    ws.k[0][o..o + dim].copy_from_slice(&ws.k_end[o..o + dim]);
                    ws.k1_valid[r] = true;
                } else {
                    ws.k1_valid[r] = false;
                }
                if tn == t_end {
                    ws.live[r] = false;
                }
            }
            if shared {
                if let Some(hn) = step_shared_h {
                    for &r in ws.active.iter() {
                        ws.h[r] = hn;
                    }
                }
            }
        }

        // Collect statistics and failures.
        let mut report = Report::default();
        report.stats.nfe = nfe;
        report.stats.per_sample.extend_from_slice(&ws.stats);
        if shared {
            if let Some(s0) = ws.stats.first() {
                report.stats.accepted = s0.accepted;
                report.stats.rejected = s0.rejected;
            }
        } else {
            report.stats.accepted = ws.stats.iter().map(|s| s.accepted).sum();
            report.stats.rejected = ws.stats.iter().map(|s| s.rejected).sum();
        }
        for r in 0..batch {
            if let Some(e) = ws.status[r].take() {
                if opts.throw {
                    return Err(e);
                }
                for kidx in ws.next_out[r]..ts.len() {
                    out[kidx * w + r * dim..kidx * w + (r + 1) * dim].fill(T::nan());
                }
                report.failures.push(e);
            }
        }
        Ok(report)
    }
}

/// Marks sample `r` failed; in shared mode the first failure ends the whole solve.
fn fail<T>(ws: &mut Workspace<T>, r: usize, e: OdeError, shared_fail: &mut Option<OdeError>, shared: bool) {
    ws.live[r] = false;
    if shared {
        if shared_fail.is_none() {
            *shared_fail = Some(e);
        }
    } else {
        ws.status[r] = Some(e);
    }
}

/// Scaled RMS norms per sample (or over the batch in shared mode) with
/// `sc = atol + rtol·|y|`, for the initial step selection: `(‖y/sc‖, ‖f0/sc‖)`, or, when `f1`
/// is given, `(‖y/sc‖, ‖(f1 - f0)/sc‖)`.
fn scaled_norms<T: Scalar>(
    d: &mut Vec<(f64, f64)>,
    batch: usize,
    dim: usize,
    shared: bool,
    y: &[T],
    f0: &[T],
    f1: Option<&[T]>,
    opts: &SolveOptions<T>,
) {
    d.clear();
    for r in 0..batch {
        let (mut s0, mut s1) = (0.0, 0.0);
        for i in 0..dim {
            let j = r * dim + i;
            let sc = (opts.atol.get(i) + opts.rtol.get(i) * y[j].abs()).f64();
            let a = y[j].f64() / sc;
            let b = match f1 {
                Some(f1) => (f1[j] - f0[j]).f64() / sc,
                None => f0[j].f64() / sc,
            };
            s0 += a * a;
            s1 += b * b;
        }
        d.push((s0, s1));
    }
    if shared {
        let n = (batch * dim) as f64;
        let (s0, s1) = d.iter().fold((0.0, 0.0), |acc, x| (acc.0 + x.0, acc.1 + x.1));
        let v = ((s0 / n).sqrt(), (s1 / n).sqrt());
        d.iter_mut().for_each(|x| *x = v);
    } else {
        d.iter_mut()
            .for_each(|x| *x = ((x.0 / dim as f64).sqrt(), (x.1 / dim as f64).sqrt()));
    }
}
