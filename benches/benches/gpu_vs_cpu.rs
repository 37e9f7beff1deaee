//! Criterion: batched dopri5 solves and full training steps of the reference model, CPU (all
//! cores) against the GPU (whatever adapter wgpu finds; on lavapipe this measures overhead, not
//! GPU speed). Batches 16…4096 by default; `ODE_BENCH_MAX_BATCH=65536` adds the larger ones.
//! The table in docs/benchmarks.md comes from `cargo run --release -p ode-benches --bin gpu-table`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ode_benches::gpu_cpu::{BATCHES, SIZES, SolveCase, TrainCase};
use std::sync::Arc;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let gpu = match ode_gpu::GpuContext::new() {
        Ok(ctx) => {
            eprintln!("GPU adapter: {}", ctx.adapter_name());
            Some(Arc::new(ctx))
        }
        Err(e) => {
            eprintln!("!!! no GPU ({e}): CPU only !!!");
            None
        }
    };
    let max_batch: usize = std::env::var("ODE_BENCH_MAX_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    for (latent, hidden) in SIZES {
        let mut g = c.benchmark_group(format!("solve_dopri5/L{latent}_H{hidden}"));
        g.sample_size(10).measurement_time(Duration::from_secs(3));
        for &batch in BATCHES.iter().filter(|&&b| b <= max_batch) {
            g.throughput(Throughput::Elements(batch as u64));
            let mut case = SolveCase::new(latent, hidden, batch, gpu.as_ref());
            g.bench_function(BenchmarkId::new("cpu", batch), |b| b.iter(|| case.run_cpu()));
            if gpu.is_some() {
                g.bench_function(BenchmarkId::new("gpu", batch), |b| b.iter(|| case.run_gpu()));
            }
        }
        g.finish();
        let mut g = c.benchmark_group(format!("train_step/L{latent}_H{hidden}"));
        g.sample_size(10).measurement_time(Duration::from_secs(3));
        for &batch in BATCHES.iter().filter(|&&b| b <= max_batch) {
            g.throughput(Throughput::Elements(batch as u64));
            let mut case = TrainCase::new(latent, hidden, batch, gpu.as_ref());
            g.bench_function(BenchmarkId::new("cpu", batch), |b| b.iter(|| case.run_cpu()));
            if gpu.is_some() {
                g.bench_function(BenchmarkId::new("gpu", batch), |b| b.iter(|| case.run_gpu()));
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
