//! Work-precision benchmarks: time per solve for each solver and tolerance (or step count) on
//! Lotka-Volterra and on the batched MLP field (batch 16 and 1024, latent 32, hidden 64, tanh),
//! plus the MLP field's forward and VJP throughput. Errors and NFE for the same points are printed
//! by `cargo run --release -p ode-benches --bin work-precision`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ode_benches::*;
use ode_core::{Method, Scalar, Solver, VectorField};
use std::hint::black_box;

fn bench_case<T: Scalar, F: VectorField<T>>(c: &mut Criterion, name: &str, field: &mut F, ts: &[f64], y0: &[f64]) {
    let mut g = c.benchmark_group(name);
    g.sample_size(20);
    let tst: Vec<T> = ts.iter().map(|&t| T::c(t)).collect();
    let y0t: Vec<T> = y0.iter().map(|&v| T::c(v)).collect();
    let mut out = vec![T::zero(); tst.len() * y0t.len()];
    let dt = ts[1] - ts[0];
    let mut points: Vec<(Method, String, f64, usize)> = Vec::new();
    for m in ADAPTIVE {
        for rtol in [1e-3, 1e-5] {
            points.push((m, format!("rtol={rtol:e}"), rtol, 1));
        }
    }
    for m in FIXED {
        for steps in [32, 128] {
            points.push((m, format!("steps={steps}"), 0.0, steps));
        }
    }
    for (m, label, rtol, steps) in points {
        let mut solver = Solver::<T>::new(m, options::<T>(m, rtol, steps, dt)).unwrap();
        g.bench_function(BenchmarkId::new(m.name(), label), |b| {
            b.iter(|| {
                solver
                    .solve_into(field, black_box(&tst), black_box(&y0t), &mut out)
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn work_precision(c: &mut Criterion) {
    let (lv, ts, y0) = lotka_volterra();
    bench_case::<f64, _>(c, "lotka-volterra-f64", &mut lv.field::<f64>(), &ts, &y0);
    for batch in [16usize, 1024] {
        let (mlp, y0) = mlp_case(batch, 32, 64, 7);
        bench_case::<f32, _>(
            c,
            &format!("mlp-32x64-b{batch}-f32"),
            &mut mlp_as::<f32>(&mlp),
            &output_times(1.2),
            &y0,
        );
    }
}

fn mlp_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("mlp-field-f32");
    for (l, m, batch) in [
        (32usize, 64usize, 16usize),
        (32, 64, 1024),
        (64, 128, 1024),
        (128, 256, 32),
        (128, 256, 1024),
    ] {
        let (mlp, y0) = mlp_case(batch, l, m, 3);
        let mut f = mlp_as::<f32>(&mlp);
        let y: Vec<f32> = y0.iter().map(|&v| v as f32).collect();
        let t = vec![0.0f32; batch];
        let mut dy = vec![0.0f32; y.len()];
        g.throughput(Throughput::Elements(f.forward_flops(batch)));
        g.bench_function(BenchmarkId::new("forward", format!("L{l}-M{m}-B{batch}")), |b| {
            b.iter(|| f.eval(&t, black_box(&y), &mut dy))
        });
        let mut gy = vec![0.0f32; y.len()];
        let mut gp = vec![0.0f32; f.num_params()];
        g.throughput(Throughput::Elements(3 * f.forward_flops(batch)));
        g.bench_function(BenchmarkId::new("vjp", format!("L{l}-M{m}-B{batch}")), |b| {
            b.iter(|| f.vjp(black_box(&y), black_box(&dy), None, &mut gy, Some(&mut gp)))
        });
    }
    g.finish();
}

criterion_group!(benches, work_precision, mlp_throughput);
criterion_main!(benches);
