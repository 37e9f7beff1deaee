//! Prints the work-precision table recorded in `docs/benchmarks.md`:
//! `cargo run --release -p ode-benches --bin work-precision`.

use ode_benches::*;
use ode_core::{Method, Scalar, Solver, VectorField};
use std::time::Instant;

fn row<T: Scalar, F: VectorField<T>>(
    case: &str,
    method: Method,
    knob: String,
    field: &mut F,
    ts: &[f64],
    y0: &[f64],
    reference: &[f64],
    repeats: usize,
) {
    let dt = ts[1] - ts[0];
    let (rtol, steps) = if method.tableau().is_adaptive() {
        (knob.parse().unwrap(), 1)
    } else {
        (0.0, knob.parse().unwrap())
    };
    let mut solver = Solver::<T>::new(method, options::<T>(method, rtol, steps, dt)).unwrap();
    let tst: Vec<T> = ts.iter().map(|&t| T::c(t)).collect();
    let y0t: Vec<T> = y0.iter().map(|&v| T::c(v)).collect();
    match measure(&mut solver, field, &tst, &y0t, reference, repeats) {
        Ok(p) => println!(
            "| {case} | {} | {knob} | {:.2e} | {} | {:.3} |",
            method.name(),
            p.error,
            p.nfe,
            p.seconds * 1e3
        ),
        Err(e) => {
            let what = e.to_string();
            let short = what.split(':').next().unwrap_or("");
            println!("| {case} | {} | {knob} | diverged ({short}) | | |", method.name());
        }
    }
}

fn study<T: Scalar, F: VectorField<T>>(
    case: &str,
    field: &mut F,
    ts: &[f64],
    y0: &[f64],
    reference: &[f64],
    repeats: usize,
) {
    for m in ADAPTIVE {
        for rtol in RTOLS {
            row::<T, F>(case, m, format!("{rtol:e}"), field, ts, y0, reference, repeats);
        }
    }
    for m in FIXED {
        for steps in STEPS_PER_INTERVAL {
            row::<T, F>(case, m, steps.to_string(), field, ts, y0, reference, repeats);
        }
    }
}

fn main() {
    let only_flops = std::env::args().any(|a| a == "--flops");
    if !only_flops {
        study_all();
    }
    flops();
}

fn study_all() {
    println!(
        "| problem | solver | rtol (adaptive) or steps per output interval (fixed) | max abs error | NFE | ms per solve |"
    );
    println!("|---|---|---|---|---|---|");
    let (lv, ts, y0) = lotka_volterra();
    let lv_ref = reference(&mut lv.field::<f64>(), &ts, &y0);
    study::<f64, _>("lotka-volterra f64", &mut lv.field::<f64>(), &ts, &y0, &lv_ref, 21);
    for batch in [16usize, 1024] {
        let (mlp, y0) = mlp_case(batch, 32, 64, 7);
        let ts = output_times(1.2);
        let reference = reference(&mut mlp.clone(), &ts, &y0);
        let mut field = mlp_as::<f32>(&mlp);
        study::<f32, _>(
            &format!("mlp 32/64 batch {batch} f32"),
            &mut field,
            &ts,
            &y0,
            &reference,
            if batch > 100 { 5 } else { 21 },
        );
    }
}

/// Achieved GFLOP/s of the batched MLP field at batch 1024 (forward pass and VJP, f32).
fn flops() {
    println!();
    for (l, m) in [(32usize, 64usize), (64, 128), (128, 256)] {
        let (mlp, y0) = mlp_case(1024, l, m, 3);
        let mut f = mlp_as::<f32>(&mlp);
        let y: Vec<f32> = y0.iter().map(|&v| v as f32).collect();
        let t = vec![0.0f32; 1024];
        let mut dy = vec![0.0f32; y.len()];
        let v = vec![1.0f32; y.len()];
        let mut gy = vec![0.0f32; y.len()];
        let mut gp = vec![0.0f32; f.num_params()];
        for _ in 0..50 {
            f.eval(&t, &y, &mut dy);
        }
        let iters = 2000;
        let start = Instant::now();
        for _ in 0..iters {
            f.eval(&t, &y, &mut dy);
        }
        let fwd = start.elapsed().as_secs_f64() / iters as f64;
        let start = Instant::now();
        for _ in 0..iters / 2 {
            f.vjp(&y, &v, None, &mut gy, Some(&mut gp));
        }
        let bwd = start.elapsed().as_secs_f64() / (iters / 2) as f64;
        let flops = f.forward_flops(1024) as f64;
        println!(
            "MLP latent {l} hidden {m}, batch 1024, f32: forward {:.1} µs = {:.1} GFLOP/s; vjp (state + params) {:.1} µs = {:.1} GFLOP/s",
            fwd * 1e6,
            flops / fwd / 1e9,
            bwd * 1e6,
            3.0 * flops / bwd / 1e9
        );
    }
}
