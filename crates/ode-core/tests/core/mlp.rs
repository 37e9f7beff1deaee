//! Tests of the batched MLP vector field: forward pass against a naive loop implementation,
//! vector-Jacobian products against central finite differences, row independence, and the
//! field inside a solver.

use ode_core::{MLP_TENSOR_NAMES, Method, Mlp, SolveOptions, Solver, StepMode, VectorField, tanh_f32};

/// SplitMix64: a tiny, seeded, good-enough generator (`rand` is not a dependency).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[-a, a)`.
    fn sym(&mut self, a: f64) -> f64 {
        a * (2.0 * self.unit() - 1.0)
    }

    /// Uniform in `[-a, a)`, rounded to the nearest `f32` (so the same value is exact in both
    /// precisions).
    fn sym32(&mut self, a: f64) -> f64 {
        self.sym(a) as f32 as f64
    }
}

/// `(latent, hidden, batch)` sizes exercised by the tests: degenerate 1×1, batch 1, 7 and 65,
/// hidden sizes on and off the gemm micro-kernel's register-tile multiples.
const SIZES: [(usize, usize, usize); 6] = [(1, 1, 1), (2, 16, 7), (3, 33, 65), (8, 64, 1), (5, 7, 7), (2, 64, 65)];

/// Offsets `(w0, b0, w2, b2, w4, b4, end)` of the six tensors, computed here independently of
/// the crate from the documented order and `[out, in]` shapes.
fn offsets(l: usize, m: usize) -> [usize; 7] {
    let w0 = 0;
    let b0 = w0 + m * l;
    let w2 = b0 + m;
    let b2 = w2 + m * m;
    let w4 = b2 + m;
    let b4 = w4 + l * m;
    [w0, b0, w2, b2, w4, b4, b4 + l]
}

/// Random parameters like PyTorch's default init (uniform in ±1/sqrt(fan_in)) but scaled up by
/// 2 so the tanh layers are well into their nonlinear range. Values are `f32`-representable.
fn random_params(rng: &mut SplitMix64, l: usize, m: usize) -> Vec<f64> {
    let o = offsets(l, m);
    let mut p = vec![0.0; o[6]];
    let fan_in = [l, l, m, m, m, m];
    for t in 0..6 {
        let a = 2.0 / (fan_in[t] as f64).sqrt();
        for v in &mut p[o[t]..o[t + 1]] {
            *v = rng.sym32(a);
        }
    }
    p
}

fn random_vec(rng: &mut SplitMix64, n: usize, a: f64) -> Vec<f64> {
    (0..n).map(|_| rng.sym32(a)).collect()
}

/// The obviously-correct forward pass: three nested-loop dense layers with f64 `tanh`.
fn naive_forward(l: usize, m: usize, p: &[f64], y: &[f64]) -> Vec<f64> {
    naive_forward_with_f32_bound(l, m, p, y).0
}

/// Unit roundoff of `f32`.
const U32: f64 = f32::EPSILON as f64 / 2.0;
/// Max abs error of `tanh_f32` assumed by the f32 error bound. Measured exhaustively over every
/// `f32` in `[0, 12]` (the function is odd; `--bin tanh-error`): 4.4563e-7 at x ≈ 6.703 (about
/// 7.5 ulps of values just below 1.0), so rounded up; checked on a strided sample by
/// `tanh_f32_error_is_within_the_assumed_bound`.
const TANH_F32_ERR: f64 = 4.5e-7;

fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U32;
    nu / (1.0 - nu)
}

