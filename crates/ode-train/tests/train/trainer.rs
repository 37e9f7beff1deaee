//! The training loop: learning, determinism, threads, NaN stops, early stopping, checkpoints
//! and resuming.

use ode_train::checkpoint::{self, CheckpointMeta};
use ode_train::data::{DataConfig, Dataset};
use ode_train::generate::generate;
use ode_train::trainer::CheckpointTarget;
use ode_train::{
    Adam, MemoryTracker, ModelConfig, NeuralOdeModel, TrainConfig, TrainError, Trainer, clip_grad_norm, grad_norm,
};

fn dataset(max_train: usize) -> Dataset {
    let table = generate("five-channel", 400, 3, 0.01).unwrap();
    let cfg = DataConfig {
        context_len: 8,
        horizon: 4,
        max_train_windows: Some(max_train),
        max_val_windows: Some(32),
        ..DataConfig::default()
    };
    Dataset::from_table(&table, &cfg, "five-channel").unwrap()
}

fn model_config(ds: &Dataset, solver: &str) -> ModelConfig {
    ModelConfig {
        input_dim: ds.input_dim(),
        output_dim: ds.output_dim(),
        latent_dim: 8,
        hidden_dim: 16,
        context_len: 8,
        horizon: 4,
        solver: solver.parse().unwrap(),
        ..ModelConfig::default()
    }
}

fn meta(ds: &Dataset, m: &ModelConfig) -> CheckpointMeta {
    CheckpointMeta::for_dataset(m, ds)
}

fn train(ds: &Dataset, solver: &str, tc: TrainConfig) -> ode_train::History {
    let model = NeuralOdeModel::seeded(model_config(ds, solver), tc.seed).unwrap();
    let mut tracker = MemoryTracker::default();
    let mut t = Trainer::new(model, tc, &mut tracker).unwrap();
    t.fit(&ds.train, &ds.val).unwrap()
}

#[test]
fn training_reduces_the_loss_for_every_guide_solver() {
    let ds = dataset(96);
    for solver in ["euler", "rk4", "dopri5"] {
        let h = train(
            &ds,
            solver,
            TrainConfig {
                epochs: 4,
                learning_rate: 3e-3,
                ..TrainConfig::default()
            },
        );
        let first = &h.epochs[0];
        let last = h.epochs.last().unwrap();
        assert!(
            last.train_loss < 0.8 * first.train_loss,
            "{solver}: {} -> {}",
            first.train_loss,
            last.train_loss
        );
        assert!(
            h.best_val_rmse().unwrap() < first.val_rmse,
            "{solver}: val did not improve"
        );
        assert!(last.nfe_forward > 0.0 && last.nfe_backward > 0.0 && last.grad_norm > 0.0);
        assert!(last.train_seconds > 0.0 && last.seconds >= last.train_seconds);
        assert_eq!(last.val_rmse_data_units.len(), 5);
    }
}

#[test]
fn same_seed_same_history_and_threads_agree() {
    let ds = dataset(48);
    let tc = TrainConfig {
        epochs: 2,
        threads: Some(1),
        ..TrainConfig::default()
    };
    let a = train(&ds, "dopri5", tc.clone());
    let b = train(&ds, "dopri5", tc.clone());
    let strip = |h: &ode_train::History| {
        h.epochs
            .iter()
            .map(|e| (e.train_loss, e.val_rmse, e.nfe_forward))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&a), strip(&b), "same seed must give the same history");
    let c = train(&ds, "dopri5", TrainConfig { threads: Some(2), ..tc });
    for (x, y) in a.epochs.iter().zip(&c.epochs) {
        // Only the summation order of the gradient differs between 1 and 2 threads.
        assert!(
            (x.train_loss - y.train_loss).abs() < 1e-4 * x.train_loss,
            "{} vs {}",
            x.train_loss,
            y.train_loss
        );
        assert!((x.val_rmse - y.val_rmse).abs() < 1e-4 * x.val_rmse);
        assert_eq!(
            x.nfe_forward, y.nfe_forward,
            "per-sample steps do not depend on the split"
        );
    }
    let d = train(
        &ds,
        "dopri5",
        TrainConfig {
            epochs: 2,
            seed: 1,
            ..TrainConfig::default()
        },
    );
    assert_ne!(strip(&a), strip(&d), "another seed, another run");
}

