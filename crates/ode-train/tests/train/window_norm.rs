//! Per-window normalisation (`normalization = window`, the contract's extension): gradients
//! against finite differences in f64 on every tensor including `revin.*`, shift equivariance,
//! zero decoder = persistence, and the checks on targets that are not features.

use ode_train::data::{DataConfig, Dataset, Table};
use ode_train::{ModelConfig, NeuralOdeModel, Normalization, REVIN_BIAS, REVIN_WEIGHT, Workspace, baselines};

use crate::common::{self, splitmix};

/// Three features, two targets that are features 2 and 0 (not the identity map).
fn config(solver: &str, use_adjoint: bool, tol: f64, revin: bool) -> ModelConfig {
    ModelConfig {
        normalization: Normalization::Window,
        revin,
        target_features: vec![2, 0],
        ..common::config(solver, use_adjoint, tol)
    }
}

/// A model with weights large enough for nonlinear dynamics and an affine away from (1, 0).
fn model(c: ModelConfig) -> NeuralOdeModel<f64> {
    let mut s = 7;
    let mut m = NeuralOdeModel::<f64>::new(c, || splitmix(&mut s)).unwrap();
    m.params_mut().iter_mut().for_each(|p| *p *= 2.5);
    for name in [REVIN_WEIGHT, REVIN_BIAS] {
        if let Some(r) = m.tensor_range(name) {
            for p in r {
                m.params_mut()[p] = 0.5 + splitmix(&mut s);
            }
        }
    }
    m
}

/// Three windows of contexts with offsets and spreads far from the global z-scores.
fn batch(c: &ModelConfig) -> (Vec<f64>, Vec<f64>) {
    let mut s = 99;
    let ctx = (0..3 * c.context_len * c.input_dim)
        .map(|i| 3.0 * (i / (c.context_len * c.input_dim)) as f64 + 2.0 * splitmix(&mut s) - 1.0)
        .collect();
    let tgt = (0..3 * c.horizon * c.outputs())
        .map(|_| 2.0 * splitmix(&mut s) - 1.0)
        .collect();
    (ctx, tgt)
}

fn loss_grad(m: &NeuralOdeModel<f64>, ctx: &[f64], tgt: &[f64]) -> (f64, Vec<f64>) {
    let mut ws = Workspace::new(m).unwrap();
    let mut g = vec![0.0; m.num_params()];
    let st = m.loss_and_grad(&mut ws, ctx, tgt, tgt.len(), &mut g).unwrap();
    (st.loss, g)
}

fn predict(m: &NeuralOdeModel<f64>, ctx: &[f64]) -> Vec<f64> {
    let c = m.config();
    let rows = ctx.len() / (c.context_len * c.input_dim);
    let mut ws = Workspace::new(m).unwrap();
    let mut pred = vec![0.0; rows * c.horizon * c.outputs()];
    m.predict_into(&mut ws, ctx, &mut pred).unwrap();
    pred
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    num / b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300)
}

#[test]
fn backprop_matches_finite_differences_on_every_tensor_including_revin() {
    for (solver, tol, revin) in [("rk4", 1e-4, true), ("dopri5", 1e-10, true), ("dopri5", 1e-10, false)] {
        let m = model(config(solver, false, tol, revin));
        assert_eq!(m.tensor_range(REVIN_WEIGHT).is_some(), revin);
        let (ctx, tgt) = batch(m.config());
        let (_, g) = loss_grad(&m, &ctx, &tgt);
        let eps = 1e-6;
        for (name, shape, off) in m.tensors() {
            let r = *off..off + shape.iter().product::<usize>();
            let fd: Vec<f64> = r
                .clone()
                .map(|p| {
                    let (mut up, mut down) = (m.clone(), m.clone());
                    up.params_mut()[p] += eps;
                    down.params_mut()[p] -= eps;
                    (loss_grad(&up, &ctx, &tgt).0 - loss_grad(&down, &ctx, &tgt).0) / (2.0 * eps)
                })
                .collect();
            assert!(fd.iter().any(|v| v.abs() > 1e-8), "{solver}: {name} has no gradient");
            let e = rel(&g[r], &fd);
            assert!(e < 1e-6, "{solver} revin {revin}: {name} relative error {e:e}");
        }
    }
}

