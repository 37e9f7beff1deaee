//! Checkpoints in the contract's safetensors format: exactly the model's tensors (f32,
//! PyTorch names), with the model and data configuration as JSON under the metadata key
//! `config`. The optimiser state, for resuming, goes into a sibling `*.optim.safetensors`.

use crate::data::Scaler;
use crate::model::{ModelConfig, NeuralOdeModel};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What can go wrong reading or writing a checkpoint.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("cannot {action} checkpoint {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid safetensors, or lacks what the contract requires.
    #[error("invalid checkpoint {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, and what was expected.
        reason: String,
    },
    /// A checkpoint and its optimiser file were not written by the same save (a crash between
    /// the two writes, or files copied from different runs).
    #[error(
        "{checkpoint} and its optimiser state {optim} were not saved together ({detail}); the run \
         probably stopped while saving: resume from the run's other checkpoint (checkpoint.safetensors \
         or last.safetensors) if that pair agrees, or start from these weights with a fresh optimiser \
         (--init-from {checkpoint})"
    )]
    Unpaired {
        /// The checkpoint (model) file.
        checkpoint: String,
        /// The optimiser file.
        optim: String,
        /// The epochs and save ids that disagree.
        detail: String,
    },
}

/// The `config` metadata of a checkpoint: the model configuration, the data columns and the
/// feature/target statistics (data units), so a checkpoint alone can predict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Model and solver configuration (flattened into the JSON object).
    #[serde(flatten)]
    pub model: ModelConfig,
    /// Feature column names, in input order.
    pub features: Vec<String>,
    /// Target column names, in output order.
    pub targets: Vec<String>,
    /// Per-feature mean over the training split (data units).
    pub mean: Vec<f64>,
    /// Per-feature population std over the training split (data units).
    pub std: Vec<f64>,
    /// Per-target mean over the training split (data units).
    #[serde(default)]
    pub target_mean: Vec<f64>,
    /// Per-target std over the training split (data units).
    #[serde(default)]
    pub target_std: Vec<f64>,
    /// Epochs trained when this was written.
    #[serde(default)]
    pub epoch: usize,
    /// Best validation RMSE so far (normalised units).
    #[serde(default)]
    pub best_val_rmse: Option<f64>,
    /// Fraction of rows in the training split the model was trained with.
    #[serde(default = "default_train_frac")]
    pub train_frac: f64,
    /// Fraction of rows in the test split the model was trained with.
    #[serde(default = "default_test_frac")]
    pub test_frac: f64,
    /// Random id that [`save`] writes into both the checkpoint and its optimiser file, so that
    /// resuming can tell whether the two were saved together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_id: Option<String>,
    /// Whether the model was trained on windows given as arrays already in the model's units
    /// (`fit(X, Y)` in Python), so the statistics are 0 and 1 rather than the data's.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prenormalized: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_train_frac() -> f64 {
    0.7
}

fn default_test_frac() -> f64 {
    0.2
}

impl CheckpointMeta {
    /// Metadata for a model trained on `ds`.
    pub fn for_dataset(model: &ModelConfig, ds: &crate::data::Dataset) -> Self {
        Self {
            model: model.clone(),
            features: ds.features.clone(),
            targets: ds.targets.clone(),
            mean: ds.feature_scaler.mean.clone(),
            std: ds.feature_scaler.std.clone(),
            target_mean: ds.target_scaler.mean.clone(),
            target_std: ds.target_scaler.std.clone(),
            epoch: 0,
            best_val_rmse: None,
            train_frac: ds.config.train_frac,
            test_frac: ds.config.test_frac,
            save_id: None,
            prenormalized: false,
        }
    }

    /// Metadata for a model trained on windows given as arrays, already normalised
    /// ([`Split::from_windows`](crate::data::Split::from_windows)): columns `x0, x1, …` and
    /// `y0, …`, means 0 and standard deviations 1, and `prenormalized` set.
    pub fn for_windows(model: &ModelConfig) -> Self {
        let (d, o) = (model.input_dim, model.outputs());
        Self {
            model: model.clone(),
            features: (0..d).map(|j| format!("x{j}")).collect(),
            targets: (0..o).map(|j| format!("y{j}")).collect(),
            mean: vec![0.0; d],
            std: vec![1.0; d],
            target_mean: vec![0.0; o],
            target_std: vec![1.0; o],
            epoch: 0,
            best_val_rmse: None,
            train_frac: default_train_frac(),
            test_frac: default_test_frac(),
            save_id: None,
            prenormalized: true,
        }
    }

