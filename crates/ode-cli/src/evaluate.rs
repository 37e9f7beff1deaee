//! `ode evaluate`: a checkpoint's RMSE and MAE on every window of the validation or test split,
//! per target in normalised and data units, next to the baselines on the same windows.
//!
//! The data is rebuilt exactly as the model was trained: the checkpoint's columns, window
//! sizes and split fractions, normalised with its stored training statistics. Every window of
//! the split is scored (a training run's `max_train_windows` / `max_val_windows` caps are not
//! recorded in checkpoints, so they do not apply here). The baselines
//! are fitted on the training split and choose their ridge regularisation on the validation
//! split ([`ode_train::baselines::compute_on`]), whichever split is scored. `ode search` scores
//! its best trial with the same code ([`evaluate_checkpoint`]).

use crate::out::outln;
use crate::train::DataArgs;
use clap::{Args, ValueEnum};
use ode_train::baselines::{self, Baseline, BaselineScore, Baselines};
use ode_train::checkpoint::{self, CheckpointMeta};
use ode_train::data::{Dataset, Split, Table};
use ode_train::{NeuralOdeModel, Workspace};
use serde::Serialize;
use std::error::Error;
use std::path::{Path, PathBuf};

type Res<T> = Result<T, Box<dyn Error>>;

/// Windows per forecast batch: the trainer's default validation chunk, so that `--split val`
/// forecasts the validation windows in the same batches as training did (adaptive solvers with
/// shared steps couple a batch's rows).
const CHUNK: usize = 256;

/// Which split `ode evaluate` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalSplit {
    /// The validation windows (what training and search choose on).
    Val,
    /// The held-out test windows (never used to choose anything).
    Test,
}

/// Output formats of `ode evaluate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON object with stable keys.
    Json,
}

/// Arguments of `ode evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// A checkpoint written by `ode train` (DIR/checkpoint.safetensors) or by `ode search`
    /// (the best trial's weights); its columns, window sizes, split and training statistics
    /// rebuild the data.
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Which split to score: `test` (the default: the last rows, held out from training and
    /// from every choice) or `val` (the validation rows that training and search choose on).
    #[arg(long, value_enum, default_value = "test")]
    split: EvalSplit,
    /// Season in rows for the seasonal naive baseline (1 <= season <= context_len; default: none).
    #[arg(long, value_name = "ROWS")]
    season: Option<usize>,
    /// `table` for people, `json` for programs.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// A forecaster's error on one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetScore {
    /// The target column.
    pub target: String,
    /// RMSE in normalised units.
    pub rmse: f64,
    /// MAE in normalised units.
    pub mae: f64,
    /// RMSE in data units (normalised × the target's training std).
    pub rmse_data_units: f64,
    /// MAE in data units.
    pub mae_data_units: f64,
}

/// A forecaster's error on the scored windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// RMSE over windows, steps and the targets it covers (normalised units).
    pub rmse: f64,
    /// MAE over windows, steps and the targets it covers (normalised units).
    pub mae: f64,
    /// `1 − rmse / rmse_persistence` (normalised units, on the targets persistence covers);
    /// `null` without a persistence score.
    pub skill: Option<f64>,
    /// Per target, in target order; `null` for a target the forecaster cannot forecast (a
    /// naive baseline's target that is not a feature).
    pub per_target: Vec<Option<TargetScore>>,
}

/// What `ode evaluate` reports (its JSON output).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// The checkpoint scored.
    pub checkpoint: String,
    /// The data it was scored on.
    pub data: String,
    /// `val` or `test`.
    pub split: String,
    /// Windows scored (every window of the split).
    pub windows: usize,
    /// Forecast steps per window.
    pub horizon: usize,
    /// Target columns, in output order.
    pub targets: Vec<String>,
    /// Each target's training std (data units per normalised unit).
    pub target_std: Vec<f64>,
    /// The model's score.
    pub model: Score,
    /// Each baseline's score on the same windows, by key (`persistence`, `window_mean`,
    /// `seasonal_naive` with a season, `linear_ar`).
    pub baselines: serde_json::Map<String, serde_json::Value>,
    /// The linear AR's ridge regularisation, chosen on the validation split.
    pub ridge_lambda: f64,
    /// The seasonal naive baseline's season (rows), if given.
    pub season: Option<usize>,
    /// Targets that are not features, which the naive baselines skip.
    pub targets_not_features: Vec<String>,
    /// The baselines in report order, for the table.
    #[serde(skip)]
    pub baseline_rows: Vec<(Baseline, Score)>,
}

/// Scores a checkpoint on `args.split` and prints a table or JSON.
pub fn evaluate(args: &EvaluateArgs) -> Res<()> {
    let (table, source) = args.data.table()?;
    let e = evaluate_checkpoint(&args.checkpoint, &table, &source, args.split, args.season)?;
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&e)?),
        Format::Table => print_table(&e),
    }
    Ok(())
}

