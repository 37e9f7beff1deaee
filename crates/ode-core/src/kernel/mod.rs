//! The small dense matrix products behind the MLP field: `C (+)= A · B` with `A` stored either
//! as `m × k` ([`gemm`]) or transposed as `k × m` ([`gemm_at`]), `B` (`k × n`) row-major or
//! packed as column panels ([`Panels`], [`gemm_panels`]), and `C` (`m × n`) row-major.
//!
//! The shapes of Neural ODE training (a batch of 8 to a few thousand rows, inner sizes 16 to
//! 256) are too small for a general GEMM's blocking to pay off, so this kernel works on `A`
//! and `C` in place: a register tile of up to 6 × 16 entries of `C` accumulates rank-1 updates
//! from a row of `B` and up to six broadcast entries of `A`; the `n mod 16` columns at the right
//! edge (a decoder's 7 outputs) are a register tile of 8 or 16 lanes as well, whose unused lanes
//! are computed and dropped. A `B` that is used many times (the field's weights, packed once
//! per parameter update) or read by a long product (the adjoint's queued records) is packed,
//! so a tile reads its strip of `B` as one contiguous run; at hidden size 256 a row-major
//! strip is spread over a page per four rows. [`gemm_at`] reads `Aᵀ` directly, so a layer's
//! weight gradient `gᵀ · x` needs no transposed copy of `g`, and [`gemm_bias`] starts every
//! row's tile from a bias row, so a layer's forward needs no pass that first copies the bias
//! into `C`. Nothing allocates. On x86-64 with AVX2 and FMA (checked at run time) the same code
//! is compiled with those features, so a tile lives in twelve 256-bit registers, and the full
//! tiles of `f32` products run as intrinsics (`kernel/avx2.rs`), whose loop steps plain
//! pointers.
//!
//! Every entry of `C` is accumulated in the order `p = 0, 1, …, k − 1`, one fused multiply-add
//! each, starting from `C` (or zero, or the bias row), whatever the tile shape: results do not
//! depend on `m`, so a row of a batch computes the same bits alone or in any batch.

use crate::Scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
mod panels;

use panels::Right;
pub use panels::{Panels, pack_rows, pack_transposed, panels_len};

/// Rows of `C` per register tile.
const MR: usize = 6;
/// Columns of `C` per register tile, and of a [`Panels`] panel.
pub(crate) const NR: usize = 16;

/// `C = A·B` (`accumulate = false`) or `C += A·B` (`accumulate = true`), `A` stored `m × k`.
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn gemm<T: Scalar>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T], accumulate: bool) {
    let (a, b) = (Cols::whole(a, k), Right::rows(Cols::whole(b, n)));
    let ops = Operands { m, k, n, a, b };
    dispatch::<T, false>(&ops, c, Start::from_flag(accumulate));
}

/// [`gemm`] with `B` packed ([`Panels`], `k × n`): the same bits, read from contiguous strips.
///
/// # Panics
/// If a slice is shorter than its shape or `b` is not `k × n`.
pub fn gemm_panels<T: Scalar>(m: usize, k: usize, n: usize, a: &[T], b: Panels<T>, c: &mut [T], accumulate: bool) {
    let ops = Operands {
        m,
        k,
        n,
        a: Cols::whole(a, k),
        b: Right::panels(b),
    };
    dispatch::<T, false>(&ops, c, Start::from_flag(accumulate));
}

/// [`gemm_bias`] with `B` packed ([`Panels`], `k × n`): a layer's forward from its packed
/// weight.
///
/// # Panics
/// If a slice is shorter than its shape or `b` is not `k × n`.
pub fn gemm_bias_panels<T: Scalar>(m: usize, k: usize, n: usize, a: &[T], b: Panels<T>, bias: &[T], c: &mut [T]) {
    assert!(bias.len() >= n, "gemm_bias: bias shorter than n = {n}");
    let ops = Operands {
        m,
        k,
        n,
        a: Cols::whole(a, k),
        b: Right::panels(b),
    };
    dispatch::<T, false>(&ops, c, Start::Row(bias));
}

