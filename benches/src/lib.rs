//! Shared code of the benchmarks: the work-precision problems, their reference solutions, and
//! one timed solve, used by both the criterion benches (`cargo bench`) and the table printer
//! (`cargo run --release -p ode-benches --bin work-precision`).

pub mod gpu_cpu;

use ode_core::{Method, Mlp, Problem, Scalar, SolveOptions, Solver, StepMode, VectorField};
use std::time::Instant;

/// Adaptive methods and the tolerances (`rtol`; `atol = rtol / 10`) of the study.
pub const ADAPTIVE: [Method; 4] = [Method::Heun2, Method::Bosh3, Method::Dopri5, Method::Tsit5];
/// Fixed-step methods of the study.
pub const FIXED: [Method; 4] = [Method::Euler, Method::Midpoint, Method::Rk4, Method::Rk4Classic];
/// Relative tolerances of the study.
pub const RTOLS: [f64; 4] = [1e-3, 1e-4, 1e-5, 1e-6];
/// Steps per output interval of fixed-step methods.
pub const STEPS_PER_INTERVAL: [usize; 4] = [2, 8, 32, 128];

/// SplitMix64: a tiny seeded generator so benchmark inputs are reproducible without extra crates.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next uniform number in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seeded MLP field with PyTorch's default initialisation and a batch of initial states.
pub fn mlp_case(batch: usize, latent: usize, hidden: usize, seed: u64) -> (Mlp<f64>, Vec<f64>) {
    let mut rng = SplitMix(seed);
    // Weights a bit larger than the default init, so the dynamics are not nearly linear.
    let mlp = Mlp::new(latent, hidden, |fan_in| {
        (2.0 * rng.uniform() - 1.0) * 2.0 / (fan_in as f64).sqrt()
    });
    let y0 = (0..batch * latent).map(|_| 2.0 * rng.uniform() - 1.0).collect();
    (mlp, y0)
}

/// Converts an f64 MLP to another precision.
pub fn mlp_as<T: Scalar>(m: &Mlp<f64>) -> Mlp<T> {
    Mlp::with_params(m.latent(), m.hidden(), m.params().iter().map(|&v| T::c(v)).collect())
}

/// Output times `0, 0.1, …, 1.2` (the reference model's horizon of 12 at dt 0.1) scaled by `t_end / 1.2`.
pub fn output_times(t_end: f64) -> Vec<f64> {
    (0..=12).map(|k| t_end * k as f64 / 12.0).collect()
}

/// A reference solution in f64 with tsit5 at rtol 1e-13 (per-sample steps).
pub fn reference<F: VectorField<f64>>(field: &mut F, ts: &[f64], y0: &[f64]) -> Vec<f64> {
    let opts = SolveOptions::default()
        .rtol(1e-13)
        .atol(1e-14)
        .max_num_steps(10_000_000);
    Solver::new(Method::Tsit5, opts)
        .unwrap()
        .solve(field, ts, y0)
        .expect("reference solve")
        .ys
}

/// Solver options for a point of the study: `rtol` for adaptive methods (`atol = rtol/10`),
/// `steps` steps per output interval for fixed-step ones.
pub fn options<T: Scalar>(method: Method, rtol: f64, steps: usize, dt: f64) -> SolveOptions<T> {
    let o = SolveOptions::default()
        .step_mode(StepMode::Shared)
        .max_num_steps(10_000_000);
    if method.tableau().is_adaptive() {
        o.rtol(T::c(rtol)).atol(T::c(rtol / 10.0))
    } else {
        o.step_size(T::c(dt / steps as f64))
    }
}

/// One measured point: error against the reference, work, and time.
#[derive(Debug, Clone)]
pub struct Point {
    /// Max abs error over all outputs.
    pub error: f64,
    /// Batched field evaluations.
    pub nfe: usize,
    /// Median wall time of a solve, seconds.
    pub seconds: f64,
}

/// Solves `repeats` times and returns the error of the last solve and the median time, or the
/// solver's error where the method diverges at this step size.
pub fn measure<T: Scalar, F: VectorField<T>>(
    solver: &mut Solver<T>,
    field: &mut F,
    ts: &[T],
    y0: &[T],
    reference: &[f64],
    repeats: usize,
) -> Result<Point, ode_core::OdeError> {
    let mut out = vec![T::zero(); ts.len() * y0.len()];
    let mut times = Vec::with_capacity(repeats);
    let mut nfe = 0;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let rep = solver.solve_into(field, ts, y0, &mut out)?;
        times.push(start.elapsed().as_secs_f64());
        nfe = rep.stats.nfe;
    }
    times.sort_by(f64::total_cmp);
    let error = out
        .iter()
        .zip(reference)
        .map(|(a, b)| (a.f64() - b).abs())
        .fold(0.0, f64::max);
    Ok(Point {
        error,
        nfe,
        seconds: times[times.len() / 2],
    })
}

/// The Lotka-Volterra case: field, output times (to t = 12) and initial state.
pub fn lotka_volterra() -> (Problem, Vec<f64>, Vec<f64>) {
    (Problem::LotkaVolterra, output_times(12.0), Problem::LotkaVolterra.y0())
}
