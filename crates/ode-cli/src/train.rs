//! `ode train`, `ode predict`, `ode diagnose` and `ode data generate`.

use crate::mlflow::train_run::{ResumeFrom, TrainRun};
use crate::out::outln;
use crate::progress::EpochProgress;
use clap::{Args, ValueEnum};
use ode_train::Baselines;
use ode_train::checkpoint::{self, CheckpointMeta, OptimState};
use ode_train::data::{DataConfig, Dataset, ReadOptions, Split, Table};
use ode_train::trainer::CheckpointTarget;
use ode_train::verdict::best_epoch_warning;
use ode_train::{JsonlTracker, ModelConfig, NeuralOdeModel, Preset, Resolved, RunConfig, Trainer, Workspace};
use serde::Serialize;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

/// Where the data comes from: a CSV file or a built-in generator.
#[derive(Args, Debug, Clone, Serialize, serde::Deserialize)]
pub struct DataArgs {
    /// CSV file with a header row (an optional time column, then numeric columns).
    #[arg(long, conflicts_with = "dataset")]
    pub data: Option<PathBuf>,
    /// Built-in generated dataset: spiral, lotka-volterra or five-channel.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Rows to generate for --dataset.
    #[arg(long, default_value_t = 2000)]
    pub rows: usize,
    /// Observation noise of --dataset, as a fraction of each column's std.
    #[arg(long, default_value_t = 0.01)]
    pub noise: f64,
    /// Seed of the --dataset generator.
    #[arg(long, default_value_t = 0)]
    pub data_seed: u64,
    /// Name of the time column (default: detected, e.g. `date`).
    #[arg(long)]
    pub time_column: Option<String>,
    /// Sort the rows by the time column (with a warning) when they are out of order, instead of
    /// refusing the file; duplicated times stay an error.
    #[arg(long)]
    #[serde(default)]
    pub sort_time: bool,
}

impl DataArgs {
    /// Reads or generates the table, with a name for messages.
    pub fn table(&self) -> Res<(Table, String)> {
        match (&self.data, &self.dataset) {
            (Some(p), None) => {
                let options = ReadOptions {
                    time_column: self.time_column.clone(),
                    sort_time: self.sort_time,
                };
                Ok((Table::read_csv_with(p, &options)?, p.display().to_string()))
            }
            (None, Some(name)) => Ok((
                ode_train::generate::generate(name, self.rows, self.data_seed, self.noise)?,
                name.clone(),
            )),
            _ => Err(
                "give the data with --data FILE.csv or --dataset NAME (spiral, lotka-volterra, five-channel)".into(),
            ),
        }
    }
}

/// Arguments of `ode train`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// TOML file with any of the settings below (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The tuning guide's presets: fast, balanced, accurate (the file and flags override it).
    #[arg(long)]
    preset: Option<String>,
    #[command(flatten)]
    run: RunConfig,
    /// Output folder: checkpoint.safetensors, metrics.jsonl, summary.json, config.toml (and
    /// mlflow_run.json with `--tracker mlflow`).
    #[arg(long)]
    out: PathBuf,
    /// Start from these weights (a safetensors file with the model's tensors, e.g. from PyTorch).
    #[arg(long, conflicts_with = "resume")]
    init_from: Option<PathBuf>,
    /// Resume from a checkpoint written by `ode train` (weights and optimiser state). With
    /// `--tracker mlflow`, logging goes on in the resumed training's run (named in
    /// mlflow_run.json next to the checkpoint) when the server and experiment are the same.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// JSON file with one list of training-window indices per epoch: the batch order to use
    /// instead of shuffling (e.g. another framework's, for a like-for-like comparison).
    #[arg(long)]
    batch_order: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Do not write DIR/report.html (the HTML report `ode report DIR` writes) at the end.
    #[arg(long)]
    no_report: bool,
    #[command(flatten)]
    tracking: crate::mlflow::TrackingArgs,
}

