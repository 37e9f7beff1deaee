//! Differentiable vector fields: the vector-Jacobian products that the adjoint and
//! backpropagation through the solver are built on.

use crate::Scalar;
use crate::field::VectorField;
use crate::mlp::Mlp;

/// A vector field with parameters whose vector-Jacobian products are available, so solves
/// through it can be differentiated.
pub trait VjpField<T: Scalar>: VectorField<T> {
    /// Number of parameters `θ` (the length of parameter gradients).
    fn num_params(&self) -> usize;

    /// For the rows of `y` at times `t`: writes `vᵀ ∂f/∂y` into `gy`, **adds**
    /// `Σ_rows vᵀ ∂f/∂θ` to `gp` when given, and writes `f(t, y)` into `f_out` when given.
    fn vjp(&mut self, t: &[T], y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], gp: Option<&mut [T]>);

    /// Length of the per-row record that [`VjpField::vjp_record`] writes, from which the
    /// parameter part of a VJP can be formed later, for any weighting of the rows; 0 (the
    /// default) when the field has no records. With records, the adjoint forms all of a step's
    /// parameter products at once, after it knows which rows the step accepted.
    fn record_len(&self) -> usize {
        0
    }

    /// [`VjpField::vjp`] without parameter gradients that also leaves each row's record in
    /// `records`: a block of `rows × record_len()` values in the field's own layout, whose rows
    /// are reached through [`VjpField::push_record`] and [`VjpField::copy_record`].
    ///
    /// # Panics
    /// The default panics: only fields with a nonzero [`VjpField::record_len`] have records.
    fn vjp_record(&mut self, t: &[T], y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], records: &mut [T]) {
        let _ = (t, y, v, f_out, gy, records);
        panic!("this vector field keeps no VJP records (record_len() is 0)");
    }

    /// Copies row `src_r`'s record from a block of `src_rows` records to row `dst_r` of a
    /// block of `dst_rows`.
    ///
    /// # Panics
    /// The default panics, as [`VjpField::vjp_record`]'s.
    fn copy_record(&self, src: &[T], src_rows: usize, src_r: usize, dst: &mut [T], dst_rows: usize, dst_r: usize) {
        let _ = (src, src_rows, src_r, dst, dst_rows, dst_r);
        panic!("this vector field keeps no VJP records (record_len() is 0)");
    }

    /// Queues `w` times the parameter part of the VJP recorded for row `r` of `records` (a
    /// block of `rows` records), `w · vᵀ ∂f/∂θ(y)`, and may **add** queued products to `gp` at
    /// any time; a field keeps its products in queue order, so when they are formed does not
    /// change the result. [`VjpField::flush_records`] adds the rest.
    ///
    /// # Panics
    /// The default panics, as [`VjpField::vjp_record`]'s.
    fn push_record(&mut self, records: &[T], rows: usize, r: usize, w: T, gp: &mut [T]) {
        let _ = (records, rows, r, w, gp);
        panic!("this vector field keeps no VJP records (record_len() is 0)");
    }

    /// **Adds** the products of the records still queued to `gp` and empties the queue.
    ///
    /// # Panics
    /// The default panics, as [`VjpField::vjp_record`]'s.
    fn flush_records(&mut self, gp: &mut [T]) {
        let _ = gp;
        panic!("this vector field keeps no VJP records (record_len() is 0)");
    }

    /// Drops the records still queued, unused (a backward solve starts with this, so one that
    /// failed leaves nothing behind). The default does nothing.
    fn discard_records(&mut self) {}
}

impl<T: Scalar> VjpField<T> for Mlp<T> {
    fn num_params(&self) -> usize {
        Mlp::num_params(self)
    }
    fn vjp(&mut self, _t: &[T], y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], gp: Option<&mut [T]>) {
        Mlp::vjp(self, y, v, f_out, gy, gp)
    }
    fn record_len(&self) -> usize {
        Mlp::record_len(self)
    }
    fn vjp_record(&mut self, _t: &[T], y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], records: &mut [T]) {
        Mlp::vjp_record(self, y, v, f_out, gy, records)
    }
    fn copy_record(&self, src: &[T], src_rows: usize, src_r: usize, dst: &mut [T], dst_rows: usize, dst_r: usize) {
        Mlp::copy_record(self, src, src_rows, src_r, dst, dst_rows, dst_r)
    }
    fn push_record(&mut self, records: &[T], rows: usize, r: usize, w: T, gp: &mut [T]) {
        Mlp::push_record(self, records, rows, r, w, gp)
    }
    fn flush_records(&mut self, gp: &mut [T]) {
        Mlp::flush_records(self, gp)
    }
    fn discard_records(&mut self) {
        Mlp::discard_records(self)
    }
}

impl<T: Scalar, F: VjpField<T> + ?Sized> VjpField<T> for &mut F {
    fn num_params(&self) -> usize {
        (**self).num_params()
    }
    fn vjp(&mut self, t: &[T], y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], gp: Option<&mut [T]>) {
        (**self).vjp(t, y, v, f_out, gy, gp)
    }
    fn record_len(&self) -> usize {
        (**self).record_len()
    }
    fn vjp_record(&mut self, t: &[T], y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], records: &mut [T]) {
        (**self).vjp_record(t, y, v, f_out, gy, records)
    }
    fn copy_record(&self, src: &[T], src_rows: usize, src_r: usize, dst: &mut [T], dst_rows: usize, dst_r: usize) {
        (**self).copy_record(src, src_rows, src_r, dst, dst_rows, dst_r)
    }
    fn push_record(&mut self, records: &[T], rows: usize, r: usize, w: T, gp: &mut [T]) {
        (**self).push_record(records, rows, r, w, gp)
    }
    fn flush_records(&mut self, gp: &mut [T]) {
        (**self).flush_records(gp)
    }
    fn discard_records(&mut self) {
        (**self).discard_records()
    }
}

/// `dy/dt = θ·y` on every component, a field whose gradients are known in closed form.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct Scale {
    /// State dimension.
    pub(crate) dim: usize,
    /// `θ`.
    pub(crate) theta: f64,
}

#[cfg(test)]
impl VectorField<f64> for Scale {
    fn dim(&self) -> usize {
        self.dim
    }
    fn eval(&mut self, _t: &[f64], y: &[f64], dy: &mut [f64]) {
        for (d, v) in dy.iter_mut().zip(y) {
            *d = self.theta * v;
        }
    }
}

#[cfg(test)]
impl VjpField<f64> for Scale {
    fn num_params(&self) -> usize {
        1
    }
    fn vjp(
        &mut self,
        t: &[f64],
        y: &[f64],
        v: &[f64],
        f_out: Option<&mut [f64]>,
        gy: &mut [f64],
        gp: Option<&mut [f64]>,
    ) {
        if let Some(f_out) = f_out {
            self.eval(t, y, f_out);
        }
        for (g, x) in gy.iter_mut().zip(v) {
            *g = self.theta * x;
        }
        if let Some(gp) = gp {
            gp[0] += v.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
        }
    }
}
