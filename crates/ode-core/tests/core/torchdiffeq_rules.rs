//! `controller = torchdiffeq` against torchdiffeq itself: the fixture
//! (`tests/fixtures/torchdiffeq_steps.json`, written by `benches/peers/torchdiffeq_steps.py`
//! with torchdiffeq 0.2.5) holds the time of every field evaluation torchdiffeq made for a small
//! tanh MLP field and a batch of four states in f64, for dopri5 and bosh3 at three tolerances over
//! two spans. Our solver, in shared step mode with torchdiffeq's rules, must make
//! the same evaluations at the same times (to round-off: torch sums the error norm in another
//! order) and accept and reject the same steps. The default rules must not (they choose other
//! steps), or this test would not show anything.

use ode_core::{AdjointNorm, AdjointSolver, ControllerKind, Method, Mlp, SolveOptions, Solver, StepMode, VectorField};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    torchdiffeq: String,
    latent: usize,
    hidden: usize,
    batch: usize,
    params: Vec<f64>,
    y0: Vec<f64>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    method: String,
    rtol: f64,
    atol: f64,
    ts: Vec<f64>,
    forward: Run,
    ys: Vec<f64>,
    cotangent: Vec<f64>,
    grad_y0: Vec<f64>,
    grad_params: Vec<f64>,
}

/// What one solve did: the time of each evaluation, accepted and rejected steps.
#[derive(Deserialize, Debug, PartialEq)]
struct Run {
    times: Vec<f64>,
    accepted: usize,
    rejected: usize,
}

fn fixture() -> Fixture {
    let text = include_str!("../fixtures/torchdiffeq_steps.json");
    serde_json::from_str(text).expect("fixture parses")
}

/// The MLP field, logging the time of every batched evaluation (one time: the steps are shared).
struct Logged {
    mlp: Mlp<f64>,
    times: Vec<f64>,
}

impl VectorField<f64> for Logged {
    fn dim(&self) -> usize {
        self.mlp.dim()
    }
    fn eval(&mut self, t: &[f64], y: &[f64], dy: &mut [f64]) {
        assert!(
            t.iter().all(|x| *x == t[0]),
            "shared steps evaluate the batch at one time"
        );
        self.times.push(t[0]);
        self.mlp.eval(t, y, dy);
    }
}

/// Solves a case with the given rules; returns what the solve did and its outputs.
fn solve(fx: &Fixture, case: &Case, kind: ControllerKind) -> (Run, Vec<f64>) {
    let method: Method = case.method.parse().expect("method");
    let opts = SolveOptions::default()
        .rtol(case.rtol)
        .atol(case.atol)
        .step_mode(StepMode::Shared)
        .controller_kind(kind);
    let mut field = Logged {
        mlp: Mlp::with_params(fx.latent, fx.hidden, fx.params.clone()),
        times: Vec::new(),
    };
    let sol = Solver::new(method, opts)
        .expect("solver")
        .solve(&mut field, &case.ts, &fx.y0)
        .expect("solve");
    let run = Run {
        times: field.times,
        accepted: sol.stats.accepted,
        rejected: sol.stats.rejected,
    };
    (run, sol.ys)
}

fn label(case: &Case) -> String {
    format!(
        "{} rtol {:e} to t = {}",
        case.method,
        case.rtol,
        case.ts[case.ts.len() - 1]
    )
}

#[test]
fn the_forward_solve_makes_torchdiffeqs_evaluations() {
    let fx = fixture();
    assert_eq!(fx.torchdiffeq, "0.2.5");
    assert_eq!(fx.y0.len(), fx.batch * fx.latent);
    assert_eq!(fx.cases.len(), 12);
    let (mut worst, mut overshoots) = (0.0f64, 0);
    for case in &fx.cases {
        let (ours, ys) = solve(&fx, case, ControllerKind::Torchdiffeq);
        let theirs = &case.forward;
        let what = label(case);
        let t_end = case.ts[case.ts.len() - 1];
        overshoots += usize::from(ours.times.iter().any(|t| *t > t_end));
        assert_eq!(
            (ours.times.len(), ours.accepted, ours.rejected),
            (theirs.times.len(), theirs.accepted, theirs.rejected),
            "{what}: evaluations, accepted and rejected steps"
        );
        for (i, (a, b)) in ours.times.iter().zip(&theirs.times).enumerate() {
            // Round-off of the field and of the sums (torch sums in another order; the
            // workspace's build of this test and `cargo test -p ode-core` differ in the field's
            // last bits) reaches the steps through the
            // embedded error, a difference of nearly equal sums about rtol times the state, so
            // it grows like ε/rtol. Measured at most 1.1e-11, 5e-11 and 1.4e-9 at rtol 1e-3,
            // 1e-5 and 1e-7 across this crate's and the workspace's builds.
            let dev = (a - b).abs() / (1.0 + b.abs());
            worst = worst.max(dev);
            let bound = 1e-10 + 2.0 * f64::EPSILON / case.rtol;
            assert!(dev <= bound, "{what}: evaluation {i} at {a}, torchdiffeq's at {b}");
        }
        // dopri5's interpolant is torchdiffeq's (the quartic through Shampine's midpoint), so
        // its outputs agree to round-off (measured at most 1.3e-12 relative to 1 + |y|). bosh3
        // is not compared: torchdiffeq fits its quartic through a second-order midpoint
        // (`y0 + h/2·k2`), ours is the Hermite cubic, so they differ by up to 1.7e-5 here.
        if case.method == "dopri5" {
            for (a, b) in ys.iter().zip(&case.ys) {
                assert!((a - b).abs() <= 1e-11 * (1.0 + b.abs()), "{what}: output {a} vs {b}");
            }
        }
    }
    eprintln!("largest deviation of an evaluation time: {worst:.1e} (relative to 1 + |t|)");
    // torchdiffeq steps past the last output time and interpolates it; so do we.
    assert!(overshoots >= fx.cases.len() / 2, "{overshoots} cases step past the end");
}