/// The error that stops one epoch of training `model` on `ds`.
fn one_epoch_error(model: NeuralOdeModel<f32>, ds: &Dataset) -> TrainError {
    let mut tracker = MemoryTracker::default();
    let config = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(model, config, &mut tracker).unwrap();
    t.fit(&ds.train, &ds.val).unwrap_err()
}

#[test]
fn a_nan_stops_training_with_a_reason_and_the_best_checkpoint_on_disk() {
    let ds = dataset(64);
    let dir = tempfile::tempdir().unwrap();
    let mc = model_config(&ds, "euler");
    let path = dir.path().join("checkpoint.safetensors");
    let target = CheckpointTarget {
        path: path.clone(),
        meta: meta(&ds, &mc),
    };
    // One good epoch writes the best checkpoint.
    let mut tracker = MemoryTracker::default();
    let model = NeuralOdeModel::seeded(mc.clone(), 0).unwrap();
    let mut t = Trainer::new(
        model,
        TrainConfig {
            epochs: 1,
            ..TrainConfig::default()
        },
        &mut tracker,
    )
    .unwrap()
    .with_checkpoint(target.clone());
    let h = t.fit(&ds.train, &ds.val).unwrap();
    let mut model = t.into_model();
    let best = h.best_val_rmse();
    let before = std::fs::read(&path).unwrap();

    // A decoder weight that is NaN (as a bad --init-from could bring): the loss is NaN.
    let r = model.tensor_range("decoder.weight").unwrap();
    model.params_mut()[r.start] = f32::NAN;
    let state = checkpoint::load_optim(&path, &model).unwrap();
    let mut tracker = MemoryTracker::default();
    let mut t = Trainer::new(
        model.clone(),
        TrainConfig {
            epochs: 3,
            ..TrainConfig::default()
        },
        &mut tracker,
    )
    .unwrap()
    .with_checkpoint(target.clone())
    .resume(state.clone(), best);
    let e = t.fit(&ds.train, &ds.val).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            TrainError::NonFinite {
                what: "loss",
                epoch: 2,
                batch: 1,
                ..
            }
        ),
        "{e:?}"
    );
    for want in [
        "non-finite loss at epoch 2, batch 1",
        "lower the learning rate",
        "clip gradients harder",
        "check the data for NaN/inf",
        "rk4 instead of euler",
        "best checkpoint so far (epoch 1",
    ] {
        assert!(msg.contains(want), "missing '{want}' in: {msg}");
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the best checkpoint is untouched"
    );

    // A vector field that overflows: the solver reports a non-finite state.
    let r = model.tensor_range("decoder.weight").unwrap();
    model.params_mut()[r.start] = 0.1;
    let f = model.tensor_range("func.4.bias").unwrap();
    model.params_mut()[f].iter_mut().for_each(|b| *b = 3e38);
    let e = one_epoch_error(model, &ds);
    assert!(matches!(e, TrainError::NonFinite { epoch: 1, batch: 1, .. }), "{e:?}");
    assert!(e.to_string().contains("rk4 instead of euler"), "{e}");
}

