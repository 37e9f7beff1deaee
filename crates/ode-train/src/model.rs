//! The reference Neural ODE forecaster: encoder → ODE in latent space → decoder, with its loss
//! and gradients by the continuous adjoint or by backpropagation through the solver.

use crate::window_norm::{Affine, Dims, Normalization, WindowPass};
use ode_core::layers::{linear, linear_backward, transpose_weight};
use ode_core::{
    AdjointNorm, AdjointSolver, ControllerKind, Method, Mlp, OdeError, Scalar, SolveOptions, Solver, StepMode, Tape,
};
use serde::{Deserialize, Serialize};

/// Model and solver configuration, with the tuning guide's names and defaults
/// (latent 32, hidden 64, dopri5, rtol 1e-4, atol 1e-5, adjoint on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// Number of input features `D` (set from the data).
    pub input_dim: usize,
    /// Number of targets `O` (set from the data; the features when 0).
    pub output_dim: usize,
    /// Latent state size `L`.
    pub latent_dim: usize,
    /// Hidden size `M` of the encoder and of the vector field.
    pub hidden_dim: usize,
    /// Context length `C` (rows the encoder sees). A run configures it once, in
    /// [`crate::data::DataConfig`]; the model takes it from the dataset
    /// ([`ModelConfig::fit_to_dataset`]) and records it here for checkpoints.
    pub context_len: usize,
    /// Horizon `H` (rows forecast); like `context_len`, configured in the data configuration
    /// and taken from the dataset.
    pub horizon: usize,
    /// Time between forecast rows: outputs at `t_k = k·dt`.
    pub dt: f64,
    /// ODE solver (`euler`, `rk4`, `dopri5`, …; written by name in configs and checkpoints).
    pub solver: Method,
    /// Relative tolerance (adaptive solvers).
    pub rtol: f64,
    /// Absolute tolerance (adaptive solvers).
    pub atol: f64,
    /// Gradients by the continuous adjoint (`true`) or by backpropagation through the solver.
    pub use_adjoint: bool,
    /// `per_sample` (each window its own steps; the default) or `shared` (torchdiffeq's).
    pub step_mode: StepMode,
    /// Error norm of the adjoint's step control: `seminorm` (default) or `mixed`.
    pub adjoint_norm: AdjointNorm,
    /// Step-size rules of adaptive solvers: `default`, or `torchdiffeq` (torchdiffeq's exactly,
    /// for comparisons at identical step counts; CPU only). Written only when not the default.
    #[serde(skip_serializing_if = "is_default_controller")]
    pub controller: ControllerKind,
    /// Adjoint relative tolerance; the forward one when unset.
    pub adjoint_rtol: Option<f64>,
    /// Adjoint absolute tolerance; the forward one when unset.
    pub adjoint_atol: Option<f64>,
    /// Step size of fixed-step solvers; one step per `dt` when unset.
    pub step_size: Option<f64>,
    /// Step budget per solve and sample.
    pub max_num_steps: usize,
    /// `global` (the reference model; default) or `window` (each window shifted by its last
    /// context value and scaled by its own std; see [`crate::window_norm`]).
    pub normalization: Normalization,
    /// A learnable per-feature affine (`revin.weight`, `revin.bias`) in `window` mode.
    pub revin: bool,
    /// Feature index of each target (`window` mode maps target `j` back with feature
    /// `target_features[j]`'s statistics); empty means target `j` is feature `j`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_features: Vec<usize>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            input_dim: 5,
            output_dim: 0,
            latent_dim: 32,
            hidden_dim: 64,
            context_len: 24,
            horizon: 12,
            dt: 0.1,
            solver: Method::Dopri5,
            rtol: 1e-4,
            atol: 1e-5,
            use_adjoint: true,
            step_mode: StepMode::PerSample,
            adjoint_norm: AdjointNorm::Seminorm,
            controller: ControllerKind::Default,
            adjoint_rtol: None,
            adjoint_atol: None,
            step_size: None,
            max_num_steps: 10_000,
            normalization: Normalization::Global,
            revin: false,
            target_features: Vec::new(),
        }
    }
}

/// Whether a config's controller is the default (then checkpoints leave it out, as before).
fn is_default_controller(c: &ControllerKind) -> bool {
    *c == ControllerKind::Default
}

/// The tuning guide's recommended configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Fast development: latent 16, hidden 32, euler, rtol 1e-3, atol 1e-4.
    Fast,
    /// Balanced: latent 32, hidden 64, rk4, rtol 1e-4, atol 1e-5.
    Balanced,
    /// High accuracy: latent 64, hidden 128, dopri5, rtol 1e-5, atol 1e-6.
    Accurate,
}

ode_core::choice_names!(Preset, "preset" { Fast => "fast", Balanced => "balanced", Accurate => "accurate" });