/// [`gemm_at_cols`] with `B` packed ([`Panels`], `k × n`): a weight gradient from per-row
/// records whose inputs were packed first.
///
/// # Panics
/// If a slice is shorter than its shape or `b` is not `k × n`.
pub fn gemm_at_panels<T: Scalar>(
    m: usize,
    k: usize,
    n: usize,
    at: Cols<T>,
    b: Panels<T>,
    c: &mut [T],
    accumulate: bool,
) {
    let ops = Operands {
        m,
        k,
        n,
        a: at,
        b: Right::panels(b),
    };
    dispatch::<T, true>(&ops, c, Start::from_flag(accumulate));
}

/// `C = 1·biasᵀ + A·B`: every row of `C` starts from `bias` (`n` values), `A` stored `m × k`.
/// The same bits as copying `bias` into each row and calling [`gemm`] with `accumulate`, without
/// the pass that writes those copies (a `torch.nn.Linear` forward).
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn gemm_bias<T: Scalar>(m: usize, k: usize, n: usize, a: &[T], b: &[T], bias: &[T], c: &mut [T]) {
    assert!(bias.len() >= n, "gemm_bias: bias shorter than n = {n}");
    let (a, b) = (Cols::whole(a, k), Right::rows(Cols::whole(b, n)));
    let ops = Operands { m, k, n, a, b };
    dispatch::<T, false>(&ops, c, Start::Row(bias));
}

/// What each entry of `C` starts from before the `k` multiply-adds.
#[derive(Clone, Copy)]
enum Start<'a, T> {
    /// Zero (`C = A·B`).
    Zero,
    /// `C` itself (`C += A·B`).
    C,
    /// The same row, entry `j` for column `j` (`C = 1·rowᵀ + A·B`).
    Row(&'a [T]),
}

impl<T> Start<'_, T> {
    fn from_flag(accumulate: bool) -> Self {
        if accumulate { Self::C } else { Self::Zero }
    }
}

/// `C = Aᵀ·B` (`accumulate = false`) or `C += Aᵀ·B`, with `at` the `k × m` matrix whose
/// transpose is the left factor (for a layer's weight gradient `gᵀ · x`, `at` is `g` itself).
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn gemm_at<T: Scalar>(m: usize, k: usize, n: usize, at: &[T], b: &[T], c: &mut [T], accumulate: bool) {
    gemm_at_cols(m, k, n, Cols::whole(at, m), Cols::whole(b, n), c, accumulate);
}

/// A matrix stored as columns `col ..` of a row-major table whose rows are `ld` values apart:
/// one field of per-row records, as the adjoint keeps them.
#[derive(Debug, Clone, Copy)]
pub struct Cols<'a, T> {
    /// The table, at least `rows × ld` values.
    pub table: &'a [T],
    /// Values per table row.
    pub ld: usize,
    /// The matrix's first column in the table.
    pub col: usize,
}

impl<'a, T> Cols<'a, T> {
    /// A contiguous row-major matrix with `width` columns.
    pub fn whole(table: &'a [T], width: usize) -> Self {
        Self {
            table,
            ld: width,
            col: 0,
        }
    }
}

/// [`gemm_at`] with both factors given as columns of wider tables: `at` is `k × m` and `b`
/// `k × n` there.
///
/// # Panics
/// If a table is shorter than `k` rows or its columns run past its row.
pub fn gemm_at_cols<T: Scalar>(m: usize, k: usize, n: usize, at: Cols<T>, b: Cols<T>, c: &mut [T], accumulate: bool) {
    let ops = Operands {
        m,
        k,
        n,
        a: at,
        b: Right::rows(b),
    };
    dispatch::<T, true>(&ops, c, Start::from_flag(accumulate));
}

fn dispatch<T: Scalar, const AT: bool>(ops: &Operands<T>, c: &mut [T], start: Start<T>) {
    let (m, k, n) = (ops.m, ops.k, ops.n);
    let (a_rows, a_width) = if AT { (k, m) } else { (m, k) };
    let fits = |x: &Cols<T>, rows: usize, width: usize| x.col + width <= x.ld && x.table.len() >= rows * x.ld;
    assert!(
        fits(&ops.a, a_rows, a_width) && ops.b.fits(k, n) && c.len() >= m * n,
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
                gemm_avx2::<T, AT>(ops, c, start)
            };
            return;
        }
    }
    gemm_body::<T, AT, false>(ops, c, start);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gemm_avx2<T: Scalar, const AT: bool>(ops: &Operands<T>, c: &mut [T], start: Start<T>) {
    gemm_body::<T, AT, true>(ops, c, start);
}

