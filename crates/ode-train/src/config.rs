//! One flat run configuration: every model, training and data setting by its field name, as
//! TOML keys (`latent_dim = 32`) and command-line flags (`--latent-dim 32`). Unset fields keep
//! the defaults (or a preset's values); later layers override earlier ones.

use crate::data::DataConfig;
use crate::model::{Device, ModelConfig, Preset};
use crate::trainer::TrainConfig;
use crate::window_norm::Normalization;
use ode_core::{AdjointNorm, ControllerKind, Method, StepMode};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Every tunable setting of a training run; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Latent state size.
    #[cfg_attr(feature = "cli", arg(long))]
    pub latent_dim: Option<usize>,
    /// Hidden size of the encoder and the vector field.
    #[cfg_attr(feature = "cli", arg(long))]
    pub hidden_dim: Option<usize>,
    /// ODE solver: euler, rk4, dopri5 (also midpoint, heun2, rk4_classic, bosh3, tsit5).
    #[cfg_attr(feature = "cli", arg(long))]
    pub solver: Option<Method>,
    /// Relative tolerance of adaptive solvers.
    #[cfg_attr(feature = "cli", arg(long))]
    pub rtol: Option<f64>,
    /// Absolute tolerance of adaptive solvers.
    #[cfg_attr(feature = "cli", arg(long))]
    pub atol: Option<f64>,
    /// Gradients by the continuous adjoint (true) or backprop through the solver (false).
    #[cfg_attr(feature = "cli", arg(long))]
    pub use_adjoint: Option<bool>,
    /// per_sample (default) or shared step sizes across a batch.
    #[cfg_attr(feature = "cli", arg(long))]
    pub step_mode: Option<StepMode>,
    /// Adjoint error norm: seminorm (default) or mixed.
    #[cfg_attr(feature = "cli", arg(long))]
    pub adjoint_norm: Option<AdjointNorm>,
    /// Step-size rules of adaptive solvers: default, or torchdiffeq (its rules exactly; CPU only).
    #[cfg_attr(feature = "cli", arg(long))]
    pub controller: Option<ControllerKind>,
    /// Adjoint relative tolerance (default: rtol).
    #[cfg_attr(feature = "cli", arg(long))]
    pub adjoint_rtol: Option<f64>,
    /// Adjoint absolute tolerance (default: atol).
    #[cfg_attr(feature = "cli", arg(long))]
    pub adjoint_atol: Option<f64>,
    /// Step size of fixed-step solvers (default: one step per dt).
    #[cfg_attr(feature = "cli", arg(long))]
    pub step_size: Option<f64>,
    /// Step budget per solve and sample.
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_num_steps: Option<usize>,
    /// Adam learning rate.
    #[cfg_attr(feature = "cli", arg(long))]
    pub learning_rate: Option<f64>,
    /// Windows per batch.
    #[cfg_attr(feature = "cli", arg(long))]
    pub batch_size: Option<usize>,
    /// Global gradient-norm clipping (0 disables).
    #[cfg_attr(feature = "cli", arg(long))]
    pub gradient_clip: Option<f64>,
    /// Training epochs.
    #[cfg_attr(feature = "cli", arg(long))]
    pub epochs: Option<usize>,
    /// Early-stopping patience in epochs on val_rmse.
    #[cfg_attr(feature = "cli", arg(long))]
    pub early_stopping_patience: Option<usize>,
    /// Seed of initialisation and shuffling.
    #[cfg_attr(feature = "cli", arg(long))]
    pub seed: Option<u64>,
    /// Worker threads (default: all cores).
    #[cfg_attr(feature = "cli", arg(long))]
    pub threads: Option<usize>,
    /// Where the ODE solves run: cpu (default), gpu, or auto (GPU when one exists).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub device: Option<Device>,
    /// Context length C.
    #[cfg_attr(feature = "cli", arg(long))]
    pub context_len: Option<usize>,
    /// Horizon H.
    #[cfg_attr(feature = "cli", arg(long))]
    pub horizon: Option<usize>,
    /// Time between forecast rows in model time.
    #[cfg_attr(feature = "cli", arg(long))]
    pub dt: Option<f64>,
    /// Feature columns (comma separated; default: every numeric column).
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub features: Option<Vec<String>>,
    /// Target columns (comma separated; default: the features).
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub targets: Option<Vec<String>>,
    /// Fraction of rows for training.
    #[cfg_attr(feature = "cli", arg(long))]
    pub train_frac: Option<f64>,
    /// Fraction of rows for testing.
    #[cfg_attr(feature = "cli", arg(long))]
    pub test_frac: Option<f64>,
    /// Use only the first N training windows.
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_train_windows: Option<usize>,
    /// Use only the first N validation windows.
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_val_windows: Option<usize>,
    /// Normalisation of each window: global (the reference model's z-scores; default) or
    /// window (shifted by its last value, scaled by its own std; targets must be features).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub normalization: Option<Normalization>,
    /// Learnable per-feature affine (revin.weight, revin.bias) of window normalisation.
    #[cfg_attr(feature = "cli", arg(long))]
    pub revin: Option<bool>,
    /// Season in rows for the seasonal naive baseline (1 ≤ season ≤ context_len; default:
    /// no seasonal baseline).
    #[cfg_attr(feature = "cli", arg(long))]
    pub season: Option<usize>,
    /// Sort a CSV file's rows by its time column (with a warning) instead of refusing rows out
    /// of time order. A configuration-file key only (`sort_time = true`); the command line's
    /// flag is `--sort-time`, next to `--data`.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub sort_time: Option<bool>,
}