/// The naive forward pass, plus a componentwise a-priori bound on the error of an `f32`
/// evaluation of the same network with the same (f32-representable) parameters and inputs.
///
/// Standard forward error analysis: a layer `z = b + W x` evaluated in f32 from an input with
/// error `δx` has `|ẑ - z| ≤ |W| δx + γ_{k+1} (|b| + |W| |x̂|)` (k products and the bias in any
/// summation order, FMA or not); `tanh_f32` adds at most [`TANH_F32_ERR`] and tanh is
/// 1-Lipschitz.
fn naive_forward_with_f32_bound(l: usize, m: usize, p: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let o = offsets(l, m);
    let rows = y.len() / l;
    let (w0, b0) = (&p[o[0]..o[1]], &p[o[1]..o[2]]);
    let (w2, b2) = (&p[o[2]..o[3]], &p[o[3]..o[4]]);
    let (w4, b4) = (&p[o[4]..o[5]], &p[o[5]..o[6]]);
    // One dense layer: returns (W x + b, bound on the f32 error).
    let layer = |w: &[f64], b: &[f64], n_in: usize, x: &[f64], dx: &[f64]| {
        let n_out = b.len();
        let mut z = vec![0.0; n_out];
        let mut dz = vec![0.0; n_out];
        for i in 0..n_out {
            let mut acc = b[i];
            let mut abs = b[i].abs();
            let mut prop = 0.0;
            for j in 0..n_in {
                acc += w[i * n_in + j] * x[j];
                abs += w[i * n_in + j].abs() * (x[j].abs() + dx[j]);
                prop += w[i * n_in + j].abs() * dx[j];
            }
            z[i] = acc;
            dz[i] = prop + gamma(n_in + 1) * abs;
        }
        (z, dz)
    };
    let mut out = Vec::with_capacity(rows * l);
    let mut bound = Vec::with_capacity(rows * l);
    for r in 0..rows {
        let x = &y[r * l..(r + 1) * l];
        let (mut h1, mut d1) = layer(w0, b0, l, x, &vec![0.0; l]);
        for (h, d) in h1.iter_mut().zip(&mut d1) {
            *h = h.tanh();
            *d += TANH_F32_ERR;
        }
        let (mut h2, mut d2) = layer(w2, b2, m, &h1, &d1);
        for (h, d) in h2.iter_mut().zip(&mut d2) {
            *h = h.tanh();
            *d += TANH_F32_ERR;
        }
        let (f, df) = layer(w4, b4, m, &h2, &d2);
        out.extend(f);
        bound.extend(df);
    }
    (out, bound)
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |a, v| a.max(v.abs()))
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// `‖a - b‖₂ / ‖a‖₂`.
fn rel_l2(reference: &[f64], got: &[f64]) -> f64 {
    assert_eq!(reference.len(), got.len());
    let num: f64 = reference.iter().zip(got).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f64 = reference.iter().map(|a| a * a).sum();
    (num / den).sqrt()
}

fn eval(mlp: &mut Mlp<f64>, y: &[f64]) -> Vec<f64> {
    let rows = y.len() / mlp.latent();
    let mut dy = vec![f64::NAN; y.len()];
    mlp.eval(&vec![0.0; rows], y, &mut dy);
    dy
}

#[test]
fn layout_matches_documented_order() {
    for &(l, m, _) in &SIZES {
        let mlp = Mlp::<f64>::new(l, m, |_| 0.0);
        let o = offsets(l, m);
        assert_eq!(Mlp::<f64>::param_count(l, m), o[6]);
        assert_eq!(mlp.num_params(), o[6]);
        let tensors = mlp.tensors();
        let shapes = [vec![m, l], vec![m], vec![m, m], vec![m], vec![l, m], vec![l]];
        for (t, (name, shape, off)) in tensors.into_iter().enumerate() {
            assert_eq!(name, MLP_TENSOR_NAMES[t]);
            assert_eq!(shape, shapes[t], "{name}");
            assert_eq!(off, o[t], "{name}");
        }
    }
}

