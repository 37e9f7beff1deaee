//! Per-window normalisation (`normalization = "window"`, the extension section of the
//! reference-model contract; RevIN, Kim et al. 2022): each window's context is shifted by its
//! last value and scaled by its own std before the encoder, and the decoder's outputs are mapped
//! back with the same statistics before the loss. A series that trends out of the training
//! range then still looks familiar to the encoder, and a zero decoder is the persistence forecast.

use ode_core::Scalar;
use serde::{Deserialize, Serialize};

/// How the encoder's input is normalised on top of the global z-scores.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// The reference model: global z-scores from the training split only. The default.
    #[default]
    Global,
    /// Each window shifted by its last context value and scaled by its context's std; the
    /// forecast mapped back before the loss.
    Window,
}

ode_core::choice_names!(Normalization, "normalization" { Global => "global", Window => "window" });

/// Added to a window's variance before the square root (the contract's `1e-5`).
pub const WINDOW_VAR_EPS: f64 = 1e-5;

/// Added to the learnable scale before dividing by it when mapping back, as RevIN does
/// (`eps²` with `eps = 1e-5`), so a weight driven to zero cannot divide by zero.
pub const AFFINE_EPS: f64 = 1e-10;

/// Shapes of one window-mode pass: rows, context length, features, horizon, targets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub rows: usize,
    pub c: usize,
    pub d: usize,
    pub h: usize,
    pub o: usize,
}

/// The learnable per-feature affine (`revin.weight`, `revin.bias`), when the model has one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Affine<'a, T> {
    pub weight: &'a [T],
    pub bias: &'a [T],
}

impl<T: Scalar> Affine<'_, T> {
    /// Feature `f`'s scale and shift: `(1, 0)` without an affine.
    fn at(a: Option<Self>, f: usize) -> (T, T) {
        a.map_or((T::one(), T::zero()), |a| (a.weight[f], a.bias[f]))
    }

    /// Feature `f`'s scale and shift for mapping back: the scale plus [`AFFINE_EPS`] with an
    /// affine, exactly `(1, 0)` without one.
    fn inverse_at(a: Option<Self>, f: usize) -> (T, T) {
        a.map_or((T::one(), T::zero()), |a| (a.weight[f] + T::c(AFFINE_EPS), a.bias[f]))
    }
}

/// Per-window statistics of a batch and the buffers of a window-mode pass, reused across
/// batches (no allocation once sized).
#[derive(Debug, Default)]
pub(crate) struct WindowPass<T> {
    /// Last context value per row and feature (`rows × D`).
    shift: Vec<T>,
    /// Context std per row and feature (`rows × D`).
    scale: Vec<T>,
    /// The encoder's input: normalised contexts (`rows × C·D`).
    pub ctx: Vec<T>,
    /// The decoder's raw outputs before mapping back (`rows × H·O`).
    u: Vec<T>,
}

impl<T: Scalar> WindowPass<T> {
    /// Computes each window's statistics from `ctx` (`rows × C·D`, time-major) and writes the
    /// encoder's input `((x − shift) / scale) · weight + bias` into `self.ctx`.
    pub fn normalize(&mut self, ctx: &[T], n: Dims, affine: Option<Affine<'_, T>>) {
        let (c, d) = (n.c, n.d);
        resize(&mut self.shift, n.rows * d);
        resize(&mut self.scale, n.rows * d);
        resize(&mut self.ctx, ctx.len());
        for row in 0..n.rows {
            let x = &ctx[row * c * d..(row + 1) * c * d];
            for f in 0..d {
                let mean = (0..c).map(|t| x[t * d + f].f64()).sum::<f64>() / c as f64;
                let var = (0..c).map(|t| (x[t * d + f].f64() - mean).powi(2)).sum::<f64>() / c as f64;
                let (shift, scale) = (x[(c - 1) * d + f], T::c((var + WINDOW_VAR_EPS).sqrt()));
                self.shift[row * d + f] = shift;
                self.scale[row * d + f] = scale;
                let (w, b) = Affine::at(affine, f);
                for t in 0..c {
                    self.ctx[row * c * d + t * d + f] = (x[t * d + f] - shift) / scale * w + b;
                }
            }
        }
    }

