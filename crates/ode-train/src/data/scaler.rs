//! [`Scaler`]: per-column z-score statistics fitted on the training rows.

use serde::{Deserialize, Serialize};

/// Per-column z-score statistics: `normalised = (x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Mean of each column, data units.
    pub mean: Vec<f64>,
    /// Population standard deviation (ddof = 0) of each column, data units; 1 for a constant column.
    pub std: Vec<f64>,
}

impl Scaler {
    /// Fits the statistics of row-major `data` (`rows × names.len()`), printing a warning to
    /// stderr that names each constant column (its std is set to 1).
    ///
    /// # Panics
    /// If `data.len()` is not a multiple of `names.len()`.
    pub fn fit(data: &[f64], names: &[String]) -> Scaler {
        let (scaler, constant) = Self::fit_quiet(data, names.len());
        for j in constant {
            eprintln!(
                "{}",
                constant_column_warning(&names[j], scaler.mean[j], data.len() / names.len(), None)
            );
        }
        scaler
    }

    /// Fits the statistics of row-major `data` (`rows × dim`) without printing; returns the
    /// indices of the constant columns (whose std is set to 1) as well.
    ///
    /// A column is constant when all its values are equal (then its mean is that value exactly).
    /// Otherwise the mean is `Σx / rows` and the std `sqrt(Σ(x - mean)² / rows)`.
    ///
    /// # Panics
    /// If `dim` is 0 or `data.len()` is not a multiple of `dim`.
    pub fn fit_quiet(data: &[f64], dim: usize) -> (Scaler, Vec<usize>) {
        assert!(
            dim > 0 && data.len() % dim == 0,
            "Scaler: {} values do not fill rows of {dim}",
            data.len()
        );
        let rows = data.len() / dim;
        let mut mean = vec![0.0; dim];
        let mut std = vec![1.0; dim];
        let mut constant = Vec::new();
        for j in 0..dim {
            let col = || data.iter().skip(j).step_by(dim);
            let first = data.get(j).copied().unwrap_or(0.0);
            if col().all(|&v| v == first) {
                mean[j] = first;
                constant.push(j);
                continue;
            }
            let m = col().sum::<f64>() / rows as f64;
            let var = col().map(|&v| (v - m) * (v - m)).sum::<f64>() / rows as f64;
            mean[j] = m;
            std[j] = var.sqrt();
            if std[j] == 0.0 {
                std[j] = 1.0;
                constant.push(j);
            }
        }
        (Scaler { mean, std }, constant)
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// `(value - mean[index]) / std[index]`.
    pub fn normalize(&self, index: usize, value: f64) -> f64 {
        (value - self.mean[index]) / self.std[index]
    }

    /// `value · std[index] + mean[index]`, back to data units.
    pub fn denormalize(&self, index: usize, value: f64) -> f64 {
        value * self.std[index] + self.mean[index]
    }

    /// Normalises row-major rows of [`dim`](Self::dim) values in place.
    ///
    /// # Panics
    /// If `values.len()` is not a multiple of the dimension.
    pub fn normalize_rows(&self, values: &mut [f64]) {
        let d = self.dim();
        assert!(
            d > 0 && values.len() % d == 0,
            "Scaler: {} values do not fill rows of {d}",
            values.len()
        );
        for (i, v) in values.iter_mut().enumerate() {
            *v = self.normalize(i % d, *v);
        }
    }

    /// Maps row-major rows of [`dim`](Self::dim) normalised values (e.g. a forecast, time-major)
    /// back to data units in place, computing in `f64`.
    ///
    /// # Panics
    /// If `values.len()` is not a multiple of the dimension.
    pub fn denormalize_rows(&self, values: &mut [f32]) {
        let d = self.dim();
        assert!(
            d > 0 && values.len() % d == 0,
            "Scaler: {} values do not fill rows of {d}",
            values.len()
        );
        for (i, v) in values.iter_mut().enumerate() {
            *v = self.denormalize(i % d, f64::from(*v)) as f32;
        }
    }
}

/// The warning printed for a column that is constant over `rows` training rows.
pub(super) fn constant_column_warning(name: &str, value: f64, rows: usize, source: Option<&str>) -> String {
    let of = source.map(|s| format!(" of {s}")).unwrap_or_default();
    format!(
        "warning: column '{name}' is constant ({value}) over the {rows} training rows{of}: its std is 0, so it \
         is scaled with std = 1; it gives the model no information, consider leaving it out with `features`"
    )
}