#[test]
fn init_uses_fan_in_of_each_tensor() {
    // PyTorch's nn.Linear draws weights and biases with the layer's input size as fan-in.
    let (l, m) = (3, 5);
    let mut fans = Vec::new();
    let mlp = Mlp::<f64>::new(l, m, |fan| {
        fans.push(fan);
        fan as f64
    });
    let o = offsets(l, m);
    let expect = [l, l, m, m, m, m];
    for t in 0..6 {
        assert!(
            mlp.params()[o[t]..o[t + 1]].iter().all(|&v| v == expect[t] as f64),
            "{}",
            MLP_TENSOR_NAMES[t]
        );
    }
    assert_eq!(fans.len(), o[6]);
}

#[test]
fn forward_f64_matches_naive_loops() {
    let mut rng = SplitMix64(0x5EED_0001);
    for &(l, m, rows) in &SIZES {
        let p = random_params(&mut rng, l, m);
        let y = random_vec(&mut rng, rows * l, 2.0);
        let mut mlp = Mlp::with_params(l, m, p.clone());
        let got = eval(&mut mlp, &y);
        let want = naive_forward(l, m, &p, &y);
        let err = max_abs_diff(&want, &got) / max_abs(&want);
        println!("f64 forward L={l} M={m} rows={rows}: rel err {err:.2e} (bound 1e-12)");
        assert!(err <= 1e-12, "L={l} M={m} rows={rows}: rel err {err:e}");
        // Scratch buffers must not leak between calls of different sizes: evaluating a single
        // row afterwards gives that row's value.
        let one = eval(&mut mlp, &y[..l]);
        assert_eq!(one, got[..l]);
    }
}

#[test]
fn forward_f32_matches_f64_within_error_bound() {
    let mut rng = SplitMix64(0x5EED_0002);
    let mut worst_ratio = 0.0f64;
    for &(l, m, rows) in &SIZES {
        let p = random_params(&mut rng, l, m);
        let y = random_vec(&mut rng, rows * l, 2.0);
        let (want, bound) = naive_forward_with_f32_bound(l, m, &p, &y);
        let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
        let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        let mut mlp = Mlp::<f32>::with_params(l, m, p32);
        let mut got = vec![f32::NAN; y.len()];
        mlp.eval(&vec![0.0; rows], &y32, &mut got);
        let mut max_err = 0.0f64;
        let mut max_bound = 0.0f64;
        for i in 0..want.len() {
            let err = (got[i] as f64 - want[i]).abs();
            // The reference itself is f64 (error ~1e-15, negligible next to the bound).
            let b = bound[i] + 1e-13;
            assert!(
                err <= b,
                "L={l} M={m} rows={rows} i={i}: |f32 - f64| = {err:e} > bound {b:e}"
            );
            max_err = max_err.max(err);
            max_bound = max_bound.max(b);
            worst_ratio = worst_ratio.max(err / b);
        }
        println!("f32 forward L={l} M={m} rows={rows}: max |f32-f64| {max_err:.2e}, bound up to {max_bound:.2e}");
        // The a-priori bound is a worst case (every rounding error aligned) and grows with the
        // layer widths; the observed error is far smaller. State the practical f32 accuracy too:
        // outputs are O(1), so an f32 forward pass agrees with f64 to 2e-6 absolute. (Measured
        // worst case 7.1e-7 for these seeded weights, mostly the tanh approximation's error;
        // the weights are seeded, so this is deterministic, not flaky.)
        assert!(
            max_err <= 2e-6,
            "L={l} M={m} rows={rows}: max |f32 - f64| {max_err:e} > 2e-6"
        );
    }
    println!("worst err/bound {worst_ratio:.3}");
}

