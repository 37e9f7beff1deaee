//! Runs one work-precision point N times (for callgrind's instruction counts):
//! `solve-loop METHOD RTOL|STEPS N [mlpB]` (Lotka-Volterra f64, or the MLP field f32 at batch B).
use ode_benches::*;
use ode_core::{Method, Scalar, Solver, VectorField};
use std::hint::black_box;

fn run<T: Scalar, F: VectorField<T>>(m: Method, x: f64, n: usize, field: &mut F, ts: &[f64], y0: &[f64]) {
    let ts: Vec<T> = ts.iter().map(|&t| T::c(t)).collect();
    let y0: Vec<T> = y0.iter().map(|&v| T::c(v)).collect();
    let (rtol, steps) = if x < 1.0 { (x, 1) } else { (0.0, x as usize) };
    let mut out = vec![T::zero(); ts.len() * y0.len()];
    let dt = (ts[1] - ts[0]).f64();
    let mut solver = Solver::<T>::new(m, options::<T>(m, rtol, steps, dt)).unwrap();
    for _ in 0..n {
        solver
            .solve_into(field, black_box(&ts), black_box(&y0), &mut out)
            .unwrap();
    }
    println!("{}", out[out.len() - 1].f64());
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let m: Method = a[1].parse().unwrap();
    let x: f64 = a[2].parse().unwrap();
    let n: usize = a[3].parse().unwrap();
    if let Some(b) = a.get(4).and_then(|s| s.strip_prefix("mlp")) {
        let (mlp, y0) = mlp_case(b.parse().unwrap(), 32, 64, 7);
        run::<f32, _>(m, x, n, &mut mlp_as::<f32>(&mlp), &output_times(1.2), &y0);
    } else {
        let (lv, ts, y0) = lotka_volterra();
        run::<f64, _>(m, x, n, &mut lv.field::<f64>(), &ts, &y0);
    }
}
