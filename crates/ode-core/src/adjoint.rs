//! The continuous adjoint method: gradients of a loss on the outputs of a solve by solving the
//! augmented system backwards in time, with memory independent of the number of steps.

use crate::Scalar;
use crate::error::{OdeError, Result};
use crate::grad::{VjpField, add_to};
use crate::options::{SolveOptions, StepMode};
use crate::tableau::{ButcherTableau, Method};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

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

impl AdjointNorm {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AdjointNorm::Seminorm => "seminorm",
            AdjointNorm::Mixed => "mixed",
        }
    }
}

impl fmt::Display for AdjointNorm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AdjointNorm {
    type Err = OdeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "seminorm" => Ok(AdjointNorm::Seminorm),
            "mixed" => Ok(AdjointNorm::Mixed),
            _ => Err(OdeError::InvalidChoice {
                name: "adjoint norm",
                value: s.to_string(),
                expected: "seminorm, mixed",
            }),
        }
    }
}

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
    theta: Vec<T>,
    theta_new: Vec<T>,
    // Gathered rows.
    ct: Vec<T>,
    cz: Vec<T>,
    cv: Vec<T>,
    cf: Vec<T>,
    cgy: Vec<T>,
    // Per row.
    t: Vec<T>,
    h: Vec<T>,
    hs: Vec<T>,
    ratio: Vec<f64>,
    hist: Vec<[f64; 2]>,
    live: Vec<bool>,
    ok: Vec<bool>,
    nonfinite: Vec<bool>,
    steps: Vec<usize>,
    active: Vec<usize>,
    acc_rows: Vec<usize>,
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
    tableau: ButcherTableau,
    a: Vec<Vec<T>>,
    b: Vec<T>,
    c: Vec<T>,
    b_err: Option<Vec<T>>,
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
        let tableau = method.tableau();
        let cv = |v: &[f64]| v.iter().map(|&x| T::c(x)).collect::<Vec<T>>();
        Ok(Self {
            a: tableau.a.iter().map(|r| cv(r)).collect(),
            b: cv(&tableau.b),
            c: cv(&tableau.c),
            b_err: tableau.b_err.as_deref().map(cv),
            tableau,
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
        let n = f.dim();
        let p = f.num_params();
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
        if ts.len() < 2 {
            return Err(OdeError::TooFewTimes { got: ts.len() });
        }
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
        self.opts.validate(n)?;
        let all = 0..p;
        let full = std::slice::from_ref(&all);
        let groups: &[Range<usize>] = if param_groups.is_empty() { full } else { param_groups };
        let Self {
            tableau,
            a,
            b,
            c,
            b_err,
            opts,
            norm,
            ws,
        } = self;
        let s = tableau.stages();
        let shared = opts.step_mode == StepMode::Shared;
        let adaptive = b_err.is_some() && opts.step_size.is_none();
        let err_order = tableau.embedded_order.map_or(1.0, |q| q as f64 + 1.0);
        let w = batch * n;
        let fit = |v: &mut Vec<T>, len: usize| {
            v.clear();
            v.resize(len, T::zero());
        };
        for v in [
            &mut ws.z_new,
            &mut ws.a_new,
            &mut ws.cz,
            &mut ws.cv,
            &mut ws.cf,
            &mut ws.cgy,
        ] {
            fit(v, w);
        }
        for v in [&mut ws.kz, &mut ws.ka, &mut ws.zin, &mut ws.ain] {
            v.resize_with(s, Vec::new);
            v.iter_mut().for_each(|x| fit(x, w));
        }
        ws.g.resize_with(s, Vec::new);
        ws.g.iter_mut().for_each(|x| fit(x, p));
        fit(&mut ws.theta, p);
        fit(&mut ws.theta_new, p);
        for v in [&mut ws.t, &mut ws.h, &mut ws.hs, &mut ws.ct] {
            fit(v, batch);
        }
        ws.ratio.clear();
        ws.ratio.resize(batch, 0.0);
        ws.hist.clear();
        ws.hist.resize(batch, [1.0, 1.0]);
        ws.live.clear();
        ws.live.resize(batch, true);
        ws.ok.clear();
        ws.ok.resize(batch, false);
        ws.nonfinite.clear();
        ws.nonfinite.resize(batch, false);
        ws.steps.clear();
        ws.steps.resize(batch, 0);
        ws.z.clear();
        ws.z.extend_from_slice(&ys[(ts.len() - 1) * batch * n..]);
        ws.a.clear();
        ws.a.extend_from_slice(&grad_out[(ts.len() - 1) * w..]);
        let mut stats = AdjointStats::default();
        let sc = |i: usize, x: T, y: T| (opts.atol.get(i) + opts.rtol.get(i) * x.abs().max(y.abs())).f64();
        let mut first_interval = true;

        for k in (1..ts.len()).rev() {
            let (t_hi, t_lo) = (ts[k], ts[k - 1]);
            let dir = if t_lo < t_hi { -T::one() } else { T::one() };
            ws.active.clear();
            ws.active.extend(0..batch);
            for r in 0..batch {
                ws.t[r] = t_hi;
                ws.live[r] = true;
            }
            if adaptive && first_interval {
                let h0 = opts.first_step.map(|h| h.abs().f64());
                initial_steps(f, ws, n, batch, shared, dir, h0, tableau.order, opts, &mut stats);
            }
            first_interval = false;

            loop {
                ws.active.retain(|&r| ws.live[r]);
                if ws.active.is_empty() {
                    break;
                }
                // Step sizes for this iteration.
                for idx in 0..ws.active.len() {
                    let r = ws.active[idx];
                    if ws.steps[r] >= opts.max_num_steps {
                        return Err(OdeError::MaxStepsExceeded {
                            t: ws.t[r].f64(),
                            max_num_steps: opts.max_num_steps,
                            sample: r,
                        });
                    }
                    let t = ws.t[r];
                    let h = opts.next_step(adaptive, t, t_lo, ws.h[r], dir).map_err(|(h, floor)| {
                        if ws.nonfinite[r] {
                            OdeError::NonFinite {
                                what: "adjoint state",
                                t: t.f64(),
                                sample: r,
                            }
                        } else {
                            OdeError::StepSizeUnderflow {
                                t: t.f64(),
                                h: h.abs().f64(),
                                min_step: floor.f64(),
                                sample: r,
                            }
                        }
                    })?;
                    ws.hs[r] = h;
                }
                // Stages. Parameter gradients are weighted by each row's step so one batched
                // VJP gives Σ_r h_r aᵀ∂f/∂θ.
                for i in 0..s {
                    let m = ws.active.len();
                    for (j, &r) in ws.active.iter().enumerate() {
                        let h = ws.hs[r];
                        let (o, cj) = (r * n, j * n);
                        ws.zin[i][o..o + n].copy_from_slice(&ws.z[o..o + n]);
                        ws.ain[i][o..o + n].copy_from_slice(&ws.a[o..o + n]);
                        for (l, &al) in a[i].iter().enumerate() {
                            if al != T::zero() {
                                add_to(&mut ws.zin[i][o..o + n], h * al, &ws.kz[l][o..o + n]);
                                add_to(&mut ws.ain[i][o..o + n], h * al, &ws.ka[l][o..o + n]);
                            }
                        }
                        ws.ct[j] = ws.t[r] + c[i] * h;
                        ws.cz[cj..cj + n].copy_from_slice(&ws.zin[i][o..o + n]);
                        for (v, x) in ws.cv[cj..cj + n].iter_mut().zip(&ws.ain[i][o..o + n]) {
                            *v = h * *x;
                        }
                    }
                    ws.g[i].fill(T::zero());
                    f.vjp(
                        &ws.ct[..m],
                        &ws.cz[..m * n],
                        &ws.cv[..m * n],
                        Some(&mut ws.cf[..m * n]),
                        &mut ws.cgy[..m * n],
                        Some(&mut ws.g[i]),
                    );
                    stats.nfe += 1;
                    stats.sample_evals += m;
                    for (j, &r) in ws.active.iter().enumerate() {
                        let h = ws.hs[r];
                        let (o, cj) = (r * n, j * n);
                        ws.kz[i][o..o + n].copy_from_slice(&ws.cf[cj..cj + n]);
                        for (d, g) in ws.ka[i][o..o + n].iter_mut().zip(&ws.cgy[cj..cj + n]) {
                            *d = -(*g / h);
                        }
                    }
                }
                // Solutions and error ratios.
                let (mut sz, mut sa, mut nonfinite_any) = (0.0f64, 0.0f64, false);
                for &r in ws.active.iter() {
                    let h = ws.hs[r];
                    let o = r * n;
                    ws.z_new[o..o + n].copy_from_slice(&ws.z[o..o + n]);
                    ws.a_new[o..o + n].copy_from_slice(&ws.a[o..o + n]);
                    for (i, &bi) in b.iter().enumerate() {
                        if bi != T::zero() {
                            add_to(&mut ws.z_new[o..o + n], h * bi, &ws.kz[i][o..o + n]);
                            add_to(&mut ws.a_new[o..o + n], h * bi, &ws.ka[i][o..o + n]);
                        }
                    }
                    let finite = ws.z_new[o..o + n]
                        .iter()
                        .chain(&ws.a_new[o..o + n])
                        .all(|v| v.is_finite());
                    if !adaptive {
                        if !finite {
                            return Err(OdeError::NonFinite {
                                what: "adjoint state",
                                t: (ws.t[r] + h).f64(),
                                sample: r,
                            });
                        }
                        continue;
                    }
                    let be = b_err.as_ref().expect("adaptive");
                    let (mut qz, mut qa) = (0.0f64, 0.0f64);
                    for i in 0..n {
                        let (mut ez, mut ea) = (T::zero(), T::zero());
                        for (l, &bl) in be.iter().enumerate() {
                            ez = ez + bl * ws.kz[l][o + i];
                            ea = ea + bl * ws.ka[l][o + i];
                        }
                        let xz = (h * ez).f64() / sc(i, ws.z[o + i], ws.z_new[o + i]);
                        let xa = (h * ea).f64() / sc(i, ws.a[o + i], ws.a_new[o + i]);
                        qz += xz * xz;
                        qa += xa * xa;
                    }
                    if !finite {
                        nonfinite_any = true;
                        qz = f64::NAN;
                    }
                    if shared {
                        sz += qz;
                        sa += qa;
                    } else {
                        ws.ratio[r] = (qz / n as f64).sqrt().max((qa / n as f64).sqrt());
                        if !finite {
                            ws.ratio[r] = f64::NAN;
                        }
                    }
                }
                if adaptive && shared {
                    let cnt = (ws.active.len() * n) as f64;
                    let mut ratio = (sz / cnt).sqrt().max((sa / cnt).sqrt());
                    if nonfinite_any {
                        ratio = f64::NAN;
                    }
                    // θ̄_new = θ̄ - Σ b_i G_i; mixed norm: its error Σ b_err_i G_i, per tensor.
                    ws.theta_new.copy_from_slice(&ws.theta);
                    for (i, &bi) in b.iter().enumerate() {
                        add_to(&mut ws.theta_new, -bi, &ws.g[i]);
                    }
                    if *norm == AdjointNorm::Mixed {
                        let be = b_err.as_ref().expect("adaptive");
                        for grp in groups {
                            let mut q = 0.0f64;
                            for idx in grp.clone() {
                                let mut e = T::zero();
                                for (l, &bl) in be.iter().enumerate() {
                                    e = e + bl * ws.g[l][idx];
                                }
                                let scale = (opts.atol.get(0)
                                    + opts.rtol.get(0) * ws.theta[idx].abs().max(ws.theta_new[idx].abs()))
                                .f64();
                                let x = e.f64() / scale;
                                q += x * x;
                            }
                            if !grp.is_empty() {
                                ratio = ratio.max((q / grp.len() as f64).sqrt());
                            }
                        }
                    }
                    for &r in ws.active.iter() {
                        ws.ratio[r] = ratio;
                    }
                }
                // Accept or reject; parameter adjoint of the accepted rows.
                ws.acc_rows.clear();
                for &r in ws.active.iter() {
                    let ok = !adaptive || ws.ratio[r] <= 1.0;
                    ws.ok[r] = ok;
                    if ok {
                        ws.acc_rows.push(r);
                    }
                }
                if ws.acc_rows.len() == ws.active.len() {
                    for (i, &bi) in b.iter().enumerate() {
                        add_to(&mut ws.theta, -bi, &ws.g[i]);
                    }
                } else if !ws.acc_rows.is_empty() {
                    // Some rows were rejected: redo the weighted parameter VJPs for the others.
                    for (i, &bi) in b.iter().enumerate() {
                        if bi == T::zero() {
                            continue;
                        }
                        let m = ws.acc_rows.len();
                        for (j, &r) in ws.acc_rows.iter().enumerate() {
                            let h = ws.hs[r];
                            let (o, cj) = (r * n, j * n);
                            ws.ct[j] = ws.t[r] + c[i] * h;
                            ws.cz[cj..cj + n].copy_from_slice(&ws.zin[i][o..o + n]);
                            for (v, x) in ws.cv[cj..cj + n].iter_mut().zip(&ws.ain[i][o..o + n]) {
                                *v = -(bi * h * *x);
                            }
                        }
                        f.vjp(
                            &ws.ct[..m],
                            &ws.cz[..m * n],
                            &ws.cv[..m * n],
                            None,
                            &mut ws.cgy[..m * n],
                            Some(&mut ws.theta),
                        );
                        stats.nfe += 1;
                        stats.sample_evals += m;
                    }
                }
                for idx in 0..ws.active.len() {
                    let r = ws.active[idx];
                    let h = ws.hs[r];
                    ws.steps[r] += 1;
                    if adaptive {
                        let ratio = ws.ratio[r];
                        let [r1, r2] = ws.hist[r];
                        let factor = opts.controller.factor(ws.ok[r], ratio, r1, r2, err_order);
                        ws.nonfinite[r] = !ratio.is_finite();
                        if ws.ok[r] {
                            ws.hist[r] = [ratio.max(1e-10), r1];
                        }
                        ws.h[r] = h * T::c(factor);
                    }
                    if !ws.ok[r] {
                        stats.rejected += usize::from(!shared || idx == 0);
                        continue;
                    }
                    stats.accepted += usize::from(!shared || idx == 0);
                    let o = r * n;
                    ws.z[o..o + n].copy_from_slice(&ws.z_new[o..o + n]);
                    ws.a[o..o + n].copy_from_slice(&ws.a_new[o..o + n]);
                    let tn = if h == t_lo - ws.t[r] { t_lo } else { ws.t[r] + h };
                    ws.t[r] = tn;
                    if tn == t_lo {
                        ws.live[r] = false;
                    }
                }
            }
            // The loss gradient at this output time joins the state adjoint; the state restarts
            // from the forward solution there.
            add_to(&mut ws.a, T::one(), &grad_out[(k - 1) * w..k * w]);
            ws.z.copy_from_slice(&ys[(k - 1) * w..k * w]);
        }
        grad_y0.copy_from_slice(&ws.a);
        add_to(grad_params, T::one(), &ws.theta);
        Ok(stats)
    }
}