/// What `ode train` writes to `summary.json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Where the solves ran (`cpu (N threads)` or `gpu: <adapter>`).
    pub device: String,
    /// Best validation RMSE (normalised units).
    pub best_val_rmse: Option<f64>,
    /// Epoch of the best validation RMSE.
    pub best_epoch: Option<usize>,
    /// Validation RMSE of the last epoch.
    pub final_val_rmse: Option<f64>,
    /// Epochs run.
    pub epochs: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Mean seconds of the training loop alone per epoch (no validation, no data loading).
    pub train_seconds_per_epoch: f64,
    /// Mean forward NFE per sample per epoch.
    pub nfe_forward_per_epoch: f64,
    /// Mean backward NFE per sample per epoch.
    pub nfe_backward_per_epoch: f64,
    /// Forward NFE per sample over the whole run.
    pub nfe_forward: f64,
    /// Backward NFE per sample over the whole run.
    pub nfe_backward: f64,
    /// Wall time of the whole run.
    pub total_seconds: f64,
    /// val_rmse per epoch.
    pub val_rmse_history: Vec<f64>,
    /// train_loss per epoch.
    pub train_loss_history: Vec<f64>,
    /// The error that stopped training, if any.
    pub error: Option<String>,
    /// The baselines on the validation windows.
    pub baselines: Option<Baselines>,
    /// The best epoch's skill against persistence, `1 − best_val_rmse / rmse_persistence`.
    pub skill: Option<f64>,
}

fn preset(p: &Option<String>) -> Res<Option<Preset>> {
    Ok(match p {
        Some(s) => Some(s.parse()?),
        None => None,
    })
}

