//! Model-level gradients in f64: backprop matches central finite differences on every
//! parameter tensor; the adjoint matches backprop to solver tolerance.

use ode_train::{ModelConfig, NeuralOdeModel, TENSOR_NAMES, Workspace};

use crate::common::{config, splitmix};

struct Batch {
    ctx: Vec<f64>,
    tgt: Vec<f64>,
    rows: usize,
}

fn batch(c: &ModelConfig) -> Batch {
    let rows = 3;
    let mut s = 99;
    let ctx = (0..rows * c.context_len * c.input_dim)
        .map(|_| 2.0 * splitmix(&mut s) - 1.0)
        .collect();
    let tgt = (0..rows * c.horizon * c.outputs())
        .map(|_| 2.0 * splitmix(&mut s) - 1.0)
        .collect();
    Batch { ctx, tgt, rows }
}

fn model(c: ModelConfig) -> NeuralOdeModel<f64> {
    let mut s = 7;
    // Larger weights than the default init so the dynamics are far from linear.
    let mut m = NeuralOdeModel::<f64>::new(c, || splitmix(&mut s)).unwrap();
    m.params_mut().iter_mut().for_each(|p| *p *= 2.5);
    m
}

fn loss_grad(m: &NeuralOdeModel<f64>, b: &Batch) -> (f64, Vec<f64>) {
    let mut ws = Workspace::new(m).unwrap();
    let mut g = vec![0.0; m.num_params()];
    let denom = b.tgt.len();
    let st = m.loss_and_grad(&mut ws, &b.ctx, &b.tgt, denom, &mut g).unwrap();
    (st.loss, g)
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    num / b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300)
}

#[test]
fn backprop_matches_finite_differences_on_every_tensor() {
    for (solver, tol) in [("euler", 1e-4), ("rk4", 1e-4), ("dopri5", 1e-10)] {
        let m = model(config(solver, false, tol));
        let b = batch(m.config());
        assert_eq!(b.rows, 3);
        let (_, g) = loss_grad(&m, &b);
        let eps = 1e-6;
        for name in TENSOR_NAMES {
            let r = m.tensor_range(name).unwrap();
            let mut fd = vec![0.0; r.len()];
            for (i, p) in r.clone().enumerate() {
                let mut up = m.clone();
                up.params_mut()[p] += eps;
                let mut down = m.clone();
                down.params_mut()[p] -= eps;
                fd[i] = (loss_grad(&up, &b).0 - loss_grad(&down, &b).0) / (2.0 * eps);
            }
            let e = rel(&g[r.clone()], &fd);
            assert!(e < 1e-6, "{solver}: {name} relative error {e:e}");
        }
    }
}

#[test]
fn adjoint_matches_backprop_within_the_tolerance() {
    for solver in ["dopri5", "rk4"] {
        let mut prev = f64::INFINITY;
        for tol in [1e-4, 1e-6, 1e-8] {
            let b = batch(&config(solver, true, tol));
            let (_, ga) = loss_grad(&model(config(solver, true, tol)), &b);
            let (_, gb) = loss_grad(&model(config(solver, false, tol)), &b);
            let gap = rel(&ga, &gb);
            println!("{solver} tol {tol:e}: gap {gap:.2e}");
            if solver == "dopri5" {
                assert!(gap < 100.0 * tol, "{solver} tol {tol:e}: gap {gap:e}");
                assert!(gap < prev, "{solver}: the gap must shrink with the tolerance");
                prev = gap;
            } else {
                // rk4 steps on the output grid whatever the tolerance: the two gradients differ
                // by the discretisation (O(dt^4)), a fixed small amount.
                assert!(gap < 1e-3, "{solver}: gap {gap:e}");
            }
        }
    }
    // euler: the continuous adjoint differs from the discrete gradient by O(dt), by nature.
    let b = batch(&config("euler", true, 1e-4));
    let (_, ga) = loss_grad(&model(config("euler", true, 1e-4)), &b);
    let (_, gb) = loss_grad(&model(config("euler", false, 1e-4)), &b);
    let gap = rel(&ga, &gb);
    assert!(gap > 1e-4 && gap < 0.5, "euler gap {gap:e}");
}

#[test]
fn presets_and_defaults_follow_the_guide() {
    let d = ModelConfig::default();
    assert_eq!(
        (
            d.latent_dim,
            d.hidden_dim,
            d.solver.name(),
            d.rtol,
            d.atol,
            d.use_adjoint
        ),
        (32, 64, "dopri5", 1e-4, 1e-5, true)
    );
    let f = ModelConfig::fast(5);
    assert_eq!(
        (f.latent_dim, f.hidden_dim, f.solver.name(), f.rtol, f.atol),
        (16, 32, "euler", 1e-3, 1e-4)
    );
    let b = ModelConfig::balanced(5);
    assert_eq!(
        (b.latent_dim, b.hidden_dim, b.solver.name(), b.rtol, b.atol),
        (32, 64, "rk4", 1e-4, 1e-5)
    );
    let a = ModelConfig::accurate(5);
    assert_eq!(
        (a.latent_dim, a.hidden_dim, a.solver.name(), a.rtol, a.atol),
        (64, 128, "dopri5", 1e-5, 1e-6)
    );
    // A solver name is checked where it is read (flag, TOML, JSON), as a typed choice.
    assert!(
        "rk45"
            .parse::<ode_train::gpu::core::Method>()
            .unwrap_err()
            .to_string()
            .contains("unknown solver 'rk45'")
    );
    let bad = ModelConfig {
        adjoint_norm: "mixed".parse().unwrap(),
        ..ModelConfig::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("mixed with step_mode = per_sample")
    );
}

#[test]
fn initialisation_is_pytorch_default_and_seeded() {
    let c = ModelConfig {
        input_dim: 5,
        ..ModelConfig::default()
    };
    let a = NeuralOdeModel::seeded(c.clone(), 1).unwrap();
    let b = NeuralOdeModel::seeded(c.clone(), 1).unwrap();
    let d = NeuralOdeModel::seeded(c, 2).unwrap();
    assert_eq!(a.params(), b.params());
    assert_ne!(a.params(), d.params());
    for (name, shape, off) in a.tensors() {
        let fan_in = if name.ends_with("weight") {
            shape[1]
        } else {
            a.tensors()
                .iter()
                .find(|t| t.0 == name.replace("bias", "weight"))
                .unwrap()
                .1[1]
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        let v = &a.params()[*off..off + shape.iter().product::<usize>()];
        assert!(v.iter().all(|x| x.abs() <= bound), "{name} out of ±{bound}");
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(max > 0.8 * bound, "{name}: draws should fill the range");
    }
}
