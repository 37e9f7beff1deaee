//! Batched dense layers (`torch.nn.Linear` semantics) and their backward pass, shared by the
//! MLP vector field and the models built on it. Built on [`crate::kernel::gemm`]; nothing here
//! allocates (scratch space is the caller's).

use crate::Scalar;
use crate::kernel::{Cols, Panels, gemm, gemm_at, gemm_at_panels, gemm_bias, pack_rows, transpose};

/// `out = x · Wᵀ + b` for `rows` rows, given `wt = Wᵀ` (`n_in × n_out`, i.e. PyTorch's
/// `[n_out, n_in]` weight transposed once, see [`transpose_weight`]); `x` is `rows × n_in`.
pub fn linear<T: Scalar>(rows: usize, n_in: usize, n_out: usize, x: &[T], wt: &[T], b: &[T], out: &mut [T]) {
    gemm_bias(rows, n_in, n_out, x, wt, b, out);
}

/// Writes `Wᵀ` for a PyTorch weight `w` (`[n_out, n_in]`) into `wt`, for [`linear`].
pub fn transpose_weight<T: Scalar>(n_out: usize, n_in: usize, w: &[T], wt: &mut [T]) {
    transpose(n_out, n_in, w, wt);
}

/// Backward of [`linear`] for the output cotangent `g` (`rows × n_out`) and the PyTorch weight
/// `w` (`[n_out, n_in]`): when `params` is given, **adds** `gᵀ x` to its weight gradient and
/// `Σ_rows g` to its bias gradient; when `dx` is given, writes `g · W` into it (`rows × n_in`).
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
    if let Some(dx) = dx {
        gemm(rows, n_out, n_in, g, w, dx, false);
    }
    if let Some((dw, db)) = params {
        gemm_at(n_out, rows, n_in, g, x, dw, true);
        add_row_sums(rows, n_out, g, db);
    }
}

/// The parameter half of [`linear_backward`] (`dW += gᵀ x`, `db += Σ_rows g`, the same bits),
/// with `x` packed into `scratch` first: row-major, its 16-wide strips are `n_in` values apart
/// down all `rows` rows (at batch 1024 and `n_in` = 256, a strip spans a megabyte).
pub fn linear_param_grad_packed<T: Scalar>(
    rows: usize,
    n_in: usize,
    n_out: usize,
    x: &[T],
    g: &[T],
    (dw, db): (&mut [T], &mut [T]),
    scratch: &mut Vec<T>,
) {
    pack_rows(rows, n_in, Cols::whole(x, n_in), scratch);
    let xp = Panels::new(scratch, rows, n_in);
    gemm_at_panels(n_out, rows, n_in, Cols::whole(g, n_out), xp, dw, true);
    add_row_sums(rows, n_out, g, db);
}

/// `db += Σ_rows g` for `g` (`rows × n`), row after row: a bias gradient.
pub fn add_row_sums<T: Scalar>(rows: usize, n: usize, g: &[T], db: &mut [T]) {
    if n == 0 {
        return;
    }
    for row in g[..rows * n].chunks_exact(n) {
        for (d, v) in db.iter_mut().zip(row) {
            *d = *d + *v;
        }
    }
}