/// Trains a model and writes checkpoint, metrics, summary and the resolved configuration.
pub fn train(args: &TrainArgs) -> Res<()> {
    let started = Instant::now();
    let mut run = RunConfig::default();
    if let Some(path) = &args.config {
        run = run.merged(&RunConfig::from_toml_file(path)?);
    }
    run = run.merged(&args.run);
    let resolved = run.resolve(preset(&args.preset)?);
    let mut data_args = args.data.clone();
    data_args.sort_time |= run.sort_time == Some(true);
    let (table, source) = data_args.table()?;
    let ds = Dataset::from_table(&table, &resolved.data, &source)?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let ckpt = args.out.join("checkpoint.safetensors");
    let (model, resumed) = initial_model(args, &resolved, &ds)?;
    let written = RunConfig {
        sort_time: run.sort_time,
        season: run.season,
        ..RunConfig::from_resolved(&resolved)
    };
    std::fs::write(args.out.join("config.toml"), written.to_toml())?;
    let mut tracker = if args.resume.is_some() {
        JsonlTracker::append(&args.out.join("metrics.jsonl"))?
    } else {
        JsonlTracker::create(&args.out.join("metrics.jsonl"))?
    };
    let resume_from = args
        .resume
        .as_deref()
        .zip(resumed.as_ref())
        .map(|(path, (state, _))| ResumeFrom {
            dir: path.parent().unwrap_or(Path::new(".")),
            epoch: state.epoch,
        });
    let mut mlflow = TrainRun::start(
        &args.tracking,
        &args.out,
        &resolved.model.solver.to_string(),
        resume_from,
    )?;
    let mut sinks: Vec<&mut dyn ode_train::Tracker> = vec![&mut tracker];
    sinks.extend(mlflow.as_mut().map(|m| m as &mut dyn ode_train::Tracker));
    let mut tracker = ode_train::tracker::Tee(sinks);
    let meta = CheckpointMeta::for_dataset(model.config(), &ds);
    announce(&source, &ds, &model);
    let baselines = ode_train::baselines::for_dataset(&ds, run.season)?;
    eprintln!("{}", baselines.summary_line());
    let progress = EpochProgress::new(args.quiet);
    let (mut on_batch, on_epoch) = (progress.clone(), progress.clone());
    let mut train_cfg = resolved.train.clone();
    train_cfg.batch_order = batch_order(args)?;
    let mut trainer = Trainer::new(model, train_cfg, &mut tracker)?
        .with_checkpoint(CheckpointTarget { path: ckpt.clone(), meta })
        .with_baselines(baselines.clone())
        .on_batch_end(move |epoch, batch, batches, loss| on_batch.batch(epoch, batch, batches, loss))
        .on_epoch_end(move |epoch, m, _| {
            on_epoch.line(&format!(
                "epoch {epoch:>3}: train_loss {:.5}  val_rmse {:.5}{}  nfe fwd {:.0} bwd {:.0}  steps {:.0}+{:.0} rejected  {:.2}s",
                m.train_loss, m.val_rmse, skill_note(m.skill), m.nfe_forward, m.nfe_backward, m.accepted_steps, m.rejected_steps, m.seconds
            ));
        });
    if let Some((s, best)) = resumed {
        trainer = trainer.resume(s, best);
    }
    let device = trainer.device_name();
    eprintln!("solving on {device}");
    let result = trainer.fit(&ds.train, &ds.val);
    drop(trainer);
    progress.finish();
    let (history, error) = match result {
        Ok(h) => (h, None),
        Err(e) => (ode_train::History::default(), Some(e)),
    };
    let mut summary = Summary::of(device.clone(), &history, baselines, started);
    summary.error = error.as_ref().map(|e| e.to_string());
    std::fs::write(args.out.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    if !args.no_report {
        write_report(&args.out, &ds, &table);
    }
    if let Some(m) = mlflow {
        m.finish(&device, error.is_none());
    }
    if let Some(e) = error {
        return Err(Box::new(e));
    }
    outln!(
        "best val_rmse {:.5} at epoch {}; {:.3}s per epoch of training; wrote {}",
        summary.best_val_rmse.unwrap_or(f64::NAN),
        summary.best_epoch.unwrap_or(0),
        summary.train_seconds_per_epoch,
        ckpt.display()
    );
    warn_if_a_baseline_wins(&summary);
    Ok(())
}

/// The run's forecasts (from the best checkpoint, when there is one) and its HTML report;
/// failures are warnings, since the trained model is already saved.
fn write_report(dir: &Path, ds: &Dataset, table: &Table) {
    if dir.join("checkpoint.safetensors").exists()
        && let Err(e) = crate::forecasts::write(dir, ds, table)
    {
        eprintln!("warning: no forecasts in the report: {e}");
    }
    if let Err(e) = crate::report::write_run_report(dir, &dir.join("report.html")) {
        eprintln!("warning: no report: {e}");
    }
}

/// What `--resume` restores besides the weights: Adam's state and the best val_rmse so far.
type Resumed = (OptimState, Option<f64>);

/// The model to train: resumed from `--resume` (with its optimiser state and best val_rmse),
/// or a seeded one shaped for the data, optionally with `--init-from` weights.
fn initial_model(args: &TrainArgs, resolved: &Resolved, ds: &Dataset) -> Res<(NeuralOdeModel<f32>, Option<Resumed>)> {
    let Some(path) = &args.resume else {
        let mut m = NeuralOdeModel::for_dataset(&resolved.model, ds, resolved.train.seed)?;
        if let Some(path) = &args.init_from {
            checkpoint::load_weights(path, &mut m)?;
        }
        return Ok((m, None));
    };
    let (m, meta) = checkpoint::load(path)?;
    if m.config().input_dim != ds.input_dim() || m.config().outputs() != ds.output_dim() {
        return Err(format!(
            "{} was trained on {} features / {} targets, this data has {} / {}",
            path.display(),
            m.config().input_dim,
            m.config().outputs(),
            ds.input_dim(),
            ds.output_dim()
        )
        .into());
    }
    let state = checkpoint::load_optim(path, &m)?;
    Ok((m, Some((state, meta.best_val_rmse))))
}

/// Prints what is about to be trained.
fn announce(source: &str, ds: &Dataset, model: &NeuralOdeModel<f32>) {
    eprintln!(
        "training on {source}: {} train / {} val windows, {} features -> {} targets, {} parameters, solver {} ({})",
        ds.train.num_windows(),
        ds.val.num_windows(),
        ds.input_dim(),
        ds.output_dim(),
        model.num_params(),
        model.config().solver,
        if model.config().use_adjoint {
            "adjoint"
        } else {
            "backprop"
        }
    );
}

/// The batch order of `--batch-order FILE.json` (one index list per epoch), if given.
fn batch_order(args: &TrainArgs) -> Res<Option<Vec<Vec<usize>>>> {
    let Some(path) = &args.batch_order else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let order = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: expected a JSON list of index lists, one per epoch: {e}",
            path.display()
        )
    })?;
    Ok(Some(order))
}