#[test]
fn early_stopping_keeps_the_best_checkpoint() {
    let ds = dataset(32);
    let dir = tempfile::tempdir().unwrap();
    let mc = model_config(&ds, "rk4");
    let model = NeuralOdeModel::seeded(mc.clone(), 0).unwrap();
    let mut tracker = MemoryTracker::default();
    let path = dir.path().join("checkpoint.safetensors");
    // A learning rate so small that validation cannot keep improving by chance forever is not
    // guaranteed; a zero-improvement patience of 1 with a tiny lr stops quickly.
    let tc = TrainConfig {
        epochs: 30,
        learning_rate: 3e-2,
        early_stopping_patience: Some(1),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(model, tc, &mut tracker)
        .unwrap()
        .with_checkpoint(CheckpointTarget {
            path: path.clone(),
            meta: meta(&ds, &mc),
        });
    let h = t.fit(&ds.train, &ds.val).unwrap();
    drop(t);
    assert!(h.stopped_early && h.epochs.len() < 30, "ran {} epochs", h.epochs.len());
    let (best_epoch, best) = h.best.unwrap();
    let (_, m) = checkpoint::load(&path).unwrap();
    assert_eq!(m.best_val_rmse, Some(best));
    assert_eq!(m.epoch, best_epoch, "the checkpoint is the best epoch's");
    assert_eq!(tracker.metrics["val_rmse"].len(), h.epochs.len());
    assert!(tracker.params.contains_key("solver"));
}

#[test]
fn checkpoint_round_trip_predicts_identically() {
    let ds = dataset(32);
    let dir = tempfile::tempdir().unwrap();
    let mc = model_config(&ds, "dopri5");
    let model = NeuralOdeModel::seeded(mc.clone(), 5).unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &model, &meta(&ds, &mc), None).unwrap();
    let (back, m) = checkpoint::load(&path).unwrap();
    assert_eq!(back.params(), model.params());
    assert_eq!(m.model, mc);
    assert_eq!(m.features, ds.features);
    // The metadata carries the contract's keys.
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&header.metadata().as_ref().unwrap()["config"]).unwrap();
    for key in [
        "input_dim",
        "output_dim",
        "latent_dim",
        "hidden_dim",
        "context_len",
        "horizon",
        "dt",
        "solver",
        "rtol",
        "atol",
        "use_adjoint",
        "step_mode",
        "features",
        "targets",
        "mean",
        "std",
    ] {
        assert!(cfg.get(key).is_some(), "metadata lacks '{key}'");
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    let mut want: Vec<&str> = ode_train::TENSOR_NAMES.to_vec();
    want.sort();
    assert_eq!(names, want, "exactly the contract's tensors");
    // Errors name the file and the problem.
    std::fs::write(dir.path().join("bad.safetensors"), b"nope").unwrap();
    let e = checkpoint::load(&dir.path().join("bad.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.safetensors"), "{e}");
}

#[test]
fn resuming_continues_exactly_where_training_stopped() {
    let ds = dataset(48);
    let dir = tempfile::tempdir().unwrap();
    let mc = model_config(&ds, "rk4");
    let tc = TrainConfig {
        epochs: 4,
        threads: Some(1),
        ..TrainConfig::default()
    };
    let straight = train(&ds, "rk4", tc.clone());

    let path = dir.path().join("checkpoint.safetensors");
    let mut tracker = MemoryTracker::default();
    let model = NeuralOdeModel::seeded(mc.clone(), 0).unwrap();
    let mut t = Trainer::new(
        model,
        TrainConfig {
            epochs: 2,
            ..tc.clone()
        },
        &mut tracker,
    )
    .unwrap()
    .with_checkpoint(CheckpointTarget {
        path: path.clone(),
        meta: meta(&ds, &mc),
    });
    t.fit(&ds.train, &ds.val).unwrap();
    let last = dir.path().join("last.safetensors");
    let (model, m) = checkpoint::load(&last).unwrap();
    let state = checkpoint::load_optim(&last, &model).unwrap();
    assert_eq!(state.epoch, 2);
    let mut tracker = MemoryTracker::default();
    let mut t = Trainer::new(model, tc, &mut tracker)
        .unwrap()
        .resume(state, m.best_val_rmse);
    let resumed = t.fit(&ds.train, &ds.val).unwrap();
    assert_eq!(resumed.epochs.len(), 2);
    for (a, b) in straight.epochs[2..].iter().zip(&resumed.epochs) {
        assert_eq!((a.epoch, a.train_loss, a.val_rmse), (b.epoch, b.train_loss, b.val_rmse));
    }
}

