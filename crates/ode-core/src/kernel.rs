//! The small dense matrix products behind the MLP field: `C (+)= A · B` with `A` stored either
//! as `m × k` ([`gemm`]) or transposed as `k × m` ([`gemm_at`]), `B` (`k × n`) and `C`
//! (`m × n`), all row-major and contiguous.
//!
//! The shapes of Neural ODE training (a batch of 8 to a few thousand rows, inner sizes 16 to
//! 256) are too small for a general GEMM's packing to pay off, so this kernel works on the
//! operands in place: a register tile of up to 6 × 16 entries of `C` accumulates rank-1 updates
//! from a row of `B` and up to six broadcast entries of `A`. [`gemm_at`] reads `Aᵀ` directly, so
//! a layer's weight gradient `gᵀ · x` needs no transposed copy of `g`. Nothing allocates. On
//! x86-64 with AVX2 and FMA (checked at run time) the same code is compiled with those features,
//! so a tile lives in twelve 256-bit registers.
//!
//! Every entry of `C` is accumulated in the order `p = 0, 1, …, k − 1`, one fused multiply-add
//! each, starting from `C` (or zero), whatever the tile shape: results do not depend on `m`, so a
//! row of a batch computes the same bits alone or in any batch.

use crate::Scalar;

/// Rows of `C` per register tile.
const MR: usize = 6;
/// Columns of `C` per register tile.
const NR: usize = 16;

/// `C = A·B` (`accumulate = false`) or `C += A·B` (`accumulate = true`), `A` stored `m × k`.
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn gemm<T: Scalar>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T], accumulate: bool) {
    let ops = Operands {
        m,
        k,
        n,
        a,
        lda: k,
        b,
        ldb: n,
    };
    dispatch::<T, false>(&ops, c, accumulate);
}

/// `C = Aᵀ·B` (`accumulate = false`) or `C += Aᵀ·B`, with `at` the `k × m` matrix whose
/// transpose is the left factor (for a layer's weight gradient `gᵀ · x`, `at` is `g` itself).
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn gemm_at<T: Scalar>(m: usize, k: usize, n: usize, at: &[T], b: &[T], c: &mut [T], accumulate: bool) {
    gemm_at_strided(m, k, n, at, m, b, n, c, accumulate);
}

/// [`gemm_at`] with row strides: row `p` of `at` (its `m` entries) starts at `p·lda` and row `p`
/// of `B` at `p·ldb`, so both factors can be columns of one wider row-major table (per-row
/// records with several fields each, as the adjoint keeps them).
///
/// # Panics
/// If a slice is shorter than its shape, or a stride shorter than its row.
#[allow(clippy::too_many_arguments)]
pub fn gemm_at_strided<T: Scalar>(
    m: usize,
    k: usize,
    n: usize,
    at: &[T],
    lda: usize,
    b: &[T],
    ldb: usize,
    c: &mut [T],
    accumulate: bool,
) {
    assert!(lda >= m && ldb >= n, "gemm: row stride shorter than the row");
    let ops = Operands {
        m,
        k,
        n,
        a: at,
        lda,
        b,
        ldb,
    };
    dispatch::<T, true>(&ops, c, accumulate);
}

/// Length a slice needs for `rows` rows of `width` values `stride` apart.
fn span(rows: usize, width: usize, stride: usize) -> usize {
    if rows == 0 || width == 0 {
        0
    } else {
        (rows - 1) * stride + width
    }
}

fn dispatch<T: Scalar, const AT: bool>(ops: &Operands<T>, c: &mut [T], accumulate: bool) {
    let (m, k, n) = (ops.m, ops.k, ops.n);
    let need_a = if AT { span(k, m, ops.lda) } else { span(m, k, ops.lda) };
    assert!(
        ops.a.len() >= need_a && ops.b.len() >= span(k, n, ops.ldb) && c.len() >= m * n,
        "gemm: operand shorter than its shape"
    );
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled with.
            #[allow(unsafe_code)]
            unsafe {
                gemm_avx2::<T, AT>(ops, c, accumulate)
            };
            return;
        }
    }
    gemm_body::<T, AT>(ops, c, accumulate);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gemm_avx2<T: Scalar, const AT: bool>(ops: &Operands<T>, c: &mut [T], accumulate: bool) {
    gemm_body::<T, AT>(ops, c, accumulate);
}