#[test]
fn adjoint_matches_backprop_in_window_mode() {
    let c = config("dopri5", true, 1e-8, true);
    let (ctx, tgt) = batch(&c);
    let (_, ga) = loss_grad(&model(c), &ctx, &tgt);
    let (_, gb) = loss_grad(&model(config("dopri5", false, 1e-8, true)), &ctx, &tgt);
    let gap = rel(&ga, &gb);
    assert!(gap < 1e-6, "gap {gap:e}");
}

#[test]
fn a_constant_added_to_one_window_shifts_its_forecast_by_that_constant() {
    let m = model(config("dopri5", false, 1e-8, true));
    let c = m.config().clone();
    let (ctx, _) = batch(&c);
    let before = predict(&m, &ctx);
    let width = c.context_len * c.input_dim;
    let shift = 17.25;
    let mut moved = ctx.clone();
    moved[width..2 * width].iter_mut().for_each(|x| *x += shift);
    let after = predict(&m, &moved);
    let hw = c.horizon * c.outputs();
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        let want = if (hw..2 * hw).contains(&i) { b + shift } else { *b };
        assert!((a - want).abs() < 1e-9, "forecast {i}: {a} against {want}");
    }
    // The global mode has no such property: the same shift moves the forecast differently.
    let g = model(ModelConfig {
        normalization: Normalization::Global,
        revin: false,
        ..c
    });
    let (b, a) = (predict(&g, &ctx), predict(&g, &moved));
    assert!((a[hw] - b[hw] - shift).abs() > 1e-3, "global mode shifted exactly");
}

/// 200 rows of three trending columns; `c` is `a + b`.
fn trending() -> Table {
    let rows: Vec<[f64; 3]> = (0..200)
        .map(|t| {
            let a = 0.1 * t as f64 + (t as f64 * 0.7).sin();
            let b = 5.0 - 0.05 * t as f64 + (t as f64 * 1.3).cos();
            [a, b, a + b]
        })
        .collect();
    Table {
        columns: vec!["a".into(), "b".into(), "c".into()],
        data: rows.iter().flatten().copied().collect(),
        time: None,
    }
}

fn dataset(features: &[&str], targets: &[&str]) -> Dataset {
    let cfg = DataConfig {
        context_len: 6,
        horizon: 3,
        features: Some(features.iter().map(|s| s.to_string()).collect()),
        targets: Some(targets.iter().map(|s| s.to_string()).collect()),
        ..DataConfig::default()
    };
    Dataset::from_table(&trending(), &cfg, "trending").unwrap()
}

#[test]
fn a_zero_decoder_reproduces_the_persistence_baseline() {
    let ds = dataset(&["a", "b", "c"], &["c", "a"]);
    let mut mc = ModelConfig {
        normalization: Normalization::Window,
        revin: true,
        ..ModelConfig::default()
    };
    mc.fit_to_dataset(&ds).unwrap();
    assert_eq!(mc.target_features, vec![2, 0]);
    let mut m = NeuralOdeModel::<f32>::seeded(mc, 3).unwrap();
    for name in ["decoder.weight", "decoder.bias"] {
        let r = m.tensor_range(name).unwrap();
        m.params_mut()[r].iter_mut().for_each(|p| *p = 0.0);
    }
    let split = &ds.val;
    let n = split.num_windows();
    let (cw, tw) = (6 * 3, 3 * 2);
    let idx: Vec<usize> = (0..n).collect();
    let (mut ctx, mut tgt) = (vec![0f32; n * cw], vec![0f32; n * tw]);
    split.fill_batch(&idx, &mut ctx, &mut tgt);
    let mut ws = Workspace::new(&m).unwrap();
    let mut pred = vec![0f32; n * tw];
    m.predict_into(&mut ws, &ctx, &mut pred).unwrap();
    for w in 0..n {
        let last = &ctx[w * cw + 5 * 3..(w + 1) * cw];
        for k in 0..3 {
            assert_eq!(pred[w * tw + k * 2], last[2], "window {w}, step {k}, target c");
            assert_eq!(pred[w * tw + k * 2 + 1], last[0], "window {w}, step {k}, target a");
        }
    }
    let sse = m.sse(&mut ws, &ctx, &tgt).unwrap().sse;
    let rmse = (sse / (n * tw) as f64).sqrt();
    let persistence = baselines::for_dataset(&ds, None).unwrap().persistence().unwrap();
    assert!(
        (rmse - persistence).abs() < 1e-6 * persistence,
        "zero decoder {rmse} against persistence {persistence}"
    );
}

