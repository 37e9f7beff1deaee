//! Running a study: enqueue its trials, let workers claim and train them, prune with
//! asynchronous successive halving, and read back the leaderboard.

pub use crate::leaderboard::{Entry, leaderboard};
use crate::space::{Distribution, SearchSpace, to_run_config};
use crate::store::{Claimed, ParamDistribution, StoreError, StudyStore, TrialRecord, TrialState};
use crate::strategy::{Params, grid, random_trial};
use crate::trial_tracker::{AsTracker, TrialTracker, TrialTrackerFn};
use ode_train::checkpoint::CheckpointMeta;
use ode_train::data::{DataConfig, Dataset};
use ode_train::tracker::Tee;
use ode_train::{Baselines, History, MemoryTracker, NeuralOdeModel, Resolved, RunConfig, TrainError, Trainer};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    /// Workers renew the lease every eighth of it while their trial makes progress (see
    /// [`run_worker`]), so it must well exceed the longest single batch or validation round.
    pub lease_seconds: f64,
    /// Claims after which a trial whose workers keep dying is failed.
    pub max_attempts: u32,
    /// Training threads per trial.
    pub threads_per_trial: usize,
    /// Wall-clock limit of one attempt at a trial (dataset, model and training), checked at
    /// every batch and validation round: a trial over it is finished as `Fail` with a
    /// `fail_reason` naming the limit. `None`: no limit.
    pub trial_timeout: Option<Duration>,
    /// Set from another thread (Ctrl-C in Python) to stop the workers: a running trial stops
    /// within a batch and is left `RUNNING`, as after a crash, so the next run of the study takes
    /// it over when its lease ends; no further trial is claimed. `None`: never.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Makes an extra tracker for each attempt at a trial (e.g. a run on an MLflow server),
    /// which gets what the trial's trainer logs and then its outcome. `None`: none.
    pub trial_tracker: Option<TrialTrackerFn>,
}

impl SearchConfig {
    /// Whether [`SearchConfig::cancel`] was set.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }
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
    /// Why it failed, or why it was abandoned.
    pub reason: Option<String>,
    /// The worker lost the trial's lease (a write was fenced: another worker claimed it, or
    /// it finished) and left it to its new holder; `state` is then `Running`.
    pub abandoned: bool,
    /// The claim this run held: above 1 when an earlier run of the trial died with its worker
    /// or lost its lease.
    pub attempt: u32,
    /// A complete trial's best-epoch weights, handed to [`run_worker`]'s `on_outcome` (the
    /// list `run_worker` returns leaves them out, so a long-running worker does not hold every
    /// trial's weights).
    pub weights: Option<Arc<TrialWeights>>,
}

/// A trial's best-epoch model (lowest `val_rmse`), with the checkpoint metadata of the data it
/// was trained on (columns, window sizes, split, training statistics).
#[derive(Debug, Clone)]
pub struct TrialWeights {
    /// Trial number.
    pub number: u64,
    /// The model with the best epoch's parameters.
    pub model: NeuralOdeModel<f32>,
    /// Metadata for [`ode_train::checkpoint::save`]: `epoch` is the best epoch, `best_val_rmse`
    /// its validation RMSE.
    pub meta: CheckpointMeta,
}

