//! `ode solve`: a built-in problem with any solver; the solution table and statistics.

use crate::out::{out, outln};
use clap::Parser;
use ode_core::{Method, Mlp, Problem, Scalar, SolveOptions, Solver, StepMode};
use serde::Serialize;

/// Arguments of `ode solve`.
#[derive(Parser, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SolveArgs {
    /// Built-in problem: exp-decay, harmonic, lotka-volterra, van-der-pol, or mlp (the Neural ODE
    /// field of the reference model with seeded random weights, on a batch of --batch samples;
    /// the only problem the GPU runs).
    #[arg(long, default_value = "lotka-volterra")]
    problem: String,
    /// Solver: euler, midpoint, heun2, rk4 (3/8 rule), rk4_classic, bosh3, dopri5, tsit5.
    #[arg(long, default_value = "dopri5")]
    solver: String,
    /// Relative tolerance (adaptive solvers).
    #[arg(long, default_value_t = 1e-6)]
    rtol: f64,
    /// Absolute tolerance (adaptive solvers).
    #[arg(long, default_value_t = 1e-8)]
    atol: f64,
    /// Final time (default: the problem's own).
    #[arg(long)]
    t_end: Option<f64>,
    /// Start time.
    #[arg(long, default_value_t = 0.0)]
    t_start: f64,
    /// Number of output intervals between the start and the final time.
    #[arg(long, default_value_t = 10)]
    n_out: usize,
    /// Initial state, comma separated (default: the problem's own).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    y0: Option<Vec<f64>>,
    /// Step size of fixed-step solvers (default: one step per output interval).
    #[arg(long)]
    step_size: Option<f64>,
    /// Batch step mode: shared or per_sample.
    #[arg(long, default_value = "per_sample")]
    step_mode: String,
    /// Floating-point precision: f32 or f64 (default f64 on the CPU, f32 on the GPU).
    #[arg(long)]
    precision: Option<String>,
    /// Where to solve: cpu, gpu or auto (GPU when an adapter exists). The GPU solves the mlp
    /// problem, in f32, with per-sample steps.
    #[arg(long, value_enum, default_value = "cpu")]
    device: ode_train::Device,
    /// mlp problem: latent size.
    #[arg(long, default_value_t = 32)]
    latent: usize,
    /// mlp problem: hidden size.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// mlp problem: samples in the batch (random initial states in [-1, 1] unless --y0).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// mlp problem: seed of the weights and initial states.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct SolveOutput {
    problem: String,
    device: String,
    batch: usize,
    solver: String,
    precision: String,
    rtol: f64,
    atol: f64,
    components: Vec<String>,
    ts: Vec<f64>,
    ys: Vec<Vec<f64>>,
    exact_max_abs_error: Option<f64>,
    nfe: usize,
    accepted_steps: usize,
    rejected_steps: usize,
}

pub fn solve(args: &SolveArgs) -> Result<(), Box<dyn std::error::Error>> {
    let method: Method = args.solver.parse()?;
    let step_mode: StepMode = args.step_mode.parse()?;
    if args.n_out == 0 {
        return Err("--n-out must be at least 1".into());
    }
    if args.problem == "mlp" {
        let out = run_mlp(method, step_mode, args)?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print_table(&out);
        }
        return Ok(());
    }
    let problem: Problem = args.problem.parse()?;
    if args.device != ode_train::Device::Cpu {
        return Err(format!(
            "--device {} runs the Neural ODE field only: use --problem mlp (the built-in problem {} runs on the CPU)",
            args.device, problem
        )
        .into());
    }
    let t_end = args.t_end.unwrap_or(problem.t_end());
    let y0 = args.y0.clone().unwrap_or_else(|| problem.y0());
    if y0.len() != problem.dim() {
        return Err(format!(
            "--y0 has {} values but problem {} has dimension {}",
            y0.len(),
            problem,
            problem.dim()
        )
        .into());
    }
    let ts = output_times(args, t_end);
    let out = match args.precision.as_deref().unwrap_or("f64") {
        "f64" => run::<f64>(problem, method, step_mode, args, &ts, &y0)?,
        "f32" => run::<f32>(problem, method, step_mode, args, &ts, &y0)?,
        other => return Err(format!("--precision must be f32 or f64, got '{other}'").into()),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&out);
    }
    Ok(())
}