impl Summary {
    /// The summary of a finished (or stopped) run.
    fn of(device: String, history: &ode_train::History, baselines: Baselines, started: Instant) -> Self {
        let n = history.epochs.len().max(1) as f64;
        let sum = |f: fn(&ode_train::EpochMetrics) -> f64| history.epochs.iter().map(f).sum::<f64>();
        Summary {
            device,
            best_val_rmse: history.best.map(|b| b.1),
            best_epoch: history.best.map(|b| b.0),
            final_val_rmse: history.epochs.last().map(|e| e.val_rmse),
            epochs: history.epochs.len(),
            stopped_early: history.stopped_early,
            train_seconds_per_epoch: sum(|e| e.train_seconds) / n,
            nfe_forward_per_epoch: sum(|e| e.nfe_forward) / n,
            nfe_backward_per_epoch: sum(|e| e.nfe_backward) / n,
            nfe_forward: sum(|e| e.nfe_forward),
            nfe_backward: sum(|e| e.nfe_backward),
            total_seconds: started.elapsed().as_secs_f64(),
            val_rmse_history: history.val_rmse(),
            train_loss_history: history.epochs.iter().map(|e| e.train_loss).collect(),
            error: None,
            skill: best_skill(history, &baselines),
            baselines: Some(baselines),
        }
    }
}

/// ` skill +0.38` for the epoch line, or nothing without baselines.
fn skill_note(skill: Option<f64>) -> String {
    skill.map(|s| format!("  skill {s:+.3}")).unwrap_or_default()
}

/// The best epoch's skill against persistence.
fn best_skill(history: &ode_train::History, baselines: &Baselines) -> Option<f64> {
    let (epoch, rmse) = history.best?;
    match history.epochs.iter().find(|e| e.epoch == epoch) {
        Some(e) => e.skill,
        // The best epoch came before a resume: its per-target errors are not at hand.
        None if baselines.targets_not_features.is_empty() => baselines.skill(rmse, &[]),
        None => None,
    }
}

/// Ends the run with a warning when the best model does not beat every baseline.
fn warn_if_a_baseline_wins(summary: &Summary) {
    let (Some(b), Some(rmse)) = (&summary.baselines, summary.best_val_rmse) else {
        return;
    };
    if let Some(w) = best_epoch_warning(summary.best_epoch.unwrap_or(0), rmse, summary.skill, b) {
        eprintln!("warning: {w}");
    }
}

/// What `ode predict` and `ode diagnose` assume for a weights-only checkpoint (a safetensors
/// file with the reference model's tensors and no `config` metadata, e.g. PyTorch's
/// `save_file(model.state_dict())`). With a full checkpoint they must agree with its metadata.
#[derive(Args, Debug, Default)]
pub struct AssumeArgs {
    /// Weights-only checkpoints: horizon H (default 12).
    #[arg(long)]
    horizon: Option<usize>,
    /// Weights-only checkpoints: time between forecast rows in model time (default 0.1).
    #[arg(long)]
    dt: Option<f64>,
    /// Weights-only checkpoints: context length C (default: encoder.0.weight's columns divided
    /// by the number of features).
    #[arg(long)]
    context_len: Option<usize>,
    /// Weights-only checkpoints: feature columns, comma separated (default: every numeric column).
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// Weights-only checkpoints: target columns, comma separated (default: the features).
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    /// Weights-only checkpoints: fraction of rows in the training split, whose statistics
    /// normalise the data (default 0.7).
    #[arg(long)]
    train_frac: Option<f64>,
    /// Weights-only checkpoints: fraction of rows in the test split (default 0.2).
    #[arg(long)]
    test_frac: Option<f64>,
}

