//! Naive and linear reference forecasts, scored on exactly the windows the model is scored on.
//!
//! [`compute`] scores, on every window of the validation split (honouring `max_val_windows`
//! as the trainer's validation does), in normalised units and per target in data units;
//! [`compute_on`] scores them on another split (the test split), with everything chosen on
//! the validation split as before, so the evaluated split never influences a choice:
//!
//! - **persistence**: each target's last context value, repeated over the horizon;
//! - **window mean**: each target's mean over the context window;
//! - **seasonal naive** (with a `season` of `s` rows): horizon step `k` repeats the context
//!   value at the same phase one season earlier, row `C + k − s·(⌊k/s⌋ + 1)` of the window;
//! - **linear AR**: ridge regression from the flattened context (all features, plus an
//!   unpenalised intercept) to the flattened horizon targets, fitted in closed form on the
//!   training windows, with the regularisation chosen on the validation windows.
//!
//! The first three read a target's past from the context, so they need the target to be a
//! feature; a target that is not is listed in [`Baselines::targets_not_features`] and skipped
//! by them (their normalised RMSE then covers the other targets only).

use crate::data::{DataError, Dataset, Split};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// The reference forecasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// The last context value.
    Persistence,
    /// The context-window mean.
    WindowMean,
    /// The value one season earlier (needs a `season`).
    SeasonalNaive,
    /// Ridge regression from the flattened context to the horizon.
    LinearAr,
}

impl Baseline {
    /// Every baseline, in report order.
    pub const ALL: [Baseline; 4] = [
        Baseline::Persistence,
        Baseline::WindowMean,
        Baseline::SeasonalNaive,
        Baseline::LinearAr,
    ];

    /// The serde name (`persistence`, `window_mean`, `seasonal_naive`, `linear_ar`), also used
    /// for metric names (`baseline_<name>`).
    pub fn key(self) -> &'static str {
        match self {
            Baseline::Persistence => "persistence",
            Baseline::WindowMean => "window_mean",
            Baseline::SeasonalNaive => "seasonal_naive",
            Baseline::LinearAr => "linear_ar",
        }
    }

    /// A name for people (`window mean`, `linear AR`, …).
    pub fn label(self) -> &'static str {
        match self {
            Baseline::Persistence => "persistence",
            Baseline::WindowMean => "window mean",
            Baseline::SeasonalNaive => "seasonal naive",
            Baseline::LinearAr => "linear AR",
        }
    }
}

/// One baseline's error on the scored split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineScore {
    /// Which baseline.
    pub baseline: Baseline,
    /// RMSE over the windows, horizon steps and the targets it covers (normalised units).
    pub rmse: f64,
    /// RMSE per target in data units (`None` for a target it cannot forecast).
    pub rmse_data_units: Vec<Option<f64>>,
    /// Mean absolute error over the windows, horizon steps and the targets it covers
    /// (normalised units; 0 in summaries written before it was recorded).
    #[serde(default)]
    pub mae: f64,
    /// MAE per target in data units (`None` for a target it cannot forecast).
    #[serde(default)]
    pub mae_data_units: Vec<Option<f64>>,
}

fn default_split() -> String {
    "val".into()
}

/// The baselines of a run, scored on the validation windows (or, from [`compute_on`], on
/// another split's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// The split scored: `val`, or the evaluated split's name (e.g. `test`).
    #[serde(default = "default_split")]
    pub split: String,
    /// Windows scored (for `val`, the model's validation windows).
    pub windows: usize,
    /// One score per baseline computed, in [`Baseline::ALL`] order.
    pub scores: Vec<BaselineScore>,
    /// The ridge regularisation chosen for the linear AR baseline (see [`BaselineConfig::lambdas`]).
    pub ridge_lambda: f64,
    /// The season (rows) of the seasonal naive baseline, if given.
    pub season: Option<usize>,
    /// Targets that are not features, which persistence, window mean and seasonal naive skip.
    pub targets_not_features: Vec<String>,
    /// Each target's standard deviation (data units per normalised unit).
    pub target_std: Vec<f64>,
}

