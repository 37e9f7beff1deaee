//! Hyperparameter search from Python: the same studies, strategies and Optuna-readable stores
//! as `ode search`, run by local worker threads with the GIL released.

use crate::data::Data;
use crate::errors;
use ode_search::driver::{DataFn, TrialOutcome, best_trial_run};
use ode_search::pool::{LocalPool, PoolEvents, Progress, held_trials, outcome_summary};
use ode_search::store::TrialRecord;
use ode_search::{SearchConfig, SearchSpace, Strategy, TrialState, enqueue_study, leaderboard};
use ode_train::RunConfig;
use ode_train::data::Dataset;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// TOML text of a JSON object (Python dicts reach Rust as JSON).
fn toml_text(json: &str, what: &str) -> PyResult<String> {
    let value: toml::Value = serde_json::from_str(json).map_err(|e| errors::config(what, e))?;
    toml::to_string(&value).map_err(|e| errors::config(what, e))
}

/// How the study picks its trials, from the Python arguments.
fn strategy(name: &str, trials: usize, reduction_factor: usize, min_epochs: usize) -> PyResult<Strategy> {
    match name {
        "grid" => Ok(Strategy::Grid),
        "random" => Ok(Strategy::Random { trials }),
        "asha" => Ok(Strategy::Asha {
            trials,
            reduction_factor,
            min_epochs,
        }),
        _ => Err(PyValueError::new_err(format!(
            "strategy must be one of grid, random, asha; got '{name}'"
        ))),
    }
}

/// A study's settings from the Python arguments: the space (TOML text or the guide's default),
/// the fixed training settings (JSON), the strategy and seed.
pub struct Study {
    /// Study name.
    pub name: String,
    /// `grid`, `random` or `asha`.
    pub strategy: String,
    /// Trials of random and ASHA searches.
    pub trials: usize,
    /// ASHA's reduction factor and first rung.
    pub asha: (usize, usize),
    /// Search-space TOML; `None` for the guide's default space.
    pub space_toml: Option<String>,
    /// The search space as JSON (a Python dict), when not given as TOML.
    pub space_json: Option<String>,
    /// Fixed settings as JSON (`epochs`, `batch_size`, …).
    pub base_json: String,
    /// Study seed.
    pub seed: u64,
}

impl Study {
    fn config(&self, workers: usize) -> PyResult<SearchConfig> {
        let text = match (&self.space_toml, &self.space_json) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(j)) => Some(toml_text(j, "search space")?),
            (None, None) => None,
        };
        let space = match text {
            Some(t) => SearchSpace::from_toml(&t, "space").map_err(|e| PyValueError::new_err(e.to_string()))?,
            None => SearchSpace::guide_default(),
        };
        let base = RunConfig::from_toml(&toml_text(&self.base_json, "training settings")?)
            .map_err(|e| errors::config("training settings", e))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(SearchConfig {
            study: self.name.clone(),
            strategy: strategy(&self.strategy, self.trials, self.asha.0, self.asha.1)?,
            space,
            base,
            seed: self.seed,
            lease_seconds: 120.0,
            max_attempts: 3,
            threads_per_trial: (cores / workers).max(1),
            trial_timeout: None,
            cancel: Some(Arc::new(AtomicBool::new(false))),
            trial_tracker: None,
        })
    }
}

/// What `search` prints while its pool runs, and the Ctrl-C that stopped it, if one did.
#[derive(Default)]
struct PyEvents {
    interrupted: Mutex<Option<PyErr>>,
}

impl PoolEvents for PyEvents {
    /// One line per finished (or abandoned) trial on stderr, as `ode search` prints them.
    fn trial_ended(&self, o: &TrialOutcome, _: &Progress) {
        eprintln!(
            "trial {:>3} {} ({} epochs, {:.1}s)",
            o.number,
            outcome_summary(o),
            o.epochs,
            o.seconds
        );
    }

    fn waiting_for(&self, held: &[&TrialRecord], waited: Duration) {
        eprintln!(
            "waiting for {} unfinished trials other workers hold: {} ({:.0}s waited; Ctrl-C stops waiting)",
            held.len(),
            held_trials(held),
            waited.as_secs_f64()
        );
    }

