//! Rust errors as Python exceptions, with the CLI's messages: bad input is a `ValueError`, a
//! missing or unreadable file an `OSError`, a failed solve an `ode_rs.SolverError`.

use ode_core::OdeError;
use ode_train::TrainError;
use ode_train::checkpoint::CheckpointError;
use ode_train::data::DataError;
use pyo3::PyErr;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};

pyo3::create_exception!(
    ode_rs,
    SolverError,
    PyRuntimeError,
    "The ODE solver failed during training or prediction (step-size underflow, step budget, a \
     non-finite state); the message says where and what to change."
);

/// `FileNotFoundError` or `OSError` for a failed file operation (`io`), else `ValueError`,
/// with `message`.
fn file_or_value(io: Option<&std::io::Error>, message: String) -> PyErr {
    match io {
        Some(source) if source.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        Some(_) => PyOSError::new_err(message),
        None => PyValueError::new_err(message),
    }
}

/// A data error: `OSError` when the file cannot be read, `ValueError` for its contents.
pub fn data(e: DataError) -> PyErr {
    let io = match &e {
        DataError::Io { source, .. } => Some(source),
        _ => None,
    };
    file_or_value(io, e.to_string())
}

/// A solver or configuration error: `SolverError` for failed solves, a `RuntimeError` when
/// the GPU fails, `ValueError` otherwise.
pub fn ode(e: OdeError) -> PyErr {
    match e {
        OdeError::NonFinite { .. } | OdeError::StepSizeUnderflow { .. } | OdeError::MaxStepsExceeded { .. } => {
            SolverError::new_err(e.to_string())
        }
        OdeError::Backend { .. } => PyRuntimeError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A checkpoint error: `OSError` for reading and writing, `ValueError` for the contents.
pub fn checkpoint(e: CheckpointError) -> PyErr {
    let io = match &e {
        CheckpointError::Io { source, .. } => Some(source),
        _ => None,
    };
    file_or_value(io, e.to_string())
}

/// A training error, with the trainer's message (remedies included).
pub fn train(e: TrainError) -> PyErr {
    match e {
        TrainError::NonFinite { .. } | TrainError::Solver { .. } => SolverError::new_err(e.to_string()),
        TrainError::Config(e) => match e {
            OdeError::InvalidOption { .. } | OdeError::InvalidChoice { .. } | OdeError::ShapeMismatch { .. } => {
                PyValueError::new_err(format!("invalid configuration: {e}"))
            }
            e => ode(e),
        },
        TrainError::Data(e) => data(e),
        TrainError::Checkpoint(e) => checkpoint(e),
    }
}

/// A configuration that does not parse (an unknown solver name, a wrong type): `ValueError`
/// naming `what` and serde's reason.
pub fn config(what: &str, e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("invalid {what}: {e}"))
}