impl Baselines {
    /// The score of `b`, if it was computed.
    pub fn get(&self, b: Baseline) -> Option<&BaselineScore> {
        self.scores.iter().find(|s| s.baseline == b)
    }

    /// The persistence RMSE (normalised), if any target is a feature.
    pub fn persistence(&self) -> Option<f64> {
        self.get(Baseline::Persistence).map(|s| s.rmse)
    }

    /// The model's skill against persistence, `1 − rmse_model / rmse_persistence`, from its
    /// normalised validation RMSE (all targets) and its per-target RMSE in data units (used to
    /// restrict the model's RMSE to the targets persistence covers when some are not
    /// features). `None` without a persistence score, or when it is 0.
    pub fn skill(&self, val_rmse: f64, val_rmse_data_units: &[f64]) -> Option<f64> {
        let p = self.get(Baseline::Persistence)?;
        if p.rmse <= 0.0 || !p.rmse.is_finite() {
            return None;
        }
        let model = if self.targets_not_features.is_empty() {
            val_rmse
        } else {
            let covered: Vec<f64> = p
                .rmse_data_units
                .iter()
                .zip(val_rmse_data_units)
                .zip(&self.target_std)
                .filter(|((b, _), _)| b.is_some())
                .map(|((_, m), s)| (m / s).powi(2))
                .collect();
            (covered.iter().sum::<f64>() / covered.len().max(1) as f64).sqrt()
        };
        Some(1.0 - model / p.rmse)
    }

    /// One line for people: `baselines on N val windows: persistence 0.9612  window mean …`.
    pub fn summary_line(&self) -> String {
        let mut s = format!("baselines on {} {} windows:", self.windows, self.split);
        for sc in &self.scores {
            s.push_str(&format!("  {} {:.4}", sc.baseline.label(), sc.rmse));
            match sc.baseline {
                Baseline::SeasonalNaive => s.push_str(&format!(" (season {})", self.season.unwrap_or(0))),
                Baseline::LinearAr => s.push_str(&format!(" (λ {:.0e})", self.ridge_lambda)),
                _ => {}
            }
        }
        if !self.targets_not_features.is_empty() {
            s.push_str(&format!(
                "\nnote: target(s) {} are not features, so persistence, window mean and seasonal naive skip \
                 them (their RMSE covers the other targets only)",
                self.targets_not_features.join(", ")
            ));
        }
        s
    }
}

/// What [`compute`] needs besides the splits.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineConfig {
    /// Season in rows for the seasonal naive baseline (1 ≤ season ≤ context_len); `None` skips it.
    pub season: Option<usize>,
    /// For each target, its feature index (where its past sits in the context), if it is a feature.
    pub target_features: Vec<Option<usize>>,
    /// Target names, for messages.
    pub target_names: Vec<String>,
    /// Each target's standard deviation (data units per normalised unit), as the trainer uses
    /// for `val_rmse_data_units`.
    pub target_std: Vec<f64>,
    /// Ridge regularisations to try, per training window: the fit solves
    /// `(XᵀX + n·λ·I′) W = XᵀY` (`n` training windows, `I′` the identity without the intercept),
    /// i.e. λ is the penalty on the mean squared error, independent of the data's length.
    pub lambdas: Vec<f64>,
}

impl BaselineConfig {
    /// The default ridge grid: 1e-4, 1e-3, …, 1e2.
    pub const LAMBDAS: [f64; 7] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0];

    /// The configuration of `ds` (targets matched to features by column name).
    pub fn for_dataset(ds: &Dataset, season: Option<usize>) -> Self {
        Self {
            season,
            target_features: ds
                .targets
                .iter()
                .map(|t| ds.features.iter().position(|f| f == t))
                .collect(),
            target_names: ds.targets.clone(),
            target_std: ds.target_scaler.std.clone(),
            lambdas: Self::LAMBDAS.to_vec(),
        }
    }
}

/// Squared- and absolute-error sums per target, and the data-unit conversion at the end.
struct Sse {
    per_target: Vec<f64>,
    abs_per_target: Vec<f64>,
}