    /// A pending Ctrl-C (checked on the calling thread, which Python signals reach).
    fn stop_requested(&self) -> bool {
        match Python::attach(|py| py.check_signals()) {
            Ok(()) => false,
            Err(e) => {
                *self.interrupted.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                true
            }
        }
    }
}

/// Runs `workers` local workers on the study until it has no trial left, waiting for those
/// other workers hold (as `ode search` does), or until Ctrl-C (then the workers stop within a
/// batch, and the `KeyboardInterrupt` comes back); the study's trials.
fn run_study(
    cfg: &SearchConfig,
    data: &DataFn,
    storage: &str,
    workers: usize,
) -> Result<(Vec<TrialRecord>, Option<PyErr>), String> {
    let mut store = ode_search::open_store(storage)?;
    let study = enqueue_study(store.as_mut(), cfg).map_err(|e| e.to_string())?;
    let pool = LocalPool {
        cfg,
        data,
        storage,
        study,
        workers,
    };
    let events = PyEvents::default();
    pool.run_to_the_end(store.as_mut(), 0, None, &events)
        .map_err(|e| e.to_string())?;
    let interrupted = events.interrupted.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok((store.trials(study).map_err(|e| e.to_string())?, interrupted))
}

/// A leaderboard row as JSON: number, state, value, params, seconds, Pareto flag, failure.
fn row(e: &ode_search::driver::Entry) -> serde_json::Value {
    serde_json::json!({
        "number": e.trial.number,
        "state": e.trial.state.optuna_name(),
        "val_rmse": e.trial.value,
        "params": e.trial.params,
        "train_seconds": e.train_seconds,
        "pareto": e.pareto,
        "skill": e.trial.user_attrs.get("skill"),
        "fail_reason": e.trial.user_attrs.get("fail_reason"),
    })
}

/// Runs a study on `data` in the store at `storage` (`sqlite:PATH` or `postgresql://…`);
/// returns the leaderboard (JSON list, best first), the best trial's full run settings
/// (JSON object, `None` when no trial completed) and the warning to give when a baseline beats
/// the best trial.
#[pyfunction]
#[pyo3(signature = (data, storage, study, strategy, trials, space_toml, space_json, base_json, seed=0, workers=None, reduction_factor=3, min_epochs=1))]
pub fn search(
    py: Python<'_>,
    data: &Data,
    storage: &str,
    study: String,
    strategy: String,
    trials: usize,
    space_toml: Option<String>,
    space_json: Option<String>,
    base_json: String,
    seed: u64,
    workers: Option<usize>,
    reduction_factor: usize,
    min_epochs: usize,
) -> PyResult<(String, Option<String>, Option<String>)> {
    let workers = workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let study = Study {
        name: study,
        strategy,
        trials,
        asha: (reduction_factor, min_epochs),
        space_toml,
        space_json,
        base_json,
        seed,
    };
    let cfg = study.config(workers)?;
    let (table, source) = (data.table.clone(), data.inner.source.clone());
    let data_fn: DataFn = Arc::new(move |dc| Dataset::from_table(&table, dc, &source).map_err(|e| e.to_string()));
    let (trials, interrupted) = py
        .detach(|| run_study(&cfg, &data_fn, storage, workers))
        .map_err(PyRuntimeError::new_err)?;
    if let Some(e) = interrupted {
        let done = trials
            .iter()
            .filter(|t| t.state != TrialState::Waiting && t.state != TrialState::Running);
        eprintln!(
            "search interrupted: {} finished trials are in study '{}'; unfinished ones are taken over when the \
             study runs again (a running one once its lease ends)",
            done.count(),
            cfg.study
        );
        return Err(e);
    }
    let board = leaderboard(&trials);
    let rows: Vec<serde_json::Value> = board.iter().map(row).collect();
    let best = board
        .first()
        .filter(|e| e.trial.state == TrialState::Complete)
        .and_then(|e| best_trial_run(&cfg, &e.trial))
        .map(|r| serde_json::to_string(&r))
        .transpose()
        .map_err(|e| errors::config("best settings", e))?;
    let warning = ode_search::leaderboard::best_trial_warning(&trials);
    Ok((serde_json::Value::Array(rows).to_string(), best, warning))
}
