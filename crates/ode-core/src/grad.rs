//! Gradients through a solve: the field's vector-Jacobian products, and backpropagation
//! through the solver's own accepted steps (discretise-then-optimise).

use crate::Scalar;
use crate::error::{OdeError, Result};
use crate::field::VectorField;
use crate::mlp::Mlp;
use crate::solver::{Solver, Tape};

/// A vector field with parameters whose vector-Jacobian products are available, so solves
/// through it can be differentiated.
pub trait VjpField<T: Scalar>: VectorField<T> {
    /// Number of parameters `θ` (the length of parameter gradients).
    fn num_params(&self) -> usize;

    /// For the rows of `y` at times `t`: writes `vᵀ ∂f/∂y` into `gy`, **adds**
    /// `Σ_rows vᵀ ∂f/∂θ` to `gp` when given, and writes `f(t, y)` into `f_out` when given.
    fn vjp(&mut self, t: &[T], y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], gp: Option<&mut [T]>);
}

impl<T: Scalar> VjpField<T> for Mlp<T> {
    fn num_params(&self) -> usize {
        Mlp::num_params(self)
    }
    fn vjp(&mut self, _t: &[T], y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], gp: Option<&mut [T]>) {
        Mlp::vjp(self, y, v, f_out, gy, gp)
    }
}

impl<T: Scalar, F: VjpField<T> + ?Sized> VjpField<T> for &mut F {
    fn num_params(&self) -> usize {
        (**self).num_params()
    }
    fn vjp(&mut self, t: &[T], y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], gp: Option<&mut [T]>) {
        (**self).vjp(t, y, v, f_out, gy, gp)
    }
}

/// Work counters of [`Solver::backprop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackpropStats {
    /// Batched field evaluations and VJPs (recomputed stages included).
    pub nfe: usize,
    /// Evaluations summed over samples (`nfe` weighted by the rows each call covered).
    pub sample_evals: usize,
}

/// Scratch space of [`Solver::backprop`], kept in the solver so repeated backward passes of
/// one shape allocate nothing.
#[derive(Debug, Default)]
pub(crate) struct BackpropWorkspace<T> {
    y: Vec<T>,
    t: Vec<T>,
    t_stage: Vec<T>,
    stage_in: Vec<Vec<T>>,
    stage_k: Vec<Vec<T>>,
    kbar: Vec<Vec<T>>,
    ybar: Vec<T>,
    yend_bar: Vec<T>,
    y_new: Vec<T>,
    f1bar: Vec<T>,
    gy: Vec<T>,
    adj: Vec<T>,
}

fn fit<T: Scalar>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::zero());
    }
}