impl Sse {
    fn new(o: usize) -> Self {
        Self {
            per_target: vec![0.0; o],
            abs_per_target: vec![0.0; o],
        }
    }

    /// Adds the error `e` (forecast − actual) of target `j`.
    fn add(&mut self, j: usize, e: f64) {
        self.per_target[j] += e * e;
        self.abs_per_target[j] += e.abs();
    }

    fn score(&self, baseline: Baseline, covered: &[bool], count: usize, std: &[f64]) -> BaselineScore {
        let count = count.max(1) as f64;
        let (mut sum, mut abs, mut n) = (0.0, 0.0, 0usize);
        let (mut rmse_data_units, mut mae_data_units) = (Vec::new(), Vec::new());
        for (j, (s, a)) in self.per_target.iter().zip(&self.abs_per_target).enumerate() {
            let scale = std.get(j).copied().unwrap_or(1.0);
            if covered[j] {
                (sum, abs, n) = (sum + s, abs + a, n + 1);
            }
            rmse_data_units.push(covered[j].then(|| (s / count).sqrt() * scale));
            mae_data_units.push(covered[j].then(|| a / count * scale));
        }
        let all = count * n.max(1) as f64;
        BaselineScore {
            baseline,
            rmse: (sum / all).sqrt(),
            rmse_data_units,
            mae: abs / all,
            mae_data_units,
        }
    }
}

/// Checks the season against the context length.
fn check_season(season: Option<usize>, c: usize) -> Result<(), DataError> {
    match season {
        Some(s) if s == 0 || s > c => Err(DataError::InvalidConfig {
            name: "season".into(),
            value: s.to_string(),
            reason: format!(
                "the seasonal naive baseline reads one season back from the context, so the season must be \
                 between 1 and context_len = {c} rows; use a longer --context-len or leave the season out"
            ),
        }),
        _ => Ok(()),
    }
}

/// Scores every baseline on the windows of `val`; the linear AR is fitted on the windows of `train`.
pub fn compute(train: &Split, val: &Split, cfg: &BaselineConfig) -> Result<Baselines, DataError> {
    compute_on(train, val, val, cfg)
}

/// Scores every baseline on the windows of `eval` (e.g. the test split), choosing as
/// [`compute`] does: the linear AR is fitted on `train` with the regularisation that scores
/// best on `val`, so nothing about `eval` influences any baseline's forecasts.
/// `compute_on(train, val, val, cfg)` is [`compute`].
pub fn compute_on(train: &Split, val: &Split, eval: &Split, cfg: &BaselineConfig) -> Result<Baselines, DataError> {
    let (c, h, o) = (eval.context_len(), eval.horizon(), eval.output_dim());
    check_season(cfg.season, c)?;
    if cfg.target_features.len() != o {
        return Err(DataError::InvalidConfig {
            name: "targets".into(),
            value: cfg.target_features.len().to_string(),
            reason: format!(
                "the baselines were given {} targets, the data has {o}",
                cfg.target_features.len()
            ),
        });
    }
    if eval.num_windows() == 0 {
        return Err(DataError::InvalidConfig {
            name: "split".into(),
            value: eval.name().into(),
            reason: format!(
                "the {} split has {} rows, fewer than one window (context_len + horizon = {}), so there is \
                 nothing to score",
                eval.name(),
                eval.rows(),
                c + h
            ),
        });
    }
    let covered: Vec<bool> = cfg.target_features.iter().map(Option::is_some).collect();
    let naive = naive_sse(eval, cfg);
    let count = eval.num_windows() * h;
    let mut scores = Vec::new();
    if covered.iter().any(|&b| b) {
        for (b, sse) in naive {
            scores.push(sse.score(b, &covered, count, &cfg.target_std));
        }
    }
    let all = vec![true; o];
    let (lambda, w) = fit_linear_ar(train, val, &cfg.lambdas);
    let ar = linear_sse(eval, &w);
    scores.push(ar.score(Baseline::LinearAr, &all, count, &cfg.target_std));
    Ok(Baselines {
        split: eval.name().into(),
        windows: eval.num_windows(),
        scores,
        ridge_lambda: lambda,
        season: cfg.season,
        targets_not_features: cfg
            .target_features
            .iter()
            .zip(&cfg.target_names)
            .filter(|(f, _)| f.is_none())
            .map(|(_, n)| n.clone())
            .collect(),
        target_std: cfg.target_std.clone(),
    })
}

