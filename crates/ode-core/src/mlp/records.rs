//! The MLP's VJP records: what a row's VJP leaves behind so that its parameter part can be
//! formed later, for any weight, in one product with many other rows' (see
//! [`crate::VjpField::record_len`]).
//!
//! A call's records are stored field by field: the rows' `y`, then their `h1`, `h2`, `g1`, `g2`
//! and `v`, each `rows × width`. Those blocks are exactly the buffers the VJP computes in, so
//! [`Mlp::vjp_record`] evaluates straight into them instead of copying every activation of
//! every row once more.

use super::{Acts, Mlp, layout};
use crate::Scalar;
use crate::record_queue::QueuedLayer;

/// A record's six fields as `(offset, width)` in a row-major record: the three layers' inputs
/// `y`, `h1`, `h2`, then the cotangents at their (pre-activation) outputs `g1`, `g2`, `v`. In a
/// block of `rows` records, field `(o, w)` of row `r` starts at `rows·o + r·w`.
#[derive(Debug, Clone, Copy)]
struct Fields {
    y: (usize, usize),
    h1: (usize, usize),
    h2: (usize, usize),
    g1: (usize, usize),
    g2: (usize, usize),
    v: (usize, usize),
}

impl Fields {
    fn of(l: usize, m: usize) -> Self {
        Self {
            y: (0, l),
            h1: (l, m),
            h2: (l + m, m),
            g1: (l + 2 * m, m),
            g2: (l + 3 * m, m),
            v: (l + 4 * m, l),
        }
    }

    fn all(&self) -> [(usize, usize); 6] {
        [self.y, self.h1, self.h2, self.g1, self.g2, self.v]
    }
}

impl<T: Scalar> Mlp<T> {
    /// Values per row of a VJP record (see [`crate::VjpField::record_len`]): the inputs of the
    /// three layers and the cotangents at their outputs, `2·L + 4·M`.
    pub fn record_len(&self) -> usize {
        2 * self.latent + 4 * self.hidden
    }

    /// [`Mlp::vjp`] without parameter gradients, leaving the rows' records in `records`
    /// (`rows ×` [`Mlp::record_len`] values, this module's layout) for [`Mlp::push_record`].
    ///
    /// # Panics
    /// If `records` is shorter than `rows ×` [`Mlp::record_len`].
    pub fn vjp_record(&mut self, y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], records: &mut [T]) {
        let (l, m) = (self.latent, self.hidden);
        let rows = y.len() / l;
        assert!(
            records.len() >= rows * self.record_len(),
            "vjp_record: records shorter than rows × record_len"
        );
        assert_eq!(v.len(), rows * l, "vjp: cotangent shape");
        let (yb, rest) = records.split_at_mut(rows * l);
        let (h1, rest) = rest.split_at_mut(rows * m);
        let (h2, rest) = rest.split_at_mut(rows * m);
        let (g1, rest) = rest.split_at_mut(rows * m);
        let (g2, rest) = rest.split_at_mut(rows * m);
        yb.copy_from_slice(&y[..rows * l]);
        rest[..rows * l].copy_from_slice(v);
        let acts = Acts { h1, h2, g1, g2 };
        self.vjp_into(y, v, f_out, gy, None, acts);
    }

    /// Copies row `src_r`'s record from a block of `src_rows` records to row `dst_r` of a
    /// block of `dst_rows`.
    pub fn copy_record(&self, src: &[T], src_rows: usize, src_r: usize, dst: &mut [T], dst_rows: usize, dst_r: usize) {
        for (o, w) in Fields::of(self.latent, self.hidden).all() {
            let (s, d) = (src_rows * o + src_r * w, dst_rows * o + dst_r * w);
            dst[d..d + w].copy_from_slice(&src[s..s + w]);
        }
    }

    /// Queues `w` times the parameter VJP recorded for row `r` of `records` (a block of `rows`
    /// records from [`Mlp::vjp_record`]); when the queue is full, **adds** the queued products
    /// to `gparams`. The products accumulate the records in queue order, so when they are
    /// formed changes no bit of the result.
    pub fn push_record(&mut self, records: &[T], rows: usize, r: usize, w: T, gparams: &mut [T]) {
        assert!(
            r < rows && records.len() >= rows * self.record_len(),
            "push_record: row {r} of a block of {rows} records"
        );
        self.check_gradient(gparams, "push_record");
        let layers = self.queued_layers();
        self.queue.push(&layers, records, rows, r, w, gparams);
    }

    /// **Adds** the queued records' parameter products to `gparams` (`Σ_j w_j · vⱼᵀ ∂f/∂θ`,
    /// one weight product per layer with the records as its inner dimension) and empties the
    /// queue.
    pub fn flush_records(&mut self, gparams: &mut [T]) {
        self.check_gradient(gparams, "flush_records");
        let layers = self.queued_layers();
        self.queue.flush(&layers, gparams);
    }

    /// Drops the queued records (after a backward solve that failed).
    pub fn discard_records(&mut self) {
        self.queue.clear();
    }

    fn check_gradient(&self, gparams: &[T], what: &str) {
        assert_eq!(gparams.len(), self.num_params(), "{what}: parameter gradient shape");
    }

    /// The three layers' cotangent and input fields in a record, and their parameters.
    fn queued_layers(&self) -> [QueuedLayer; 3] {
        let (l, m) = (self.latent, self.hidden);
        let (f, lay) = (Fields::of(l, m), layout(l, m));
        [
            QueuedLayer {
                g: f.v,
                x: f.h2,
                weight: lay.w2..lay.b2,
                bias: lay.b2..lay.end,
            },
            QueuedLayer {
                g: f.g2,
                x: f.h1,
                weight: lay.w1..lay.b1,
                bias: lay.b1..lay.w2,
            },
            QueuedLayer {
                g: f.g1,
                x: f.y,
                weight: lay.w0..lay.b0,
                bias: lay.b0..lay.w1,
            },
        ]
    }
}
