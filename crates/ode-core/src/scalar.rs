//! The floating-point types the solvers run on.

use num_traits::{Float, FromPrimitive};
use std::fmt::{Debug, Display};
use std::iter::Sum;

/// A floating-point type the solvers work in: `f32` for speed, `f64` for reference checks.
///
/// Besides the arithmetic from [`num_traits::Float`] it carries the batched `tanh` of the MLP
/// vector field, so each precision can use its fastest implementation.
pub trait Scalar: Float + FromPrimitive + Debug + Display + Default + Sum + Send + Sync + 'static {
    /// Converts an `f64` constant (a tableau coefficient, a tolerance) into this type.
    fn c(x: f64) -> Self;

    /// Converts to `f64`, for error messages and statistics.
    fn f64(self) -> f64;

    /// Replaces every element by its hyperbolic tangent, in place.
    fn tanh_inplace(x: &mut [Self]);

    /// The neighbouring representable value towards +∞ (`up`) or −∞: one ulp away. Used to
    /// place steps a given number of ulps from a time, as the round-off tests do.
    fn next_toward(self, up: bool) -> Self;

    /// `x` as `f32` values when `Self` is `f32`, else `None`: the matrix kernel's AVX2 register
    /// tile is written for `f32` only.
    fn as_f32(x: &[Self]) -> Option<&[f32]>;

    /// [`Scalar::as_f32`] for a mutable slice.
    fn as_f32_mut(x: &mut [Self]) -> Option<&mut [f32]>;

    /// This value moved `k` representable values towards +∞ (`k < 0`: towards −∞).
    fn ulps(self, k: i64) -> Self {
        (0..k.unsigned_abs()).fold(self, |y, _| y.next_toward(k > 0))
    }
}

