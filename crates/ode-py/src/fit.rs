//! Training from Python: the trainer runs with the GIL released; it takes the GIL back briefly
//! to call the epoch callback and, a few times a second, to let Ctrl-C raise
//! `KeyboardInterrupt`. An exception from either stops training after the current batch.

use crate::data::Windows;
use crate::errors;
use crate::model::Model;
use ode_train::checkpoint::CheckpointMeta;
use ode_train::trainer::{CheckpointTarget, Progress};
use ode_train::{EpochMetrics, History, MemoryTracker, NeuralOdeModel, TrainConfig, TrainError, Trainer};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::cell::RefCell;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often training looks for a pending Ctrl-C (it needs the GIL for that).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// What a training run needs besides the model, owned so it can leave the GIL.
struct Job {
    train: Windows,
    val: Windows,
    config: TrainConfig,
    on_epoch: Option<Py<PyAny>>,
    checkpoint: Option<(PathBuf, CheckpointMeta)>,
    baselines: Option<ode_train::Baselines>,
}

/// The epoch's metrics as the dict a tracker receives (`ode_steps` = accepted steps).
fn metrics<'py>(py: Python<'py>, m: &EpochMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("train_loss", m.train_loss)?;
    d.set_item("val_rmse", m.val_rmse)?;
    d.set_item("nfe_forward", m.nfe_forward)?;
    d.set_item("nfe_backward", m.nfe_backward)?;
    d.set_item("ode_steps", m.accepted_steps)?;
    d.set_item("rejected_steps", m.rejected_steps)?;
    d.set_item("grad_norm", m.grad_norm)?;
    d.set_item("seconds", m.seconds)?;
    d.set_item("train_seconds", m.train_seconds)?;
    if let Some(s) = m.skill {
        d.set_item("skill", s)?;
    }
    Ok(d)
}

/// The model to train: the stored weights, or weights drawn for the data's shapes (as
/// `ode train` draws them: the model's seed, else the trainer's).
fn starting_model(model: &mut Model, train: &Windows, seed: u64) -> PyResult<NeuralOdeModel<f32>> {
    if model.params.is_some() {
        return model.built();
    }
    let seed = model.seed.unwrap_or(seed);
    let built = match train.dataset() {
        Some(ds) => NeuralOdeModel::for_dataset(&model.config, ds, seed).map_err(errors::train)?,
        None => {
            let s = train.split();
            let mut c = model.config.clone();
            (c.input_dim, c.output_dim, c.context_len, c.horizon) =
                (s.input_dim(), s.output_dim(), s.context_len(), s.horizon());
            NeuralOdeModel::seeded(c, seed).map_err(errors::ode)?
        }
    };
    model.store(&built);
    Ok(built)
}

/// Trains `model` on `train`, validating on `val`, with a JSON `TrainConfig`; calls
/// `on_epoch(epoch, metrics)` after every epoch and saves the best and last checkpoints in
/// `checkpoint_dir` when given. Returns the history as JSON, with a `warning` when a baseline
/// beats the best epoch (on a dataset's val split, where baselines are computed). The model
/// keeps the weights reached, also when training stops with an exception.
#[pyfunction]
#[pyo3(signature = (model, train, val, config, on_epoch=None, checkpoint_dir=None))]
pub fn fit(
    py: Python<'_>,
    model: &Bound<'_, Model>,
    train: &Windows,
    val: &Windows,
    config: &str,
    on_epoch: Option<Py<PyAny>>,
    checkpoint_dir: Option<PathBuf>,
) -> PyResult<String> {
    let config: TrainConfig = serde_json::from_str(config).map_err(|e| errors::config("training settings", e))?;
    let start = starting_model(&mut model.borrow_mut(), train, config.seed)?;
    let same_data = train
        .dataset()
        .zip(val.dataset())
        .is_some_and(|(a, b)| std::sync::Arc::ptr_eq(a, b));
    let meta = match train.dataset() {
        Some(ds) => CheckpointMeta::for_dataset(start.config(), ds),
        None => CheckpointMeta::for_windows(start.config()),
    };
    let baselines = match train.dataset() {
        Some(ds) if same_data && val.split().name() == "val" => {
            Some(ode_train::baselines::for_dataset(ds, None).map_err(errors::data)?)
        }
        _ => None,
    };
    if let Some(dir) = &checkpoint_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot create {}: {e}", dir.display())))?;
    }
    let kept_baselines = baselines.clone();
    let job = Job {
        train: train.clone(),
        val: val.clone(),
        config,
        on_epoch,
        checkpoint: checkpoint_dir.map(|d| (d.join("checkpoint.safetensors"), meta.clone())),
        baselines,
    };
    let (trained, result, raised) = py.detach(move || run(start, job));
    let mut m = model.borrow_mut();
    m.store(&trained);
    m.meta = Some(CheckpointMeta {
        model: trained.config().clone(),
        ..meta
    });
    if let Some(e) = raised {
        return Err(e);
    }
    let history = result.map_err(errors::train)?;
    m.ode_solver_steps = history.epochs.last().map(|e| e.accepted_steps);
    let mut out = serde_json::to_value(&history).map_err(|e| errors::config("history", e))?;
    if let Some(w) = kept_baselines.and_then(|b| warning(&history, &b)) {
        out["warning"] = w.into();
    }
    Ok(out.to_string())
}

/// The warning to give when a baseline beats the best epoch on the validation windows.
fn warning(h: &History, b: &ode_train::Baselines) -> Option<String> {
    let (epoch, rmse) = h.best?;
    let skill = h.epochs.iter().find(|e| e.epoch == epoch).and_then(|e| e.skill);
    ode_train::verdict::best_epoch_warning(epoch, rmse, skill, b)
}

/// The training loop without the GIL: the model reached, the trainer's result, and the
/// exception that stopped it (the callback's, or `KeyboardInterrupt`).
fn run(model: NeuralOdeModel<f32>, job: Job) -> (NeuralOdeModel<f32>, Result<History, TrainError>, Option<PyErr>) {
    let raised: RefCell<Option<PyErr>> = RefCell::new(None);
    let on_epoch = job.on_epoch;
    let mut last_check = Instant::now();
    let mut tracker = MemoryTracker::default();
    let fallback = model.clone();
    let mut trainer = match Trainer::new(model, job.config, &mut tracker) {
        Ok(t) => t,
        Err(e) => return (fallback, Err(e), None),
    };
    if let Some((path, meta)) = job.checkpoint {
        trainer = trainer.with_checkpoint(CheckpointTarget { path, meta });
    }
    if let Some(b) = job.baselines {
        trainer = trainer.with_baselines(b);
    }
    let mut trainer = trainer
        .on_epoch_end(|epoch, m, _| {
            let Some(cb) = &on_epoch else { return };
            Python::attach(|py| {
                if let Err(e) = metrics(py, m).and_then(|d| cb.call1(py, (epoch, d))) {
                    raised.borrow_mut().get_or_insert(e);
                }
            });
        })
        .stop_when(|_, _| raised.borrow().is_some())
        .on_progress(|p| {
            let due = matches!(p, Progress::Batch { .. }) && last_check.elapsed() >= SIGNAL_CHECK;
            if due {
                last_check = Instant::now();
                if let Err(e) = Python::attach(|py| py.check_signals()) {
                    raised.borrow_mut().get_or_insert(e);
                }
            }
            if raised.borrow().is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
    let result = trainer.fit(job.train.split(), job.val.split());
    let model = trainer.into_model();
    (model, result, raised.into_inner())
}
