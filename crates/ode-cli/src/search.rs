//! `ode search` and `ode study`: hyperparameter studies in a SQLite study store.

use crate::evaluate::{self, EvalSplit};
use crate::mlflow::study::StudyRuns;
use crate::out::outln;
use crate::storage::StorageUrl;
use crate::train::DataArgs;
use clap::{Args, Subcommand, ValueEnum};
use ode_search::driver::{
    DataFn, SearchConfig, TrialOutcome, TrialWeights, best_config_toml, best_trial_run, load_definition, retrain_trial,
    save_definition,
};
use ode_search::pool::{LocalPool, PoolEvents, Progress, held_trials, outcome_summary};
use ode_search::store::TrialRecord;
use ode_search::{SearchSpace, Strategy, StudyStore, TrialState, enqueue_study, leaderboard};
use ode_train::RunConfig;
use ode_train::checkpoint;
use ode_train::data::{Dataset, Table};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Res<T> = Result<T, Box<dyn Error>>;

/// Search strategies.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyName {
    /// Every combination of the space.
    Grid,
    /// Seeded random draws.
    Random,
    /// Random draws with asynchronous successive halving over epochs.
    Asha,
}

/// Arguments of `ode search`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SearchArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Search-space TOML (default: the tuning guide's space).
    #[arg(long)]
    space: Option<PathBuf>,
    /// grid, random or asha.
    #[arg(long, value_enum, default_value = "random")]
    strategy: StrategyName,
    /// Trials of random and asha searches.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Local worker threads (default: the core count; 0 only creates the study for `ode worker`s).
    #[arg(long)]
    workers: Option<usize>,
    /// Study store: sqlite:PATH or postgresql://USER:PASSWORD@HOST/DB.
    #[arg(long, default_value = "sqlite:ode-studies.db")]
    storage: StorageUrl,
    /// Study name (re-running a search with the same name resumes it).
    #[arg(long, default_value = "ode-study")]
    study: String,
    /// Study seed: trial k's parameters and training seed derive from it and k.
    #[arg(long, default_value_t = 0)]
    study_seed: u64,
    /// ASHA reduction factor.
    #[arg(long, default_value_t = 3)]
    reduction_factor: usize,
    /// ASHA first rung, in epochs.
    #[arg(long, default_value_t = 1)]
    min_epochs: usize,
    /// Where to write the best configuration (an `ode train --config` file).
    #[arg(long, default_value = "best.toml")]
    best_config: PathBuf,
    /// Where to write the best trial's best-epoch weights (a checkpoint for `ode evaluate`,
    /// `ode predict`), which the search scores once on the test split at the end (default: the
    /// --best-config path with the extension .safetensors, when that ends in .toml).
    #[arg(long)]
    best_checkpoint: Option<PathBuf>,
    /// Where to write the study's HTML report at the end, the one `ode report --study STUDY`
    /// writes (default: STUDY-report.html next to --best-config, when that ends in .toml).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Do not write the HTML report.
    #[arg(long, conflicts_with = "report")]
    no_report: bool,
    /// Seconds without a heartbeat after which a running trial goes to another worker (workers
    /// renew it every eighth of that while their trial makes progress; the trial of a process
    /// of this machine that died is taken over at once).
    #[arg(long, default_value_t = 120.0)]
    lease_seconds: f64,
    /// Lost workers after which a trial is failed instead of re-queued.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Wall-clock limit of one trial in seconds (dataset, model and training); a trial over it
    /// is failed with a reason naming the limit (default: no limit).
    #[arg(long, value_name = "SECONDS")]
    trial_timeout: Option<f64>,
    /// Once no trial is left to claim, how long to wait for trials other workers are still
    /// running (default: until their leases end); past it the search stops with a provisional
    /// result and a non-zero exit status.
    #[arg(long, value_name = "SECONDS")]
    max_wait: Option<f64>,
    /// A base configuration file for the settings that are not searched.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    run: RunConfig,
    #[command(flatten)]
    tracking: crate::mlflow::TrackingArgs,
}