impl AssumeArgs {
    /// With a full checkpoint: refuses a flag that disagrees with what the checkpoint records.
    fn check_against(&self, meta: &CheckpointMeta, path: &Path) -> Res<()> {
        let m = &meta.model;
        let differs = [
            (
                "--horizon",
                self.horizon.filter(|&v| v != m.horizon).map(|_| m.horizon.to_string()),
            ),
            ("--dt", self.dt.filter(|&v| v != m.dt).map(|_| m.dt.to_string())),
            (
                "--context-len",
                self.context_len
                    .filter(|&v| v != m.context_len)
                    .map(|_| m.context_len.to_string()),
            ),
            (
                "--features",
                self.features
                    .as_ref()
                    .filter(|v| **v != meta.features)
                    .map(|_| meta.features.join(",")),
            ),
            (
                "--targets",
                self.targets
                    .as_ref()
                    .filter(|v| **v != meta.targets)
                    .map(|_| meta.targets.join(",")),
            ),
            (
                "--train-frac",
                self.train_frac
                    .filter(|&v| v != meta.train_frac)
                    .map(|_| meta.train_frac.to_string()),
            ),
            (
                "--test-frac",
                self.test_frac
                    .filter(|&v| v != meta.test_frac)
                    .map(|_| meta.test_frac.to_string()),
            ),
        ];
        match differs.into_iter().find_map(|(flag, rec)| rec.map(|r| (flag, r))) {
            Some((flag, recorded)) => Err(format!(
                "{flag} disagrees with {}, which records {recorded}; {flag} is for weights-only checkpoints \
                 (no 'config' metadata): leave it out",
                path.display()
            )
            .into()),
            None => Ok(()),
        }
    }
}

/// Opens `path`: a full checkpoint, or a weights-only file whose dimensions come from its tensor
/// shapes and the data, the rest from `assume` or the defaults (printed as assumed), and the
/// normalisation statistics from the training split of `table`.
fn open_checkpoint(
    path: &Path,
    assume: &AssumeArgs,
    table: &Table,
    source: &str,
) -> Res<(NeuralOdeModel<f32>, CheckpointMeta)> {
    if checkpoint::has_config(path)? {
        let (model, meta) = checkpoint::load(path)?;
        assume.check_against(&meta, path)?;
        return Ok((model, meta));
    }
    let dd = DataConfig::default();
    let mut data = DataConfig {
        features: assume.features.clone(),
        targets: assume.targets.clone(),
        train_frac: assume.train_frac.unwrap_or(dd.train_frac),
        test_frac: assume.test_frac.unwrap_or(dd.test_frac),
        horizon: assume.horizon.unwrap_or(dd.horizon),
        ..dd
    };
    let input_dim = assume.features.as_ref().map_or(table.num_columns(), Vec::len);
    let base = ModelConfig {
        input_dim,
        horizon: data.horizon,
        dt: assume.dt.unwrap_or(ModelConfig::default().dt),
        ..ModelConfig::default()
    };
    let (model, inferred) = checkpoint::load_weights_only(path, &base, assume.context_len)?;
    let targets = assume.targets.as_ref().map_or(input_dim, Vec::len);
    if targets != inferred.output_dim {
        return Err(format!(
            "{}: tensor 'decoder.weight' has {} rows (targets) but {targets} target columns were {}; name the \
             model's target columns with --targets",
            path.display(),
            inferred.output_dim,
            if assume.targets.is_some() {
                "given"
            } else {
                "assumed (the features)"
            }
        )
        .into());
    }
    data.context_len = inferred.context_len;
    let ds = Dataset::from_table(table, &data, source)?;
    let meta = CheckpointMeta::for_dataset(model.config(), &ds);
    let c = model.config();
    let how = |given: bool, flag: &str| {
        if given {
            format!("given by {flag}")
        } else {
            format!("default; set with {flag}")
        }
    };
    eprintln!(
        "note: {} holds weights only (no 'config' metadata). From the tensor shapes: latent_dim {}, hidden_dim {}, \
         {} targets, context_len {} (encoder.0.weight's {} columns / {input_dim} features)",
        path.display(),
        c.latent_dim,
        c.hidden_dim,
        c.outputs(),
        c.context_len,
        c.context_len * input_dim
    );
    eprintln!(
        "assumed: horizon {} ({}), dt {} ({}), train_frac {} ({}), test_frac {} ({}), solver {} rtol {} atol {} \
         (defaults), features {} and targets {} ({}), normalisation statistics fitted on the training split of {source}",
        c.horizon,
        how(assume.horizon.is_some(), "--horizon"),
        c.dt,
        how(assume.dt.is_some(), "--dt"),
        data.train_frac,
        how(assume.train_frac.is_some(), "--train-frac"),
        data.test_frac,
        how(assume.test_frac.is_some(), "--test-frac"),
        c.solver,
        c.rtol,
        c.atol,
        meta.features.join(","),
        meta.targets.join(","),
        how(
            assume.features.is_some() || assume.targets.is_some(),
            "--features/--targets"
        ),
    );
    Ok((model, meta))
}

