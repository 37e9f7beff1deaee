//! Data for Python: a CSV file or a built-in dataset cut into normalised splits
//! ([`Data`]), and the windows of one split ([`Windows`]), also from arrays.

use crate::errors;
use ode_train::data::{DataConfig, Dataset, ReadOptions, Split, Table};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;
use std::sync::Arc;

/// A dataset cut into normalised train/val/test splits of windows.
#[pyclass(frozen, module = "ode_rs._native")]
pub struct Data {
    pub(crate) inner: Arc<Dataset>,
    /// The rows it was cut from, so a search can cut them again with other window settings.
    pub(crate) table: Arc<Table>,
}

/// Which split of a dataset.
#[derive(Clone, Copy)]
enum Part {
    Train,
    Val,
    Test,
}

/// Where a [`Windows`]' split lives: in a dataset, or on its own (from arrays).
#[derive(Clone)]
enum Source {
    Dataset(Arc<Dataset>, Part),
    Arrays(Arc<Split>),
}

/// The windows of one split: a dataset's train, val or test split, or arrays given by the user.
#[pyclass(frozen, skip_from_py_object, module = "ode_rs._native")]
#[derive(Clone)]
pub struct Windows {
    source: Source,
}

impl Windows {
    /// The split.
    pub fn split(&self) -> &Split {
        match &self.source {
            Source::Dataset(ds, Part::Train) => &ds.train,
            Source::Dataset(ds, Part::Val) => &ds.val,
            Source::Dataset(ds, Part::Test) => &ds.test,
            Source::Arrays(s) => s,
        }
    }

    /// The dataset the split belongs to, if any.
    pub fn dataset(&self) -> Option<&Arc<Dataset>> {
        match &self.source {
            Source::Dataset(ds, _) => Some(ds),
            Source::Arrays(_) => None,
        }
    }
}

fn data_config(json: &str) -> PyResult<DataConfig> {
    let config: DataConfig = serde_json::from_str(json).map_err(|e| errors::config("data settings", e))?;
    config.validate().map_err(errors::data)?;
    Ok(config)
}

/// Reads a CSV file (header row, optional time column, numeric columns) and cuts it into
/// splits as `ode train --data` does.
#[pyfunction]
#[pyo3(signature = (path, config, time_column=None, sort_time=false))]
pub fn load_csv(
    py: Python<'_>,
    path: PathBuf,
    config: &str,
    time_column: Option<String>,
    sort_time: bool,
) -> PyResult<Data> {
    let config = data_config(config)?;
    let options = ReadOptions { time_column, sort_time };
    let (ds, table) = py
        .detach(|| {
            let table = Table::read_csv_with(&path, &options)?;
            Ok((
                Dataset::from_table(&table, &config, &path.display().to_string())?,
                table,
            ))
        })
        .map_err(errors::data)?;
    Ok(Data {
        inner: Arc::new(ds),
        table: Arc::new(table),
    })
}

/// A built-in generated dataset (`five-channel`, `spiral`, `lotka-volterra`) cut into splits,
/// the same rows as `ode train --dataset NAME --rows R --data-seed S --noise N`.
#[pyfunction]
#[pyo3(signature = (name, config, rows=2000, seed=0, noise=0.01))]
pub fn dataset(name: &str, config: &str, rows: usize, seed: u64, noise: f64) -> PyResult<Data> {
    let config = data_config(config)?;
    let table = ode_train::generate::generate(name, rows, seed, noise).map_err(errors::data)?;
    let ds = Dataset::from_table(&table, &config, name).map_err(errors::data)?;
    Ok(Data {
        inner: Arc::new(ds),
        table: Arc::new(table),
    })
}

/// Little-endian `f32` values of a bytes object (the one copy of a NumPy array's data).
pub(crate) fn floats(b: &Bound<'_, PyBytes>) -> Vec<f32> {
    b.as_bytes()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A bytes object of little-endian `f32` values (what Python turns into a NumPy array).
pub(crate) fn float_bytes<'py>(py: Python<'py>, values: &[f32]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    PyBytes::new(py, &bytes)
}

