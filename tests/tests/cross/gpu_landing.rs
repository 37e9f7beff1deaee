//! On the GPU (f32, per-sample steps, increasing output times: what it runs), steps that end within round-off of the point
//! they aim at land on it: a first step placed 1 to 64 ulps short of or past the end of a forward
//! solve, or of the first output time the adjoint's backward solve reaches, never fails, and the
//! results match the CPU's f64 reference. Before the fix, gaps of 1 to 3 ulps failed with "step
//! size underflow". The field is the reference MLP with tiny weights, so its error estimates are
//! tiny and the placed first step is accepted.

use ode_core::{AdjointNorm, AdjointSolver, Method, Mlp, SNAP_ULPS, Scalar, SolveOptions, Solver, StepMode};
use ode_gpu::GpuSolver;
use ode_tests::{gpu_or_skip, seeded_mlp, seeded_values, to_f32, worst_ratio};
use proptest::prelude::*;
use std::sync::Arc;

const LATENT: usize = 4;
const HIDDEN: usize = 8;
const BATCH: usize = 3;

/// A first step from `t0` that ends exactly `k` ulps short of `aim` (`k < 0`: past it), in f32.
fn placed_step(t0: f32, aim: f32, k: i64) -> Option<f32> {
    let end = aim.ulps(if aim > t0 { -k } else { k });
    let mut h = end - t0;
    for _ in 0..16 {
        let got = t0 + h;
        if got == end {
            return Some(h.abs());
        }
        h = h.next_toward(got < end);
    }
    None
}

#[derive(Debug, Clone)]
struct Case {
    method: Method,
    ts: Vec<f64>,
    k: i64,
}

fn case() -> impl Strategy<Value = Case> {
    let adaptive: Vec<Method> = Method::ALL.into_iter().filter(|m| m.tableau().is_adaptive()).collect();
    let grids = vec![
        vec![0.0, 0.45, 1.0],
        vec![0.0, 0.5, 1.1, 1.2],
        vec![0.45, 1.1, 1.2],
        vec![1.0, 2.0],
        vec![0.3, 24.0],
    ];
    (
        prop::sample::select(adaptive),
        prop::sample::select(grids),
        1i64..=64,
        any::<bool>(),
    )
        .prop_map(|(method, ts, k, past)| Case {
            method,
            ts,
            k: if past { -k } else { k },
        })
}

struct Fixture {
    ctx: Arc<ode_gpu::GpuContext>,
    mlp: Mlp<f64>,
    y0: Vec<f64>,
}

fn fixture(test: &str) -> Option<Fixture> {
    let ctx = gpu_or_skip(test)?;
    Some(Fixture {
        ctx,
        mlp: seeded_mlp(LATENT, HIDDEN, 41, 1e-3),
        y0: seeded_values(BATCH * LATENT, 43, 1.0),
    })
}

/// The forward solve's first step ends `k` ulps from the last output time.
fn forward(fx: &Fixture, c: &Case) -> Result<bool, TestCaseError> {
    let ts32 = to_f32(&c.ts);
    let Some(h) = placed_step(ts32[0], *ts32.last().unwrap(), c.k) else {
        return Ok(false);
    };
    let opts = SolveOptions::<f32>::default().first_step(h);
    let mut gpu = GpuSolver::new(fx.ctx.clone(), c.method, opts, LATENT, HIDDEN, to_f32(fx.mlp.params())).unwrap();
    let mut got = vec![0.0f32; c.ts.len() * fx.y0.len()];
    let rep = gpu
        .solve_into(&ts32, &to_f32(&fx.y0), &mut got)
        .map_err(|e| TestCaseError::fail(format!("{c:?}: GPU forward failed: {e}")))?;
    let mut want = vec![0.0f64; got.len()];
    let o64 = SolveOptions::<f64>::default().first_step(h as f64);
    Solver::new(c.method, o64)
        .unwrap()
        .solve_into(&mut fx.mlp.clone(), &c.ts, &fx.y0, &mut want)
        .unwrap();
    let r = worst_ratio(&got, &want, 1e-4, 1e-5);
    prop_assert!(r <= 1.0, "{:?}: outputs differ from the CPU (ratio {})", c, r);
    if c.k <= SNAP_ULPS as i64 {
        prop_assert!(
            rep.stats.per_sample.iter().all(|s| s.accepted == 1),
            "{:?}: a near miss lands in one step: {:?}",
            c,
            rep.stats.per_sample
        );
    }
    Ok(true)
}

