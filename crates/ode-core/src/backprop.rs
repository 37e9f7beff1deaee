//! Backpropagation through the solver's own accepted steps (discretise-then-optimise): for
//! each iteration of the solver loop on the tape, last first, the forward phases of
//! [`crate::rk`] are recomputed (stages, solution) and their transposes applied in reverse
//! (dense output, solution, stages).

use crate::Scalar;
use crate::error::{OdeError, Result};
use crate::grad::VjpField;
use crate::rk::{Coeffs, StepCotangents, Zeros};
use crate::tape::{Tape, TapeStep};

/// Work counters of [`Solver::backprop`](crate::Solver::backprop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackpropStats {
    /// Batched field evaluations and VJPs (recomputed stages included).
    pub nfe: usize,
    /// Evaluations summed over samples (`nfe` weighted by the rows each call covered).
    pub sample_evals: usize,
}

impl BackpropStats {
    fn count(&mut self, rows: usize) {
        self.nfe += 1;
        self.sample_evals += rows;
    }
}

/// The cotangents of a solve's outputs, and where the gradients go.
#[derive(Debug)]
pub(crate) struct Cotangents<'a, T> {
    /// Cotangents of every output (`times × batch × dim`).
    pub(crate) grad_out: &'a [T],
    /// Receives the gradient with respect to the initial states (`batch × dim`).
    pub(crate) grad_y0: &'a mut [T],
    /// The parameters' gradient is added here.
    pub(crate) grad_params: &'a mut [T],
}

/// One iteration of the solver loop on the tape: its accepted steps, gathered as rows `0..m`.
struct Iteration<'a, T> {
    steps: &'a [TapeStep<T>],
    /// Index of the first step on the tape.
    first: usize,
    /// State dimension.
    n: usize,
}

impl<T> Iteration<'_, T> {
    /// Gathered row `j`'s range.
    fn row(&self, j: usize) -> std::ops::Range<usize> {
        j * self.n..(j + 1) * self.n
    }

    /// Width of the gathered buffers.
    fn width(&self) -> usize {
        self.steps.len() * self.n
    }
}

/// Scratch space of backpropagation, kept in the solver so repeated backward passes of one
/// shape allocate nothing. Buffers of gathered rows (an iteration's steps) unless noted.
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
    /// The cotangent of every sample's current state (`batch × dim`).
    adj: Vec<T>,
    stats: BackpropStats,
}

fn fit<T: Scalar>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::zero());
    }
}

/// Checks the shapes of the field and the cotangents against the tape.
fn check<T: Scalar, F: VjpField<T> + ?Sized>(f: &F, tape: &Tape<T>, g: &Cotangents<'_, T>) -> Result<()> {
    let (n, batch) = (tape.dim, tape.batch);
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
            tape.n_ts * batch * n,
            g.grad_out.len(),
        ),
        ("initial-state gradient (batch × dim)", batch * n, g.grad_y0.len()),
        ("parameter gradient", f.num_params(), g.grad_params.len()),
    ];
    for (what, expected, got) in checks {
        if expected != got {
            return Err(OdeError::ShapeMismatch { what, expected, got });
        }
    }
    Ok(())
}

impl<T: Scalar> BackpropWorkspace<T> {
    /// Backpropagates `g.grad_out` through the solve on `tape` (see
    /// [`Solver::backprop`](crate::Solver::backprop)).
    pub(crate) fn run<F: VjpField<T> + ?Sized>(
        &mut self,
        rk: &Coeffs<T>,
        f: &mut F,
        tape: &Tape<T>,
        g: Cotangents<'_, T>,
    ) -> Result<BackpropStats> {
        check(f, tape, &g)?;
        let width = tape.batch * tape.dim;
        self.prepare(rk.stages, tape.batch, width);
        for it in (0..tape.iters.len()).rev() {
            let range = tape.iteration(it);
            if range.is_empty() {
                continue;
            }
            let step = Iteration {
                steps: &tape.steps[range.clone()],
                first: range.start,
                n: tape.dim,
            };
            self.recompute_stages(rk, f, tape, &step);
            if self.output_cotangents(rk, tape, &step, g.grad_out) {
                self.end_derivative_vjp(rk, f, &step, g.grad_params);
            }
            self.solution_vjp(rk, &step);
            self.stages_vjp(rk, f, &step, g.grad_params);
            for (j, st) in step.steps.iter().enumerate() {
                let r = st.row;
                self.adj[r * step.n..(r + 1) * step.n].copy_from_slice(&self.ybar[step.row(j)]);
            }
        }
        for ((gy0, a), o) in g.grad_y0.iter_mut().zip(&self.adj).zip(&g.grad_out[..width]) {
            *gy0 = *a + *o;
        }
        Ok(self.stats)
    }

