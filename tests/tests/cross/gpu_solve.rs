//! GPU solves and adjoint gradients against the CPU reference (f64, per-sample step control),
//! on batch sizes that are not multiples of the workgroup sizes, with seeded random weights.
//!
//! Stated tolerances (f32 on the GPU against f64 on the CPU):
//! - fixed-step methods (same steps on both): every output within `2e-5 + 2e-4·|ref|`;
//! - adaptive methods at rtol = 1e-6, atol = 1e-7: every output within `1e-4 + 1e-3·|ref|`
//!   (the two may accept or reject a borderline step differently; both are within tolerance of
//!   the true solution), and per-sample accepted step counts within ±2 of the CPU's;
//! - adjoint gradients: every entry within `5e-4·max|ref|` of the tensor (or state) it belongs to.

use ode_core::{AdjointNorm, AdjointSolver, ControllerKind, Method, Mlp, OdeError, SolveOptions, Solver, StepMode};
use ode_gpu::{GpuError, GpuSolver};
use ode_tests::{gpu_or_skip, seeded_mlp, seeded_values, to_f32, worst_ratio};

const BATCHES: [usize; 5] = [1, 7, 64, 1000, 5000];
const LATENT: usize = 6;
const HIDDEN: usize = 24;

fn times(n: usize, dt: f64) -> Vec<f64> {
    (0..n).map(|k| k as f64 * dt).collect()
}

/// Tight tolerances (rtol 1e-6, atol 1e-7) for adaptive methods, the defaults otherwise; in f64
/// for the CPU reference and f32 for the GPU.
fn options_for(m: Method) -> (SolveOptions<f64>, SolveOptions<f32>) {
    if m.tableau().is_adaptive() {
        (
            SolveOptions::<f64>::default().rtol(1e-6).atol(1e-7),
            SolveOptions::<f32>::default().rtol(1e-6).atol(1e-7),
        )
    } else {
        (SolveOptions::<f64>::default(), SolveOptions::<f32>::default())
    }
}

fn cpu_solve(
    mlp: &Mlp<f64>,
    m: Method,
    opts: SolveOptions<f64>,
    ts: &[f64],
    y0: &[f64],
) -> (Vec<f64>, ode_core::Report) {
    let mut f = mlp.clone();
    let mut out = vec![0.0; ts.len() * y0.len()];
    let rep = Solver::new(m, opts)
        .unwrap()
        .solve_into(&mut f, ts, y0, &mut out)
        .unwrap();
    (out, rep)
}

#[test]
fn every_solver_matches_the_cpu_reference() {
    let Some(ctx) = gpu_or_skip("every_solver_matches_the_cpu_reference") else {
        return;
    };
    let mlp = seeded_mlp(LATENT, HIDDEN, 7, 1.5);
    let ts = times(6, 0.25);
    let ts32 = to_f32(&ts);
    for m in Method::ALL {
        let adaptive = m.tableau().is_adaptive();
        let (o64, o32) = options_for(m);
        let mut gpu = GpuSolver::new(ctx.clone(), m, o32, LATENT, HIDDEN, to_f32(mlp.params())).unwrap();
        for &batch in &BATCHES {
            // Fewer large batches for the slower methods keep the test short on lavapipe.
            if batch == 5000 && !matches!(m, Method::Euler | Method::Rk4 | Method::Dopri5) {
                continue;
            }
            let y0 = seeded_values(batch * LATENT, batch as u64 + 3, 2.0);
            let (want, rep) = cpu_solve(&mlp, m, o64.clone(), &ts, &y0);
            let mut got = vec![0.0f32; want.len()];
            let grep = gpu.solve_into(&ts32, &to_f32(&y0), &mut got).unwrap();
            let (rtol, atol) = if adaptive { (1e-3, 1e-4) } else { (2e-4, 2e-5) };
            let r = worst_ratio(&got, &want, rtol, atol);
            assert!(r <= 1.0, "{m:?} batch {batch}: worst ratio {r}");
            assert_eq!(grep.stats.per_sample.len(), batch);
            for (i, (g, c)) in grep.stats.per_sample.iter().zip(&rep.stats.per_sample).enumerate() {
                let d = g.accepted.abs_diff(c.accepted);
                assert!(
                    d <= 2,
                    "{m:?} batch {batch} sample {i}: GPU {} vs CPU {} accepted steps",
                    g.accepted,
                    c.accepted
                );
            }
        }
    }
}