#[test]
fn an_overflowing_gradient_with_a_finite_loss_names_its_tensor() {
    // A huge decoder weight (5e19): the forecasts square to a finite f64 loss and the adjoint
    // state stays finite, but some parameter gradient overflows f32 (from 4e19 to 6e19 here;
    // at 7e19 the adjoint state overflows first).
    let ds = dataset(16);
    let mut model = NeuralOdeModel::seeded(model_config(&ds, "euler"), 0).unwrap();
    let r = model.tensor_range("decoder.weight").unwrap();
    model.params_mut()[r].iter_mut().for_each(|w| *w = 5e19);
    let e = one_epoch_error(model, &ds);
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            TrainError::NonFinite {
                what: "gradient",
                epoch: 1,
                batch: 1,
                ..
            }
        ),
        "{e:?}"
    );
    let named = ["encoder.", "func.", "decoder."]
        .iter()
        .any(|t| msg.contains(&format!("the gradient of {t}")));
    assert!(named && (msg.contains(" is inf") || msg.contains(" is NaN")), "{msg}");
}

#[test]
fn grad_norm_is_the_l2_norm_and_finite_only_for_finite_gradients() {
    let mut seed = 7u64;
    for n in [0usize, 1, 7, 8, 9, 64, 1001, 21479] {
        let g: Vec<f32> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
            })
            .collect();
        let naive = g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let got = grad_norm(&g);
        // Both sums are within n·ε of the exact one.
        let bound = (n.max(1) as f64) * f64::EPSILON * naive;
        assert!((got - naive).abs() <= bound, "n {n}: {got} vs {naive}");
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            if n > 0 {
                let mut g = g.clone();
                g[n / 2] = bad;
                assert!(!grad_norm(&g).is_finite(), "n {n}: {bad} gives a finite norm");
            }
        }
    }
    // The largest f32 squares without overflow.
    assert!(grad_norm(&[f32::MAX; 9]).is_finite());
}

#[test]
fn adam_and_clipping_follow_pytorch() {
    // One Adam step moves every parameter by lr (sign of the gradient) at t = 1.
    let mut adam = Adam::new(0.1, 3);
    let mut p = [1.0f32, 2.0, 3.0];
    adam.step(&mut p, &[0.5, -2.0, 1e-3]);
    for (x, want) in p.iter().zip([0.9f32, 2.1, 2.9]) {
        assert!((x - want).abs() < 1e-5, "{p:?}");
    }
    let mut g = [3.0f32, 4.0];
    let n = clip_grad_norm(&mut g, Some(1.0));
    assert_eq!(n, 5.0);
    let scale = 1.0 / (5.0 + 1e-6);
    assert!((g[0] - 3.0 * scale as f32).abs() < 1e-7 && (g[1] - 4.0 * scale as f32).abs() < 1e-7);
    let mut g = [0.3f32, 0.4];
    clip_grad_norm(&mut g, Some(1.0));
    assert_eq!(g, [0.3, 0.4], "below the threshold nothing changes");
}

#[test]
fn forecaster_works_in_data_units() {
    let ds = dataset(32);
    let dir = tempfile::tempdir().unwrap();
    let mc = model_config(&ds, "rk4");
    let model = NeuralOdeModel::seeded(mc.clone(), 2).unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &model, &meta(&ds, &mc), None).unwrap();
    let mut f = ode_train::Forecaster::from_checkpoint(&path).unwrap();
    assert_eq!(
        (f.context_len(), f.horizon(), f.features().len(), f.targets().len()),
        (8, 4, 5, 5)
    );
    // Window 0 of the validation split in data units, and the model's forecast for it.
    let (cw, tw) = (8 * 5, 4 * 5);
    let (mut ctx, mut tgt) = (vec![0f32; cw], vec![0f32; tw]);
    ds.val.fill_batch(&[0], &mut ctx, &mut tgt);
    let data_ctx: Vec<f64> = ctx
        .iter()
        .enumerate()
        .map(|(i, v)| ds.feature_scaler.denormalize(i % 5, *v as f64))
        .collect();
    let out = f.forecast(&data_ctx).unwrap();
    let mut ws = ode_train::Workspace::new(&model).unwrap();
    let mut pred = vec![0f32; tw];
    model.predict_into(&mut ws, &ctx, &mut pred).unwrap();
    for (i, (a, p)) in out.iter().zip(&pred).enumerate() {
        let want = ds.target_scaler.denormalize(i % 5, *p as f64);
        assert!((a - want).abs() < 1e-4 * want.abs().max(1.0), "{a} vs {want}");
    }
    assert!(f.forecast(&data_ctx[1..]).is_err());
}

