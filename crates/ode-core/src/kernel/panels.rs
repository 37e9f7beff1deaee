//! The right factor `B` of a product, row-major in a wider table or packed as column panels.
//!
//! A register tile walks one 16-wide strip of `B` down all `k` rows. In a row-major `B` of `n`
//! columns those rows are `n` values apart (1 KiB at hidden size 256), so a strip touches `k`
//! cache lines spread over `k·n/1024` pages that fall into a few L1 sets, and the strip is
//! fetched again for every row block. Packed, each strip is one contiguous run of `k·16`
//! values: at latent 128 / hidden 256 and 30 rows, the hidden layer's product went from 48–51
//! to 72–79 GFLOP/s on a Zen 3 core (96 peak) in a stand-alone loop. The field's weights are
//! packed once per parameter update, so the packing costs nothing per evaluation.

use super::{Cols, NR};
use crate::Scalar;

/// A `k × n` matrix packed as `⌈n / 16⌉` panels of `k × 16` values each, row-major within a
/// panel: entry `(p, j)` at `(j / 16)·k·16 + p·16 + j mod 16`, the last panel zero-padded.
/// Built by [`pack_rows`] or [`pack_transposed`]; the right factor of [`super::gemm_panels`].
#[derive(Debug, Clone, Copy)]
pub struct Panels<'a, T> {
    data: &'a [T],
    k: usize,
    /// Rows each panel holds (`k` or more: a buffer filled row by row).
    cap: usize,
}

impl<'a, T> Panels<'a, T> {
    /// The packed `k × n` matrix in `data` (as [`pack_rows`] leaves it).
    ///
    /// # Panics
    /// If `data` is shorter than [`panels_len`]`(k, n)`.
    pub fn new(data: &'a [T], k: usize, n: usize) -> Self {
        assert!(
            data.len() >= panels_len(k, n),
            "panels: {} values, a packed {k} × {n} matrix needs {}",
            data.len(),
            panels_len(k, n)
        );
        Self { data, k, cap: k }
    }

    /// The first `k` rows of a packed `cap × n` matrix in `data`: a buffer of panels filled
    /// row by row, used before it is full.
    ///
    /// # Panics
    /// If `k > cap` or `data` is shorter than [`panels_len`]`(cap, n)`.
    pub fn first_rows(data: &'a [T], cap: usize, k: usize, n: usize) -> Self {
        assert!(k <= cap, "panels: {k} rows of panels holding {cap}");
        Self {
            k,
            ..Self::new(data, cap, n)
        }
    }
}

/// Values a packed `k × n` matrix takes (the last panel padded to 16 columns).
pub fn panels_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// Packs the `k × n` matrix held as columns of a row-major table (`B(p, j)` at
/// `b.table[p·b.ld + b.col + j]`): a layer's input-gradient weight `W` (`[n_out, n_in]`, so
/// `k = n_out`), or a field of per-row records.
///
/// # Panics
/// If the table is shorter than `k` rows or its columns run past its row.
pub fn pack_rows<T: Scalar>(k: usize, n: usize, b: Cols<T>, out: &mut Vec<T>) {
    assert!(
        b.col + n <= b.ld && b.table.len() >= k * b.ld,
        "pack_rows: table shorter than its shape"
    );
    out.clear();
    out.resize(panels_len(k, n), T::zero());
    if k == 0 || n == 0 {
        return;
    }
    // Row by row, so each source row is read once, in order.
    for (p, src) in b.table.chunks_exact(b.ld).take(k).enumerate() {
        let src = &src[b.col..b.col + n];
        for (s, chunk) in src.chunks(NR).enumerate() {
            let at = s * k * NR + p * NR;
            out[at..at + chunk.len()].copy_from_slice(chunk);
        }
    }
}

/// Packs the transpose of `w` (`n × k`, row-major), so `B = wᵀ`: a layer's forward weight
/// from PyTorch's `[n_out, n_in]` layout without a transposed copy (`k = n_in`, `n = n_out`).
///
/// # Panics
/// If `w` is shorter than `n × k`.
pub fn pack_transposed<T: Scalar>(k: usize, n: usize, w: &[T], out: &mut Vec<T>) {
    assert!(w.len() >= n * k, "pack_transposed: weight shorter than {n} × {k}");
    out.clear();
    out.resize(panels_len(k, n), T::zero());
    for (j, w_row) in w.chunks_exact(k.max(1)).take(n).enumerate() {
        let (s, jj) = (j / NR, j % NR);
        for (p, &x) in w_row.iter().enumerate().take(k) {
            out[(s * k + p) * NR + jj] = x;
        }
    }
}

