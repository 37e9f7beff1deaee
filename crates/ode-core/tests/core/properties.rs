//! Property tests of the Runge-Kutta engine: invariants that must hold for any method, batch,
//! initial state and output grid.

use ode_core::{FnField, Method, Problem, Solution, SolveOptions, Solver, StepMode, VectorField};
use proptest::prelude::*;

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(Method::ALL.to_vec())
}

fn adaptive_method() -> impl Strategy<Value = Method> {
    prop::sample::select(
        Method::ALL
            .into_iter()
            .filter(|m| m.tableau().is_adaptive())
            .collect::<Vec<_>>(),
    )
}

/// The problems with a closed-form solution.
fn exact_problem() -> impl Strategy<Value = Problem> {
    prop::sample::select(vec![Problem::ExpDecay, Problem::Harmonic])
}

fn mode() -> impl Strategy<Value = StepMode> {
    prop::sample::select(vec![StepMode::Shared, StepMode::PerSample])
}

/// Output times: `t0` then 1 to 4 strictly monotone steps, forward or backward.
fn times() -> impl Strategy<Value = Vec<f64>> {
    (-2.0f64..2.0, prop::collection::vec(0.05f64..1.5, 1..5), any::<bool>()).prop_map(|(t0, gaps, backward)| {
        let dir = if backward { -1.0 } else { 1.0 };
        let mut ts = vec![t0];
        for g in gaps {
            let last = *ts.last().unwrap();
            ts.push(last + dir * g);
        }
        ts
    })
}

/// A batch of `1..=max_batch` initial states of dimension `dim`, each scaled by a random power
/// of ten so samples need different step sequences.
fn batch_states(dim: usize, max_batch: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((prop::collection::vec(-1.0f64..1.0, dim), -2i32..=1), 1..=max_batch).prop_map(|rows| {
        rows.into_iter()
            .flat_map(|(v, e)| v.into_iter().map(move |x| x * 10f64.powi(e)))
            .collect()
    })
}

/// Initial states where every built-in problem is well behaved: Lotka-Volterra needs positive
/// populations, and both nonlinear problems are kept near their periodic orbits.
fn problem_state(problem: Problem, raw: &[f64]) -> Vec<f64> {
    let n = problem.dim();
    raw.chunks(n)
        .flat_map(|row| {
            row.iter().map(move |&x| match problem {
                Problem::LotkaVolterra => 0.5 + 1.5 * x.abs() / (1.0 + x.abs()),
                Problem::VanDerPol => 2.0 * x / (1.0 + x.abs()),
                _ => x,
            })
        })
        .collect()
}

/// Output times usable for `problem`: Lotka-Volterra and Van der Pol blow up backward in time
/// (their periodic orbits attract forward, repel backward), so they are only solved forward.
fn problem_times(problem: Problem, ts: &[f64]) -> Vec<f64> {
    match problem {
        Problem::LotkaVolterra | Problem::VanDerPol => ts.iter().map(|&t| ts[0] + (t - ts[0]).abs()).collect(),
        _ => ts.to_vec(),
    }
}

fn solve(
    method: Method,
    opts: SolveOptions<f64>,
    field: &mut dyn VectorField<f64>,
    ts: &[f64],
    y0: &[f64],
) -> Solution<f64> {
    Solver::new(method, opts).unwrap().solve(field, ts, y0).unwrap()
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |a, v| a.max(v.abs()))
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// `problem`'s field, optionally with the time-dependent forcing `0.5·cos(t)` added to the first
/// component, so that a sample evaluated at another sample's time would be noticed.
fn forced_field(problem: Problem, forced: bool) -> impl VectorField<f64> {
    FnField::new(problem.dim(), move |t: f64, y: &[f64], dy: &mut [f64]| {
        problem.rhs(y, dy);
        if forced {
            dy[0] += 0.5 * t.cos();
        }
    })
}

