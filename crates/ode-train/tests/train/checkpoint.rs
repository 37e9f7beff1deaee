//! Checkpoint safety: metadata that disagrees with itself or with the tensors is refused, a
//! truncated or corrupted file never panics, a model and an optimiser state saved apart are
//! never paired, and weights-only files (PyTorch's) load from their tensor shapes.

use ode_train::checkpoint::{self, CheckpointError, CheckpointMeta, OptimState};
use ode_train::data::{DataConfig, Dataset};
use ode_train::generate::generate;
use ode_train::{ModelConfig, NeuralOdeModel, TENSOR_NAMES};
use proptest::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// A tiny model on the five-channel data: 5 features, 2 targets, context 3, latent 2, hidden 3.
fn small() -> (NeuralOdeModel<f32>, CheckpointMeta) {
    let table = generate("five-channel", 120, 1, 0.01).unwrap();
    let cfg = DataConfig {
        context_len: 3,
        horizon: 2,
        targets: Some(vec![table.columns[0].clone(), table.columns[3].clone()]),
        ..DataConfig::default()
    };
    let ds = Dataset::from_table(&table, &cfg, "five-channel").unwrap();
    let mc = ModelConfig {
        input_dim: ds.input_dim(),
        output_dim: ds.output_dim(),
        latent_dim: 2,
        hidden_dim: 3,
        context_len: 3,
        horizon: 2,
        ..ModelConfig::default()
    };
    let model = NeuralOdeModel::seeded(mc.clone(), 7).unwrap();
    (model, CheckpointMeta::for_dataset(&mc, &ds))
}

fn saved_bytes() -> Vec<u8> {
    let (model, meta) = small();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    checkpoint::save(&path, &model, &meta, None).unwrap();
    std::fs::read(path).unwrap()
}

/// The tensors of a safetensors file as owned (name, shape, f32 values).
fn owned_tensors(bytes: &[u8]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, t.shape().to_vec(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Serialises tensors with optional metadata, as another tool would.
fn serialize(tensors: &[(String, Vec<usize>, Vec<f32>)], metadata: Option<HashMap<String, String>>) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, metadata).unwrap()
}

/// A copy of a saved checkpoint with its `config` JSON edited by `edit`.
fn with_config(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut md = header.metadata().clone().unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&md["config"]).unwrap();
    edit(&mut cfg);
    md.insert("config".into(), cfg.to_string());
    serialize(&owned_tensors(bytes), Some(md))
}

