//! [`Table`]: named numeric columns and an optional time column, as read from a file or generated.

use super::DataError;
use std::collections::HashSet;

/// A numeric table: named columns of `f64` and an optional time column of labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Names of the numeric columns, in file order (the time column excluded).
    pub columns: Vec<String>,
    /// Values, row-major: `rows × columns.len()`.
    pub data: Vec<f64>,
    /// The time column's name and its cells as written, one per row; not a feature.
    pub time: Option<(String, Vec<String>)>,
}

impl Table {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        match (self.columns.len(), &self.time) {
            (0, Some((_, t))) => t.len(),
            (0, None) => 0,
            (c, _) => self.data.len() / c,
        }
    }

    /// Number of numeric columns.
    pub fn num_columns(&self) -> usize {
        self.columns.len()
    }

    /// Index of the numeric column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The values of numeric column `j`, top to bottom.
    pub fn column(&self, j: usize) -> Vec<f64> {
        let c = self.columns.len();
        self.data.iter().skip(j).step_by(c).copied().collect()
    }

    /// The value at `row`, numeric column `col`.
    pub fn get(&self, row: usize, col: usize) -> f64 {
        self.data[row * self.columns.len() + col]
    }

    /// Checks that the parts fit together (data length, time column length, distinct names)
    /// and that every value is finite; `source` names the table in errors.
    pub fn validate(&self, source: &str) -> Result<(), DataError> {
        let invalid = |reason: String| DataError::InvalidTable {
            file: source.to_string(),
            reason,
        };
        let cols = self.columns.len();
        if cols == 0 {
            return Err(DataError::NoFeatures {
                file: source.to_string(),
            });
        }
        if self.data.len() % cols != 0 {
            return Err(invalid(format!(
                "data has {} values, not a multiple of the {cols} columns",
                self.data.len()
            )));
        }
        let rows = self.data.len() / cols;
        if let Some((name, t)) = &self.time {
            if t.len() != rows {
                return Err(invalid(format!(
                    "time column '{name}' has {} entries but the data has {rows} rows",
                    t.len()
                )));
            }
        }
        let mut seen = HashSet::new();
        for name in &self.columns {
            if !seen.insert(name.as_str()) {
                return Err(invalid(format!("column name '{name}' appears more than once")));
            }
        }
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(DataError::NonFinite {
                file: source.to_string(),
                line: (i / cols + 2) as u64,
                column: self.columns[i % cols].clone(),
                value: self.data[i].to_string(),
            });
        }
        Ok(())
    }
}