/// Step size for fixed-step methods on an output interval of this length: at least 20 steps
/// and at most 0.05, small enough that even Euler and midpoint stay bounded on Lotka-Volterra
/// orbits that pass close to the axes.
fn fixed_step(ts: &[f64]) -> f64 {
    ((ts[ts.len() - 1] - ts[0]).abs() / 20.0).min(0.05)
}

/// A relative tolerance `10^-e`, capped for low-order methods so a solve stays well inside the
/// default step budget (heun2 at rtol 1e-9 would need ~10^5 steps per unit time).
fn rtol_for(m: Method, e: i32) -> f64 {
    let max_e = match m.tableau().order {
        0..=2 => 6,
        3 => 8,
        _ => 9,
    };
    10f64.powi(-e.min(max_e))
}

/// `opts` with a constant step `h` for a fixed-step method; adaptive methods keep their error
/// control (a step size would switch it off).
fn with_step(m: Method, opts: SolveOptions<f64>, h: f64) -> SolveOptions<f64> {
    if m.tableau().is_adaptive() {
        opts
    } else {
        opts.step_size(h)
    }
}

proptest! {
    // No regression files: this crate's tests directory holds only test sources.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(32)
    })]

    /// (a) The first output is `y0`, bit for bit, for every method, mode, problem and direction.
    #[test]
    fn first_output_is_y0(
        m in method(),
        mode in mode(),
        p in prop::sample::select(Problem::ALL.to_vec()),
        raw in batch_states(2, 5),
        ts in times(),
    ) {
        let y0 = problem_state(p, &raw[..raw.len() / p.dim() * p.dim()]);
        let ts = problem_times(p, &ts);
        let opts = with_step(m, SolveOptions::default().step_mode(mode), fixed_step(&ts));
        let sol = solve(m, opts, &mut p.field::<f64>(), &ts, &y0);
        prop_assert_eq!(sol.at(0), &y0[..]);
        prop_assert_eq!(&sol.ts, &ts);
        prop_assert!(sol.ys.iter().all(|v| v.is_finite()));
    }

    /// (b) Solving a stable linear 2-D system forward over [0, T] and then backward from the
    /// result returns to `y0` (dopri5 at rtol 1e-10, atol 1e-12). The backward leg amplifies
    /// the forward leg's error by up to ‖e^{-AT}‖ (about e^{|Re λ|·T}), which is why T and the
    /// decay rates are kept moderate. Measured over 30000 cases: at most 4.2e-10 relative.
    #[test]
    fn forward_then_backward_returns_to_y0(
        p in 0.1f64..1.0,
        q in -2.0f64..2.0,
        e in prop::array::uniform4(-0.3f64..0.3),
        y0 in prop::array::uniform2(-2.0f64..2.0),
        t_end in 0.5f64..3.0,
    ) {
        let a = [[-p + e[0], q + e[1]], [-q + e[2], -p + e[3]]];
        let trace = a[0][0] + a[1][1];
        let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
        // Both eigenvalues in the open left half-plane.
        prop_assume!(trace < 0.0 && det > 0.0);
        prop_assume!(max_abs(&y0) > 0.1);
        let mut field = FnField::new(2, move |_t: f64, y: &[f64], dy: &mut [f64]| {
            dy[0] = a[0][0] * y[0] + a[0][1] * y[1];
            dy[1] = a[1][0] * y[0] + a[1][1] * y[1];
        });
        let opts = || SolveOptions::default().rtol(1e-10).atol(1e-12);
        let fwd = solve(Method::Dopri5, opts(), &mut field, &[0.0, t_end], &y0);
        let y1 = fwd.y(1, 0).to_vec();
        // The system is not the identity map: the state did move.
        prop_assert!(max_abs_diff(&y1, &y0) > 1e-3);
        let back = solve(Method::Dopri5, opts(), &mut field, &[t_end, 0.0], &y1);
        let err = max_abs_diff(back.y(1, 0), &y0) / max_abs(&y0);
        prop_assert!(err <= 1e-8, "round trip error {:e} (A = {:?}, T = {})", err, a, t_end);
    }

    /// (c) In per-sample mode a batch's result equals solving each sample alone, bit for bit,
    /// with the same per-sample work counters (also for a non-autonomous field, where each row
    /// must be evaluated at its own time).
    #[test]
    fn per_sample_batch_equals_samples_alone(
        m in method(),
        p in exact_problem(),
        forced in any::<bool>(),
        raw in batch_states(2, 6),
        ts in times(),
        rtol_exp in 3i32..=9,
    ) {
        let n = p.dim();
        let y0 = raw[..raw.len() / n * n].to_vec();
        let rtol = rtol_for(m, rtol_exp);
        let opts = || {
            let o = SolveOptions::default().rtol(rtol).atol(rtol * 1e-2);
            with_step(m, o.step_mode(StepMode::PerSample), fixed_step(&ts))
        };
        let batch = solve(m, opts(), &mut forced_field(p, forced), &ts, &y0);
        let mut solver = Solver::new(m, opts()).unwrap();
        for (r, row) in y0.chunks(n).enumerate() {
            let alone = solver.solve(&mut forced_field(p, forced), &ts, row).unwrap();
            for k in 0..ts.len() {
                prop_assert_eq!(batch.y(k, r), alone.y(k, 0), "sample {}, output {}", r, k);
            }
            prop_assert_eq!(batch.stats.per_sample[r], alone.stats.per_sample[0]);
        }
    }

    /// (d) Shared mode on a batch is the stacked system (one sample of dimension batch × dim)
    /// with the same method and tolerances: both use the RMS over every entry as the error norm
    /// and for the initial step, so they differ only in how those sums of squares associate.
    /// That 1-ulp difference in a step size is amplified by the error estimate, a cancellation
    /// of stage derivatives of size ~h·|f| down to ~tol (relative precision ~eps·h·|f|/tol), so
    /// at loose tolerances with large steps the results drift apart by more than a few ulps:
    /// measured over 30000 cases, at most 1.0e-12 relative (tsit5, rtol 1e-3), typically 0.
    /// Hence the bound 1e-11; a real difference in the norm moves results by ~rtol.
    /// For the stacked system, a single sample, the two modes must coincide bit for bit.
    #[test]
    fn shared_batch_equals_stacked_system(
        m in method(),
        p in prop::sample::select(Problem::ALL.to_vec()),
        raw in batch_states(2, 6),
        ts in times(),
        rtol_exp in 3i32..=9,
    ) {
        let n = p.dim();
        let y0 = problem_state(p, &raw[..raw.len() / n * n]);
        let ts = problem_times(p, &ts);
        let batch = y0.len() / n;
        let rtol = rtol_for(m, rtol_exp);
        let opts = || {
            let o = SolveOptions::default().rtol(rtol).atol(rtol * 1e-2);
            with_step(m, o.step_mode(StepMode::Shared), fixed_step(&ts))
        };
        let shared = solve(m, opts(), &mut p.field::<f64>(), &ts, &y0);
        let mut stacked_field = FnField::new(batch * n, move |_t: f64, y: &[f64], dy: &mut [f64]| {
            for (yr, dr) in y.chunks(n).zip(dy.chunks_mut(n)) {
                p.rhs(yr, dr);
            }
        });
        let stacked = solve(m, opts(), &mut stacked_field, &ts, &y0);
        prop_assert_eq!(stacked.batch, 1);
        prop_assert_eq!(shared.ys.len(), stacked.ys.len());
        let scale = max_abs(&shared.ys).max(1e-300);
        let err = max_abs_diff(&shared.ys, &stacked.ys) / scale;
        prop_assert!(err <= 1e-11, "shared vs stacked: {:e}", err);
        prop_assert_eq!(shared.stats.nfe, stacked.stats.nfe);
        prop_assert_eq!(shared.stats.accepted, stacked.stats.accepted);
        prop_assert_eq!(shared.stats.rejected, stacked.stats.rejected);
        let o = opts().step_mode(StepMode::PerSample);
        let stacked_per_sample = solve(m, o, &mut stacked_field, &ts, &y0);
        prop_assert_eq!(&stacked_per_sample.ys, &stacked.ys);
        prop_assert_eq!(&stacked_per_sample.stats, &stacked.stats);
    }

    /// (e) Dense output at times strictly between steps matches the exact solution to within a
    /// small multiple of the tolerances, and asking for interior outputs does not change the
    /// steps taken (the final state is bitwise the same as with no interior outputs).
    #[test]
    fn dense_output_matches_exact_solution(
        m in adaptive_method(),
        p in exact_problem(),
        raw in batch_states(2, 3),
        t_end in 1.0f64..8.0,
        fracs in prop::collection::btree_set(1u32..1000, 1..6),
        rtol_exp in 4i32..=8,
        mode in mode(),
    ) {
        let n = p.dim();
        let y0 = raw[..raw.len() / n * n].to_vec();
        let rtol = rtol_for(m, rtol_exp);
        let atol = rtol * 1e-2;
        let opts = || SolveOptions::default().rtol(rtol).atol(atol).step_mode(mode);
        let mut ts = vec![0.0];
        ts.extend(fracs.iter().map(|&f| t_end * f as f64 / 1000.0));
        ts.push(t_end);
        let sol = solve(m, opts(), &mut p.field::<f64>(), &ts, &y0);
        let ends = solve(m, opts(), &mut p.field::<f64>(), &[0.0, t_end], &y0);
        prop_assert_eq!(sol.at(ts.len() - 1), ends.at(1));
        prop_assert_eq!(sol.stats.accepted, ends.stats.accepted);
        prop_assert_eq!(sol.stats.rejected, ends.stats.rejected);
        // Tolerance: each step's local error is controlled to about atol + rtol·|y| per unit
        // step and the global error of these non-expanding problems grows at most linearly in
        // time, so `(1 + t)(atol + rtol·|y|)` with a safety factor 4. (Measured over 30000
        // cases, ~90000 outputs per method: error up to 1.8× `(1 + t)(atol + rtol·|y|)` for
        // bosh3, 0.44× for dopri5, 0.42× for heun2, 0.37× for tsit5.)
        for (k, &t) in ts.iter().enumerate().skip(1) {
            for (r, row) in y0.chunks(n).enumerate() {
                let exact = p.exact(t, row).unwrap();
                let got = sol.y(k, r);
                let scale = max_abs(row).max(max_abs(&exact));
                let tol = 4.0 * (1.0 + t) * (atol + rtol * scale);
                let err = max_abs_diff(got, &exact);
                prop_assert!(
                    err <= tol,
                    "{} {} t={} sample {}: err {:e} > {:e} (rtol {:e})",
                    m, p, t, r, err, tol, rtol
                );
            }
        }
    }

    /// (f) Time scaling: `y' = c·f(y)` on `[0, T/c]` is `y' = f(y)` on `[0, T]`. With `c` a
    /// power of two every rescaled quantity is exact in binary, so at matching steps every
    /// method gives bitwise the same states and work counters: at constant steps `h` and `h/c`
    /// (any method; adaptive ones then run without error control), or adaptively from first
    /// steps `h` and `h/c`, after which the error ratios, hence the step factors, are identical.
    #[test]
    fn time_scaling_by_power_of_two_is_exact(
        m in method(),
        constant_step in any::<bool>(),
        p in prop::sample::select(Problem::ALL.to_vec()),
        raw in prop::collection::vec(-1.0f64..1.0, 2),
        c_exp in prop::sample::select(vec![-3, -2, -1, 1, 2, 3]),
        ts in times(),
        mode in mode(),
    ) {
        let c = 2f64.powi(c_exp);
        let y0 = problem_state(p, &raw[..p.dim()]);
        let ts = problem_times(p, &ts);
        let h = fixed_step(&ts);
        let opts = |s: f64| {
            let o = SolveOptions::default().rtol(1e-6).atol(1e-8).step_mode(mode);
            if constant_step || !m.tableau().is_adaptive() {
                o.step_size(h * s)
            } else {
                o.first_step(h * 0.1 * s)
            }
        };
        let base = solve(m, opts(1.0), &mut p.field::<f64>(), &ts, &y0);
        let ts_c: Vec<f64> = ts.iter().map(|t| t / c).collect();
        let mut scaled = FnField::new(p.dim(), move |_t: f64, y: &[f64], dy: &mut [f64]| {
            p.rhs(y, dy);
            dy.iter_mut().for_each(|d| *d *= c);
        });
        let sol = solve(m, opts(1.0 / c), &mut scaled, &ts_c, &y0);
        prop_assert_eq!(&sol.ys, &base.ys);
        prop_assert_eq!(&sol.stats, &base.stats);
    }

    /// (f') The same with an arbitrary factor `c`, every method at constant steps `h` and `h/c`:
    /// equal to rounding (measured over 30000 cases: at most 3.2e-14 relative).
    #[test]
    fn time_scaling_at_constant_steps(
        m in method(),
        p in prop::sample::select(Problem::ALL.to_vec()),
        raw in prop::collection::vec(-1.0f64..1.0, 2),
        c in 0.3f64..3.0,
        n_steps in 30usize..80,
        t_end in 0.5f64..3.0,
    ) {
        // Steps h ≤ 0.1 keep every method in its accurate regime on these problems (h·L < 1).
        // With huge steps, stage values grow large and cancel, and the rescaling's rounding
        // (h/c and c·k each round once) is amplified past any fixed relative bound.
        let y0 = problem_state(p, &raw[..p.dim()]);
        let h = t_end / n_steps as f64;
        let ts = [0.0, 0.5 * t_end, t_end];
        let base = solve(
            m,
            SolveOptions::default().step_size(h),
            &mut p.field::<f64>(),
            &ts,
            &y0,
        );
        let ts_c: Vec<f64> = ts.iter().map(|t| t / c).collect();
        let mut scaled = FnField::new(p.dim(), move |_t: f64, y: &[f64], dy: &mut [f64]| {
            p.rhs(y, dy);
            dy.iter_mut().for_each(|d| *d *= c);
        });
        let sol = solve(m, SolveOptions::default().step_size(h / c), &mut scaled, &ts_c, &y0);
        prop_assert_eq!(sol.stats.accepted, base.stats.accepted);
        prop_assert_eq!(sol.stats.accepted, n_steps);
        prop_assert_eq!(sol.stats.rejected, 0);
        let scale = max_abs(&base.ys).max(1e-300);
        let err = max_abs_diff(&sol.ys, &base.ys) / scale;
        prop_assert!(err <= 1e-12, "{} {} c={}: rel diff {:e}", m, p, c, err);
    }

    /// Reusing one solver for solves of different shapes does not leak state between them.
    #[test]
    fn solver_reuse_is_stateless(
        m in method(),
        mode in mode(),
        p in exact_problem(),
        a in batch_states(2, 4),
        b in batch_states(2, 6),
        ts in times(),
    ) {
        let n = p.dim();
        let (ya, yb) = (&a[..a.len() / n * n], &b[..b.len() / n * n]);
        let opts = with_step(m, SolveOptions::default().step_mode(mode), fixed_step(&ts));
        let mut solver = Solver::new(m, opts).unwrap();
        let first = solver.solve(&mut p.field::<f64>(), &ts, ya).unwrap();
        let _ = solver.solve(&mut p.field::<f64>(), &ts, yb).unwrap();
        let again = solver.solve(&mut p.field::<f64>(), &ts, ya).unwrap();
        prop_assert_eq!(first, again);
    }
}