fn refused(bytes: &[u8]) -> String {
    match checkpoint::from_bytes(bytes, "edited.safetensors") {
        Ok(_) => panic!("an inconsistent checkpoint was accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "'{p}' missing from: {msg}");
    }
}

/// An edit of a checkpoint's `config` JSON.
type Edit = dyn FnOnce(&mut serde_json::Value);

#[test]
fn metadata_that_disagrees_with_itself_or_the_tensors_is_refused() {
    let good = saved_bytes();
    let (model, meta) = checkpoint::from_bytes(&good, "good").unwrap();
    assert_eq!(meta.features.len(), 5);
    assert_eq!(model.num_params(), small().0.num_params());

    let cases: Vec<(Box<Edit>, &[&str])> = vec![
        (
            Box::new(|c| c["input_dim"] = 4.into()),
            &["edited.safetensors", "input_dim 4", "5 feature names"],
        ),
        (
            Box::new(|c| c["output_dim"] = 3.into()),
            &["output_dim 3", "2 target names"],
        ),
        (
            Box::new(|c| c["features"].as_array_mut().unwrap().pop().map(|_| ()).unwrap()),
            &["input_dim 5", "4 feature names"],
        ),
        (
            Box::new(|c| c["mean"].as_array_mut().unwrap().push(1.0.into())),
            &["6 values in 'mean'", "5 features"],
        ),
        (
            Box::new(|c| c["target_std"].as_array_mut().unwrap().truncate(1)),
            &["1 values in 'target_std'", "2 targets"],
        ),
        (Box::new(|c| c["std"][2] = (-1.0).into()), &["'std' holds -1", "finite"]),
        (
            Box::new(|c| c["features"][1] = c["features"][0].clone()),
            &["twice in features"],
        ),
        (
            Box::new(|c| {
                c["target_mean"] = serde_json::json!([]);
                c["target_std"] = serde_json::json!([]);
                c["targets"][1] = "nope".into();
            }),
            &["target 'nope' is not a feature"],
        ),
        (
            Box::new(|c| c["context_len"] = 4.into()),
            &[
                "tensor 'encoder.0.weight' has shape [3, 15]",
                "context_len 4",
                "[3, 20]",
            ],
        ),
        (
            Box::new(|c| c["hidden_dim"] = 4.into()),
            &["tensor 'encoder.0.weight' has shape [3, 15]", "hidden_dim 4"],
        ),
        (Box::new(|c| c["context_len"] = u64::MAX.into()), &["overflows"]),
        (Box::new(|c| c["hidden_dim"] = 0.into()), &["hidden_dim = 0"]),
        (
            Box::new(|c| c["solver"] = "rk5".into()),
            &["config is not valid", "rk5"],
        ),
        (Box::new(|c| c["train_frac"] = 0.9.into()), &["train_frac + test_frac"]),
    ];
    for (edit, parts) in cases {
        let e = refused(&with_config(&good, edit));
        assert_mentions(&e, parts);
    }
}

#[test]
fn tensors_that_do_not_match_the_contract_are_refused() {
    let good = saved_bytes();
    let (_, header) = SafeTensors::read_metadata(&good).unwrap();
    let md = header.metadata().clone();
    let tensors = owned_tensors(&good);

    let mut extra = tensors.clone();
    extra.push(("revin.weight".into(), vec![5], vec![1.0; 5]));
    assert_mentions(
        &refused(&serialize(&extra, md.clone())),
        &["unexpected tensor 'revin.weight'", "exactly the tensors"],
    );

    let missing: Vec<_> = tensors.iter().filter(|t| t.0 != "func.2.bias").cloned().collect();
    assert_mentions(
        &refused(&serialize(&missing, md.clone())),
        &["tensor 'func.2.bias' is missing"],
    );

    let mut nan = tensors.clone();
    let k = nan.iter().position(|t| t.0 == "decoder.weight").unwrap();
    nan[k].2[3] = f32::NAN;
    assert_mentions(
        &refused(&serialize(&nan, md.clone())),
        &["tensor 'decoder.weight'", "non-finite", "index 3"],
    );

    assert_mentions(
        &refused(&serialize(&tensors, None)),
        &["no 'config' entry", "weights-only"],
    );
    let mut foreign = HashMap::new();
    foreign.insert("config".to_string(), "{\"input_dim\": 5".to_string());
    assert_mentions(
        &refused(&serialize(&tensors, Some(foreign))),
        &["'config' is not valid"],
    );
}

/// What `load` may return for a damaged file: an error, or a model that is fully valid.
fn check_never_panics(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok((model, meta)) = checkpoint::from_bytes(bytes, "damaged.safetensors") {
        prop_assert!(model.config().validate().is_ok());
        prop_assert!(model.params().iter().all(|p| p.is_finite()));
        prop_assert_eq!(model.config().input_dim, meta.features.len());
        prop_assert_eq!(model.config().outputs(), meta.targets.len());
        prop_assert_eq!(meta.mean.len(), meta.features.len());
        prop_assert_eq!(model.num_params(), NeuralOdeModel::<f32>::param_count(model.config()));
        // The statistics are usable: mapping back to data units cannot index out of range.
        prop_assert_eq!(meta.target_scaler().dim(), meta.targets.len());
    }
    Ok(())
}

#[test]
fn a_checkpoint_truncated_at_any_offset_is_an_error() {
    let good = saved_bytes();
    for len in 0..good.len() {
        let e = checkpoint::from_bytes(&good[..len], "cut.safetensors");
        assert!(e.is_err(), "truncated to {len} of {} bytes and accepted", good.len());
    }
    // Through the file system, the error names the file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.safetensors");
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    let e = checkpoint::load(&p).unwrap_err().to_string();
    assert_mentions(&e, &["cut.safetensors"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Overwritten bytes anywhere (half of them in the JSON header, where a mutation changes
    /// dimensions, names and statistics) give an error or a valid model, never a panic.
    #[test]
    fn mutated_checkpoints_never_panic(
        edits in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let good = saved_bytes_cached();
        let header_len = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        let mut bytes = good.to_vec();
        for (in_header, at, value) in edits {
            let i = if in_header { at.index(header_len) } else { at.index(bytes.len()) };
            bytes[i] = value;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        check_never_panics(&bytes)?;
    }

    /// Digits in the header's JSON replaced by other digits: dimensions and statistics change
    /// while the JSON stays valid, the case most likely to reach the model's constructor.
    #[test]
    fn checkpoints_with_edited_numbers_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), b'0'..=b'9'), 1..4),
    ) {
        let good = saved_bytes_cached();
        let header_len = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        let digits: Vec<usize> = (8..header_len).filter(|&i| good[i].is_ascii_digit()).collect();
        let mut bytes = good.to_vec();
        for (at, d) in edits {
            bytes[digits[at.index(digits.len())]] = d;
        }
        check_never_panics(&bytes)?;
    }
}

fn saved_bytes_cached() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(saved_bytes)
}