#[test]
fn tanh_f32_error_is_within_the_assumed_bound() {
    // Every 61st f32 in [0, 12], its negation, and a few special values.
    let mut worst = (0.0f64, 0.0f32);
    let end = 12.0f32.to_bits();
    let mut bits = 0u32;
    while bits <= end {
        let x = f32::from_bits(bits);
        for x in [x, -x] {
            let e = (tanh_f32(x) as f64 - (x as f64).tanh()).abs();
            if e > worst.0 {
                worst = (e, x);
            }
        }
        bits += 61;
    }
    println!("tanh_f32 max abs error on the sample: {:.3e} at {}", worst.0, worst.1);
    assert!(worst.0 <= TANH_F32_ERR, "{worst:?}");
    for x in [20.0f32, 1e4, f32::MAX, f32::INFINITY] {
        assert!((tanh_f32(x) as f64 - 1.0).abs() <= TANH_F32_ERR);
        assert!((tanh_f32(-x) as f64 + 1.0).abs() <= TANH_F32_ERR);
    }
}

/// `φ(θ, y) = Σ_rows vᵀ f(y; θ)`, whose gradients are what `vjp` returns.
fn phi(mlp: &mut Mlp<f64>, y: &[f64], v: &[f64]) -> f64 {
    eval(mlp, y).iter().zip(v).map(|(a, b)| a * b).sum()
}

const FD_STEP: f64 = 1e-5;

#[test]
fn vjp_state_matches_central_differences() {
    let mut rng = SplitMix64(0x5EED_0003);
    for &(l, m, rows) in &SIZES {
        let p = random_params(&mut rng, l, m);
        let y = random_vec(&mut rng, rows * l, 2.0);
        let v = random_vec(&mut rng, rows * l, 1.0);
        let mut mlp = Mlp::with_params(l, m, p);
        let mut gy = vec![f64::NAN; y.len()];
        mlp.vjp(&y, &v, None, &mut gy, None);
        let mut fd = vec![0.0; y.len()];
        let mut yp = y.clone();
        for i in 0..y.len() {
            yp[i] = y[i] + FD_STEP;
            let up = phi(&mut mlp, &yp, &v);
            yp[i] = y[i] - FD_STEP;
            let dn = phi(&mut mlp, &yp, &v);
            yp[i] = y[i];
            fd[i] = (up - dn) / (2.0 * FD_STEP);
        }
        let err = rel_l2(&fd, &gy);
        println!("vjp dy L={l} M={m} rows={rows}: rel err {err:.2e} (bound 1e-6)");
        assert!(err <= 1e-6, "L={l} M={m} rows={rows}: rel err {err:e}");
    }
}

#[test]
fn vjp_params_match_central_differences_per_tensor() {
    let mut rng = SplitMix64(0x5EED_0004);
    for &(l, m, rows) in &SIZES {
        let p = random_params(&mut rng, l, m);
        let y = random_vec(&mut rng, rows * l, 2.0);
        let v = random_vec(&mut rng, rows * l, 1.0);
        let mut mlp = Mlp::with_params(l, m, p.clone());
        let mut gy = vec![0.0; y.len()];
        let mut gp = vec![0.0; p.len()];
        mlp.vjp(&y, &v, None, &mut gy, Some(&mut gp));
        let mut fd = vec![0.0; p.len()];
        for i in 0..p.len() {
            mlp.params_mut()[i] = p[i] + FD_STEP;
            let up = phi(&mut mlp, &y, &v);
            mlp.params_mut()[i] = p[i] - FD_STEP;
            let dn = phi(&mut mlp, &y, &v);
            mlp.params_mut()[i] = p[i];
            fd[i] = (up - dn) / (2.0 * FD_STEP);
        }
        let o = offsets(l, m);
        for t in 0..6 {
            let err = rel_l2(&fd[o[t]..o[t + 1]], &gp[o[t]..o[t + 1]]);
            println!(
                "vjp {} L={l} M={m} rows={rows}: rel err {err:.2e} (bound 1e-6)",
                MLP_TENSOR_NAMES[t]
            );
            assert!(
                err <= 1e-6,
                "{} L={l} M={m} rows={rows}: rel err {err:e}",
                MLP_TENSOR_NAMES[t]
            );
        }
    }
}