/// The adjoint's first backward step ends `k` ulps from the second-to-last output time.
fn adjoint(fx: &Fixture, c: &Case) -> Result<bool, TestCaseError> {
    let ts32 = to_f32(&c.ts);
    let n = ts32.len();
    let Some(h) = placed_step(ts32[n - 1], ts32[n - 2], c.k) else {
        return Ok(false);
    };
    let mut ys = vec![0.0f64; n * fx.y0.len()];
    Solver::new(c.method, SolveOptions::<f64>::default())
        .unwrap()
        .solve_into(&mut fx.mlp.clone(), &c.ts, &fx.y0, &mut ys)
        .unwrap();
    let gout = seeded_values(ys.len(), 47, 1.0);
    let o32 = SolveOptions::<f32>::default().first_step(h);
    let mut gpu = GpuSolver::new(
        fx.ctx.clone(),
        c.method,
        o32.clone(),
        LATENT,
        HIDDEN,
        to_f32(fx.mlp.params()),
    )
    .unwrap();
    gpu.set_adjoint_options(o32).unwrap();
    let (mut gy, mut gp) = (vec![0.0f32; fx.y0.len()], vec![0.0f32; fx.mlp.num_params()]);
    gpu.adjoint_backward(&ts32, &to_f32(&ys), &to_f32(&gout), &mut gy, &mut gp)
        .map_err(|e| TestCaseError::fail(format!("{c:?}: GPU adjoint failed: {e}")))?;
    let o64 = SolveOptions::<f64>::default()
        .first_step(h as f64)
        .step_mode(StepMode::PerSample);
    let (mut wy, mut wp) = (vec![0.0f64; fx.y0.len()], vec![0.0f64; fx.mlp.num_params()]);
    AdjointSolver::new(c.method, o64, AdjointNorm::Seminorm)
        .unwrap()
        .backward(&mut fx.mlp.clone(), &c.ts, &ys, &gout, &mut wy, &mut wp, &[])
        .unwrap();
    let sy = wy.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    let sp = wp.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    prop_assert!(
        worst_ratio(&gy, &wy, 0.0, 5e-4 * sy) <= 1.0,
        "{:?}: dL/dy0 {:?} vs {:?}",
        c,
        gy,
        wy
    );
    prop_assert!(worst_ratio(&gp, &wp, 0.0, 5e-4 * sp) <= 1.0, "{:?}: dL/dθ differs", c);
    Ok(true)
}

#[test]
fn gpu_steps_land_on_output_times() {
    let Some(fx) = fixture("gpu_steps_land_on_output_times") else {
        return;
    };
    // The gaps that used to fail, for the guide's solver (the GPU solves forward in time; its
    // adjoint runs backward).
    for ts in [vec![0.0, 1.1, 1.2], vec![0.5, 1.1, 1.5]] {
        for k in [1, 2, 3, 4, -1, -3] {
            let c = Case {
                method: Method::Dopri5,
                ts: ts.clone(),
                k,
            };
            assert!(forward(&fx, &c).unwrap(), "{c:?}: step placed");
            assert!(adjoint(&fx, &c).unwrap(), "{c:?}: step placed");
        }
    }
    // Every adaptive method, gaps of 1 to 64 ulps short of and past, sampled.
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&case(), |c| {
            forward(&fx, &c)?;
            adjoint(&fx, &c)?;
            Ok(())
        })
        .unwrap();
}
