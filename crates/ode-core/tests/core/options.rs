//! Options that shape the step sequence: per-component tolerances, the PID controller,
//! step limits, first step, and fixed-step grids.

use ode_core::{FnField, Method, PidController, Problem, SolveOptions, Solver, StepMode};

fn harmonic_error(opts: SolveOptions<f64>) -> ([f64; 2], usize) {
    let p = Problem::Harmonic;
    let ts: Vec<f64> = (0..=8).map(|k| k as f64).collect();
    let sol = Solver::new(Method::Dopri5, opts)
        .unwrap()
        .solve(&mut p.field::<f64>(), &ts, &p.y0())
        .unwrap();
    let mut e = [0.0f64; 2];
    for k in 0..ts.len() {
        let ex = p.exact(ts[k], &p.y0()).unwrap();
        for i in 0..2 {
            e[i] = e[i].max((sol.y(k, 0)[i] - ex[i]).abs());
        }
    }
    (e, sol.stats.nfe)
}

#[test]
fn per_component_tolerances_equal_to_the_scalar_give_identical_results() {
    let (a, na) = harmonic_error(SolveOptions::default().rtol(1e-6).atol(1e-8));
    let (b, nb) = harmonic_error(SolveOptions::default().rtol(vec![1e-6, 1e-6]).atol(vec![1e-8, 1e-8]));
    assert_eq!((a, na), (b, nb));
}

#[test]
fn tightening_one_component_costs_more_work_and_lowers_the_error() {
    // Two decoupled decays: only the second component's tolerance is tightened.
    let mut f = FnField::new(2, |_t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = -y[0];
        dy[1] = -3.0 * y[1] + y[1].sin();
    });
    let ts = [0.0, 1.0, 2.0, 3.0];
    let run = |rtol: Vec<f64>, f: &mut dyn ode_core::VectorField<f64>| {
        let opts = SolveOptions::default()
            .rtol(rtol)
            .atol(vec![1e-12, 1e-12])
            .step_mode(StepMode::PerSample);
        Solver::new(Method::Dopri5, opts)
            .unwrap()
            .solve(f, &ts, &[1.0, 1.0])
            .unwrap()
    };
    let loose = run(vec![1e-3, 1e-3], &mut f);
    let tight = run(vec![1e-3, 1e-9], &mut f);
    assert!(
        tight.stats.nfe > loose.stats.nfe * 2,
        "{} vs {}",
        tight.stats.nfe,
        loose.stats.nfe
    );
    let exact0 = (-3.0f64).exp();
    assert!((tight.y(3, 0)[0] - exact0).abs() < (loose.y(3, 0)[0] - exact0).abs());
}

#[test]
fn pi_controller_meets_the_tolerance_with_different_steps() {
    let (ei, ni) = harmonic_error(SolveOptions::default().rtol(1e-7).atol(1e-9));
    let (ep, np) = harmonic_error(
        SolveOptions::default()
            .rtol(1e-7)
            .atol(1e-9)
            .controller(PidController::pi()),
    );
    assert_ne!(ni, np, "the PI controller should change the step sequence");
    for e in [ei, ep] {
        assert!(e[0] < 1e-6 && e[1] < 1e-6, "{e:?}");
    }
    // A tighter controller range forces more steps.
    let slow = PidController {
        max_factor: 1.2,
        ..PidController::default()
    };
    let (_, ns) = harmonic_error(SolveOptions::default().rtol(1e-7).atol(1e-9).controller(slow));
    assert!(ns > ni, "max_factor 1.2 took {ns} evaluations vs {ni}");
}

#[test]
fn max_step_bounds_the_step_and_first_step_is_used() {
    let (_, free) = harmonic_error(SolveOptions::default().rtol(1e-3).atol(1e-3));
    let (_, capped) = harmonic_error(SolveOptions::default().rtol(1e-3).atol(1e-3).max_step(0.01));
    // 8 time units at most 0.01 per step: at least 800 steps of 6 new evaluations each.
    assert!(capped >= 800 * 6, "capped {capped}, free {free}");
    let p = Problem::ExpDecay;
    let a = Solver::new(Method::Dopri5, SolveOptions::default().first_step(1e-6))
        .unwrap()
        .solve(&mut p.field::<f64>(), &[0.0, 1.0], &[1.0])
        .unwrap();
    let b = Solver::new(Method::Dopri5, SolveOptions::default())
        .unwrap()
        .solve(&mut p.field::<f64>(), &[0.0, 1.0], &[1.0])
        .unwrap();
    // No Hairer probe (2 evaluations fewer at the start), but a tiny first step to grow from.
    assert_ne!(a.stats.nfe, b.stats.nfe);
    assert!(a.stats.accepted > b.stats.accepted);
}

#[test]
fn fixed_step_methods_step_on_the_output_grid_by_default() {
    // Euler on y' = -y with outputs at 0, 0.5, 1.5 takes exactly one step per interval.
    let p = Problem::ExpDecay; // y' = -0.5 y
    let ts = [0.0, 0.5, 1.5];
    let sol = Solver::new(Method::Euler, SolveOptions::default())
        .unwrap()
        .solve(&mut p.field::<f64>(), &ts, &[1.0])
        .unwrap();
    assert_eq!(sol.stats.accepted, 2);
    assert_eq!(sol.stats.nfe, 2);
    let y1 = 1.0 - 0.5 * 0.5;
    let y2 = y1 * (1.0 - 0.5 * 1.0);
    assert_eq!(sol.y(1, 0)[0], y1);
    assert_eq!(sol.y(2, 0)[0], y2);
    // With a step size: steps of 0.25, outputs in between by interpolation, last step to 1.5.
    let sol = Solver::new(Method::Euler, SolveOptions::default().step_size(0.25))
        .unwrap()
        .solve(&mut p.field::<f64>(), &ts, &[1.0])
        .unwrap();
    assert_eq!(sol.stats.accepted, 6);
    let expect = (1.0f64 - 0.125).powi(6);
    assert!((sol.y(2, 0)[0] - expect).abs() < 1e-15);
}

#[test]
fn shared_mode_takes_one_step_sequence_for_the_batch() {
    let p = Problem::VanDerPol;
    let y0 = [2.0, 0.0, 0.5, 0.1, -1.0, 1.0];
    let ts = [0.0, 5.0];
    let sol = Solver::new(Method::Dopri5, SolveOptions::default().step_mode(StepMode::Shared))
        .unwrap()
        .solve(&mut p.field::<f64>(), &ts, &y0)
        .unwrap();
    let s0 = sol.stats.per_sample[0];
    assert!(sol.stats.per_sample.iter().all(|s| *s == s0));
    assert_eq!(sol.stats.accepted, s0.accepted);
    let per = Solver::new(Method::Dopri5, SolveOptions::default().step_mode(StepMode::PerSample))
        .unwrap()
        .solve(&mut p.field::<f64>(), &ts, &y0)
        .unwrap();
    // Per-sample steps differ between samples; the sum is the reported total.
    assert_eq!(
        per.stats.accepted,
        per.stats.per_sample.iter().map(|s| s.accepted).sum::<usize>()
    );
    assert!(
        per.stats
            .per_sample
            .iter()
            .any(|s| s.accepted != per.stats.per_sample[0].accepted)
    );
}
