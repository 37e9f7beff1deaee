//! [`Dataset`]: a table cut into normalised train, validation and test splits of windows.

use super::scaler::constant_column_warning;
use super::{DataConfig, DataError, Scaler, Split, Table};
use std::path::Path;

/// A table cut into normalised train/val/test splits of windows, ready for training.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Where the data came from (a path or a generator name), as used in errors.
    pub source: String,
    /// Name of the time column, if the table has one.
    pub time_column: Option<String>,
    /// Feature column names, in model input order.
    pub features: Vec<String>,
    /// Target column names, in model output order.
    pub targets: Vec<String>,
    /// Statistics of the features over the training split.
    pub feature_scaler: Scaler,
    /// Statistics of the targets over the training split (each target with its own column's).
    pub target_scaler: Scaler,
    /// Context length `C`.
    pub context_len: usize,
    /// Horizon `H`.
    pub horizon: usize,
    /// Training split: the first `floor(train_frac · n)` rows.
    pub train: Split,
    /// Validation split: the rows after the training rows.
    pub val: Split,
    /// Test split: the last `floor(test_frac · n)` rows.
    pub test: Split,
    /// The configuration the dataset was built with.
    pub config: DataConfig,
    /// Warnings raised while building (already printed to stderr), e.g. constant columns.
    pub warnings: Vec<String>,
}

/// The columns `names` (an error names the `role` and the available columns), or `default`.
fn resolve(
    table: &Table,
    names: Option<&Vec<String>>,
    default: &[usize],
    role: &'static str,
    source: &str,
) -> Result<Vec<usize>, DataError> {
    let Some(names) = names else {
        return Ok(default.to_vec());
    };
    names
        .iter()
        .map(|n| {
            table.column_index(n).ok_or_else(|| DataError::UnknownColumn {
                file: source.to_string(),
                name: n.clone(),
                role,
                available: table.columns.clone(),
            })
        })
        .collect()
}

/// The values of `cols` in `rows`, row-major.
fn gather(table: &Table, rows: std::ops::Range<usize>, cols: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for r in rows {
        out.extend(cols.iter().map(|&j| table.get(r, j)));
    }
    out
}

/// The values of `cols` in `rows`, row-major, normalised with `scaler` (one statistic per column).
fn normalized(table: &Table, rows: std::ops::Range<usize>, cols: &[usize], scaler: &Scaler) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for r in rows {
        out.extend(
            cols.iter()
                .enumerate()
                .map(|(k, &j)| scaler.normalize(k, table.get(r, j)) as f32),
        );
    }
    out
}

impl Dataset {
    /// Reads `path` with [`Table::read_csv`] and builds the dataset with [`from_table`](Self::from_table).
    pub fn from_csv(
        path: impl AsRef<Path>,
        time_column: Option<&str>,
        config: &DataConfig,
    ) -> Result<Dataset, DataError> {
        let path = path.as_ref();
        let table = Table::read_csv(path, time_column)?;
        Dataset::from_table(&table, config, &path.display().to_string())
    }

    /// Builds the splits, scalers and windows from `table` as the contract fixes them;
    /// `source_name` names the data in errors and warnings.
    ///
    /// Errors: an invalid configuration, an unknown feature or target name (listing the
    /// available columns), or a train or val split shorter than one window (`C + H` rows). A
    /// test split too short for a window is allowed and has no windows.
    pub fn from_table(table: &Table, config: &DataConfig, source_name: &str) -> Result<Dataset, DataError> {
        Self::build(table, config, source_name, None)
    }

    /// Like [`from_table`](Self::from_table), but normalises with given statistics (a
    /// checkpoint's) instead of fitting them on this table's training split.
    pub fn from_table_with_scalers(
        table: &Table,
        config: &DataConfig,
        source_name: &str,
        feature_scaler: Scaler,
        target_scaler: Scaler,
    ) -> Result<Dataset, DataError> {
        Self::build(table, config, source_name, Some((feature_scaler, target_scaler)))
    }

