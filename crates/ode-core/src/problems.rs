//! Built-in test problems with known behaviour, for the CLI, the benchmarks and the tests.

use crate::Scalar;
use crate::field::VectorField;

/// A built-in initial value problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// `y' = -0.5·y`, `y(0) = 1`: exact solution `e^{-t/2}`.
    ExpDecay,
    /// Harmonic oscillator `x' = v, v' = -x`, `(x, v)(0) = (1, 0)`: exact `(cos t, -sin t)`.
    Harmonic,
    /// Lotka-Volterra predator-prey `x' = 1.5x - xy, y' = xy - 3y`, `(1, 1)`: periodic, with
    /// the invariant `V = x - 3 ln x + y - 1.5 ln y`.
    LotkaVolterra,
    /// Van der Pol oscillator with `μ = 1`, `(2, 0)`: a limit cycle, mildly nonlinear.
    VanDerPol,
}

impl Problem {
    /// State dimension.
    pub fn dim(self) -> usize {
        match self {
            Problem::ExpDecay => 1,
            _ => 2,
        }
    }

    /// Names of the state components, for tables.
    pub fn components(self) -> &'static [&'static str] {
        match self {
            Problem::ExpDecay => &["y"],
            Problem::Harmonic => &["x", "v"],
            Problem::LotkaVolterra => &["prey", "predator"],
            Problem::VanDerPol => &["x", "y"],
        }
    }

    /// The default initial state.
    pub fn y0(self) -> Vec<f64> {
        match self {
            Problem::ExpDecay => vec![1.0],
            Problem::Harmonic => vec![1.0, 0.0],
            Problem::LotkaVolterra => vec![1.0, 1.0],
            Problem::VanDerPol => vec![2.0, 0.0],
        }
    }

    /// The default final time.
    pub fn t_end(self) -> f64 {
        match self {
            Problem::ExpDecay => 5.0,
            Problem::Harmonic => 10.0,
            Problem::LotkaVolterra => 10.0,
            Problem::VanDerPol => 20.0,
        }
    }

    /// The exact solution at `t` from `y0` at time 0, where one is known in closed form.
    pub fn exact(self, t: f64, y0: &[f64]) -> Option<Vec<f64>> {
        match self {
            Problem::ExpDecay => Some(vec![y0[0] * (-0.5 * t).exp()]),
            Problem::Harmonic => {
                let (c, s) = (t.cos(), t.sin());
                Some(vec![y0[0] * c + y0[1] * s, -y0[0] * s + y0[1] * c])
            }
            _ => None,
        }
    }

    /// The vector field, in any precision.
    pub fn field<T: Scalar>(self) -> ProblemField<T> {
        ProblemField {
            problem: self,
            _t: std::marker::PhantomData,
        }
    }

    /// Evaluates the right-hand side for one state.
    pub fn rhs<T: Scalar>(self, y: &[T], dy: &mut [T]) {
        let c = T::c;
        match self {
            Problem::ExpDecay => dy[0] = -c(0.5) * y[0],
            Problem::Harmonic => {
                dy[0] = y[1];
                dy[1] = -y[0];
            }
            Problem::LotkaVolterra => {
                dy[0] = c(1.5) * y[0] - y[0] * y[1];
                dy[1] = y[0] * y[1] - c(3.0) * y[1];
            }
            Problem::VanDerPol => {
                dy[0] = y[1];
                dy[1] = (T::one() - y[0] * y[0]) * y[1] - y[0];
            }
        }
    }
}

crate::choice_names!(Problem, "problem" {
    ExpDecay => "exp-decay",
    Harmonic => "harmonic",
    LotkaVolterra => "lotka-volterra",
    VanDerPol => "van-der-pol",
});

/// A built-in problem as a batched [`VectorField`].
#[derive(Debug, Clone, Copy)]
pub struct ProblemField<T> {
    problem: Problem,
    _t: std::marker::PhantomData<T>,
}

impl<T: Scalar> VectorField<T> for ProblemField<T> {
    fn dim(&self) -> usize {
        self.problem.dim()
    }
    fn eval(&mut self, _t: &[T], y: &[T], dy: &mut [T]) {
        let n = self.problem.dim();
        for (yr, dr) in y.chunks_exact(n).zip(dy.chunks_exact_mut(n)) {
            self.problem.rhs(yr, dr);
        }
    }
}
