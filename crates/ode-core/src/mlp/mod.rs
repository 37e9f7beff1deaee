//! The reference-model vector field: a batched three-layer tanh MLP `dz/dt = func(z)` with its
//! vector-Jacobian products, the building block of Neural ODE training.

use crate::Scalar;
use crate::field::VectorField;
use crate::kernel::{Cols, Panels, gemm_bias_panels, gemm_panels, pack_rows, pack_transposed};
use crate::layers::linear_param_grad_packed;
use crate::record_queue::RecordQueue;

mod records;

/// Names of the field's parameter tensors, in storage order, as PyTorch names them.
pub const MLP_TENSOR_NAMES: [&str; 6] = [
    "func.0.weight",
    "func.0.bias",
    "func.2.weight",
    "func.2.bias",
    "func.4.weight",
    "func.4.bias",
];

/// The autonomous vector field of the reference model,
/// `func(z) = W4 · tanh(W2 · tanh(W0 · z + b0) + b2) + b4`, evaluated on a whole batch.
///
/// Parameters live in one flat vector (the tensors of [`MLP_TENSOR_NAMES`] concatenated,
/// weights `[out, in]` row-major as `torch.nn.Linear`), so optimisers and checkpoints can treat
/// them as one buffer. Scratch space for activations is kept inside and only grows.
///
/// ```
/// use ode_core::{Mlp, VectorField};
/// let mut mlp = Mlp::<f32>::new(2, 4, |_| 0.1);
/// let mut dz = [0.0f32; 2];
/// mlp.eval(&[0.0], &[1.0, -1.0], &mut dz);
/// assert_eq!(mlp.num_params(), 4 * 2 + 4 + 4 * 4 + 4 + 2 * 4 + 2);
/// ```
#[derive(Debug, Clone)]
pub struct Mlp<T> {
    latent: usize,
    hidden: usize,
    params: Vec<T>,
    h1: Vec<T>,
    h2: Vec<T>,
    g1: Vec<T>,
    g2: Vec<T>,
    fout: Vec<T>,
    /// The three layers' weights packed for the products ([`Panels`]), refreshed after
    /// `params_mut`: `fwd[i]` holds layer `i`'s `Wᵀ` (forward), `bwd[i]` its `W` (input
    /// gradients).
    fwd: [Vec<T>; 3],
    bwd: [Vec<T>; 3],
    packed_stale: bool,
    /// Weighted VJP records waiting for their parameter products.
    queue: RecordQueue<T>,
    /// One layer's inputs, packed for its parameter product in [`Mlp::vjp`].
    xpack: Vec<T>,
}

/// Offsets of the six tensors in the flat parameter vector.
#[derive(Debug, Clone, Copy)]
struct Layout {
    w0: usize,
    b0: usize,
    w1: usize,
    b1: usize,
    w2: usize,
    b2: usize,
    end: usize,
}

fn layout(l: usize, m: usize) -> Layout {
    let w0 = 0;
    let b0 = w0 + m * l;
    let w1 = b0 + m;
    let b1 = w1 + m * m;
    let w2 = b1 + m;
    let b2 = w2 + l * m;
    Layout {
        w0,
        b0,
        w1,
        b1,
        w2,
        b2,
        end: b2 + l,
    }
}

impl<T: Scalar> Mlp<T> {
    /// A field with latent size `latent` and hidden size `hidden`, each parameter set by
    /// `init(fan_in)` (the reference model draws uniform in `±1/sqrt(fan_in)`, PyTorch's default).
    pub fn new(latent: usize, hidden: usize, mut init: impl FnMut(usize) -> T) -> Self {
        let lay = layout(latent, hidden);
        let mut params = Vec::with_capacity(lay.end);
        for (name, shape) in Self::shapes_of(latent, hidden) {
            let fan_in = if name.ends_with("weight") {
                shape[1]
            } else {
                Self::fan_in_of_bias(name, latent, hidden)
            };
            for _ in 0..shape.iter().product::<usize>() {
                params.push(init(fan_in));
            }
        }
        Self::with_params(latent, hidden, params)
    }

    fn fan_in_of_bias(name: &str, latent: usize, hidden: usize) -> usize {
        match name {
            "func.0.bias" => latent,
            _ => hidden,
        }
    }

    /// A field from a flat parameter vector (see the type's doc for the order).
    ///
    /// # Panics
    /// If `params.len()` is not [`Mlp::param_count`]`(latent, hidden)`.
    pub fn with_params(latent: usize, hidden: usize, params: Vec<T>) -> Self {
        assert_eq!(
            params.len(),
            Self::param_count(latent, hidden),
            "MLP parameter vector has the wrong length"
        );
        Self {
            latent,
            hidden,
            params,
            h1: Vec::new(),
            h2: Vec::new(),
            g1: Vec::new(),
            g2: Vec::new(),
            fout: Vec::new(),
            fwd: Default::default(),
            bwd: Default::default(),
            packed_stale: true,
            queue: RecordQueue::default(),
            xpack: Vec::new(),
        }
    }