#[test]
fn vjp_f_out_equals_eval_and_options_do_not_change_gy() {
    let mut rng = SplitMix64(0x5EED_0005);
    for &(l, m, rows) in &SIZES {
        let p = random_params(&mut rng, l, m);
        let y = random_vec(&mut rng, rows * l, 2.0);
        let v = random_vec(&mut rng, rows * l, 1.0);
        let mut mlp = Mlp::with_params(l, m, p.clone());
        let f = eval(&mut mlp, &y);
        let mut f_out = vec![f64::NAN; y.len()];
        let mut gy_full = vec![f64::NAN; y.len()];
        let mut gp = vec![0.0; p.len()];
        mlp.vjp(&y, &v, Some(&mut f_out), &mut gy_full, Some(&mut gp));
        assert_eq!(f_out, f, "L={l} M={m} rows={rows}");
        let mut gy_bare = vec![f64::NAN; y.len()];
        mlp.vjp(&y, &v, None, &mut gy_bare, None);
        assert_eq!(gy_bare, gy_full, "L={l} M={m} rows={rows}");
    }
}

#[test]
fn vjp_accumulates_into_gparams() {
    let mut rng = SplitMix64(0x5EED_0006);
    for &(l, m, rows) in &SIZES {
        let p = random_params(&mut rng, l, m);
        let y = random_vec(&mut rng, rows * l, 2.0);
        let v = random_vec(&mut rng, rows * l, 1.0);
        let mut mlp = Mlp::with_params(l, m, p.clone());
        let mut gy = vec![0.0; y.len()];
        let mut once = vec![0.0; p.len()];
        mlp.vjp(&y, &v, None, &mut gy, Some(&mut once));
        assert!(once.iter().any(|&g| g != 0.0));
        // Twice from zero: double, to rounding. Not bitwise: the second call adds each row's
        // contribution into the accumulator in turn (the bias sums row by row, the weight gemm
        // with beta = 1 accumulates on top of C), so it rounds `((G + x1) + x2) + …`, not `G + G`.
        let mut twice = vec![0.0; p.len()];
        mlp.vjp(&y, &v, None, &mut gy, Some(&mut twice));
        mlp.vjp(&y, &v, None, &mut gy, Some(&mut twice));
        // From an arbitrary starting value: start + gradient, to rounding.
        let start = random_vec(&mut rng, p.len(), 3.0);
        let mut acc = start.clone();
        mlp.vjp(&y, &v, None, &mut gy, Some(&mut acc));
        let o = offsets(l, m);
        let mut worst = [0.0f64; 2];
        for t in 0..6 {
            let scale = max_abs(&once[o[t]..o[t + 1]]);
            assert!(scale > 0.0, "{} gradient is zero", MLP_TENSOR_NAMES[t]);
            for i in o[t]..o[t + 1] {
                let e2 = (twice[i] - 2.0 * once[i]).abs() / (2.0 * scale);
                let es = (acc[i] - (start[i] + once[i])).abs() / (start[i].abs() + scale);
                worst = [worst[0].max(e2), worst[1].max(es)];
                assert!(
                    e2 <= 1e-13,
                    "{} L={l} M={m} rows={rows} [{i}]: twice {} vs 2·once {}",
                    MLP_TENSOR_NAMES[t],
                    twice[i],
                    2.0 * once[i]
                );
                assert!(
                    es <= 1e-13,
                    "{} L={l} M={m} rows={rows} [{i}]: {} vs start + once {}",
                    MLP_TENSOR_NAMES[t],
                    acc[i],
                    start[i] + once[i]
                );
            }
        }
        println!(
            "accumulate L={l} M={m} rows={rows}: twice vs 2·once {:.2e}, start+g {:.2e} (bound 1e-13)",
            worst[0], worst[1]
        );
    }
}