/// The three configurations a run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Model and solver.
    pub model: ModelConfig,
    /// Training loop.
    pub train: TrainConfig,
    /// Data pipeline.
    pub data: DataConfig,
}

/// A configuration file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("config file {path}: {reason}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong (TOML errors name the line and the key).
    pub reason: String,
}

impl RunConfig {
    /// Reads a TOML file of `key = value` lines with the field names above; unknown keys are
    /// an error naming them.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text).map_err(|reason| ConfigError {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Writes the set fields as TOML (what `ode train --config` accepts).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("run configuration serialises")
    }

    /// `other`'s set fields override this one's.
    pub fn merged(mut self, other: &RunConfig) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            latent_dim,
            hidden_dim,
            solver,
            rtol,
            atol,
            use_adjoint,
            step_mode,
            adjoint_norm,
            controller,
            adjoint_rtol,
            adjoint_atol,
            step_size,
            max_num_steps,
            normalization,
            revin,
            learning_rate,
            batch_size,
            gradient_clip,
            epochs,
            early_stopping_patience,
            seed,
            threads,
            device,
            context_len,
            horizon,
            dt,
            features,
            targets,
            train_frac,
            test_frac,
            max_train_windows,
            max_val_windows,
            season,
            sort_time
        );
        self
    }

    /// The full configuration: defaults, then the preset, then the fields set here.
    pub fn resolve(&self, preset: Option<Preset>) -> Resolved {
        let mut m = ModelConfig::default();
        if let Some(p) = preset {
            m = m.with_preset(p);
        }
        let mut t = TrainConfig::default();
        let mut d = DataConfig::default();
        macro_rules! set {
            ($dst:ident . $f:ident) => {
                if let Some(v) = &self.$f {
                    $dst.$f = v.clone();
                }
            };
        }
        set!(m.latent_dim);
        set!(m.hidden_dim);
        set!(m.solver);
        set!(m.rtol);
        set!(m.atol);
        set!(m.use_adjoint);
        set!(m.step_mode);
        set!(m.adjoint_norm);
        set!(m.controller);
        set!(m.max_num_steps);
        set!(m.normalization);
        set!(m.revin);
        set!(m.dt);
        m.adjoint_rtol = self.adjoint_rtol.or(m.adjoint_rtol);
        m.adjoint_atol = self.adjoint_atol.or(m.adjoint_atol);
        m.step_size = self.step_size.or(m.step_size);
        set!(t.learning_rate);
        set!(t.batch_size);
        set!(t.epochs);
        set!(t.seed);
        if let Some(c) = self.gradient_clip {
            t.gradient_clip = (c > 0.0).then_some(c);
        }
        t.early_stopping_patience = self.early_stopping_patience.or(t.early_stopping_patience);
        t.threads = self.threads.or(t.threads);
        set!(t.device);
        set!(d.context_len);
        set!(d.horizon);
        set!(d.train_frac);
        set!(d.test_frac);
        d.features = self.features.clone().or(d.features);
        d.targets = self.targets.clone().or(d.targets);
        d.max_train_windows = self.max_train_windows.or(d.max_train_windows);
        d.max_val_windows = self.max_val_windows.or(d.max_val_windows);
        Resolved {
            model: m,
            train: t,
            data: d,
        }
    }

    /// The settings of a resolved run as a complete file (every field set).
    pub fn from_resolved(r: &Resolved) -> Self {
        Self {
            latent_dim: Some(r.model.latent_dim),
            hidden_dim: Some(r.model.hidden_dim),
            solver: Some(r.model.solver),
            rtol: Some(r.model.rtol),
            atol: Some(r.model.atol),
            use_adjoint: Some(r.model.use_adjoint),
            step_mode: Some(r.model.step_mode),
            adjoint_norm: Some(r.model.adjoint_norm),
            controller: Some(r.model.controller),
            adjoint_rtol: r.model.adjoint_rtol,
            adjoint_atol: r.model.adjoint_atol,
            step_size: r.model.step_size,
            max_num_steps: Some(r.model.max_num_steps),
            normalization: Some(r.model.normalization),
            revin: Some(r.model.revin),
            learning_rate: Some(r.train.learning_rate),
            batch_size: Some(r.train.batch_size),
            gradient_clip: Some(r.train.gradient_clip.unwrap_or(0.0)),
            epochs: Some(r.train.epochs),
            early_stopping_patience: r.train.early_stopping_patience,
            seed: Some(r.train.seed),
            threads: r.train.threads,
            device: (r.train.device != Device::Cpu).then_some(r.train.device),
            context_len: Some(r.data.context_len),
            horizon: Some(r.data.horizon),
            dt: Some(r.model.dt),
            features: r.data.features.clone(),
            targets: r.data.targets.clone(),
            train_frac: Some(r.data.train_frac),
            test_frac: Some(r.data.test_frac),
            max_train_windows: r.data.max_train_windows,
            max_val_windows: r.data.max_val_windows,
            season: None,
            sort_time: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let file = RunConfig::from_toml("latent_dim = 8\nsolver = \"rk4\"\nepochs = 3\n").unwrap();
        let flags = RunConfig {
            solver: Some(Method::Euler),
            ..Default::default()
        };
        let r = RunConfig::default()
            .merged(&file)
            .merged(&flags)
            .resolve(Some(Preset::Accurate));
        assert_eq!(r.model.latent_dim, 8, "file over preset");
        assert_eq!(r.model.hidden_dim, 128, "preset over default");
        assert_eq!(r.model.solver, Method::Euler, "flag over file");
        assert_eq!(r.train.epochs, 3);
        assert_eq!(r.model.rtol, 1e-5);
        let back = RunConfig::from_toml(&RunConfig::from_resolved(&r).to_toml())
            .unwrap()
            .resolve(None);
        assert_eq!(back, r, "a written config reproduces the run");
    }

    #[test]
    fn device_is_read_from_toml_and_checked() {
        let r = RunConfig::from_toml("device = \"auto\"\n").unwrap().resolve(None);
        assert_eq!(r.train.device, Device::Auto);
        assert_eq!(RunConfig::default().resolve(None).train.device, Device::Cpu);
        let e = RunConfig::from_toml("device = \"tpu\"\n").unwrap_err();
        assert!(e.contains("tpu") || e.contains("device"), "{e}");
    }

    #[test]
    fn the_controller_is_read_by_name_and_reaches_the_solver() {
        let r = RunConfig::from_toml("controller = \"torchdiffeq\"\n")
            .unwrap()
            .resolve(None);
        assert_eq!(r.model.controller, ControllerKind::Torchdiffeq);
        let o = r.model.solve_options::<f64>(true).unwrap();
        assert_eq!(o.controller_kind, ControllerKind::Torchdiffeq);
        assert_eq!(
            RunConfig::default().resolve(None).model.controller,
            ControllerKind::Default
        );
        let e = RunConfig::from_toml("controller = \"pid\"\n").unwrap_err();
        assert!(e.contains("default, torchdiffeq"), "{e}");
        // Checkpoint metadata (the model config as JSON) names it only when not the default.
        let json = serde_json::to_string(&r.model).unwrap();
        assert!(json.contains("\"controller\":\"torchdiffeq\""), "{json}");
        let json = serde_json::to_string(&RunConfig::default().resolve(None).model).unwrap();
        assert!(!json.contains("controller"), "{json}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = RunConfig::from_toml("latent_dims = 8\n").unwrap_err();
        assert!(e.contains("latent_dims"), "{e}");
    }
}
