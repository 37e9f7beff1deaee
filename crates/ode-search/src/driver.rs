//! Running a study: enqueue its trials, let workers claim and train them, prune with
//! asynchronous successive halving, and read back the leaderboard.

use crate::space::{Distribution, SearchSpace, to_run_config};
use crate::store::{ParamDistribution, StoreError, StudyStore, TrialRecord, TrialState};
use crate::strategy::{grid, random_trial};
use ode_train::data::{DataConfig, Dataset};
use ode_train::{MemoryTracker, NeuralOdeModel, RunConfig, Trainer};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// How a study chooses and stops trials.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// Every combination of the space, in a fixed order.
    Grid,
    /// `trials` seeded random draws.
    Random {
        /// Number of trials.
        trials: usize,
    },
    /// `trials` seeded random draws, stopped early by asynchronous successive halving: at
    /// epochs `min_epochs · η^i` a trial continues only if its `val_rmse` is in the best `1/η`
    /// of the trials that reached that epoch.
    Asha {
        /// Number of trials.
        trials: usize,
        /// Reduction factor η (≥ 2).
        reduction_factor: usize,
        /// First rung, in epochs.
        min_epochs: usize,
    },
}

/// A study's definition: what to vary, the fixed settings, the seed and the worker settings.
#[derive(Debug, Clone)]
pub struct SearchConfig {
    /// Study name in the store.
    pub study: String,
    /// Trial selection.
    pub strategy: Strategy,
    /// The search space.
    pub space: SearchSpace,
    /// Settings that are not searched (e.g. `epochs`), as for `ode train`.
    pub base: RunConfig,
    /// Study seed: trial `k`'s parameters and training seed derive from it and `k`.
    pub seed: u64,
    /// Seconds without a heartbeat after which a running trial is handed to another worker.
    pub lease_seconds: f64,
    /// Claims after which a trial whose workers keep dying is failed.
    pub max_attempts: u32,
    /// Training threads per trial.
    pub threads_per_trial: usize,
}

/// Builds the dataset a trial trains on, from its data settings.
pub type DataFn = Arc<dyn Fn(&DataConfig) -> Result<Dataset, String> + Send + Sync>;

/// Per-trial progress reported by a worker.
#[derive(Debug, Clone)]
pub struct TrialOutcome {
    /// Trial number.
    pub number: u64,
    /// Final state.
    pub state: TrialState,
    /// Best validation RMSE (complete and pruned trials).
    pub value: Option<f64>,
    /// Epochs trained.
    pub epochs: usize,
    /// Seconds of training.
    pub seconds: f64,
    /// Why it failed.
    pub reason: Option<String>,
}

fn store_dist(d: &Distribution) -> Option<ParamDistribution> {
    Some(match d {
        Distribution::Categorical(c) => ParamDistribution::Categorical(c.clone()),
        Distribution::Int { low, high, step, log } => ParamDistribution::Int {
            low: *low,
            high: *high,
            step: *step,
            log: *log,
        },
        Distribution::Float { low, high, log, .. } => ParamDistribution::Float {
            low: *low,
            high: *high,
            log: *log,
        },
        Distribution::Fixed(v) => ParamDistribution::Categorical(vec![v.clone()]),
    })
}

/// Opens (or creates) the study and enqueues its trials; idempotent, so re-running a search on
/// an existing study keeps its finished trials and only adds what is missing.
pub fn enqueue_study(store: &mut dyn StudyStore, cfg: &SearchConfig) -> Result<i64, StoreError> {
    let study = store.open_study(&cfg.study)?;
    let dists: BTreeMap<String, ParamDistribution> = cfg
        .space
        .params
        .iter()
        .filter_map(|(k, d)| store_dist(d).map(|s| (k.clone(), s)))
        .collect();
    let trials = match cfg.strategy {
        Strategy::Grid => grid(&cfg.space).map_err(|e| StoreError::Backend {
            location: "search space".into(),
            reason: e.to_string(),
        })?,
        Strategy::Random { trials } | Strategy::Asha { trials, .. } => (0..trials as u64)
            .map(|k| random_trial(&cfg.space, cfg.seed, k).0)
            .collect(),
    };
    for (k, p) in trials.iter().enumerate() {
        store.enqueue(study, k as u64, p, &dists)?;
    }
    Ok(study)
}