fn run<T: Scalar>(
    problem: Problem,
    method: Method,
    step_mode: StepMode,
    args: &SolveArgs,
    ts: &[f64],
    y0: &[f64],
) -> Result<SolveOutput, Box<dyn std::error::Error>> {
    let mut opts = SolveOptions::<T>::default()
        .rtol(T::c(args.rtol))
        .atol(T::c(args.atol))
        .step_mode(step_mode);
    if let Some(h) = args.step_size {
        opts = opts.step_size(T::c(h));
    }
    let mut solver = Solver::new(method, opts)?;
    let tst: Vec<T> = ts.iter().map(|&t| T::c(t)).collect();
    let y0t: Vec<T> = y0.iter().map(|&v| T::c(v)).collect();
    let sol = solver.solve(&mut problem.field::<T>(), &tst, &y0t)?;
    let ys: Vec<Vec<f64>> = (0..ts.len())
        .map(|k| sol.y(k, 0).iter().map(|v| v.f64()).collect())
        .collect();
    let exact_max_abs_error = (0..ts.len())
        .map(|k| {
            problem
                .exact(ts[k] - ts[0], y0)
                .map(|e| e.iter().zip(&ys[k]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max))
        })
        .try_fold(0.0f64, |acc, e| e.map(|e| acc.max(e)));
    Ok(SolveOutput {
        problem: problem.name().into(),
        device: "cpu".into(),
        batch: 1,
        solver: method.name().into(),
        precision: args.precision.clone().unwrap_or_else(|| "f64".into()),
        rtol: args.rtol,
        atol: args.atol,
        components: problem.components().iter().map(|s| s.to_string()).collect(),
        ts: ts.to_vec(),
        ys,
        exact_max_abs_error,
        nfe: sol.stats.nfe,
        accepted_steps: sol.stats.accepted,
        rejected_steps: sol.stats.rejected,
    })
}

/// The output times of a run: `n_out` intervals from `t_start` to `t_end`.
fn output_times(args: &SolveArgs, t_end: f64) -> Vec<f64> {
    (0..=args.n_out)
        .map(|i| args.t_start + (t_end - args.t_start) * i as f64 / args.n_out as f64)
        .collect()
}

