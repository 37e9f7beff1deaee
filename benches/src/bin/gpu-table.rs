//! Prints the CPU-vs-GPU throughput table of docs/benchmarks.md: batched dopri5 solves and full
//! training steps of the reference model, batch 16 to 65,536, latent/hidden 32/64 and 64/128.
//!
//! `cargo run --release -p ode-benches --bin gpu-table [-- --max-batch N --min-seconds S]`
//!
//! Each point runs once to warm up (buffers, pipelines), then repeats until `--min-seconds`
//! (default 1) have passed, at least twice; the table shows samples per second. A last GPU run
//! with timestamp queries gives the share of its wall time spent inside kernels (where the
//! adapter has timestamps) and the number of queue submissions.

use ode_benches::gpu_cpu::{BATCHES, SIZES, SolveCase, TrainCase};
use std::sync::Arc;
use std::time::Instant;

fn time(min_seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut n = 0;
    while n < 2 || start.elapsed().as_secs_f64() < min_seconds {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() / n as f64
}

/// What the table needs of a GPU case.
trait GpuCase {
    fn run(&mut self);
    fn counters(&self) -> ode_gpu::GpuCounters;
    fn profile(&mut self, on: bool) -> bool;
}

impl GpuCase for SolveCase {
    fn run(&mut self) {
        self.run_gpu()
    }
    fn counters(&self) -> ode_gpu::GpuCounters {
        self.gpu_counters()
    }
    fn profile(&mut self, on: bool) -> bool {
        self.set_profiling(on)
    }
}

impl GpuCase for TrainCase {
    fn run(&mut self) {
        self.run_gpu()
    }
    fn counters(&self) -> ode_gpu::GpuCounters {
        self.gpu_counters()
    }
    fn profile(&mut self, on: bool) -> bool {
        self.set_profiling(on)
    }
}

/// One profiled GPU run: submissions and the share of wall time inside kernels.
fn profile(case: &mut impl GpuCase) -> (usize, String) {
    let on = case.profile(true);
    let before = case.counters();
    let start = Instant::now();
    case.run();
    let wall = start.elapsed().as_secs_f64();
    let after = case.counters();
    case.profile(false);
    let share = match (on, before.kernel_seconds, after.kernel_seconds) {
        (true, Some(a), Some(b)) => format!("{:.0} %", 100.0 * (b - a) / wall),
        _ => "n/a".into(),
    };
    (after.submits - before.submits, share)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let max_batch = arg("--max-batch").unwrap_or(65536.0) as usize;
    let min_seconds = arg("--min-seconds").unwrap_or(1.0);
    let gpu = match ode_gpu::GpuContext::new() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("no GPU: {e}");
            std::process::exit(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("GPU adapter: {}; CPU: {cores} cores", gpu.adapter_name());
    println!();
    println!(
        "| work | latent/hidden | batch | CPU samples/s | GPU samples/s | GPU/CPU | submits/call | time in kernels |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (latent, hidden) in SIZES {
        for &batch in BATCHES.iter().filter(|&&b| b <= max_batch) {
            let mut s = SolveCase::new(latent, hidden, batch, Some(&gpu));
            let cpu = time(min_seconds, || s.run_cpu());
            let g = time(min_seconds, || s.run_gpu());
            let (submits, share) = profile(&mut s);
            println!(
                "| solve dopri5 | {latent}/{hidden} | {batch} | {:.0} | {:.0} | {:.3}× | {submits} | {share} |",
                batch as f64 / cpu,
                batch as f64 / g,
                cpu / g
            );
        }
        for &batch in BATCHES.iter().filter(|&&b| b <= max_batch) {
            let mut t = TrainCase::new(latent, hidden, batch, Some(&gpu));
            let cpu = time(min_seconds, || t.run_cpu());
            let g = time(min_seconds, || t.run_gpu());
            let (submits, share) = profile(&mut t);
            println!(
                "| train step | {latent}/{hidden} | {batch} | {:.0} | {:.0} | {:.3}× | {submits} | {share} |",
                batch as f64 / cpu,
                batch as f64 / g,
                cpu / g
            );
        }
    }
}