impl ModelConfig {
    /// Applies a preset's architecture, solver and tolerances, keeping everything else.
    pub fn with_preset(mut self, preset: Preset) -> Self {
        let (l, m, s, r, a) = match preset {
            Preset::Fast => (16, 32, Method::Euler, 1e-3, 1e-4),
            Preset::Balanced => (32, 64, Method::Rk4, 1e-4, 1e-5),
            Preset::Accurate => (64, 128, Method::Dopri5, 1e-5, 1e-6),
        };
        self.latent_dim = l;
        self.hidden_dim = m;
        self.solver = s;
        self.rtol = r;
        self.atol = a;
        self
    }

    /// The fast-development preset for `input_dim` features.
    pub fn fast(input_dim: usize) -> Self {
        Self {
            input_dim,
            ..Self::default()
        }
        .with_preset(Preset::Fast)
    }

    /// The balanced preset for `input_dim` features.
    pub fn balanced(input_dim: usize) -> Self {
        Self {
            input_dim,
            ..Self::default()
        }
        .with_preset(Preset::Balanced)
    }

    /// The high-accuracy preset for `input_dim` features.
    pub fn accurate(input_dim: usize) -> Self {
        Self {
            input_dim,
            ..Self::default()
        }
        .with_preset(Preset::Accurate)
    }

    /// Number of targets (`output_dim`, or `input_dim` when 0).
    pub fn outputs(&self) -> usize {
        if self.output_dim == 0 {
            self.input_dim
        } else {
            self.output_dim
        }
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), OdeError> {
        let bad =
            |name: &'static str, value: f64, reason: &'static str| Err(OdeError::InvalidOption { name, value, reason });
        for (name, v) in [
            ("input_dim", self.input_dim),
            ("latent_dim", self.latent_dim),
            ("hidden_dim", self.hidden_dim),
            ("context_len", self.context_len),
            ("horizon", self.horizon),
        ] {
            if v == 0 {
                return bad(name, 0.0, "must be at least 1");
            }
        }
        if !(self.dt.is_finite() && self.dt > 0.0) {
            return bad("dt", self.dt, "must be finite and positive");
        }
        if self.use_adjoint && self.adjoint_norm == AdjointNorm::Mixed && self.step_mode == StepMode::PerSample {
            return Err(OdeError::Unsupported {
                what: "adjoint_norm = mixed with step_mode = per_sample; use step_mode = shared or adjoint_norm = seminorm",
            });
        }
        self.solve_options::<f64>(false)?.validate(1)?;
        self.solve_options::<f64>(true)?.validate(1)?;
        self.validate_normalization()
    }

    fn validate_normalization(&self) -> Result<(), OdeError> {
        if self.revin && self.normalization != Normalization::Window {
            return Err(OdeError::Unsupported {
                what: "revin = true (the learnable affine of per-window normalisation) with normalization = global; \
                       set normalization = window or revin = false",
            });
        }
        if self.normalization == Normalization::Global {
            return Ok(());
        }
        let tf = self.target_feature_indices();
        if tf.len() != self.outputs() || tf.iter().any(|&f| f >= self.input_dim) {
            return Err(OdeError::Unsupported {
                what: "normalization = window needs every target to be one of the features (target_features \
                       must give a feature index per target); add the targets to the features or use \
                       normalization = global",
            });
        }
        Ok(())
    }

    /// The feature index of each target: `target_features`, or target `j` = feature `j` when
    /// that is empty.
    pub fn target_feature_indices(&self) -> Vec<usize> {
        if self.target_features.is_empty() {
            (0..self.outputs()).collect()
        } else {
            self.target_features.clone()
        }
    }

    /// Takes the data's shapes from `ds`: features, targets (and which feature each target
    /// is), context length and horizon. Errors, naming the column, in `window` mode when a
    /// target is not a feature.
    pub fn fit_to_dataset(&mut self, ds: &crate::data::Dataset) -> Result<(), crate::data::DataError> {
        self.input_dim = ds.input_dim();
        self.output_dim = ds.output_dim();
        self.context_len = ds.context_len;
        self.horizon = ds.horizon;
        let index = |t: &String| ds.features.iter().position(|f| f == t);
        self.target_features = ds.targets.iter().filter_map(index).collect();
        if self.target_features.len() != ds.targets.len() {
            self.target_features.clear();
            if self.normalization == Normalization::Window {
                let missing: Vec<&str> = ds
                    .targets
                    .iter()
                    .filter(|t| index(t).is_none())
                    .map(String::as_str)
                    .collect();
                return Err(crate::data::DataError::InvalidConfig {
                    name: "normalization".into(),
                    value: "window".into(),
                    reason: format!(
                        "target column(s) {missing:?} of {} are not features {:?}; per-window normalisation \
                         maps each target back with its own feature's statistics, so add them to --features \
                         or use --normalization global",
                        ds.source, ds.features
                    ),
                });
            }
        }
        Ok(())
    }