#[test]
fn vjp_rows_are_independent() {
    let mut rng = SplitMix64(0x5EED_0007);
    for &(l, m, rows) in &SIZES {
        let p = random_params(&mut rng, l, m);
        let y = random_vec(&mut rng, rows * l, 2.0);
        let v = random_vec(&mut rng, rows * l, 1.0);
        let mut mlp = Mlp::with_params(l, m, p.clone());
        let mut f_batch = vec![0.0; y.len()];
        let mut gy_batch = vec![0.0; y.len()];
        let mut gp_batch = vec![0.0; p.len()];
        mlp.vjp(&y, &v, Some(&mut f_batch), &mut gy_batch, Some(&mut gp_batch));
        // A fresh field per row so no scratch state is shared with the batched call.
        let mut single = Mlp::with_params(l, m, p.clone());
        let mut gp_sum = vec![0.0; p.len()];
        let mut gp_abs = vec![0.0; p.len()];
        for r in 0..rows {
            let (yr, vr) = (&y[r * l..(r + 1) * l], &v[r * l..(r + 1) * l]);
            let mut f = vec![0.0; l];
            let mut gy = vec![0.0; l];
            let mut gp = vec![0.0; p.len()];
            single.vjp(yr, vr, Some(&mut f), &mut gy, Some(&mut gp));
            // Per-row values: each row's arithmetic is the same whatever the batch (the gemm
            // reduces over the layer width, never over rows), so these are bitwise equal.
            assert_eq!(f, f_batch[r * l..(r + 1) * l], "f, row {r}");
            assert_eq!(gy, gy_batch[r * l..(r + 1) * l], "gy, row {r}");
            for i in 0..p.len() {
                gp_sum[i] += gp[i];
                gp_abs[i] += gp[i].abs();
            }
        }
        // Parameter gradients reduce over rows, in a different order than this loop: equal to
        // rounding relative to the sum of magnitudes.
        let mut worst = 0.0f64;
        for i in 0..p.len() {
            let e = (gp_batch[i] - gp_sum[i]).abs() / gp_abs[i].max(f64::MIN_POSITIVE);
            worst = worst.max(e);
        }
        println!("gparams batch vs Σ rows L={l} M={m} rows={rows}: {worst:.2e} (bound 1e-12)");
        assert!(worst <= 1e-12, "L={l} M={m} rows={rows}: {worst:e}");
    }
}

#[test]
fn mlp_field_in_dopri5_batch_equals_rows_alone() {
    let (l, m, rows) = (3, 16, 7);
    let mut rng = SplitMix64(0x5EED_0008);
    let p = random_params(&mut rng, l, m);
    let y0 = random_vec(&mut rng, rows * l, 2.0);
    let ts: Vec<f64> = (0..=8).map(|i| 0.25 * i as f64).collect();
    let opts = || {
        SolveOptions::default()
            .rtol(1e-7)
            .atol(1e-9)
            .step_mode(StepMode::PerSample)
    };
    let mut mlp = Mlp::with_params(l, m, p.clone());
    let mut solver = Solver::<f64>::new(Method::Dopri5, opts()).unwrap();
    let batch = solver.solve(&mut mlp, &ts, &y0).unwrap();
    assert!(batch.failures.is_empty());
    // Rows do take different step sequences, so the gather path is exercised.
    let accepted: Vec<usize> = batch.stats.per_sample.iter().map(|s| s.accepted).collect();
    assert!(
        accepted.iter().any(|&a| a != accepted[0]),
        "all rows took {} steps; the test would not exercise partial batches",
        accepted[0]
    );
    let mut single_solver = Solver::<f64>::new(Method::Dopri5, opts()).unwrap();
    let mut single_field = Mlp::with_params(l, m, p);
    for r in 0..rows {
        let alone = single_solver
            .solve(&mut single_field, &ts, &y0[r * l..(r + 1) * l])
            .unwrap();
        for k in 0..ts.len() {
            assert_eq!(batch.y(k, r), alone.y(k, 0), "row {r}, output {k}");
        }
        assert_eq!(batch.stats.per_sample[r], alone.stats.per_sample[0]);
    }
    // The solution actually moved (a field of zeros would pass the comparison trivially).
    let moved = max_abs_diff(batch.at(ts.len() - 1), batch.at(0));
    assert!(moved > 0.1, "solution barely moved: {moved}");
}

