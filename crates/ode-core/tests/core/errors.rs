//! Every error path of [`OdeError`] through the public API: the variant, the data it carries
//! (sample index, time, option name, value) and the message text.

use ode_core::{
    ButcherTableau, FnField, Interpolation, Method, OdeError, PidController, Problem, SolveOptions, Solver, StepMode,
    Tolerance,
};

const ADAPTIVE: [Method; 4] = [Method::Heun2, Method::Bosh3, Method::Dopri5, Method::Tsit5];
const FIXED: [Method; 4] = [Method::Euler, Method::Midpoint, Method::Rk4, Method::Rk4Classic];
const MODES: [StepMode; 2] = [StepMode::Shared, StepMode::PerSample];

fn tight() -> SolveOptions<f64> {
    SolveOptions::default().rtol(1e-8).atol(1e-10)
}

/// Tight tolerances for adaptive methods, steps of 1/8 for fixed-step ones (an embedded method
/// given a step size would run at it without error control).
fn opts_for(m: Method) -> SolveOptions<f64> {
    if m.tableau().is_adaptive() {
        tight()
    } else {
        tight().step_size(0.125)
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

/// Dimension 2: `y[0]` decays (`y0' = -y0`), `y[1]` is a constant tag naming the sample. The
/// sample tagged `bad_tag` gets a NaN derivative at every time `t > t_bad`.
fn tagged_decay(bad_tag: f64, t_bad: f64) -> FnField<impl FnMut(f64, &[f64], &mut [f64])> {
    FnField::new(2, move |t: f64, y: &[f64], dy: &mut [f64]| {
        dy[1] = 0.0;
        dy[0] = if y[1] == bad_tag && t > t_bad { f64::NAN } else { -y[0] };
    })
}

/// One sample's rows of a solution: its state at every output time, flattened.
fn sample_track(sol: &ode_core::Solution<f64>, sample: usize) -> Vec<f64> {
    (0..sol.ts.len()).flat_map(|k| sol.y(k, sample).to_vec()).collect()
}

// ---------------------------------------------------------------- NonFinite

#[test]
fn nonfinite_initial_state_names_sample_and_initial_time() {
    for m in Method::ALL {
        for mode in MODES {
            let mut f = Problem::Harmonic.field::<f64>();
            let mut s = Solver::new(m, opts_for(m).step_mode(mode)).unwrap();
            // Sample 1 (of 3) has a NaN; times run backwards from 0.5.
            let y0 = [1.0, 0.0, 2.0, f64::NAN, 3.0, 0.0];
            let e = s.solve(&mut f, &[0.5, 0.0], &y0).unwrap_err();
            assert_eq!(
                e,
                OdeError::NonFinite {
                    what: "initial state",
                    t: 0.5,
                    sample: 1
                },
                "{m} {mode}"
            );
            assert_eq!(e.sample(), Some(1));
            assert_contains(
                &e.to_string(),
                &["non-finite initial state at t = 0.5 in sample 1", "NaN/inf"],
            );
            // An infinity in sample 2 is rejected just the same.
            let y0 = [1.0, 0.0, 2.0, 0.0, f64::INFINITY, 0.0];
            let e = s.solve(&mut f, &[-1.0, 0.0], &y0).unwrap_err();
            assert_contains(&e.to_string(), &["non-finite initial state at t = -1 in sample 2"]);
        }
    }
}

#[test]
fn nonfinite_field_fixed_step_reports_time_and_kind() {
    // NaN for t > 0.5; steps of 1/8 are exact in binary, so the grid is 0, 0.125, ..., 0.5,
    // 0.625. Euler's only stage at t = 0.625 is NaN (a derivative); the multi-stage methods
    // evaluate inside (0.5, 0.625] during the step from 0.5, so the new state is NaN.
    for m in FIXED {
        for mode in MODES {
            let mut f = FnField::new(1, |t: f64, y: &[f64], dy: &mut [f64]| {
                dy[0] = if t > 0.5 { f64::NAN } else { -y[0] };
            });
            let mut s = Solver::new(m, SolveOptions::default().step_size(0.125).step_mode(mode)).unwrap();
            let e = s.solve(&mut f, &[0.0, 1.0], &[1.0]).unwrap_err();
            let what = if m == Method::Euler { "derivative" } else { "state" };
            assert_eq!(
                e,
                OdeError::NonFinite {
                    what,
                    t: 0.625,
                    sample: 0
                },
                "{m} {mode}"
            );
            assert_contains(
                &e.to_string(),
                &[&format!("non-finite {what} at t = 0.625 in sample 0")],
            );
        }
    }
}

#[test]
fn nonfinite_field_fixed_step_names_the_failing_sample() {
    // Sample 1 of 3 fails; in shared mode the whole solve fails, naming it.
    for m in FIXED {
        for mode in MODES {
            let mut f = tagged_decay(1.0, 0.5);
            let mut s = Solver::new(m, SolveOptions::default().step_size(0.125).step_mode(mode)).unwrap();
            let y0 = [1.0, 0.0, 1.0, 1.0, 2.0, 2.0];
            let e = s.solve(&mut f, &[0.0, 1.0], &y0).unwrap_err();
            assert_eq!(e.sample(), Some(1), "{m} {mode}: {e}");
            assert_contains(&e.to_string(), &["at t = 0.625 in sample 1"]);
        }
    }
}

#[test]
fn nonfinite_field_adaptive_per_sample_throw_names_the_sample() {
    for m in ADAPTIVE {
        let mut f = tagged_decay(1.0, 0.5);
        let mut s = Solver::new(m, tight().step_mode(StepMode::PerSample)).unwrap();
        let y0 = [1.0, 0.0, 1.0, 1.0, 2.0, 2.0];
        let e = s.solve(&mut f, &[0.0, 1.0], &y0).unwrap_err();
        // The step size shrinks towards the NaN boundary at t = 0.5 until it underflows; the
        // last trial was non-finite, so it is reported as such, close below 0.5.
        let OdeError::NonFinite { what, t, sample } = e else {
            panic!("{m}: expected NonFinite, got {e:?}");
        };
        assert_eq!((what, sample), ("state", 1), "{m}");
        assert!(t > 0.5 - 1e-9 && t <= 0.5, "{m}: t = {t}");
        assert_contains(&e.to_string(), &["non-finite state at t = 0.", "in sample 1"]);
    }
}

/// In shared mode an adaptive solve fails as a whole; what and when are right.
#[test]
fn nonfinite_field_adaptive_shared_fails_the_solve() {
    for m in ADAPTIVE {
        let mut f = tagged_decay(1.0, 0.5);
        // throw(false) only collects failures in per-sample mode.
        let mut s = Solver::new(m, tight().step_mode(StepMode::Shared).throw(false)).unwrap();
        let y0 = [1.0, 0.0, 1.0, 1.0, 2.0, 2.0];
        let e = s.solve(&mut f, &[0.0, 1.0], &y0).unwrap_err();
        let OdeError::NonFinite { what, t, .. } = e else {
            panic!("{m}: expected NonFinite, got {e:?}");
        };
        assert_eq!(what, "state", "{m}");
        assert!(t > 0.5 - 1e-9 && t <= 0.5, "{m}: t = {t}");
    }
}

/// Shared mode should name the sample that caused the failure (sample 1 in both cases), as the
/// fixed-step path and per-sample mode do; it names the first row of the batch instead (the
/// solver computes the worst row of the shared error norm but never uses it).
#[test]
fn adaptive_shared_failure_names_the_culprit() {
    for m in ADAPTIVE {
        let mut f = tagged_decay(1.0, 0.5);
        let mut s = Solver::new(m, tight().step_mode(StepMode::Shared)).unwrap();
        let y0 = [1.0, 0.0, 1.0, 1.0, 2.0, 2.0];
        let e = s.solve(&mut f, &[0.0, 1.0], &y0).unwrap_err();
        assert_eq!(e.sample(), Some(1), "{m}: {e}");
        // y' = y²: sample 1 (y0 = 1) blows up at t = 1, sample 0 (y0 = 1/4) is fine.
        let mut f = FnField::new(1, |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = y[0] * y[0]);
        let opts = SolveOptions::default()
            .rtol(1e-6)
            .atol(1e-8)
            .step_mode(StepMode::Shared);
        let mut s = Solver::new(m, opts).unwrap();
        let e = s.solve(&mut f, &[0.0, 2.0], &[0.25, 1.0]).unwrap_err();
        assert_eq!(e.sample(), Some(1), "{m}: {e}");
    }
}

#[test]
fn nonfinite_per_sample_no_throw_isolates_the_failure() {
    let ts = [0.0, 0.25, 0.5, 0.75, 1.0];
    let y0 = [1.0, 0.0, 1.0, 1.0, 2.0, 2.0];
    for m in ADAPTIVE.into_iter().chain(FIXED) {
        let opts = opts_for(m).step_mode(StepMode::PerSample).throw(false);
        let mut f = tagged_decay(1.0, 0.5);
        let mut s = Solver::new(m, opts).unwrap();
        let sol = s.solve(&mut f, &ts, &y0).unwrap();
        assert_eq!(sol.failures.len(), 1, "{m}: {:?}", sol.failures);
        let fail = &sol.failures[0];
        assert_eq!(fail.sample(), Some(1), "{m}: {fail}");
        let OdeError::NonFinite { t: t_fail, .. } = *fail else {
            panic!("{m}: expected NonFinite, got {fail:?}");
        };
        assert!((0.5 - 1e-9..=0.625).contains(&t_fail), "{m}: {fail}");
        assert_contains(&fail.to_string(), &["in sample 1"]);

        // The failed sample: before the failure it follows sample 0 (same start, same field;
        // exactly for fixed steps, within the tolerance for adaptive ones, whose initial step
        // also sees the tag component); its later outputs are NaN.
        for (k, &t) in ts.iter().enumerate() {
            let y = sol.y(k, 1)[0];
            if t < t_fail {
                if m.tableau().is_adaptive() {
                    assert!((y - sol.y(k, 0)[0]).abs() < 1e-7, "{m}: y({t})");
                } else {
                    assert_eq!(y, sol.y(k, 0)[0], "{m}: y({t})");
                }
                assert!((y - (-t).exp()).abs() < 3e-2, "{m}: y({t}) = {y}");
            } else {
                assert!(y.is_nan(), "{m}: sample 1 at t = {t} is {y}, not NaN");
            }
        }
        // The others are exactly what solving each alone gives.
        for (r, tag) in [(0usize, 0.0), (2, 2.0)] {
            let mut alone = Solver::new(m, s.options().clone()).unwrap();
            let one = alone
                .solve(&mut f, &ts, &[y0[2 * r], tag])
                .expect("healthy sample solves alone");
            assert!(one.failures.is_empty());
            assert_eq!(sample_track(&sol, r), sample_track(&one, 0), "{m} sample {r}");
            assert_eq!(sol.stats.per_sample[r], one.stats.per_sample[0], "{m} {r}");
            let want = y0[2 * r] * (-1.0f64).exp();
            assert!((sol.y(4, r)[0] - want).abs() < 0.1 * want, "{m} {r}");
        }
    }
}

#[test]
fn nonfinite_derivative_at_the_initial_time() {
    // Sample 2's derivative is NaN from the start: the adaptive initial-step probe catches it.
    for m in ADAPTIVE {
        let mut f = tagged_decay(2.0, -1.0);
        let y0 = [1.0, 0.0, 1.0, 1.0, 2.0, 2.0];
        let mut s = Solver::new(m, tight()).unwrap();
        let e = s.solve(&mut f, &[0.0, 1.0], &y0).unwrap_err();
        assert_eq!(
            e,
            OdeError::NonFinite {
                what: "derivative",
                t: 0.0,
                sample: 2
            },
            "{m}"
        );
        assert_contains(&e.to_string(), &["non-finite derivative at t = 0 in sample 2"]);
        let mut s = Solver::new(m, tight().throw(false)).unwrap();
        let sol = s.solve(&mut f, &[0.0, 1.0], &y0).unwrap();
        assert_eq!(sol.failures, vec![e]);
        assert!(sol.y(1, 2).iter().all(|v| v.is_nan()));
        assert!((sol.y(1, 1)[0] - (-1.0f64).exp()).abs() < 1e-7, "{m}");
    }
}

// ---------------------------------------------------------------- StepSizeUnderflow

#[test]
fn step_size_underflow_at_a_blow_up() {
    // y' = y², y(0) = 1 blows up at t = 1; y(0) = 1/4 gives y = 1/(4 - t), fine up to t = 2.
    for m in ADAPTIVE {
        let mut f = FnField::new(1, |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = y[0] * y[0]);
        let mut s = Solver::new(m, SolveOptions::default().rtol(1e-6).atol(1e-8)).unwrap();
        let e = s.solve(&mut f, &[0.0, 2.0], &[0.25, 1.0]).unwrap_err();
        let OdeError::StepSizeUnderflow { t, h, min_step, sample } = e else {
            panic!("{m}: expected StepSizeUnderflow, got {e:?}");
        };
        assert_eq!(sample, 1, "{m}");
        assert!((t - 1.0).abs() < 1e-4, "{m}: t = {t}");
        assert!(h < min_step, "{m}: h = {h}, min_step = {min_step}");
        // min_step is 0 here, so the floor is the resolution of t (4 ulp).
        assert!(min_step > 0.0 && min_step < 1e-14, "{m}: {min_step}");
        assert_contains(
            &e.to_string(),
            &[
                "step size underflow at t = 1.0000",
                "in sample 1",
                "is below the minimum",
            ],
        );

        let mut s = Solver::new(m, SolveOptions::default().rtol(1e-6).atol(1e-8).throw(false)).unwrap();
        let sol = s.solve(&mut f, &[0.0, 2.0], &[0.25, 1.0]).unwrap();
        assert_eq!(sol.failures, vec![e], "{m}");
        assert!((sol.y(1, 0)[0] - 0.5).abs() < 1e-5, "{m}: {}", sol.y(1, 0)[0]);
        assert!(sol.y(1, 1)[0].is_nan());
    }
}

#[test]
fn step_size_underflow_below_min_step() {
    for m in ADAPTIVE {
        for mode in MODES {
            let mut f = Problem::Harmonic.field::<f64>();
            let opts = SolveOptions::default()
                .rtol(1e-10)
                .atol(1e-10)
                .min_step(0.1)
                .step_mode(mode);
            let mut s = Solver::new(m, opts).unwrap();
            let e = s.solve(&mut f, &[0.0, 10.0], &[1.0, 0.0]).unwrap_err();
            let OdeError::StepSizeUnderflow { t, h, min_step, sample } = e else {
                panic!("{m}: expected StepSizeUnderflow, got {e:?}");
            };
            assert_eq!((t, min_step, sample), (0.0, 0.1, 0), "{m} {mode}");
            assert!(h < 0.1 && h > 0.0, "{m}: h = {h}");
            assert_contains(
                &e.to_string(),
                &["step size underflow at t = 0 in sample 0", "below the minimum 1e-1"],
            );
        }
    }
}

// ---------------------------------------------------------------- MaxStepsExceeded

#[test]
fn max_steps_exceeded_adaptive() {
    for m in ADAPTIVE {
        for mode in MODES {
            let mut f = Problem::Harmonic.field::<f64>();
            let mut s = Solver::new(m, tight().max_num_steps(3).step_mode(mode)).unwrap();
            let e = s.solve(&mut f, &[0.0, 10.0], &[1.0, 0.0]).unwrap_err();
            let OdeError::MaxStepsExceeded {
                t,
                max_num_steps,
                sample,
            } = e
            else {
                panic!("{m}: expected MaxStepsExceeded, got {e:?}");
            };
            assert_eq!((max_num_steps, sample), (3, 0), "{m} {mode}");
            assert!(t > 0.0 && t < 1.0, "{m}: t = {t}");
            assert_contains(
                &e.to_string(),
                &["maximum number of steps (3) exceeded at t = 0.", "in sample 0"],
            );
        }
    }
}

#[test]
fn max_steps_exceeded_fixed_step() {
    for m in FIXED {
        let mut f = Problem::Harmonic.field::<f64>();
        let mut s = Solver::new(m, SolveOptions::default().step_size(0.1).max_num_steps(3)).unwrap();
        let e = s.solve(&mut f, &[0.0, 10.0], &[1.0, 0.0]).unwrap_err();
        let OdeError::MaxStepsExceeded {
            t,
            max_num_steps,
            sample,
        } = e
        else {
            panic!("{m}: expected MaxStepsExceeded, got {e:?}");
        };
        assert_eq!((max_num_steps, sample), (3, 0), "{m}");
        assert!((t - 0.3).abs() < 1e-12, "{m}: t = {t}");
        assert_contains(&e.to_string(), &["maximum number of steps (3) exceeded at t = 0.3"]);
    }
}

#[test]
fn max_steps_exceeded_per_sample_only_stops_the_hard_sample() {
    // y0' = -k y0 with k = y[1]: sample 0 (k = 1) needs fewer steps than sample 1 (k = 30).
    let mut f = FnField::new(2, |_t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = -y[1] * y[0];
        dy[1] = 0.0;
    });
    let y0 = [1.0, 1.0, 1.0, 30.0];
    let ts = [0.0, 2.5, 5.0];
    for m in ADAPTIVE {
        let mut s = Solver::new(m, tight()).unwrap();
        let full = s.solve(&mut f, &ts, &y0).unwrap();
        let steps = |st: ode_core::SampleStats| st.accepted + st.rejected;
        let (n0, n1) = (steps(full.stats.per_sample[0]), steps(full.stats.per_sample[1]));
        assert!(n0 + 1 < n1, "{m}: {n0} vs {n1} steps");
        let budget = (n0 + n1) / 2;
        let mut s = Solver::new(m, tight().max_num_steps(budget).throw(false)).unwrap();
        let sol = s.solve(&mut f, &ts, &y0).unwrap();
        assert_eq!(sol.failures.len(), 1, "{m}: {:?}", sol.failures);
        let fail = &sol.failures[0];
        let OdeError::MaxStepsExceeded {
            t,
            max_num_steps,
            sample,
        } = *fail
        else {
            panic!("{m}: expected MaxStepsExceeded, got {fail:?}");
        };
        assert_eq!((max_num_steps, sample), (budget, 1), "{m}");
        assert!(t > 0.0 && t < 5.0, "{m}: t = {t}");
        assert_contains(
            &fail.to_string(),
            &[
                &format!("maximum number of steps ({budget}) exceeded at t = "),
                "in sample 1",
            ],
        );
        assert_eq!(steps(sol.stats.per_sample[1]), budget, "{m}");
        // Sample 0 is untouched by its neighbour's failure.
        assert_eq!(sample_track(&sol, 0), sample_track(&full, 0), "{m}");
        assert!(sol.y(2, 1)[0].is_nan());
        if t < 2.5 {
            assert!(sol.y(1, 1)[0].is_nan());
        } else {
            assert_eq!(sol.y(1, 1), full.y(1, 1), "{m}");
        }
        // With throw(true) the same failure is the error.
        let mut s = Solver::new(m, tight().max_num_steps(budget)).unwrap();
        assert_eq!(&s.solve(&mut f, &ts, &y0).unwrap_err(), fail, "{m}");
    }
}

// ---------------------------------------------------------------- InvalidTolerance

#[test]
fn invalid_scalar_tolerances_are_rejected_at_construction() {
    let cases: [(SolveOptions<f64>, &str, f64); 4] = [
        (SolveOptions::default().rtol(-1e-3), "rtol", -1e-3),
        (SolveOptions::default().atol(f64::NAN), "atol", f64::NAN),
        (SolveOptions::default().rtol(f64::INFINITY), "rtol", f64::INFINITY),
        (SolveOptions::default().atol(-0.5), "atol", -0.5),
    ];
    for (opts, want_name, want_value) in cases {
        let e = Solver::new(Method::Dopri5, opts).unwrap_err();
        let OdeError::InvalidTolerance {
            ref name,
            value,
            reason,
        } = e
        else {
            panic!("expected InvalidTolerance, got {e:?}");
        };
        assert_eq!(name, want_name);
        assert!(value == want_value || (value.is_nan() && want_value.is_nan()));
        assert_eq!(reason, "tolerances must be finite and non-negative");
        assert_contains(
            &e.to_string(),
            &[
                &format!("invalid tolerance {want_name} = {want_value}"),
                "finite and non-negative",
            ],
        );
    }
}

#[test]
fn invalid_tolerances_set_after_construction_are_rejected_at_solve() {
    let mut f = Problem::Harmonic.field::<f64>();
    let mut s = Solver::new(Method::Dopri5, SolveOptions::default()).unwrap();
    s.options_mut().rtol = Tolerance::Scalar(-1.0);
    let e = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap_err();
    assert_contains(&e.to_string(), &["invalid tolerance rtol = -1"]);
}

#[test]
fn both_tolerances_zero_is_rejected() {
    let mut f = Problem::Harmonic.field::<f64>();
    // Scalar tolerances: known to be hopeless before any state is seen.
    let e = Solver::new(Method::Dopri5, SolveOptions::default().rtol(0.0).atol(0.0))
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(e, OdeError::InvalidTolerance { ref name, value, .. } if name == "atol[0]" && value == 0.0),
        "{e:?}"
    );
    assert_contains(
        &e.to_string(),
        &[
            "invalid tolerance atol[0] = 0",
            "rtol and atol are both zero",
            "set atol > 0",
        ],
    );
    // Set on a built solver, caught at solve time.
    let mut s = Solver::new(Method::Dopri5, SolveOptions::default()).unwrap();
    s.options_mut().rtol = Tolerance::Scalar(0.0);
    s.options_mut().atol = Tolerance::Scalar(0.0);
    assert_eq!(s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap_err(), e);
    // Per component: only component 1 has both zero.
    s.options_mut().rtol = Tolerance::PerComponent(vec![1e-6, 0.0]);
    s.options_mut().atol = Tolerance::PerComponent(vec![0.0, 0.0]);
    let e = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap_err();
    assert_contains(&e.to_string(), &["invalid tolerance atol[1] = 0", "both zero"]);
    // rtol zero alone is fine.
    s.options_mut().atol = Tolerance::Scalar(1e-9);
    s.options_mut().rtol = Tolerance::Scalar(0.0);
    let sol = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap();
    assert!((sol.y(1, 0)[0] - 1.0f64.cos()).abs() < 1e-7);
}

