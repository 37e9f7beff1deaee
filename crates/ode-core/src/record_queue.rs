//! The MLP field's queue of weighted VJP records, waiting for one parameter product per layer.
//!
//! The adjoint hands over each accepted stage's record with its weight as it goes. A product
//! per step would have only that step's rows as its inner dimension (eight for an Euler step
//! at batch 16 on two threads) and would load and store the whole parameter gradient for a
//! few multiply-adds per entry, so the records wait here until [`QUEUE_LEN`] of them can share
//! one product. Each record is copied once, straight into the layout the products read: its
//! output cotangents already weighted, its layer inputs packed as [`Panels`].

use crate::Scalar;
use crate::kernel::{Cols, NR, Panels, gemm_at_panels};
use crate::layers::add_row_sums;

/// Records per parameter product.
pub(crate) const QUEUE_LEN: usize = 128;

/// One layer as the queue sees it: where its cotangent and input sit in a record, their
/// widths, and its weight and bias in the flat parameter vector. In a block of `rows`
/// records, the field `(offset, width)` of row `r` starts at `rows·offset + r·width`.
#[derive(Debug, Clone)]
pub(crate) struct QueuedLayer {
    /// Offset and width of the cotangent at the layer's output (its `n_out`).
    pub(crate) g: (usize, usize),
    /// Offset and width of the layer's input (its `n_in`).
    pub(crate) x: (usize, usize),
    /// The weight's (`n_out × n_in`) and the bias's ranges in the parameter vector.
    pub(crate) weight: std::ops::Range<usize>,
    pub(crate) bias: std::ops::Range<usize>,
}

/// Weighted records waiting for their parameter products, per layer: the cotangents times the
/// weight (`QUEUE_LEN × n_out`, row-major) and the inputs packed as panels of `QUEUE_LEN` rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordQueue<T> {
    len: usize,
    g: Vec<Vec<T>>,
    x: Vec<Vec<T>>,
}

impl<T: Scalar> RecordQueue<T> {
    /// Queues `w` times the record of row `r` in `block` (`rows` records) of `layers`; adds the
    /// products to `gp` when the queue is full. The products accumulate the records in queue
    /// order, so when they are formed changes no bit of `gp`.
    pub(crate) fn push(&mut self, layers: &[QueuedLayer], block: &[T], rows: usize, r: usize, w: T, gp: &mut [T]) {
        if self.g.len() != layers.len() {
            self.g = layers.iter().map(|l| vec![T::zero(); QUEUE_LEN * l.g.1]).collect();
            self.x = layers
                .iter()
                .map(|l| vec![T::zero(); QUEUE_LEN * l.x.1.div_ceil(NR) * NR])
                .collect();
            self.len = 0;
        }
        let q = self.len;
        for ((layer, g), x) in layers.iter().zip(&mut self.g).zip(&mut self.x) {
            let ((go, gw), (xo, xw)) = (layer.g, layer.x);
            let (gs, xs) = (rows * go + r * gw, rows * xo + r * xw);
            for (d, s) in g[q * gw..(q + 1) * gw].iter_mut().zip(&block[gs..gs + gw]) {
                *d = *s * w;
            }
            // Row q of every panel.
            for (s, chunk) in block[xs..xs + xw].chunks(NR).enumerate() {
                let at = (s * QUEUE_LEN + q) * NR;
                x[at..at + chunk.len()].copy_from_slice(chunk);
            }
        }
        self.len += 1;
        if self.len == QUEUE_LEN {
            self.flush(layers, gp);
        }
    }

    /// Adds the queued records' products to `gp` (`dW += Gᵀ X`, `db += Σ G` per layer) and
    /// empties the queue.
    pub(crate) fn flush(&mut self, layers: &[QueuedLayer], gp: &mut [T]) {
        let k = self.len;
        if k == 0 {
            return;
        }
        for ((layer, g), x) in layers.iter().zip(&self.g).zip(&self.x) {
            let (n_out, n_in) = (layer.g.1, layer.x.1);
            let xp = Panels::first_rows(x, QUEUE_LEN, k, n_in);
            gemm_at_panels(
                n_out,
                k,
                n_in,
                Cols::whole(g, n_out),
                xp,
                &mut gp[layer.weight.clone()],
                true,
            );
            add_row_sums(k, n_out, g, &mut gp[layer.bias.clone()]);
        }
        self.len = 0;
    }

    /// Drops the queued records (those of a backward solve that failed).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::gemm_at;

    #[test]
    fn queued_products_are_bitwise_one_product_over_all_records() {
        // One layer of 5 outputs and 20 inputs (a full panel and an edge); records hold the
        // input at 0..20 and the cotangent at 20..25. 300 records flush at 128 and 256 and at
        // the end, which must give the bits of one product over all 300.
        let layers = [QueuedLayer {
            g: (20, 5),
            x: (0, 20),
            weight: 0..100,
            bias: 100..105,
        }];
        let mut seed = 3u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
        };
        let k = 300;
        let recs: Vec<f32> = (0..k * 25).map(|_| rnd()).collect();
        let weights: Vec<f32> = (0..k).map(|_| rnd()).collect();
        let start: Vec<f32> = (0..105).map(|_| rnd()).collect();
        let mut got = start.clone();
        let mut queue = RecordQueue::default();
        queue.push(&layers, &recs[..25], 1, 0, 7.0, &mut got);
        queue.clear();
        for (rec, &w) in recs.chunks_exact(25).zip(&weights) {
            queue.push(&layers, rec, 1, 0, w, &mut got);
        }
        queue.flush(&layers, &mut got);
        let g: Vec<f32> = recs
            .chunks_exact(25)
            .zip(&weights)
            .flat_map(|(rec, &w)| rec[20..].iter().map(move |v| v * w))
            .collect();
        let x: Vec<f32> = (0..k).flat_map(|j| recs[j * 25..j * 25 + 20].to_vec()).collect();
        let mut want = start;
        gemm_at(5, k, 20, &g, &x, &mut want[..100], true);
        for row in g.chunks_exact(5) {
            for (d, v) in want[100..].iter_mut().zip(row) {
                *d += *v;
            }
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
    }
}