#[test]
fn fixed_step_sizes_and_hermite_output_match() {
    let Some(ctx) = gpu_or_skip("fixed_step_sizes_and_hermite_output_match") else {
        return;
    };
    // A step size that does not divide the output spacing: outputs fall inside steps and are
    // interpolated (Hermite for rk4, the dense polynomial for dopri5).
    let mlp = seeded_mlp(LATENT, HIDDEN, 11, 1.0);
    let ts = times(5, 0.3);
    for m in [Method::Rk4, Method::Euler, Method::Dopri5, Method::Midpoint] {
        let o64 = SolveOptions::<f64>::default().step_size(0.07);
        let o32 = SolveOptions::<f32>::default().step_size(0.07);
        let mut gpu = GpuSolver::new(ctx.clone(), m, o32, LATENT, HIDDEN, to_f32(mlp.params())).unwrap();
        let y0 = seeded_values(37 * LATENT, 5, 1.0);
        let (want, _) = cpu_solve(&mlp, m, o64, &ts, &y0);
        let mut got = vec![0.0f32; want.len()];
        gpu.solve_into(&to_f32(&ts), &to_f32(&y0), &mut got).unwrap();
        let r = worst_ratio(&got, &want, 2e-4, 2e-5);
        assert!(r <= 1.0, "{m:?} with step_size: worst ratio {r}");
    }
}

#[test]
fn per_sample_steps_and_status() {
    let Some(ctx) = gpu_or_skip("per_sample_steps_and_status") else {
        return;
    };
    // Strong weights and spread initial states: samples need different numbers of steps.
    let mlp = seeded_mlp(LATENT, HIDDEN, 13, 6.0);
    let ts = times(4, 0.5);
    let batch = 300;
    let y0 = seeded_values(batch * LATENT, 17, 3.0);
    // Tolerances well above f32 rounding, so the error estimates of both agree closely.
    let o64 = SolveOptions::<f64>::default().rtol(1e-4).atol(1e-6);
    let (_, rep) = cpu_solve(&mlp, Method::Dopri5, o64.clone(), &ts, &y0);
    let counts: Vec<usize> = rep.stats.per_sample.iter().map(|s| s.accepted + s.rejected).collect();
    let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!(hi > lo + 8, "the problem should spread step counts ({lo}..{hi})");
    // A step budget between the easy and the hard samples: the hard ones fail alone.
    let budget = (lo + hi) / 2;
    let o32 = SolveOptions::<f32>::default()
        .rtol(1e-4)
        .atol(1e-6)
        .max_num_steps(budget)
        .throw(false);
    let mut gpu = GpuSolver::new(ctx.clone(), Method::Dopri5, o32, LATENT, HIDDEN, to_f32(mlp.params())).unwrap();
    let mut got = vec![0.0f32; ts.len() * y0.len()];
    let grep = gpu.solve_into(&to_f32(&ts), &to_f32(&y0), &mut got).unwrap();
    let failed: Vec<usize> = grep
        .failures
        .iter()
        .map(|e| match e {
            OdeError::MaxStepsExceeded { sample, .. } => *sample,
            other => panic!("unexpected failure {other}"),
        })
        .collect();
    let w = batch * LATENT;
    for (r, &c) in counts.iter().enumerate() {
        if c.abs_diff(budget) <= 3 {
            continue; // borderline: either outcome is right
        }
        let should_fail = c > budget;
        assert_eq!(
            failed.contains(&r),
            should_fail,
            "sample {r}: CPU needs {c} attempts, budget {budget}"
        );
        let last = &got[(ts.len() - 1) * w + r * LATENT..(ts.len() - 1) * w + (r + 1) * LATENT];
        assert_eq!(
            last.iter().all(|v| v.is_nan()),
            should_fail,
            "sample {r}: NaN outputs iff failed"
        );
    }
    assert!(!failed.is_empty() && failed.len() < batch);
    // With throw = true the first failure is the error.
    gpu.set_options(
        SolveOptions::<f32>::default()
            .rtol(1e-4)
            .atol(1e-6)
            .max_num_steps(budget),
    )
    .unwrap();
    let err = gpu.solve_into(&to_f32(&ts), &to_f32(&y0), &mut got).unwrap_err();
    assert!(matches!(err, GpuError::Ode(OdeError::MaxStepsExceeded { .. })), "{err}");
}