fn state(model: &NeuralOdeModel<f32>, epoch: usize, fill: f32) -> OptimState {
    OptimState {
        step: 10 * epoch as u64,
        exp_avg: vec![fill; model.num_params()],
        exp_avg_sq: vec![fill * fill; model.num_params()],
        epoch,
        stale_epochs: 0,
    }
}

fn save_epoch(path: &Path, model: &NeuralOdeModel<f32>, meta: &CheckpointMeta, epoch: usize) {
    let meta = CheckpointMeta { epoch, ..meta.clone() };
    checkpoint::save(path, model, &meta, Some(&state(model, epoch, epoch as f32))).unwrap();
}

#[test]
fn a_crash_between_the_checkpoint_and_the_optimiser_file_is_refused_on_resume() {
    let (model, meta) = small();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    let optim = checkpoint::optim_path(&path);

    // A pair written together loads, with the checkpoint holding only the contract's tensors.
    save_epoch(&path, &model, &meta, 3);
    let s = checkpoint::load_optim(&path, &model).unwrap();
    assert_eq!((s.epoch, s.step, s.exp_avg[0]), (3, 30, 3.0));
    let bytes = std::fs::read(&path).unwrap();
    let mut names = SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    names.sort();
    let mut want: Vec<String> = TENSOR_NAMES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
    let epoch3_optim = std::fs::read(&optim).unwrap();

    // Epoch 4's checkpoint reached the disk, its optimiser file did not.
    save_epoch(&path, &model, &meta, 4);
    std::fs::write(&optim, &epoch3_optim).unwrap();
    let e = checkpoint::load_optim(&path, &model).unwrap_err();
    assert!(matches!(e, CheckpointError::Unpaired { .. }), "{e}");
    assert_mentions(
        &e.to_string(),
        &[
            &path.display().to_string(),
            &optim.display().to_string(),
            "not saved together",
            "checkpoint is from epoch 4",
            "optimiser state from epoch 3",
            "--init-from",
        ],
    );

    // Same epoch, different saves (e.g. files of two runs, or the best and the last
    // checkpoint's files mixed up): the save ids tell them apart.
    save_epoch(&path, &model, &meta, 5);
    let first = std::fs::read(&optim).unwrap();
    save_epoch(&path, &model, &meta, 5);
    checkpoint::load_optim(&path, &model).unwrap();
    std::fs::write(&optim, first).unwrap();
    let e = checkpoint::load_optim(&path, &model).unwrap_err().to_string();
    assert_mentions(&e, &["not saved together", "save id"]);

    // A checkpoint rewritten without optimiser state leaves the old optimiser file unpaired.
    save_epoch(&path, &model, &meta, 6);
    checkpoint::save(
        &path,
        &model,
        &CheckpointMeta {
            epoch: 6,
            ..meta.clone()
        },
        None,
    )
    .unwrap();
    assert!(checkpoint::load_optim(&path, &model).is_err());
    // No temporary files are left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn weights_only_files_load_from_their_tensor_shapes() {
    let good = saved_bytes();
    let tensors = owned_tensors(&good);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torch.safetensors");
    let mut md = HashMap::new();
    md.insert("format".to_string(), "pt".to_string());
    std::fs::write(&path, serialize(&tensors, Some(md))).unwrap();
    assert!(!checkpoint::has_config(&path).unwrap());

    let base = ModelConfig {
        input_dim: 5,
        horizon: 6,
        ..ModelConfig::default()
    };
    let (model, inferred) = checkpoint::load_weights_only(&path, &base, None).unwrap();
    assert_eq!(
        (
            inferred.latent_dim,
            inferred.hidden_dim,
            inferred.output_dim,
            inferred.context_len
        ),
        (2, 3, 2, 3)
    );
    assert_eq!(model.config().horizon, 6, "what the shapes cannot tell is kept");
    let (orig, _) = checkpoint::from_bytes(&good, "good").unwrap();
    assert_eq!(model.params(), orig.params());

    // The data's feature count must divide encoder.0.weight's columns (15 = 3 × 5).
    let e = checkpoint::load_weights_only(
        &path,
        &ModelConfig {
            input_dim: 4,
            ..base.clone()
        },
        None,
    )
    .unwrap_err()
    .to_string();
    assert_mentions(
        &e,
        &[
            "torch.safetensors",
            "encoder.0.weight",
            "15 input columns",
            "4 features",
        ],
    );
    let e = checkpoint::load_weights_only(&path, &base, Some(5))
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["context_len 3", "context_len 5 was given"]);

    // A tensor whose shape disagrees with the others is named.
    let mut bad = tensors.clone();
    let k = bad.iter().position(|t| t.0 == "func.2.weight").unwrap();
    bad[k] = ("func.2.weight".into(), vec![3, 2], vec![0.5; 6]);
    std::fs::write(&path, serialize(&bad, None)).unwrap();
    let e = checkpoint::load_weights_only(&path, &base, None)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["tensor 'func.2.weight' has shape [3, 2]", "[3, 3]"]);
}