/// Loads the checkpoint at `path`, rebuilds its data from `table` (named `source`) with the
/// stored configuration and statistics, and scores the model and the baselines on `split`.
pub fn evaluate_checkpoint(
    path: &Path,
    table: &Table,
    source: &str,
    split: EvalSplit,
    season: Option<usize>,
) -> Res<Evaluation> {
    if !checkpoint::has_config(path)? {
        return Err(format!(
            "{} holds weights only (no 'config' metadata); ode evaluate needs a checkpoint written by \
             ode train or ode search, whose columns, split and training statistics it reuses",
            path.display()
        )
        .into());
    }
    let (model, meta) = checkpoint::load(path)?;
    let e = evaluate_model(&model, &meta, table, source, split, season)?;
    Ok(Evaluation {
        checkpoint: path.display().to_string(),
        ..e
    })
}

/// Scores `model` on `split` of the data `meta` describes, rebuilt from `table` (named
/// `source`) with `meta`'s configuration and training statistics (`checkpoint` left empty).
pub fn evaluate_model(
    model: &NeuralOdeModel<f32>,
    meta: &CheckpointMeta,
    table: &Table,
    source: &str,
    split: EvalSplit,
    season: Option<usize>,
) -> Res<Evaluation> {
    let ds = dataset_of(meta, table, source)?;
    score(model, &ds, split, season)
}

/// The dataset `meta`'s model was trained on, rebuilt from `table` with its statistics.
fn dataset_of(meta: &CheckpointMeta, table: &Table, source: &str) -> Res<Dataset> {
    let ds = Dataset::from_table_with_scalers(
        table,
        &meta.data_config(),
        source,
        meta.feature_scaler(),
        meta.target_scaler(),
    )?;
    let (d, o) = (meta.feature_scaler().dim(), meta.target_scaler().dim());
    if ds.input_dim() != d || ds.output_dim() != o {
        return Err(format!(
            "the checkpoint has statistics for {d} features and {o} targets, but {source} gives {} and {}",
            ds.input_dim(),
            ds.output_dim()
        )
        .into());
    }
    Ok(ds)
}

/// Scores `model` and the baselines on `split` of `ds` (`checkpoint` left empty).
fn score(model: &NeuralOdeModel<f32>, ds: &Dataset, split: EvalSplit, season: Option<usize>) -> Res<Evaluation> {
    let eval = match split {
        EvalSplit::Val => &ds.val,
        EvalSplit::Test => &ds.test,
    };
    let b = baselines::for_dataset_split(ds, eval, season).map_err(|e| format!("{}: {e}", ds.source))?;
    let (sse, sae) = model_errors(model, eval)?;
    let count = (eval.num_windows() * eval.horizon()) as f64;
    let std = &ds.target_scaler.std;
    let per_target: Vec<Option<TargetScore>> = (0..ds.output_dim())
        .map(|j| {
            let (rmse, mae) = ((sse[j] / count).sqrt(), sae[j] / count);
            Some(TargetScore {
                target: ds.targets[j].clone(),
                rmse,
                mae,
                rmse_data_units: rmse * std[j],
                mae_data_units: mae * std[j],
            })
        })
        .collect();
    let all = count * ds.output_dim() as f64;
    let (rmse, mae) = ((sse.iter().sum::<f64>() / all).sqrt(), sae.iter().sum::<f64>() / all);
    let model_score = Score {
        rmse,
        mae,
        skill: skill_of(&b, rmse, &per_target),
        per_target,
    };
    let rows: Vec<(Baseline, Score)> = b
        .scores
        .iter()
        .map(|s| (s.baseline, baseline_score(&b, s, ds)))
        .collect();
    Ok(Evaluation {
        checkpoint: String::new(),
        data: ds.source.clone(),
        split: eval.name().to_string(),
        windows: eval.num_windows(),
        horizon: eval.horizon(),
        targets: ds.targets.clone(),
        target_std: std.clone(),
        model: model_score,
        baselines: rows
            .iter()
            .map(|(k, s)| Ok((k.key().to_string(), serde_json::to_value(s)?)))
            .collect::<Result<_, serde_json::Error>>()?,
        ridge_lambda: b.ridge_lambda,
        season: b.season,
        targets_not_features: b.targets_not_features.clone(),
        baseline_rows: rows,
    })
}

