//! Batched dense layers (`torch.nn.Linear` semantics) and their backward pass, shared by the
//! MLP vector field and the models built on it.

use crate::Scalar;

/// `out = x · Wᵀ + b` for `rows` rows: `x` is `rows × n_in`, `W` is `[n_out, n_in]` (row-major,
/// as PyTorch stores it), `out` is `rows × n_out`.
pub fn linear<T: Scalar>(rows: usize, n_in: usize, n_out: usize, x: &[T], w: &[T], b: &[T], out: &mut [T]) {
    for r in 0..rows {
        out[r * n_out..(r + 1) * n_out].copy_from_slice(b);
    }
    T::gemm(
        rows,
        n_in,
        n_out,
        T::one(),
        x,
        n_in as isize,
        1,
        w,
        1,
        n_in as isize,
        T::one(),
        out,
        n_out as isize,
        1,
    );
}

/// Backward of [`linear`] for the output cotangent `g` (`rows × n_out`): when `params` is given,
/// **adds** `gᵀ x` to its weight gradient and `Σ_rows g` to its bias gradient; when `dx` is
/// given, writes `g · W` into it (`rows × n_in`).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Scalar>(
    rows: usize,
    n_in: usize,
    n_out: usize,
    x: &[T],
    w: &[T],
    g: &[T],
    params: Option<(&mut [T], &mut [T])>,
    dx: Option<&mut [T]>,
) {
    let one = T::one();
    if let Some(dx) = dx {
        T::gemm(
            rows,
            n_out,
            n_in,
            one,
            g,
            n_out as isize,
            1,
            w,
            n_in as isize,
            1,
            T::zero(),
            dx,
            n_in as isize,
            1,
        );
    }
    if let Some((dw, db)) = params {
        T::gemm(
            n_out,
            rows,
            n_in,
            one,
            g,
            1,
            n_out as isize,
            x,
            n_in as isize,
            1,
            one,
            dw,
            n_in as isize,
            1,
        );
        for r in 0..rows {
            for (d, v) in db.iter_mut().zip(&g[r * n_out..(r + 1) * n_out]) {
                *d = *d + *v;
            }
        }
    }
}
