//! The forecasts a run report shows: a few validation windows forecast by the run's best
//! checkpoint when training ends, in data units, kept in `forecasts.json` next to the
//! checkpoint so the report never needs the data file again.

use ode_train::data::{Dataset, Table};
use ode_train::{NeuralOdeModel, Workspace};
use serde::{Deserialize, Serialize};
use std::path::Path;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// File name of the forecasts in a run directory.
pub const FILE: &str = "forecasts.json";

/// How many validation windows a run report shows (the first, the middle and the last).
pub const WINDOWS: usize = 3;

/// Forecasts of a few validation windows against the truth, in data units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecasts {
    /// The split the windows come from (`val`).
    pub split: String,
    /// The checkpoint's epoch (the best one), if it records it.
    pub epoch: Option<usize>,
    /// Context length (rows the model reads).
    pub context_len: usize,
    /// Horizon (rows it forecasts).
    pub horizon: usize,
    /// The windows, in split order.
    pub windows: Vec<WindowForecast>,
}

/// One window: where it lies in the data and, per target, the context, truth and forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowForecast {
    /// Window index within the split.
    pub window: usize,
    /// Data row (0-based, header excluded) of the first forecast step.
    pub first_row: usize,
    /// That row's time label, when the data has a time column.
    pub time: Option<String>,
    /// One entry per target, in model output order.
    pub targets: Vec<TargetForecast>,
}

/// A target's values in one window, in data units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetForecast {
    /// Column name.
    pub name: String,
    /// The target's own context rows when it is also a feature (otherwise none).
    pub context: Option<Vec<f64>>,
    /// The observed values over the horizon.
    pub truth: Vec<f64>,
    /// The model's forecast over the horizon.
    pub forecast: Vec<f64>,
}

/// `count` window indices spread evenly over `n` windows (first and last included).
fn spread(n: usize, count: usize) -> Vec<usize> {
    match (n, count) {
        (0, _) | (_, 0) => Vec::new(),
        (_, 1) => vec![0],
        _ => {
            let mut v: Vec<usize> = (0..count).map(|k| k * (n - 1) / (count - 1)).collect();
            v.dedup();
            v
        }
    }
}

/// Forecasts [`WINDOWS`] validation windows of `ds` with `model`; `table` gives time labels.
pub fn compute(model: &NeuralOdeModel<f32>, ds: &Dataset, table: &Table, epoch: Option<usize>) -> Res<Forecasts> {
    let split = &ds.val;
    let idx = spread(split.num_windows(), WINDOWS);
    if idx.is_empty() {
        return Err("the validation split has no windows to forecast".into());
    }
    let (c, h, d, o) = (ds.context_len, ds.horizon, ds.input_dim(), ds.output_dim());
    let (mut ctx, mut tgt, mut pred) = (
        vec![0f32; idx.len() * c * d],
        vec![0f32; idx.len() * h * o],
        vec![0f32; idx.len() * h * o],
    );
    split.fill_batch(&idx, &mut ctx, &mut tgt);
    let mut ws = Workspace::new(model)?;
    model
        .predict_into(&mut ws, &ctx, &mut pred)
        .map_err(|e| format!("forecasting validation windows {idx:?}: {e}"))?;
    let windows = idx
        .iter()
        .enumerate()
        .map(|(j, &win)| {
            let first_row = split.target_start_row(win);
            let targets = (0..o)
                .map(|q| {
                    let at = |buf: &[f32], k: usize| ds.target_scaler.denormalize(q, buf[(j * h + k) * o + q] as f64);
                    let name = ds.targets[q].clone();
                    let context = ds.features.iter().position(|f| *f == name).map(|fi| {
                        (0..c)
                            .map(|r| ds.feature_scaler.denormalize(fi, ctx[(j * c + r) * d + fi] as f64))
                            .collect()
                    });
                    TargetForecast {
                        name,
                        context,
                        truth: (0..h).map(|k| at(&tgt, k)).collect(),
                        forecast: (0..h).map(|k| at(&pred, k)).collect(),
                    }
                })
                .collect();
            WindowForecast {
                window: win,
                first_row,
                time: table.time.as_ref().and_then(|(_, t)| t.get(first_row).cloned()),
                targets,
            }
        })
        .collect();
    Ok(Forecasts {
        split: split.name().to_string(),
        epoch,
        context_len: c,
        horizon: h,
        windows,
    })
}

/// Forecasts with the run's checkpoint `dir/checkpoint.safetensors` and writes `dir/forecasts.json`.
pub fn write(dir: &Path, ds: &Dataset, table: &Table) -> Res<()> {
    let ckpt = dir.join("checkpoint.safetensors");
    let (model, meta) = ode_train::checkpoint::load(&ckpt)?;
    let f = compute(&model, ds, table, Some(meta.epoch))?;
    std::fs::write(dir.join(FILE), serde_json::to_string_pretty(&f)?)
        .map_err(|e| format!("cannot write {}: {e}", dir.join(FILE).display()))?;
    Ok(())
}

/// Reads `dir/forecasts.json`; `None` when the run has none (an error names a malformed file).
pub fn read(dir: &Path) -> Res<Option<Forecasts>> {
    let path = dir.join(FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let f = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn windows_are_spread_from_the_first_to_the_last() {
        assert_eq!(spread(100, 3), vec![0, 49, 99]);
        assert_eq!(spread(2, 3), vec![0, 1]);
        assert_eq!(spread(1, 3), vec![0]);
        assert_eq!(spread(0, 3), Vec::<usize>::new());
    }
}