/// A checkpoint and its optimiser file as saved together: (checkpoint bytes, optimiser bytes).
fn saved_pair() -> &'static (Vec<u8>, Vec<u8>) {
    static PAIR: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        let (model, meta) = small();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        save_epoch(&path, &model, &meta, 3);
        let optim = std::fs::read(checkpoint::optim_path(&path)).unwrap();
        (std::fs::read(&path).unwrap(), optim)
    })
}

/// `good` with up to five bytes overwritten (half of them in the JSON header) and maybe cut.
fn damaged(good: &[u8], edits: &[(bool, prop::sample::Index, u8)], cut: Option<prop::sample::Index>) -> Vec<u8> {
    let header_len = (8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize).min(good.len());
    let mut bytes = good.to_vec();
    for (in_header, at, value) in edits {
        let i = if *in_header {
            at.index(header_len)
        } else {
            at.index(bytes.len())
        };
        bytes[i] = *value;
    }
    if let Some(c) = cut {
        bytes.truncate(c.index(bytes.len()));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A damaged optimiser file next to a good checkpoint: resuming gets an error or a state
    /// that fits the model, never a panic.
    #[test]
    fn damaged_optimiser_files_never_panic(
        edits in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (ckpt, optim) = saved_pair();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        std::fs::write(&path, ckpt).unwrap();
        std::fs::write(checkpoint::optim_path(&path), damaged(optim, &edits, cut)).unwrap();
        let (model, _) = checkpoint::load(&path).unwrap();
        if let Ok(state) = checkpoint::load_optim(&path, &model) {
            prop_assert_eq!(state.exp_avg.len(), model.num_params());
            prop_assert_eq!(state.exp_avg_sq.len(), model.num_params());
        }
    }

    /// A damaged file read as a weights-only checkpoint (as `ode diagnose` does for PyTorch
    /// files): an error or a valid model, never a panic.
    #[test]
    fn damaged_weights_only_files_never_panic(
        edits in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (ckpt, _) = saved_pair();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        std::fs::write(&path, damaged(ckpt, &edits, cut)).unwrap();
        let base = small().0.config().clone();
        let _ = checkpoint::has_config(&path);
        if let Ok((model, _)) = checkpoint::load_weights_only(&path, &base, None) {
            prop_assert!(model.config().validate().is_ok());
            prop_assert_eq!(model.num_params(), NeuralOdeModel::<f32>::param_count(model.config()));
        }
    }
}