    /// Solver options of the forward (`adjoint = false`) or the adjoint solve.
    pub fn solve_options<T: Scalar>(&self, adjoint: bool) -> Result<SolveOptions<T>, OdeError> {
        let (r, a) = if adjoint {
            (
                self.adjoint_rtol.unwrap_or(self.rtol),
                self.adjoint_atol.unwrap_or(self.atol),
            )
        } else {
            (self.rtol, self.atol)
        };
        let mut o = SolveOptions::default()
            .rtol(T::c(r))
            .atol(T::c(a))
            .step_mode(self.step_mode)
            .controller_kind(self.controller)
            .max_num_steps(self.max_num_steps);
        if let Some(h) = self.step_size {
            o = o.step_size(T::c(h));
        }
        Ok(o)
    }
}

/// Names of the model's tensors in checkpoint order, with PyTorch's names.
pub const TENSOR_NAMES: [&str; 12] = [
    "encoder.0.weight",
    "encoder.0.bias",
    "encoder.2.weight",
    "encoder.2.bias",
    "func.0.weight",
    "func.0.bias",
    "func.2.weight",
    "func.2.bias",
    "func.4.weight",
    "func.4.bias",
    "decoder.weight",
    "decoder.bias",
];

/// Name of the learnable per-feature scale of `window` normalisation (`[D]`, init 1).
pub const REVIN_WEIGHT: &str = "revin.weight";
/// Name of the learnable per-feature shift of `window` normalisation (`[D]`, init 0).
pub const REVIN_BIAS: &str = "revin.bias";

/// The Neural ODE forecaster of the reference-model contract:
/// `z0 = encoder(flatten(context))`, `dz/dt = func(z)`, `y_k = decoder(z(k·dt))`.
///
/// Parameters are one flat vector in [`TENSOR_NAMES`] order (the vector field's six tensors in
/// the middle), so the optimiser and the checkpoint see one buffer.
#[derive(Debug, Clone)]
pub struct NeuralOdeModel<T: Scalar> {
    config: ModelConfig,
    params: Vec<T>,
    shapes: Vec<(&'static str, Vec<usize>, usize)>,
    /// Feature index of each target (for `window` normalisation), from the configuration.
    target_map: Vec<usize>,
    /// A process-wide unique stamp of the current parameter values, so workspaces copy the
    /// vector field's parameters only when they changed.
    stamp: u64,
}

static STAMPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn new_stamp() -> u64 {
    STAMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Work and results of one loss evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    /// Mean squared error over batch × horizon × targets (normalised units).
    pub loss: f64,
    /// Sum of squared errors (to aggregate over batches).
    pub sse: f64,
    /// Forward evaluations per sample (mean over the batch).
    pub nfe_forward: f64,
    /// Backward evaluations per sample (VJPs; mean over the batch).
    pub nfe_backward: f64,
    /// Accepted forward steps per sample.
    pub accepted: f64,
    /// Rejected forward steps per sample.
    pub rejected: f64,
}

impl<T: Scalar> NeuralOdeModel<T> {
    /// A model with PyTorch's default initialisation: every weight and bias uniform in
    /// `±1/sqrt(fan_in)`, drawn from `uniform01` (a seeded generator of numbers in `[0, 1)`).
    pub fn new(config: ModelConfig, mut uniform01: impl FnMut() -> f64) -> Result<Self, OdeError> {
        config.validate()?;
        let shapes = Self::layout(&config);
        let mut params = Vec::with_capacity(shapes.iter().map(|s| s.1.iter().product::<usize>()).sum());
        for (name, shape, _) in &shapes {
            let n = shape.iter().product::<usize>();
            match *name {
                REVIN_WEIGHT => params.extend(std::iter::repeat_n(T::one(), n)),
                REVIN_BIAS => params.extend(std::iter::repeat_n(T::zero(), n)),
                _ => {
                    let fan_in = if name.ends_with("weight") {
                        shape[1]
                    } else {
                        Self::bias_fan_in(&shapes, name)
                    };
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    params.extend((0..n).map(|_| T::c((2.0 * uniform01() - 1.0) * bound)));
                }
            }
        }
        Ok(Self {
            target_map: config.target_feature_indices(),
            config,
            params,
            shapes,
            stamp: new_stamp(),
        })
    }

    /// A model from a flat parameter vector in [`TENSOR_NAMES`] order.
    pub fn from_params(config: ModelConfig, params: Vec<T>) -> Result<Self, OdeError> {
        config.validate()?;
        let shapes = Self::layout(&config);
        let want: usize = shapes.iter().map(|s| s.1.iter().product::<usize>()).sum();
        if params.len() != want {
            return Err(OdeError::ShapeMismatch {
                what: "model parameters",
                expected: want,
                got: params.len(),
            });
        }
        Ok(Self {
            target_map: config.target_feature_indices(),
            config,
            params,
            shapes,
            stamp: new_stamp(),
        })
    }

