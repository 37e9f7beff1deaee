//! The arithmetic of one explicit Runge-Kutta step, shared by the forward solve, the adjoint's
//! backward solve and backpropagation: stage inputs, the solution, the embedded error and dense
//! output, each with its transpose (vector-Jacobian product) for backpropagation.
//!
//! A batch lives in flat row-major buffers; a sample's row is a range of them, and the stage
//! derivatives `k[j]` are whole buffers indexed by the same range. Nothing here allocates.

use crate::Scalar;
use crate::controller_kind::ControllerKind;
use crate::options::SolveOptions;
use crate::tableau::{ButcherTableau, Interpolation, torchdiffeq_error_weights};
use std::ops::Range;

/// A tableau's coefficients in the working precision, and what the step loops ask of it.
#[derive(Debug)]
pub(crate) struct Coeffs<T> {
    /// Coupling coefficients, row `i` with `i` entries.
    pub(crate) a: Vec<Vec<T>>,
    /// Solution weights.
    pub(crate) b: Vec<T>,
    /// Stage times as fractions of the step.
    pub(crate) c: Vec<T>,
    /// Error weights of the embedded method, if any.
    pub(crate) b_err: Option<Vec<T>>,
    /// The error weights torchdiffeq uses for this method, where they differ (dopri5).
    pub(crate) b_err_torchdiffeq: Option<Vec<T>>,
    /// Continuous-extension coefficients, or `None` for Hermite output.
    pub(crate) dense: Option<Vec<Vec<T>>>,
    /// Number of stages.
    pub(crate) stages: usize,
    /// First same as last: the last stage is the derivative at the step end.
    pub(crate) fsal: bool,
    /// Order of the solution (Hairer's initial step uses it).
    pub(crate) order: usize,
    /// Order of the error estimate, `embedded_order + 1` (the controller's exponent).
    pub(crate) err_order: f64,
}

/// Whether a linear combination of stages skips zero weights. The forward and adjoint steps
/// do; backpropagation's recomputation of `y_new` for Hermite output never did, which can
/// differ from the forward's value in the sign of an exact zero, so it keeps adding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zeros {
    /// Leave out terms whose weight is zero.
    Skip,
    /// Add every term.
    Add,
}

/// One sample's finished step, as dense output reads it.
#[derive(Debug, Clone)]
pub(crate) struct StepRow<'a, T> {
    /// States at the step start (whole buffer).
    pub(crate) y: &'a [T],
    /// States at the step end (whole buffer).
    pub(crate) y_new: &'a [T],
    /// Stage derivatives (whole buffers).
    pub(crate) k: &'a [Vec<T>],
    /// The derivative at the step end (whole buffer), used by Hermite output only.
    pub(crate) f_end: &'a [T],
    /// The sample's range in the buffers.
    pub(crate) row: Range<usize>,
    /// The step.
    pub(crate) h: T,
}

/// Where the cotangents of one sample's step accumulate, during backpropagation through
/// dense output: row slices of `y`, `y_new` and the end derivative, and the stage buffers.
#[derive(Debug)]
pub(crate) struct StepCotangents<'a, T> {
    /// Cotangent of the step-start state (row).
    pub(crate) y: &'a mut [T],
    /// Cotangent of the step-end state (row).
    pub(crate) y_new: &'a mut [T],
    /// Cotangent of a non-FSAL method's end derivative `f(y_new)` (row).
    pub(crate) f_end: &'a mut [T],
    /// Cotangents of the stage derivatives (whole buffers).
    pub(crate) k: &'a mut [Vec<T>],
    /// The sample's range in the stage buffers.
    pub(crate) row: Range<usize>,
}