/// Key of the study attribute holding its definition.
pub const DEFINITION_KEY: &str = "ode:definition";

/// Saves the study's definition (strategy, space, fixed settings, seed, limits) and the
/// caller's description of its data as a study attribute, so `ode worker` can join from
/// another machine.
pub fn save_definition(
    store: &mut dyn StudyStore,
    study: i64,
    cfg: &SearchConfig,
    data: &serde_json::Value,
) -> Result<(), StoreError> {
    let strategy = match cfg.strategy {
        Strategy::Grid => serde_json::json!({ "kind": "grid" }),
        Strategy::Random { trials } => serde_json::json!({ "kind": "random", "trials": trials }),
        Strategy::Asha {
            trials,
            reduction_factor,
            min_epochs,
        } => serde_json::json!({
            "kind": "asha", "trials": trials, "reduction_factor": reduction_factor, "min_epochs": min_epochs
        }),
    };
    let def = serde_json::json!({
        "strategy": strategy,
        "space": cfg.space.to_toml(),
        "base": cfg.base.to_toml(),
        "seed": cfg.seed,
        "lease_seconds": cfg.lease_seconds,
        "max_attempts": cfg.max_attempts,
        "data": data,
    });
    store.set_study_attr(study, DEFINITION_KEY, &def)
}

/// Reads a study's definition back: the search configuration (with `threads_per_trial` for this
/// machine) and the data description saved with it.
pub fn load_definition(
    store: &mut dyn StudyStore,
    study: i64,
    threads_per_trial: usize,
) -> Result<(SearchConfig, serde_json::Value), String> {
    let attrs = store.study_attrs(study).map_err(|e| e.to_string())?;
    let def = attrs
        .get(DEFINITION_KEY)
        .ok_or("this study has no saved definition (was it created by `ode search`?)")?;
    let get = |k: &str| def.get(k).ok_or(format!("the study definition lacks '{k}'"));
    let st = get("strategy")?;
    let num = |k: &str| {
        st.get(k)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .ok_or(format!("strategy lacks '{k}'"))
    };
    let strategy = match st.get("kind").and_then(|v| v.as_str()) {
        Some("grid") => Strategy::Grid,
        Some("random") => Strategy::Random { trials: num("trials")? },
        Some("asha") => Strategy::Asha {
            trials: num("trials")?,
            reduction_factor: num("reduction_factor")?,
            min_epochs: num("min_epochs")?,
        },
        other => return Err(format!("unknown strategy {other:?} in the study definition")),
    };
    let text = |k: &str| get(k).and_then(|v| v.as_str().map(String::from).ok_or(format!("'{k}' is not text")));
    Ok((
        SearchConfig {
            study: String::new(),
            strategy,
            space: SearchSpace::from_toml(&text("space")?, "study definition").map_err(|e| e.to_string())?,
            base: RunConfig::from_toml(&text("base")?)?,
            seed: get("seed")?.as_u64().ok_or("seed is not a number")?,
            lease_seconds: get("lease_seconds")?.as_f64().ok_or("lease_seconds is not a number")?,
            max_attempts: get("max_attempts")?.as_u64().ok_or("max_attempts is not a number")? as u32,
            threads_per_trial,
        },
        get("data")?.clone(),
    ))
}

/// The training seed of trial `k` (derived from the study seed and `k` alone).
pub fn trial_seed(cfg: &SearchConfig, k: u64) -> u64 {
    random_trial(&cfg.space, cfg.seed, k).1
}