/// Arguments of `ode predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A checkpoint written by `ode train`, or a weights-only safetensors file (e.g. from
    /// PyTorch) whose dimensions are read from the tensor shapes and the data.
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    assume: AssumeArgs,
    /// Output CSV: one row per window and forecast step, predictions in data units.
    #[arg(long)]
    out: PathBuf,
}

fn load_split(meta: &CheckpointMeta, table: &Table, source: &str) -> Res<Split> {
    Ok(Dataset::whole_table(
        table,
        &meta.data_config(),
        source,
        &meta.feature_scaler(),
        &meta.target_scaler(),
    )?)
}

/// Forecasts every window of a file with a checkpoint and writes them in data units.
pub fn predict(args: &PredictArgs) -> Res<()> {
    let (table, source) = args.data.table()?;
    let (model, meta) = open_checkpoint(&args.checkpoint, &args.assume, &table, &source)?;
    let split = load_split(&meta, &table, &source)?;
    let c = model.config().clone();
    let (cw, tw, o, h) = (
        c.context_len * c.input_dim,
        c.horizon * c.outputs(),
        c.outputs(),
        c.horizon,
    );
    let ts = meta.target_scaler();
    let mut ws = Workspace::new(&model)?;
    let mut w = csv::Writer::from_path(&args.out).map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    let mut header = vec!["window".to_string(), "step".into(), "row".into()];
    if table.time.is_some() {
        header.push("time".into());
    }
    for t in &meta.targets {
        header.push(format!("{t}_pred"));
        header.push(format!("{t}_actual"));
    }
    w.write_record(&header)?;
    let n = split.num_windows();
    let chunk = 256;
    let (mut ctx, mut tgt, mut pred) = (vec![0f32; chunk * cw], vec![0f32; chunk * tw], vec![0f32; chunk * tw]);
    let mut start = 0;
    while start < n {
        let idx: Vec<usize> = (start..(start + chunk).min(n)).collect();
        let m = idx.len();
        split.fill_batch(&idx, &mut ctx[..m * cw], &mut tgt[..m * tw]);
        model.predict_into(&mut ws, &ctx[..m * cw], &mut pred[..m * tw])?;
        for (j, &win) in idx.iter().enumerate() {
            for k in 0..h {
                let row = split.target_start_row(win) + k;
                let mut rec = vec![win.to_string(), (k + 1).to_string(), row.to_string()];
                if let Some((_, times)) = &table.time {
                    rec.push(times[row].clone());
                }
                for q in 0..o {
                    let i = (j * h + k) * o + q;
                    rec.push(format!("{}", ts.denormalize(q, pred[i] as f64)));
                    rec.push(format!("{}", ts.denormalize(q, tgt[i] as f64)));
                }
                w.write_record(&rec)?;
            }
        }
        start += m;
    }
    w.flush()?;
    eprintln!("wrote {} forecasts of {} steps to {}", n, h, args.out.display());
    Ok(())
}