#[test]
fn window_mode_refuses_targets_that_are_not_features() {
    let ds = dataset(&["a", "b"], &["c"]);
    let mut mc = ModelConfig {
        normalization: Normalization::Window,
        ..ModelConfig::default()
    };
    let e = mc.fit_to_dataset(&ds).unwrap_err().to_string();
    assert!(e.contains("\"c\"") && e.contains("--normalization global"), "{e}");
    let mut global = ModelConfig::default();
    global.fit_to_dataset(&ds).unwrap();
    let bad = ModelConfig {
        revin: true,
        ..ModelConfig::default()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("revin = true"));
}

#[test]
fn revin_starts_as_the_identity_and_global_models_are_unchanged() {
    let c = ModelConfig {
        input_dim: 3,
        normalization: Normalization::Window,
        revin: true,
        ..ModelConfig::default()
    };
    let m = NeuralOdeModel::<f32>::seeded(c.clone(), 5).unwrap();
    let w = &m.params()[m.tensor_range(REVIN_WEIGHT).unwrap()];
    let b = &m.params()[m.tensor_range(REVIN_BIAS).unwrap()];
    assert_eq!((w, b), (&[1.0f32; 3][..], &[0.0f32; 3][..]));
    // The other tensors draw the same numbers as a global model's: revin comes last.
    let g = NeuralOdeModel::<f32>::seeded(
        ModelConfig {
            normalization: Normalization::Global,
            revin: false,
            ..c
        },
        5,
    )
    .unwrap();
    assert_eq!(&m.params()[..g.num_params()], g.params());
}

#[test]
fn checkpoints_record_the_mode_and_the_revin_tensors() {
    let ds = dataset(&["a", "b", "c"], &["c", "a"]);
    let mut mc = ModelConfig {
        normalization: Normalization::Window,
        revin: true,
        ..ModelConfig::default()
    };
    mc.fit_to_dataset(&ds).unwrap();
    let mut m = NeuralOdeModel::<f32>::seeded(mc.clone(), 4).unwrap();
    let rw = m.tensor_range(REVIN_WEIGHT).unwrap();
    m.params_mut()[rw].copy_from_slice(&[0.5, 2.0, 1.5]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let meta = ode_train::checkpoint::CheckpointMeta::for_dataset(&mc, &ds);
    ode_train::checkpoint::save(&path, &m, &meta, None).unwrap();
    let (back, back_meta) = ode_train::checkpoint::load(&path).unwrap();
    assert_eq!(back.params(), m.params());
    assert_eq!(back_meta.model.normalization, Normalization::Window);
    assert_eq!(back_meta.model.target_features, vec![2, 0]);
    let raw = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&raw).unwrap();
    let config = &header.metadata().as_ref().unwrap()["config"];
    assert!(config.contains("\"normalization\":\"window\""), "{config}");
    let st = safetensors::SafeTensors::deserialize(&raw).unwrap();
    assert_eq!(st.tensor(REVIN_WEIGHT).unwrap().shape(), &[3]);
    assert_eq!(st.tensor(REVIN_BIAS).unwrap().shape(), &[3]);
    // Metadata that says no affine over a file that has one: the extra tensor is named.
    let mut lying = back_meta.clone();
    lying.model.revin = false;
    ode_train::checkpoint::save(&path, &m, &lying, None).unwrap();
    let e = ode_train::checkpoint::load(&path).unwrap_err().to_string();
    assert!(e.contains("unexpected tensor 'revin."), "{e}");
}