/// Whether a trial at `epoch` with `value` should stop under successive halving, given the
/// values other trials reported at that epoch.
pub fn asha_prunes(epoch: usize, value: f64, others: &[f64], reduction_factor: usize, min_epochs: usize) -> bool {
    let (eta, min) = (reduction_factor.max(2), min_epochs.max(1));
    // Is `epoch` a rung, min·η^i?
    let mut rung = min;
    while rung < epoch {
        rung *= eta;
    }
    if rung != epoch {
        return false;
    }
    let n = others.len() + 1;
    let keep = n.div_ceil(eta);
    let better = others.iter().filter(|v| **v < value).count();
    better >= keep
}

/// Claims trials of `study` until none is waiting, training each; returns what happened to each.
pub fn run_worker<S: StudyStore + ?Sized>(
    store: &mut S,
    study: i64,
    cfg: &SearchConfig,
    data: &DataFn,
    worker: &str,
    mut on_outcome: impl FnMut(&TrialOutcome),
) -> Result<Vec<TrialOutcome>, StoreError> {
    let mut outcomes = Vec::new();
    while let Some(claim) = store.claim(study, worker, cfg.lease_seconds, cfg.max_attempts)? {
        let started = Instant::now();
        let (id, attempt, number) = (claim.trial_id, claim.attempt, claim.number);
        let cell = RefCell::new(&mut *store);
        let result = run_trial(&cell, study, cfg, data, id, attempt, number, &claim.params);
        let store = cell.into_inner();
        let seconds = started.elapsed().as_secs_f64();
        let outcome = match result {
            Ok((state, value, epochs, train_seconds, nfe)) => {
                store.set_attr(id, attempt, "train_seconds", &train_seconds.into())?;
                store.set_attr(id, attempt, "nfe_forward", &nfe.0.into())?;
                store.set_attr(id, attempt, "nfe_backward", &nfe.1.into())?;
                store.set_attr(id, attempt, "epochs", &epochs.into())?;
                store.finish(
                    id,
                    attempt,
                    state,
                    if state == TrialState::Complete { value } else { None },
                )?;
                TrialOutcome {
                    number,
                    state,
                    value,
                    epochs,
                    seconds,
                    reason: None,
                }
            }
            Err(TrialError::Store(e)) => return Err(e),
            Err(TrialError::Failed(reason)) => {
                store.set_attr(id, attempt, "fail_reason", &reason.clone().into())?;
                store.finish(id, attempt, TrialState::Fail, None)?;
                TrialOutcome {
                    number,
                    state: TrialState::Fail,
                    value: None,
                    epochs: 0,
                    seconds,
                    reason: Some(reason),
                }
            }
        };
        on_outcome(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

enum TrialError {
    Store(StoreError),
    Failed(String),
}

type TrialResult = (TrialState, Option<f64>, usize, f64, (f64, f64));

#[allow(clippy::too_many_arguments)]
fn run_trial<S: StudyStore + ?Sized>(
    store: &RefCell<&mut S>,
    study: i64,
    cfg: &SearchConfig,
    data: &DataFn,
    id: i64,
    attempt: u32,
    number: u64,
    params: &crate::strategy::Params,
) -> Result<TrialResult, TrialError> {
    let searched = to_run_config(params).map_err(|e| TrialError::Failed(format!("bad configuration: {e}")))?;
    let mut run = cfg.base.clone().merged(&searched);
    run.seed = Some(trial_seed(cfg, number));
    run.threads = Some(cfg.threads_per_trial.max(1));
    let r = run.resolve(None);
    let ds = data(&r.data).map_err(|e| TrialError::Failed(format!("data: {e}")))?;
    let mut mc = r.model.clone();
    mc.input_dim = ds.input_dim();
    mc.output_dim = ds.output_dim();
    mc.context_len = ds.context_len;
    mc.horizon = ds.horizon;
    let model =
        NeuralOdeModel::seeded(mc, r.train.seed).map_err(|e| TrialError::Failed(format!("bad configuration: {e}")))?;
    let mut tracker = MemoryTracker::default();
    let store_err: RefCell<Option<StoreError>> = RefCell::new(None);
    let keep = |res: Result<(), StoreError>| {
        if let Err(e) = res {
            store_err.borrow_mut().get_or_insert(e);
        }
    };
    let history = {
        let trainer = Trainer::new(model, r.train.clone(), &mut tracker)
            .map_err(|e| TrialError::Failed(format!("bad configuration: {e}")))?;
        let mut trainer = trainer
            .on_batch_end(|_, batch, _, _| {
                if batch % 32 == 0 {
                    keep(store.borrow_mut().heartbeat(id, attempt));
                }
            })
            .stop_when(|epoch, m| {
                keep(store.borrow_mut().report(id, attempt, epoch as u64, m.val_rmse));
                keep(store.borrow_mut().heartbeat(id, attempt));
                if store_err.borrow().is_some() {
                    return true;
                }
                let Strategy::Asha {
                    reduction_factor,
                    min_epochs,
                    ..
                } = cfg.strategy
                else {
                    return false;
                };
                let others: Vec<f64> = match store.borrow_mut().trials(study) {
                    Ok(ts) => ts
                        .iter()
                        .filter(|t| t.trial_id != id)
                        .filter_map(|t| t.intermediate.get(&(epoch as u64)).copied())
                        .collect(),
                    Err(e) => {
                        keep(Err(e));
                        return true;
                    }
                };
                asha_prunes(epoch, m.val_rmse, &others, reduction_factor, min_epochs)
            });
        trainer.fit(&ds.train, &ds.val)
    };
    if let Some(e) = store_err.into_inner() {
        return Err(TrialError::Store(e));
    }
    let h = history.map_err(|e| TrialError::Failed(e.to_string()))?;
    let state = if h.stopped_by_callback {
        TrialState::Pruned
    } else {
        TrialState::Complete
    };
    let train_seconds = h.epochs.iter().map(|e| e.train_seconds).sum();
    let nfe = (
        h.epochs.iter().map(|e| e.nfe_forward).sum(),
        h.epochs.iter().map(|e| e.nfe_backward).sum(),
    );
    Ok((state, h.best_val_rmse(), h.epochs.len(), train_seconds, nfe))
}

/// A row of the leaderboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The trial.
    pub trial: TrialRecord,
    /// Its training seconds (user attribute), if recorded.
    pub train_seconds: Option<f64>,
    /// Whether no other complete trial is both faster and at least as accurate.
    pub pareto: bool,
}

/// Complete trials best first (lowest `val_rmse`), with the Pareto front of training seconds
/// against `val_rmse` marked; other trials follow by number.
pub fn leaderboard(trials: &[TrialRecord]) -> Vec<Entry> {
    let secs = |t: &TrialRecord| t.user_attrs.get("train_seconds").and_then(|v| v.as_f64());
    let complete: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some())
        .collect();
    let mut rows: Vec<Entry> = complete
        .iter()
        .map(|t| {
            let (v, s) = (t.value.unwrap_or(f64::INFINITY), secs(t).unwrap_or(f64::INFINITY));
            let dominated = complete.iter().any(|o| {
                let (ov, os) = (o.value.unwrap_or(f64::INFINITY), secs(o).unwrap_or(f64::INFINITY));
                o.trial_id != t.trial_id && ov <= v && os <= s && (ov < v || os < s)
            });
            Entry {
                trial: (*t).clone(),
                train_seconds: secs(t),
                pareto: !dominated,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        a.trial
            .value
            .partial_cmp(&b.trial.value)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    rows.extend(
        trials
            .iter()
            .filter(|t| !(t.state == TrialState::Complete && t.value.is_some()))
            .map(|t| Entry {
                trial: t.clone(),
                train_seconds: secs(t),
                pareto: false,
            }),
    );
    rows
}

/// The `ode train --config` file of the best complete trial.
pub fn best_config_toml(cfg: &SearchConfig, trials: &[TrialRecord]) -> Option<String> {
    let best = leaderboard(trials)
        .into_iter()
        .find(|e| e.trial.state == TrialState::Complete)?;
    let mut run = cfg.base.clone().merged(&to_run_config(&best.trial.params).ok()?);
    run.seed = Some(trial_seed(cfg, best.trial.number));
    Some(RunConfig::from_resolved(&run.resolve(None)).to_toml())
}