/// Which split `ode diagnose` looks at.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SplitName {
    /// Training windows.
    Train,
    /// Validation windows.
    Val,
    /// Test windows.
    Test,
}

/// Arguments of `ode diagnose`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct DiagnoseArgs {
    /// A checkpoint written by `ode train`, or a weights-only safetensors file (e.g. from
    /// PyTorch) whose dimensions are read from the tensor shapes and the data.
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    assume: AssumeArgs,
    /// Which split's windows.
    #[arg(long, value_enum, default_value = "val")]
    split: SplitName,
    /// Window range START..END within the split (default: the first 64).
    #[arg(long)]
    windows: Option<String>,
    /// Solver override.
    #[arg(long)]
    solver: Option<ode_train::gpu::core::Method>,
    /// rtol override.
    #[arg(long)]
    rtol: Option<f64>,
    /// atol override.
    #[arg(long)]
    atol: Option<f64>,
    /// Gradient method override: true for the adjoint, false for backprop.
    #[arg(long)]
    use_adjoint: Option<bool>,
    /// Step mode override: per_sample or shared.
    #[arg(long)]
    step_mode: Option<ode_train::gpu::core::StepMode>,
    /// Adjoint norm override: seminorm or mixed.
    #[arg(long)]
    adjoint_norm: Option<ode_train::gpu::core::AdjointNorm>,
    /// Step-size rules override: default or torchdiffeq.
    #[arg(long)]
    controller: Option<ode_train::gpu::core::ControllerKind>,
    /// Print JSON (loss, NFE, and every gradient tensor as a flat row-major list).
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Diagnosis {
    loss: f64,
    windows: (usize, usize),
    solver: ode_train::gpu::core::Method,
    use_adjoint: bool,
    nfe_forward: f64,
    nfe_backward: f64,
    accepted_steps: f64,
    rejected_steps: f64,
    gradients: serde_json::Map<String, serde_json::Value>,
}

fn parse_range(s: &str, n: usize) -> Res<(usize, usize)> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("--windows must look like START..END, got '{s}'"))?;
    let a: usize = a
        .trim()
        .parse()
        .map_err(|_| format!("--windows start '{a}' is not a number"))?;
    let b: usize = if b.trim().is_empty() {
        n
    } else {
        b.trim()
            .parse()
            .map_err(|_| format!("--windows end '{b}' is not a number"))?
    };
    if a >= b || b > n {
        return Err(format!("--windows {a}..{b} is empty or beyond the split's {n} windows").into());
    }
    Ok((a, b))
}