impl TrialWeights {
    /// The weights of `params` (the best epoch's, `best` = (epoch, val_rmse)) of a model with
    /// `model`'s configuration, trained on `ds`.
    fn new(
        number: u64,
        model: &NeuralOdeModel<f32>,
        params: Vec<f32>,
        ds: &Dataset,
        best: (usize, f64),
    ) -> Result<Self, String> {
        let model = NeuralOdeModel::from_params(model.config().clone(), params)
            .map_err(|e| format!("trial {number}: the best epoch's weights: {e}"))?;
        let mut meta = CheckpointMeta::for_dataset(model.config(), ds);
        meta.epoch = best.0;
        meta.best_val_rmse = Some(best.1);
        Ok(Self { number, model, meta })
    }
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
        "trial_timeout_seconds": cfg.trial_timeout.map(|t| t.as_secs_f64()),
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
            // Absent from definitions saved before the limit existed: no limit.
            trial_timeout: match def.get("trial_timeout_seconds") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(
                    v.as_f64()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .ok_or("trial_timeout_seconds is not a non-negative number of seconds")?,
                ),
            },
            cancel: None,
            trial_tracker: None,
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
///
/// While a trial makes progress (the dataset is being built, batches and validation rounds
/// advance) the worker renews its lease every eighth of `lease_seconds` (so within a quarter
/// of it even when a batch or validation round takes another eighth); a trial that
/// stops progressing stops renewing it, so its lease expires and another worker takes it over.
/// A worker whose write is refused because it lost the lease ([`StoreError::Fenced`]) abandons
/// that trial (reported with `abandoned`) and claims the next; only other store failures end
/// the worker with an error.
pub fn run_worker<S: StudyStore + ?Sized>(
    store: &mut S,
    study: i64,
    cfg: &SearchConfig,
    data: &DataFn,
    worker: &str,
    mut on_outcome: impl FnMut(&TrialOutcome),
) -> Result<Vec<TrialOutcome>, StoreError> {
    let mut outcomes = Vec::new();
    loop {
        if cfg.cancelled() {
            break;
        }
        let Some(claim) = store.claim(study, worker, cfg.lease_seconds, cfg.max_attempts)? else {
            break;
        };
        let started = Instant::now();
        let mut extra = cfg.trial_tracker.as_ref().map(|f| (f.0)(claim.number, &claim.params));
        let cell = RefCell::new(&mut *store);
        let mine = extra.as_mut().map(|t| &mut **t as &mut dyn TrialTracker);
        let result = run_trial(&cell, study, cfg, data, &claim, started, mine);
        let store = cell.into_inner();
        let outcome = match record(store, &claim, result, started) {
            Ok(o) => o,
            Err(e @ StoreError::Fenced { .. }) => TrialOutcome {
                number: claim.number,
                state: TrialState::Running,
                value: None,
                epochs: 0,
                seconds: started.elapsed().as_secs_f64(),
                reason: Some(format!(
                    "lost its lease ({e}); left to the worker that now holds or finished it"
                )),
                abandoned: true,
                attempt: claim.attempt,
                weights: None,
            },
            Err(e) => return Err(e),
        };
        if let Some(t) = extra {
            t.end(&outcome);
        }
        on_outcome(&outcome);
        outcomes.push(TrialOutcome {
            weights: None,
            ..outcome
        });
    }
    Ok(outcomes)
}

/// Writes a trial's result to the store (attributes, then its final state).
fn record<S: StudyStore + ?Sized>(
    store: &mut S,
    claim: &Claimed,
    result: Result<TrialResult, TrialError>,
    started: Instant,
) -> Result<TrialOutcome, StoreError> {
    let (id, attempt) = (claim.trial_id, claim.attempt);
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(r) => {
            store.set_attr(id, attempt, "train_seconds", &r.train_seconds.into())?;
            for (name, v) in r.scores {
                store.set_attr(id, attempt, &name, &v.into())?;
            }
            store.set_attr(id, attempt, "nfe_forward", &r.nfe.0.into())?;
            store.set_attr(id, attempt, "nfe_backward", &r.nfe.1.into())?;
            store.set_attr(id, attempt, "epochs", &r.epochs.into())?;
            store.set_attr(id, attempt, THREADS_ATTR, &r.threads.into())?;
            let stored = if r.state == TrialState::Complete { r.value } else { None };
            store.finish(id, attempt, r.state, stored)?;
            Ok(TrialOutcome {
                number: claim.number,
                state: r.state,
                value: r.value,
                epochs: r.epochs,
                seconds,
                reason: None,
                abandoned: false,
                attempt,
                weights: r.weights.filter(|_| r.state == TrialState::Complete).map(Arc::new),
            })
        }
        Err(TrialError::Store(e)) => Err(e),
        Err(TrialError::Cancelled { epochs }) => Ok(TrialOutcome {
            number: claim.number,
            state: TrialState::Running,
            value: None,
            epochs,
            seconds,
            reason: Some(
                "interrupted: left running; the next run of the study takes it over when its lease ends".into(),
            ),
            abandoned: true,
            attempt,
            weights: None,
        }),
        Err(TrialError::Failed { reason, epochs }) => {
            store.set_attr(id, attempt, "fail_reason", &reason.clone().into())?;
            store.finish(id, attempt, TrialState::Fail, None)?;
            Ok(TrialOutcome {
                number: claim.number,
                state: TrialState::Fail,
                value: None,
                epochs,
                seconds,
                reason: Some(reason),
                abandoned: false,
                attempt,
                weights: None,
            })
        }
    }
}

enum TrialError {
    Store(StoreError),
    /// Stopped by [`SearchConfig::cancel`] after this many complete epochs.
    Cancelled {
        epochs: usize,
    },
    Failed {
        /// Why, for the `fail_reason` attribute.
        reason: String,
        /// Epochs trained before the failure.
        epochs: usize,
    },
}