/// The operands of one product, `m`, `n` > 0 (`AT`: `a` holds `Aᵀ`).
struct Operands<'a, T> {
    m: usize,
    k: usize,
    n: usize,
    a: Cols<'a, T>,
    b: Right<'a, T>,
}

/// The product, one row block after another; `SIMD`: the CPU has AVX2 and FMA, so full tiles
/// of `f32` may use the intrinsics tile.
#[inline(always)]
fn gemm_body<T: Scalar, const AT: bool, const SIMD: bool>(ops: &Operands<T>, c: &mut [T], start: Start<T>) {
    let m = ops.m;
    let mut i0 = 0;
    while i0 < m {
        let r = block_rows(m - i0);
        match r {
            6 => row_block::<T, 6, AT, SIMD>(ops, i0, c, start),
            5 => row_block::<T, 5, AT, SIMD>(ops, i0, c, start),
            4 => row_block::<T, 4, AT, SIMD>(ops, i0, c, start),
            3 => row_block::<T, 3, AT, SIMD>(ops, i0, c, start),
            2 => row_block::<T, 2, AT, SIMD>(ops, i0, c, start),
            _ => row_block::<T, 1, AT, SIMD>(ops, i0, c, start),
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
fn row_block<T: Scalar, const R: usize, const AT: bool, const SIMD: bool>(
    ops: &Operands<T>,
    i0: usize,
    c: &mut [T],
    start: Start<T>,
) {
    let n = ops.n;
    let c = &mut c[i0 * n..(i0 + R) * n];
    let n_full = n - n % NR;
    if !full_tiles_simd::<T, R, AT, SIMD>(ops, i0, n_full, c, start) {
        for j0 in (0..n_full).step_by(NR) {
            tile::<T, R, AT>(ops, i0, j0, c, start);
        }
    }
    if n_full < n {
        tile_rest::<T, R, AT>(ops, i0, n_full, c, start);
    }
}

/// The full tiles of rows `i0 .. i0 + R` (columns `0 .. n_full`) with the AVX2 intrinsics tile
/// when `SIMD` and `T` is `f32`; `false` (nothing done) otherwise.
#[inline(always)]
fn full_tiles_simd<T: Scalar, const R: usize, const AT: bool, const SIMD: bool>(
    ops: &Operands<T>,
    i0: usize,
    n_full: usize,
    c: &mut [T],
    start: Start<T>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: `SIMD` is set only under `gemm_avx2`, called once AVX2 and FMA are detected.
        #[allow(unsafe_code)]
        return unsafe { avx2::full_tiles::<T, R, AT>(ops, i0, n_full, c, start) };
    }
    let _ = (ops, i0, n_full, c, start);
    false
}

/// Calls `f(a, b)` for `p = 0 … k − 1` in order, with `a` the `R` entries `A[i0.., p]` and
/// `b` the 16 entries `B[p, j0..]`.
#[inline(always)]
fn rank1_updates<T: Scalar, const R: usize, const AT: bool>(
    ops: &Operands<T>,
    i0: usize,
    j0: usize,
    mut f: impl FnMut(&[T; R], &[T; NR]),
) {
    let (k, a, b) = (ops.k, &ops.a, &ops.b);
    let b_at = |p: usize| -> &[T; NR] { b.table[b.at(p, j0)..][..NR].try_into().expect("tile") };
    if AT {
        let ac = a.col + i0;
        for (p, a_row) in a.table[..k * a.ld].chunks_exact(a.ld).enumerate() {
            f(a_row[ac..ac + R].try_into().expect("R entries"), b_at(p));
        }
    } else {
        let rows: [&[T]; R] = std::array::from_fn(|i| &a.table[(i0 + i) * a.ld + a.col..][..k]);
        for p in 0..k {
            f(&std::array::from_fn(|i| rows[i][p]), b_at(p));
        }
    }
}

/// One full `R × NR` tile of `C` at columns `j0 ..`; `c` holds rows `i0 .. i0 + R`. Its
/// fixed-width row of `B` is what lets the tile live in registers; [`tile_rest`] is the
/// variable-width edge.
#[inline(always)]
fn tile<T: Scalar, const R: usize, const AT: bool>(
    ops: &Operands<T>,
    i0: usize,
    j0: usize,
    c: &mut [T],
    start: Start<T>,
) {
    let n = ops.n;
    let mut acc = [[T::zero(); NR]; R];
    for (i, row) in acc.iter_mut().enumerate() {
        match start {
            Start::Zero => {}
            Start::C => row.copy_from_slice(&c[i * n + j0..i * n + j0 + NR]),
            Start::Row(bias) => row.copy_from_slice(&bias[j0..j0 + NR]),
        }
    }
    rank1_updates::<T, R, AT>(ops, i0, j0, |a, bt| {
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

/// The `w = n − j0 < NR` columns at the right edge of rows `i0 .. i0 + R`, as a register tile
/// of eight lanes (`w ≤ 8`) or sixteen.
#[inline(always)]
fn tile_rest<T: Scalar, const R: usize, const AT: bool>(
    ops: &Operands<T>,
    i0: usize,
    j0: usize,
    c: &mut [T],
    start: Start<T>,
) {
    if ops.n - j0 <= NR / 2 {
        tile_edge::<T, R, AT, { NR / 2 }>(ops, i0, j0, c, start);
    } else {
        tile_edge::<T, R, AT, NR>(ops, i0, j0, c, start);
    }
}

/// [`tile_rest`] with `W ≥ n − j0` lanes. A row of `B` is read `W` wide, on into the table's
/// next row where the table is long enough (those lanes are computed and dropped) and from a
/// zero-padded copy where it is not, so the tile stays in registers. Its own loop, not
/// [`rank1_updates`]' closure: a closure the compiler does not inline loses the AVX2 and FMA
/// features, and the 7-wide decoder ran at 0.7 GFLOP/s that way.
#[inline(always)]
fn tile_edge<T: Scalar, const R: usize, const AT: bool, const W: usize>(
    ops: &Operands<T>,
    i0: usize,
    j0: usize,
    c: &mut [T],
    start: Start<T>,
) {
    let (n, a, b) = (ops.n, &ops.a, &ops.b);
    let w = n - j0;
    let mut acc = [[T::zero(); W]; R];
    for (i, row) in acc.iter_mut().enumerate() {
        match start {
            Start::Zero => {}
            Start::C => row[..w].copy_from_slice(&c[i * n + j0..i * n + n]),
            Start::Row(bias) => row[..w].copy_from_slice(&bias[j0..n]),
        }
    }
    for p in 0..ops.k {
        let mut av = [T::zero(); R];
        for (i, x) in av.iter_mut().enumerate() {
            *x = if AT {
                a.table[p * a.ld + a.col + i0 + i]
            } else {
                a.table[(i0 + i) * a.ld + a.col + p]
            };
        }
        let at = b.at(p, j0);
        let bt: [T; W] = match b.wide_from(at, W) {
            Some(wide) => wide.try_into().expect("W lanes"),
            None => padded(&b.table[at..at + w]),
        };
        for (row, &x) in acc.iter_mut().zip(&av) {
            for (y, &bv) in row.iter_mut().zip(&bt) {
                *y = x.mul_add(bv, *y);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        c[i * n + j0..i * n + n].copy_from_slice(&row[..w]);
    }
}

/// `src` followed by zeros, `W` values: the last row of `B` at the table's end.
#[cold]
fn padded<T: Scalar, const W: usize>(src: &[T]) -> [T; W] {
    let mut out = [T::zero(); W];
    out[..src.len()].copy_from_slice(src);
    out
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
    #[should_panic(expected = "gemm_bias: bias shorter than n = 3")]
    fn a_short_bias_is_an_error() {
        let mut c = [0.0f32; 6];
        gemm_bias(2, 1, 3, &[1.0, 2.0], &[1.0, 1.0, 1.0], &[0.5, 0.5], &mut c);
    }

    /// On an AVX2 + FMA machine, `f32` products take the intrinsics tile for full tiles; the
    /// portable body gives the same bits for every shape, start, layout and stride.
    #[test]
    fn f32_products_are_bitwise_the_portable_body() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
        };
        for (m, k, n) in [
            (1, 1, 16),
            (6, 32, 64),
            (7, 5, 33),
            (13, 64, 32),
            (4, 0, 16),
            (11, 9, 48),
            (1024, 32, 64),
        ] {
            let (lda, ldb) = (m.max(k) + 3, n + 5);
            let a: Vec<f32> = (0..m.max(k) * lda + 8).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * ldb + 8).map(|_| rnd()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
            for start in [Start::Zero, Start::C, Start::Row(&bias)] {
                let a = Cols {
                    table: &a,
                    ld: lda,
                    col: 2,
                };
                let b = Cols {
                    table: &b,
                    ld: ldb,
                    col: 4,
                };
                let ops = Operands {
                    m,
                    k,
                    n,
                    a,
                    b: Right::rows(b),
                };
                let (mut want, mut want_at) = (c0.clone(), c0.clone());
                gemm_body::<f32, false, false>(&ops, &mut want, start);
                gemm_body::<f32, true, false>(&ops, &mut want_at, start);
                let mut packed = Vec::new();
                pack_rows(k, n, b, &mut packed);
                let packed_ops = Operands {
                    b: Right::panels(Panels::new(&packed, k, n)),
                    ..ops
                };
                for ops in [&ops, &packed_ops] {
                    let (mut got, mut got_at) = (c0.clone(), c0.clone());
                    dispatch::<f32, false>(ops, &mut got, start);
                    dispatch::<f32, true>(ops, &mut got_at, start);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "A ({m},{k},{n})");
                    assert_eq!(bits(&got_at), bits(&want_at), "Aᵀ ({m},{k},{n})");
                    // The portable body reads a packed B the same way.
                    let mut portable = c0.clone();
                    gemm_body::<f32, false, false>(ops, &mut portable, start);
                    assert_eq!(bits(&portable), bits(&want), "portable A ({m},{k},{n})");
                }
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
                // And from columns 2.. and 4.. of wider tables (rows m + 3 and n + 5 long).
                let (lda, ldb) = (m + 3, n + 5);
                let mut wide_a = vec![f64::NAN; k * lda];
                let mut wide_b = vec![f64::NAN; k * ldb];
                for p in 0..k {
                    wide_a[p * lda + 2..p * lda + 2 + m].copy_from_slice(&at[p * m..(p + 1) * m]);
                    wide_b[p * ldb + 4..p * ldb + 4 + n].copy_from_slice(&b[p * n..(p + 1) * n]);
                }
                let mut got_strided = c0.clone();
                let wa = Cols {
                    table: &wide_a,
                    ld: lda,
                    col: 2,
                };
                let wb = Cols {
                    table: &wide_b,
                    ld: ldb,
                    col: 4,
                };
                gemm_at_cols(m, k, n, wa, wb, &mut got_strided, acc);
                assert_eq!(got_strided, got, "gemm_at_cols ({m},{k},{n}) acc {acc}");
                // Every row starting from a bias row: the same bits as copies of it accumulated on.
                let bias: Vec<f64> = (0..n).map(|_| rnd()).collect();
                let mut want_bias: Vec<f64> = (0..m * n).map(|i| bias[i % n.max(1)]).collect();
                gemm(m, k, n, &a, &b, &mut want_bias, true);
                let mut got_bias = c0.clone();
                gemm_bias(m, k, n, &a, &b, &bias, &mut got_bias);
                assert_eq!(got_bias, want_bias, "gemm_bias ({m},{k},{n})");
                // B packed: the same bits from every entry point.
                let mut packed = Vec::new();
                pack_rows(k, n, Cols::whole(&b, n), &mut packed);
                let pb = Panels::new(&packed, k, n);
                let mut got_packed = c0.clone();
                gemm_panels(m, k, n, &a, pb, &mut got_packed, acc);
                assert_eq!(got_packed, got, "gemm_panels ({m},{k},{n}) acc {acc}");
                let mut got_at_packed = c0.clone();
                gemm_at_panels(m, k, n, Cols::whole(&at, m), pb, &mut got_at_packed, acc);
                assert_eq!(got_at_packed, got, "gemm_at_panels ({m},{k},{n}) acc {acc}");
                let mut got_bias_packed = c0.clone();
                gemm_bias_panels(m, k, n, &a, pb, &bias, &mut got_bias_packed);
                assert_eq!(got_bias_packed, want_bias, "gemm_bias_panels ({m},{k},{n})");
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
