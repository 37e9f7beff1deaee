//! Vector fields: the right-hand side `dy/dt = f(t, y)` evaluated on a whole batch at once.

use crate::Scalar;

/// A batched vector field `dy/dt = f(t, y)`.
///
/// `y` and `dy` hold `rows` states of [`dim`](VectorField::dim) values each, row-major
/// (`rows = t.len()`); each row has its own time because in per-sample mode rows sit at
/// different times. The output is written into the caller's buffer, so an evaluation need not
/// allocate. `&mut self` lets a field keep its own scratch buffers.
pub trait VectorField<T: Scalar> {
    /// State dimension `n` of one sample.
    fn dim(&self) -> usize;

    /// Writes `f(t[r], y[r])` into `dy[r]` for every row `r`.
    fn eval(&mut self, t: &[T], y: &[T], dy: &mut [T]);
}

impl<T: Scalar, F: VectorField<T> + ?Sized> VectorField<T> for &mut F {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn eval(&mut self, t: &[T], y: &[T], dy: &mut [T]) {
        (**self).eval(t, y, dy)
    }
}

/// Adapts a per-sample closure `|t, y_row, dy_row|` into a [`VectorField`], for simple use.
///
/// ```
/// use ode_core::{FnField, VectorField};
/// let mut decay = FnField::new(1, |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -y[0]);
/// let mut dy = [0.0; 2];
/// decay.eval(&[0.0, 0.0], &[1.0, 2.0], &mut dy);
/// assert_eq!(dy, [-1.0, -2.0]);
/// ```
#[derive(Clone)]
pub struct FnField<F> {
    dim: usize,
    f: F,
}

impl<F> FnField<F> {
    /// Wraps `f`, which maps one sample's state (length `dim`) to its derivative.
    pub fn new(dim: usize, f: F) -> Self {
        Self { dim, f }
    }
}

impl<T: Scalar, F: FnMut(T, &[T], &mut [T])> VectorField<T> for FnField<F> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn eval(&mut self, t: &[T], y: &[T], dy: &mut [T]) {
        let n = self.dim;
        for (r, &tr) in t.iter().enumerate() {
            (self.f)(tr, &y[r * n..(r + 1) * n], &mut dy[r * n..(r + 1) * n]);
        }
    }
}