/// `ode solve --problem mlp`: the reference-model field with seeded weights on a batch, on the
/// CPU (ode-core) or the GPU (ode-gpu). Prints sample 0 and the statistics of the whole batch.
fn run_mlp(method: Method, step_mode: StepMode, args: &SolveArgs) -> Result<SolveOutput, Box<dyn std::error::Error>> {
    let (l, m, batch) = (args.latent, args.hidden, args.batch);
    if l == 0 || m == 0 || batch == 0 {
        return Err("--latent, --hidden and --batch must be at least 1".into());
    }
    let ts = output_times(args, args.t_end.unwrap_or(1.0));
    let mut state = args.seed;
    let mut draw = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        2.0 * (((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64) - 1.0
    };
    // PyTorch's default Linear initialisation: uniform in ±1/sqrt(fan_in).
    let mlp = Mlp::<f64>::new(l, m, |fan_in| draw() / (fan_in as f64).sqrt());
    let y0: Vec<f64> = match &args.y0 {
        Some(v) if v.len() == l => v.iter().copied().cycle().take(batch * l).collect(),
        Some(v) => return Err(format!("--y0 has {} values but --latent is {l}", v.len()).into()),
        None => (0..batch * l).map(|_| draw()).collect(),
    };
    let gpu = args.device.open()?;
    let precision = args
        .precision
        .clone()
        .unwrap_or_else(|| if gpu.is_some() { "f32" } else { "f64" }.into());
    let (ys, stats, device) = match (&gpu, precision.as_str()) {
        (Some(ctx), "f32") => {
            let mut opts = SolveOptions::<f32>::default()
                .rtol(args.rtol as f32)
                .atol(args.atol as f32)
                .step_mode(step_mode);
            if let Some(h) = args.step_size {
                opts = opts.step_size(h as f32);
            }
            let params = mlp.params().iter().map(|&v| v as f32).collect();
            let mut solver = ode_gpu::GpuSolver::new(ctx.clone(), method, opts, l, m, params)?;
            let ts32: Vec<f32> = ts.iter().map(|&t| t as f32).collect();
            let y032: Vec<f32> = y0.iter().map(|&v| v as f32).collect();
            let mut out = vec![0.0f32; ts.len() * y0.len()];
            let rep = solver.solve_into(&ts32, &y032, &mut out)?;
            let ys = out.iter().map(|&v| v as f64).collect::<Vec<_>>();
            (ys, rep.stats, format!("gpu: {}", ctx.adapter_name()))
        }
        (Some(_), other) => {
            return Err(format!("the GPU solves in f32; got --precision {other} (use f32 or --device cpu)").into());
        }
        (None, "f64") => {
            let (ys, st) = cpu_batch::<f64>(&mlp, method, step_mode, args, &ts, &y0)?;
            (ys, st, "cpu".into())
        }
        (None, "f32") => {
            let (ys, st) = cpu_batch::<f32>(&mlp, method, step_mode, args, &ts, &y0)?;
            (ys, st, "cpu".into())
        }
        (None, other) => return Err(format!("--precision must be f32 or f64, got '{other}'").into()),
    };
    let w = batch * l;
    Ok(SolveOutput {
        problem: "mlp".into(),
        device,
        batch,
        solver: method.name().into(),
        precision,
        rtol: args.rtol,
        atol: args.atol,
        components: (0..l).map(|i| format!("z{i}")).collect(),
        ts: ts.clone(),
        ys: (0..ts.len()).map(|k| ys[k * w..k * w + l].to_vec()).collect(),
        exact_max_abs_error: None,
        nfe: stats.nfe,
        accepted_steps: stats.accepted,
        rejected_steps: stats.rejected,
    })
}

/// The mlp problem on the CPU reference solver in precision `T`.
fn cpu_batch<T: Scalar>(
    mlp: &Mlp<f64>,
    method: Method,
    step_mode: StepMode,
    args: &SolveArgs,
    ts: &[f64],
    y0: &[f64],
) -> Result<(Vec<f64>, ode_core::Stats), Box<dyn std::error::Error>> {
    let mut opts = SolveOptions::<T>::default()
        .rtol(T::c(args.rtol))
        .atol(T::c(args.atol))
        .step_mode(step_mode);
    if let Some(h) = args.step_size {
        opts = opts.step_size(T::c(h));
    }
    let mut f = Mlp::<T>::with_params(
        mlp.latent(),
        mlp.hidden(),
        mlp.params().iter().map(|&v| T::c(v)).collect(),
    );
    let tst: Vec<T> = ts.iter().map(|&t| T::c(t)).collect();
    let y0t: Vec<T> = y0.iter().map(|&v| T::c(v)).collect();
    let mut out = vec![T::zero(); ts.len() * y0.len()];
    let rep = Solver::new(method, opts)?.solve_into(&mut f, &tst, &y0t, &mut out)?;
    Ok((out.iter().map(|v| v.f64()).collect(), rep.stats))
}

fn print_table(out: &SolveOutput) {
    outln!(
        "{} with {} ({}) on {}, batch {}, rtol {:e}, atol {:e}",
        out.problem,
        out.solver,
        out.precision,
        out.device,
        out.batch,
        out.rtol,
        out.atol
    );
    if out.batch > 1 {
        outln!("sample 0 of {}:", out.batch);
    }
    out!("{:>12}", "t");
    for c in &out.components {
        out!(" {c:>16}");
    }
    outln!();
    for (t, y) in out.ts.iter().zip(&out.ys) {
        out!("{t:>12.6}");
        for v in y {
            out!(" {v:>16.9}");
        }
        outln!();
    }
    outln!();
    outln!("function evaluations (nfe): {}", out.nfe);
    outln!("accepted steps:             {}", out.accepted_steps);
    outln!("rejected steps:             {}", out.rejected_steps);
    if let Some(e) = out.exact_max_abs_error {
        outln!("max abs error vs exact:     {e:.3e}");
    }
}
