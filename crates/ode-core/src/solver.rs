//! The one Runge-Kutta engine that runs every tableau, in shared or per-sample step mode: the
//! public [`Solver`], its input checks, and the integration loop, which calls the phases of
//! [`crate::forward`] in order.

use crate::Scalar;
use crate::backprop::{BackpropStats, BackpropWorkspace, Cotangents};
use crate::error::{OdeError, Result};
use crate::field::VectorField;
use crate::forward::{Setup, Workspace};
use crate::grad::VjpField;
use crate::options::SolveOptions;
use crate::rk::Coeffs;
use crate::solution::{Report, Solution};
use crate::tableau::{ButcherTableau, Method};
use crate::tape::Tape;

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
    tableau: ButcherTableau,
    rk: Coeffs<T>,
    opts: SolveOptions<T>,
    ws: Workspace<T>,
    bws: BackpropWorkspace<T>,
}

impl<T: Scalar> Solver<T> {
    /// A solver for a built-in method. Options are checked against the state at solve time.
    pub fn new(method: Method, opts: SolveOptions<T>) -> Result<Self> {
        Self::from_tableau(method.tableau(), opts)
    }

    /// A solver for any validated tableau.
    pub fn from_tableau(tableau: ButcherTableau, opts: SolveOptions<T>) -> Result<Self> {
        opts.validate_for(None)?;
        Ok(Self {
            rk: Coeffs::new(&tableau),
            tableau,
            opts,
            ws: Workspace::default(),
            bws: BackpropWorkspace::default(),
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
        let batch = check_inputs(dim, ts, y0, out)?;
        self.opts.validate(dim)?;
        if let Some(r) = y0.iter().position(|v| !v.is_finite()) {
            return Err(OdeError::NonFinite {
                what: "initial state",
                t: ts[0].f64(),
                sample: r / dim,
            });
        }
        self.ws.ensure(self.rk.stages, batch, dim);
        let mut tape = tape;
        if let Some(tp) = tape.as_deref_mut() {
            tp.start(dim, batch, ts.len());
        }
        self.run(f, ts, y0, out, tape)
    }

    /// The integration loop: after the initial step, each iteration chooses the active
    /// samples' steps, computes the stages and the error estimate, accepts or rejects, adapts
    /// the step sizes and commits the accepted steps' outputs, until every sample has reached
    /// the last time or failed.
    fn run<F: VectorField<T> + ?Sized>(
        &mut self,
        f: &mut F,
        ts: &[T],
        y0: &[T],
        out: &mut [T],
        mut tape: Option<&mut Tape<T>>,
    ) -> Result<Report> {
        let Self { rk, opts, ws, .. } = self;
        let s = Setup::new(rk, opts, ts, y0.len() / f.dim(), f.dim());
        ws.start(&s, y0, out);
        if s.adaptive {
            ws.initial_step(f, &s)?;
        }
        loop {
            if !ws.retain_live() {
                break;
            }
            ws.choose_steps(&s)?;
            if !ws.retain_live() {
                break;
            }
            ws.first_stage(f, &s)?;
            if !ws.retain_live() {
                break;
            }
            ws.stages(f, &s);
            ws.error_estimate(&s);
            ws.accept_reject(&s)?;
            ws.retain_live();
            ws.end_derivative(f, &s);
            ws.adapt_step_size(&s);
            ws.commit(&s, out, tape.as_deref_mut());
        }
        ws.report(&s, out)
    }

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
        let g = Cotangents {
            grad_out,
            grad_y0,
            grad_params,
        };
        self.bws.run(&self.rk, f, tape, g)
    }
}

/// Checks a solve's shapes and times: a nonzero dimension, whole samples in `y0`, at least two
/// finite and strictly monotonic times, an output buffer of `ts.len() × y0.len()`. Returns the
/// batch size.
fn check_inputs<T: Scalar>(dim: usize, ts: &[T], y0: &[T], out: &[T]) -> Result<usize> {
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
    Ok(y0.len() / dim)
}