#[test]
fn on_progress_follows_batches_and_validation_rounds_and_can_stop_mid_epoch() {
    use ode_train::trainer::Progress;
    use std::ops::ControlFlow;
    let ds = dataset(40);
    // Three threads, validation chunks of 5: rounds of 15 validation windows.
    let tc = TrainConfig {
        epochs: 2,
        batch_size: 16,
        eval_batch_size: 5,
        threads: Some(3),
        ..TrainConfig::default()
    };
    let plain = train(&ds, "rk4", tc.clone());
    let run = |stop_at: Option<Progress>| {
        let model = NeuralOdeModel::seeded(model_config(&ds, "rk4"), tc.seed).unwrap();
        let mut tracker = MemoryTracker::default();
        let mut seen = Vec::new();
        let h = {
            let mut t = Trainer::new(model, tc.clone(), &mut tracker).unwrap().on_progress(|p| {
                seen.push(p);
                if Some(p) == stop_at {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            t.fit(&ds.train, &ds.val).unwrap()
        };
        (h, seen)
    };
    assert!(ds.val.num_windows() > 15, "several validation rounds");
    let (h, seen) = run(None);
    // The rounds do not change validation: the same history as without the callback.
    assert_eq!(h.val_rmse(), plain.val_rmse());
    assert!(!h.stopped_by_callback);
    let epoch = |e: usize| {
        let mut v: Vec<Progress> = (1..=3)
            .map(|b| Progress::Batch {
                epoch: e,
                batch: b,
                batches: 3,
            })
            .collect();
        let n = ds.val.num_windows();
        v.extend((1..=n.div_ceil(15)).map(|r| Progress::Validation {
            epoch: e,
            done: (15 * r).min(n),
            total: n,
        }));
        v
    };
    assert_eq!(seen, [epoch(1), epoch(2)].concat());
    // Stopping in the middle of training or of validation ends the run there.
    for stop in [epoch(2)[1], epoch(1)[4]] {
        let (h, seen) = run(Some(stop));
        assert!(h.stopped_by_callback, "{stop:?}");
        assert_eq!(seen.last(), Some(&stop));
        let (Progress::Batch { epoch: e, .. } | Progress::Validation { epoch: e, .. }) = stop;
        assert_eq!(h.epochs.len(), e - 1, "the interrupted epoch is not recorded");
    }
}

#[test]
fn keep_best_params_keeps_the_best_epoch_not_the_last() {
    let ds = dataset(64);
    let mc = model_config(&ds, "euler");
    // A learning rate so high that validation gets worse after its best epoch.
    let tc = TrainConfig {
        epochs: 6,
        learning_rate: 0.05,
        threads: Some(1),
        ..TrainConfig::default()
    };
    let mut tracker = MemoryTracker::default();
    let model = NeuralOdeModel::seeded(mc.clone(), 0).unwrap();
    let mut trainer = Trainer::new(model, tc.clone(), &mut tracker)
        .unwrap()
        .keep_best_params();
    let h = trainer.fit(&ds.train, &ds.val).unwrap();
    let (best_epoch, best) = h.best.unwrap();
    assert!(
        best_epoch < h.epochs.len(),
        "the setup needs a best epoch before the last: {:?}",
        h.val_rmse()
    );
    let kept = trainer.best_params().unwrap().to_vec();
    assert_ne!(
        kept.as_slice(),
        trainer.model().params(),
        "the last epoch's weights differ"
    );
    // The kept weights score the best epoch's val_rmse, exactly.
    let mut tracker = MemoryTracker::default();
    let best_model = NeuralOdeModel::from_params(mc.clone(), kept).unwrap();
    let mut scorer = Trainer::new(best_model, tc.clone(), &mut tracker).unwrap();
    assert_eq!(scorer.evaluate(&ds.val).unwrap().0, best);
    // Without asking, nothing is kept.
    let mut tracker = MemoryTracker::default();
    let model = NeuralOdeModel::seeded(mc, 0).unwrap();
    let mut plain = Trainer::new(model, TrainConfig { epochs: 1, ..tc }, &mut tracker).unwrap();
    plain.fit(&ds.train, &ds.val).unwrap();
    assert!(plain.best_params().is_none());
}