    /// Number of parameters of a model with this configuration.
    pub fn param_count(config: &ModelConfig) -> usize {
        Self::layout(config).iter().map(|s| s.1.iter().product::<usize>()).sum()
    }

    fn bias_fan_in(shapes: &[(&'static str, Vec<usize>, usize)], bias: &str) -> usize {
        let w = bias.replace("bias", "weight");
        shapes.iter().find(|s| s.0 == w).map_or(1, |s| s.1[1])
    }

    /// Name, shape and offset of every tensor of a model with configuration `c`: the contract's
    /// [`TENSOR_NAMES`], then `revin.weight` and `revin.bias` when `c.revin`.
    pub(crate) fn layout(c: &ModelConfig) -> Vec<(&'static str, Vec<usize>, usize)> {
        let shapes = tensor_shapes(c.outputs(), c.latent_dim, c.hidden_dim, c.context_len * c.input_dim);
        let mut named: Vec<(&'static str, Vec<usize>)> = TENSOR_NAMES.iter().copied().zip(shapes).collect();
        if c.revin {
            named.push((REVIN_WEIGHT, vec![c.input_dim]));
            named.push((REVIN_BIAS, vec![c.input_dim]));
        }
        let mut off = 0;
        named
            .into_iter()
            .map(|(n, s)| {
                let o = off;
                off += s.iter().product::<usize>();
                (n, s, o)
            })
            .collect()
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Mutable configuration for solver settings (tolerances, solver, adjoint) between steps;
    /// architecture fields must not change.
    pub fn config_mut(&mut self) -> &mut ModelConfig {
        &mut self.config
    }

    /// The flat parameter vector.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// The flat parameter vector, mutable.
    pub fn params_mut(&mut self) -> &mut [T] {
        self.stamp = new_stamp();
        &mut self.params
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// `(name, shape, offset)` of every tensor in the flat vector.
    pub fn tensors(&self) -> &[(&'static str, Vec<usize>, usize)] {
        &self.shapes
    }

    /// The range of tensor `name` in the flat vector.
    pub fn tensor_range(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.shapes
            .iter()
            .find(|s| s.0 == name)
            .map(|s| s.2..s.2 + s.1.iter().product::<usize>())
    }

    /// Range of the vector field's parameters (func.*) in the flat vector.
    pub fn func_range(&self) -> std::ops::Range<usize> {
        let a = self.tensor_range("func.0.weight").expect("layout");
        let b = self.tensor_range("func.4.bias").expect("layout");
        a.start..b.end
    }

    /// The vector field with the model's current parameters.
    pub fn field(&self) -> Mlp<T> {
        Mlp::with_params(
            self.config.latent_dim,
            self.config.hidden_dim,
            self.params[self.func_range()].to_vec(),
        )
    }
}

/// Everything one thread needs to evaluate the loss and its gradient on a chunk of a batch:
/// solvers, tape, field and buffers, reused across batches so steps allocate nothing.
#[derive(Debug)]
pub struct Workspace<T: Scalar> {
    solver: Solver<T>,
    adjoint: AdjointSolver<T>,
    tape: Tape<T>,
    field: Mlp<T>,
    ts: Vec<T>,
    enc_h: Vec<T>,
    z0: Vec<T>,
    zs: Vec<T>,
    pred: Vec<T>,
    gz: Vec<T>,
    gz0: Vec<T>,
    gh: Vec<T>,
    wt: Vec<T>,
    win: WindowPass<T>,
    dctx: Vec<T>,
    synced: u64,
    groups: Vec<std::ops::Range<usize>>,
    gpu: Option<GpuLane>,
}

/// The GPU side of a workspace: the solver with the field on the device and f32 staging
/// buffers (the model may be f64; the GPU works in f32).
#[derive(Debug)]
struct GpuLane {
    solver: ode_gpu::GpuSolver,
    synced: u64,
    ts: Vec<f32>,
    z0: Vec<f32>,
    zs: Vec<f32>,
    gz: Vec<f32>,
    gz0: Vec<f32>,
    gp: Vec<f32>,
    params: Vec<f32>,
}

/// Where the ODE solves of training and prediction run.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The CPU reference solvers (ode-core), split across threads. The default.
    #[default]
    Cpu,
    /// The GPU (ode-gpu, wgpu): the forward solve and the adjoint run there; encoder, decoder,
    /// loss and Adam stay on the CPU (they are small). An error where no adapter exists.
    Gpu,
    /// The GPU when an adapter exists, else the CPU with a warning.
    Auto,
}

ode_core::choice_names!(Device, "device" { Cpu => "cpu", Gpu => "gpu", Auto => "auto" });

impl Device {
    /// Opens the GPU this device asks for: `None` for the CPU (or for `auto` without an
    /// adapter, after a warning on stderr), the context for the GPU.
    pub fn open(self) -> Result<Option<std::sync::Arc<ode_gpu::GpuContext>>, OdeError> {
        match self {
            Device::Cpu => Ok(None),
            Device::Gpu => Ok(Some(std::sync::Arc::new(ode_gpu::GpuContext::new()?))),
            Device::Auto => match ode_gpu::GpuContext::new() {
                Ok(ctx) => Ok(Some(std::sync::Arc::new(ctx))),
                Err(e) => {
                    eprintln!("warning: device = auto found no usable GPU ({e}); running on the CPU");
                    Ok(None)
                }
            },
        }
    }
}

impl<T: Scalar> Workspace<T> {
    /// A workspace for `model`'s configuration.
    pub fn new(model: &NeuralOdeModel<T>) -> Result<Self, OdeError> {
        let c = model.config();
        let method = c.solver;
        let ts = (0..=c.horizon).map(|k| T::c(k as f64 * c.dt)).collect();
        let f = model.func_range().start;
        let groups = model.tensors()[4..10]
            .iter()
            .map(|(_, s, o)| o - f..o - f + s.iter().product::<usize>())
            .collect();
        Ok(Self {
            solver: Solver::new(method, c.solve_options(false)?)?,
            adjoint: AdjointSolver::new(method, c.solve_options(true)?, c.adjoint_norm)?,
            tape: Tape::new(),
            field: model.field(),
            ts,
            enc_h: Vec::new(),
            z0: Vec::new(),
            zs: Vec::new(),
            pred: Vec::new(),
            gz: Vec::new(),
            gz0: Vec::new(),
            gh: Vec::new(),
            wt: Vec::new(),
            win: WindowPass::default(),
            dctx: Vec::new(),
            synced: model.stamp,
            groups,
            gpu: None,
        })
    }

    /// A workspace whose ODE solves (forward and adjoint) run on the GPU of `ctx`.
    ///
    /// Errors where the configuration cannot run there: backpropagation through the solver
    /// (`use_adjoint = false`; its tape lives on the CPU), `step_mode = shared`, or a device error.
    pub fn with_gpu(model: &NeuralOdeModel<T>, ctx: std::sync::Arc<ode_gpu::GpuContext>) -> Result<Self, OdeError> {
        let c = model.config();
        if !c.use_adjoint {
            return Err(OdeError::Unsupported {
                what: "use_adjoint = false on the GPU (backprop through the solver keeps its tape on the CPU); \
                       use the adjoint or device = cpu",
            });
        }
        let mut ws = Self::new(model)?;
        let params: Vec<f32> = model.params[model.func_range()]
            .iter()
            .map(|v| v.f64() as f32)
            .collect();
        let mut solver = ode_gpu::GpuSolver::new(
            ctx,
            c.solver,
            c.solve_options::<f32>(false)?,
            c.latent_dim,
            c.hidden_dim,
            params,
        )?;
        solver.set_adjoint_options(c.solve_options::<f32>(true)?)?;
        ws.gpu = Some(GpuLane {
            solver,
            synced: model.stamp,
            ts: ws.ts.iter().map(|t| t.f64() as f32).collect(),
            z0: Vec::new(),
            zs: Vec::new(),
            gz: Vec::new(),
            gz0: Vec::new(),
            gp: Vec::new(),
            params: Vec::new(),
        });
        Ok(ws)
    }

    /// Turns on kernel timing (timestamp queries) of the GPU solves; false without a GPU or
    /// without timestamp support.
    pub fn set_gpu_profiling(&mut self, on: bool) -> bool {
        self.gpu.as_mut().is_some_and(|g| g.solver.set_profiling(on))
    }

    /// Work counters of the GPU solves (submissions, kernel seconds), if on the GPU.
    pub fn gpu_counters(&self) -> Option<ode_gpu::GpuCounters> {
        self.gpu.as_ref().map(|g| g.solver.counters())
    }

    /// The GPU adapter this workspace solves on, if any.
    pub fn gpu_adapter(&self) -> Option<String> {
        self.gpu.as_ref().map(|g| g.solver.context().adapter_name())
    }
}

/// Copies `src` into `dst` converting precision, resizing `dst`.
fn convert<A: Scalar, B: Scalar>(src: &[A], dst: &mut Vec<B>) {
    dst.clear();
    dst.extend(src.iter().map(|v| B::c(v.f64())));
}

fn fit<T: Scalar>(v: &mut Vec<T>, n: usize) {
    v.clear();
    v.resize(n, T::zero());
}

/// `out = x · Wᵀ + b` for a PyTorch weight `w`, transposing it into `wt` first (once per
/// batch, not per solver step).
#[allow(clippy::too_many_arguments)]
fn dense<T: Scalar>(wt: &mut Vec<T>, rows: usize, n_in: usize, n_out: usize, x: &[T], w: &[T], b: &[T], out: &mut [T]) {
    wt.resize(n_in * n_out, T::zero());
    transpose_weight(n_out, n_in, w, wt);
    linear(rows, n_in, n_out, x, wt, b, out);
}

impl<T: Scalar> NeuralOdeModel<T> {
    /// Encodes, solves and decodes a batch of contexts (`rows × C·D`, normalised, time-major);
    /// leaves the forecasts in the workspace (`rows × H·O`) and returns the row count and
    /// the forward counters (summed over samples).
    fn forward(&self, ws: &mut Workspace<T>, ctx: &[T], taped: bool) -> Result<(usize, LossStats), OdeError> {
        let c = &self.config;
        let (d, o, l, m, cl, h) = (
            c.input_dim,
            c.outputs(),
            c.latent_dim,
            c.hidden_dim,
            c.context_len,
            c.horizon,
        );
        let width = cl * d;
        if ctx.is_empty() || ctx.len() % width != 0 {
            return Err(OdeError::ShapeMismatch {
                what: "context batch (rows × C·D)",
                expected: width,
                got: ctx.len(),
            });
        }
        let rows = ctx.len() / width;
        let p = &self.params;
        let r = |name: &str| self.tensor_range(name).expect("layout");
        let window = c.normalization == Normalization::Window;
        if window {
            ws.win.normalize(ctx, self.dims(rows), self.affine());
        }
        let enc_in: &[T] = if window { &ws.win.ctx } else { ctx };
        fit(&mut ws.enc_h, rows * m);
        fit(&mut ws.z0, rows * l);
        dense(
            &mut ws.wt,
            rows,
            width,
            m,
            enc_in,
            &p[r("encoder.0.weight")],
            &p[r("encoder.0.bias")],
            &mut ws.enc_h,
        );
        T::tanh_inplace(&mut ws.enc_h);
        dense(
            &mut ws.wt,
            rows,
            m,
            l,
            &ws.enc_h,
            &p[r("encoder.2.weight")],
            &p[r("encoder.2.bias")],
            &mut ws.z0,
        );
        if ws.synced != self.stamp {
            ws.field.params_mut().copy_from_slice(&p[self.func_range()]);
            ws.synced = self.stamp;
        }
        fit(&mut ws.zs, (h + 1) * rows * l);
        let report = if let Some(g) = ws.gpu.as_mut() {
            if g.synced != self.stamp {
                convert(&p[self.func_range()], &mut g.params);
                g.solver.set_params(&g.params)?;
                g.synced = self.stamp;
            }
            convert(&ws.z0, &mut g.z0);
            g.zs.resize(ws.zs.len(), 0.0);
            let rep = g.solver.solve_into(&g.ts, &g.z0, &mut g.zs)?;
            for (d, s) in ws.zs.iter_mut().zip(&g.zs) {
                *d = T::c(*s as f64);
            }
            rep
        } else if taped {
            ws.solver
                .solve_taped(&mut ws.field, &ws.ts, &ws.z0, &mut ws.zs, &mut ws.tape)?
        } else {
            ws.solver.solve_into(&mut ws.field, &ws.ts, &ws.z0, &mut ws.zs)?
        };
        // Decode every output time at once, then reorder to rows × H × O.
        fit(&mut ws.gh, h * rows * o);
        dense(
            &mut ws.wt,
            h * rows,
            l,
            o,
            &ws.zs[rows * l..],
            &p[r("decoder.weight")],
            &p[r("decoder.bias")],
            &mut ws.gh,
        );
        fit(&mut ws.pred, rows * h * o);
        for k in 0..h {
            for row in 0..rows {
                let src = (k * rows + row) * o;
                let dst = (row * h + k) * o;
                ws.pred[dst..dst + o].copy_from_slice(&ws.gh[src..src + o]);
            }
        }
        if window {
            ws.win
                .map_back(&mut ws.pred, self.dims(rows), &self.target_map, self.affine());
        }
        let ps = &report.stats.per_sample;
        let st = LossStats {
            nfe_forward: ps.iter().map(|s| s.nfe as f64).sum(),
            accepted: ps.iter().map(|s| s.accepted as f64).sum(),
            rejected: ps.iter().map(|s| s.rejected as f64).sum(),
            ..LossStats::default()
        };
        Ok((rows, st))
    }

    fn dims(&self, rows: usize) -> Dims {
        let c = &self.config;
        Dims {
            rows,
            c: c.context_len,
            d: c.input_dim,
            h: c.horizon,
            o: c.outputs(),
        }
    }

    /// The learnable affine of `window` normalisation, when the model has one.
    fn affine(&self) -> Option<Affine<'_, T>> {
        let (w, b) = (self.tensor_range(REVIN_WEIGHT)?, self.tensor_range(REVIN_BIAS)?);
        Some(Affine {
            weight: &self.params[w],
            bias: &self.params[b],
        })
    }

    /// Forecasts (normalised units, `rows × H·O` time-major) for a batch of contexts.
    pub fn predict_into(&self, ws: &mut Workspace<T>, ctx: &[T], pred: &mut [T]) -> Result<LossStats, OdeError> {
        let (rows, st) = self.forward(ws, ctx, false)?;
        let n = rows * self.config.horizon * self.config.outputs();
        if pred.len() != n {
            return Err(OdeError::ShapeMismatch {
                what: "prediction buffer (rows × H·O)",
                expected: n,
                got: pred.len(),
            });
        }
        pred.copy_from_slice(&ws.pred);
        Ok(st)
    }

    /// Sum of squared errors of the forecasts for `ctx` against `tgt` (`rows × H·O`), without
    /// gradients (validation).
    pub fn sse(&self, ws: &mut Workspace<T>, ctx: &[T], tgt: &[T]) -> Result<LossStats, OdeError> {
        let (_, mut st) = self.forward(ws, ctx, false)?;
        if tgt.len() != ws.pred.len() {
            return Err(OdeError::ShapeMismatch {
                what: "target batch (rows × H·O)",
                expected: ws.pred.len(),
                got: tgt.len(),
            });
        }
        st.sse = ws.pred.iter().zip(tgt).map(|(p, t)| (*p - *t).f64().powi(2)).sum();
        Ok(st)
    }

    /// Loss on a chunk of a batch and its gradient: **adds** `∂(sse / denom)/∂θ` to `grad`
    /// (flat, [`TENSOR_NAMES`] order), where `denom` is the element count of the whole batch,
    /// so chunks evaluated on different threads sum to the batch's mean-squared-error gradient.
    /// Gradients through the ODE come from the adjoint or from backprop, as configured.
    pub fn loss_and_grad(
        &self,
        ws: &mut Workspace<T>,
        ctx: &[T],
        tgt: &[T],
        denom: usize,
        grad: &mut [T],
    ) -> Result<LossStats, OdeError> {
        if grad.len() != self.params.len() {
            return Err(OdeError::ShapeMismatch {
                what: "gradient buffer",
                expected: self.params.len(),
                got: grad.len(),
            });
        }
        let (rows, mut st) = self.forward(ws, ctx, !self.config.use_adjoint)?;
        if tgt.len() != ws.pred.len() {
            return Err(OdeError::ShapeMismatch {
                what: "target batch (rows × H·O)",
                expected: ws.pred.len(),
                got: tgt.len(),
            });
        }
        let sse = self.output_grad(ws, tgt, rows, denom);
        st.sse = sse;
        st.loss = sse / denom as f64;
        if !sse.is_finite() {
            // No gradient of a non-finite loss: the caller stops with the loss as the reason.
            return Ok(st);
        }
        self.window_output_grad(ws, rows, grad);
        self.decoder_backward(ws, rows, grad);
        st.nfe_backward = self.ode_backward(ws, rows, grad)?;
        self.encoder_backward(ws, ctx, rows, grad);
        Ok(st)
    }

    /// Writes ∂(sse / denom)/∂pred into `ws.gh`, reordered to k-major (`H × rows × O`) for the
    /// decoder backward, and returns the sum of squared errors.
    fn output_grad(&self, ws: &mut Workspace<T>, tgt: &[T], rows: usize, denom: usize) -> f64 {
        let (o, h) = (self.config.outputs(), self.config.horizon);
        let scale = T::c(2.0 / denom as f64);
        let mut sse = 0.0f64;
        for row in 0..rows {
            for k in 0..h {
                let src = (row * h + k) * o;
                let dst = (k * rows + row) * o;
                for j in 0..o {
                    let e = ws.pred[src + j] - tgt[src + j];
                    sse += e.f64() * e.f64();
                    ws.gh[dst + j] = scale * e;
                }
            }
        }
        sse
    }

    /// In `window` mode, back through the mapping of the decoder's outputs: `ws.gh` becomes
    /// ∂L/∂(decoder output), and the affine's output-side gradients are added.
    fn window_output_grad(&self, ws: &mut Workspace<T>, rows: usize, grad: &mut [T]) {
        if self.config.normalization != Normalization::Window {
            return;
        }
        let (n, d) = (self.dims(rows), self.config.input_dim);
        let g = &mut ws.gh[..n.h * rows * n.o];
        match (self.affine(), self.tensor_range(REVIN_WEIGHT)) {
            (Some(a), Some(rw)) => {
                let (gw, gb) = grad[rw.start..].split_at_mut(d);
                ws.win
                    .map_back_grad(g, n, &self.target_map, Some((a, gw, &mut gb[..d])));
            }
            _ => ws.win.map_back_grad(g, n, &self.target_map, None),
        }
    }

    /// Decoder: dW += gᵀ z, db += Σ g, and `ws.gz` = ∂L/∂z at every output time (0 at `t_0`).
    fn decoder_backward(&self, ws: &mut Workspace<T>, rows: usize, grad: &mut [T]) {
        let (o, l, h) = (self.config.outputs(), self.config.latent_dim, self.config.horizon);
        let r = |name: &str| self.tensor_range(name).expect("layout");
        fit(&mut ws.gz, (h + 1) * rows * l);
        let (gw, rest) = grad[r("decoder.weight").start..].split_at_mut(o * l);
        linear_backward(
            h * rows,
            l,
            o,
            &ws.zs[rows * l..],
            &self.params[r("decoder.weight")],
            &ws.gh,
            Some((gw, &mut rest[..o])),
            Some(&mut ws.gz[rows * l..]),
        );
    }

    /// Through the ODE (adjoint on the GPU or the CPU, or backprop): `ws.gz0` = ∂L/∂z0 and the
    /// vector field's gradient added to `grad`. Returns the backward evaluations.
    fn ode_backward(&self, ws: &mut Workspace<T>, rows: usize, grad: &mut [T]) -> Result<f64, OdeError> {
        fit(&mut ws.gz0, rows * self.config.latent_dim);
        let fr = self.func_range();
        let use_adjoint = self.config.use_adjoint;
        if let (true, Some(g)) = (use_adjoint, ws.gpu.as_mut()) {
            convert(&ws.gz, &mut g.gz);
            g.gz0.resize(ws.gz0.len(), 0.0);
            g.gp.clear();
            g.gp.resize(fr.len(), 0.0);
            let a = g.solver.adjoint_backward(&g.ts, &g.zs, &g.gz, &mut g.gz0, &mut g.gp)?;
            for (d, s) in ws.gz0.iter_mut().zip(&g.gz0) {
                *d = T::c(*s as f64);
            }
            for (d, s) in grad[fr].iter_mut().zip(&g.gp) {
                *d = *d + T::c(*s as f64);
            }
            return Ok(a.sample_evals as f64);
        }
        if use_adjoint {
            let a = ws.adjoint.backward(
                &mut ws.field,
                &ws.ts,
                &ws.zs,
                &ws.gz,
                &mut ws.gz0,
                &mut grad[fr],
                &ws.groups,
            )?;
            return Ok(a.sample_evals as f64);
        }
        let b = ws
            .solver
            .backprop(&mut ws.field, &ws.tape, &ws.gz, &mut ws.gz0, &mut grad[fr])?;
        Ok(b.sample_evals as f64)
    }

    /// Encoder (and, in `window` mode with an affine, its input side): from `ws.gz0`.
    fn encoder_backward(&self, ws: &mut Workspace<T>, ctx: &[T], rows: usize, grad: &mut [T]) {
        let c = &self.config;
        let (d, l, m) = (c.input_dim, c.latent_dim, c.hidden_dim);
        let width = c.context_len * d;
        let r = |name: &str| self.tensor_range(name).expect("layout");
        let p = &self.params;
        let mut dh = std::mem::take(&mut ws.gh);
        fit(&mut dh, rows * m);
        {
            let e2 = r("encoder.2.weight");
            let (gw, rest) = grad[e2.start..].split_at_mut(l * m);
            linear_backward(
                rows,
                m,
                l,
                &ws.enc_h,
                &p[e2],
                &ws.gz0,
                Some((gw, &mut rest[..l])),
                Some(&mut dh),
            );
        }
        for (g, hv) in dh.iter_mut().zip(&ws.enc_h) {
            *g = *g * (T::one() - *hv * *hv);
        }
        let window = c.normalization == Normalization::Window;
        let affine = self.affine().zip(self.tensor_range(REVIN_WEIGHT));
        if affine.is_some() {
            fit(&mut ws.dctx, rows * width);
        }
        {
            let e0 = r("encoder.0.weight");
            let (gw, rest) = grad[e0.start..].split_at_mut(m * width);
            linear_backward(
                rows,
                width,
                m,
                if window { &ws.win.ctx } else { ctx },
                &p[e0],
                &dh,
                Some((gw, &mut rest[..m])),
                affine.is_some().then_some(&mut ws.dctx[..]),
            );
        }
        if let Some((_, rw)) = affine {
            let (gw, gb) = grad[rw.start..].split_at_mut(d);
            ws.win
                .affine_input_grad(ctx, &ws.dctx, self.dims(rows), gw, &mut gb[..d]);
        }
        ws.gh = dh;
    }
}

/// The shapes of the contract's tensors, in [`TENSOR_NAMES`] order, for `o` targets, latent
/// size `l`, hidden size `m` and `cols` = context length × features encoder inputs.
pub(crate) fn tensor_shapes(o: usize, l: usize, m: usize, cols: usize) -> [Vec<usize>; 12] {
    [
        vec![m, cols],
        vec![m],
        vec![l, m],
        vec![l],
        vec![m, l],
        vec![m],
        vec![m, m],
        vec![m],
        vec![l, m],
        vec![l],
        vec![o, l],
        vec![o],
    ]
}
