//! Cross-crate tests of the workspace (in `tests/`): GPU against the CPU reference, f32 against
//! f64, end-to-end runs. Helpers shared by the test files live here.

use std::sync::Arc;

/// A GPU context for tests, or `None` with a loud message where no adapter exists.
///
/// # Panics
/// Where no adapter exists and `ODE_REQUIRE_GPU=1` (CI sets it, with lavapipe installed), or
/// where an adapter exists but the context cannot be built.
pub fn gpu_or_skip(test: &str) -> Option<Arc<ode_gpu::GpuContext>> {
    match ode_gpu::GpuContext::new() {
        Ok(ctx) => {
            eprintln!("{test}: running on {}", ctx.adapter_name());
            Some(Arc::new(ctx))
        }
        Err(ode_gpu::GpuError::NoAdapter) => {
            if std::env::var("ODE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("{test}: ODE_REQUIRE_GPU=1 but no GPU adapter exists (install mesa-vulkan-drivers)");
            }
            eprintln!("\n!!! SKIPPED {test}: no GPU adapter (install mesa-vulkan-drivers for lavapipe) !!!\n");
            None
        }
        Err(e) => panic!("{test}: GPU context failed: {e}"),
    }
}

/// A deterministic uniform draw in [0, 1) (SplitMix64), for seeded weights and states.
pub fn splitmix(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Seeded PyTorch-style field weights (uniform in ±scale/sqrt(fan_in)).
pub fn seeded_mlp(latent: usize, hidden: usize, seed: u64, scale: f64) -> ode_core::Mlp<f64> {
    let mut s = seed;
    ode_core::Mlp::<f64>::new(latent, hidden, |fan_in| {
        scale * (2.0 * splitmix(&mut s) - 1.0) / (fan_in as f64).sqrt()
    })
}

/// `n` seeded values uniform in [-amp, amp].
pub fn seeded_values(n: usize, seed: u64, amp: f64) -> Vec<f64> {
    let mut s = seed;
    (0..n).map(|_| amp * (2.0 * splitmix(&mut s) - 1.0)).collect()
}

/// f64 → f32.
pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Largest `|a - b| / (atol + rtol·|b|)` over two equal-length slices (NaN counts as infinite).
pub fn worst_ratio(a: &[f32], b: &[f64], rtol: f64, atol: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let r = (x as f64 - y).abs() / (atol + rtol * y.abs());
            if r.is_nan() { f64::INFINITY } else { r }
        })
        .fold(0.0, f64::max)
}
