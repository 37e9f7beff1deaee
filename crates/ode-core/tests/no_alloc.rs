//! The solver's inner loops allocate nothing: after a warm-up solve of the same shape, a repeated
//! `solve_into` performs no heap allocation except the returned report's per-sample statistics;
//! the MLP field and its VJP allocate nothing at all.

use ode_core::{Method, Mlp, Problem, SolveOptions, Solver, StepMode};

mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[test]
fn repeated_solves_allocate_nothing() {
    let (latent, hidden, batch) = (8, 16, 37);
    let mut k = 0u32;
    let mut mlp = Mlp::<f32>::new(latent, hidden, |fan_in| {
        k = k.wrapping_mul(1_103_515_245).wrapping_add(12345);
        ((k >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 / (fan_in as f32).sqrt()
    });
    // Different initial states per sample so per-sample mode really diverges (gather path).
    let y0: Vec<f32> = (0..batch * latent)
        .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let ts: Vec<f32> = (0..=12).map(|i| i as f32 * 0.1).collect();
    let mut out = vec![0.0f32; ts.len() * y0.len()];
    for mode in [StepMode::Shared, StepMode::PerSample] {
        for m in [Method::Euler, Method::Rk4, Method::Bosh3, Method::Dopri5, Method::Tsit5] {
            let mut solver = Solver::new(m, SolveOptions::default().rtol(1e-5).atol(1e-6).step_mode(mode)).unwrap();
            // A field without matrix products: the engine alone.
            let mut vdp = Problem::VanDerPol.field::<f32>();
            let y0v: Vec<f32> = (0..batch * 2).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
            let mut outv = vec![0.0f32; ts.len() * y0v.len()];
            solver.solve_into(&mut vdp, &ts, &y0v, &mut outv).unwrap();
            let before = counting::allocations();
            let rep = solver.solve_into(&mut vdp, &ts, &y0v, &mut outv).unwrap();
            let after = counting::allocations();
            assert_eq!(
                after - before,
                1,
                "{m} {mode}: allocations in a repeated solve besides the report"
            );
            assert!(rep.stats.nfe > 0);

            // The MLP field: nothing beyond the report either.
            solver.solve_into(&mut mlp, &ts, &y0, &mut out).unwrap();
            let before = counting::allocations();
            let rep = solver.solve_into(&mut mlp, &ts, &y0, &mut out).unwrap();
            let after = counting::allocations();
            assert_eq!(
                after - before,
                1,
                "{m} {mode}: allocations in a repeated MLP solve besides the report"
            );
            assert!(rep.stats.nfe > 0);
        }
    }
    // The VJP, too.
    let v = vec![1.0f32; y0.len()];
    let mut gy = vec![0.0f32; y0.len()];
    let mut gp = vec![0.0f32; mlp.num_params()];
    let mut f = vec![0.0f32; y0.len()];
    mlp.vjp(&y0, &v, None, &mut gy, Some(&mut gp));
    let before = counting::allocations();
    mlp.vjp(&y0, &v, None, &mut gy, Some(&mut gp));
    mlp.vjp(&y0, &v, Some(&mut f), &mut gy, Some(&mut gp));
    assert_eq!(counting::allocations() - before, 0, "MLP vjp allocated");
}