#[test]
fn per_component_tolerance_with_a_bad_entry_names_the_component() {
    let mut f = Problem::Harmonic.field::<f64>();
    let mut s = Solver::new(Method::Dopri5, SolveOptions::default()).unwrap();
    s.options_mut().atol = Tolerance::PerComponent(vec![1e-6, -1.0]);
    let e = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap_err();
    assert_eq!(
        e,
        OdeError::InvalidTolerance {
            name: "atol[1]".into(),
            value: -1.0,
            reason: "tolerances must be finite and non-negative"
        }
    );
    assert_contains(&e.to_string(), &["invalid tolerance atol[1] = -1"]);
    s.options_mut().atol = Tolerance::Scalar(1e-6);
    s.options_mut().rtol = Tolerance::PerComponent(vec![f64::NAN, 1e-6]);
    let e = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap_err();
    assert_contains(&e.to_string(), &["invalid tolerance rtol[0] = NaN"]);
    // A valid per-component tolerance solves.
    s.options_mut().rtol = Tolerance::PerComponent(vec![1e-9, 1e-9]);
    s.options_mut().atol = Tolerance::PerComponent(vec![1e-11, 1e-11]);
    let sol = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap();
    assert!((sol.y(1, 0)[0] - 1.0f64.cos()).abs() < 1e-8);
}