    /// The data configuration the model was trained with (columns, window sizes, split).
    pub fn data_config(&self) -> crate::data::DataConfig {
        crate::data::DataConfig {
            context_len: self.model.context_len,
            horizon: self.model.horizon,
            features: Some(self.features.clone()),
            targets: Some(self.targets.clone()),
            train_frac: self.train_frac,
            test_frac: self.test_frac,
            max_train_windows: None,
            max_val_windows: None,
        }
    }

    /// Feature scaler from the stored statistics.
    pub fn feature_scaler(&self) -> Scaler {
        Scaler {
            mean: self.mean.clone(),
            std: self.std.clone(),
        }
    }

    /// Target scaler from the stored statistics (the feature ones for targets that are features
    /// when the checkpoint predates target statistics).
    pub fn target_scaler(&self) -> Scaler {
        if self.target_mean.len() == self.targets.len() && !self.targets.is_empty() {
            return Scaler {
                mean: self.target_mean.clone(),
                std: self.target_std.clone(),
            };
        }
        let idx = |t: &String| self.features.iter().position(|f| f == t).unwrap_or(0);
        Scaler {
            mean: self.targets.iter().map(|t| self.mean[idx(t)]).collect(),
            std: self.targets.iter().map(|t| self.std[idx(t)]).collect(),
        }
    }
}

/// Adam's state for resuming: step count and moment estimates (flat, [`crate::TENSOR_NAMES`] order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimState {
    /// Completed optimiser steps.
    pub step: u64,
    /// First moments.
    pub exp_avg: Vec<f32>,
    /// Second moments.
    pub exp_avg_sq: Vec<f32>,
    /// Epochs completed.
    pub epoch: usize,
    /// Epochs since the best validation RMSE (early stopping).
    pub stale_epochs: usize,
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn tensors_of<'a>(
    model: &NeuralOdeModel<f32>,
    flat: &'a [u8],
) -> Result<Vec<(String, TensorView<'a>)>, safetensors::SafeTensorError> {
    model
        .tensors()
        .iter()
        .map(|(name, shape, off)| {
            let n: usize = shape.iter().product();
            TensorView::new(Dtype::F32, shape.clone(), &flat[off * 4..(off + n) * 4]).map(|t| (name.to_string(), t))
        })
        .collect()
}

/// The sibling file holding the optimiser state of checkpoint `path`.
pub fn optim_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.optim.safetensors"))
}