/// The model's squared- and absolute-error sums per target (normalised units) over every
/// window of `split`, forecast in batches of [`CHUNK`] windows in order.
fn model_errors(model: &NeuralOdeModel<f32>, split: &Split) -> Res<(Vec<f64>, Vec<f64>)> {
    let c = model.config();
    let (cw, tw, o) = (c.context_len * c.input_dim, c.horizon * c.outputs(), c.outputs());
    if split.input_dim() != c.input_dim || split.output_dim() != o || split.context_len() != c.context_len {
        return Err(format!(
            "the model reads {} rows of {} features and forecasts {o} targets; the {} split has {} rows of {} \
             features and {} targets",
            c.context_len,
            c.input_dim,
            split.name(),
            split.context_len(),
            split.input_dim(),
            split.output_dim()
        )
        .into());
    }
    let mut ws = Workspace::new(model)?;
    let (mut sse, mut sae) = (vec![0.0f64; o], vec![0.0f64; o]);
    let n = split.num_windows();
    let (mut ctx, mut tgt, mut pred) = (vec![0f32; CHUNK * cw], vec![0f32; CHUNK * tw], vec![0f32; CHUNK * tw]);
    for start in (0..n).step_by(CHUNK) {
        let idx: Vec<usize> = (start..(start + CHUNK).min(n)).collect();
        let m = idx.len();
        split.fill_batch(&idx, &mut ctx[..m * cw], &mut tgt[..m * tw]);
        model
            .predict_into(&mut ws, &ctx[..m * cw], &mut pred[..m * tw])
            .map_err(|e| {
                format!(
                    "forecasting windows {start}..{} of the {} split: {e}",
                    start + m,
                    split.name()
                )
            })?;
        for (k, (p, t)) in pred[..m * tw].iter().zip(&tgt[..m * tw]).enumerate() {
            let e = (*p - *t) as f64;
            sse[k % o] += e * e;
            sae[k % o] += e.abs();
        }
    }
    Ok((sse, sae))
}

/// Skill against persistence of a forecaster with normalised `rmse` and these per-target
/// scores (see [`Baselines::skill`]).
fn skill_of(b: &Baselines, rmse: f64, per_target: &[Option<TargetScore>]) -> Option<f64> {
    let units: Vec<f64> = per_target
        .iter()
        .map(|t| t.as_ref().map_or(f64::NAN, |t| t.rmse_data_units))
        .collect();
    b.skill(rmse, &units)
}

/// A baseline's [`Score`], per target in both units.
fn baseline_score(b: &Baselines, s: &BaselineScore, ds: &Dataset) -> Score {
    let per_target: Vec<Option<TargetScore>> = (0..ds.output_dim())
        .map(|j| {
            let std = ds.target_scaler.std[j];
            let rmse_du = s.rmse_data_units.get(j).copied().flatten()?;
            let mae_du = s.mae_data_units.get(j).copied().flatten()?;
            Some(TargetScore {
                target: ds.targets[j].clone(),
                rmse: rmse_du / std,
                mae: mae_du / std,
                rmse_data_units: rmse_du,
                mae_data_units: mae_du,
            })
        })
        .collect();
    Score {
        rmse: s.rmse,
        mae: s.mae,
        skill: skill_of(b, s.rmse, &per_target),
        per_target,
    }
}

/// The label of a row: `model`, or the baseline's name with its season or λ.
fn row_label(which: Option<Baseline>, e: &Evaluation) -> String {
    match which {
        None => "model".into(),
        Some(Baseline::SeasonalNaive) => format!("seasonal naive (season {})", e.season.unwrap_or(0)),
        Some(Baseline::LinearAr) => format!("linear AR (λ {:.0e})", e.ridge_lambda),
        Some(b) => b.label().into(),
    }
}

fn fmt_skill(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{s:+.3}"))
}

/// Prints an [`Evaluation`] as aligned tables: overall (normalised units), then per target in
/// normalised and data units.
pub fn print_table(e: &Evaluation) {
    outln!(
        "{} split of {}: {} windows × {} steps{}",
        e.split,
        e.data,
        e.windows,
        e.horizon,
        if e.checkpoint.is_empty() {
            String::new()
        } else {
            format!(", checkpoint {}", e.checkpoint)
        }
    );
    let rows: Vec<(String, &Score)> = std::iter::once((row_label(None, e), &e.model))
        .chain(e.baseline_rows.iter().map(|(b, s)| (row_label(Some(*b), e), s)))
        .collect();
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(5).max(12);
    outln!(
        "{:<w$}  {:>10} {:>10} {:>7}   (normalised units)",
        "all targets",
        "rmse",
        "mae",
        "skill"
    );
    for (label, s) in &rows {
        outln!(
            "{label:<w$}  {:>10.6} {:>10.6} {:>7}",
            s.rmse,
            s.mae,
            fmt_skill(s.skill)
        );
    }
    for (j, t) in e.targets.iter().enumerate() {
        outln!(
            "{:<w$}  {:>10} {:>10} {:>14} {:>14}",
            format!("{t} (std {:.4})", e.target_std[j]),
            "rmse",
            "mae",
            "rmse (data)",
            "mae (data)"
        );
        for (label, s) in &rows {
            match &s.per_target[j] {
                Some(ts) => outln!(
                    "{label:<w$}  {:>10.6} {:>10.6} {:>14.6} {:>14.6}",
                    ts.rmse,
                    ts.mae,
                    ts.rmse_data_units,
                    ts.mae_data_units
                ),
                None => outln!("{label:<w$}  {:>10} {:>10} {:>14} {:>14}", "-", "-", "-", "-"),
            }
        }
    }
    outln!("skill = 1 - rmse / rmse of persistence (normalised units); the baselines' λ was chosen on the val split");
    if !e.targets_not_features.is_empty() {
        outln!(
            "note: target(s) {} are not features, so persistence, window mean and seasonal naive skip them",
            e.targets_not_features.join(", ")
        );
    }
}
