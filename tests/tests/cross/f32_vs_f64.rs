//! End to end through the public API: f32 solves of the batched MLP field (the precision the
//! trainer and the GPU use) agree with the f64 reference, for every method and both step modes.

use ode_core::{Method, Mlp, SolveOptions, Solver, StepMode};

fn splitmix(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn f32_mlp_solves_match_the_f64_reference() {
    let (latent, hidden, batch) = (8, 16, 33);
    let mut s = 42u64;
    let mlp64 = Mlp::<f64>::new(latent, hidden, |fan_in| {
        (2.0 * splitmix(&mut s) - 1.0) / (fan_in as f64).sqrt()
    });
    let mlp32 = Mlp::<f32>::with_params(latent, hidden, mlp64.params().iter().map(|&v| v as f32).collect());
    let y0: Vec<f64> = (0..batch * latent).map(|_| 2.0 * splitmix(&mut s) - 1.0).collect();
    let y032: Vec<f32> = y0.iter().map(|&v| v as f32).collect();
    let ts: Vec<f64> = (0..=12).map(|k| k as f64 * 0.1).collect();
    let ts32: Vec<f32> = ts.iter().map(|&v| v as f32).collect();
    for mode in [StepMode::Shared, StepMode::PerSample] {
        for m in Method::ALL {
            let o64 = SolveOptions::<f64>::default().rtol(1e-5).atol(1e-6).step_mode(mode);
            let o32 = SolveOptions::<f32>::default().rtol(1e-5).atol(1e-6).step_mode(mode);
            let r = Solver::new(m, o64)
                .unwrap()
                .solve(&mut mlp64.clone(), &ts, &y0)
                .unwrap();
            let g = Solver::new(m, o32)
                .unwrap()
                .solve(&mut mlp32.clone(), &ts32, &y032)
                .unwrap();
            let worst =
                r.ys.iter()
                    .zip(&g.ys)
                    .map(|(a, b)| (a - *b as f64).abs())
                    .fold(0.0, f64::max);
            // f32 round-off accumulated over the steps, plus the adaptive methods' own
            // tolerance-level differences when the f32 run takes slightly different steps.
            let bound = if m.tableau().is_adaptive() { 2e-4 } else { 2e-5 };
            assert!(worst < bound, "{m} {mode}: f32 vs f64 max abs difference {worst:e}");
        }
    }
}
