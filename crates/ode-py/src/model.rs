//! The model for Python: a configuration, its weights once drawn, trained or loaded, and what
//! a checkpoint records about the data it was trained on.

use crate::data::{float_bytes, floats};
use crate::errors;
use ode_train::checkpoint::{self, CheckpointMeta};
use ode_train::{Forecaster, ModelConfig, NeuralOdeModel, Workspace};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;

/// One tensor for Python: name, shape and its values as little-endian `f32` bytes.
type Tensor<'py> = (String, Vec<usize>, Bound<'py, PyBytes>);

/// Windows per forward pass of `predict`.
const PREDICT_CHUNK: usize = 256;

/// A Neural ODE forecaster: configuration, weights and data statistics.
#[pyclass(module = "ode_rs._native")]
pub struct Model {
    pub(crate) config: ModelConfig,
    /// Weights in [`ode_train::TENSOR_NAMES`] order; `None` until drawn (at the first fit, from
    /// the data's shapes, as `ode train` draws them), trained or loaded.
    pub(crate) params: Option<Vec<f32>>,
    /// Seed of the initial weights; the trainer's seed when unset.
    pub(crate) seed: Option<u64>,
    /// The data the weights were trained on (columns, statistics), for checkpoints.
    pub(crate) meta: Option<CheckpointMeta>,
    /// Accepted solver steps per sample in the last epoch trained.
    pub(crate) ode_solver_steps: Option<f64>,
}

impl Model {
    /// The weights as a model, drawn from the seed (default 0) if there are none yet.
    pub(crate) fn built(&mut self) -> PyResult<NeuralOdeModel<f32>> {
        if let Some(p) = &self.params {
            return NeuralOdeModel::from_params(self.config.clone(), p.clone()).map_err(errors::ode);
        }
        let model = NeuralOdeModel::seeded(self.config.clone(), self.seed.unwrap_or(0)).map_err(errors::ode)?;
        self.params = Some(model.params().to_vec());
        Ok(model)
    }

    /// Takes the weights and configuration of a trained `model`.
    pub(crate) fn store(&mut self, model: &NeuralOdeModel<f32>) {
        self.config = model.config().clone();
        self.params = Some(model.params().to_vec());
    }

    fn meta_for(&self, model: &NeuralOdeModel<f32>) -> CheckpointMeta {
        let mut meta = match &self.meta {
            Some(m) => m.clone(),
            None => CheckpointMeta::for_windows(model.config()),
        };
        meta.model = model.config().clone();
        meta
    }

    fn check_context(&self, shape: (usize, usize, usize)) -> PyResult<()> {
        let c = &self.config;
        if shape.0 == 0 || shape.1 != c.context_len || shape.2 != c.input_dim {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "predict: X has shape {shape:?}; the model takes [N >= 1, context_len = {}, input_dim = {}]",
                c.context_len, c.input_dim
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl Model {
    /// A model from a JSON `ModelConfig` (the tuning guide's names) and an optional seed.
    #[new]
    #[pyo3(signature = (config, seed=None))]
    fn new(config: &str, seed: Option<u64>) -> PyResult<Self> {
        let config: ModelConfig = serde_json::from_str(config).map_err(|e| errors::config("model settings", e))?;
        config.validate().map_err(errors::ode)?;
        Ok(Self {
            config,
            params: None,
            seed,
            meta: None,
            ode_solver_steps: None,
        })
    }

    /// The configuration as JSON (solver names as the guide writes them).
    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.config).map_err(|e| errors::config("model settings", e))
    }

    /// Whether the weights exist yet (drawn, trained or loaded).
    #[getter]
    fn has_weights(&self) -> bool {
        self.params.is_some()
    }

    /// Whether the model was trained on arrays already in the model's units (no statistics).
    #[getter]
    fn prenormalized(&self) -> bool {
        self.meta.as_ref().is_none_or(|m| m.prenormalized)
    }

    /// Accepted solver steps per sample in the last epoch trained (`None` before training).
    #[getter]
    fn ode_solver_steps(&self) -> Option<f64> {
        self.ode_solver_steps
    }

    /// Every tensor as `(name, shape, little-endian f32 bytes)`, PyTorch's names and order.
    fn tensors<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Tensor<'py>>> {
        let model = self.built()?;
        Ok(model
            .tensors()
            .iter()
            .map(|(name, shape, off)| {
                let n: usize = shape.iter().product();
                (
                    name.to_string(),
                    shape.clone(),
                    float_bytes(py, &model.params()[*off..off + n]),
                )
            })
            .collect())
    }

    /// Forecasts for `N` contexts (`x`: `N × C × D` little-endian `f32`): `N × H × O` values, in
    /// the model's units, or in data units with `data_units` (a model trained on a dataset).
    #[pyo3(signature = (x, shape, data_units=false))]
    fn predict<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyBytes>,
        shape: (usize, usize, usize),
        data_units: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.check_context(shape)?;
        let model = self.built()?;
        let x = floats(x);
        let out: Vec<f32> = if data_units {
            let Some(meta) = self.meta.clone().filter(|m| !m.prenormalized) else {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "predict(data_units=True) needs a model trained on a dataset (load_csv or dataset), \
                     whose statistics map forecasts back; this one has none",
                ));
            };
            let ctx: Vec<f64> = x.iter().map(|v| f64::from(*v)).collect();
            let mut f = Forecaster::new(model, meta).map_err(errors::ode)?;
            let y = py.detach(|| f.forecast(&ctx)).map_err(errors::ode)?;
            y.iter().map(|v| *v as f32).collect()
        } else {
            py.detach(|| predict_normalised(&model, &x, shape.0))
                .map_err(errors::ode)?
        };
        Ok(float_bytes(py, &out))
    }

    /// Writes a safetensors checkpoint (the same format as `ode train`'s).
    fn save(&mut self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let model = self.built()?;
        let meta = self.meta_for(&model);
        py.detach(|| checkpoint::save(&path, &model, &meta, None))
            .map_err(errors::checkpoint)
    }

    /// Reads a checkpoint written by `ode train` or `save`.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let (model, meta) = py.detach(|| checkpoint::load(&path)).map_err(errors::checkpoint)?;
        Ok(Self {
            config: model.config().clone(),
            params: Some(model.params().to_vec()),
            seed: None,
            meta: Some(meta),
            ode_solver_steps: None,
        })
    }

    /// Input and output shape of one window: `((C, D), (H, O))`.
    #[getter]
    fn window_shape(&self) -> ((usize, usize), (usize, usize)) {
        let c = &self.config;
        ((c.context_len, c.input_dim), (c.horizon, c.outputs()))
    }
}

/// Forecasts in the model's units, `PREDICT_CHUNK` windows at a time.
fn predict_normalised(model: &NeuralOdeModel<f32>, x: &[f32], n: usize) -> Result<Vec<f32>, ode_core::OdeError> {
    let c = model.config();
    let (cw, tw) = (c.context_len * c.input_dim, c.horizon * c.outputs());
    let mut ws = Workspace::new(model)?;
    let mut out = vec![0f32; n * tw];
    for (xs, ys) in x.chunks(PREDICT_CHUNK * cw).zip(out.chunks_mut(PREDICT_CHUNK * tw)) {
        model.predict_into(&mut ws, xs, ys)?;
    }
    Ok(out)
}