/// Per-component tolerances are checked for their values when the solver is built, and for
/// their length once the state dimension is known (an early version rejected them all).
#[test]
fn per_component_tolerance_is_accepted_at_construction() {
    let opts = SolveOptions::<f64>::default()
        .rtol(vec![1e-9, 1e-9])
        .atol(vec![1e-11, 1e-11]);
    let mut s = Solver::new(Method::Dopri5, opts).expect("valid per-component tolerances");
    let mut f = Problem::Harmonic.field::<f64>();
    let sol = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap();
    assert!((sol.y(1, 0)[0] - 1.0f64.cos()).abs() < 1e-8);
    let opts = SolveOptions::<f64>::default().atol(vec![1e-6, -1.0]);
    let e = Solver::new(Method::Dopri5, opts).map(|_| ()).unwrap_err();
    assert_contains(&e.to_string(), &["invalid tolerance atol[1] = -1"]);
}

// ---------------------------------------------------------------- ShapeMismatch

#[test]
fn y0_length_not_a_multiple_of_dim() {
    let mut f = Problem::Harmonic.field::<f64>();
    let mut s = Solver::new(Method::Dopri5, SolveOptions::default()).unwrap();
    let e = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0, 1.0, 0.0, 1.0]).unwrap_err();
    assert_eq!(
        e,
        OdeError::ShapeMismatch {
            what: "y0 (batch × dim)",
            expected: 6,
            got: 5
        }
    );
    assert_contains(
        &e.to_string(),
        &["shape mismatch for y0 (batch × dim): expected 6 values, got 5"],
    );
    let e = s.solve(&mut f, &[0.0, 1.0], &[]).unwrap_err();
    assert_contains(
        &e.to_string(),
        &["shape mismatch for y0 (batch × dim): expected 2 values, got 0"],
    );
}

