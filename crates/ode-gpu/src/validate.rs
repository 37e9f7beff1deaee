//! Checks of arguments and options before anything reaches the device: what the GPU does not
//! support, buffer shapes, output times.

use crate::error::Result;
use crate::shaders::DENSE_MAX;
use ode_core::{ButcherTableau, ControllerKind, Interpolation, Mlp, OdeError, SolveOptions, StepMode, Tolerance};

/// Refuses a field without state or hidden units, a parameter vector of the wrong length and a
/// tableau whose dense output the shaders cannot evaluate.
pub(crate) fn check_field(tableau: &ButcherTableau, latent: usize, hidden: usize, params: &[f32]) -> Result<()> {
    if latent == 0 || hidden == 0 {
        return Err(OdeError::ShapeMismatch {
            what: "MLP latent and hidden sizes",
            expected: 1,
            got: 0,
        }
        .into());
    }
    let want = Mlp::<f32>::param_count(latent, hidden);
    if params.len() != want {
        return Err(OdeError::ShapeMismatch {
            what: "MLP parameter vector",
            expected: want,
            got: params.len(),
        }
        .into());
    }
    if let Interpolation::Polynomial(p) = &tableau.interpolation {
        if p.iter().any(|r| r.len() > DENSE_MAX) {
            return Err(OdeError::Unsupported {
                what: "dense output polynomials above degree 5 on the GPU",
            }
            .into());
        }
    }
    Ok(())
}

/// Refuses options the GPU does not support (shared steps, per-component tolerances,
/// torchdiffeq's step rules) besides
/// those [`SolveOptions::validate`] refuses.
pub(crate) fn check_options(opts: &SolveOptions<f32>, dim: usize) -> Result<()> {
    opts.validate(dim)?;
    if opts.step_mode == StepMode::Shared {
        return Err(OdeError::Unsupported {
            what: "step_mode = shared on the GPU (every sample has its own steps there); use step_mode = per_sample",
        }
        .into());
    }
    if opts.controller_kind != ControllerKind::Default {
        return Err(OdeError::Unsupported {
            what: "controller = torchdiffeq on the GPU (a like-for-like comparison mode of the CPU solver); use controller = default",
        }
        .into());
    }
    if matches!(opts.rtol, Tolerance::PerComponent(_)) || matches!(opts.atol, Tolerance::PerComponent(_)) {
        return Err(OdeError::Unsupported {
            what: "per-component tolerances on the GPU; use scalar rtol and atol",
        }
        .into());
    }
    Ok(())
}

/// Refuses an empty batch or one that is not whole rows of `dim`.
pub(crate) fn check_batch(y: &[f32], dim: usize, what: &'static str) -> Result<()> {
    if y.is_empty() || y.len() % dim != 0 {
        return Err(OdeError::ShapeMismatch {
            what,
            expected: dim * y.len().div_ceil(dim).max(1),
            got: y.len(),
        }
        .into());
    }
    Ok(())
}

/// Refuses a buffer of `got` values where `expected` are needed.
pub(crate) fn same_len(got: usize, expected: usize, what: &'static str) -> Result<()> {
    if got != expected {
        return Err(OdeError::ShapeMismatch { what, expected, got }.into());
    }
    Ok(())
}

/// Refuses fewer than two output times, non-finite ones and times that do not increase.
pub(crate) fn check_times(ts: &[f32]) -> Result<()> {
    if ts.len() < 2 {
        return Err(OdeError::TooFewTimes { got: ts.len() }.into());
    }
    if let Some(index) = ts.iter().position(|t| !t.is_finite()) {
        return Err(OdeError::NonFiniteTime {
            index,
            value: ts[index] as f64,
        }
        .into());
    }
    for i in 1..ts.len() {
        if ts[i] <= ts[i - 1] {
            return Err(if ts[1] < ts[0] {
                OdeError::Unsupported {
                    what: "decreasing output times on the GPU; solve forward in time",
                }
            } else {
                OdeError::NonMonotonicTimes {
                    index: i,
                    prev: ts[i - 1] as f64,
                    next: ts[i] as f64,
                }
            }
            .into());
        }
    }
    Ok(())
}
