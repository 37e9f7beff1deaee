//! The reference-model vector field: a batched three-layer tanh MLP `dz/dt = func(z)` with its
//! vector-Jacobian products, the building block of Neural ODE training.

use crate::Scalar;
use crate::field::VectorField;
use crate::kernel::{Cols, Panels, gemm_bias_panels, gemm_panels, pack_rows, pack_transposed};
use crate::layers::linear_backward;
use crate::record_queue::{QueuedLayer, RecordQueue};

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

    /// Forward pass of `rows` samples, leaving the activations in the scratch buffers.
    fn forward_cached(&mut self, y: &[T], dy: &mut [T]) {
        let (l, m) = (self.latent, self.hidden);
        let rows = y.len() / l;
        self.grow(rows);
        self.repack();
        let lay = layout(l, m);
        let p = &self.params;
        let [f0, f1, f2] = &self.fwd;
        let h1 = &mut self.h1[..rows * m];
        let h2 = &mut self.h2[..rows * m];
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
        let (l, m) = (self.latent, self.hidden);
        let rows = y.len() / l;
        assert_eq!(v.len(), rows * l, "vjp: cotangent shape");
        assert_eq!(gy.len(), rows * l, "vjp: gy shape");
        // The output scratch of calls without `f_out` is sized by every call, so such a call
        // later (the adjoint's, after a rejected row) allocates nothing.
        if self.fout.len() < rows * l {
            self.fout.resize(rows * l, T::zero());
        }
        match f_out {
            Some(f) => self.forward_cached(y, f),
            None => {
                // Only the activations are needed; the output goes to a scratch buffer.
                let mut fout = std::mem::take(&mut self.fout);
                self.forward_cached(y, &mut fout[..rows * l]);
                self.fout = fout;
            }
        }
        let lay = layout(l, m);
        let one = T::one();
        let p = &self.params;
        let h1 = &self.h1[..rows * m];
        let h2 = &self.h2[..rows * m];
        let ga = &mut self.g1[..rows * m];
        let gb = &mut self.g2[..rows * m];
        // Layer 3 (linear): gh2 = v · W4 (and dW4 += vᵀ h2, db4 += Σ v), then through tanh.
        let (w0, b0, w1, b1, w2, b2) = (
            lay.w0..lay.b0,
            lay.b0..lay.w1,
            lay.w1..lay.b1,
            lay.b1..lay.w2,
            lay.w2..lay.b2,
            lay.b2..lay.end,
        );
        let mut gp = gparams;
        if let Some(g) = gp.as_deref() {
            assert_eq!(g.len(), lay.end, "vjp: parameter gradient shape");
        }
        let [bw0, bw1, bw2] = &self.bwd;
        gemm_panels(rows, l, m, v, Panels::new(bw2, l, m), gb, false);
        linear_backward(
            rows,
            m,
            l,
            h2,
            &p[w2.clone()],
            v,
            param_pair(gp.as_deref_mut(), w2, b2),
            None,
        );
        for (g, h) in gb.iter_mut().zip(h2) {
            *g = *g * (one - *h * *h);
        }
        // Layer 2: gh1 = gz2 · W2, gz1 = gh1 ⊙ (1 - h1²).
        gemm_panels(rows, m, m, gb, Panels::new(bw1, m, m), ga, false);
        linear_backward(
            rows,
            m,
            m,
            h1,
            &p[w1.clone()],
            gb,
            param_pair(gp.as_deref_mut(), w1, b1),
            None,
        );
        for (g, h) in ga.iter_mut().zip(h1) {
            *g = *g * (one - *h * *h);
        }
        // Layer 1: gy = gz1 · W0.
        gemm_panels(rows, m, l, ga, Panels::new(bw0, m, l), gy, false);
        linear_backward(rows, l, m, y, &p[w0.clone()], ga, param_pair(gp, w0, b0), None);
    }
}

/// Where each field of a VJP record starts: the three layers' inputs `y`, `h1`, `h2`, then the
/// cotangents at their (pre-activation) outputs `g1`, `g2`, `v`.
#[derive(Debug, Clone, Copy)]
struct RecordLayout {
    y: usize,
    h1: usize,
    h2: usize,
    g1: usize,
    g2: usize,
    v: usize,
    len: usize,
}