/// One ulp away from a value towards ±∞, through zero (to the smallest subnormal); NaN and the
/// infinity in the direction of travel stay as they are.
macro_rules! next_toward {
    ($y:expr, $up:expr, $t:ty) => {{
        let (y, up): ($t, bool) = ($y, $up);
        if y.is_nan() || (y.is_infinite() && (y > 0.0) == up) {
            y
        } else if y == 0.0 {
            let tiny = <$t>::from_bits(1);
            if up { tiny } else { -tiny }
        } else if (y > 0.0) == up {
            <$t>::from_bits(y.to_bits() + 1)
        } else {
            <$t>::from_bits(y.to_bits() - 1)
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
    fn next_toward(self, up: bool) -> Self {
        next_toward!(self, up, f64)
    }
    fn tanh_inplace(x: &mut [f64]) {
        for v in x {
            *v = v.tanh();
        }
    }
    fn as_f32(_: &[f64]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [f64]) -> Option<&mut [f32]> {
        None
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
    fn next_toward(self, up: bool) -> Self {
        next_toward!(self, up, f32)
    }
    fn tanh_inplace(x: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the features the function is compiled with.
                #[allow(unsafe_code)]
                unsafe {
                    tanh_slice_avx2(x)
                };
                return;
            }
        }
        tanh_slice(x);
    }
    fn as_f32(x: &[f32]) -> Option<&[f32]> {
        Some(x)
    }
    fn as_f32_mut(x: &mut [f32]) -> Option<&mut [f32]> {
        Some(x)
    }
}

#[inline(always)]
fn tanh_slice(x: &mut [f32]) {
    for v in x {
        *v = tanh_f32(*v);
    }
}

/// The same loop compiled for AVX2 and FMA (eight lanes), chosen at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tanh_slice_avx2(x: &mut [f32]) {
    tanh_slice(x);
}

/// Branch-free rational approximation of `tanh` for `f32` (a 7/8 odd/even minimax rational on
/// `[-7.9, 7.9]`, clamped outside), which the compiler vectorises; max abs error and max
/// relative error 4.46e-7 over every f32 in [-12, 12] (at x ≈ ±6.703; relative over every f32
/// of magnitude at least 1e-30), and `1 − 1.8e-7` for every input past the clamp.
///
/// libm's `tanhf` would cost more than the matrix products of the MLP field at batch 1024.
/// Each value costs eight multiply-adds or multiplies, one addition and one division. Eigen's
/// 13/6 form, used before, cost ten and was more accurate (3.38e-7); the two operations saved
/// make the field's forward pass about 5 % faster (docs/benchmarks.md). `benches/tanh/fit.py`
/// fits the coefficients and the `tanh-error` bench binary measures the error over every f32.
/// They are scaled so that the denominator's leading one is 1, which makes that Horner step an
/// addition, and `A1 = B0`, which makes the slope at 0 exactly 1 (below 1e-4 every result is
/// `x` or one ulp from it). Horner's steps are fused multiply-adds: faster and more accurate
/// than separate multiplies and adds. Where the CPU has no FMA, `mul_add` is libm's `fmaf`,
/// slower but with the same bits, so every machine computes the same values.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.9;
    const A1: f32 = 4_135_981.3;
    const A3: f32 = 534_138.1;
    const A5: f32 = 12_155.44;
    const A7: f32 = 46.730_145;
    const B0: f32 = A1;
    const B2: f32 = 1_912_793.8;
    const B4: f32 = 98_296.305;
    const B6: f32 = 980.082_6;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = x2.mul_add(A7, A5);
    p = x2.mul_add(p, A3);
    p = x2.mul_add(p, A1);
    p *= x;
    let mut q = x2 + B6;
    q = x2.mul_add(q, B4);
    q = x2.mul_add(q, B2);
    q = x2.mul_add(q, B0);
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
        // Measured exhaustively over every f32 in [0, 12] (`--bin tanh-error`): 4.4563e-7, at
        // x = 6.7031183, where it is also the max relative error.
        assert!(worst < 4.46e-7, "max abs error {worst}");
        let e = (tanh_f32(6.703_118_3) as f64 - (6.703_118_3f32 as f64).tanh()).abs();
        assert!(e > 4.45e-7 && e < 4.46e-7, "{e}");
        // Relative accuracy holds down to tiny inputs (no underflow of the first product).
        for x in [1e-30f32, 1e-20, 1e-10, 1e-5, 0.5] {
            let rel = (tanh_f32(x) as f64 / (x as f64).tanh() - 1.0).abs();
            assert!(rel < 4.46e-7, "tanh({x}): relative error {rel}");
        }
        // Saturation: every input past the clamp gives the same value, 1.8e-7 below 1.
        assert_eq!(tanh_f32(8.0), tanh_f32(f32::INFINITY));
        assert_eq!(tanh_f32(-1e30), -tanh_f32(1e30));
        assert!((1.0 - tanh_f32(f32::MAX) as f64) < 1.8e-7);
        assert!(tanh_f32(f32::NAN).is_nan());
        // The batched (vectorised, possibly AVX2 + FMA) path computes the same bits.
        let xs: Vec<f32> = (-9000..9000).map(|i| i as f32 * 1e-3).collect();
        let mut batched = xs.clone();
        f32::tanh_inplace(&mut batched);
        for (x, b) in xs.iter().zip(&batched) {
            assert_eq!(
                tanh_f32(*x).to_bits(),
                b.to_bits(),
                "tanh({x}): {} vs {b}",
                tanh_f32(*x)
            );
        }
    }

    #[test]
    fn ulps_moves_by_representable_values() {
        assert_eq!(1.0f32.ulps(1), 1.0 + f32::EPSILON);
        assert_eq!(1.0f32.ulps(-1), 1.0 - f32::EPSILON / 2.0);
        assert_eq!((-1.0f32).ulps(1), -1.0 + f32::EPSILON / 2.0);
        assert_eq!(3.0f64.ulps(2), 3.0 + 4.0 * f64::EPSILON);
        assert_eq!(0.0f64.ulps(1), f64::from_bits(1));
        assert_eq!(0.0f32.ulps(-2), -f32::from_bits(2));
        assert_eq!(f32::from_bits(1).ulps(-2), -f32::from_bits(1));
        assert_eq!(f64::MAX.ulps(1), f64::INFINITY);
        assert_eq!(f64::INFINITY.ulps(5), f64::INFINITY);
        assert!(f32::NAN.ulps(1).is_nan());
    }
}