/// Writes `model` with `meta` to `path`, and the optimiser state to [`optim_path`] when given.
///
/// Each file is written to a temporary file, flushed to disk (`fsync`), renamed into place and
/// its directory flushed, so a crash leaves either the old or the new file, never a torn one.
/// Both files record the epoch and a fresh random save id (`meta.save_id` is replaced), so that
/// [`load_optim`] refuses a pair that a crash between the two writes left unmatched.
pub fn save(
    path: &Path,
    model: &NeuralOdeModel<f32>,
    meta: &CheckpointMeta,
    optim: Option<&OptimState>,
) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        action: "write",
        path: path.display().to_string(),
        source,
    };
    let invalid = |e: safetensors::SafeTensorError| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let save_id = format!("{:016x}", rand::random::<u64>());
    let mut meta = meta.clone();
    meta.save_id = Some(save_id.clone());
    let flat = to_bytes(model.params());
    let config = serde_json::to_string(&meta).expect("metadata serialises");
    let info = HashMap::from([("config".to_string(), config), ("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(tensors_of(model, &flat).map_err(invalid)?, Some(info)).map_err(invalid)?;
    write_atomic(path, &bytes).map_err(io)?;
    if let Some(o) = optim {
        let (a, b) = (to_bytes(&o.exp_avg), to_bytes(&o.exp_avg_sq));
        let mut views = tensors_of(model, &a).map_err(invalid)?;
        views.iter_mut().for_each(|(n, _)| *n = format!("exp_avg.{n}"));
        let mut sq = tensors_of(model, &b).map_err(invalid)?;
        sq.iter_mut().for_each(|(n, _)| *n = format!("exp_avg_sq.{n}"));
        views.extend(sq);
        let info = HashMap::from([
            ("step".to_string(), o.step.to_string()),
            ("epoch".to_string(), o.epoch.to_string()),
            ("stale_epochs".to_string(), o.stale_epochs.to_string()),
            (SAVE_ID.to_string(), save_id),
        ]);
        let bytes = safetensors::serialize(views, Some(info)).map_err(invalid)?;
        let op = optim_path(path);
        write_atomic(&op, &bytes).map_err(|source| CheckpointError::Io {
            action: "write",
            path: op.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Metadata key of the save id in the optimiser file (and JSON key in the checkpoint's config).
const SAVE_ID: &str = "save_id";

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Flushes the directory holding `path`, so a rename into it survives a power loss.
#[cfg(unix)]
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Directories cannot be opened for flushing on this platform; the rename is all there is.
#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        action: "read",
        path: path.display().to_string(),
        source,
    })
}

fn read_f32(st: &SafeTensors<'_>, name: &str, shape: &[usize], path: &Path) -> Result<Vec<f32>, CheckpointError> {
    read_tensor(st, name, shape).map_err(|reason| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason,
    })
}

/// Reads tensor `name` of shape `shape` as f32, refusing a missing tensor, another dtype or
/// shape, and non-finite values.
fn read_tensor(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
    let t = st.tensor(name).map_err(|_| format!("tensor '{name}' is missing"))?;
    if t.dtype() != Dtype::F32 {
        return Err(format!("tensor '{name}' is {:?}, expected F32", t.dtype()));
    }
    if t.shape() != shape {
        return Err(format!("tensor '{name}' has shape {:?}, expected {shape:?}", t.shape()));
    }
    let v: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "tensor '{name}' holds a non-finite value ({}) at flat index {i}; the weights are corrupt",
            v[i]
        ));
    }
    Ok(v)
}

/// The tensor shapes a model of configuration `c` has, in its layout's order, with
/// overflow-checked arithmetic (a corrupt configuration must not panic or allocate wildly).
fn expected_shapes(c: &ModelConfig) -> Result<Vec<(&'static str, Vec<usize>)>, String> {
    let (d, l, m, ctx) = (c.input_dim, c.latent_dim, c.hidden_dim, c.context_len);
    for (name, v) in [
        ("input_dim", d),
        ("latent_dim", l),
        ("hidden_dim", m),
        ("context_len", ctx),
    ] {
        if v == 0 {
            return Err(format!("config has {name} = 0; it must be at least 1"));
        }
    }
    ctx.checked_mul(d)
        .and_then(|cols| cols.checked_mul(m))
        .ok_or_else(|| format!("config's context_len {ctx} × input_dim {d} × hidden_dim {m} overflows"))?;
    m.checked_mul(m.max(l))
        .and_then(|n| n.checked_mul(8))
        .ok_or_else(|| format!("config's hidden_dim {m} × latent_dim {l} overflows"))?;
    Ok(NeuralOdeModel::<f32>::layout(c)
        .into_iter()
        .map(|(name, shape, _)| (name, shape))
        .collect())
}

fn names_of(shapes: &[(&'static str, Vec<usize>)]) -> String {
    shapes.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
}

/// Reads every tensor of a model whose shapes are `shapes`: exactly those tensors (no missing,
/// no extra), f32, finite. The shapes are compared before anything is allocated.
fn read_params(st: &SafeTensors<'_>, shapes: &[(&'static str, Vec<usize>)], why: &str) -> Result<Vec<f32>, String> {
    for (name, shape) in shapes {
        let t = st.tensor(name).map_err(|_| {
            format!(
                "tensor '{name}' is missing; a checkpoint of this configuration holds exactly the tensors {}",
                names_of(shapes)
            )
        })?;
        if t.shape() != shape.as_slice() {
            return Err(format!(
                "tensor '{name}' has shape {:?}, but {why} expects {shape:?}",
                t.shape()
            ));
        }
    }
    if let Some(extra) = st.names().into_iter().find(|n| !shapes.iter().any(|(s, _)| s == n)) {
        return Err(format!(
            "unexpected tensor '{extra}'; a checkpoint of this configuration holds exactly the tensors {}",
            names_of(shapes)
        ));
    }
    let mut flat = Vec::new();
    for (name, shape) in shapes {
        flat.extend(read_tensor(st, name, shape)?);
    }
    Ok(flat)
}