impl TrialError {
    fn failed(reason: String) -> Self {
        TrialError::Failed { reason, epochs: 0 }
    }
}

/// What a trained trial records.
struct TrialResult {
    state: TrialState,
    /// Best validation RMSE.
    value: Option<f64>,
    epochs: usize,
    train_seconds: f64,
    /// NFE (forward, backward).
    nfe: (f64, f64),
    /// The baseline attributes ([`baseline_attrs`]).
    scores: Vec<(String, f64)>,
    /// Training threads, recorded so that [`retrain_trial`] can repeat the run exactly.
    threads: usize,
    /// The best epoch's weights.
    weights: Option<TrialWeights>,
}

/// Trial attribute: the training threads of the run (the split of each batch across threads
/// sets the order in which gradients are summed).
pub const THREADS_ATTR: &str = "threads";

/// Trial `number`'s run configuration: the fixed settings, its parameters, its seed and
/// `threads` training threads.
fn trial_run(cfg: &SearchConfig, params: &Params, number: u64, threads: usize) -> Result<RunConfig, String> {
    let searched = to_run_config(params).map_err(|e| format!("bad configuration: {e}"))?;
    let mut run = cfg.base.clone().merged(&searched);
    run.seed = Some(trial_seed(cfg, number));
    run.threads = Some(threads.max(1));
    Ok(run)
}

/// A trial's seeded model for `ds`.
fn trial_model(r: &Resolved, ds: &Dataset) -> Result<NeuralOdeModel<f32>, String> {
    NeuralOdeModel::for_dataset(&r.model, ds, r.train.seed).map_err(|e| match e {
        TrainError::Config(e) => format!("bad configuration: {e}"),
        e => format!("bad configuration: {e}"),
    })
}

/// The trial attributes of its baselines and skill: `baseline_<name>` per baseline
/// (normalised RMSE on the validation windows), `baseline_linear_ar_lambda`, and `skill`, the
/// best epoch's skill against persistence (when there is one).
pub fn baseline_attrs(b: &Baselines, h: &History) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = b
        .scores
        .iter()
        .map(|s| (format!("baseline_{}", s.baseline.key()), s.rmse))
        .collect();
    out.push(("baseline_linear_ar_lambda".into(), b.ridge_lambda));
    let best = h.best.and_then(|(epoch, _)| h.epochs.iter().find(|e| e.epoch == epoch));
    if let Some(skill) = best.and_then(|e| e.skill) {
        out.push(("skill".into(), skill));
    }
    out.retain(|(_, v)| v.is_finite());
    out
}

/// When a trial renews its lease, and whether it has run out of time.
struct Pacer {
    /// An eighth of the lease: at most this long between heartbeats while progress is reported
    /// (plus the time of one progress step).
    every: Duration,
    last: Instant,
    started: Instant,
    limit: Option<Duration>,
}

impl Pacer {
    fn new(cfg: &SearchConfig, started: Instant) -> Self {
        Self {
            every: Duration::try_from_secs_f64(cfg.lease_seconds / 8.0).unwrap_or(Duration::ZERO),
            last: started,
            started,
            limit: cfg.trial_timeout,
        }
    }

    /// The failure of a trial over its time limit, if it is.
    fn over_limit(&self, epochs: usize) -> Option<TrialError> {
        let limit = self.limit.filter(|l| self.started.elapsed() > *l)?;
        Some(TrialError::Failed {
            reason: format!(
                "exceeded the per-trial time limit of {} s (trial_timeout, `ode search --trial-timeout`) \
                 after {epochs} complete epochs",
                limit.as_secs_f64()
            ),
            epochs,
        })
    }

    /// Renews the lease if an eighth of it has passed since the last renewal.
    fn beat_if_due<S: StudyStore + ?Sized>(
        &mut self,
        store: &RefCell<&mut S>,
        claim: &Claimed,
    ) -> Result<(), StoreError> {
        if self.last.elapsed() >= self.every {
            store.borrow_mut().heartbeat(claim.trial_id, claim.attempt)?;
            self.last = Instant::now();
        }
        Ok(())
    }

    /// A progress step: fails over the limit, else renews the lease when due.
    fn tick<S: StudyStore + ?Sized>(&mut self, store: &RefCell<&mut S>, claim: &Claimed) -> Result<(), TrialError> {
        if let Some(e) = self.over_limit(0) {
            return Err(e);
        }
        self.beat_if_due(store, claim).map_err(TrialError::Store)
    }
}