    /// Maps the decoder's outputs in `pred` (`rows × H·O`) back in place:
    /// `y = (u − bias) / (weight + ε) · scale + shift` with target `j`'s feature `tf[j]`'s
    /// statistics, keeping `u` for the backward pass.
    pub fn map_back(&mut self, pred: &mut [T], n: Dims, tf: &[usize], affine: Option<Affine<'_, T>>) {
        resize(&mut self.u, pred.len());
        self.u.copy_from_slice(pred);
        for row in 0..n.rows {
            for k in 0..n.h {
                for (j, &f) in tf.iter().enumerate() {
                    let (w, b) = Affine::inverse_at(affine, f);
                    let i = (row * n.h + k) * n.o + j;
                    let s = row * n.d + f;
                    pred[i] = (pred[i] - b) / w * self.scale[s] + self.shift[s];
                }
            }
        }
    }

    /// Back through [`WindowPass::map_back`]: turns `g` = ∂L/∂y (k-major, `H × rows × O`) into
    /// ∂L/∂u in place and, with an affine, **adds** its part of ∂L/∂weight and ∂L/∂bias.
    pub fn map_back_grad(
        &self,
        g: &mut [T],
        n: Dims,
        tf: &[usize],
        affine: Option<(Affine<'_, T>, &mut [T], &mut [T])>,
    ) {
        let (aff, mut grads) = match affine {
            Some((a, gw, gb)) => (Some(a), Some((gw, gb))),
            None => (None, None),
        };
        for k in 0..n.h {
            for row in 0..n.rows {
                for (j, &f) in tf.iter().enumerate() {
                    let (wd, b) = Affine::inverse_at(aff, f);
                    let gi = (k * n.rows + row) * n.o + j;
                    let ds = g[gi] * self.scale[row * n.d + f];
                    if let Some((gw, gb)) = grads.as_mut() {
                        let u = self.u[(row * n.h + k) * n.o + j];
                        gw[f] = gw[f] - ds * (u - b) / (wd * wd);
                        gb[f] = gb[f] - ds / wd;
                    }
                    g[gi] = ds / wd;
                }
            }
        }
    }

    /// **Adds** the affine's part of ∂L/∂weight and ∂L/∂bias from ∂L/∂(encoder input) `dctx`
    /// (`rows × C·D`), for the contexts `ctx` this pass normalised.
    pub fn affine_input_grad(&self, ctx: &[T], dctx: &[T], n: Dims, gw: &mut [T], gb: &mut [T]) {
        let (c, d) = (n.c, n.d);
        for row in 0..n.rows {
            for t in 0..c {
                for f in 0..d {
                    let i = row * c * d + t * d + f;
                    let s = row * d + f;
                    let xhat = (ctx[i] - self.shift[s]) / self.scale[s];
                    gw[f] = gw[f] + dctx[i] * xhat;
                    gb[f] = gb[f] + dctx[i];
                }
            }
        }
    }
}

fn resize<T: Scalar>(v: &mut Vec<T>, n: usize) {
    v.resize(n, T::zero());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_are_the_last_value_and_the_population_std() {
        // One window, C = 4, D = 1: x = [1, 2, 3, 6], mean 3, var (4+1+0+9)/4 = 3.5.
        let mut p = WindowPass::<f64>::default();
        let n = Dims {
            rows: 1,
            c: 4,
            d: 1,
            h: 1,
            o: 1,
        };
        p.normalize(&[1.0, 2.0, 3.0, 6.0], n, None);
        let s = (3.5f64 + 1e-5).sqrt();
        assert_eq!(p.shift, vec![6.0]);
        assert!((p.scale[0] - s).abs() < 1e-15);
        for (got, x) in p.ctx.iter().zip([1.0, 2.0, 3.0, 6.0]) {
            assert!((got - (x - 6.0) / s).abs() < 1e-15);
        }
        let mut pred = vec![0.5];
        p.map_back(&mut pred, n, &[0], None);
        assert!((pred[0] - (0.5 * s + 6.0)).abs() < 1e-12);
    }

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for m in [Normalization::Global, Normalization::Window] {
            assert_eq!(m.name().parse::<Normalization>().unwrap(), m);
        }
        let e = "windowed".parse::<Normalization>().unwrap_err().to_string();
        assert!(e.contains("normalization") && e.contains("global, window"), "{e}");
    }
}