/// Checks that the metadata agrees with itself: dimensions with the column lists, statistics
/// lengths with the columns, finite statistics, distinct names, valid split fractions.
fn check_meta(meta: &CheckpointMeta) -> Result<(), String> {
    let c = &meta.model;
    let (nf, nt) = (meta.features.len(), meta.targets.len());
    if c.input_dim != nf {
        return Err(format!(
            "config has input_dim {} but lists {nf} feature names {:?}",
            c.input_dim, meta.features
        ));
    }
    if c.outputs() != nt {
        return Err(format!(
            "config has output_dim {} but lists {nt} target names {:?}",
            c.outputs(),
            meta.targets
        ));
    }
    for (what, names) in [("features", &meta.features), ("targets", &meta.targets)] {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(format!("config lists '{dup}' twice in {what}"));
        }
    }
    let stats = [
        ("mean", &meta.mean, nf, "features"),
        ("std", &meta.std, nf, "features"),
        ("target_mean", &meta.target_mean, nt, "targets"),
        ("target_std", &meta.target_std, nt, "targets"),
    ];
    for (key, v, n, of) in stats {
        let optional = key.starts_with("target") && v.is_empty();
        if v.len() != n && !optional {
            return Err(format!("config has {} values in '{key}' but {n} {of}", v.len()));
        }
        if let Some(x) = v
            .iter()
            .find(|x| !x.is_finite() || (key.ends_with("std") && **x <= 0.0))
        {
            return Err(format!(
                "config's '{key}' holds {x}; statistics must be finite (std positive)"
            ));
        }
    }
    if meta.target_mean.len() != meta.target_std.len() {
        return Err("config's 'target_mean' and 'target_std' differ in length".into());
    }
    if meta.target_mean.is_empty() {
        if let Some(t) = meta.targets.iter().find(|t| !meta.features.contains(t)) {
            return Err(format!(
                "target '{t}' is not a feature and the config has no target statistics for it"
            ));
        }
    }
    meta.data_config().validate().map_err(|e| format!("config: {e}"))
}

/// Parses a checkpoint held in memory; `name` names it in errors. See [`load`].
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<(NeuralOdeModel<f32>, CheckpointMeta), CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: name.to_string(),
        reason,
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| invalid(format!("not a safetensors file: {e}")))?;
    let config = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("config"))
        .ok_or_else(|| {
            invalid(
                "no 'config' entry in the safetensors metadata (a weights-only file, e.g. from PyTorch: \
             give the data so the dimensions can be read from the tensor shapes)"
                    .into(),
            )
        })?;
    let meta: CheckpointMeta = serde_json::from_str(config).map_err(|e| match e.classify() {
        // Well-formed JSON with a bad value (an unknown solver name): the config's content.
        serde_json::error::Category::Data => invalid(format!("config is not valid: {e}")),
        _ => invalid(format!("metadata 'config' is not valid: {e}")),
    })?;
    check_meta(&meta).map_err(invalid)?;
    let shapes = expected_shapes(&meta.model).map_err(invalid)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| invalid(format!("not a valid safetensors file: {e}")))?;
    let m = &meta.model;
    let why = format!(
        "the metadata (input_dim {}, context_len {}, latent_dim {}, hidden_dim {}, output_dim {})",
        m.input_dim,
        m.context_len,
        m.latent_dim,
        m.hidden_dim,
        m.outputs()
    );
    let params = read_params(&st, &shapes, &why).map_err(invalid)?;
    let model = NeuralOdeModel::<f32>::from_params(meta.model.clone(), params)
        .map_err(|e| invalid(format!("config is not valid: {e}")))?;
    Ok((model, meta))
}