#[test]
fn the_default_rules_choose_other_steps() {
    let fx = fixture();
    let differ = fx
        .cases
        .iter()
        .filter(|c| solve(&fx, c, ControllerKind::Default).0.times.len() != c.forward.times.len())
        .count();
    assert!(
        differ >= fx.cases.len() / 2,
        "only {differ} of {} cases differ",
        fx.cases.len()
    );
}

/// Relative 2-norm distance of `a` from `b`.
fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    num / b.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The adjoint's gradients of a case (`∂/∂y0`, `∂/∂θ`) with the given method and options.
fn adjoint_grads(fx: &Fixture, case: &Case, method: Method, opts: SolveOptions<f64>) -> (Vec<f64>, Vec<f64>) {
    let mut mlp = Mlp::with_params(fx.latent, fx.hidden, fx.params.clone());
    let sol = Solver::new(method, opts.clone())
        .unwrap()
        .solve(&mut mlp, &case.ts, &fx.y0)
        .unwrap();
    let mut adj = AdjointSolver::new(method, opts, AdjointNorm::Seminorm).unwrap();
    let (mut gy0, mut gp) = (vec![0.0; fx.y0.len()], vec![0.0; mlp.num_params()]);
    adj.backward(&mut mlp, &case.ts, &sol.ys, &case.cotangent, &mut gy0, &mut gp, &[])
        .unwrap();
    (gy0, gp)
}

/// The adjoint under torchdiffeq's rules (a fresh initial step and controller per output
/// interval, its exponent, factor and error weights) is as accurate as the tolerance asks, and
/// with dopri5 gives torchdiffeq's gradients to the tolerance. Its work is not yet torchdiffeq's:
/// torchdiffeq reuses the last stage of a step (FSAL, 6 evaluations per try where we make 7) and
/// steps past each interval's end, where we land on it, so step counts are not compared here.
#[test]
fn the_adjoint_under_torchdiffeqs_rules() {
    let fx = fixture();
    for case in &fx.cases {
        let method: Method = case.method.parse().expect("method");
        let opts = SolveOptions::default()
            .rtol(case.rtol)
            .atol(case.atol)
            .step_mode(StepMode::Shared)
            .controller_kind(ControllerKind::Torchdiffeq);
        let (gy0, gp) = adjoint_grads(&fx, case, method, opts);
        let exact = adjoint_grads(
            &fx,
            case,
            Method::Dopri5,
            SolveOptions::default().rtol(1e-12).atol(1e-14),
        );
        // Measured: within 4.6·rtol of the exact gradient (dopri5 at 1e-3; bosh3 within 0.3·rtol).
        for (what, ours, truth) in [("y0", &gy0, &exact.0), ("params", &gp, &exact.1)] {
            let e = rel(ours, truth);
            assert!(
                e <= 10.0 * case.rtol,
                "{}: gradient of {what} off by {e:.2e}",
                label(case)
            );
        }
        // torchdiffeq's dopri5 gradients agree (measured within 2.2·rtol). Its bosh3 ones are
        // off the exact ones by up to 600·rtol: its adjoint restarts the state from outputs
        // interpolated through a second-order midpoint, so they are not a reference.
        if case.method == "dopri5" {
            for (what, ours, theirs) in [("y0", &gy0, &case.grad_y0), ("params", &gp, &case.grad_params)] {
                let e = rel(ours, theirs);
                assert!(
                    e <= 5.0 * case.rtol,
                    "{}: gradient of {what} {e:.2e} from torchdiffeq's",
                    label(case)
                );
            }
        }
    }
}