#[test]
fn forward_flops_of_a_known_size() {
    let mlp = Mlp::<f32>::new(2, 64, |_| 0.0);
    // 2 · rows · (L·M + M·M + M·L) = 2 · 10 · (128 + 4096 + 128)
    assert_eq!(mlp.forward_flops(10), 87_040);
    assert_eq!(mlp.forward_flops(0), 0);
    let mlp = Mlp::<f64>::new(3, 5, |_| 0.0);
    assert_eq!(mlp.forward_flops(1), 2 * (15 + 25 + 15));
}

#[test]
fn vjp_records_give_the_weighted_parameter_vjps() {
    // `vjp_record` computes what `vjp` does; the queued records (`push_record`, then
    // `flush_records`) add Σ_j w_j × (row j's parameter VJP), here checked against one `vjp`
    // per row scaled by its weight.
    let mut rng = SplitMix64(0x5EED_0009);
    for &(l, m, rows) in &SIZES {
        let p = random_params(&mut rng, l, m);
        let y = random_vec(&mut rng, rows * l, 2.0);
        let v = random_vec(&mut rng, rows * l, 1.0);
        let weights = random_vec(&mut rng, rows, 3.0);
        let mut mlp = Mlp::with_params(l, m, p.clone());
        let (mut f_rec, mut gy_rec) = (vec![0.0; y.len()], vec![0.0; y.len()]);
        let mut records = vec![f64::NAN; rows * mlp.record_len()];
        mlp.vjp_record(&y, &v, Some(&mut f_rec), &mut gy_rec, &mut records);
        let (mut f, mut gy) = (vec![0.0; y.len()], vec![0.0; y.len()]);
        mlp.vjp(&y, &v, Some(&mut f), &mut gy, None);
        assert_eq!((&f_rec, &gy_rec), (&f, &gy), "L={l} M={m} rows={rows}");
        let start = random_vec(&mut rng, p.len(), 1.0);
        let mut got = start.clone();
        for (r, &w) in weights.iter().enumerate() {
            mlp.push_record(&records, rows, r, w, &mut got);
        }
        mlp.flush_records(&mut got);
        // The same records copied one by one into a larger block, at other rows, and queued
        // from there: the same bits.
        let mut moved = vec![f64::NAN; (rows + 3) * mlp.record_len()];
        for r in 0..rows {
            mlp.copy_record(&records, rows, r, &mut moved, rows + 3, r + 2);
        }
        let mut got_moved = start.clone();
        for (r, &w) in weights.iter().enumerate() {
            mlp.push_record(&moved, rows + 3, r + 2, w, &mut got_moved);
        }
        mlp.flush_records(&mut got_moved);
        assert_eq!(got_moved, got, "copied records L={l} M={m} rows={rows}");
        let (mut want, mut scale) = (start.clone(), start.iter().map(|x| x.abs()).collect::<Vec<_>>());
        for r in 0..rows {
            let vr: Vec<f64> = v[r * l..(r + 1) * l].iter().map(|x| x * weights[r]).collect();
            let mut g = vec![0.0; p.len()];
            mlp.vjp(&y[r * l..(r + 1) * l], &vr, None, &mut vec![0.0; l], Some(&mut g));
            for i in 0..p.len() {
                want[i] += g[i];
                scale[i] += g[i].abs();
            }
        }
        let worst = (0..p.len())
            .map(|i| (got[i] - want[i]).abs() / scale[i].max(f64::MIN_POSITIVE))
            .fold(0.0, f64::max);
        println!("records L={l} M={m} rows={rows}: {worst:.2e} (bound 1e-13)");
        assert!(worst <= 1e-13, "L={l} M={m} rows={rows}: {worst:e}");
    }
}
