//! The adjoint's memory does not grow with the number of solver steps; backprop's does.
//! Measured with a counting allocator: peak live heap bytes of the test's thread during the
//! backward pass.

use ode_core::{AdjointNorm, AdjointSolver, Method, Mlp, SolveOptions, Solver, Tape};

mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

fn setup(t_end: f64) -> (Mlp<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (l, m, b) = (4, 8, 8);
    let mut k = 1u64;
    let mut rnd = || {
        k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (k >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mlp = Mlp::new(l, m, |fan_in| rnd() * 1.5 / (fan_in as f64).sqrt());
    let y0: Vec<f64> = (0..b * l).map(|_| rnd()).collect();
    let ts = vec![0.0, t_end];
    let w: Vec<f64> = (0..2 * b * l).map(|_| rnd()).collect();
    (mlp, y0, ts, w)
}

/// (peak extra bytes during adjoint backward, peak extra bytes during taped forward+backprop, steps)
fn measure(t_end: f64) -> (usize, usize, usize) {
    let (mut mlp, y0, ts, w) = setup(t_end);
    let opts = SolveOptions::default().rtol(1e-8).atol(1e-8);
    let sol = Solver::new(Method::Dopri5, opts.clone())
        .unwrap()
        .solve(&mut mlp, &ts, &y0)
        .unwrap();
    let steps = sol.stats.accepted;
    let (mut gy, mut gp) = (vec![0.0; y0.len()], vec![0.0; mlp.num_params()]);
    let mut adj = AdjointSolver::new(Method::Dopri5, opts.clone(), AdjointNorm::Seminorm).unwrap();
    let base = counting::reset_peak();
    adj.backward(&mut mlp, &ts, &sol.ys, &w, &mut gy, &mut gp, &[]).unwrap();
    let adjoint_peak = counting::peak_above(base);
    drop(adj);

    let mut solver = Solver::new(Method::Dopri5, opts).unwrap();
    let mut tape = Tape::new();
    let mut out = vec![0.0; ts.len() * y0.len()];
    let base = counting::reset_peak();
    solver.solve_taped(&mut mlp, &ts, &y0, &mut out, &mut tape).unwrap();
    solver.backprop(&mut mlp, &tape, &w, &mut gy, &mut gp).unwrap();
    let backprop_peak = counting::peak_above(base);
    (adjoint_peak, backprop_peak, steps)
}

#[test]
fn adjoint_memory_is_independent_of_the_number_of_steps() {
    let (a1, b1, s1) = measure(1.0);
    let (a2, b2, s2) = measure(16.0);
    println!(
        "t_end 1: {s1} steps, adjoint {a1} B, backprop {b1} B; t_end 16: {s2} steps, adjoint {a2} B, backprop {b2} B"
    );
    assert!(s2 > 4 * s1, "the long solve must take many more steps ({s1} vs {s2})");
    assert_eq!(a1, a2, "adjoint peak memory changed with the number of steps");
    // Backprop keeps at least one state (4 × f64) per accepted step.
    assert!(
        b2 >= b1 + (s2 - s1) * 4 * 8,
        "backprop memory should grow with the steps: {b1} -> {b2}"
    );
}
