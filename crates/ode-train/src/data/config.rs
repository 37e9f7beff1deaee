//! [`DataConfig`]: how a dataset is cut from a table (window sizes, columns, split fractions,
//! caps), and the [`SplitSizes`] it gives a table.

use super::DataError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// How a [`Dataset`](super::Dataset) is cut from a table. Serialisable, so it can sit in a TOML run
/// configuration and in the checkpoint metadata; missing keys take the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataConfig {
    /// Rows of context the encoder sees, `C` (default 24).
    pub context_len: usize,
    /// Rows forecast, `H` (default 12).
    pub horizon: usize,
    /// Feature columns in this order; `None` for every numeric column in file order.
    pub features: Option<Vec<String>>,
    /// Target columns in this order; `None` for the features. Any numeric column may be a target.
    pub targets: Option<Vec<String>>,
    /// Fraction of rows in the training split, `n_train = floor(train_frac · n)` (default 0.7).
    pub train_frac: f64,
    /// Fraction of rows in the test split, `n_test = floor(test_frac · n)` (default 0.2); the
    /// validation split gets the rest.
    pub test_frac: f64,
    /// Use only the first this many training windows (in time order).
    pub max_train_windows: Option<usize>,
    /// Use only the first this many validation windows (in time order).
    pub max_val_windows: Option<usize>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            context_len: 24,
            horizon: 12,
            features: None,
            targets: None,
            train_frac: 0.7,
            test_frac: 0.2,
            max_train_windows: None,
            max_val_windows: None,
        }
    }
}

/// Row counts of the three chronological splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSizes {
    /// `floor(train_frac · n)`, the first rows.
    pub train: usize,
    /// `n - train - test`, the rows after the training rows.
    pub val: usize,
    /// `floor(test_frac · n)`, the last rows.
    pub test: usize,
}

impl DataConfig {
    /// Checks every setting: `context_len` and `horizon` at least 1, both fractions in (0, 1)
    /// with a sum below 1, caps at least 1, and column lists non-empty without repeats.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |name: &str, value: String, reason: &str| DataError::InvalidConfig {
            name: name.to_string(),
            value,
            reason: reason.to_string(),
        };
        if self.context_len == 0 {
            return Err(bad("context_len", "0".into(), "it must be at least 1 row"));
        }
        if self.horizon == 0 {
            return Err(bad("horizon", "0".into(), "it must be at least 1 row"));
        }
        for (name, v) in [("train_frac", self.train_frac), ("test_frac", self.test_frac)] {
            if !(v > 0.0 && v < 1.0) {
                return Err(bad(
                    name,
                    v.to_string(),
                    "it must be a fraction strictly between 0 and 1",
                ));
            }
        }
        let sum = self.train_frac + self.test_frac;
        if sum >= 1.0 {
            return Err(bad(
                "train_frac + test_frac",
                sum.to_string(),
                "the sum must be below 1 so that the validation split gets rows (e.g. 0.7 and 0.2)",
            ));
        }
        for (name, cap) in [
            ("max_train_windows", self.max_train_windows),
            ("max_val_windows", self.max_val_windows),
        ] {
            if cap == Some(0) {
                return Err(bad(
                    name,
                    "0".into(),
                    "a cap must be at least 1; leave it out for no cap",
                ));
            }
        }
        for (name, list) in [("features", &self.features), ("targets", &self.targets)] {
            if let Some(list) = list {
                if list.is_empty() {
                    return Err(bad(
                        name,
                        "[]".into(),
                        "name at least one column, or leave it out for the default",
                    ));
                }
                let mut seen = HashSet::new();
                for c in list {
                    if !seen.insert(c.as_str()) {
                        return Err(bad(name, format!("{list:?}"), &format!("column '{c}' is named twice")));
                    }
                }
            }
        }
        Ok(())
    }

    /// The split sizes for `n` rows: `train = floor(train_frac · n)`, `test = floor(test_frac · n)`,
    /// `val = n - train - test` (the Informer/Autoformer "custom" loader's sizes).
    pub fn split_sizes(&self, n: usize) -> SplitSizes {
        let train = (self.train_frac * n as f64).floor() as usize;
        let test = (self.test_frac * n as f64).floor() as usize;
        SplitSizes {
            train,
            val: n - train - test,
            test,
        }
    }
}
