//! The training loop: shuffled mini-batches split across threads, Adam with global-norm
//! clipping, validation RMSE, early stopping, best-checkpoint saving and a clear stop on NaN.

use crate::baselines::Baselines;
use crate::checkpoint::{self, CheckpointError, CheckpointMeta, OptimState};
use crate::data::{DataError, Split};
use crate::model::{Device, LossStats, ModelConfig, NeuralOdeModel, Workspace};
use crate::tracker::Tracker;
use crate::update_watch::{LargeUpdate, UpdateWatch, solver_failure_message};
use ode_core::{OdeError, StepMode};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;
use thiserror::Error;

/// Training settings, with the tuning guide's names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Windows per batch (the last partial batch is kept).
    pub batch_size: usize,
    /// Global L2-norm gradient clipping threshold; `None` or 0 disables it.
    pub gradient_clip: Option<f64>,
    /// Epochs to train.
    pub epochs: usize,
    /// Stop when `val_rmse` has not improved for this many epochs.
    pub early_stopping_patience: Option<usize>,
    /// Seed of the initialisation and of the per-epoch shuffles.
    pub seed: u64,
    /// Worker threads (default: the machine's cores). Each batch is split across them, except
    /// with an adaptive solver in shared step mode, which couples the batch's steps (one thread).
    pub threads: Option<usize>,
    /// Windows per validation chunk.
    pub eval_batch_size: usize,
    /// Where the ODE solves run: `cpu` (default), `gpu` or `auto` (GPU when an adapter exists,
    /// else CPU with a warning). On the GPU a batch runs as one lane (the GPU is the parallelism).
    pub device: Device,
    /// Explicit window order per epoch (epoch `e` uses entry `e - 1`), e.g. to replay another
    /// framework's shuffles for a like-for-like comparison; `None` shuffles from `seed`.
    #[serde(skip)]
    pub batch_order: Option<Vec<Vec<usize>>>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            batch_size: 16,
            gradient_clip: Some(1.0),
            epochs: 10,
            early_stopping_patience: None,
            seed: 0,
            threads: None,
            eval_batch_size: 256,
            device: Device::Cpu,
            batch_order: None,
        }
    }
}

/// Metrics of one epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Batch-size-weighted mean of the batch losses (MSE, normalised units).
    pub train_loss: f64,
    /// Validation RMSE over all windows, horizon steps and targets (normalised units).
    pub val_rmse: f64,
    /// Validation RMSE per target in data units.
    pub val_rmse_data_units: Vec<f64>,
    /// Forward vector-field evaluations per sample, summed over the epoch's batches
    /// (`ode_solver_steps` in the tuning guide).
    pub nfe_forward: f64,
    /// Backward evaluations (VJPs) per sample, summed over the epoch's batches.
    pub nfe_backward: f64,
    /// Accepted forward steps per sample, summed over batches.
    pub accepted_steps: f64,
    /// Rejected forward steps per sample, summed over batches.
    pub rejected_steps: f64,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// Wall time of the training loop alone: batch gathering, gradients and updates (no
    /// validation, no data loading).
    pub train_seconds: f64,
    /// Wall time of the whole epoch.
    pub seconds: f64,
    /// Skill against persistence, `1 − val_rmse / rmse_persistence`, when the trainer was
    /// given baselines ([`Trainer::with_baselines`]) with a persistence score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<f64>,
}

/// The per-epoch record of a `fit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One entry per completed epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Best validation RMSE and its epoch.
    pub best: Option<(usize, f64)>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Whether a callback ended the run: `stop_when` after an epoch (a search pruned the
    /// trial), or `on_progress` in the middle of one (that partial epoch is not in `epochs`).
    pub stopped_by_callback: bool,
}

impl History {
    /// The `val_rmse` series (the guide's `history['val_rmse']`).
    pub fn val_rmse(&self) -> Vec<f64> {
        self.epochs.iter().map(|e| e.val_rmse).collect()
    }

    /// The best validation RMSE.
    pub fn best_val_rmse(&self) -> Option<f64> {
        self.best.map(|b| b.1)
    }
}