#[test]
fn zero_dimensional_field() {
    let mut f = FnField::new(0, |_t: f64, _y: &[f64], _dy: &mut [f64]| {});
    let mut s = Solver::new(Method::Rk4, SolveOptions::default()).unwrap();
    let e = s.solve(&mut f, &[0.0, 1.0], &[]).unwrap_err();
    assert_contains(
        &e.to_string(),
        &["shape mismatch for vector field dimension: expected 1 values, got 0"],
    );
}

#[test]
fn per_component_tolerance_of_wrong_length() {
    let mut f = Problem::Harmonic.field::<f64>();
    let mut s = Solver::new(Method::Dopri5, SolveOptions::default()).unwrap();
    s.options_mut().rtol = Tolerance::PerComponent(vec![1e-6; 3]);
    let e = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap_err();
    assert_eq!(
        e,
        OdeError::ShapeMismatch {
            what: "rtol (per component)",
            expected: 2,
            got: 3
        }
    );
    assert_contains(
        &e.to_string(),
        &["shape mismatch for rtol (per component): expected 2 values, got 3"],
    );
    s.options_mut().rtol = Tolerance::Scalar(1e-6);
    s.options_mut().atol = Tolerance::PerComponent(vec![1e-6]);
    let e = s.solve(&mut f, &[0.0, 1.0], &[1.0, 0.0]).unwrap_err();
    assert_contains(
        &e.to_string(),
        &["shape mismatch for atol (per component): expected 2 values, got 1"],
    );
}