    fn prepare(&mut self, stages: usize, batch: usize, width: usize) {
        for v in [
            &mut self.y,
            &mut self.ybar,
            &mut self.yend_bar,
            &mut self.y_new,
            &mut self.f1bar,
            &mut self.gy,
        ] {
            fit(v, width);
        }
        fit(&mut self.t, batch);
        fit(&mut self.t_stage, batch);
        for v in [&mut self.stage_in, &mut self.stage_k, &mut self.kbar] {
            if v.len() < stages {
                v.resize_with(stages, Vec::new);
            }
            for x in v.iter_mut() {
                fit(x, width);
            }
        }
        self.adj.clear();
        self.adj.resize(width, T::zero());
        self.stats = BackpropStats::default();
    }

    /// Gathers the iteration's step-start states and recomputes its stages, as the forward
    /// step computed them.
    fn recompute_stages<F: VjpField<T> + ?Sized>(
        &mut self,
        rk: &Coeffs<T>,
        f: &mut F,
        tape: &Tape<T>,
        step: &Iteration<'_, T>,
    ) {
        let (m, mn, n) = (step.steps.len(), step.width(), step.n);
        for (j, st) in step.steps.iter().enumerate() {
            let at = (step.first + j) * n;
            self.y[step.row(j)].copy_from_slice(&tape.ys[at..at + n]);
            self.t[j] = st.t;
        }
        for i in 0..rk.stages {
            let (done, todo) = self.stage_k.split_at_mut(i);
            let inputs = &mut self.stage_in[i][..mn];
            for (j, st) in step.steps.iter().enumerate() {
                let row = step.row(j);
                rk.stage_input(i, st.h, &self.y[row.clone()], done, row.clone(), &mut inputs[row]);
                self.t_stage[j] = rk.stage_time(i, st.t, st.h);
            }
            f.eval(&self.t_stage[..m], inputs, &mut todo[0][..mn]);
            self.stats.count(m);
        }
    }

    /// The cotangents of the iteration's outputs and step ends: each sample's state adjoint,
    /// the outputs at the step ends, and the transpose of dense output for those inside.
    /// Returns whether Hermite output of a non-FSAL method reached the end derivatives.
    fn output_cotangents(&mut self, rk: &Coeffs<T>, tape: &Tape<T>, step: &Iteration<'_, T>, grad_out: &[T]) -> bool {
        let (mn, n, batch) = (step.width(), step.n, tape.batch);
        for kb in self.kbar.iter_mut() {
            kb[..mn].fill(T::zero());
        }
        self.ybar[..mn].fill(T::zero());
        self.f1bar[..mn].fill(T::zero());
        let mut need_f1 = false;
        for (j, st) in step.steps.iter().enumerate() {
            let (r, row) = (st.row, step.row(j));
            self.yend_bar[row.clone()].copy_from_slice(&self.adj[r * n..(r + 1) * n]);
            for &(kidx, theta) in &tape.outs[st.outs.clone()] {
                let o = (kidx * batch + r) * n;
                let ob = &grad_out[o..o + n];
                let Some(theta) = theta else {
                    for (v, g) in self.yend_bar[row.clone()].iter_mut().zip(ob) {
                        *v = *v + *g;
                    }
                    continue;
                };
                let mut cot = StepCotangents {
                    y: &mut self.ybar[row.clone()],
                    y_new: &mut self.yend_bar[row.clone()],
                    f_end: &mut self.f1bar[row.clone()],
                    k: &mut self.kbar,
                    row: row.clone(),
                };
                need_f1 |= rk.interpolate_vjp(theta, st.h, ob, &mut cot);
            }
        }
        need_f1
    }

    /// Hermite output of a non-FSAL method used `f(y_new)`: differentiates through it.
    fn end_derivative_vjp<F: VjpField<T> + ?Sized>(
        &mut self,
        rk: &Coeffs<T>,
        f: &mut F,
        step: &Iteration<'_, T>,
        grad_params: &mut [T],
    ) {
        let (m, mn) = (step.steps.len(), step.width());
        for (j, st) in step.steps.iter().enumerate() {
            let row = step.row(j);
            let dst = &mut self.y_new[row.clone()];
            rk.solution(st.h, &self.y[row.clone()], &self.stage_k, row, dst, Zeros::Add);
            self.t_stage[j] = st.t + st.h;
        }
        f.vjp(
            &self.t_stage[..m],
            &self.y_new[..mn],
            &self.f1bar[..mn],
            None,
            &mut self.gy[..mn],
            Some(grad_params),
        );
        self.stats.count(m);
        for (v, g) in self.yend_bar[..mn].iter_mut().zip(&self.gy[..mn]) {
            *v = *v + *g;
        }
    }