/// Builds the trial's dataset on a helper thread while this one renews the lease (the build
/// is one step over an in-memory table, with no progress of its own to report; the trial's
/// time limit, if any, bounds it). A build still running when the limit passes is left to
/// finish on its own, its result unused.
fn build_dataset<S: StudyStore + ?Sized>(
    store: &RefCell<&mut S>,
    data: &DataFn,
    dc: &DataConfig,
    pacer: &mut Pacer,
    claim: &Claimed,
) -> Result<Dataset, TrialError> {
    let (tx, rx) = mpsc::channel();
    let (data, dc) = (data.clone(), dc.clone());
    std::thread::Builder::new()
        .name("ode-search-data".into())
        .spawn(move || {
            let _ = tx.send(data(&dc));
        })
        .map_err(|e| TrialError::failed(format!("data: cannot start a thread to build the dataset: {e}")))?;
    loop {
        match rx.recv_timeout(pacer.every.max(Duration::from_millis(1))) {
            Ok(built) => return built.map_err(|e| TrialError::failed(format!("data: {e}"))),
            Err(mpsc::RecvTimeoutError::Timeout) => pacer.tick(store, claim)?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(TrialError::failed("data: building the dataset panicked".into()));
            }
        }
    }
}

fn run_trial<S: StudyStore + ?Sized>(
    store: &RefCell<&mut S>,
    study: i64,
    cfg: &SearchConfig,
    data: &DataFn,
    claim: &Claimed,
    started: Instant,
    extra: Option<&mut dyn TrialTracker>,
) -> Result<TrialResult, TrialError> {
    let (id, attempt) = (claim.trial_id, claim.attempt);
    let threads = cfg.threads_per_trial.max(1);
    let run = trial_run(cfg, &claim.params, claim.number, threads).map_err(TrialError::failed)?;
    let r = run.resolve(None);
    let mut pacer = Pacer::new(cfg, started);
    let ds = build_dataset(store, data, &r.data, &mut pacer, claim)?;
    pacer.tick(store, claim)?;
    let baselines = ode_train::baselines::for_dataset(&ds, run.season)
        .map_err(|e| TrialError::failed(format!("bad configuration: {e}")))?;
    pacer.tick(store, claim)?;
    let model = trial_model(&r, &ds).map_err(TrialError::failed)?;
    let (mut memory, mut extra) = (MemoryTracker::default(), extra.map(AsTracker));
    let mut tracker = Tee(std::iter::once(&mut memory as &mut dyn ode_train::Tracker)
        .chain(extra.as_mut().map(|t| t as &mut dyn ode_train::Tracker))
        .collect());
    let store_err: RefCell<Option<StoreError>> = RefCell::new(None);
    let keep = |res: Result<(), StoreError>| {
        if let Err(e) = res {
            store_err.borrow_mut().get_or_insert(e);
        }
    };
    let (pacer, epochs_done) = (RefCell::new(pacer), std::cell::Cell::new(0usize));
    let timed_out: RefCell<Option<TrialError>> = RefCell::new(None);
    let (history, best_params, trained) = {
        let trainer = Trainer::new(model, r.train.clone(), &mut tracker)
            .map_err(|e| TrialError::failed(format!("bad configuration: {e}")))?
            .with_baselines(baselines.clone())
            .keep_best_params();
        pacer.borrow_mut().tick(store, claim)?;
        let mut trainer = trainer
            .on_progress(|_| {
                if cfg.cancelled() {
                    return ControlFlow::Break(());
                }
                let mut p = pacer.borrow_mut();
                if let Some(e) = p.over_limit(epochs_done.get()) {
                    *timed_out.borrow_mut() = Some(e);
                    return ControlFlow::Break(());
                }
                match p.beat_if_due(store, claim) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        keep(Err(e));
                        ControlFlow::Break(())
                    }
                }
            })
            .stop_when(|epoch, m| {
                epochs_done.set(epoch);
                keep(store.borrow_mut().report(id, attempt, epoch as u64, m.val_rmse));
                keep(store.borrow_mut().heartbeat(id, attempt));
                pacer.borrow_mut().last = Instant::now();
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
        let history = trainer.fit(&ds.train, &ds.val);
        let best_params = trainer.best_params().map(<[f32]>::to_vec);
        (history, best_params, trainer.into_model())
    };
    if let Some(e) = store_err.into_inner() {
        return Err(TrialError::Store(e));
    }
    if let Some(e) = timed_out.into_inner() {
        return Err(e);
    }
    if cfg.cancelled() && history.as_ref().is_ok_and(|h| h.stopped_by_callback) {
        return Err(TrialError::Cancelled {
            epochs: epochs_done.get(),
        });
    }
    let h = history.map_err(|e| TrialError::Failed {
        reason: e.to_string(),
        epochs: epochs_done.get(),
    })?;
    trial_result(&h, &baselines, best_params, &trained, &ds, claim.number, threads)
}