/// Reads a checkpoint: the model (f32) and its metadata.
///
/// Refused, with an error naming the file and the problem: a file that is not safetensors or is
/// truncated, metadata that is missing or disagrees with itself (dimensions against column
/// names, statistics lengths, non-finite statistics) or with the tensors (a missing, extra or
/// mis-shaped tensor), and non-finite weights. A corrupt file never panics.
pub fn load(path: &Path) -> Result<(NeuralOdeModel<f32>, CheckpointMeta), CheckpointError> {
    from_bytes(&read_file(path)?, &path.display().to_string())
}

/// Whether `path` holds this project's `config` metadata (a full checkpoint) rather than only
/// weights (no metadata, or another tool's). A `config` entry that is a JSON object with an
/// `input_dim` key counts as this project's, even when it is broken, so [`load`] reports it.
pub fn has_config(path: &Path) -> Result<bool, CheckpointError> {
    let bytes = read_file(path)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    let config = header.metadata().as_ref().and_then(|m| m.get("config"));
    Ok(config
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .is_some_and(|v| v.get("input_dim").is_some()))
}

/// What a weights-only file's tensor shapes say, and what had to be derived from the data.
#[derive(Debug, Clone, PartialEq)]
pub struct InferredShapes {
    /// Latent size `L` (rows of `encoder.2.weight`).
    pub latent_dim: usize,
    /// Hidden size `M` (rows of `encoder.0.weight`).
    pub hidden_dim: usize,
    /// Targets `O` (rows of `decoder.weight`).
    pub output_dim: usize,
    /// Context length `C`: the columns of `encoder.0.weight` divided by the features `D`.
    pub context_len: usize,
}

/// Reads a weights-only safetensors file (the reference model's tensor names, e.g. written by
/// `safetensors.torch.save_file` from PyTorch; metadata absent or ignored) for data with
/// `base.input_dim` features.
///
/// The latent, hidden and output sizes and the context length come from the tensor shapes; the
/// rest of `base` (horizon, dt, solver, ...) is kept. When `context_len` is given it must agree
/// with the shapes. Errors name the file and the tensor.
pub fn load_weights_only(
    path: &Path,
    base: &ModelConfig,
    context_len: Option<usize>,
) -> Result<(NeuralOdeModel<f32>, InferredShapes), CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let bytes = read_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| invalid(format!("not a valid safetensors file: {e}")))?;
    let shape = |name: &str, rank: usize| -> Result<Vec<usize>, CheckpointError> {
        let t = st.tensor(name).map_err(|_| {
            invalid(format!(
                "tensor '{name}' is missing; is this the reference model's state_dict?"
            ))
        })?;
        if t.shape().len() != rank || t.shape().contains(&0) {
            return Err(invalid(format!(
                "tensor '{name}' has shape {:?}; expected {rank} non-zero dimensions",
                t.shape()
            )));
        }
        Ok(t.shape().to_vec())
    };
    let (enc0, enc2, dec) = (
        shape("encoder.0.weight", 2)?,
        shape("encoder.2.weight", 2)?,
        shape("decoder.weight", 2)?,
    );
    let d = base.input_dim.max(1);
    if enc0[1] % d != 0 {
        return Err(invalid(format!(
            "tensor 'encoder.0.weight' has {} input columns (context_len × features), which is not a \
             multiple of the data's {d} features; choose the model's feature columns with --features",
            enc0[1]
        )));
    }
    let inferred = InferredShapes {
        latent_dim: enc2[0],
        hidden_dim: enc0[0],
        output_dim: dec[0],
        context_len: enc0[1] / d,
    };
    if let Some(c) = context_len.filter(|&c| c != inferred.context_len) {
        return Err(invalid(format!(
            "tensor 'encoder.0.weight' has {} input columns = context_len {} × {d} features, but \
             context_len {c} was given",
            enc0[1], inferred.context_len
        )));
    }
    let config = ModelConfig {
        latent_dim: inferred.latent_dim,
        hidden_dim: inferred.hidden_dim,
        output_dim: inferred.output_dim,
        context_len: inferred.context_len,
        ..base.clone()
    };
    let shapes = expected_shapes(&config).map_err(invalid)?;
    let why = format!(
        "a model with the shapes of 'encoder.0.weight', 'encoder.2.weight' and 'decoder.weight' \
         (hidden {}, latent {}, outputs {})",
        inferred.hidden_dim, inferred.latent_dim, inferred.output_dim
    );
    let params = read_params(&st, &shapes, &why).map_err(invalid)?;
    let model =
        NeuralOdeModel::<f32>::from_params(config, params).map_err(|e| invalid(format!("config is not valid: {e}")))?;
    Ok((model, inferred))
}