impl<T: Scalar> Coeffs<T> {
    /// Converts a validated tableau.
    pub(crate) fn new(tableau: &ButcherTableau) -> Self {
        let cv = |v: &[f64]| v.iter().map(|&x| T::c(x)).collect::<Vec<T>>();
        Self {
            a: tableau.a.iter().map(|r| cv(r)).collect(),
            b: cv(&tableau.b),
            c: cv(&tableau.c),
            b_err: tableau.b_err.as_deref().map(cv),
            b_err_torchdiffeq: torchdiffeq_error_weights(tableau).as_deref().map(cv),
            dense: match &tableau.interpolation {
                Interpolation::Polynomial(p) => Some(p.iter().map(|r| cv(r)).collect()),
                Interpolation::Hermite => None,
            },
            stages: tableau.stages(),
            fsal: tableau.is_fsal(),
            order: tableau.order,
            err_order: tableau.embedded_order.map_or(1.0, |q| q as f64 + 1.0),
        }
    }

    /// The embedded error's weights under `kind`'s rules (`None` for a method without an
    /// embedded error).
    #[inline]
    pub(crate) fn error_weights(&self, kind: ControllerKind) -> Option<&[T]> {
        match (kind, &self.b_err_torchdiffeq) {
            (ControllerKind::Torchdiffeq, Some(w)) => Some(w),
            _ => self.b_err.as_deref(),
        }
    }

    /// The time of stage `i` of a step `h` from `t`.
    #[inline]
    pub(crate) fn stage_time(&self, i: usize, t: T, h: T) -> T {
        t + self.c[i] * h
    }

    /// Stage `i`'s input `dst = y + h Σ_{j<i} a_ij k_j[row]` (`y` and `dst` are the row).
    #[inline]
    pub(crate) fn stage_input(&self, i: usize, h: T, y: &[T], k: &[Vec<T>], row: Range<usize>, dst: &mut [T]) {
        combine(dst, y, h, &self.a[i], k, row, Zeros::Skip);
    }

    /// Transpose of [`stage_input`](Self::stage_input): adds `cot_in`, the cotangent of stage
    /// `i`'s input, to the state's (`cot_y`, the row) and the earlier stages' (`cot_k`).
    #[inline]
    pub(crate) fn stage_input_vjp(
        &self,
        i: usize,
        h: T,
        cot_in: &[T],
        cot_y: &mut [T],
        cot_k: &mut [Vec<T>],
        row: Range<usize>,
    ) {
        add_to(cot_y, T::one(), cot_in);
        for (j, &aij) in self.a[i].iter().enumerate() {
            if aij != T::zero() {
                add_to(&mut cot_k[j][row.clone()], h * aij, cot_in);
            }
        }
    }

    /// The step's solution `dst = y + h Σ_j b_j k_j[row]` (`y` and `dst` are the row).
    #[inline]
    pub(crate) fn solution(&self, h: T, y: &[T], k: &[Vec<T>], row: Range<usize>, dst: &mut [T], zeros: Zeros) {
        combine(dst, y, h, &self.b, k, row, zeros);
    }

    /// Transpose of [`solution`](Self::solution): adds the cotangent `cot_new` of `y_new` to the
    /// state's (`cot_y`, the row) and the stages' (`cot_k`).
    #[inline]
    pub(crate) fn solution_vjp(&self, h: T, cot_new: &[T], cot_y: &mut [T], cot_k: &mut [Vec<T>], row: Range<usize>) {
        add_to(cot_y, T::one(), cot_new);
        for (j, &bj) in self.b.iter().enumerate() {
            if bj != T::zero() {
                add_to(&mut cot_k[j][row.clone()], h * bj, cot_new);
            }
        }
    }

    /// `Σ_i (err_i / sc_i)²` over a row of the embedded error `err = h Σ_j b_err_j k_j` scaled by
    /// `sc = atol + rtol·max(|y|, |y_new|)` (divided in the working precision). `be` are the
    /// error weights.
    #[inline]
    pub(crate) fn scaled_error_sq(&self, be: &[T], step: &StepRow<'_, T>, opts: &SolveOptions<T>) -> f64 {
        let mut sum = 0.0f64;
        for (i, idx) in step.row.clone().enumerate() {
            let e = step.h * embedded_error(be, step.k, idx);
            let sc = error_scale(opts, i, step.y[idx], step.y_new[idx]);
            let q = (e / sc).f64();
            sum += q * q;
        }
        sum
    }