/// `seconds` as a duration, or an error naming the flag.
fn seconds(flag: &str, seconds: f64) -> Res<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--{flag} must be a positive number of seconds, got {seconds}").into())
}

/// Opens a store from a `sqlite:PATH` or `postgresql://…` URL.
pub fn open_store(url: &str) -> Res<Box<dyn StudyStore>> {
    Ok(ode_search::open_store(url)?)
}

/// The local worker count: `--workers`, else the core count (at least 1).
fn local_workers(args: &SearchArgs) -> usize {
    args.workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// The study's definition from the flags: space (file or the guide's), fixed settings
/// (config file, then flags), strategy, and the cores shared among `workers`.
fn study_config(args: &SearchArgs, workers: usize) -> Res<SearchConfig> {
    let space = match &args.space {
        Some(p) => SearchSpace::from_toml(
            &std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            &p.display().to_string(),
        )?,
        None => SearchSpace::guide_default(),
    };
    let mut base = RunConfig::default();
    if let Some(p) = &args.config {
        base = base.merged(&RunConfig::from_toml_file(p)?);
    }
    base = base.merged(&args.run);
    let strategy = match args.strategy {
        StrategyName::Grid => Strategy::Grid,
        StrategyName::Random => Strategy::Random { trials: args.trials },
        StrategyName::Asha => Strategy::Asha {
            trials: args.trials,
            reduction_factor: args.reduction_factor,
            min_epochs: args.min_epochs,
        },
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(SearchConfig {
        study: args.study.clone(),
        strategy,
        space,
        base,
        seed: args.study_seed,
        lease_seconds: args.lease_seconds,
        max_attempts: args.max_attempts,
        threads_per_trial: (cores / workers).max(1),
        trial_timeout: args.trial_timeout.map(|t| seconds("trial-timeout", t)).transpose()?,
        // Ctrl-C ends the process; the stores keep every finished trial and leases hand the
        // running ones to the next run.
        cancel: None,
        trial_tracker: None,
    })
}

/// Runs a study with local workers, then prints the leaderboard and writes the best config.
pub fn search(args: &SearchArgs) -> Res<()> {
    args.tracking.mlflow()?;
    let workers = local_workers(args);
    let mut cfg = study_config(args, workers)?;
    seconds("lease-seconds", args.lease_seconds)?;
    let max_wait = args.max_wait.map(|t| seconds("max-wait", t)).transpose()?;
    let mut data_args = args.data.clone();
    data_args.sort_time |= cfg.base.sort_time == Some(true);
    let (table, source) = data_args.table()?;
    let (table, source) = (Arc::new(table), Arc::new(source));
    let data: DataFn = {
        let (table, source) = (table.clone(), source.clone());
        Arc::new(move |dc| Dataset::from_table(&table, dc, &source).map_err(|e| e.to_string()))
    };
    let mut store = open_store(&args.storage)?;
    let study = enqueue_study(store.as_mut(), &cfg)?;
    save_definition(store.as_mut(), study, &cfg, &serde_json::to_value(&data_args)?)?;
    let mlflow = StudyRuns::start(&args.tracking, store.as_mut(), study, &cfg, "ode search")?;
    cfg.trial_tracker = mlflow.as_ref().map(|m| m.trial_trackers(&cfg));
    let total = store.trials(study)?.len();
    let already = store
        .trials(study)?
        .iter()
        .filter(|t| matches!(t.state, TrialState::Complete | TrialState::Pruned | TrialState::Fail))
        .count();
    eprintln!(
        "study '{}' in {}: {total} trials ({already} already finished), {workers} workers",
        args.study, args.storage
    );
    if args.workers == Some(0) {
        eprintln!(
            "enqueued only (--workers 0); run `ode worker --storage {} --study {}` on any machine{}",
            args.storage,
            args.study,
            if args.storage.has_password() {
                " (the password is masked here: give it in the URL, PGPASSWORD or ~/.pgpass)"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let pool = LocalPool {
        cfg: &cfg,
        data: &data,
        storage: &args.storage,
        study,
        workers,
    };
    let lines = PoolLines::new(total, workers, &cfg);
    let stopped = pool.run_to_the_end(store.as_mut(), already, max_wait, &lines);
    let ok = stopped.is_ok();
    let trials = match (store.trials(study), &stopped) {
        (Ok(t), _) => t,
        (Err(e), why) => {
            if let Some(m) = mlflow {
                m.finish(false, &[]);
            }
            return Err(match why {
                Err(why) => format!("{why} (and the study cannot be read back: {e})").into(),
                Ok(()) => e.into(),
            });
        }
    };
    let report = write_study_report(args, &trials);
    let outcome = report_study(&cfg, &trials, stopped.err().map(|e| e.to_string()), &args.best_config);
    if let Some(m) = mlflow {
        let mut artifacts = vec![(args.best_config.as_path(), "best.toml")];
        artifacts.extend(report.as_deref().map(|r| (r, "study-report.html")));
        m.finish(ok, &artifacts);
    }
    let scored = outcome.and_then(|()| {
        let test = TestScore {
            cfg: &cfg,
            data: &data,
            table: &table,
            source: &source,
            checkpoint: best_checkpoint(args),
        };
        let kept = lines.kept.into_inner().unwrap_or_else(|e| e.into_inner());
        test.report(store.as_mut(), study, &trials, kept)
    });
    // Last, after the test score, so that it is what the user reads at the end.
    if let Some(w) = ode_search::leaderboard::best_trial_warning(&trials) {
        eprintln!("warning: {w}");
    }
    scored
}

/// Where `ode search` saves the best trial's weights: `--best-checkpoint`, else the
/// `--best-config` path with the extension `.safetensors` when it ends in `.toml` (not, say,
/// for `/dev/null`); `None`: nowhere.
/// Writes the study report where [`study_report`] says (a failure is a warning); its path.
fn write_study_report(args: &SearchArgs, trials: &[TrialRecord]) -> Option<PathBuf> {
    let out = study_report(args)?;
    match crate::report::write_study_report(&args.study, &args.storage.to_string(), trials, &out) {
        Ok(()) => {
            eprintln!("study report written to {}", out.display());
            Some(out)
        }
        Err(e) => {
            eprintln!("warning: no study report: {e}");
            None
        }
    }
}

/// Where `ode search` writes the study report: `--report`, else `STUDY-report.html` in the
/// folder of `--best-config` when that ends in `.toml`; `None` with `--no-report`.
fn study_report(args: &SearchArgs) -> Option<PathBuf> {
    if args.no_report {
        return None;
    }
    args.report.clone().or_else(|| {
        (args.best_config.extension().is_some_and(|e| e == "toml")).then(|| {
            let name = crate::report::default_study_report(&args.study);
            args.best_config.parent().map_or(name.clone(), |dir| dir.join(name))
        })
    })
}

fn best_checkpoint(args: &SearchArgs) -> Option<PathBuf> {
    args.best_checkpoint.clone().or_else(|| {
        (args.best_config.extension().is_some_and(|e| e == "toml"))
            .then(|| args.best_config.with_extension("safetensors"))
    })
}

/// Study attribute holding the best trial's test score (see [`TestScore::report`]).
pub const TEST_SCORE_KEY: &str = "ode:test_score";

/// What scoring the best trial on the test split needs.
struct TestScore<'a> {
    cfg: &'a SearchConfig,
    data: &'a DataFn,
    table: &'a Table,
    source: &'a str,
    /// Where to save the best trial's weights (`None`: scored in memory only).
    checkpoint: Option<PathBuf>,
}

impl TestScore<'_> {
    /// Scores the best complete trial (chosen on validation) once on the test split, from its
    /// best-epoch weights (`kept` by a local worker, else retrained from its configuration and
    /// seed), next to the test baselines; prints the block, saves the weights to the
    /// checkpoint path and records the score as the study attribute [`TEST_SCORE_KEY`].
    fn report(
        &self,
        store: &mut dyn StudyStore,
        study: i64,
        trials: &[TrialRecord],
        kept: Option<Arc<TrialWeights>>,
    ) -> Res<()> {
        let Some(best) = leaderboard(trials)
            .into_iter()
            .find(|e| e.trial.state == TrialState::Complete)
        else {
            return Ok(());
        };
        let t = &best.trial;
        let run = best_trial_run(self.cfg, t).ok_or(format!("trial {}'s parameters do not parse", t.number))?;
        let (w, how) = match kept.filter(|w| w.number == t.number) {
            Some(w) => (w, "kept from its run"),
            None => {
                eprintln!(
                    "the best trial #{} was trained by another process (an `ode worker`, or an earlier `ode \
                     search`), so its weights are not here: retraining it from its configuration and seed for up \
                     to {} epochs to score its best epoch on the test split",
                    t.number,
                    run.clone().resolve(None).train.epochs
                );
                (
                    Arc::new(retrain_trial(self.cfg, self.data, t)?),
                    "retrained from its configuration and seed",
                )
            }
        };
        if let Some((v, r)) = t.value.zip(w.meta.best_val_rmse).filter(|(v, r)| v != r) {
            eprintln!(
                "note: the retrained best val_rmse {r:.6} differs from the trial's {v:.6} (another device or \
                 thread count); the test score below is the retrained model's"
            );
        }
        let e = self.score(&w, run.season)?;
        outln!(
            "test score of the best trial (chosen on validation): trial #{}, val_rmse {:.5}, weights of its best \
             epoch ({}, {how}){}; the test split was used for nothing else",
            t.number,
            t.value.unwrap_or(f64::NAN),
            w.meta.epoch,
            if e.checkpoint.is_empty() {
                String::new()
            } else {
                format!(", saved to {}", e.checkpoint)
            }
        );
        evaluate::print_table(&e);
        let record = serde_json::json!({
            "trial": t.number,
            "val_rmse": t.value,
            "best_epoch": w.meta.epoch,
            "weights": if how.starts_with("kept") { "kept" } else { "retrained" },
            "evaluation": e,
        });
        store.set_study_attr(study, TEST_SCORE_KEY, &record)?;
        Ok(())
    }

    /// Saves `w` to the checkpoint path and scores the saved file on the test split (exactly
    /// what `ode evaluate` does), or scores `w` in memory without a path or when saving fails.
    fn score(&self, w: &TrialWeights, season: Option<usize>) -> Res<evaluate::Evaluation> {
        if let Some(path) = &self.checkpoint {
            match checkpoint::save(path, &w.model, &w.meta, None) {
                Ok(()) => return evaluate::evaluate_checkpoint(path, self.table, self.source, EvalSplit::Test, season),
                Err(e) => eprintln!("warning: the best trial's weights were not saved ({e}); scoring them in memory"),
            }
        }
        evaluate::evaluate_model(&w.model, &w.meta, self.table, self.source, EvalSplit::Test, season)
    }
}

/// Prints the leaderboard and writes the best configuration; both are marked PROVISIONAL, and
/// the result is an error saying how many trials are left, when the search stopped (`stopped`
/// says why) or trials are still `RUNNING` or `WAITING`.
fn report_study(cfg: &SearchConfig, trials: &[TrialRecord], stopped: Option<String>, best_config: &Path) -> Res<()> {
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
    let (running, waiting) = (count(TrialState::Running), count(TrialState::Waiting));
    let left = running + waiting;
    let stopped = stopped.or_else(|| (left > 0).then(|| format!("{left} trials were left unfinished")));
    if stopped.is_some() {
        outln!("PROVISIONAL: the study is not finished ({left} trials left); the leaderboard below may change");
    }
    print_leaderboard(trials, 10);
    let provisional = if stopped.is_some() { "PROVISIONAL " } else { "" };
    if let Some(toml) = best_config_toml(cfg, trials) {
        let toml = match &stopped {
            Some(_) => format!("# PROVISIONAL: written while {left} trials of the study were unfinished\n{toml}"),
            None => toml,
        };
        std::fs::write(best_config, toml)?;
        outln!(
            "{provisional}best configuration written to {} (use: ode train --config {} ...)",
            best_config.display(),
            best_config.display()
        );
    } else {
        outln!("no trial completed; no {provisional}best configuration");
    }
    match stopped {
        Some(why) => Err(format!(
            "the search stopped before the study finished: {why}; {left} trials left ({running} running, \
             {waiting} waiting); the results above are provisional: run the same `ode search` again to finish the study"
        )
        .into()),
        None => Ok(()),
    }
}

/// What `ode search` and `ode worker` print while their pool runs: a line per finished or
/// abandoned trial with the running count and the best value so far, and which trials other
/// workers hold while it waits; it keeps the best complete trial's weights.
struct PoolLines {
    total: usize,
    workers: usize,
    lease_seconds: f64,
    /// The best-epoch weights of the best complete trial this pool trained.
    kept: Mutex<Option<Arc<TrialWeights>>>,
}

impl PoolLines {
    fn new(total: usize, workers: usize, cfg: &SearchConfig) -> Self {
        Self {
            total,
            workers,
            lease_seconds: cfg.lease_seconds,
            kept: Mutex::new(None),
        }
    }

    /// Keeps `o`'s weights if it is the best complete trial so far (lowest value, then lowest
    /// number, as the leaderboard orders them).
    fn keep(&self, o: &TrialOutcome) {
        let (Some(w), Some(v)) = (&o.weights, o.value.filter(|_| o.state == TrialState::Complete)) else {
            return;
        };
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let better = kept.as_ref().is_none_or(|k| {
            let kv = k.meta.best_val_rmse.unwrap_or(f64::INFINITY);
            v < kv || (v == kv && o.number < k.number)
        });
        if better {
            *kept = Some(w.clone());
        }
    }
}

impl PoolEvents for PoolLines {
    fn trial_ended(&self, o: &TrialOutcome, p: &Progress) {
        self.keep(o);
        let what = outcome_summary(o);
        let rerun = if o.attempt > 1 {
            format!(
                ", attempt {}: re-run after an earlier run's worker died or lost its lease",
                o.attempt
            )
        } else {
            String::new()
        };
        eprintln!(
            "[{:>4}/{}] trial {:>3} {what} ({} epochs, {:.1}s{rerun}) | running {} | best {:.5} | {:.0}s elapsed",
            p.finished,
            self.total,
            o.number,
            o.epochs,
            o.seconds,
            self.total.saturating_sub(p.finished).min(self.workers),
            p.best,
            p.elapsed.as_secs_f64()
        );
    }

    fn waiting_for(&self, held: &[&TrialRecord], waited: Duration) {
        eprintln!(
            "waiting for {} unfinished trials other workers hold: {} (a lease ends {} s after its last heartbeat; {:.0}s waited)",
            held.len(),
            held_trials(held),
            self.lease_seconds,
            waited.as_secs_f64()
        );
    }
}

/// Arguments of `ode worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Study store: sqlite:PATH or postgresql://USER:PASSWORD@HOST/DB.
    #[arg(long)]
    storage: StorageUrl,
    /// Study name (created by `ode search`, whose definition the worker reads).
    #[arg(long)]
    study: String,
    /// Worker threads on this machine (default: the core count).
    #[arg(long)]
    workers: Option<usize>,
    #[command(flatten)]
    tracking: crate::mlflow::TrackingArgs,
}

/// Joins a study created by `ode search` and works on its waiting trials.
pub fn worker(args: &WorkerArgs) -> Res<()> {
    args.tracking.mlflow()?;
    let mut store = open_store(&args.storage)?;
    if !store.study_names()?.contains(&args.study) {
        return Err(format!("no study named '{}' in {}", args.study, args.storage).into());
    }
    let study = store.open_study(&args.study)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = args.workers.unwrap_or(cores).max(1);
    let (mut cfg, data_json) = load_definition(store.as_mut(), study, (cores / workers).max(1))?;
    cfg.study = args.study.clone();
    let mlflow = StudyRuns::start(&args.tracking, store.as_mut(), study, &cfg, "ode worker")?;
    cfg.trial_tracker = mlflow.as_ref().map(|m| m.trial_trackers(&cfg));
    let data_args: DataArgs = serde_json::from_value(data_json)?;
    let (table, source) = data_args.table()?;
    let data: DataFn = Arc::new(move |dc| Dataset::from_table(&table, dc, &source).map_err(|e| e.to_string()));
    let trials = store.trials(study)?;
    let already = trials
        .iter()
        .filter(|t| matches!(t.state, TrialState::Complete | TrialState::Pruned | TrialState::Fail))
        .count();
    eprintln!(
        "worker joined study '{}' in {}: {} trials, {already} finished",
        args.study,
        args.storage,
        trials.len()
    );
    let pool = LocalPool {
        cfg: &cfg,
        data: &data,
        storage: &args.storage,
        study,
        workers,
    };
    pool.run(already, &PoolLines::new(trials.len(), workers, &cfg))?;
    Ok(())
}

/// A trial's numeric user attribute.
/// A numeric user attribute of a trial (training seconds, skill, a baseline's RMSE).
pub(crate) fn attr(t: &TrialRecord, name: &str) -> Option<f64> {
    t.user_attrs.get(name).and_then(|v| v.as_f64())
}

/// A parameter value as a person writes it (strings without TOML quotes).
pub(crate) fn text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn fmt_params(t: &TrialRecord) -> String {
    t.params
        .iter()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints the best `top` complete trials (Pareto front of training seconds against val_rmse
/// marked `*`) and the counts per state.
pub fn print_leaderboard(trials: &[TrialRecord], top: usize) {
    let board = leaderboard(trials);
    outln!(
        "{:>5} {:>9} {:>10} {:>7} {:>8}  {:<1} params",
        "trial",
        "state",
        "val_rmse",
        "skill",
        "train_s",
        ""
    );
    for e in board.iter().filter(|e| e.trial.state == TrialState::Complete).take(top) {
        let skill = attr(&e.trial, "skill").map_or("-".to_string(), |s| format!("{s:+.3}"));
        outln!(
            "{:>5} {:>9} {:>10.5} {:>7} {:>8.2}  {:<1} {}",
            e.trial.number,
            "complete",
            e.trial.value.unwrap_or(f64::NAN),
            skill,
            e.train_seconds.unwrap_or(f64::NAN),
            if e.pareto { "*" } else { "" },
            fmt_params(&e.trial)
        );
    }
    if let Some(p) = board.first().and_then(|e| attr(&e.trial, "baseline_persistence")) {
        outln!("skill = 1 - val_rmse / persistence ({p:.5} on the validation windows)");
    }
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
    outln!(
        "{} complete, {} pruned, {} failed, {} running, {} waiting (* = Pareto front of training seconds vs val_rmse)",
        count(TrialState::Complete),
        count(TrialState::Pruned),
        count(TrialState::Fail),
        count(TrialState::Running),
        count(TrialState::Waiting)
    );
}

/// `ode study` subcommands.
#[derive(Subcommand, Debug)]
pub enum StudyCommand {
    /// Names of the studies in a store.
    List {
        /// Study store: sqlite:PATH or postgresql://USER:PASSWORD@HOST/DB.
        #[arg(long, default_value = "sqlite:ode-studies.db")]
        storage: StorageUrl,
    },
    /// The leaderboard of a study.
    Show(StudyArgs),
    /// The best complete trial of a study.
    Best(StudyArgs),
    /// Every trial of a study as JSON or CSV.
    Export {
        #[command(flatten)]
        study: StudyArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
    },
}

/// Which study.
#[derive(Args, Debug)]
pub struct StudyArgs {
    /// Study store: sqlite:PATH or postgresql://USER:PASSWORD@HOST/DB.
    #[arg(long, default_value = "sqlite:ode-studies.db")]
    storage: StorageUrl,
    /// Study name.
    #[arg(long, default_value = "ode-study")]
    study: String,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON array of trials.
    Json,
    /// One CSV row per trial.
    Csv,
}

fn trial_json(t: &TrialRecord) -> serde_json::Value {
    serde_json::json!({
        "number": t.number,
        "state": t.state.optuna_name(),
        "value": t.value,
        "attempt": t.attempt,
        "worker": t.worker,
        "params": t.params.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default())).collect::<serde_json::Map<_, _>>(),
        "intermediate_values": t.intermediate.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "user_attrs": t.user_attrs,
    })
}

fn load(args: &StudyArgs) -> Res<Vec<TrialRecord>> {
    load_trials(&args.storage, &args.study)
}

/// Every trial of the existing study `study` in `storage` (an error names a missing study).
pub fn load_trials(storage: &StorageUrl, study: &str) -> Res<Vec<TrialRecord>> {
    let mut store = open_store(storage)?;
    if !store.study_names()?.contains(&study.to_string()) {
        return Err(format!("no study named '{study}' in {storage}").into());
    }
    let id = store.open_study(study)?;
    Ok(store.trials(id)?)
}

/// Runs an `ode study` subcommand.
pub fn study(cmd: &StudyCommand) -> Res<()> {
    match cmd {
        StudyCommand::List { storage } => {
            for name in open_store(storage)?.study_names()? {
                outln!("{name}");
            }
        }
        StudyCommand::Show(a) => {
            let trials = load(a)?;
            if a.json {
                let rows: Vec<serde_json::Value> = leaderboard(&trials)
                    .iter()
                    .map(|e| {
                        let mut v = trial_json(&e.trial);
                        v["pareto"] = e.pareto.into();
                        v
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_leaderboard(&trials, usize::MAX);
            }
        }
        StudyCommand::Best(a) => {
            let trials = load(a)?;
            let best = leaderboard(&trials)
                .into_iter()
                .find(|e| e.trial.state == TrialState::Complete);
            let Some(best) = best else {
                return Err("no complete trial yet".into());
            };
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&trial_json(&best.trial))?);
            } else {
                outln!(
                    "trial {} val_rmse {:.6}: {}",
                    best.trial.number,
                    best.trial.value.unwrap_or(f64::NAN),
                    fmt_params(&best.trial)
                );
            }
        }
        StudyCommand::Export { study, format } => {
            let trials = load(study)?;
            match format {
                ExportFormat::Json => {
                    outln!(
                        "{}",
                        serde_json::to_string_pretty(&trials.iter().map(trial_json).collect::<Vec<_>>())?
                    )
                }
                ExportFormat::Csv => {
                    let names: std::collections::BTreeSet<&String> =
                        trials.iter().flat_map(|t| t.params.keys()).collect();
                    let mut w = csv::Writer::from_writer(crate::out::Stdout);
                    let mut header = vec![
                        "number".to_string(),
                        "state".into(),
                        "value".into(),
                        "train_seconds".into(),
                    ];
                    header.extend(names.iter().map(|n| n.to_string()));
                    w.write_record(&header)?;
                    for t in &trials {
                        let mut rec = vec![
                            t.number.to_string(),
                            t.state.optuna_name().to_string(),
                            t.value.map(|v| v.to_string()).unwrap_or_default(),
                            t.user_attrs
                                .get("train_seconds")
                                .map(|v| v.to_string())
                                .unwrap_or_default(),
                        ];
                        rec.extend(names.iter().map(|n| t.params.get(*n).map(text).unwrap_or_default()));
                        w.write_record(&rec)?;
                    }
                    w.flush()?;
                }
            }
        }
    }
    Ok(())
}