fn record_layout(l: usize, m: usize) -> RecordLayout {
    RecordLayout {
        y: 0,
        h1: l,
        h2: l + m,
        g1: l + 2 * m,
        g2: l + 3 * m,
        v: l + 4 * m,
        len: 2 * l + 4 * m,
    }
}

impl<T: Scalar> Mlp<T> {
    /// Values per row of a VJP record (see [`crate::VjpField::record_len`]): the inputs of the
    /// three layers and the cotangents at their outputs, `2·L + 4·M`.
    pub fn record_len(&self) -> usize {
        record_layout(self.latent, self.hidden).len
    }

    /// [`Mlp::vjp`] without parameter gradients, writing each row's record into `records`
    /// (`rows ×` [`Mlp::record_len`]) for [`Mlp::push_record`].
    pub fn vjp_record(&mut self, y: &[T], v: &[T], f_out: Option<&mut [T]>, gy: &mut [T], records: &mut [T]) {
        self.vjp(y, v, f_out, gy, None);
        let (l, m) = (self.latent, self.hidden);
        let (rows, o) = (y.len() / l, record_layout(l, m));
        assert!(
            records.len() >= rows * o.len,
            "vjp_record: records shorter than rows × record_len"
        );
        let parts: [(&[T], usize, usize); 6] = [
            (y, o.y, l),
            (&self.h1, o.h1, m),
            (&self.h2, o.h2, m),
            (&self.g1, o.g1, m),
            (&self.g2, o.g2, m),
            (v, o.v, l),
        ];
        for (r, rec) in records.chunks_exact_mut(o.len).take(rows).enumerate() {
            for &(src, at, w) in &parts {
                rec[at..at + w].copy_from_slice(&src[r * w..(r + 1) * w]);
            }
        }
    }

    /// Queues `w` times the parameter VJP of `rec` (one row of [`Mlp::vjp_record`]'s records);
    /// when [`crate::record_queue`]'s queue is full, **adds** the queued products to `gparams`.
    /// The products accumulate the records in queue order, so when they are formed changes no
    /// bit of the result.
    pub fn push_record(&mut self, rec: &[T], w: T, gparams: &mut [T]) {
        let layers = self.queued_layers();
        assert_eq!(rec.len(), self.record_len(), "push_record: record length");
        assert_eq!(
            gparams.len(),
            self.num_params(),
            "push_record: parameter gradient shape"
        );
        self.queue.push(&layers, rec, w, gparams);
    }

    /// **Adds** the queued records' parameter products to `gparams` (`Σ_j w_j · vⱼᵀ ∂f/∂θ`,
    /// one weight product per layer with the records as its inner dimension) and empties the
    /// queue.
    pub fn flush_records(&mut self, gparams: &mut [T]) {
        let layers = self.queued_layers();
        assert_eq!(
            gparams.len(),
            self.num_params(),
            "flush_records: parameter gradient shape"
        );
        self.queue.flush(&layers, gparams);
    }

    /// Drops the queued records (after a backward solve that failed).
    pub fn discard_records(&mut self) {
        self.queue.clear();
    }

    /// The three layers' cotangent and input fields in a record, and their parameters.
    fn queued_layers(&self) -> [QueuedLayer; 3] {
        let (l, m) = (self.latent, self.hidden);
        let (o, lay) = (record_layout(l, m), layout(l, m));
        [
            QueuedLayer {
                g: (o.v, l),
                x: (o.h2, m),
                weight: lay.w2..lay.b2,
                bias: lay.b2..lay.end,
            },
            QueuedLayer {
                g: (o.g2, m),
                x: (o.h1, m),
                weight: lay.w1..lay.b1,
                bias: lay.b1..lay.w2,
            },
            QueuedLayer {
                g: (o.g1, m),
                x: (o.y, l),
                weight: lay.w0..lay.b0,
                bias: lay.b0..lay.w1,
            },
        ]
    }
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
        self.forward_cached(y, dy);
    }
}