    /// Dense output: the state at `t + θh` inside the step, from the method's continuous
    /// extension or, without one, cubic Hermite interpolation between the step ends.
    pub(crate) fn interpolate(&self, step: &StepRow<'_, T>, theta: T, dst: &mut [T]) {
        let StepRow {
            y,
            y_new,
            k,
            f_end,
            row,
            h,
        } = step;
        let h = *h;
        if let Some(d) = self.dense.as_ref() {
            dst.copy_from_slice(&y[row.clone()]);
            for (j, coeffs) in d.iter().enumerate() {
                let coef = h * dense_weight(coeffs, theta);
                if coef != T::zero() {
                    add_to(dst, coef, &k[j][row.clone()]);
                }
            }
        } else {
            let [h00, h10, h01, h11] = hermite_weights(theta, h);
            let o = row.start;
            for i in 0..dst.len() {
                dst[i] = h00 * y[o + i] + h10 * k[0][o + i] + h01 * y_new[o + i] + h11 * f_end[o + i];
            }
        }
    }

    /// Transpose of [`interpolate`](Self::interpolate): adds the cotangent `cot_out` of an
    /// output at `θ` to `cot`. Returns whether it reached a non-FSAL method's end derivative
    /// `f(y_new)`, whose vector-Jacobian product the caller then owes.
    pub(crate) fn interpolate_vjp(&self, theta: T, h: T, cot_out: &[T], cot: &mut StepCotangents<'_, T>) -> bool {
        let row = cot.row.clone();
        if let Some(d) = self.dense.as_ref() {
            add_to(cot.y, T::one(), cot_out);
            for (i, coeffs) in d.iter().enumerate() {
                add_to(&mut cot.k[i][row.clone()], h * dense_weight(coeffs, theta), cot_out);
            }
            return false;
        }
        let [h00, h10, h01, h11] = hermite_weights(theta, h);
        add_to(cot.y, h00, cot_out);
        add_to(&mut cot.k[0][row.clone()], h10, cot_out);
        add_to(cot.y_new, h01, cot_out);
        if self.fsal {
            add_to(&mut cot.k[self.stages - 1][row], h11, cot_out);
            false
        } else {
            add_to(cot.f_end, h11, cot_out);
            true
        }
    }
}

/// The embedded error's direction at flat index `idx`: `Σ_j b_err_j k_j[idx]` (times `h`, the
/// local error estimate).
#[inline]
pub(crate) fn embedded_error<T: Scalar>(be: &[T], k: &[Vec<T>], idx: usize) -> T {
    let mut e = T::zero();
    for (j, &bj) in be.iter().enumerate() {
        e = e + bj * k[j][idx];
    }
    e
}

/// The error scale of component `i` between `y0` and `y1`: `atol_i + rtol_i·max(|y0|, |y1|)`.
#[inline]
pub(crate) fn error_scale<T: Scalar>(opts: &SolveOptions<T>, i: usize, y0: T, y1: T) -> T {
    opts.atol.get(i) + opts.rtol.get(i) * y0.abs().max(y1.abs())
}

/// The weight `b_j(θ) = Σ_p coeffs[p] θ^(p+1)` of one stage in a continuous extension.
#[inline]
pub(crate) fn dense_weight<T: Scalar>(coeffs: &[T], theta: T) -> T {
    let mut bj = T::zero();
    let mut p = theta;
    for &cj in coeffs {
        bj = bj + cj * p;
        p = p * theta;
    }
    bj
}

/// Cubic Hermite weights at `θ` of `y0`, `h·f0`, `y1` and `h·f1` (the `h` factors included).
#[inline]
pub(crate) fn hermite_weights<T: Scalar>(theta: T, h: T) -> [T; 4] {
    let th2 = theta * theta;
    let th3 = th2 * theta;
    let two = T::c(2.0);
    let three = T::c(3.0);
    [
        two * th3 - three * th2 + T::one(),
        (th3 - two * th2 + theta) * h,
        three * th2 - two * th3,
        (th3 - th2) * h,
    ]
}

