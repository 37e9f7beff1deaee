//! The native half of the `ode_rs` Python package: datasets, the model, training and search
//! over the Rust crates. The Python half (`python/ode_rs`) gives it the tuning guide's API
//! (`NeuralODEModel`, `Trainer`, `load_csv`, `search`); this module is its private `_native`.

mod data;
mod errors;
mod fit;
mod model;
mod search;

use pyo3::prelude::*;

/// The `ode_rs._native` extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<data::Data>()?;
    m.add_class::<data::Windows>()?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(data::load_csv, m)?)?;
    m.add_function(wrap_pyfunction!(data::dataset, m)?)?;
    m.add_function(wrap_pyfunction!(data::windows_from_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(fit::fit, m)?)?;
    m.add_function(wrap_pyfunction!(search::search, m)?)?;
    m.add("SolverError", m.py().get_type::<errors::SolverError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