#[test]
fn solve_into_output_buffer_of_wrong_length() {
    let mut f = Problem::Harmonic.field::<f64>();
    let mut s = Solver::new(Method::Dopri5, SolveOptions::default()).unwrap();
    // 3 times × 2 samples × 2 components = 12.
    let y0 = [1.0, 0.0, 0.5, 0.5];
    for len in [11, 13, 0] {
        let mut out = vec![0.0; len];
        let e = s.solve_into(&mut f, &[0.0, 0.5, 1.0], &y0, &mut out).unwrap_err();
        assert_eq!(
            e,
            OdeError::ShapeMismatch {
                what: "output buffer (times × batch × dim)",
                expected: 12,
                got: len
            }
        );
        assert_contains(
            &e.to_string(),
            &[&format!(
                "shape mismatch for output buffer (times × batch × dim): expected 12 values, got {len}"
            )],
        );
    }
    let mut out = vec![0.0; 12];
    let report = s.solve_into(&mut f, &[0.0, 0.5, 1.0], &y0, &mut out).unwrap();
    assert!(report.failures.is_empty());
    assert!((out[8] - 1.0f64.cos()).abs() < 1e-4, "{out:?}");
}

// ---------------------------------------------------------------- NonMonotonicTimes

#[test]
fn non_monotonic_times() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    // (times, index, prev, next, expected message fragment)
    let cases: [(&[f64], usize, f64, f64, &str); 5] = [
        (&[0.0, 1.0, 1.0], 2, 1.0, 1.0, "ts[2] = 1 after ts[1] = 1"),
        (&[0.0, 1.0, 0.5], 2, 1.0, 0.5, "ts[2] = 0.5 after ts[1] = 1"),
        (&[1.0, 0.0, 0.5], 2, 0.0, 0.5, "ts[2] = 0.5 after ts[1] = 0"),
        (&[2.0, 2.0], 1, 2.0, 2.0, "ts[1] = 2 after ts[0] = 2"),
        (&[0.0, 2.0, 1.0, 3.0], 2, 2.0, 1.0, "ts[2] = 1 after ts[1] = 2"),
    ];
    // NaN and infinite times get their own error, which says the time is not finite.
    for (ts, index) in [
        (&[0.0, nan, 1.0][..], 1usize),
        (&[nan, 0.0, 1.0][..], 0),
        (&[0.0, 1.0, 2.0, inf][..], 3),
    ] {
        let mut f = Problem::ExpDecay.field::<f64>();
        let e = Solver::new(Method::Dopri5, SolveOptions::default())
            .unwrap()
            .solve(&mut f, ts, &[1.0])
            .unwrap_err();
        let OdeError::NonFiniteTime { index: got, value } = e else {
            panic!("{ts:?}: expected NonFiniteTime, got {e:?}");
        };
        assert_eq!(got, index, "{ts:?}");
        assert!(!value.is_finite());
        assert_contains(
            &e.to_string(),
            &[&format!("output time ts[{index}] = "), "is not finite"],
        );
    }
    let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    for m in [Method::Dopri5, Method::Rk4] {
        for (ts, want_index, want_prev, want_next, frag) in cases {
            let mut f = Problem::ExpDecay.field::<f64>();
            let mut s = Solver::new(m, SolveOptions::default()).unwrap();
            let e = s.solve(&mut f, ts, &[1.0]).unwrap_err();
            let OdeError::NonMonotonicTimes { index, prev, next } = e else {
                panic!("{ts:?}: expected NonMonotonicTimes, got {e:?}");
            };
            assert_eq!(index, want_index, "{ts:?}");
            assert!(same(prev, want_prev) && same(next, want_next), "{ts:?}: {e:?}");
            assert_contains(&e.to_string(), &["strictly increasing or strictly decreasing", frag]);
        }
    }
}