/// `dst = y + Σ_j (h w_j) k_j[row]` (`y` and `dst` are the row), the terms added in the order
/// of `j`; zero weights are left out unless `zeros` is [`Zeros::Add`]. Rows of up to four values
/// (the small systems') are summed in registers by [`combine_short`]: a pass over memory per
/// stage cost the 2-state Lotka-Volterra solves 6–20 % more instructions in all
/// (`benches/instructions.sh`). Longer rows go stage by stage through [`add_to`], which
/// vectorizes. Both round alike. Always inlined: as a call it left those solves up to 8 %
/// slower (criterion).
#[inline(always)]
fn combine<T: Scalar>(dst: &mut [T], y: &[T], h: T, w: &[T], k: &[Vec<T>], row: Range<usize>, zeros: Zeros) {
    debug_assert!(k.len() >= w.len() && y.len() == dst.len() && row.len() == dst.len());
    match dst.len() {
        1 => return combine_short::<T, 1>(dst, y, h, w, k, row, zeros),
        2 => return combine_short::<T, 2>(dst, y, h, w, k, row, zeros),
        3 => return combine_short::<T, 3>(dst, y, h, w, k, row, zeros),
        4 => return combine_short::<T, 4>(dst, y, h, w, k, row, zeros),
        _ => {}
    }
    dst.copy_from_slice(y);
    for (kj, &wj) in k.iter().zip(w) {
        if zeros == Zeros::Add || wj != T::zero() {
            add_to(dst, h * wj, &kj[row.clone()]);
        }
    }
}

/// [`combine`] for rows of `N` values, held in registers.
#[inline]
fn combine_short<T: Scalar, const N: usize>(
    dst: &mut [T],
    y: &[T],
    h: T,
    w: &[T],
    k: &[Vec<T>],
    row: Range<usize>,
    zeros: Zeros,
) {
    let mut acc: [T; N] = y.try_into().expect("row of N values");
    for (kj, &wj) in k.iter().zip(w) {
        if zeros == Zeros::Add || wj != T::zero() {
            let coef = h * wj;
            let src: &[T; N] = kj[row.clone()].try_into().expect("row of N values");
            for d in 0..N {
                acc[d] = acc[d] + coef * src[d];
            }
        }
    }
    dst.copy_from_slice(&acc);
}

/// `dst += coef · src`. `src` is cut to `dst`'s length first and the loop indexes both, which
/// compiles to fewer instructions per call on short rows than zipping the two iterators.
#[inline]
pub(crate) fn add_to<T: Scalar>(dst: &mut [T], coef: T, src: &[T]) {
    let src = &src[..dst.len()];
    for i in 0..dst.len() {
        dst[i] = dst[i] + coef * src[i];
    }
}