impl<T: Scalar> Solver<T> {
    /// Backpropagation through the solver: given the cotangents `grad_out` of the outputs of a
    /// solve recorded by [`solve_taped`](Self::solve_taped) (`ts.len() × batch × dim`), writes
    /// the gradient with respect to the initial state into `grad_y0` (`batch × dim`) and **adds**
    /// the gradient with respect to the field's parameters to `grad_params`. Returns its work
    /// counters (a VJP counts as one evaluation).
    ///
    /// This is the exact gradient of the discrete computation (stages, weights, dense output)
    /// with the accepted step sequence held fixed: how the adaptive controller's step sizes
    /// would move with the parameters is not differentiated (its effect is of the order of the
    /// tolerance). Stages are recomputed from the stored step-start states, so memory is one
    /// state per accepted step.
    pub fn backprop<F: VjpField<T> + ?Sized>(
        &mut self,
        f: &mut F,
        tape: &Tape<T>,
        grad_out: &[T],
        grad_y0: &mut [T],
        grad_params: &mut [T],
    ) -> Result<BackpropStats> {
        let (n, batch, n_ts) = (tape.dim, tape.batch, tape.n_ts);
        if f.dim() != n {
            return Err(OdeError::ShapeMismatch {
                what: "vector field dimension (vs the tape)",
                expected: n,
                got: f.dim(),
            });
        }
        let checks = [
            (
                "output cotangents (times × batch × dim)",
                n_ts * batch * n,
                grad_out.len(),
            ),
            ("initial-state gradient (batch × dim)", batch * n, grad_y0.len()),
            ("parameter gradient", f.num_params(), grad_params.len()),
        ];
        for (what, expected, got) in checks {
            if expected != got {
                return Err(OdeError::ShapeMismatch { what, expected, got });
            }
        }
        let s = self.tableau.stages();
        let fsal = self.tableau.is_fsal();
        let Self {
            a, b, c, dense, bws: w, ..
        } = self;
        let width = batch * n;
        for v in [
            &mut w.y,
            &mut w.ybar,
            &mut w.yend_bar,
            &mut w.y_new,
            &mut w.f1bar,
            &mut w.gy,
        ] {
            fit(v, width);
        }
        fit(&mut w.t, batch);
        fit(&mut w.t_stage, batch);
        for v in [&mut w.stage_in, &mut w.stage_k, &mut w.kbar] {
            if v.len() < s {
                v.resize_with(s, Vec::new);
            }
            for x in v.iter_mut() {
                fit(x, width);
            }
        }
        w.adj.clear();
        w.adj.resize(width, T::zero());
        let mut nfe = 0usize;
        let mut sample_evals = 0usize;

        for it in (0..tape.iters.len()).rev() {
            let lo = tape.iters[it];
            let hi = tape.iters.get(it + 1).copied().unwrap_or(tape.steps.len());
            if lo == hi {
                continue;
            }
            let steps = &tape.steps[lo..hi];
            let m = steps.len();
            let mn = m * n;
            // Gather the step-start states and recompute the stages.
            for (j, st) in steps.iter().enumerate() {
                w.y[j * n..(j + 1) * n].copy_from_slice(&tape.ys[(lo + j) * n..(lo + j + 1) * n]);
                w.t[j] = st.t;
            }
            for i in 0..s {
                let (done, todo) = w.stage_k.split_at_mut(i);
                let yi = &mut w.stage_in[i][..mn];
                for (j, st) in steps.iter().enumerate() {
                    let row = &mut yi[j * n..(j + 1) * n];
                    row.copy_from_slice(&w.y[j * n..(j + 1) * n]);
                    for (l, &al) in a[i].iter().enumerate() {
                        if al != T::zero() {
                            let coef = st.h * al;
                            for (v, k) in row.iter_mut().zip(&done[l][j * n..(j + 1) * n]) {
                                *v = *v + coef * *k;
                            }
                        }
                    }
                    w.t_stage[j] = st.t + c[i] * st.h;
                }
                f.eval(&w.t_stage[..m], yi, &mut todo[0][..mn]);
                nfe += 1;
                sample_evals += m;
            }
            // Cotangents of this iteration's outputs and of the step ends.
            for kb in w.kbar.iter_mut() {
                kb[..mn].fill(T::zero());
            }
            w.ybar[..mn].fill(T::zero());
            w.f1bar[..mn].fill(T::zero());
            let mut need_f1 = false;
            for (j, st) in steps.iter().enumerate() {
                let (r, h) = (st.row, st.h);
                w.yend_bar[j * n..(j + 1) * n].copy_from_slice(&w.adj[r * n..(r + 1) * n]);
                for &(kidx, theta) in &tape.outs[st.outs.clone()] {
                    let o = (kidx * batch + r) * n;
                    let ob = &grad_out[o..o + n];
                    let Some(theta) = theta else {
                        for (v, g) in w.yend_bar[j * n..(j + 1) * n].iter_mut().zip(ob) {
                            *v = *v + *g;
                        }
                        continue;
                    };
                    if let Some(d) = dense.as_ref() {
                        add_to(&mut w.ybar[j * n..(j + 1) * n], T::one(), ob);
                        for (i, row) in d.iter().enumerate() {
                            let mut bi = T::zero();
                            let mut p = theta;
                            for &cp in row {
                                bi = bi + cp * p;
                                p = p * theta;
                            }
                            add_to(&mut w.kbar[i][j * n..(j + 1) * n], h * bi, ob);
                        }
                    } else {
                        let (th2, two, three) = (theta * theta, T::c(2.0), T::c(3.0));
                        let th3 = th2 * theta;
                        let h00 = two * th3 - three * th2 + T::one();
                        let h10 = (th3 - two * th2 + theta) * h;
                        let h01 = three * th2 - two * th3;
                        let h11 = (th3 - th2) * h;
                        add_to(&mut w.ybar[j * n..(j + 1) * n], h00, ob);
                        add_to(&mut w.kbar[0][j * n..(j + 1) * n], h10, ob);
                        add_to(&mut w.yend_bar[j * n..(j + 1) * n], h01, ob);
                        if fsal {
                            add_to(&mut w.kbar[s - 1][j * n..(j + 1) * n], h11, ob);
                        } else {
                            add_to(&mut w.f1bar[j * n..(j + 1) * n], h11, ob);
                            need_f1 = true;
                        }
                    }
                }
            }
            if need_f1 {
                // Hermite output of a non-FSAL method used f(y_new): differentiate through it.
                for (j, st) in steps.iter().enumerate() {
                    let yn = &mut w.y_new[j * n..(j + 1) * n];
                    yn.copy_from_slice(&w.y[j * n..(j + 1) * n]);
                    for (i, &bi) in b.iter().enumerate() {
                        add_to(yn, st.h * bi, &w.stage_k[i][j * n..(j + 1) * n]);
                    }
                    w.t_stage[j] = st.t + st.h;
                }
                f.vjp(
                    &w.t_stage[..m],
                    &w.y_new[..mn],
                    &w.f1bar[..mn],
                    None,
                    &mut w.gy[..mn],
                    Some(grad_params),
                );
                nfe += 1;
                sample_evals += m;
                for (v, g) in w.yend_bar[..mn].iter_mut().zip(&w.gy[..mn]) {
                    *v = *v + *g;
                }
            }
            // y_new = y + h Σ b_i k_i.
            for (j, st) in steps.iter().enumerate() {
                let yb = &w.yend_bar[j * n..(j + 1) * n];
                add_to(&mut w.ybar[j * n..(j + 1) * n], T::one(), yb);
                for (i, &bi) in b.iter().enumerate() {
                    if bi != T::zero() {
                        add_to(&mut w.kbar[i][j * n..(j + 1) * n], st.h * bi, yb);
                    }
                }
            }
            // Stages in reverse: k_i = f(Y_i), Y_i = y + h Σ_{l<i} a_il k_l.
            for i in (0..s).rev() {
                if w.kbar[i][..mn].iter().all(|v| *v == T::zero()) {
                    continue;
                }
                for (j, st) in steps.iter().enumerate() {
                    w.t_stage[j] = st.t + c[i] * st.h;
                }
                f.vjp(
                    &w.t_stage[..m],
                    &w.stage_in[i][..mn],
                    &w.kbar[i][..mn],
                    None,
                    &mut w.gy[..mn],
                    Some(grad_params),
                );
                nfe += 1;
                sample_evals += m;
                let (lower, _) = w.kbar.split_at_mut(i);
                for (j, st) in steps.iter().enumerate() {
                    let gy = &w.gy[j * n..(j + 1) * n];
                    add_to(&mut w.ybar[j * n..(j + 1) * n], T::one(), gy);
                    for (l, &al) in a[i].iter().enumerate() {
                        if al != T::zero() {
                            add_to(&mut lower[l][j * n..(j + 1) * n], st.h * al, gy);
                        }
                    }
                }
            }
            for (j, st) in steps.iter().enumerate() {
                let r = st.row;
                w.adj[r * n..(r + 1) * n].copy_from_slice(&w.ybar[j * n..(j + 1) * n]);
            }
        }
        for ((g, a), o) in grad_y0.iter_mut().zip(&w.adj).zip(&grad_out[..width]) {
            *g = *a + *o;
        }
        Ok(BackpropStats { nfe, sample_evals })
    }
}

/// `dst += coef · src`.
#[inline]
pub(crate) fn add_to<T: Scalar>(dst: &mut [T], coef: T, src: &[T]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *d + coef * *s;
    }
}