#[test]
fn adjoint_gradients_match_the_cpu_adjoint() {
    let Some(ctx) = gpu_or_skip("adjoint_gradients_match_the_cpu_adjoint") else {
        return;
    };
    let mlp = seeded_mlp(LATENT, HIDDEN, 19, 1.5);
    let ts = times(5, 0.25);
    let ts32 = to_f32(&ts);
    for m in [Method::Dopri5, Method::Rk4, Method::Euler] {
        let (o64, o32) = options_for(m);
        let mut gpu = GpuSolver::new(ctx.clone(), m, o32, LATENT, HIDDEN, to_f32(mlp.params())).unwrap();
        for &batch in &BATCHES {
            if batch == 5000 && m != Method::Dopri5 {
                continue;
            }
            let y0 = seeded_values(batch * LATENT, batch as u64 + 101, 1.5);
            let (ys, _) = cpu_solve(&mlp, m, o64.clone(), &ts, &y0);
            let gout = seeded_values(ys.len(), batch as u64 + 7, 1.0);
            let mut f = mlp.clone();
            let mut adj =
                AdjointSolver::new(m, o64.clone().step_mode(StepMode::PerSample), AdjointNorm::Seminorm).unwrap();
            let mut gy0 = vec![0.0; y0.len()];
            let mut gp = vec![0.0; mlp.num_params()];
            let groups: Vec<std::ops::Range<usize>> = mlp
                .tensors()
                .iter()
                .map(|(_, s, o)| *o..o + s.iter().product::<usize>())
                .collect();
            adj.backward(&mut f, &ts, &ys, &gout, &mut gy0, &mut gp, &groups)
                .unwrap();
            let mut gy0_gpu = vec![0.0f32; y0.len()];
            let mut gp_gpu = vec![0.0f32; mlp.num_params()];
            gpu.adjoint_backward(&ts32, &to_f32(&ys), &to_f32(&gout), &mut gy0_gpu, &mut gp_gpu)
                .unwrap();
            let s = gy0.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            let r = worst_ratio(&gy0_gpu, &gy0, 0.0, 5e-4 * s);
            assert!(r <= 1.0, "{m:?} batch {batch}: initial-state gradient ratio {r}");
            for g in &groups {
                let s = gp[g.clone()].iter().fold(0.0f64, |a, x| a.max(x.abs()));
                let r = worst_ratio(&gp_gpu[g.clone()], &gp[g.clone()], 0.0, 5e-4 * s.max(1e-30));
                assert!(r <= 1.0, "{m:?} batch {batch}: parameter gradient {g:?} ratio {r}");
            }
        }
    }
}