// ---------------------------------------------------------------- TooFewTimes

#[test]
fn too_few_times() {
    let mut f = Problem::ExpDecay.field::<f64>();
    let mut s = Solver::new(Method::Dopri5, SolveOptions::default()).unwrap();
    for (ts, got) in [(&[][..], 0usize), (&[0.0][..], 1)] {
        let e = s.solve(&mut f, ts, &[1.0]).unwrap_err();
        assert_eq!(e, OdeError::TooFewTimes { got });
        assert_contains(
            &e.to_string(),
            &[
                "need at least two output times",
                "the first is the initial time",
                &format!("got {got}"),
            ],
        );
    }
}

// ---------------------------------------------------------------- UnknownSolver

#[test]
fn unknown_solver() {
    for name in ["foo", "", "Dopri5", "rk45"] {
        let e = name.parse::<Method>().unwrap_err();
        let OdeError::UnknownSolver {
            name: ref got,
            ref known,
        } = e
        else {
            panic!("expected UnknownSolver, got {e:?}");
        };
        assert_eq!(got, name);
        let msg = e.to_string();
        assert_contains(&msg, &[&format!("unknown solver '{name}': expected one of ")]);
        for m in Method::ALL {
            assert!(known.split(", ").any(|k| k == m.name()), "{known} lacks {m}");
            assert_contains(&msg, &[m.name()]);
        }
    }
    // The aliases and every canonical name parse.
    for m in Method::ALL {
        assert_eq!(m.name().parse::<Method>().unwrap(), m);
    }
    assert_eq!("adaptive_heun".parse::<Method>().unwrap(), Method::Heun2);
    assert_eq!("rk4_38".parse::<Method>().unwrap(), Method::Rk4);
}