    /// Number of parameters of a field of this size.
    pub fn param_count(latent: usize, hidden: usize) -> usize {
        layout(latent, hidden).end
    }

    /// The shapes of the six tensors, in storage order, with their PyTorch names.
    pub fn shapes_of(latent: usize, hidden: usize) -> [(&'static str, Vec<usize>); 6] {
        let (l, m) = (latent, hidden);
        [
            (MLP_TENSOR_NAMES[0], vec![m, l]),
            (MLP_TENSOR_NAMES[1], vec![m]),
            (MLP_TENSOR_NAMES[2], vec![m, m]),
            (MLP_TENSOR_NAMES[3], vec![m]),
            (MLP_TENSOR_NAMES[4], vec![l, m]),
            (MLP_TENSOR_NAMES[5], vec![l]),
        ]
    }

    /// `(name, shape, offset)` of every tensor in the flat parameter vector.
    pub fn tensors(&self) -> Vec<(&'static str, Vec<usize>, usize)> {
        let mut off = 0;
        Self::shapes_of(self.latent, self.hidden)
            .into_iter()
            .map(|(n, s)| {
                let o = off;
                off += s.iter().product::<usize>();
                (n, s, o)
            })
            .collect()
    }

    /// Latent (state) size.
    pub fn latent(&self) -> usize {
        self.latent
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// The flat parameter vector.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// The flat parameter vector, mutable (for optimisers).
    pub fn params_mut(&mut self) -> &mut [T] {
        self.packed_stale = true;
        &mut self.params
    }

    /// Floating-point operations of one forward evaluation of `rows` samples (matrix products
    /// only: `2·rows·(L·M + M·M + M·L)`).
    pub fn forward_flops(&self, rows: usize) -> u64 {
        let (l, m) = (self.latent as u64, self.hidden as u64);
        2 * rows as u64 * (l * m + m * m + m * l)
    }

    fn grow(&mut self, rows: usize) {
        let need = rows * self.hidden;
        if self.h1.len() < need {
            for v in [&mut self.h1, &mut self.h2, &mut self.g1, &mut self.g2] {
                v.resize(need, T::zero());
            }
        }
    }

    /// Runs `f` with the scratch buffers as the activations of `rows` rows.
    fn with_scratch<R>(&mut self, rows: usize, f: impl FnOnce(&mut Self, Acts<'_, T>) -> R) -> R {
        self.grow(rows);
        let n = rows * self.hidden;
        let mut bufs = [&mut self.h1, &mut self.h2, &mut self.g1, &mut self.g2].map(std::mem::take);
        let [h1, h2, g1, g2] = &mut bufs;
        let acts = Acts {
            h1: &mut h1[..n],
            h2: &mut h2[..n],
            g1: &mut g1[..n],
            g2: &mut g2[..n],
        };
        let out = f(self, acts);
        [self.h1, self.h2, self.g1, self.g2] = bufs;
        out
    }

    /// Forward pass of the rows of `y` into `dy`, leaving the hidden activations in `h1`, `h2`.
    fn forward_into(&mut self, y: &[T], dy: &mut [T], h1: &mut [T], h2: &mut [T]) {
        let (l, m) = (self.latent, self.hidden);
        let rows = y.len() / l;
        self.repack();
        let lay = layout(l, m);
        let p = &self.params;
        let [f0, f1, f2] = &self.fwd;
        gemm_bias_panels(rows, l, m, y, Panels::new(f0, l, m), &p[lay.b0..lay.w1], h1);
        T::tanh_inplace(h1);
        gemm_bias_panels(rows, m, m, h1, Panels::new(f1, m, m), &p[lay.b1..lay.w2], h2);
        T::tanh_inplace(h2);
        let out = &mut dy[..rows * l];
        gemm_bias_panels(rows, m, l, h2, Panels::new(f2, m, l), &p[lay.b2..lay.end], out);
    }

    /// Packs the weights again if the parameters may have changed since the last pack.
    fn repack(&mut self) {
        if !self.packed_stale {
            return;
        }
        let (l, m) = (self.latent, self.hidden);
        let lay = layout(l, m);
        // (weight range, outputs, inputs) per layer.
        let layers = [(lay.w0..lay.b0, m, l), (lay.w1..lay.b1, m, m), (lay.w2..lay.b2, l, m)];
        for ((w, n_out, n_in), (fwd, bwd)) in layers.into_iter().zip(self.fwd.iter_mut().zip(&mut self.bwd)) {
            let w = &self.params[w];
            pack_transposed(n_in, n_out, w, fwd);
            pack_rows(n_out, n_in, Cols::whole(w, n_in), bwd);
        }
        self.packed_stale = false;
    }

    /// Vector-Jacobian products at the states `y` (`rows × L`) for cotangents `v` (`rows × L`):
    /// writes `vᵀ ∂f/∂y` into `gy` and, when `gparams` is given, **adds** `Σ_rows vᵀ ∂f/∂θ` to it
    /// (flat, same order as the parameters). If `f_out` is given it receives `f(y)` too, which
    /// the adjoint needs anyway, at no extra cost.
    pub fn vjp(&mut self, y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], gparams: Option<&mut [T]>) {
        let rows = y.len() / self.latent;
        self.with_scratch(rows, |me, acts| me.vjp_into(y, v, f_out, gy, gparams, acts));
    }

    /// [`Mlp::vjp`] with the activations in `acts`.
    fn vjp_into(
        &mut self,
        y: &[T],
        v: &[T],
        f_out: Option<&mut [T]>,
        gy: &mut [T],
        gparams: Option<&mut [T]>,
        acts: Acts<'_, T>,
    ) {
        let l = self.latent;
        let rows = y.len() / l;
        assert_eq!(v.len(), rows * l, "vjp: cotangent shape");
        assert_eq!(gy.len(), rows * l, "vjp: gy shape");
        if let Some(g) = gparams.as_deref() {
            assert_eq!(g.len(), self.num_params(), "vjp: parameter gradient shape");
        }
        // The output scratch of calls without `f_out` is sized by every call, so such a call
        // later (the adjoint's, after a rejected row) allocates nothing.
        if self.fout.len() < rows * l {
            self.fout.resize(rows * l, T::zero());
        }
        match f_out {
            Some(f) => self.forward_into(y, f, acts.h1, acts.h2),
            None => {
                // Only the activations are needed; the output goes to a scratch buffer.
                let mut fout = std::mem::take(&mut self.fout);
                self.forward_into(y, &mut fout[..rows * l], acts.h1, acts.h2);
                self.fout = fout;
            }
        }
        self.backward(y, v, gy, gparams, acts);
    }

    /// The backward half of [`Mlp::vjp`], from the forward's activations in `acts`.
    fn backward(&mut self, y: &[T], v: &[T], gy: &mut [T], gparams: Option<&mut [T]>, acts: Acts<'_, T>) {
        let (l, m) = (self.latent, self.hidden);
        let rows = y.len() / l;
        let lay = layout(l, m);
        let one = T::one();
        let Self { bwd, xpack, .. } = self;
        let Acts { h1, h2, g1: ga, g2: gb } = acts;
        let (w0, b0, w1, b1, w2, b2) = (
            lay.w0..lay.b0,
            lay.b0..lay.w1,
            lay.w1..lay.b1,
            lay.b1..lay.w2,
            lay.w2..lay.b2,
            lay.b2..lay.end,
        );
        let mut gp = gparams;
        let [bw0, bw1, bw2] = &*bwd;
        // Layer 3 (linear): gh2 = v · W4 (and dW4 += vᵀ h2, db4 += Σ v), then through tanh.
        gemm_panels(rows, l, m, v, Panels::new(bw2, l, m), gb, false);
        let pair = param_pair(gp.as_deref_mut(), w2, b2);
        if let Some(pair) = pair {
            linear_param_grad_packed(rows, m, l, h2, v, pair, xpack);
        }
        for (g, h) in gb.iter_mut().zip(h2.iter()) {
            *g = *g * (one - *h * *h);
        }
        // Layer 2: gh1 = gz2 · W2, gz1 = gh1 ⊙ (1 - h1²).
        gemm_panels(rows, m, m, gb, Panels::new(bw1, m, m), ga, false);
        let pair = param_pair(gp.as_deref_mut(), w1, b1);
        if let Some(pair) = pair {
            linear_param_grad_packed(rows, m, m, h1, gb, pair, xpack);
        }
        for (g, h) in ga.iter_mut().zip(h1.iter()) {
            *g = *g * (one - *h * *h);
        }
        // Layer 1: gy = gz1 · W0.
        gemm_panels(rows, m, l, ga, Panels::new(bw0, m, l), gy, false);
        if let Some(pair) = param_pair(gp, w0, b0) {
            linear_param_grad_packed(rows, l, m, y, ga, pair, xpack);
        }
    }
}

/// The activations of one evaluation (`rows × M` each): the hidden layers' outputs `h1`, `h2`
/// and the cotangents at their pre-activations `g1`, `g2`; the field's scratch buffers, or a
/// block of VJP records, which then need no copy.
struct Acts<'a, T> {
    h1: &'a mut [T],
    h2: &'a mut [T],
    g1: &'a mut [T],
    g2: &'a mut [T],
}

/// The weight and bias gradient slices of one layer, when parameter gradients are wanted.
fn param_pair<T>(
    g: Option<&mut [T]>,
    w: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) -> Option<(&mut [T], &mut [T])> {
    g.map(|g| {
        debug_assert_eq!(w.end, b.start);
        let (wpart, bpart) = g[w.start..b.end].split_at_mut(w.len());
        (wpart, bpart)
    })
}

impl<T: Scalar> VectorField<T> for Mlp<T> {
    fn dim(&self) -> usize {
        self.latent
    }
    fn eval(&mut self, _t: &[T], y: &[T], dy: &mut [T]) {
        let rows = y.len() / self.latent;
        self.with_scratch(rows, |me, acts| me.forward_into(y, dy, acts.h1, acts.h2));
    }
}