/// The operands of one product, `m`, `n` > 0 (`AT`: `a` holds `Aᵀ`), with their row strides.
struct Operands<'a, T> {
    m: usize,
    k: usize,
    n: usize,
    a: &'a [T],
    lda: usize,
    b: &'a [T],
    ldb: usize,
}

#[inline(always)]
fn gemm_body<T: Scalar, const AT: bool>(ops: &Operands<T>, c: &mut [T], accumulate: bool) {
    let m = ops.m;
    let mut i0 = 0;
    while i0 < m {
        let r = block_rows(m - i0);
        match r {
            6 => row_block::<T, 6, AT>(ops, i0, c, accumulate),
            5 => row_block::<T, 5, AT>(ops, i0, c, accumulate),
            4 => row_block::<T, 4, AT>(ops, i0, c, accumulate),
            3 => row_block::<T, 3, AT>(ops, i0, c, accumulate),
            2 => row_block::<T, 2, AT>(ops, i0, c, accumulate),
            _ => row_block::<T, 1, AT>(ops, i0, c, accumulate),
        }
        i0 += r;
    }
}

/// Rows of the next register tile when `left` rows remain: six while that leaves at least three
/// (7 and 8 rows go as 4 + 3 and 4 + 4, not 6 + 1 and 6 + 2, whose last tile would load a row of
/// `B` for one or two rows of `C`).
fn block_rows(left: usize) -> usize {
    match left {
        7 | 8 => 4,
        _ => left.min(MR),
    }
}

/// Rows `i0 .. i0 + R` of `C`: full 16-column tiles, then the narrower rest.
#[inline(always)]
fn row_block<T: Scalar, const R: usize, const AT: bool>(ops: &Operands<T>, i0: usize, c: &mut [T], accumulate: bool) {
    let n = ops.n;
    let c = &mut c[i0 * n..(i0 + R) * n];
    let n_full = n - n % NR;
    for j0 in (0..n_full).step_by(NR) {
        tile::<T, R, AT>(ops, i0, j0, c, accumulate);
    }
    if n_full < n {
        tile_rest::<T, R, AT>(ops, i0, n_full, c, accumulate);
    }
}

/// Calls `f(a, b_row)` for `p = 0 … k − 1` in order, with `a` the `R` entries `A[i0.., p]` and
/// `b_row` row `p` of `B`.
#[inline(always)]
fn rank1_updates<T: Scalar, const R: usize, const AT: bool>(
    ops: &Operands<T>,
    i0: usize,
    mut f: impl FnMut(&[T; R], &[T]),
) {
    let (k, lda) = (ops.k, ops.lda);
    let b_rows = ops.b.chunks(ops.ldb).take(k);
    if AT {
        for (a_row, b_row) in ops.a.chunks(lda).zip(b_rows) {
            f(a_row[i0..i0 + R].try_into().expect("R entries"), b_row);
        }
    } else {
        let rows: [&[T]; R] = std::array::from_fn(|i| &ops.a[(i0 + i) * lda..(i0 + i) * lda + k]);
        for (p, b_row) in b_rows.enumerate() {
            f(&std::array::from_fn(|i| rows[i][p]), b_row);
        }
    }
}

/// One `R × W` tile of `C` at columns `j0 ..`, with `W = NR` (full tile) or the `w < NR`
/// columns left over at the right edge; `c` holds rows `i0 .. i0 + R`.
#[inline(always)]
fn tile<T: Scalar, const R: usize, const AT: bool>(
    ops: &Operands<T>,
    i0: usize,
    j0: usize,
    c: &mut [T],
    accumulate: bool,
) {
    let n = ops.n;
    let mut acc = [[T::zero(); NR]; R];
    if accumulate {
        for (i, row) in acc.iter_mut().enumerate() {
            row.copy_from_slice(&c[i * n + j0..i * n + j0 + NR]);
        }
    }
    rank1_updates::<T, R, AT>(ops, i0, |a, b_row| {
        let bt: &[T; NR] = b_row[j0..j0 + NR].try_into().expect("tile");
        for (row, &av) in acc.iter_mut().zip(a) {
            for (x, &bv) in row.iter_mut().zip(bt) {
                *x = av.mul_add(bv, *x);
            }
        }
    });
    for (i, row) in acc.iter().enumerate() {
        c[i * n + j0..i * n + j0 + NR].copy_from_slice(row);
    }
}

