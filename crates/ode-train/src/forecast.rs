//! Forecasting in data units with a trained model: normalise the context with the training
//! statistics, run the model, map the forecast back.

use crate::checkpoint::{self, CheckpointError, CheckpointMeta};
use crate::data::Scaler;
use crate::model::{NeuralOdeModel, Workspace};
use ode_core::OdeError;
use std::path::Path;

/// A trained model with its feature and target statistics, forecasting in data units.
///
/// ```no_run
/// let mut f = ode_train::Forecaster::from_checkpoint("runs/demo/checkpoint.safetensors".as_ref())?;
/// let (c, d) = (f.context_len(), f.features().len());
/// let context = vec![0.0; c * d]; // C rows of the D feature columns, oldest first, data units
/// let forecast = f.forecast(&context)?; // H rows of the O target columns, data units
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Forecaster {
    model: NeuralOdeModel<f32>,
    meta: CheckpointMeta,
    features: Scaler,
    targets: Scaler,
    ws: Workspace<f32>,
    ctx: Vec<f32>,
    pred: Vec<f32>,
}

impl Forecaster {
    /// A forecaster from a model and the metadata it was trained with.
    pub fn new(model: NeuralOdeModel<f32>, meta: CheckpointMeta) -> Result<Self, OdeError> {
        let ws = Workspace::new(&model)?;
        Ok(Self {
            features: meta.feature_scaler(),
            targets: meta.target_scaler(),
            model,
            meta,
            ws,
            ctx: Vec::new(),
            pred: Vec::new(),
        })
    }

    /// Loads a checkpoint written by the trainer.
    pub fn from_checkpoint(path: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let (model, meta) = checkpoint::load(path)?;
        Ok(Self::new(model, meta).map_err(|e| CheckpointError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?)
    }

    /// Feature column names, in input order.
    pub fn features(&self) -> &[String] {
        &self.meta.features
    }

    /// Target column names, in output order.
    pub fn targets(&self) -> &[String] {
        &self.meta.targets
    }

    /// Rows of context the model reads.
    pub fn context_len(&self) -> usize {
        self.model.config().context_len
    }

    /// Rows it forecasts.
    pub fn horizon(&self) -> usize {
        self.model.config().horizon
    }

    /// Forecasts for one or more contexts: `contexts` holds `k` windows of `C` rows of the `D`
    /// features (data units, time-major); returns `k × H × O` forecasts in data units.
    pub fn forecast(&mut self, contexts: &[f64]) -> Result<Vec<f64>, OdeError> {
        let c = self.model.config();
        let (d, o, cl, h) = (c.input_dim, c.outputs(), c.context_len, c.horizon);
        if contexts.is_empty() || contexts.len() % (cl * d) != 0 {
            return Err(OdeError::ShapeMismatch {
                what: "contexts (windows × C × D)",
                expected: cl * d,
                got: contexts.len(),
            });
        }
        let k = contexts.len() / (cl * d);
        self.ctx.clear();
        self.ctx.extend(
            contexts
                .iter()
                .enumerate()
                .map(|(i, v)| self.features.normalize(i % d, *v) as f32),
        );
        self.pred.clear();
        self.pred.resize(k * h * o, 0.0);
        self.model.predict_into(&mut self.ws, &self.ctx, &mut self.pred)?;
        Ok(self
            .pred
            .iter()
            .enumerate()
            .map(|(i, v)| self.targets.denormalize(i % o, *v as f64))
            .collect())
    }
}