/// Whether every value is finite.
#[inline]
pub(crate) fn all_finite<T: Scalar>(v: &[T]) -> bool {
    v.iter().all(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::{Coeffs, StepCotangents, StepRow, Zeros, combine, dense_weight, embedded_error, hermite_weights};
    use crate::options::SolveOptions;
    use crate::tableau::Method;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut k = seed;
        (0..n)
            .map(|_| {
                k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (k >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn stages(rk: &Coeffs<f64>, width: usize, seed: u64) -> Vec<Vec<f64>> {
        (0..rk.stages).map(|j| values(width, seed + j as u64)).collect()
    }

    /// The register path (rows of 1-4 values) and the vectorized path round exactly like the
    /// plain sum `y + (h w_0) k_0 + (h w_1) k_1 + …` taken in order; a zero weight leaves a
    /// non-finite stage out under `Zeros::Skip` and lets it through under `Zeros::Add`.
    #[test]
    fn combine_rounds_like_the_sum_in_order_at_every_row_length() {
        let (h, w) = (0.37, [0.2, 0.0, -1.3, 7.0 / 9.0, 0.0, 1e-3]);
        for n in 1..=9 {
            for start in [0, n, 3 * n] {
                let width = 4 * n;
                let mut k: Vec<Vec<f64>> = (0..w.len()).map(|j| values(width, 11 + j as u64)).collect();
                let y = values(n, 5);
                let row = start..start + n;
                let mut want = y.clone();
                for (kj, &wj) in k.iter().zip(&w) {
                    if wj != 0.0 {
                        for (d, x) in want.iter_mut().enumerate() {
                            *x += (h * wj) * kj[start + d];
                        }
                    }
                }
                let mut got = vec![0.0; n];
                combine(&mut got, &y, h, &w, &k, row.clone(), Zeros::Skip);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "n = {n}, start = {start}");
                k[1][start] = f64::NAN;
                combine(&mut got, &y, h, &w, &k, row.clone(), Zeros::Skip);
                assert_eq!(bits(&got), bits(&want), "a zero weight skips its stage, n = {n}");
                combine(&mut got, &y, h, &w, &k, row, Zeros::Add);
                assert!(got[0].is_nan() && got[1..].iter().all(|x| x.is_finite()), "n = {n}");
            }
        }
    }

    #[test]
    fn stage_inputs_add_the_weighted_earlier_stages() {
        let rk = Coeffs::<f64>::new(&Method::Rk4Classic.tableau());
        let (y, k) = (values(6, 1), stages(&rk, 6, 2));
        let mut dst = [0.0; 3];
        // a[2] = [0, 1/2]: Y_3 = y + h/2 k_2, on the second row (3..6).
        rk.stage_input(2, 0.4, &y[3..6], &k, 3..6, &mut dst);
        for i in 0..3 {
            assert_eq!(dst[i], y[3 + i] + 0.4 * 0.5 * k[1][3 + i]);
        }
        assert!((rk.stage_time(2, 1.0, 0.4) - 1.2).abs() < 1e-15);
    }

    #[test]
    fn the_solution_is_y_plus_h_times_the_weighted_stages() {
        let rk = Coeffs::<f64>::new(&Method::Heun2.tableau());
        let (y, k) = (values(2, 3), stages(&rk, 2, 4));
        let mut dst = [0.0; 2];
        rk.solution(0.1, &y, &k, 0..2, &mut dst, Zeros::Skip);
        for i in 0..2 {
            assert_eq!(dst[i], (y[i] + 0.1 * 0.5 * k[0][i]) + 0.1 * 0.5 * k[1][i]);
        }
        // Midpoint's zero weight changes nothing but the sign of an exact zero.
        let rk = Coeffs::<f64>::new(&Method::Midpoint.tableau());
        let k = vec![vec![0.0], vec![-0.0]];
        let (mut skip, mut add) = ([0.0], [0.0]);
        rk.solution(0.1, &[-0.0], &k, 0..1, &mut skip, Zeros::Skip);
        rk.solution(0.1, &[-0.0], &k, 0..1, &mut add, Zeros::Add);
        assert!(skip[0].is_sign_negative() && add[0].is_sign_positive());
    }

    /// `<cot, L x> = <Lᵀ cot, x>` for the linear maps of a step and their transposes.
    #[test]
    fn the_vjps_are_the_transposes_of_the_step_maps() {
        for m in [Method::Rk4, Method::Bosh3, Method::Dopri5, Method::Tsit5] {
            let rk = Coeffs::<f64>::new(&m.tableau());
            let (n, h, row) = (3, 0.3, 3..6);
            let (y, k, cot) = (values(6, 5), stages(&rk, 6, 6), values(n, 7));
            let lhs_y = |cot_y: &[f64], cot_k: &[Vec<f64>]| {
                dot(cot_y, &y[row.clone()])
                    + (0..rk.stages)
                        .map(|j| dot(&cot_k[j][row.clone()], &k[j][row.clone()]))
                        .sum::<f64>()
            };
            let mut out = vec![0.0; n];
            rk.solution(h, &y[row.clone()], &k, row.clone(), &mut out, Zeros::Skip);
            let (mut cot_y, mut cot_k) = (vec![0.0; n], vec![vec![0.0; 6]; rk.stages]);
            rk.solution_vjp(h, &cot, &mut cot_y, &mut cot_k, row.clone());
            assert!((dot(&cot, &out) - lhs_y(&cot_y, &cot_k)).abs() < 1e-12, "{m}: solution");
            for i in 0..rk.stages {
                rk.stage_input(i, h, &y[row.clone()], &k, row.clone(), &mut out);
                let (mut cot_y, mut cot_k) = (vec![0.0; n], vec![vec![0.0; 6]; rk.stages]);
                rk.stage_input_vjp(i, h, &cot, &mut cot_y, &mut cot_k, row.clone());
                assert!(
                    (dot(&cot, &out) - lhs_y(&cot_y, &cot_k)).abs() < 1e-12,
                    "{m}: stage {i}"
                );
            }
        }
    }

    #[test]
    fn dense_output_meets_the_step_ends_and_its_vjp_is_the_transpose() {
        for m in [Method::Euler, Method::Rk4, Method::Bosh3, Method::Dopri5, Method::Tsit5] {
            let rk = Coeffs::<f64>::new(&m.tableau());
            let (n, h) = (2, 0.25);
            let (y, k, f_end) = (values(n, 8), stages(&rk, n, 9), values(n, 10));
            let mut y_new = vec![0.0; n];
            rk.solution(h, &y, &k, 0..n, &mut y_new, Zeros::Skip);
            let f_end = if rk.fsal { k[rk.stages - 1].clone() } else { f_end };
            let step = StepRow {
                y: &y,
                y_new: &y_new,
                k: &k,
                f_end: &f_end,
                row: 0..n,
                h,
            };
            let mut out = vec![0.0; n];
            rk.interpolate(&step, 0.0, &mut out);
            assert_eq!(out, y, "{m} at θ = 0");
            rk.interpolate(&step, 1.0, &mut out);
            for i in 0..n {
                assert!((out[i] - y_new[i]).abs() < 1e-9, "{m} at θ = 1");
            }
            // Transpose at θ = 0.3, with the end derivative as an input of its own.
            let cot = values(n, 11);
            rk.interpolate(&step, 0.3, &mut out);
            let (mut cy, mut cnew, mut cf) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            let mut ck = vec![vec![0.0; n]; rk.stages];
            let mut c = StepCotangents {
                y: &mut cy,
                y_new: &mut cnew,
                f_end: &mut cf,
                k: &mut ck,
                row: 0..n,
            };
            let owes_f_end = rk.interpolate_vjp(0.3, h, &cot, &mut c);
            assert_eq!(owes_f_end, rk.dense.is_none() && !rk.fsal, "{m}");
            let rhs = dot(&cy, &y)
                + dot(&cnew, &y_new)
                + dot(&cf, &f_end)
                + (0..rk.stages).map(|j| dot(&ck[j], &k[j])).sum::<f64>();
            assert!((dot(&cot, &out) - rhs).abs() < 1e-12, "{m}: dense output");
        }
    }

    #[test]
    fn weights_of_dense_output() {
        // b(θ) = 2θ - 3θ²: coefficients [2, -3].
        assert_eq!(dense_weight(&[2.0, -3.0], 0.5), 2.0 * 0.5 - 3.0 * 0.25);
        let [h00, h10, h01, h11] = hermite_weights(0.5, 2.0);
        assert_eq!([h00, h10, h01, h11], [0.5, 0.25, 0.5, -0.25]);
        let [h00, h10, h01, h11] = hermite_weights(1.0, 2.0);
        assert_eq!([h00, h10, h01, h11], [0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn the_error_estimate_is_scaled_by_the_larger_state() {
        let rk = Coeffs::<f64>::new(&Method::Heun2.tableau());
        let be = rk.b_err.clone().unwrap();
        let k = vec![vec![1.0, -2.0], vec![3.0, 0.5]];
        assert_eq!(embedded_error(&be, &k, 0), -0.5 * 1.0 + 0.5 * 3.0);
        let (y, y_new) = ([2.0, -1.0], [1.0, -4.0]);
        let opts = SolveOptions::<f64>::default().rtol(0.1).atol(0.01);
        let step = StepRow {
            y: &y,
            y_new: &y_new,
            k: &k,
            f_end: &[],
            row: 0..2,
            h: 0.2,
        };
        let e0 = 0.2 * 1.0 / (0.01 + 0.1 * 2.0);
        let e1 = 0.2 * (-0.5 * -2.0 + 0.5 * 0.5) / (0.01 + 0.1 * 4.0);
        assert!((rk.scaled_error_sq(&be, &step, &opts) - (e0 * e0 + e1 * e1)).abs() < 1e-14);
    }
}