/// Reads only the tensors of a checkpoint (e.g. weights exported from PyTorch with
/// `safetensors.torch.save_file`) into a model of the given configuration.
pub fn load_weights(path: &Path, model: &mut NeuralOdeModel<f32>) -> Result<(), CheckpointError> {
    let bytes = read_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let layout = model.tensors().to_vec();
    for (name, shape, off) in layout {
        let v = read_f32(&st, name, &shape, path)?;
        model.params_mut()[off..off + v.len()].copy_from_slice(&v);
    }
    Ok(())
}

/// The epoch and save id recorded in checkpoint `path`'s metadata (without loading tensors).
fn checkpoint_stamp(path: &Path) -> Result<(u64, Option<String>), CheckpointError> {
    let bytes = read_file(path)?;
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| invalid(format!("not a safetensors file: {e}")))?;
    let config = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("config"))
        .ok_or_else(|| invalid("no 'config' entry in the safetensors metadata".into()))?;
    let v: serde_json::Value =
        serde_json::from_str(config).map_err(|e| invalid(format!("metadata 'config' is not valid: {e}")))?;
    let epoch = v.get("epoch").and_then(|e| e.as_u64()).unwrap_or(0);
    let id = v.get(SAVE_ID).and_then(|s| s.as_str()).map(str::to_string);
    Ok((epoch, id))
}

/// Reads the optimiser state saved next to checkpoint `path`, after checking that the two
/// files were written by the same [`save`]: the same epoch and save id (a crash between the
/// two writes leaves them different, and the error [`CheckpointError::Unpaired`] names both).
pub fn load_optim(path: &Path, model: &NeuralOdeModel<f32>) -> Result<OptimState, CheckpointError> {
    let op = optim_path(path);
    let invalid = |reason: String| CheckpointError::Invalid {
        path: op.display().to_string(),
        reason,
    };
    let bytes = read_file(&op)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| invalid(e.to_string()))?;
    let md = header.metadata().clone().unwrap_or_default();
    let num = |k: &str| -> Result<u64, CheckpointError> {
        md.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid(format!("metadata '{k}' missing or not a number")))
    };
    let (epoch, optim_id) = (num("epoch")?, md.get(SAVE_ID).cloned());
    let (ckpt_epoch, ckpt_id) = checkpoint_stamp(path)?;
    if epoch != ckpt_epoch || optim_id != ckpt_id {
        let id = |s: &Option<String>| s.clone().unwrap_or_else(|| "none".into());
        return Err(CheckpointError::Unpaired {
            checkpoint: path.display().to_string(),
            optim: op.display().to_string(),
            detail: format!(
                "the checkpoint is from epoch {ckpt_epoch} (save id {}), the optimiser state from epoch \
                 {epoch} (save id {})",
                id(&ckpt_id),
                id(&optim_id)
            ),
        });
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
    let n = model.num_params();
    let (mut a, mut b) = (vec![0.0f32; n], vec![0.0f32; n]);
    for (name, shape, off) in model.tensors() {
        let va = read_f32(&st, &format!("exp_avg.{name}"), shape, &op)?;
        let vb = read_f32(&st, &format!("exp_avg_sq.{name}"), shape, &op)?;
        a[*off..off + va.len()].copy_from_slice(&va);
        b[*off..off + vb.len()].copy_from_slice(&vb);
    }
    Ok(OptimState {
        step: num("step")?,
        exp_avg: a,
        exp_avg_sq: b,
        epoch: epoch as usize,
        stale_epochs: num("stale_epochs")? as usize,
    })
}
