//! `ode solve`: a built-in problem with any solver; the solution table and statistics.

use clap::Parser;
use ode_core::{Method, Problem, Scalar, SolveOptions, Solver, StepMode};
use serde::Serialize;

/// Arguments of `ode solve`.
#[derive(Parser, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SolveArgs {
    /// Built-in problem: exp-decay, harmonic, lotka-volterra or van-der-pol.
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
    /// Floating-point precision: f32 or f64.
    #[arg(long, default_value = "f64")]
    precision: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct SolveOutput {
    problem: String,
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
    let problem: Problem = args.problem.parse()?;
    let method: Method = args.solver.parse()?;
    let step_mode: StepMode = args.step_mode.parse()?;
    if args.n_out == 0 {
        return Err("--n-out must be at least 1".into());
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
    let ts: Vec<f64> = (0..=args.n_out)
        .map(|i| args.t_start + (t_end - args.t_start) * i as f64 / args.n_out as f64)
        .collect();
    let out = match args.precision.as_str() {
        "f64" => run::<f64>(problem, method, step_mode, args, &ts, &y0)?,
        "f32" => run::<f32>(problem, method, step_mode, args, &ts, &y0)?,
        other => return Err(format!("--precision must be f32 or f64, got '{other}'").into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
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
        solver: method.name().into(),
        precision: args.precision.clone(),
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

fn print_table(out: &SolveOutput) {
    println!(
        "{} with {} ({}), rtol {:e}, atol {:e}",
        out.problem, out.solver, out.precision, out.rtol, out.atol
    );
    print!("{:>12}", "t");
    for c in &out.components {
        print!(" {c:>16}");
    }
    println!();
    for (t, y) in out.ts.iter().zip(&out.ys) {
        print!("{t:>12.6}");
        for v in y {
            print!(" {v:>16.9}");
        }
        println!();
    }
    println!();
    println!("function evaluations (nfe): {}", out.nfe);
    println!("accepted steps:             {}", out.accepted_steps);
    println!("rejected steps:             {}", out.rejected_steps);
    if let Some(e) = out.exact_max_abs_error {
        println!("max abs error vs exact:     {e:.3e}");
    }
}