// ---------------------------------------------------------------- InvalidOption

fn expect_invalid_option(opts: SolveOptions<f64>, want_name: &str, want_value: f64, frag: &str) {
    // Rejected when the solver is built ...
    let e = Solver::new(Method::Dopri5, opts.clone()).map(|_| ()).unwrap_err();
    let OdeError::InvalidOption { name, value, .. } = e else {
        panic!("{want_name}: expected InvalidOption, got {e:?}");
    };
    assert_eq!(name, want_name);
    assert!(
        value == want_value || (value.is_nan() && want_value.is_nan()),
        "{want_name}: value {value}"
    );
    assert_contains(
        &e.to_string(),
        &[&format!("invalid option {want_name} = {want_value}: "), frag],
    );
    // ... and when set on a built solver, at solve time.
    let mut s = Solver::new(Method::Dopri5, SolveOptions::default()).unwrap();
    *s.options_mut() = opts;
    let mut f = Problem::ExpDecay.field::<f64>();
    // (Compared as text: a NaN value makes the errors unequal under PartialEq.)
    let e2 = s.solve(&mut f, &[0.0, 1.0], &[1.0]).unwrap_err();
    assert_eq!(e2.to_string(), e.to_string());
}

#[test]
fn invalid_options() {
    let d = SolveOptions::<f64>::default;
    let ctl = |c: PidController| d().controller(c);
    let pid = PidController::default();
    expect_invalid_option(
        ctl(PidController { safety: 0.0, ..pid }),
        "controller.safety",
        0.0,
        "must be in (0, 1]",
    );
    expect_invalid_option(
        ctl(PidController { safety: 1.5, ..pid }),
        "controller.safety",
        1.5,
        "must be in (0, 1]",
    );
    expect_invalid_option(
        ctl(PidController {
            safety: f64::NAN,
            ..pid
        }),
        "controller.safety",
        f64::NAN,
        "must be in (0, 1]",
    );
    expect_invalid_option(
        ctl(PidController { min_factor: 0.0, ..pid }),
        "controller.min_factor",
        0.0,
        "must be in (0, 1)",
    );
    expect_invalid_option(
        ctl(PidController { min_factor: 1.0, ..pid }),
        "controller.min_factor",
        1.0,
        "must be in (0, 1)",
    );
    expect_invalid_option(
        ctl(PidController { max_factor: 1.0, ..pid }),
        "controller.max_factor",
        1.0,
        "must be finite and > 1",
    );
    expect_invalid_option(
        ctl(PidController {
            max_factor: f64::INFINITY,
            ..pid
        }),
        "controller.max_factor",
        f64::INFINITY,
        "must be finite and > 1",
    );
    expect_invalid_option(d().step_size(0.0), "step_size", 0.0, "must be finite and non-zero");
    expect_invalid_option(
        d().step_size(f64::NAN),
        "step_size",
        f64::NAN,
        "must be finite and non-zero",
    );
    expect_invalid_option(d().first_step(0.0), "first_step", 0.0, "must be finite and non-zero");
    expect_invalid_option(
        d().max_step(f64::INFINITY),
        "max_step",
        f64::INFINITY,
        "must be finite and non-zero",
    );
    expect_invalid_option(d().min_step(-1.0), "min_step", -1.0, "must be finite and non-negative");
    expect_invalid_option(
        d().min_step(f64::NAN),
        "min_step",
        f64::NAN,
        "must be finite and non-negative",
    );
    expect_invalid_option(d().max_num_steps(0), "max_num_steps", 0.0, "must be at least 1");
    // The PI controller and a negative step size (the direction comes from ts) are fine.
    Solver::new(Method::Dopri5, ctl(PidController::pi())).unwrap();
    Solver::new(Method::Rk4, d().step_size(-0.1)).unwrap();
}