/// The `w = n − j0 < NR` columns at the right edge of rows `i0 .. i0 + R`.
#[inline(always)]
fn tile_rest<T: Scalar, const R: usize, const AT: bool>(
    ops: &Operands<T>,
    i0: usize,
    j0: usize,
    c: &mut [T],
    accumulate: bool,
) {
    let n = ops.n;
    let w = n - j0;
    let mut acc = [[T::zero(); NR]; R];
    if accumulate {
        for (i, row) in acc.iter_mut().enumerate() {
            row[..w].copy_from_slice(&c[i * n + j0..i * n + n]);
        }
    }
    rank1_updates::<T, R, AT>(ops, i0, |a, b_row| {
        let bt = &b_row[j0..];
        for (row, &av) in acc.iter_mut().zip(a) {
            for (x, &bv) in row.iter_mut().zip(bt) {
                *x = av.mul_add(bv, *x);
            }
        }
    });
    for (i, row) in acc.iter().enumerate() {
        c[i * n + j0..i * n + n].copy_from_slice(&row[..w]);
    }
}

/// Writes the transpose of `a` (`rows × cols`, row-major) into `at` (`cols × rows`).
pub fn transpose<T: Scalar>(rows: usize, cols: usize, a: &[T], at: &mut [T]) {
    for r in 0..rows {
        for c in 0..cols {
            at[c * rows + r] = a[r * cols + c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &mut [f64], acc: bool) {
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                c[i * n + j] = if acc { c[i * n + j] + s } else { s };
            }
        }
    }

    #[test]
    fn matches_the_naive_product_on_every_tail() {
        let mut seed = 1u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for (m, k, n) in [
            (1, 1, 1),
            (4, 16, 16),
            (7, 5, 33),
            (16, 32, 64),
            (3, 64, 17),
            (9, 1, 48),
            (0, 3, 4),
            (5, 0, 20),
            (6, 7, 16),
            (11, 9, 31),
            (13, 40, 8),
            (2, 3, 0),
        ] {
            let a: Vec<f64> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f64> = (0..k * n).map(|_| rnd()).collect();
            let c0: Vec<f64> = (0..m * n).map(|_| rnd()).collect();
            for acc in [false, true] {
                let (mut want, mut got) = (c0.clone(), c0.clone());
                naive(m, k, n, &a, &b, &mut want, acc);
                gemm(m, k, n, &a, &b, &mut got, acc);
                for (x, y) in got.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-12, "({m},{k},{n}) acc {acc}: {x} vs {y}");
                }
                // The same product from Aᵀ: the same order of operations, so the same bits.
                let mut at = vec![0.0; m * k];
                transpose(m, k, &a, &mut at);
                let mut got_at = c0.clone();
                gemm_at(m, k, n, &at, &b, &mut got_at, acc);
                assert_eq!(got_at, got, "gemm_at ({m},{k},{n}) acc {acc}");
                // And from rows of wider tables (strides m + 3 and n + 5).
                let (lda, ldb) = (m + 3, n + 5);
                let mut wide_a = vec![f64::NAN; k * lda];
                let mut wide_b = vec![f64::NAN; k * ldb];
                for p in 0..k {
                    wide_a[p * lda..p * lda + m].copy_from_slice(&at[p * m..(p + 1) * m]);
                    wide_b[p * ldb..p * ldb + n].copy_from_slice(&b[p * n..(p + 1) * n]);
                }
                let mut got_strided = c0.clone();
                gemm_at_strided(m, k, n, &wide_a, lda, &wide_b, ldb, &mut got_strided, acc);
                assert_eq!(got_strided, got, "gemm_at_strided ({m},{k},{n}) acc {acc}");
                let af: Vec<f32> = a.iter().map(|&v| v as f32).collect();
                let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
                let mut gf: Vec<f32> = c0.iter().map(|&v| v as f32).collect();
                gemm(m, k, n, &af, &bf, &mut gf, acc);
                for (x, y) in gf.iter().zip(&want) {
                    assert!((*x as f64 - y).abs() < 1e-5, "f32 ({m},{k},{n}) acc {acc}: {x} vs {y}");
                }
            }
        }
    }
}
