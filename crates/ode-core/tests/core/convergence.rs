//! Empirical orders of convergence and tolerance proportionality, in f64.

use nalgebra::DMatrix;
use ode_core::{FnField, Interpolation, Method, Problem, SolveOptions, Solver, StepMode, VectorField};

/// Least-squares slope of log(err) against log(h).
fn slope(hs: &[f64], errs: &[f64]) -> f64 {
    let xs: Vec<f64> = hs.iter().map(|h| h.ln()).collect();
    let ys: Vec<f64> = errs.iter().map(|e| e.ln()).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    sxy / sxx
}

/// Step counts for a method of this order, chosen so errors stay well above round-off.
fn step_counts(order: usize) -> Vec<usize> {
    let base = match order {
        1 => 64,
        2 => 32,
        3 => 16,
        _ => 8,
    };
    (0..5).map(|i| base << i).collect()
}

fn max_err(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Solves at constant steps `t_end / n` and returns the error at `t_end` against `exact`.
fn fixed_error(
    method: Method,
    n: usize,
    t_end: f64,
    field: &mut dyn VectorField<f64>,
    y0: &[f64],
    exact: &[f64],
) -> f64 {
    let opts = SolveOptions::default().step_size(t_end / n as f64);
    let sol = Solver::new(method, opts)
        .unwrap()
        .solve(field, &[0.0, t_end], y0)
        .unwrap();
    max_err(sol.at(1), exact)
}

#[test]
fn every_method_converges_at_its_order_on_a_linear_system() {
    let a = DMatrix::from_row_slice(3, 3, &[-0.5, 1.0, 0.2, -1.0, -0.3, 0.4, 0.1, -0.4, -0.2]);
    let y0 = [1.0, -0.5, 0.25];
    let t_end = 2.0;
    let exact: Vec<f64> = ((&a * t_end).exp() * nalgebra::DVector::from_row_slice(&y0))
        .iter()
        .copied()
        .collect();
    let mut field = FnField::new(3, move |_t: f64, y: &[f64], dy: &mut [f64]| {
        for i in 0..3 {
            dy[i] = (0..3).map(|j| a[(i, j)] * y[j]).sum();
        }
    });
    for m in Method::ALL {
        let order = m.tableau().order;
        let ns = step_counts(order);
        let hs: Vec<f64> = ns.iter().map(|&n| t_end / n as f64).collect();
        let errs: Vec<f64> = ns
            .iter()
            .map(|&n| fixed_error(m, n, t_end, &mut field, &y0, &exact))
            .collect();
        let p = slope(&hs, &errs);
        assert!(
            (p - order as f64).abs() <= 0.3,
            "{m}: fitted order {p:.3}, declared {order}; errors {errs:?}"
        );
    }
}

#[test]
fn every_method_converges_at_its_order_on_a_nonlinear_system() {
    // Lotka-Volterra to t = 3, against a tsit5 reference at rtol 1e-13.
    let p = Problem::VanDerPol;
    let y0 = p.y0();
    let t_end = 2.0;
    let reference = Solver::new(Method::Tsit5, SolveOptions::default().rtol(1e-13).atol(1e-14))
        .unwrap()
        .solve(&mut p.field::<f64>(), &[0.0, t_end], &y0)
        .unwrap();
    let exact = reference.at(1).to_vec();
    for m in Method::ALL {
        let order = m.tableau().order;
        // Nonlinear problems need smaller steps before the asymptotic regime.
        let ns: Vec<usize> = step_counts(order).iter().map(|n| n * 4).collect();
        let hs: Vec<f64> = ns.iter().map(|&n| t_end / n as f64).collect();
        let errs: Vec<f64> = ns
            .iter()
            .map(|&n| fixed_error(m, n, t_end, &mut p.field::<f64>(), &y0, &exact))
            .collect();
        let q = slope(&hs, &errs);
        assert!(
            (q - order as f64).abs() <= 0.3,
            "{m}: fitted order {q:.3}, declared {order}; errors {errs:?}"
        );
    }
}

/// Max error of outputs placed at the midpoints of constant steps (so they come from the
/// interpolant alone), for step counts `ns` on the harmonic oscillator over [0, 2].
fn mid_step_errors(m: Method, ns: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let p = Problem::Harmonic;
    let y0 = p.y0();
    let mut errs = Vec::new();
    let mut hs = Vec::new();
    for &n in ns {
        let h = 2.0 / n as f64;
        let ts: Vec<f64> = [0.0]
            .into_iter()
            .chain((0..n).map(|i| (i as f64 + 0.5) * h))
            .chain([2.0])
            .collect();
        let sol = Solver::new(m, SolveOptions::default().step_size(h))
            .unwrap()
            .solve(&mut p.field::<f64>(), &ts, &y0)
            .unwrap();
        let e = (1..ts.len() - 1)
            .map(|k| max_err(sol.at(k), &p.exact(ts[k], &y0).unwrap()))
            .fold(0.0, f64::max);
        errs.push(e);
        hs.push(h);
    }
    (hs, errs)
}

#[test]
fn dopri5_and_tsit5_dense_output_is_fourth_order() {
    for m in [Method::Dopri5, Method::Tsit5] {
        assert!(matches!(m.tableau().interpolation, Interpolation::Polynomial(_)));
        let (hs, errs) = mid_step_errors(m, &[4, 8, 16, 32]);
        let q = slope(&hs, &errs);
        assert!(q >= 3.7, "{m}: dense output order {q:.3}, errors {errs:?}");
    }
}

#[test]
fn hermite_dense_output_is_third_order() {
    // Hermite output is limited by the method's own order where that is lower (euler: 1).
    for (m, want) in [
        (Method::Euler, 1.0),
        (Method::Midpoint, 2.0),
        (Method::Rk4, 3.0),
        (Method::Bosh3, 3.0),
    ] {
        let (hs, errs) = mid_step_errors(m, &[8, 16, 32, 64]);
        let q = slope(&hs, &errs);
        assert!(q >= want - 0.3, "{m}: mid-step output order {q:.3}, errors {errs:?}");
    }
}

/// Global error of an adaptive solve, in units of the tolerance scale `atol + rtol·|y|`, and NFE.
fn scaled_error(m: Method, rtol: f64, mode: StepMode) -> (f64, usize) {
    let p = Problem::LotkaVolterra;
    let y0 = p.y0();
    let ts: Vec<f64> = (0..=20).map(|k| k as f64 * 0.25).collect();
    let reference = Solver::new(Method::Tsit5, SolveOptions::default().rtol(1e-13).atol(1e-14))
        .unwrap()
        .solve(&mut p.field::<f64>(), &ts, &y0)
        .unwrap();
    let atol = rtol;
    let sol = Solver::new(
        m,
        SolveOptions::default()
            .rtol(rtol)
            .atol(atol)
            .step_mode(mode)
            .max_num_steps(1_000_000),
    )
    .unwrap()
    .solve(&mut p.field::<f64>(), &ts, &y0)
    .unwrap();
    let mut worst = 0.0f64;
    for (a, b) in sol.ys.iter().zip(&reference.ys) {
        worst = worst.max((a - b).abs() / (atol + rtol * b.abs()));
    }
    (worst, sol.stats.nfe)
}

#[test]
fn adaptive_error_tracks_the_tolerance() {
    for m in [Method::Dopri5, Method::Tsit5, Method::Bosh3] {
        let mut prev: Option<(f64, f64, usize)> = None;
        for e in 3..=9 {
            let rtol = 10f64.powi(-e);
            let (scaled, nfe) = scaled_error(m, rtol, StepMode::PerSample);
            println!("{m} rtol {rtol:e}: global error {scaled:.2} x tolerance, nfe {nfe}");
            // Over one period of Lotka-Volterra the achieved global error stays within a small
            // factor of the tolerance (measured: 1.5x to 15x for dopri5, tsit5 and bosh3).
            assert!(
                scaled < 20.0,
                "{m} rtol {rtol:e}: global error is {scaled:.1}x the tolerance"
            );
            let abs = scaled * rtol;
            if let Some((prev_rtol, prev_abs, prev_nfe)) = prev {
                assert!(
                    abs < prev_abs,
                    "{m}: error did not fall from rtol {prev_rtol:e} ({prev_abs:.2e}) to {rtol:e} ({abs:.2e})"
                );
                assert!(nfe > prev_nfe, "{m}: work did not grow as rtol fell to {rtol:e}");
            }
            prev = Some((rtol, abs, nfe));
        }
    }
}

#[test]
fn shared_mode_tracks_the_tolerance_too() {
    for e in [4, 6, 8] {
        let rtol = 10f64.powi(-e);
        let (scaled, _) = scaled_error(Method::Dopri5, rtol, StepMode::Shared);
        assert!(
            scaled < 20.0,
            "shared dopri5 rtol {rtol:e}: global error is {scaled:.1}x the tolerance"
        );
    }
}

/// Step and evaluation counts pinned so a behaviour change shows up in review (diffsol-style
/// snapshot). Update deliberately, with the reason, if the controller changes.
#[test]
fn dopri5_statistics_snapshot() {
    let p = Problem::LotkaVolterra;
    let ts: Vec<f64> = (0..=10).map(|k| k as f64).collect();
    let sol = Solver::new(Method::Dopri5, SolveOptions::default().rtol(1e-6).atol(1e-8))
        .unwrap()
        .solve(&mut p.field::<f64>(), &ts, &p.y0())
        .unwrap();
    let s = &sol.stats;
    // FSAL: 6 new evaluations per step after the first, plus 2 for the initial-step probe.
    assert_eq!(s.nfe, 2 + 6 * (s.accepted + s.rejected), "{s:?}");
    assert_eq!((s.accepted, s.rejected), (89, 16), "{s:?}");
}