/// Why training stopped early with an error.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The loss, the gradient or the state became NaN or infinite.
    #[error(
        "non-finite {what} at epoch {epoch}, batch {batch}: {detail}. Remedies: lower the learning rate, \
         clip gradients harder (gradient_clip), check the data for NaN/inf values, or use a more stable \
         solver (rk4 instead of euler, or tighter rtol/atol).{saved}"
    )]
    NonFinite {
        /// `loss`, `gradient` or `state`.
        what: &'static str,
        /// Epoch (from 1).
        epoch: usize,
        /// Batch within the epoch (from 1).
        batch: usize,
        /// More detail (tensor, solver message).
        detail: String,
        /// Where the best checkpoint so far is, if any.
        saved: String,
    },
    /// The ODE solver failed (step-size underflow, step budget, …).
    #[error("solver failed at epoch {epoch}, batch {batch}: {}{saved}", solver_failure_message(source, cause.as_ref()))]
    Solver {
        /// Epoch (from 1).
        epoch: usize,
        /// Batch within the epoch (from 1), 0 during validation.
        batch: usize,
        /// The solver's error.
        source: OdeError,
        /// The likely cause the trainer knows of: a large parameter update just before a
        /// step-size underflow.
        cause: Option<LargeUpdate>,
        /// Where the best checkpoint so far is, if any.
        saved: String,
    },
    /// A configuration problem.
    #[error("invalid configuration: {0}")]
    Config(#[from] OdeError),
    /// A data problem.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Adam (β1 0.9, β2 0.999, ε 1e-8) with PyTorch's update rule.
#[derive(Debug, Clone)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    state: OptimState,
}

impl Adam {
    /// Fresh state for `n` parameters.
    pub fn new(lr: f64, n: usize) -> Self {
        Self {
            lr,
            state: OptimState {
                exp_avg: vec![0.0; n],
                exp_avg_sq: vec![0.0; n],
                ..Default::default()
            },
        }
    }

    /// Resumes from saved state.
    pub fn from_state(lr: f64, state: OptimState) -> Self {
        Self { lr, state }
    }

    /// The state, for checkpoints.
    pub fn state(&self) -> &OptimState {
        &self.state
    }

    /// One update of `params` with `grads`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32]) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        self.state.step += 1;
        let t = self.state.step as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let step_size = (self.lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let (b1, b2, eps) = (b1 as f32, b2 as f32, eps as f32);
        let s = &mut self.state;
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(&mut s.exp_avg).zip(&mut s.exp_avg_sq) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step_size * *m / (v.sqrt() / bc2_sqrt + eps);
        }
    }
}

/// Clips `grads` to global L2 norm `max_norm` as `torch.nn.utils.clip_grad_norm_` does and
/// returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: Option<f64>) -> f64 {
    let norm = grad_norm(grads);
    clip_to(grads, norm, max_norm);
    norm
}

/// The global L2 norm of `grads`, summed in `f64` over eight interleaved partial sums (one
/// running sum waits four cycles per value: 35 µs a batch for the reference model's 21 479
/// parameters). Not finite exactly when some gradient is not: squares of `f32` values cannot
/// overflow an `f64`.
pub fn grad_norm(grads: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = grads.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|g| (*g as f64) * (*g as f64)).sum();
    for chunk in chunks {
        for (a, g) in acc.iter_mut().zip(chunk) {
            *a += (*g as f64) * (*g as f64);
        }
    }
    (acc.iter().sum::<f64>() + rest).sqrt()
}

/// Scales `grads` down to `max_norm` given their `norm` ([`clip_grad_norm`]'s second half).
fn clip_to(grads: &mut [f32], norm: f64, max_norm: Option<f64>) {
    if let Some(max) = max_norm.filter(|m| *m > 0.0) {
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            grads.iter_mut().for_each(|g| *g *= coef as f32);
        }
    }
}

/// Where and how the trainer saves the best model.
#[derive(Debug, Clone)]
pub struct CheckpointTarget {
    /// The checkpoint file (`…/checkpoint.safetensors`).
    pub path: PathBuf,
    /// The metadata written with it (columns, statistics; the model config is filled in).
    pub meta: CheckpointMeta,
}

/// Per-thread state: a workspace, a gradient buffer, and the chunk's results.
struct Lane {
    ws: Workspace<f32>,
    grad: Vec<f32>,
    stats: LossStats,
    err: Option<OdeError>,
}

type BatchCallback<'a> = Box<dyn FnMut(usize, usize, usize, f64) + 'a>;
type ProgressCallback<'a> = Box<dyn FnMut(Progress) -> ControlFlow<()> + 'a>;
type StopCallback<'a> = Box<dyn FnMut(usize, &EpochMetrics) -> bool + 'a>;
type EpochCallback<'a> = Box<dyn FnMut(usize, &EpochMetrics, &mut dyn Tracker) + 'a>;

/// How far [`Trainer::fit`] has got when it calls the [`Trainer::on_progress`] callback: a
/// search renews its trial's lease on these events, so they come at least once per batch and
/// once per validation round (one `eval_batch_size` chunk per thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Training batch `batch` (1-based) of `batches` of `epoch` is done.
    Batch {
        /// The epoch (1-based).
        epoch: usize,
        /// Batches done in this epoch.
        batch: usize,
        /// Batches per epoch.
        batches: usize,
    },
    /// `done` of the `total` validation windows of `epoch` are evaluated.
    Validation {
        /// The epoch (1-based).
        epoch: usize,
        /// Windows evaluated so far.
        done: usize,
        /// Validation windows.
        total: usize,
    },
}