#[test]
fn bad_step_mode_string() {
    for s in ["foo", "Shared", ""] {
        let e = s.parse::<StepMode>().unwrap_err();
        assert!(matches!(e, OdeError::InvalidChoice { name: "step mode", .. }), "{e:?}");
        assert_contains(
            &e.to_string(),
            &[
                &format!("invalid step mode '{s}'"),
                "expected one of shared, per_sample",
            ],
        );
    }
    for mode in MODES {
        assert_eq!(mode.name().parse::<StepMode>().unwrap(), mode);
    }
    assert_eq!("per-sample".parse::<StepMode>().unwrap(), StepMode::PerSample);
}

// ---------------------------------------------------------------- InvalidTableau

#[test]
fn invalid_tableau() {
    // Heun's method with the wrong c[1].
    let e = ButcherTableau::new(
        "my_heun",
        vec![0.0, 0.5],
        vec![vec![], vec![1.0]],
        vec![0.5, 0.5],
        None,
        2,
        None,
        Interpolation::Hermite,
    )
    .unwrap_err();
    assert!(matches!(e, OdeError::InvalidTableau { .. }), "{e:?}");
    assert_contains(&e.to_string(), &["invalid Butcher tableau 'my_heun'", "row 1 of a"]);
    // The corrected tableau builds and runs.
    let t = ButcherTableau::new(
        "my_heun",
        vec![0.0, 1.0],
        vec![vec![], vec![1.0]],
        vec![0.5, 0.5],
        None,
        2,
        None,
        Interpolation::Hermite,
    )
    .unwrap();
    let mut s = Solver::from_tableau(t, SolveOptions::default().step_size(0.01)).unwrap();
    let mut f = Problem::ExpDecay.field::<f64>();
    let sol = s.solve(&mut f, &[0.0, 1.0], &[1.0]).unwrap();
    assert!((sol.y(1, 0)[0] - (-0.5f64).exp()).abs() < 1e-5);
}