    /// Transpose of the solution `y_new = y + h Σ b_i k_i`.
    fn solution_vjp(&mut self, rk: &Coeffs<T>, step: &Iteration<'_, T>) {
        for (j, st) in step.steps.iter().enumerate() {
            let row = step.row(j);
            let cot_new = &self.yend_bar[row.clone()];
            rk.solution_vjp(st.h, cot_new, &mut self.ybar[row.clone()], &mut self.kbar, row);
        }
    }

    /// The stages in reverse: `k_i = f(Y_i)` by the field's VJP (adding the parameters'
    /// gradient), then `Y_i = y + h Σ_{l<i} a_il k_l` transposed.
    fn stages_vjp<F: VjpField<T> + ?Sized>(
        &mut self,
        rk: &Coeffs<T>,
        f: &mut F,
        step: &Iteration<'_, T>,
        grad_params: &mut [T],
    ) {
        let (m, mn) = (step.steps.len(), step.width());
        for i in (0..rk.stages).rev() {
            if self.kbar[i][..mn].iter().all(|v| *v == T::zero()) {
                continue;
            }
            for (j, st) in step.steps.iter().enumerate() {
                self.t_stage[j] = rk.stage_time(i, st.t, st.h);
            }
            f.vjp(
                &self.t_stage[..m],
                &self.stage_in[i][..mn],
                &self.kbar[i][..mn],
                None,
                &mut self.gy[..mn],
                Some(&mut *grad_params),
            );
            self.stats.count(m);
            let (lower, _) = self.kbar.split_at_mut(i);
            for (j, st) in step.steps.iter().enumerate() {
                let row = step.row(j);
                rk.stage_input_vjp(i, st.h, &self.gy[row.clone()], &mut self.ybar[row.clone()], lower, row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BackpropWorkspace, Cotangents, Iteration};
    use crate::grad::Scale;
    use crate::rk::{Coeffs, hermite_weights};
    use crate::tableau::Method;
    use crate::tape::Tape;

    /// Euler on `dy/dt = θy` with four steps of `h`: `y(1) = (1 + hθ)⁴ y0`.
    #[test]
    fn backprop_through_euler_steps_is_the_closed_form_derivative() {
        let (theta, h, y0) = (0.7, 0.25, 1.5);
        let rk = Coeffs::<f64>::new(&Method::Euler.tableau());
        let mut tape = Tape::new();
        tape.start(1, 1, 2);
        let mut y = y0;
        for i in 0..4 {
            tape.begin_iteration();
            tape.record_step(0, i as f64 * h, h, &[y]);
            y += h * theta * y;
        }
        tape.record_output(1, None);
        let (mut gy0, mut gp) = ([0.0], [0.1]);
        let mut ws = BackpropWorkspace::default();
        let g = Cotangents {
            grad_out: &[0.0, 1.0],
            grad_y0: &mut gy0,
            grad_params: &mut gp,
        };
        let stats = ws.run(&rk, &mut Scale { dim: 1, theta }, &tape, g).unwrap();
        let growth: f64 = 1.0 + h * theta;
        assert!((gy0[0] - growth.powi(4)).abs() < 1e-14);
        assert!((gp[0] - (0.1 + 4.0 * growth.powi(3) * h * y0)).abs() < 1e-14);
        // Per step: the stage and its VJP.
        assert_eq!((stats.nfe, stats.sample_evals), (8, 8));
    }

    /// One rk4 step (Hermite output) with an output at its middle: the cotangent reaches the
    /// step start, the first stage, the step end and the end derivative.
    #[test]
    fn output_cotangents_follow_the_hermite_weights() {
        let rk = Coeffs::<f64>::new(&Method::Rk4.tableau());
        let mut tape = Tape::new();
        tape.start(1, 1, 3);
        tape.begin_iteration();
        tape.record_step(0, 0.0, 0.4, &[1.0]);
        tape.record_output(1, Some(0.5));
        let mut ws = BackpropWorkspace::default();
        ws.prepare(rk.stages, 1, 1);
        ws.adj[0] = 3.0;
        let step = Iteration {
            steps: &tape.steps[..],
            first: 0,
            n: 1,
        };
        let need_f1 = ws.output_cotangents(&rk, &tape, &step, &[0.0, 2.0, 0.0]);
        let [h00, h10, h01, h11] = hermite_weights(0.5, 0.4);
        assert!(need_f1);
        assert_eq!(
            (ws.ybar[0], ws.kbar[0][0], ws.yend_bar[0], ws.f1bar[0]),
            (h00 * 2.0, h10 * 2.0, 3.0 + h01 * 2.0, h11 * 2.0)
        );
        assert!(ws.kbar[1..].iter().all(|k| k[0] == 0.0));
    }
}