/// [`compute`] on a dataset's training and validation splits.
pub fn for_dataset(ds: &Dataset, season: Option<usize>) -> Result<Baselines, DataError> {
    compute(&ds.train, &ds.val, &BaselineConfig::for_dataset(ds, season))
}

/// [`compute_on`] a dataset's `eval` split (`ds.val` or `ds.test`), fitted on its training
/// split and chosen on its validation split.
pub fn for_dataset_split(ds: &Dataset, eval: &Split, season: Option<usize>) -> Result<Baselines, DataError> {
    compute_on(&ds.train, &ds.val, eval, &BaselineConfig::for_dataset(ds, season))
}

/// Squared errors of persistence, window mean and (with a season) seasonal naive on `val`.
fn naive_sse(val: &Split, cfg: &BaselineConfig) -> Vec<(Baseline, Sse)> {
    let (c, h, d, o) = (val.context_len(), val.horizon(), val.input_dim(), val.output_dim());
    let mut out = vec![
        (Baseline::Persistence, Sse::new(o)),
        (Baseline::WindowMean, Sse::new(o)),
    ];
    if cfg.season.is_some() {
        out.push((Baseline::SeasonalNaive, Sse::new(o)));
    }
    let (mut ctx, mut tgt) = (vec![0.0f32; c * d], vec![0.0f32; h * o]);
    for i in 0..val.num_windows() {
        val.fill_batch(&[i], &mut ctx, &mut tgt);
        for (j, f) in cfg.target_features.iter().enumerate() {
            let Some(f) = *f else { continue };
            let last = ctx[(c - 1) * d + f] as f64;
            let mean = (0..c).map(|t| ctx[t * d + f] as f64).sum::<f64>() / c as f64;
            for k in 0..h {
                let y = tgt[k * o + j] as f64;
                out[0].1.add(j, last - y);
                out[1].1.add(j, mean - y);
                if let Some(s) = cfg.season {
                    let row = c + k - s * (k / s + 1);
                    out[2].1.add(j, ctx[row * d + f] as f64 - y);
                }
            }
        }
    }
    out
}

/// The ridge system of a split's windows: `XᵀX` (`p × p`, `p = C·D + 1`, the intercept last)
/// and `XᵀY` (`p × H·O`), accumulated window by window.
pub fn normal_equations(split: &Split) -> (DMatrix<f64>, DMatrix<f64>) {
    let (c, h, d, o) = (
        split.context_len(),
        split.horizon(),
        split.input_dim(),
        split.output_dim(),
    );
    let (p, q) = (c * d + 1, h * o);
    // Row-major upper triangle of XᵀX and row-major XᵀY, mirrored into matrices at the end.
    let (mut xtx, mut xty) = (vec![0.0f64; p * p], vec![0.0f64; p * q]);
    let (mut ctx, mut tgt) = (vec![0.0f32; c * d], vec![0.0f32; q]);
    let mut x = vec![1.0f64; p];
    for i in 0..split.num_windows() {
        split.fill_batch(&[i], &mut ctx, &mut tgt);
        for (xa, v) in x.iter_mut().zip(&ctx) {
            *xa = *v as f64;
        }
        for a in 0..p {
            let xa = x[a];
            let row = &mut xtx[a * p..(a + 1) * p];
            for b in a..p {
                row[b] += xa * x[b];
            }
            let row = &mut xty[a * q..(a + 1) * q];
            for (r, y) in row.iter_mut().zip(&tgt) {
                *r += xa * *y as f64;
            }
        }
    }
    let a = DMatrix::from_fn(p, p, |r, s| xtx[r.min(s) * p + r.max(s)]);
    let b = DMatrix::from_fn(p, q, |r, s| xty[r * q + s]);
    (a, b)
}