#[test]
fn chunked_batches_equal_one_chunk() {
    let Some(ctx) = gpu_or_skip("chunked_batches_equal_one_chunk") else {
        return;
    };
    let mlp = seeded_mlp(LATENT, HIDDEN, 23, 1.0);
    let ts = to_f32(&times(4, 0.3));
    let y0 = to_f32(&seeded_values(1000 * LATENT, 29, 1.0));
    let params = to_f32(mlp.params());
    let mut one = GpuSolver::new(
        ctx.clone(),
        Method::Dopri5,
        Default::default(),
        LATENT,
        HIDDEN,
        params.clone(),
    )
    .unwrap();
    let mut chunked = GpuSolver::new(ctx.clone(), Method::Dopri5, Default::default(), LATENT, HIDDEN, params).unwrap();
    chunked.set_max_rows_per_chunk(300);
    let (mut a, mut b) = (vec![0.0f32; 4 * y0.len()], vec![0.0f32; 4 * y0.len()]);
    let ra = one.solve_into(&ts, &y0, &mut a).unwrap();
    let rb = chunked.solve_into(&ts, &y0, &mut b).unwrap();
    assert_eq!(a, b, "per-sample results do not depend on the chunking");
    assert_eq!(ra.stats.per_sample, rb.stats.per_sample);
    // Gradients too (parameter sums in another order: equal to f32 rounding).
    let gout = to_f32(&seeded_values(a.len(), 31, 1.0));
    let (mut ga, mut gb) = (vec![0.0f32; y0.len()], vec![0.0f32; y0.len()]);
    let (mut pa, mut pb) = (vec![0.0f32; mlp.num_params()], vec![0.0f32; mlp.num_params()]);
    one.adjoint_backward(&ts, &a, &gout, &mut ga, &mut pa).unwrap();
    chunked.adjoint_backward(&ts, &b, &gout, &mut gb, &mut pb).unwrap();
    assert_eq!(ga, gb);
    for (x, y) in pa.iter().zip(&pb) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let Some(ctx) = gpu_or_skip("bad_input_is_an_error_not_a_panic") else {
        return;
    };
    let params = vec![0.1f32; Mlp::<f32>::param_count(3, 5)];
    let shared = SolveOptions::<f32>::default().step_mode(StepMode::Shared);
    let e = GpuSolver::new(ctx.clone(), Method::Dopri5, shared, 3, 5, params.clone()).unwrap_err();
    assert!(e.to_string().contains("per_sample"), "{e}");
    let torchdiffeq = SolveOptions::<f32>::default().controller_kind(ControllerKind::Torchdiffeq);
    let e = GpuSolver::new(ctx.clone(), Method::Dopri5, torchdiffeq, 3, 5, params.clone()).unwrap_err();
    assert!(e.to_string().contains("controller = default"), "{e}");
    let e = GpuSolver::new(ctx.clone(), Method::Dopri5, Default::default(), 3, 5, vec![0.0; 4]).unwrap_err();
    assert!(matches!(e, GpuError::Ode(OdeError::ShapeMismatch { .. })), "{e}");
    let mut gpu = GpuSolver::new(ctx, Method::Dopri5, Default::default(), 3, 5, params).unwrap();
    let mut out = vec![0.0f32; 6];
    let e = gpu.solve_into(&[0.0, 1.0], &[1.0, 2.0], &mut out).unwrap_err();
    assert!(matches!(e, GpuError::Ode(OdeError::ShapeMismatch { .. })), "{e}");
    let e = gpu.solve_into(&[0.0, 0.0], &[1.0, 2.0, 3.0], &mut out).unwrap_err();
    assert!(matches!(e, GpuError::Ode(OdeError::NonMonotonicTimes { .. })), "{e}");
    let e = gpu
        .solve_into(&[0.0, 1.0], &[1.0, f32::NAN, 3.0], &mut out)
        .unwrap_err();
    assert!(matches!(e, GpuError::Ode(OdeError::NonFinite { .. })), "{e}");
}

#[test]
fn both_matrix_schedules_agree() {
    let Some(ctx) = gpu_or_skip("both_matrix_schedules_agree") else {
        return;
    };
    // The tiled schedule (GPUs' default) and the row schedule (CPU adapters' default) compute the
    // same products: solves and adjoint gradients agree to f32 rounding.
    let mlp = seeded_mlp(LATENT, HIDDEN, 41, 1.5);
    let ts = to_f32(&times(4, 0.3));
    // dopri5 (FSAL) and rk4 (not FSAL: the step-end derivative path) on both schedules; the
    // tiled one fuses the stage combination into the first layer.
    for (method, batch) in [
        (Method::Dopri5, 7usize),
        (Method::Dopri5, 300),
        (Method::Dopri5, 1500),
        (Method::Rk4, 7),
        (Method::Rk4, 300),
    ] {
        let y0 = to_f32(&seeded_values(batch * LATENT, 43, 1.0));
        let mut outs = Vec::new();
        for schedule in [ode_gpu::GemmSchedule::Tiled, ode_gpu::GemmSchedule::Rows] {
            let mut g = GpuSolver::new(
                ctx.clone(),
                method,
                Default::default(),
                LATENT,
                HIDDEN,
                to_f32(mlp.params()),
            )
            .unwrap();
            g.set_gemm_schedule(schedule);
            let mut out = vec![0.0f32; ts.len() * y0.len()];
            g.solve_into(&ts, &y0, &mut out).unwrap();
            let gout = to_f32(&seeded_values(out.len(), 47, 1.0));
            let mut gy = vec![0.0f32; y0.len()];
            let mut gp = vec![0.0f32; mlp.num_params()];
            g.adjoint_backward(&ts, &out, &gout, &mut gy, &mut gp).unwrap();
            outs.push((out, gy, gp));
        }
        let close = |a: &[f32], b: &[f32], what: &str| {
            let s = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-4 * s + 1e-6,
                    "{method:?} batch {batch} {what}: {x} vs {y}"
                );
            }
        };
        close(&outs[0].0, &outs[1].0, "outputs");
        close(&outs[0].1, &outs[1].1, "state gradient");
        close(&outs[0].2, &outs[1].2, "parameter gradient");
    }
}