    /// Every window of the whole table (all rows as one split, stride 1), normalised with the
    /// given statistics: what `ode predict` forecasts.
    pub fn whole_table(
        table: &Table,
        config: &DataConfig,
        source_name: &str,
        feature_scaler: &Scaler,
        target_scaler: &Scaler,
    ) -> Result<Split, DataError> {
        table.validate(source_name)?;
        let all: Vec<usize> = (0..table.num_columns()).collect();
        let feat = resolve(table, config.features.as_ref(), &all, "features", source_name)?;
        let targ = resolve(table, config.targets.as_ref(), &feat, "targets", source_name)?;
        let (c, h, n) = (config.context_len, config.horizon, table.num_rows());
        if n < c + h {
            return Err(DataError::TooFewRows {
                file: source_name.to_string(),
                rows: n,
                needed: c + h,
                split: "whole file",
            });
        }
        if feature_scaler.dim() != feat.len() || target_scaler.dim() != targ.len() {
            return Err(DataError::InvalidConfig {
                name: "features".into(),
                value: format!("{} features, {} targets", feat.len(), targ.len()),
                reason: format!(
                    "the statistics cover {} features and {} targets; use the columns the model was trained on",
                    feature_scaler.dim(),
                    target_scaler.dim()
                ),
            });
        }
        Ok(Split {
            name: "all",
            start_row: 0,
            rows: n,
            features: normalized(table, 0..n, &feat, feature_scaler),
            targets: normalized(table, 0..n, &targ, target_scaler),
            input_dim: feat.len(),
            output_dim: targ.len(),
            context_len: c,
            horizon: h,
            num_windows: n + 1 - c - h,
            stacked: false,
        })
    }

    fn build(
        table: &Table,
        config: &DataConfig,
        source_name: &str,
        fixed: Option<(Scaler, Scaler)>,
    ) -> Result<Dataset, DataError> {
        config.validate()?;
        table.validate(source_name)?;
        let all: Vec<usize> = (0..table.num_columns()).collect();
        let feat = resolve(table, config.features.as_ref(), &all, "features", source_name)?;
        let targ = resolve(table, config.targets.as_ref(), &feat, "targets", source_name)?;
        let (c, h) = (config.context_len, config.horizon);
        let n = table.num_rows();
        let sizes = config.split_sizes(n);
        for (split, rows) in [("train", sizes.train), ("val", sizes.val)] {
            if rows < c + h {
                return Err(DataError::TooFewRows {
                    file: source_name.to_string(),
                    rows,
                    needed: c + h,
                    split,
                });
            }
        }

        let names = |idx: &[usize]| idx.iter().map(|&j| table.columns[j].clone()).collect::<Vec<_>>();
        let (features, targets) = (names(&feat), names(&targ));
        let ((feature_scaler, const_f), (target_scaler, const_t)) = match fixed {
            Some((f, t)) => ((f, Vec::new()), (t, Vec::new())),
            None => (
                Scaler::fit_quiet(&gather(table, 0..sizes.train, &feat), feat.len()),
                Scaler::fit_quiet(&gather(table, 0..sizes.train, &targ), targ.len()),
            ),
        };
        let mut warnings: Vec<String> = Vec::new();
        let warn_list = const_f
            .iter()
            .map(|&k| (&features[k], feature_scaler.mean[k]))
            .chain(const_t.iter().map(|&k| (&targets[k], target_scaler.mean[k])));
        for (name, value) in warn_list {
            let w = constant_column_warning(name, value, sizes.train, Some(source_name));
            if !warnings.contains(&w) {
                eprintln!("{w}");
                warnings.push(w);
            }
        }

        let make = |name: &'static str, start: usize, rows: usize, cap: Option<usize>| {
            let range = start..start + rows;
            let available = (rows + 1).saturating_sub(c + h);
            Split {
                name,
                start_row: start,
                rows,
                features: normalized(table, range.clone(), &feat, &feature_scaler),
                targets: normalized(table, range, &targ, &target_scaler),
                input_dim: feat.len(),
                output_dim: targ.len(),
                context_len: c,
                horizon: h,
                num_windows: cap.map_or(available, |m| m.min(available)),
                stacked: false,
            }
        };
        let train = make("train", 0, sizes.train, config.max_train_windows);
        let val = make("val", sizes.train, sizes.val, config.max_val_windows);
        let test = make("test", sizes.train + sizes.val, sizes.test, None);
        Ok(Dataset {
            source: source_name.to_string(),
            time_column: table.time.as_ref().map(|(name, _)| name.clone()),
            features,
            targets,
            feature_scaler,
            target_scaler,
            context_len: c,
            horizon: h,
            train,
            val,
            test,
            config: config.clone(),
            warnings,
        })
    }

    /// Number of features `D` (the model's `input_dim`).
    pub fn input_dim(&self) -> usize {
        self.features.len()
    }

    /// Number of targets `O` (the model's `output_dim`).
    pub fn output_dim(&self) -> usize {
        self.targets.len()
    }

    /// Total number of rows over the three splits.
    pub fn num_rows(&self) -> usize {
        self.train.rows + self.val.rows + self.test.rows
    }
}