/// Solves `(XᵀX + n·λ·I′) W = XᵀY` (`I′`: the identity with 0 for the intercept, the last
/// row), by Cholesky, or LU when the system is not positive definite. `None` when singular.
pub fn ridge_solve(xtx: &DMatrix<f64>, xty: &DMatrix<f64>, n: usize, lambda: f64) -> Option<DMatrix<f64>> {
    let p = xtx.nrows();
    let mut a = xtx.clone();
    for k in 0..p - 1 {
        a[(k, k)] += n as f64 * lambda;
    }
    match a.clone().cholesky() {
        Some(ch) => Some(ch.solve(xty)),
        None => a.lu().solve(xty),
    }
}

/// Fits the ridge model for each λ on `train`, scores it on `val` and keeps the best: returns
/// the chosen λ and its coefficients (see [`ridge_solve`]). With no usable fit (every system
/// singular) the coefficients are 0, a forecast of 0 (the training mean, in normalised
/// units), and λ is NaN.
fn fit_linear_ar(train: &Split, val: &Split, lambdas: &[f64]) -> (f64, DMatrix<f64>) {
    let (xtx, xty) = normal_equations(train);
    let n = train.num_windows();
    let mut best: Option<(f64, DMatrix<f64>, f64)> = None;
    for &lambda in lambdas {
        let Some(w) = ridge_solve(&xtx, &xty, n, lambda) else {
            continue;
        };
        let total: f64 = linear_sse(val, &w).per_target.iter().sum();
        if total.is_finite() && best.as_ref().is_none_or(|b| total < b.2) {
            best = Some((lambda, w, total));
        }
    }
    match best {
        Some((l, w, _)) => (l, w),
        None => (f64::NAN, DMatrix::zeros(xtx.nrows(), xty.ncols())),
    }
}

/// Squared errors per target of the linear forecast `[x, 1]ᵀ W` on the windows of `split`.
fn linear_sse(split: &Split, w: &DMatrix<f64>) -> Sse {
    let (c, h, d, o) = (
        split.context_len(),
        split.horizon(),
        split.input_dim(),
        split.output_dim(),
    );
    let (p, q) = (c * d + 1, h * o);
    // Wᵀ row-major: output `k`'s coefficients are contiguous.
    let wt: Vec<f64> = (0..q)
        .flat_map(|k| (0..p).map(move |r| (r, k)))
        .map(|(r, k)| w[(r, k)])
        .collect();
    let mut sse = Sse::new(o);
    let (mut ctx, mut tgt) = (vec![0.0f32; c * d], vec![0.0f32; q]);
    for i in 0..split.num_windows() {
        split.fill_batch(&[i], &mut ctx, &mut tgt);
        for (k, y) in tgt.iter().enumerate() {
            let coef = &wt[k * p..(k + 1) * p];
            let pred = coef[p - 1] + coef.iter().zip(&ctx).map(|(a, x)| a * *x as f64).sum::<f64>();
            sse.add(k % o, pred - *y as f64);
        }
    }
    sse
}

/// The forecast of the ridge model `w` (from [`ridge_solve`]) for one window's flattened
/// context, time-major like the targets (`H·O` values).
pub fn linear_forecast(w: &DMatrix<f64>, ctx: &[f32]) -> Vec<f64> {
    let p = w.nrows();
    (0..w.ncols())
        .map(|k| w[(p - 1, k)] + ctx.iter().enumerate().map(|(r, x)| w[(r, k)] * *x as f64).sum::<f64>())
        .collect()
}

/// The validation RMSE (normalised, all targets) of the ridge fit for each λ of `lambdas`
/// (NaN where the system is singular), for inspecting the choice [`compute`] makes.
pub fn ridge_val_rmse(train: &Split, val: &Split, lambdas: &[f64]) -> Vec<f64> {
    let (xtx, xty) = normal_equations(train);
    let count = (val.num_windows() * val.horizon() * val.output_dim()).max(1) as f64;
    lambdas
        .iter()
        .map(|&l| match ridge_solve(&xtx, &xty, train.num_windows(), l) {
            Some(w) => (linear_sse(val, &w).per_target.iter().sum::<f64>() / count).sqrt(),
            None => f64::NAN,
        })
        .collect()
}
