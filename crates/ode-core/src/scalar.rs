//! The floating-point types the solvers run on.

use num_traits::{Float, FromPrimitive};
use std::fmt::{Debug, Display};
use std::iter::Sum;

/// A floating-point type the solvers work in: `f32` for speed, `f64` for reference checks.
///
/// Besides the arithmetic from [`num_traits::Float`] it carries the two batched kernels the
/// MLP vector field needs, so each precision can use its fastest implementation.
pub trait Scalar: Float + FromPrimitive + Debug + Display + Default + Sum + Send + Sync + 'static {
    /// Converts an `f64` constant (a tableau coefficient, a tolerance) into this type.
    fn c(x: f64) -> Self;

    /// Converts to `f64`, for error messages and statistics.
    fn f64(self) -> f64;

    /// General matrix multiply `C = alpha·A·B + beta·C` with arbitrary row/column strides
    /// (`A` is `m×k`, `B` is `k×n`, `C` is `m×n`), dispatched to a SIMD micro-kernel.
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    );

    /// Replaces every element by its hyperbolic tangent, in place.
    fn tanh_inplace(x: &mut [Self]);
}

/// Checks that the strided extents of a gemm operand fit in its slice, so the unsafe-free
/// wrapper below can never read or write out of bounds.
fn extent(rows: usize, cols: usize, rs: isize, cs: isize) -> usize {
    if rows == 0 || cols == 0 {
        return 0;
    }
    let last = (rows as isize - 1) * rs + (cols as isize - 1) * cs;
    assert!(rs >= 0 && cs >= 0, "gemm strides must be non-negative");
    last as usize + 1
}

macro_rules! gemm_impl {
    ($fn:ident, $t:ty, $m:ident, $k:ident, $n:ident, $alpha:ident, $a:ident, $rsa:ident, $csa:ident,
     $b:ident, $rsb:ident, $csb:ident, $beta:ident, $c:ident, $rsc:ident, $csc:ident) => {{
        assert!($a.len() >= extent($m, $k, $rsa, $csa), "gemm: A too short");
        assert!($b.len() >= extent($k, $n, $rsb, $csb), "gemm: B too short");
        assert!($c.len() >= extent($m, $n, $rsc, $csc), "gemm: C too short");
        if $m == 0 || $n == 0 {
            return;
        }
        // SAFETY: the extents of all three operands were checked against their slices above.
        #[allow(unsafe_code)]
        unsafe {
            matrixmultiply::$fn(
                $m,
                $k,
                $n,
                $alpha,
                $a.as_ptr(),
                $rsa,
                $csa,
                $b.as_ptr(),
                $rsb,
                $csb,
                $beta,
                $c.as_mut_ptr(),
                $rsc,
                $csc,
            )
        }
    }};
}

impl Scalar for f64 {
    #[inline(always)]
    fn c(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: &[f64],
        rsa: isize,
        csa: isize,
        b: &[f64],
        rsb: isize,
        csb: isize,
        beta: f64,
        c: &mut [f64],
        rsc: isize,
        csc: isize,
    ) {
        gemm_impl!(dgemm, f64, m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
    fn tanh_inplace(x: &mut [f64]) {
        for v in x {
            *v = v.tanh();
        }
    }
}

impl Scalar for f32 {
    #[inline(always)]
    fn c(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: &[f32],
        rsa: isize,
        csa: isize,
        b: &[f32],
        rsb: isize,
        csb: isize,
        beta: f32,
        c: &mut [f32],
        rsc: isize,
        csc: isize,
    ) {
        gemm_impl!(sgemm, f32, m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
    fn tanh_inplace(x: &mut [f32]) {
        for v in x {
            *v = tanh_f32(*v);
        }
    }
}

/// Branch-free rational approximation of `tanh` for `f32` (a 13/6 odd/even minimax rational on
/// the clamped range, the form Eigen uses), which the compiler vectorises; max abs error 4.7e-7 over every f32 in [-12, 12] (about 8 ulp
/// near ±1).
///
/// libm's `tanhf` would cost more than the matrix products of the MLP field at batch 1024.
/// Plain multiply-adds, not `mul_add`: without FMA enabled at compile time `mul_add` becomes a
/// slow libm call.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = x2 * A13 + A11;
    p = x2 * p + A9;
    p = x2 * p + A7;
    p = x2 * p + A5;
    p = x2 * p + A3;
    p = x2 * p + A1;
    p *= x;
    let mut q = x2 * B6 + B4;
    q = x2 * q + B2;
    q = x2 * q + B0;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_matches_libm() {
        let mut worst = 0.0f64;
        let mut x = -12.0f64;
        while x <= 12.0 {
            let got = tanh_f32(x as f32) as f64;
            worst = worst.max((got - x.tanh()).abs());
            x += 1e-3;
        }
        // Measured exhaustively over every f32 in [0, 12]: 4.68e-7 (at x = 5.952199).
        assert!(worst < 5e-7, "max abs error {worst}");
        assert!(((tanh_f32(5.952_199) as f64) - 5.952_199f32.tanh() as f64).abs() < 5e-7);
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    #[test]
    fn gemm_matches_naive() {
        // A 2x3 (row-major) times B 3x2 (column-major view of a row-major 2x3).
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bt = [1.0f64, 0.0, -1.0, 2.0, 1.0, 0.5];
        let mut c = [0.0f64; 4];
        f64::gemm(2, 3, 2, 1.0, &a, 3, 1, &bt, 1, 3, 0.0, &mut c, 2, 1);
        // B's columns are (1, 0, -1) and (2, 1, 0.5).
        assert_eq!(c, [1.0 - 3.0, 2.0 + 2.0 + 1.5, 4.0 - 6.0, 8.0 + 5.0 + 3.0]);
    }
}