/// Loss, work and per-tensor gradients of a checkpoint on chosen windows.
pub fn diagnose(args: &DiagnoseArgs) -> Res<()> {
    let (table, source) = args.data.table()?;
    let (model, meta) = open_checkpoint(&args.checkpoint, &args.assume, &table, &source)?;
    let mut mc: ModelConfig = model.config().clone();
    if let Some(v) = &args.solver {
        mc.solver = *v;
    }
    if let Some(v) = args.rtol {
        mc.rtol = v;
    }
    if let Some(v) = args.atol {
        mc.atol = v;
    }
    if let Some(v) = args.use_adjoint {
        mc.use_adjoint = v;
    }
    if let Some(v) = &args.step_mode {
        mc.step_mode = *v;
    }
    if let Some(v) = &args.adjoint_norm {
        mc.adjoint_norm = *v;
    }
    if let Some(v) = args.controller {
        mc.controller = v;
    }
    let model = NeuralOdeModel::from_params(mc.clone(), model.params().to_vec())?;
    let ds = Dataset::from_table_with_scalers(
        &table,
        &DataConfig { ..meta.data_config() },
        &source,
        meta.feature_scaler(),
        meta.target_scaler(),
    )?;
    let split = match args.split {
        SplitName::Train => &ds.train,
        SplitName::Val => &ds.val,
        SplitName::Test => &ds.test,
    };
    let n = split.num_windows();
    let (a, b) = match &args.windows {
        Some(s) => parse_range(s, n)?,
        None if n > 0 => (0, n.min(64)),
        None => return Err(format!("the {} split has no windows", split.name()).into()),
    };
    let (cw, tw) = (mc.context_len * mc.input_dim, mc.horizon * mc.outputs());
    let idx: Vec<usize> = (a..b).collect();
    let rows = idx.len();
    let (mut ctx, mut tgt) = (vec![0f32; rows * cw], vec![0f32; rows * tw]);
    split.fill_batch(&idx, &mut ctx, &mut tgt);
    let mut ws = Workspace::new(&model)?;
    let mut grad = vec![0f32; model.num_params()];
    let st = model.loss_and_grad(&mut ws, &ctx, &tgt, rows * tw, &mut grad)?;
    let per = rows as f64;
    let mut gradients = serde_json::Map::new();
    for (name, shape, off) in model.tensors() {
        let r = *off..off + shape.iter().product::<usize>();
        gradients.insert(
            name.to_string(),
            serde_json::json!(grad[r].iter().map(|g| *g as f64).collect::<Vec<_>>()),
        );
    }
    let d = Diagnosis {
        loss: st.loss,
        windows: (a, b),
        solver: mc.solver,
        use_adjoint: mc.use_adjoint,
        nfe_forward: st.nfe_forward / per,
        nfe_backward: st.nfe_backward / per,
        accepted_steps: st.accepted / per,
        rejected_steps: st.rejected / per,
        gradients,
    };
    if args.json {
        outln!("{}", serde_json::to_string(&d)?);
        return Ok(());
    }
    outln!(
        "{} windows {a}..{b} of {source}: loss {:.6e}  ({} solver, {} gradients, {} steps)",
        split.name(),
        d.loss,
        mc.solver,
        if mc.use_adjoint { "adjoint" } else { "backprop" },
        mc.step_mode
    );
    outln!(
        "per window: nfe forward {:.1}, backward {:.1}; steps {:.1} accepted, {:.1} rejected",
        d.nfe_forward,
        d.nfe_backward,
        d.accepted_steps,
        d.rejected_steps
    );
    outln!(
        "{:<18} {:>12} {:>14} {:>14} {:>10}",
        "tensor",
        "shape",
        "L2 norm",
        "max |g|",
        "finite"
    );
    for (name, shape, off) in model.tensors() {
        let len: usize = shape.iter().product();
        let g = &grad[*off..off + len];
        let norm = g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let max = g.iter().fold(0f64, |m, x| m.max((*x as f64).abs()));
        let shape = shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("x");
        outln!(
            "{name:<18} {shape:>12} {norm:>14.6e} {max:>14.6e} {:>10}",
            g.iter().all(|x| x.is_finite())
        );
    }
    Ok(())
}

/// Arguments of `ode data generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// spiral, lotka-volterra or five-channel.
    #[arg(long)]
    dataset: String,
    /// Rows to generate.
    #[arg(long, default_value_t = 2000)]
    rows: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Observation noise as a fraction of each column's std.
    #[arg(long, default_value_t = 0.01)]
    noise: f64,
    /// Output CSV.
    #[arg(long)]
    out: PathBuf,
}

/// Writes a generated dataset to CSV.
pub fn generate(args: &GenerateArgs) -> Res<()> {
    let t = ode_train::generate::generate(&args.dataset, args.rows, args.seed, args.noise)?;
    t.write_csv(&args.out)?;
    eprintln!(
        "wrote {} rows of {} ({}) to {}",
        t.num_rows(),
        args.dataset,
        t.columns.join(", "),
        args.out.display()
    );
    Ok(())
}
