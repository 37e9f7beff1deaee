//! CPU-vs-GPU workloads: a batched dopri5 solve of the reference MLP field, and a full training
//! step (encoder, solve, decoder, loss, adjoint backward, encoder backward) of the reference
//! model. The CPU splits the batch across all cores as the trainer does; the GPU runs it whole.
//! Used by the criterion bench `gpu_vs_cpu` and by `cargo run --release -p ode-benches --bin gpu-table`.

use crate::{SplitMix, mlp_case, output_times};
use ode_core::{Method, Mlp, SolveOptions, Solver};
use ode_gpu::{GpuContext, GpuSolver};
use ode_train::{ModelConfig, NeuralOdeModel, Workspace};
use std::sync::Arc;

/// Field sizes of the study: (latent, hidden).
pub const SIZES: [(usize, usize); 2] = [(32, 64), (64, 128)];
/// Batch sizes of the study.
pub const BATCHES: [usize; 5] = [16, 256, 4096, 16384, 65536];

/// The solver options of the study: the tuning guide's defaults (rtol 1e-4, atol 1e-5).
pub fn options() -> SolveOptions<f32> {
    SolveOptions::default().rtol(1e-4).atol(1e-5)
}

/// One batched solve: the field, the initial states and the output times, with a CPU lane per
/// core and a GPU solver built once.
pub struct SolveCase {
    /// Samples.
    pub batch: usize,
    ts: Vec<f32>,
    y0: Vec<f32>,
    lanes: Vec<(Mlp<f32>, Solver<f32>, Vec<f32>)>,
    gpu: Option<(GpuSolver, Vec<f32>)>,
}

/// Worker threads for a batch: all cores, but at least 8 rows each.
fn threads_for(batch: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(batch.div_ceil(8)).max(1)
}

impl SolveCase {
    /// A case of `batch` samples of an MLP field of the given size (seeded).
    pub fn new(latent: usize, hidden: usize, batch: usize, gpu: Option<&Arc<GpuContext>>) -> Self {
        let (mlp, y0) = mlp_case(batch, latent, hidden, 7);
        let p32: Vec<f32> = mlp.params().iter().map(|&v| v as f32).collect();
        let ts: Vec<f32> = output_times(1.2).iter().map(|&t| t as f32).collect();
        let y0: Vec<f32> = y0.iter().map(|&v| v as f32).collect();
        let threads = threads_for(batch);
        let lanes = (0..threads)
            .map(|_| {
                (
                    Mlp::with_params(latent, hidden, p32.clone()),
                    Solver::new(Method::Dopri5, options()).expect("options"),
                    Vec::new(),
                )
            })
            .collect();
        let gpu = gpu.map(|ctx| {
            let s = GpuSolver::new(ctx.clone(), Method::Dopri5, options(), latent, hidden, p32.clone())
                .expect("gpu solver");
            (s, vec![0.0f32; ts.len() * y0.len()])
        });
        Self {
            batch,
            ts,
            y0,
            lanes,
            gpu,
        }
    }

    /// Solves on the CPU (all lanes in parallel).
    pub fn run_cpu(&mut self) {
        let l = self.y0.len() / self.batch;
        let per = self.batch.div_ceil(self.lanes.len());
        let (ts, y0) = (&self.ts, &self.y0);
        std::thread::scope(|s| {
            for (i, (f, solver, out)) in self.lanes.iter_mut().enumerate() {
                let (lo, hi) = (i * per, ((i + 1) * per).min(self.batch));
                if lo >= hi {
                    continue;
                }
                s.spawn(move || {
                    out.resize(ts.len() * (hi - lo) * l, 0.0);
                    solver.solve_into(f, ts, &y0[lo * l..hi * l], out).expect("cpu solve");
                });
            }
        });
    }

    /// Solves on the GPU.
    pub fn run_gpu(&mut self) {
        let (g, out) = self.gpu.as_mut().expect("gpu");
        g.solve_into(&self.ts, &self.y0, out).expect("gpu solve");
    }

