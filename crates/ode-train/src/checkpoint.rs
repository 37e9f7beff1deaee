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

/// Writes `model` with `meta` to `path` (atomically: a temporary file renamed into place), and
/// the optimiser state next to it when given.
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
    let flat = to_bytes(model.params());
    let config = serde_json::to_string(meta).expect("metadata serialises");
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
        ]);
        let bytes = safetensors::serialize(views, Some(info)).map_err(invalid)?;
        write_atomic(&optim_path(path), &bytes).map_err(io)?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn read_f32(st: &SafeTensors<'_>, name: &str, shape: &[usize], path: &Path) -> Result<Vec<f32>, CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let t = st
        .tensor(name)
        .map_err(|_| invalid(format!("tensor '{name}' is missing")))?;
    if t.dtype() != Dtype::F32 {
        return Err(invalid(format!("tensor '{name}' is {:?}, expected F32", t.dtype())));
    }
    if t.shape() != shape {
        return Err(invalid(format!(
            "tensor '{name}' has shape {:?}, expected {shape:?}",
            t.shape()
        )));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Reads a checkpoint: the model (f32) and its metadata.
pub fn load(path: &Path) -> Result<(NeuralOdeModel<f32>, CheckpointMeta), CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        action: "read",
        path: path.display().to_string(),
        source,
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| invalid(e.to_string()))?;
    let config = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("config"))
        .ok_or_else(|| invalid("no 'config' entry in the safetensors metadata".into()))?;
    let meta: CheckpointMeta =
        serde_json::from_str(config).map_err(|e| invalid(format!("metadata 'config' is not valid: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
    let zeros = vec![0.0; NeuralOdeModel::<f32>::param_count(&meta.model)];
    let mut model = NeuralOdeModel::<f32>::from_params(meta.model.clone(), zeros)
        .map_err(|e| invalid(format!("config is not valid: {e}")))?;
    let layout = model.tensors().to_vec();
    for (name, shape, off) in layout {
        let v = read_f32(&st, name, &shape, path)?;
        model.params_mut()[off..off + v.len()].copy_from_slice(&v);
    }
    Ok((model, meta))
}

/// Reads only the tensors of a checkpoint (e.g. weights exported from PyTorch with
/// `safetensors.torch.save_file`) into a model of the given configuration.
pub fn load_weights(path: &Path, model: &mut NeuralOdeModel<f32>) -> Result<(), CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        action: "read",
        path: path.display().to_string(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
    let layout = model.tensors().to_vec();
    for (name, shape, off) in layout {
        let v = read_f32(&st, name, &shape, path)?;
        model.params_mut()[off..off + v.len()].copy_from_slice(&v);
    }
    Ok(())
}

/// Reads the optimiser state saved next to checkpoint `path`.
pub fn load_optim(path: &Path, model: &NeuralOdeModel<f32>) -> Result<OptimState, CheckpointError> {
    let op = optim_path(path);
    let invalid = |reason: String| CheckpointError::Invalid {
        path: op.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(&op).map_err(|source| CheckpointError::Io {
        action: "read",
        path: op.display().to_string(),
        source,
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| invalid(e.to_string()))?;
    let md = header.metadata().clone().unwrap_or_default();
    let num = |k: &str| -> Result<u64, CheckpointError> {
        md.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid(format!("metadata '{k}' missing or not a number")))
    };
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
        epoch: num("epoch")? as usize,
        stale_epochs: num("stale_epochs")? as usize,
    })
}