/// Trains a [`NeuralOdeModel`] on windows of a [`crate::data::Dataset`]'s splits.
///
/// ```no_run
/// use ode_train::{MemoryTracker, ModelConfig, NeuralOdeModel, TrainConfig, Trainer};
/// # fn demo(ds: &ode_train::data::Dataset) -> Result<(), Box<dyn std::error::Error>> {
/// let model = NeuralOdeModel::seeded(ModelConfig { input_dim: ds.input_dim(), ..ModelConfig::default() }, 0)?;
/// let mut tracker = MemoryTracker::default();
/// let mut trainer = Trainer::new(model, TrainConfig { epochs: 5, ..TrainConfig::default() }, &mut tracker)?;
/// let history = trainer.fit(&ds.train, &ds.val)?;
/// println!("best val RMSE {:?}", history.best_val_rmse());
/// # Ok(()) }
/// ```
pub struct Trainer<'a> {
    model: NeuralOdeModel<f32>,
    config: TrainConfig,
    tracker: &'a mut dyn Tracker,
    on_epoch_end: Option<EpochCallback<'a>>,
    stop_when: Option<StopCallback<'a>>,
    checkpoint: Option<CheckpointTarget>,
    adam: Adam,
    start_epoch: usize,
    stale: usize,
    best: Option<(usize, f64)>,
    pool: rayon::ThreadPool,
    lanes: Vec<Lane>,
    target_std: Vec<f64>,
    progress: Option<BatchCallback<'a>>,
    on_progress: Option<ProgressCallback<'a>>,
    baselines: Option<Baselines>,
    /// The best epoch's parameters, when [`Trainer::keep_best_params`] asked for them.
    best_params: Option<Vec<f32>>,
    keep_best: bool,
}

impl<'a> Trainer<'a> {
    /// A trainer for `model` (its parameters are the starting point).
    pub fn new(
        model: NeuralOdeModel<f32>,
        config: TrainConfig,
        tracker: &'a mut dyn Tracker,
    ) -> Result<Self, TrainError> {
        if config.batch_size == 0 {
            return Err(OdeError::InvalidOption {
                name: "batch_size",
                value: 0.0,
                reason: "must be at least 1",
            }
            .into());
        }
        if !(config.learning_rate.is_finite() && config.learning_rate > 0.0) {
            return Err(OdeError::InvalidOption {
                name: "learning_rate",
                value: config.learning_rate,
                reason: "must be finite and positive",
            }
            .into());
        }
        if let Some(c) = config.gradient_clip.filter(|c| !c.is_finite() || *c < 0.0) {
            return Err(OdeError::InvalidOption {
                name: "gradient_clip",
                value: c,
                reason: "must be finite and >= 0",
            }
            .into());
        }
        // Shared step control couples a batch's rows only for adaptive solvers; fixed-step
        // solvers (and per-sample mode) can split a batch across threads with the same result.
        let shared = model.config().step_mode == StepMode::Shared;
        let adaptive = model.config().solver.tableau().is_adaptive() && model.config().step_size.is_none();
        let gpu = config.device.open()?;
        let threads = if (shared && adaptive) || gpu.is_some() {
            1
        } else {
            config.threads.unwrap_or_else(rayon::current_num_threads).max(1)
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|_| OdeError::InvalidOption {
                name: "threads",
                value: threads as f64,
                reason: "cannot start threads",
            })?;
        let mut lanes = Vec::with_capacity(threads);
        for _ in 0..threads {
            lanes.push(Lane {
                ws: match &gpu {
                    Some(ctx) => Workspace::with_gpu(&model, ctx.clone())?,
                    None => Workspace::new(&model)?,
                },
                grad: vec![0.0; model.num_params()],
                stats: LossStats::default(),
                err: None,
            });
        }
        let adam = Adam::new(config.learning_rate, model.num_params());
        Ok(Self {
            model,
            config,
            tracker,
            on_epoch_end: None,
            stop_when: None,
            checkpoint: None,
            adam,
            start_epoch: 0,
            stale: 0,
            best: None,
            pool,
            lanes,
            target_std: Vec::new(),
            progress: None,
            on_progress: None,
            baselines: None,
            best_params: None,
            keep_best: false,
        })
    }