    /// GPU counters so far (submissions, kernel seconds when profiling).
    pub fn gpu_counters(&self) -> ode_gpu::GpuCounters {
        self.gpu.as_ref().map(|g| g.0.counters()).unwrap_or_default()
    }

    /// Turns on kernel timing of the GPU solves (false where unsupported).
    pub fn set_profiling(&mut self, on: bool) -> bool {
        self.gpu.as_mut().is_some_and(|g| g.0.set_profiling(on))
    }
}

/// One full training step of the reference model on a batch of random windows.
pub struct TrainCase {
    /// Samples (windows).
    pub batch: usize,
    model: NeuralOdeModel<f32>,
    ctx: Vec<f32>,
    tgt: Vec<f32>,
    lanes: Vec<(Workspace<f32>, Vec<f32>)>,
    gpu: Option<(Workspace<f32>, Vec<f32>)>,
}

impl TrainCase {
    /// A case of `batch` windows for a model with the given field size (five input channels,
    /// the contract's context 24 and horizon 12, dopri5, adjoint).
    pub fn new(latent: usize, hidden: usize, batch: usize, gpu: Option<&Arc<GpuContext>>) -> Self {
        let config = ModelConfig {
            latent_dim: latent,
            hidden_dim: hidden,
            ..ModelConfig::default()
        };
        let mut rng = SplitMix(11);
        let model = NeuralOdeModel::<f32>::new(config.clone(), || rng.uniform()).expect("model");
        let cw = config.context_len * config.input_dim;
        let tw = config.horizon * config.outputs();
        let ctx = (0..batch * cw).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect();
        let tgt = (0..batch * tw).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect();
        let n = model.num_params();
        let lanes = (0..threads_for(batch))
            .map(|_| (Workspace::new(&model).expect("workspace"), vec![0.0; n]))
            .collect();
        let gpu = gpu.map(|c| {
            (
                Workspace::with_gpu(&model, c.clone()).expect("gpu workspace"),
                vec![0.0; n],
            )
        });
        Self {
            batch,
            model,
            ctx,
            tgt,
            lanes,
            gpu,
        }
    }

    /// Loss and gradient on the CPU (all lanes in parallel, as the trainer splits a batch).
    pub fn run_cpu(&mut self) {
        let c = self.model.config();
        let (cw, tw) = (c.context_len * c.input_dim, c.horizon * c.outputs());
        let per = self.batch.div_ceil(self.lanes.len());
        let denom = self.batch * tw;
        let (model, ctx, tgt, batch) = (&self.model, &self.ctx, &self.tgt, self.batch);
        std::thread::scope(|s| {
            for (i, (ws, grad)) in self.lanes.iter_mut().enumerate() {
                let (lo, hi) = (i * per, ((i + 1) * per).min(batch));
                if lo >= hi {
                    continue;
                }
                s.spawn(move || {
                    grad.fill(0.0);
                    model
                        .loss_and_grad(ws, &ctx[lo * cw..hi * cw], &tgt[lo * tw..hi * tw], denom, grad)
                        .expect("cpu step");
                });
            }
        });
    }

    /// GPU counters so far (submissions, kernel seconds when profiling).
    pub fn gpu_counters(&self) -> ode_gpu::GpuCounters {
        self.gpu.as_ref().and_then(|g| g.0.gpu_counters()).unwrap_or_default()
    }

    /// Turns on kernel timing of the GPU solves (false where unsupported).
    pub fn set_profiling(&mut self, on: bool) -> bool {
        self.gpu.as_mut().is_some_and(|g| g.0.set_gpu_profiling(on))
    }

    /// Loss and gradient with the solves on the GPU.
    pub fn run_gpu(&mut self) {
        let c = self.model.config();
        let denom = self.batch * c.horizon * c.outputs();
        let (ws, grad) = self.gpu.as_mut().expect("gpu");
        grad.fill(0.0);
        self.model
            .loss_and_grad(ws, &self.ctx, &self.tgt, denom, grad)
            .expect("gpu step");
    }
}