/// The right factor as the kernel reads it: entry `(p, j0 + jj)` of a strip starting at column
/// `j0` (a multiple of 16) at `table[at(p, j0) + jj]`, for `jj < 16`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Right<'a, T> {
    pub(super) table: &'a [T],
    /// Values between consecutive rows of a strip.
    pub(super) ld: usize,
    /// Where entry `(0, 0)` is.
    base: usize,
    /// Values between consecutive strips.
    strip: usize,
    /// For a packed matrix, the rows it holds; `None` for a table.
    packed: Option<usize>,
}

impl<'a, T> Right<'a, T> {
    /// A row-major `B` in columns of a table.
    pub(super) fn rows(b: Cols<'a, T>) -> Self {
        Self {
            table: b.table,
            ld: b.ld,
            base: b.col,
            strip: NR,
            packed: None,
        }
    }

    /// A packed `B`.
    pub(super) fn panels(b: Panels<'a, T>) -> Self {
        Self {
            table: b.data,
            ld: NR,
            base: 0,
            strip: b.cap * NR,
            packed: Some(b.k),
        }
    }

    /// Where entry `(p, j0)` is, `j0` a multiple of 16.
    #[inline(always)]
    pub(super) fn at(&self, p: usize, j0: usize) -> usize {
        self.base + (j0 / NR) * self.strip + p * self.ld
    }

    /// Whether the table holds a `k × n` matrix. A packed matrix is checked against its shape
    /// at [`Panels::new`]; this keeps the product from reading past it with another `k` or `n`.
    pub(super) fn fits(&self, k: usize, n: usize) -> bool {
        if let Some(rows) = self.packed {
            let cap = self.strip / NR;
            return k == rows && self.table.len() >= panels_len(cap, n);
        }
        self.base + n <= self.ld && self.table.len() >= k * self.ld
    }

    /// Whether `W` values from `at(p, j0)` can be read for the edge strip at `j0`: always
    /// in a packed matrix (its last panel is padded), and in a table only where it goes on.
    pub(super) fn wide_from(&self, at: usize, width: usize) -> Option<&'a [T]> {
        self.table.get(at..at + width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_puts_each_strip_in_one_run_and_pads_the_last() {
        // B = 2 × 18: B(p, j) = 100·p + j.
        let b: Vec<f64> = (0..2)
            .flat_map(|p| (0..18).map(move |j| (100 * p + j) as f64))
            .collect();
        let mut out = Vec::new();
        pack_rows(2, 18, Cols::whole(&b, 18), &mut out);
        assert_eq!(out.len(), 64);
        assert_eq!(&out[..3], &[0.0, 1.0, 2.0]);
        assert_eq!(out[16], 100.0);
        assert_eq!(&out[32..35], &[16.0, 17.0, 0.0]);
        assert_eq!(&out[48..50], &[116.0, 117.0]);
        assert!(out[50..].iter().all(|x| *x == 0.0));
        // The transpose of B's transpose packs the same.
        let mut bt = vec![0.0; 36];
        crate::kernel::transpose(2, 18, &b, &mut bt);
        let mut out_t = Vec::new();
        pack_transposed(2, 18, &bt, &mut out_t);
        assert_eq!(out_t, out);
        let r = Right::panels(Panels::new(&out, 2, 18));
        assert_eq!(out[r.at(1, 16) + 1], 117.0);
        assert!(r.fits(2, 18) && !r.fits(3, 18) && !r.fits(1, 18));
        // Its first row alone: the same panels, read one row deep.
        let first = Right::panels(Panels::first_rows(&out, 2, 1, 18));
        assert_eq!(out[first.at(0, 16) + 1], 17.0);
        assert!(first.fits(1, 18) && !first.fits(2, 18));
    }

    #[test]
    #[should_panic(expected = "a packed 4 × 16 matrix needs 64")]
    fn a_short_packed_matrix_is_an_error() {
        let _ = Panels::new(&[0.0f32; 63], 4, 16);
    }
}
