//! `ode search` and `ode study`: hyperparameter studies in a SQLite study store.

use crate::storage::{StorageUrl, shown};
use crate::train::DataArgs;
use clap::{Args, Subcommand, ValueEnum};
use ode_search::driver::{DataFn, SearchConfig, TrialOutcome, best_config_toml, load_definition, save_definition};
use ode_search::store::TrialRecord;
use ode_search::{SearchSpace, Strategy, StudyStore, TrialState, enqueue_study, leaderboard, run_worker};
use ode_train::RunConfig;
use ode_train::data::Dataset;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    /// Seconds without a heartbeat after which a running trial goes to another worker.
    #[arg(long, default_value_t = 120.0)]
    lease_seconds: f64,
    /// Lost workers after which a trial is failed instead of re-queued.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// A base configuration file for the settings that are not searched.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    run: RunConfig,
}

/// This machine's name, to tell workers apart in the store.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

/// Opens a store from a `sqlite:PATH` or `postgresql://…` URL.
pub fn open_store(url: &str) -> Res<Box<dyn StudyStore>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = Path::new(path.trim_start_matches("//"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        return Ok(Box::new(ode_search::SqliteStore::open(path)?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(ode_search::PostgresStore::connect(url)?));
    }
    Err(format!(
        "--storage must look like sqlite:PATH or postgresql://USER:PASSWORD@HOST/DB, got '{}'",
        shown(url)
    )
    .into())
}

/// Runs a study with local workers, then prints the leaderboard and writes the best config.
pub fn search(args: &SearchArgs) -> Res<()> {
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
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cfg = SearchConfig {
        study: args.study.clone(),
        strategy,
        space,
        base,
        seed: args.study_seed,
        lease_seconds: args.lease_seconds,
        max_attempts: args.max_attempts,
        threads_per_trial: (cores / workers).max(1),
    };
    let mut data_args = args.data.clone();
    data_args.sort_time |= cfg.base.sort_time == Some(true);
    let (table, source) = data_args.table()?;
    let data: DataFn = Arc::new(move |dc| Dataset::from_table(&table, dc, &source).map_err(|e| e.to_string()));
    let mut store = open_store(&args.storage)?;
    let study = enqueue_study(store.as_mut(), &cfg)?;
    save_definition(store.as_mut(), study, &cfg, &serde_json::to_value(&data_args)?)?;
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
            "enqueued only (--workers 0); run `ode worker --storage {} --study {}` on any machine",
            args.storage, args.study
        );
        return Ok(());
    }
    run_pool(&cfg, &data, &args.storage, study, workers, already, total)?;
    let trials = store.trials(study)?;
    print_leaderboard(&trials, 10);
    if let Some(toml) = best_config_toml(&cfg, &trials) {
        std::fs::write(&args.best_config, toml)?;
        println!(
            "best configuration written to {} (use: ode train --config {} ...)",
            args.best_config.display(),
            args.best_config.display()
        );
    } else {
        println!("no trial completed; no best configuration");
    }
    Ok(())
}

/// Runs `workers` local worker threads on the study until no trial is waiting, printing a
/// line per finished trial with the running count and the best value so far.
fn run_pool(
    cfg: &SearchConfig,
    data: &DataFn,
    storage: &str,
    study: i64,
    workers: usize,
    already: usize,
    total: usize,
) -> Res<()> {
    let started = Instant::now();
    let progress = Arc::new(Mutex::new((already, f64::INFINITY)));
    let result: Vec<Result<(), String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (data, progress, url) = (data.clone(), progress.clone(), storage.to_string());
                sc.spawn(move || -> Result<(), String> {
                    let mut st = open_store(&url).map_err(|e| e.to_string())?;
                    let report = |o: &TrialOutcome| {
                        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                        p.0 += 1;
                        if let Some(v) = o.value.filter(|_| o.state == TrialState::Complete) {
                            p.1 = p.1.min(v);
                        }
                        let what = match (o.state, &o.reason) {
                            (TrialState::Fail, Some(r)) => format!("failed: {}", r.lines().next().unwrap_or("")),
                            (s, _) => format!(
                                "{} val_rmse {:.5}",
                                s.optuna_name().to_lowercase(),
                                o.value.unwrap_or(f64::NAN)
                            ),
                        };
                        eprintln!(
                            "[{:>4}/{total}] trial {:>3} {what} ({} epochs, {:.1}s) | running {} | best {:.5} | {:.0}s elapsed",
                            p.0,
                            o.number,
                            o.epochs,
                            o.seconds,
                            total.saturating_sub(p.0).min(workers),
                            p.1,
                            started.elapsed().as_secs_f64()
                        );
                    };
                    run_worker(st.as_mut(), study, cfg, &data, &format!("{}-{}-{w}", hostname(), std::process::id()), report)
                        .map_err(|e| e.to_string())?;
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    for r in result {
        r?;
    }
    Ok(())
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
}

/// Joins a study created by `ode search` and works on its waiting trials.
pub fn worker(args: &WorkerArgs) -> Res<()> {
    let mut store = open_store(&args.storage)?;
    if !store.study_names()?.contains(&args.study) {
        return Err(format!("no study named '{}' in {}", args.study, args.storage).into());
    }
    let study = store.open_study(&args.study)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = args.workers.unwrap_or(cores).max(1);
    let (mut cfg, data_json) = load_definition(store.as_mut(), study, (cores / workers).max(1))?;
    cfg.study = args.study.clone();
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
    run_pool(&cfg, &data, &args.storage, study, workers, already, trials.len())
}

/// A parameter value as a person writes it (strings without TOML quotes).
fn text(v: &toml::Value) -> String {
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
    println!(
        "{:>5} {:>9} {:>10} {:>8}  {:<1} params",
        "trial", "state", "val_rmse", "train_s", ""
    );
    for e in board.iter().filter(|e| e.trial.state == TrialState::Complete).take(top) {
        println!(
            "{:>5} {:>9} {:>10.5} {:>8.2}  {:<1} {}",
            e.trial.number,
            "complete",
            e.trial.value.unwrap_or(f64::NAN),
            e.train_seconds.unwrap_or(f64::NAN),
            if e.pareto { "*" } else { "" },
            fmt_params(&e.trial)
        );
    }
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
    println!(
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
        "params": t.params.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default())).collect::<serde_json::Map<_, _>>(),
        "intermediate_values": t.intermediate.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "user_attrs": t.user_attrs,
    })
}

fn load(args: &StudyArgs) -> Res<Vec<TrialRecord>> {
    let mut store = open_store(&args.storage)?;
    if !store.study_names()?.contains(&args.study) {
        return Err(format!("no study named '{}' in {}", args.study, args.storage).into());
    }
    let id = store.open_study(&args.study)?;
    Ok(store.trials(id)?)
}

/// Runs an `ode study` subcommand.
pub fn study(cmd: &StudyCommand) -> Res<()> {
    match cmd {
        StudyCommand::List { storage } => {
            for name in open_store(storage)?.study_names()? {
                println!("{name}");
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
                println!("{}", serde_json::to_string_pretty(&rows)?);
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
                println!("{}", serde_json::to_string_pretty(&trial_json(&best.trial))?);
            } else {
                println!(
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
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&trials.iter().map(trial_json).collect::<Vec<_>>())?
                    )
                }
                ExportFormat::Csv => {
                    let names: std::collections::BTreeSet<&String> =
                        trials.iter().flat_map(|t| t.params.keys()).collect();
                    let mut w = csv::Writer::from_writer(std::io::stdout());
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