/// What a trial that trained without failing records: pruned when a callback stopped it, else
/// complete with its best epoch's weights (`best_params`, for `trained`'s configuration).
fn trial_result(
    h: &History,
    baselines: &Baselines,
    best_params: Option<Vec<f32>>,
    trained: &NeuralOdeModel<f32>,
    ds: &Dataset,
    number: u64,
    threads: usize,
) -> Result<TrialResult, TrialError> {
    let state = if h.stopped_by_callback {
        TrialState::Pruned
    } else {
        TrialState::Complete
    };
    let weights = match best_params.zip(h.best) {
        Some((p, b)) if state == TrialState::Complete => {
            Some(TrialWeights::new(number, trained, p, ds, b).map_err(TrialError::failed)?)
        }
        _ => None,
    };
    Ok(TrialResult {
        state,
        value: h.best_val_rmse(),
        epochs: h.epochs.len(),
        train_seconds: h.epochs.iter().map(|e| e.train_seconds).sum(),
        nfe: (
            h.epochs.iter().map(|e| e.nfe_forward).sum(),
            h.epochs.iter().map(|e| e.nfe_backward).sum(),
        ),
        scores: baseline_attrs(baselines, h),
        threads,
        weights,
    })
}

/// Trains a finished trial again, as its worker did (its parameters, seed, the fixed settings
/// and the training threads it recorded, else `cfg.threads_per_trial`), and returns its
/// best-epoch weights: for a trial whose weights stayed with a worker on another machine or
/// in an earlier process. On the CPU with the same threads the run is bit for bit the
/// original, so the weights' `best_val_rmse` is the trial's value; the caller can compare the
/// two to detect a run that differed (another device, or a thread count not recorded).
pub fn retrain_trial(cfg: &SearchConfig, data: &DataFn, trial: &TrialRecord) -> Result<TrialWeights, String> {
    let what = |e: String| format!("retraining trial {}: {e}", trial.number);
    let threads = trial
        .user_attrs
        .get(THREADS_ATTR)
        .and_then(|v| v.as_u64())
        .map_or(cfg.threads_per_trial, |t| t as usize);
    let r = trial_run(cfg, &trial.params, trial.number, threads)
        .map_err(what)?
        .resolve(None);
    let ds = data(&r.data).map_err(|e| what(format!("data: {e}")))?;
    let model = trial_model(&r, &ds).map_err(what)?;
    let mut tracker = MemoryTracker::default();
    let mut trainer = Trainer::new(model, r.train.clone(), &mut tracker)
        .map_err(|e| what(e.to_string()))?
        .keep_best_params();
    let h = trainer.fit(&ds.train, &ds.val).map_err(|e| what(e.to_string()))?;
    let (Some(params), Some(best)) = (trainer.best_params().map(<[f32]>::to_vec), h.best) else {
        return Err(what("no epoch finished".into()));
    };
    TrialWeights::new(trial.number, trainer.model(), params, &ds, best).map_err(what)
}

/// The run configuration of `trial` (fixed settings, its parameters and seed), as
/// [`best_config_toml`] writes it; `None` when its parameters do not parse.
pub fn best_trial_run(cfg: &SearchConfig, trial: &TrialRecord) -> Option<RunConfig> {
    let mut run = cfg.base.clone().merged(&to_run_config(&trial.params).ok()?);
    run.seed = Some(trial_seed(cfg, trial.number));
    Some(run)
}

/// The `ode train --config` file of the best complete trial.
pub fn best_config_toml(cfg: &SearchConfig, trials: &[TrialRecord]) -> Option<String> {
    let best = leaderboard(trials)
        .into_iter()
        .find(|e| e.trial.state == TrialState::Complete)?;
    let run = best_trial_run(cfg, &best.trial)?;
    let written = RunConfig {
        season: run.season,
        ..RunConfig::from_resolved(&run.resolve(None))
    };
    Some(written.to_toml())
}