    /// Calls `f(epoch, metrics, tracker)` after every epoch, e.g. to log extra metrics.
    pub fn on_epoch_end(mut self, f: impl FnMut(usize, &EpochMetrics, &mut dyn Tracker) + 'a) -> Self {
        self.on_epoch_end = Some(Box::new(f));
        self
    }

    /// Calls `f(epoch, metrics)` after every epoch (after checkpointing); when it returns true
    /// training ends there (`History::stopped_by_callback`), e.g. when a search prunes the trial.
    pub fn stop_when(mut self, f: impl FnMut(usize, &EpochMetrics) -> bool + 'a) -> Self {
        self.stop_when = Some(Box::new(f));
        self
    }

    /// Calls `f(epoch, batch, batches, running_loss)` after every batch (progress bars).
    pub fn on_batch_end(mut self, f: impl FnMut(usize, usize, usize, f64) + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Calls `f(progress)` after every training batch and every validation round; when it
    /// returns `Break`, training ends at once, without finishing the epoch, and `fit` returns
    /// the history so far with `stopped_by_callback` set. A search worker renews its lease here
    /// (so a trial that stops making progress loses it) and enforces its time limit.
    pub fn on_progress(mut self, f: impl FnMut(Progress) -> ControlFlow<()> + 'a) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Saves the best model (by `val_rmse`) to `target.path`, with the optimiser state next
    /// to it, whenever validation improves.
    pub fn with_checkpoint(mut self, target: CheckpointTarget) -> Self {
        self.target_std = target.meta.target_scaler().std;
        self.checkpoint = Some(target);
        self
    }

    /// Scores every epoch against `baselines` (computed on the same validation windows, see
    /// [`crate::baselines::compute`]): `fit` logs them once as step-0 metrics
    /// (`baseline_persistence`, …, `baseline_linear_ar_lambda`) and each epoch's `skill`.
    pub fn with_baselines(mut self, baselines: Baselines) -> Self {
        self.baselines = Some(baselines);
        self
    }

    /// Keeps a copy of the parameters of the best epoch (lowest `val_rmse`) in memory, for
    /// [`Self::best_params`]; without it only a checkpoint target keeps them.
    pub fn keep_best_params(mut self) -> Self {
        self.keep_best = true;
        self
    }

    /// The parameters of the best epoch of `fit` so far, if [`Self::keep_best_params`] was set
    /// and an epoch improved on the best `val_rmse`.
    pub fn best_params(&self) -> Option<&[f32]> {
        self.best_params.as_deref()
    }

    /// The baselines given with [`Self::with_baselines`].
    pub fn baselines(&self) -> Option<&Baselines> {
        self.baselines.as_ref()
    }

    /// Logs the baselines as step-0 metrics (at the start of a fresh run only).
    fn log_baselines(&mut self) {
        let Some(b) = &self.baselines else { return };
        if self.start_epoch > 0 {
            return;
        }
        for s in &b.scores {
            self.tracker
                .log_metric(&format!("baseline_{}", s.baseline.key()), s.rmse, 0);
        }
        self.tracker.log_metric("baseline_linear_ar_lambda", b.ridge_lambda, 0);
    }

    /// The epoch's skill against persistence (see [`Baselines::skill`]), logged as `skill`.
    fn score_skill(&mut self, m: &mut EpochMetrics) {
        m.skill = self
            .baselines
            .as_ref()
            .and_then(|b| b.skill(m.val_rmse, &m.val_rmse_data_units));
        if let Some(s) = m.skill {
            self.tracker.log_metric("skill", s, m.epoch);
        }
    }

    /// Continues from a saved optimiser state (epoch counter and Adam moments).
    pub fn resume(mut self, state: OptimState, best_val_rmse: Option<f64>) -> Self {
        self.start_epoch = state.epoch;
        self.stale = state.stale_epochs;
        self.best = best_val_rmse.map(|v| (state.epoch, v));
        self.adam = Adam::from_state(self.config.learning_rate, state);
        self
    }

    /// Where the solves run: the GPU adapter's name, or `cpu (N threads)`.
    pub fn device_name(&self) -> String {
        match self.lanes.first().and_then(|l| l.ws.gpu_adapter()) {
            Some(name) => format!("gpu: {name}"),
            None => format!("cpu ({} threads)", self.lanes.len()),
        }
    }

    /// The model (as trained so far).
    pub fn model(&self) -> &NeuralOdeModel<f32> {
        &self.model
    }

    /// Consumes the trainer, returning the model.
    pub fn into_model(self) -> NeuralOdeModel<f32> {
        self.model
    }

    /// The training error for a failed solve of `batch` (0: validation) of `epoch`: a
    /// non-finite state during training, or a solver failure with its likely cause.
    fn solver_error(&self, e: OdeError, epoch: usize, batch: usize, watch: &UpdateWatch) -> TrainError {
        let saved = self.saved_note();
        match e {
            OdeError::NonFinite { .. } if batch > 0 => TrainError::NonFinite {
                what: "state",
                epoch,
                batch,
                detail: e.to_string(),
                saved,
            },
            source => TrainError::Solver {
                epoch,
                batch,
                cause: watch.cause(&source, self.config.gradient_clip),
                source,
                saved,
            },
        }
    }

    fn saved_note(&self) -> String {
        match (&self.checkpoint, self.best) {
            (Some(c), Some((e, v))) => {
                format!(
                    " The best checkpoint so far (epoch {e}, val_rmse {v:.6}) is at {}.",
                    c.path.display()
                )
            }
            _ => String::new(),
        }
    }

    /// Evaluates loss and gradient of one batch on the thread pool; returns the summed stats.
    fn batch_grad(&mut self, ctx: &[f32], tgt: &[f32], rows: usize, grad: &mut [f32]) -> Result<LossStats, OdeError> {
        let c = self.model.config();
        let (cw, tw) = (c.context_len * c.input_dim, c.horizon * c.outputs());
        let denom = rows * tw;
        let lanes_n = self.lanes.len().min(rows);
        let per = rows.div_ceil(lanes_n);
        let model = &self.model;
        let lanes = &mut self.lanes[..lanes_n];
        self.pool.install(|| {
            lanes.par_iter_mut().enumerate().for_each(|(i, lane)| {
                let (lo, hi) = (i * per, ((i + 1) * per).min(rows));
                lane.grad.fill(0.0);
                lane.err = None;
                lane.stats = LossStats::default();
                if lo >= hi {
                    return;
                }
                match model.loss_and_grad(
                    &mut lane.ws,
                    &ctx[lo * cw..hi * cw],
                    &tgt[lo * tw..hi * tw],
                    denom,
                    &mut lane.grad,
                ) {
                    Ok(s) => lane.stats = s,
                    Err(e) => lane.err = Some(e),
                }
            })
        });
        grad.fill(0.0);
        let mut st = LossStats::default();
        for lane in lanes.iter_mut() {
            if let Some(e) = lane.err.take() {
                return Err(e);
            }
            for (g, l) in grad.iter_mut().zip(&lane.grad) {
                *g += *l;
            }
            st.sse += lane.stats.sse;
            st.nfe_forward += lane.stats.nfe_forward;
            st.nfe_backward += lane.stats.nfe_backward;
            st.accepted += lane.stats.accepted;
            st.rejected += lane.stats.rejected;
        }
        st.loss = st.sse / denom as f64;
        Ok(st)
    }

    /// Validation: RMSE (normalised) and per-target RMSE in data units, on the thread pool.
    pub fn evaluate(&mut self, split: &Split) -> Result<(f64, Vec<f64>), OdeError> {
        let mut acc = vec![vec![0.0f64; self.model.config().outputs()]; self.lanes.len()];
        let mut round = 0;
        while self.eval_round(split, round, &mut acc)? {
            round += 1;
        }
        Ok(self.eval_finish(split, &acc))
    }

    /// Validation round `round` of [`Self::evaluate`]: lane `i` adds the squared errors of chunk
    /// `round · lanes + i` (`eval_batch_size` windows) to `acc[i]`, so every lane sums its
    /// chunks in the same order whether or not the rounds are interleaved with callbacks.
    /// Returns whether windows are left for another round.
    fn eval_round(&mut self, split: &Split, round: usize, acc: &mut [Vec<f64>]) -> Result<bool, OdeError> {
        let c = self.model.config().clone();
        let (cw, tw, o) = (c.context_len * c.input_dim, c.horizon * c.outputs(), c.outputs());
        let n = split.num_windows();
        let chunk = self.config.eval_batch_size.max(1);
        let lanes_n = self.lanes.len();
        let model = &self.model;
        let lanes = &mut self.lanes;
        let results: Vec<Result<(), OdeError>> = self.pool.install(|| {
            lanes
                .par_iter_mut()
                .zip(acc.par_iter_mut())
                .enumerate()
                .map(|(i, (lane, acc))| {
                    let start = (round * lanes_n + i) * chunk;
                    if start >= n {
                        return Ok(());
                    }
                    let m = chunk.min(n - start);
                    let idx: Vec<usize> = (start..start + m).collect();
                    let (mut ctx, mut tgt, mut pred) =
                        (vec![0.0f32; m * cw], vec![0.0f32; m * tw], vec![0.0f32; m * tw]);
                    split.fill_batch(&idx, &mut ctx, &mut tgt);
                    model.predict_into(&mut lane.ws, &ctx, &mut pred)?;
                    for (k, (p, t)) in pred.iter().zip(&tgt).enumerate() {
                        let e = (*p - *t) as f64;
                        acc[k % o] += e * e;
                    }
                    Ok(())
                })
                .collect()
        });
        results.into_iter().collect::<Result<(), _>>()?;
        Ok((round + 1) * lanes_n * chunk < n)
    }

    /// The validation RMSE (normalised) and per-target RMSE in data units from the lanes'
    /// squared-error sums.
    fn eval_finish(&self, split: &Split, acc: &[Vec<f64>]) -> (f64, Vec<f64>) {
        let c = self.model.config();
        let o = c.outputs();
        let mut per_target = vec![0.0f64; o];
        for lane in acc {
            for (a, v) in per_target.iter_mut().zip(lane) {
                *a += v;
            }
        }
        let count = (split.num_windows() * c.horizon) as f64;
        let rmse = (per_target.iter().sum::<f64>() / (count * o as f64)).sqrt();
        let data_units = per_target
            .iter()
            .enumerate()
            .map(|(j, s)| (s / count).sqrt() * self.target_std.get(j).copied().unwrap_or(1.0))
            .collect();
        (rmse, data_units)
    }

    /// Validation inside `fit`: [`Self::evaluate`] with the `on_progress` callback after every
    /// round; `None` when the callback asked to stop.
    fn validate(&mut self, val: &Split, epoch: usize) -> Result<Option<(f64, Vec<f64>)>, OdeError> {
        let mut acc = vec![vec![0.0f64; self.model.config().outputs()]; self.lanes.len()];
        let chunk = self.config.eval_batch_size.max(1) * self.lanes.len();
        let mut round = 0;
        loop {
            let more = self.eval_round(val, round, &mut acc)?;
            round += 1;
            if let Some(p) = self.on_progress.as_mut() {
                let done = (round * chunk).min(val.num_windows());
                let at = Progress::Validation {
                    epoch,
                    done,
                    total: val.num_windows(),
                };
                if p(at).is_break() {
                    return Ok(None);
                }
            }
            if !more {
                return Ok(Some(self.eval_finish(val, &acc)));
            }
        }
    }

    /// Trains for the configured epochs (or until early stopping) and returns the history.
    pub fn fit(&mut self, train: &Split, val: &Split) -> Result<History, TrainError> {
        let c = self.model.config().clone();
        check_shapes(&c, train)?;
        self.log_params(&c);
        self.log_baselines();
        let mut bufs = BatchBuffers::new(&c, self.config.batch_size, self.model.num_params());
        let mut order: Vec<usize> = (0..train.num_windows()).collect();
        let mut history = History {
            best: self.best,
            ..History::default()
        };
        let mut watch = UpdateWatch::default();
        for epoch in self.start_epoch + 1..=self.config.epochs {
            let epoch_start = Instant::now();
            self.epoch_order(epoch, &mut order)?;
            watch.new_epoch();
            let Some(mut m) = self.train_epoch(epoch, train, &order, &mut bufs, &mut watch)? else {
                history.stopped_by_callback = true;
                return Ok(history);
            };
            let validated = self
                .validate(val, epoch)
                .map_err(|e| self.solver_error(e, epoch, 0, &watch))?;
            let Some((rmse, units)) = validated else {
                history.stopped_by_callback = true;
                return Ok(history);
            };
            m.val_rmse = rmse;
            m.val_rmse_data_units = units;
            m.seconds = epoch_start.elapsed().as_secs_f64();
            self.end_epoch(epoch, &mut m)?;
            history.best = self.best;
            let stop = self.stop_when.as_mut().is_some_and(|f| f(epoch, &m));
            history.epochs.push(m);
            if stop {
                history.stopped_by_callback = true;
                break;
            }
            if self.config.early_stopping_patience.is_some_and(|p| self.stale >= p) {
                history.stopped_early = true;
                break;
            }
        }
        Ok(history)
    }

    /// Logs the run's parameters to the tracker.
    fn log_params(&mut self, c: &ModelConfig) {
        for (k, v) in [
            ("latent_dim", c.latent_dim.to_string()),
            ("hidden_dim", c.hidden_dim.to_string()),
            ("solver", c.solver.to_string()),
            ("rtol", c.rtol.to_string()),
            ("atol", c.atol.to_string()),
            ("use_adjoint", c.use_adjoint.to_string()),
            ("step_mode", c.step_mode.to_string()),
            ("learning_rate", self.config.learning_rate.to_string()),
            ("batch_size", self.config.batch_size.to_string()),
            ("gradient_clip", format!("{:?}", self.config.gradient_clip)),
            ("seed", self.config.seed.to_string()),
        ] {
            self.tracker.log_param(k, &v);
        }
    }

    /// The order of the training windows in `epoch`: the given one, or a seeded shuffle.
    fn epoch_order(&self, epoch: usize, order: &mut [usize]) -> Result<(), TrainError> {
        match self.config.batch_order.as_ref().and_then(|o| o.get(epoch - 1)) {
            Some(given) => {
                let mut sorted = given.clone();
                sorted.sort_unstable();
                if sorted != (0..order.len()).collect::<Vec<_>>() {
                    return Err(OdeError::InvalidOption {
                        name: "batch_order",
                        value: epoch as f64,
                        reason: "the order given for this epoch is not a permutation of the training windows",
                    }
                    .into());
                }
                order.copy_from_slice(given);
            }
            None => {
                let mut rng =
                    ChaCha8Rng::seed_from_u64(self.config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                order.sort_unstable();
                order.shuffle(&mut rng);
            }
        }
        Ok(())
    }

    /// One pass over the training windows in `order`: a gradient step per batch. `None` when a
    /// progress callback stopped training.
    fn train_epoch(
        &mut self,
        epoch: usize,
        train: &Split,
        order: &[usize],
        bufs: &mut BatchBuffers,
        watch: &mut UpdateWatch,
    ) -> Result<Option<EpochMetrics>, TrainError> {
        let bs = self.config.batch_size;
        let batches = order.len().div_ceil(bs);
        let (cw, tw) = (bufs.cw, bufs.tw);
        let mut m = EpochMetrics {
            epoch,
            ..EpochMetrics::default()
        };
        let (mut loss_sum, mut seen, mut train_secs) = (0.0f64, 0usize, 0.0f64);
        for (bi, idx) in order.chunks(bs).enumerate() {
            let rows = idx.len();
            let (ctx, tgt) = (&mut bufs.ctx[..rows * cw], &mut bufs.tgt[..rows * tw]);
            // The timed window starts before the batch is gathered, as the peers' epochs do.
            let t0 = Instant::now();
            train.fill_batch(idx, ctx, tgt);
            let st = self
                .batch_grad(ctx, tgt, rows, &mut bufs.grad)
                .map_err(|e| self.solver_error(e, epoch, bi + 1, watch))?;
            let norm = grad_norm(&bufs.grad);
            self.check_finite(&st, &bufs.grad, norm, epoch, bi + 1)?;
            clip_to(&mut bufs.grad, norm, self.config.gradient_clip);
            watch.record(st.loss, norm);
            self.adam.step(self.model.params_mut(), &bufs.grad);
            train_secs += t0.elapsed().as_secs_f64();
            loss_sum += st.loss * rows as f64;
            seen += rows;
            let per = rows as f64;
            m.nfe_forward += st.nfe_forward / per;
            m.nfe_backward += st.nfe_backward / per;
            m.accepted_steps += st.accepted / per;
            m.rejected_steps += st.rejected / per;
            m.grad_norm += norm / batches as f64;
            if let Some(p) = self.progress.as_mut() {
                p(epoch, bi + 1, batches, loss_sum / seen as f64);
            }
            if let Some(p) = self.on_progress.as_mut() {
                let at = Progress::Batch {
                    epoch,
                    batch: bi + 1,
                    batches,
                };
                if p(at).is_break() {
                    return Ok(None);
                }
            }
        }
        m.train_loss = loss_sum / seen.max(1) as f64;
        m.train_seconds = train_secs;
        Ok(Some(m))
    }

    /// Stops with a reason when a batch's loss or gradient is not finite, naming the tensor. The
    /// gradient is scanned only when its `norm` is not finite.
    fn check_finite(
        &self,
        st: &LossStats,
        grad: &[f32],
        norm: f64,
        epoch: usize,
        batch: usize,
    ) -> Result<(), TrainError> {
        if !st.loss.is_finite() {
            return Err(TrainError::NonFinite {
                what: "loss",
                epoch,
                batch,
                detail: format!("the batch loss is {}", st.loss),
                saved: self.saved_note(),
            });
        }
        if !norm.is_finite()
            && let Some(i) = grad.iter().position(|g| !g.is_finite())
        {
            let name = self
                .model
                .tensors()
                .iter()
                .rev()
                .find(|t| t.2 <= i)
                .map_or("?", |t| t.0);
            return Err(TrainError::NonFinite {
                what: "gradient",
                epoch,
                batch,
                detail: format!("the gradient of {name} is {}", grad[i]),
                saved: self.saved_note(),
            });
        }
        Ok(())
    }

    /// After validation: refuses a non-finite RMSE, tracks the best epoch, logs the metrics and
    /// the skill, calls the epoch callback and writes the checkpoints.
    fn end_epoch(&mut self, epoch: usize, m: &mut EpochMetrics) -> Result<(), TrainError> {
        let rmse = m.val_rmse;
        if !rmse.is_finite() {
            return Err(TrainError::NonFinite {
                what: "loss",
                epoch,
                batch: 0,
                detail: "the validation RMSE is not finite".into(),
                saved: self.saved_note(),
            });
        }
        let improved = self.best.is_none_or(|(_, b)| rmse < b);
        if improved {
            self.best = Some((epoch, rmse));
            self.stale = 0;
            if self.keep_best {
                self.best_params = Some(self.model.params().to_vec());
            }
        } else {
            self.stale += 1;
        }
        for (k, v) in [
            ("train_loss", m.train_loss),
            ("val_rmse", m.val_rmse),
            ("ode_solver_steps", m.nfe_forward),
            ("nfe_forward", m.nfe_forward),
            ("nfe_backward", m.nfe_backward),
            ("accepted_steps", m.accepted_steps),
            ("rejected_steps", m.rejected_steps),
            ("grad_norm", m.grad_norm),
            ("train_seconds", m.train_seconds),
            ("seconds", m.seconds),
        ] {
            self.tracker.log_metric(k, v, epoch);
        }
        self.score_skill(m);
        if let Some(cb) = self.on_epoch_end.as_mut() {
            cb(epoch, m, &mut *self.tracker);
        }
        self.save_checkpoints(epoch, improved)
    }

    /// Writes the checkpoint when the epoch improved, and `last.safetensors` always.
    fn save_checkpoints(&self, epoch: usize, improved: bool) -> Result<(), TrainError> {
        let Some(target) = &self.checkpoint else {
            return Ok(());
        };
        let mut state = self.adam.state().clone();
        state.epoch = epoch;
        state.stale_epochs = self.stale;
        let mut meta = target.meta.clone();
        meta.model = self.model.config().clone();
        meta.epoch = epoch;
        meta.best_val_rmse = self.best.map(|b| b.1);
        if improved {
            checkpoint::save(&target.path, &self.model, &meta, Some(&state))?;
        }
        // The latest state too, so an interrupted run resumes where it stopped.
        let last = target.path.with_file_name("last.safetensors");
        checkpoint::save(&last, &self.model, &meta, Some(&state))?;
        Ok(())
    }
}

impl NeuralOdeModel<f32> {
    /// A model initialised from `seed` (PyTorch's default Linear init, ChaCha8 stream).
    pub fn seeded(config: crate::ModelConfig, seed: u64) -> Result<Self, OdeError> {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self::new(config, || rng.random::<f64>())
    }

    /// A seeded model shaped for `ds`: its features, targets (and which feature each target
    /// is), context length and horizon come from the data, whatever `config` says about them,
    /// so callers never copy dimensions by hand.
    pub fn for_dataset(config: &ModelConfig, ds: &crate::data::Dataset, seed: u64) -> Result<Self, TrainError> {
        let mut c = config.clone();
        c.fit_to_dataset(ds)?;
        Ok(Self::seeded(c, seed)?)
    }
}

/// The reused buffers of one training batch: contexts, targets and the gradient.
struct BatchBuffers {
    ctx: Vec<f32>,
    tgt: Vec<f32>,
    grad: Vec<f32>,
    /// Context width `C·D` and target width `H·O` of one window.
    cw: usize,
    tw: usize,
}

impl BatchBuffers {
    fn new(c: &ModelConfig, batch_size: usize, params: usize) -> Self {
        let (cw, tw) = (c.context_len * c.input_dim, c.horizon * c.outputs());
        Self {
            ctx: vec![0.0; batch_size * cw],
            tgt: vec![0.0; batch_size * tw],
            grad: vec![0.0; params],
            cw,
            tw,
        }
    }
}

/// Refuses training data whose shapes differ from the model's, naming the dimension.
fn check_shapes(c: &ModelConfig, train: &Split) -> Result<(), TrainError> {
    for (what, expected, got) in [
        (
            "features: the data's feature count vs the model's input_dim",
            c.input_dim,
            train.input_dim(),
        ),
        (
            "targets: the data's target count vs the model's output_dim",
            c.outputs(),
            train.output_dim(),
        ),
        (
            "context_len: the data's context length vs the model's",
            c.context_len,
            train.context_len(),
        ),
        ("horizon: the data's horizon vs the model's", c.horizon, train.horizon()),
    ] {
        if expected != got {
            return Err(OdeError::ShapeMismatch { what, expected, got }.into());
        }
    }
    Ok(())
}