/// Windows given as arrays: `x` holds `N × C × D` and `y` `N × H × O` little-endian `f32`
/// values, already in the model's (normalised) units.
#[pyfunction]
pub fn windows_from_arrays(
    name: &str,
    x: &Bound<'_, PyBytes>,
    x_shape: (usize, usize, usize),
    y: &Bound<'_, PyBytes>,
    y_shape: (usize, usize, usize),
) -> PyResult<Windows> {
    let name: &'static str = match name {
        "train" => "train",
        "val" => "val",
        "test" => "test",
        _ => "given",
    };
    if x_shape.0 != y_shape.0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{name} windows: X has shape {x_shape:?} but Y {y_shape:?}; both need the same number of windows N"
        )));
    }
    let split =
        Split::from_windows(name, floats(x), floats(y), x_shape, (y_shape.1, y_shape.2)).map_err(errors::data)?;
    Ok(Windows {
        source: Source::Arrays(Arc::new(split)),
    })
}

#[pymethods]
impl Data {
    /// The training split's windows.
    #[getter]
    fn train(&self) -> Windows {
        self.part(Part::Train)
    }
    /// The validation split's windows.
    #[getter]
    fn val(&self) -> Windows {
        self.part(Part::Val)
    }
    /// The test split's windows (the held-out last rows).
    #[getter]
    fn test(&self) -> Windows {
        self.part(Part::Test)
    }
    /// Number of features `D` (the model's `input_dim`).
    #[getter]
    fn input_dim(&self) -> usize {
        self.inner.input_dim()
    }
    /// Number of targets `O`.
    #[getter]
    fn output_dim(&self) -> usize {
        self.inner.output_dim()
    }
    /// Feature column names.
    #[getter]
    fn features(&self) -> Vec<String> {
        self.inner.features.clone()
    }
    /// Target column names.
    #[getter]
    fn targets(&self) -> Vec<String> {
        self.inner.targets.clone()
    }
    /// Context length `C`.
    #[getter]
    fn context_len(&self) -> usize {
        self.inner.context_len
    }
    /// Horizon `H`.
    #[getter]
    fn horizon(&self) -> usize {
        self.inner.horizon
    }
    /// Where the data came from.
    #[getter]
    fn source(&self) -> String {
        self.inner.source.clone()
    }
    /// Training-split mean and std of each target (data units), to map forecasts back.
    #[getter]
    fn target_stats(&self) -> (Vec<f64>, Vec<f64>) {
        (
            self.inner.target_scaler.mean.clone(),
            self.inner.target_scaler.std.clone(),
        )
    }
    /// The window and split settings it was cut with, as JSON.
    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner.config).map_err(|e| errors::config("data settings", e))
    }
    /// Rows per split `(train, val, test)`.
    #[getter]
    fn rows(&self) -> (usize, usize, usize) {
        (self.inner.train.rows(), self.inner.val.rows(), self.inner.test.rows())
    }
}

impl Data {
    fn part(&self, part: Part) -> Windows {
        Windows {
            source: Source::Dataset(self.inner.clone(), part),
        }
    }
}

#[pymethods]
impl Windows {
    /// `train`, `val`, `test` or `given`.
    #[getter]
    fn name(&self) -> &'static str {
        self.split().name()
    }
    /// Number of windows `N`.
    fn __len__(&self) -> usize {
        self.split().num_windows()
    }
    /// `(N, C, D)` of the contexts and `(N, H, O)` of the targets.
    #[getter]
    fn shapes(&self) -> ((usize, usize, usize), (usize, usize, usize)) {
        let s = self.split();
        (
            (s.num_windows(), s.context_len(), s.input_dim()),
            (s.num_windows(), s.horizon(), s.output_dim()),
        )
    }
    /// The windows as little-endian `f32` bytes: contexts `N × C × D`, targets `N × H × O`.
    fn to_bytes<'py>(&self, py: Python<'py>) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
        let s = self.split();
        let n = s.num_windows();
        let (cw, tw) = (s.context_len() * s.input_dim(), s.horizon() * s.output_dim());
        let (mut x, mut y) = (vec![0f32; n * cw], vec![0f32; n * tw]);
        let all: Vec<usize> = (0..n).collect();
        s.fill_batch(&all, &mut x, &mut y);
        (float_bytes(py, &x), float_bytes(py, &y))
    }
}
