//! One training step of the reference model per solver and gradient method, so that a slower
//! step in any of them shows up: the loss and its gradient on a batch of 16 or 64 windows
//! (encoder, solve, decoder, adjoint or backprop), global-norm clipping and an Adam update, in
//! f32 on one thread, each iteration from the same weights. The model is the reference task's
//! (7 features and targets, context 24, horizon 12, latent 32, hidden 64, PyTorch's
//! initialisation from seed 0) on smooth windows; one more case is dopri5 + adjoint at the
//! tuning guide's largest corner (latent 128, hidden 256) on 32 windows, one thread's share of
//! a batch of 64.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ode_core::{Method, StepMode};
use ode_train::{Adam, ModelConfig, NeuralOdeModel, Workspace, clip_grad_norm};
use std::hint::black_box;

const FEATURES: usize = 7;

/// A batch of `rows` windows (contexts `rows × C·D`, targets `rows × H·O`) cut from smooth,
/// window-dependent signals.
fn windows(c: &ModelConfig, rows: usize) -> (Vec<f32>, Vec<f32>) {
    let value = |r: usize, step: usize, j: usize| {
        let t = (r * 3 + step) as f32 * 0.05;
        (t * (1.0 + 0.3 * j as f32)).sin() + 0.1 * j as f32
    };
    let ctx = (0..rows)
        .flat_map(|r| (0..c.context_len).flat_map(move |s| (0..FEATURES).map(move |j| value(r, s, j))))
        .collect();
    let tgt = (0..rows)
        .flat_map(|r| (0..c.horizon).flat_map(move |s| (0..FEATURES).map(move |j| value(r, c.context_len + s, j))))
        .collect();
    (ctx, tgt)
}

/// The reference model with `solver` and gradient method and, when given, latent and hidden
/// sizes other than the reference task's; PyTorch's init from a fixed seed.
fn model(solver: Method, use_adjoint: bool, sizes: Option<(usize, usize)>) -> NeuralOdeModel<f32> {
    let mut config = ModelConfig {
        input_dim: FEATURES,
        output_dim: FEATURES,
        solver,
        use_adjoint,
        step_mode: StepMode::PerSample,
        ..ModelConfig::default()
    };
    if let Some((latent, hidden)) = sizes {
        config.latent_dim = latent;
        config.hidden_dim = hidden;
    }
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    NeuralOdeModel::new(config, uniform).expect("reference model")
}

fn training_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("training-step");
    g.sample_size(20);
    let mut cases: Vec<_> = [
        (Method::Dopri5, true),
        (Method::Dopri5, false),
        (Method::Rk4, true),
        (Method::Rk4, false),
        (Method::Euler, true),
        (Method::Euler, false),
    ]
    .into_iter()
    .flat_map(|(solver, adjoint)| [16usize, 64].map(|rows| (solver, adjoint, rows, None)))
    .collect();
    // The tuning guide's largest corner, one thread's share of a batch of 64 on two threads.
    cases.push((Method::Dopri5, true, 32, Some((128, 256))));
    for (solver, adjoint, rows, sizes) in cases {
        let mut m = model(solver, adjoint, sizes);
        let (ctx, tgt) = windows(m.config(), rows);
        let mut ws = Workspace::new(&m).expect("workspace");
        let mut grad = vec![0.0f32; m.num_params()];
        let mut adam = Adam::new(1e-3, m.num_params());
        let denom = rows * m.config().horizon * FEATURES;
        // Every iteration starts from the same weights, so the solver's work stays the same.
        let init = m.params().to_vec();
        let mut name = format!("{}-{}", solver.name(), if adjoint { "adjoint" } else { "backprop" });
        if let Some((latent, hidden)) = sizes {
            name += &format!("-L{latent}-M{hidden}");
        }
        g.bench_function(BenchmarkId::new(name, format!("batch={rows}")), |b| {
            b.iter(|| {
                m.params_mut().copy_from_slice(&init);
                grad.fill(0.0);
                let st = m
                    .loss_and_grad(&mut ws, black_box(&ctx), black_box(&tgt), denom, &mut grad)
                    .expect("training step");
                clip_grad_norm(&mut grad, Some(1.0));
                adam.step(m.params_mut(), &grad);
                st.loss
            })
        });
    }
    g.finish();
}

criterion_group!(benches, training_step);
criterion_main!(benches);
