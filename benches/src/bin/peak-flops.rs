//! Measures this machine's single-core peak f32 throughput with independent AVX2 FMA chains,
//! the yardstick `docs/benchmarks.md` compares the MLP field against:
//! `cargo run --release -p ode-benches --bin peak-flops`.

use std::time::Instant;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
fn fma_chains(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // 12 independent accumulators hide the FMA latency on two FMA pipes.
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut out = [0.0f32; 8];
    let mut sum = _mm256_set1_ps(0.0);
    for x in acc {
        sum = _mm256_add_ps(sum, x);
    }
    // SAFETY: `out` has room for the 8 lanes.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    out.iter().sum()
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            println!("this CPU lacks AVX2+FMA; no peak measured");
            return;
        }
        let iters = 200_000_000u64;
        let mut best = f64::INFINITY;
        let mut sink = 0.0f32;
        for _ in 0..3 {
            let start = Instant::now();
            // SAFETY: AVX2 and FMA were detected above.
            #[allow(unsafe_code)]
            {
                sink += unsafe { fma_chains(iters) };
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        let flops = iters as f64 * 12.0 * 8.0 * 2.0;
        println!(
            "single-core f32 FMA peak: {:.1} GFLOP/s (checksum {sink})",
            flops / best / 1e9
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("peak measurement is implemented for x86_64 only");
}