/// Maps a flat index of the workspace to the scaled (z, a) pair whose norms are taken.
type Pick<'a, T> = dyn Fn(&Ws<T>, usize) -> (f64, f64) + 'a;

/// Hairer's initial step for the augmented `(z, a)` system, per sample or over the batch.
#[allow(clippy::too_many_arguments)]
fn initial_steps<T: Scalar, F: VjpField<T> + ?Sized>(
    f: &mut F,
    ws: &mut Ws<T>,
    n: usize,
    batch: usize,
    shared: bool,
    dir: T,
    first: Option<f64>,
    order: usize,
    opts: &SolveOptions<T>,
    stats: &mut AdjointStats,
) {
    if let Some(h) = first {
        ws.h.iter_mut().for_each(|x| *x = dir * T::c(h));
        return;
    }
    let w = batch * n;
    let sc = |i: usize, x: T| (opts.atol.get(i) + opts.rtol.get(i) * x.abs()).f64();
    // (z, a) derivatives at the start: kz[0], ka[0] (scratch here).
    let eval = |f: &mut F, ws: &mut Ws<T>, z: &[T], a: &[T], stats: &mut AdjointStats, slot: usize| {
        ws.ct[..batch].copy_from_slice(&ws.t[..batch]);
        ws.cz[..w].copy_from_slice(z);
        f.vjp(
            &ws.ct[..batch],
            &ws.cz[..w],
            a,
            Some(&mut ws.cf[..w]),
            &mut ws.cgy[..w],
            None,
        );
        stats.nfe += 1;
        stats.sample_evals += batch;
        ws.kz[slot][..w].copy_from_slice(&ws.cf[..w]);
        for (d, g) in ws.ka[slot][..w].iter_mut().zip(&ws.cgy[..w]) {
            *d = -*g;
        }
    };
    // Runs once per backward pass; the few small vectors here are not in the step loop.
    let (z, a) = (ws.z.clone(), ws.a.clone());
    eval(f, ws, &z, &a, stats, 0);
    let norm = |rows: &[(f64, f64)]| -> Vec<f64> { rows.iter().map(|x| x.0.max(x.1)).collect() };
    let rms = |ws: &Ws<T>, pick: &Pick<'_, T>| -> Vec<(f64, f64)> {
        let mut per: Vec<(f64, f64)> = (0..batch)
            .map(|r| {
                let (mut s0, mut s1) = (0.0, 0.0);
                for i in 0..n {
                    let (x0, x1) = pick(ws, r * n + i);
                    s0 += x0 * x0;
                    s1 += x1 * x1;
                }
                (s0, s1)
            })
            .collect();
        if shared {
            let tot = per.iter().fold((0.0, 0.0), |acc, x| (acc.0 + x.0, acc.1 + x.1));
            let cnt = (batch * n) as f64;
            per.iter_mut()
                .for_each(|x| *x = ((tot.0 / cnt).sqrt(), (tot.1 / cnt).sqrt()));
        } else {
            per.iter_mut()
                .for_each(|x| *x = ((x.0 / n as f64).sqrt(), (x.1 / n as f64).sqrt()));
        }
        per
    };
    let d0 = norm(&rms(ws, &|ws, j| {
        (ws.z[j].f64() / sc(j % n, ws.z[j]), ws.a[j].f64() / sc(j % n, ws.a[j]))
    }));
    let d1 = norm(&rms(ws, &|ws, j| {
        (
            ws.kz[0][j].f64() / sc(j % n, ws.z[j]),
            ws.ka[0][j].f64() / sc(j % n, ws.a[j]),
        )
    }));
    let mut z1 = z.clone();
    let mut a1 = a.clone();
    let mut h0s = vec![0.0; batch];
    for r in 0..batch {
        let h0 = if d0[r] < 1e-5 || d1[r] < 1e-5 {
            1e-6
        } else {
            0.01 * d0[r] / d1[r]
        };
        h0s[r] = h0;
        let ht = dir * T::c(h0);
        ws.t[r] = ws.t[r] + ht;
        for j in r * n..(r + 1) * n {
            z1[j] = z[j] + ht * ws.kz[0][j];
            a1[j] = a[j] + ht * ws.ka[0][j];
        }
    }
    eval(f, ws, &z1, &a1, stats, 1);
    for r in 0..batch {
        ws.t[r] = ws.t[r] - dir * T::c(h0s[r]);
    }
    let d2 = norm(&rms(ws, &|ws, j| {
        (
            (ws.kz[1][j] - ws.kz[0][j]).f64() / sc(j % n, ws.z[j]),
            (ws.ka[1][j] - ws.ka[0][j]).f64() / sc(j % n, ws.a[j]),
        )
    }));
    for r in 0..batch {
        let (h0, d1, d2) = (h0s[r], d1[r], d2[r] / h0s[r]);
        let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / d1.max(d2)).powf(1.0 / (order as f64 + 1.0))
        };
        let mut h = (100.0 * h0).min(h1);
        if !h.is_finite() {
            h = 1e-6;
        }
        ws.h[r] = dir * T::c(h);
    }
}
