//! Backpropagation through the solver matches central finite differences (f64).

use ode_core::{ControllerKind, Method, Mlp, SolveOptions, Solver, StepMode, Tape};

use crate::common::{self, Case};

fn case(seed: u64) -> Case {
    common::case(seed, (3, 5, 4), 6, 0.2)
}

/// Loss = Σ w ⊙ outputs; its cotangent on the outputs is `w`.
fn loss(solver: &mut Solver<f64>, mlp: &mut Mlp<f64>, c: &Case, y0: &[f64]) -> f64 {
    let sol = solver.solve(mlp, &c.ts, y0).unwrap();
    sol.ys.iter().zip(&c.w).map(|(y, w)| y * w).sum()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    num / den
}

fn check(method: Method, opts: SolveOptions<f64>, bound: f64) {
    let c = case(11);
    let mut solver = Solver::new(method, opts).unwrap();
    let mut mlp = c.mlp.clone();
    let mut tape = Tape::new();
    let mut out = vec![0.0; c.ts.len() * c.y0.len()];
    solver.solve_taped(&mut mlp, &c.ts, &c.y0, &mut out, &mut tape).unwrap();
    let mut gy0 = vec![0.0; c.y0.len()];
    let mut gp = vec![0.0; mlp.num_params()];
    let st = solver.backprop(&mut mlp, &tape, &c.w, &mut gy0, &mut gp).unwrap();
    assert!(st.nfe > 0 && st.sample_evals >= st.nfe);
    let eps = 1e-6;
    // Parameters, tensor by tensor.
    for (name, shape, off) in c.mlp.tensors() {
        let len: usize = shape.iter().product();
        let mut fd = vec![0.0; len];
        for i in 0..len {
            let mut p = c.mlp.clone();
            p.params_mut()[off + i] += eps;
            let up = loss(&mut solver, &mut p, &c, &c.y0);
            p.params_mut()[off + i] -= 2.0 * eps;
            let down = loss(&mut solver, &mut p, &c, &c.y0);
            fd[i] = (up - down) / (2.0 * eps);
        }
        let e = rel(&gp[off..off + len], &fd);
        assert!(
            e < bound,
            "{method} {:?}: {name} relative error {e:e}",
            solver.options().step_mode
        );
    }
    // Initial state.
    let mut fd = vec![0.0; c.y0.len()];
    for i in 0..c.y0.len() {
        let mut y = c.y0.clone();
        y[i] += eps;
        let up = loss(&mut solver, &mut c.mlp.clone(), &c, &y);
        y[i] -= 2.0 * eps;
        let down = loss(&mut solver, &mut c.mlp.clone(), &c, &y);
        fd[i] = (up - down) / (2.0 * eps);
    }
    let e = rel(&gy0, &fd);
    assert!(e < bound, "{method}: y0 relative error {e:e}");
}

#[test]
fn fixed_step_methods_on_the_output_grid() {
    for mode in [StepMode::Shared, StepMode::PerSample] {
        for m in [Method::Euler, Method::Midpoint, Method::Rk4, Method::Rk4Classic] {
            check(m, SolveOptions::default().step_mode(mode), 1e-6);
        }
    }
}

#[test]
fn constant_steps_with_interpolated_outputs() {
    // Steps of 0.07 do not land on the outputs: dense output (dopri5, tsit5), Hermite with the
    // FSAL stage (bosh3) and Hermite with an extra end evaluation (rk4, heun2, euler).
    for m in [
        Method::Dopri5,
        Method::Tsit5,
        Method::Bosh3,
        Method::Rk4,
        Method::Heun2,
        Method::Euler,
    ] {
        check(m, SolveOptions::default().step_size(0.07), 1e-6);
    }
}

#[test]
fn adaptive_dopri5_with_tight_tolerance() {
    // The step sequence is held fixed by backprop; at tight tolerances its influence on the
    // result is far below the finite-difference resolution.
    for mode in [StepMode::Shared, StepMode::PerSample] {
        check(
            Method::Dopri5,
            SolveOptions::default().rtol(1e-10).atol(1e-12).step_mode(mode),
            1e-6,
        );
        check(
            Method::Tsit5,
            SolveOptions::default().rtol(1e-10).atol(1e-12).step_mode(mode),
            1e-6,
        );
    }
}

#[test]
fn torchdiffeqs_rules_whose_last_step_runs_past_the_end() {
    // The last step ends beyond the last output time, which is interpolated inside it.
    for mode in [StepMode::Shared, StepMode::PerSample] {
        for m in [Method::Dopri5, Method::Bosh3] {
            let opts = SolveOptions::default()
                .rtol(1e-10)
                .atol(1e-12)
                .step_mode(mode)
                .controller_kind(ControllerKind::Torchdiffeq);
            check(m, opts, 1e-6);
        }
    }
}

#[test]
fn repeated_backprop_allocates_into_the_same_buffers() {
    let c = case(5);
    let mut solver = Solver::new(Method::Dopri5, SolveOptions::default().rtol(1e-6)).unwrap();
    let mut mlp = c.mlp.clone();
    let mut tape = Tape::new();
    let mut out = vec![0.0; c.ts.len() * c.y0.len()];
    let mut gy0 = vec![0.0; c.y0.len()];
    let mut g1 = vec![0.0; mlp.num_params()];
    let mut g2 = vec![0.0; mlp.num_params()];
    solver.solve_taped(&mut mlp, &c.ts, &c.y0, &mut out, &mut tape).unwrap();
    solver.backprop(&mut mlp, &tape, &c.w, &mut gy0, &mut g1).unwrap();
    let steps = tape.num_steps();
    solver.solve_taped(&mut mlp, &c.ts, &c.y0, &mut out, &mut tape).unwrap();
    assert_eq!(tape.num_steps(), steps, "the tape is cleared between solves");
    solver.backprop(&mut mlp, &tape, &c.w, &mut gy0, &mut g2).unwrap();
    assert_eq!(g1, g2, "same inputs, same gradient");
    // Shape errors are reported, not panics.
    let e = solver
        .backprop(&mut mlp, &tape, &c.w[1..], &mut gy0, &mut g2)
        .unwrap_err();
    assert!(e.to_string().contains("output cotangents"), "{e}");
}
