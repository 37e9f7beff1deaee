// Runge-Kutta integration of a batch with a step size, error control, dense output and a
// status per sample, for any explicit tableau (euler, rk4, dopri5, …: the coefficients are
// data in the arena), forward in time and for the adjoint's augmented backward dynamics.
//
// The vector field itself is evaluated by the matrix kernels of `mlp.wgsl` between these
// passes. One attempted step of the forward solve is
//   fwd_choose → (stage_input i → field)ᵢ₌₁…ₛ₋₁ → fwd_solution [→ field at y_new] → fwd_finish
// and of the adjoint
//   adj_choose → (adj_stage_input i → field + VJP)ᵢ₌₀…ₛ₋₁ → adj_finish → parameter VJPs,
// each sample with its own time, step and status, so one stiff sample neither slows nor fails
// the rest. `fwd_finish`/`adj_finish` are fused: solution, error norm, accept/reject, the
// step-size controller, dense output at every requested time inside the step, the FSAL carry
// and the interval bookkeeping in one pass per sample. `count_active` leaves the number of
// running samples in one float so the host reads back 4 bytes to know when all are done.

// Workgroup sizes, one per role, equal to the host's constants of the same names in
// `crates/ode-gpu/src/shaders.rs` (it sizes its grids by them; a test checks they agree): one
// invocation per sample or per element (WG), and the single workgroup of `count_active`.
const WG: u32 = 64u;
const COUNT_WG: u32 = 256u;

// Per-sample control fields: field f of sample b is arena[ctl + f·rows + b].
const T: u32 = 0u;        // current time
const H: u32 = 1u;        // proposed next step
const HS: u32 = 2u;       // step of the current attempt
const ST: u32 = 3u;       // status (below)
const OI: u32 = 4u;       // next output index (forward) / current interval end index (adjoint)
const ACC: u32 = 5u;      // accepted steps
const REJ: u32 = 6u;      // rejected steps
const R1: u32 = 7u;       // error ratio of the last accepted step (PID history)
const R2: u32 = 8u;       // and of the one before
const RATIO: u32 = 9u;    // error ratio of the current attempt
const NF: u32 = 10u;      // 1 when the last attempt's error was not finite
const NFE: u32 = 11u;     // field evaluations spent on this sample
const OK: u32 = 12u;      // 1 when the current attempt is accepted
const H0: u32 = 13u;      // Hairer's first trial step
const FIELDS: u32 = 14u;

// Status codes.
const RUNNING: f32 = 0.0;
const DONE: f32 = 1.0;
const UNDERFLOW: f32 = 2.0;
const MAX_STEPS: f32 = 3.0;
const NON_FINITE: f32 = 4.0;

// Flags (`Ctl.flags`).
const F_ADAPTIVE: u32 = 1u;
const F_FSAL: u32 = 2u;
const F_DENSE: u32 = 4u;
const F_STEP_SIZE: u32 = 8u;
const F_MAX_STEP: u32 = 16u;
const F_FIRST_STEP: u32 = 32u;

// Coefficient block at `tab`: a[S·S] (row i, column j), b[S], e[S] (b − b̂), c[S], then the
// dense-output polynomials d[S·5] with b_j(θ) = Σ_m d[j·5 + m] θ^(m+1).
const DENSE_MAX: u32 = 5u;

// Everything a pass needs to find its data; 160 bytes, asserted on the Rust side
// (`ode_gpu::shaders::Ctl`). Offsets are in floats into the arena.
struct Ctl {
    rows: u32, dim: u32, stages: u32, n_out: u32,
    // forward: y, y_new, stage input, stages k[S]; adjoint: z, z_new, z stage inputs [S], kz[S]
    y: u32, ynew: u32, ystage: u32, k: u32,
    // forward outputs [n_out] (adjoint: the forward outputs it restarts from), times, control, coefficients
    out: u32, ts: u32, ctl: u32, tab: u32,
    stage: u32, flags: u32, max_steps: u32, count: u32,
    rtol: f32, atol: f32, step_size: f32, max_step: f32,
    min_step: f32, safety: f32, min_factor: f32, max_factor: f32,
    b1: f32, b2: f32, b3: f32, err_order: f32,
    order: f32, first_step: f32, dense_deg: u32, kend: u32,
    // adjoint only: a, a_new, a stage inputs [S], ka[S], loss gradients [n_out], quadrature weights [S]
    a: u32, anew: u32, ain: u32, ka: u32,
    gout: u32, wts: u32, dir: f32, _pad: u32,
}

// Every float the solver touches: parameters, states, stages, activations, outputs, control.
@group(0) @binding(0) var<storage, read_write> arena: array<f32>;
// This pass's layout and options (a 256-byte slot of a buffer of them, by dynamic offset).
@group(0) @binding(1) var<uniform> c: Ctl;

fn cf(f: u32, b: u32) -> u32 {
    return c.ctl + f * c.rows + b;
}

fn finite(x: f32) -> bool {
    return abs(x) <= 3.4028235e38;
}

fn flag(f: u32) -> bool {
    return (c.flags & f) != 0u;
}

fn tab_a(i: u32, j: u32) -> f32 {
    return arena[c.tab + i * c.stages + j];
}

fn tab_b(j: u32) -> f32 {
    return arena[c.tab + c.stages * c.stages + j];
}

fn tab_e(j: u32) -> f32 {
    return arena[c.tab + c.stages * c.stages + c.stages + j];
}

fn tab_d(j: u32, m: u32) -> f32 {
    return arena[c.tab + c.stages * c.stages + 3u * c.stages + j * DENSE_MAX + m];
}

// Index of this invocation over a 2-D grid of 64-wide workgroups (grids wider than 65535).
fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Offset of element i of sample b in a [rows × dim] block at `base`, stage/output `s`.
fn at(base: u32, s: u32, b: u32, i: u32) -> u32 {
    return base + (s * c.rows + b) * c.dim + i;
}

// The step-size controller (PID, Söderlind), as `ode_core::PidController::factor`.
fn step_factor(accepted: bool, r: f32, r1: f32, r2: f32) -> f32 {
    if (!finite(r)) {
        return c.min_factor;
    }
    if (r == 0.0) {
        return c.max_factor;
    }
    var f: f32;
    if (accepted) {
        f = c.safety * pow(r, -c.b1 / c.err_order) * pow(r1, -c.b2 / c.err_order) * pow(r2, -c.b3 / c.err_order);
    } else {
        f = c.safety * pow(r, -1.0 / c.err_order);
    }
    return clamp(f, c.min_factor, c.max_factor);
}

// Steps ending within this many ulps of the point they aim at land on it (`ode_core::SNAP_ULPS`).
const SNAP_ULPS: f32 = 32.0;

// The step from t towards goal, as `ode_core::SolveOptions::next_step`; ok = false on underflow.
struct Step {
    h: f32,
    ok: bool,
}

fn next_step(t: f32, goal: f32, proposal: f32) -> Step {
    let remaining = goal - t;
    let adaptive = flag(F_ADAPTIVE);
    var h = remaining;
    if (adaptive) {
        h = proposal;
    } else if (flag(F_STEP_SIZE)) {
        h = c.dir * abs(c.step_size);
    }
    var capped = false;
    if (flag(F_MAX_STEP) && abs(h) > abs(c.max_step)) {
        h = c.dir * abs(c.max_step);
        capped = true;
    }
    // A step shrunk below the resolution and short of the goal (repeated rejections) fails.
    let floor = max(c.min_step, abs(t) * 1.1920929e-7 * 4.0);
    if (adaptive && abs(h) < floor && abs(h) < abs(remaining)) {
        return Step(h, false);
    }
    // Land exactly on goal when the step reaches it or would end within SNAP_ULPS ulps of it
    // (short or past): a sliver left behind is never an underflow. A step capped by max_step
    // is not stretched: it leaves what it leaves, or two halves when that would be a sliver.
    if (abs(h) >= abs(remaining)) {
        return Step(remaining, true);
    }
    let left = abs(remaining - h);
    if (left <= max(abs(t), abs(goal)) * 1.1920929e-7 * SNAP_ULPS) {
        if (!capped) {
            return Step(remaining, true);
        }
        if (left < floor) {
            return Step(remaining * 0.5, true);
        }
    }
    if (adaptive && t + h == t) {
        return Step(h, false);
    }
    return Step(h, true);
}

// The controller's update after an attempt with error ratio `ratio`.
fn control(b: u32, accepted: bool, ratio: f32) {
    let r1 = arena[cf(R1, b)];
    let r2 = arena[cf(R2, b)];
    let factor = step_factor(accepted, ratio, r1, r2);
    arena[cf(NF, b)] = select(0.0, 1.0, !finite(ratio));
    if (accepted) {
        arena[cf(R2, b)] = r1;
        arena[cf(R1, b)] = max(ratio, 1e-10);
    }
    arena[cf(H, b)] = arena[cf(HS, b)] * factor;
}

// The end of Hairer's initial step selection from the trial step h0 and the scaled norms d1
// (of f0) and d2 (of (f1 − f0)/h0): the first step of sample b, its PID history reset.
fn initial_step(b: u32, h0: f32, d1: f32, d2: f32) {
    var h1 = pow(0.01 / max(d1, d2), 1.0 / (c.order + 1.0));
    if (d1 <= 1e-15 && d2 <= 1e-15) {
        h1 = max(h0 * 1e-3, 1e-6);
    }
    var h = min(100.0 * h0, h1);
    if (!finite(h)) {
        h = 1e-6;
    }
    arena[cf(H, b)] = c.dir * h;
    arena[cf(RATIO, b)] = 0.0;
}

// Marks sample b failed; its outputs from the next output time on become NaN.
fn fail_forward(b: u32, code: f32) {
    arena[cf(ST, b)] = code;
    let nan = bitcast<f32>(0x7fc00000u);
    for (var k = u32(arena[cf(OI, b)]); k < c.n_out; k = k + 1u) {
        for (var i = 0u; i < c.dim; i = i + 1u) {
            arena[at(c.out, k, b, i)] = nan;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Forward solve.

// Control block and first output; y already holds y0. k[0] = f(y0) is evaluated next.
@compute @workgroup_size(WG)
fn fwd_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows) {
        return;
    }
    for (var f = 0u; f < FIELDS; f = f + 1u) {
        arena[cf(f, b)] = 0.0;
    }
    arena[cf(T, b)] = arena[c.ts];
    arena[cf(OI, b)] = 1.0;
    arena[cf(R1, b)] = 1.0;
    arena[cf(R2, b)] = 1.0;
    arena[cf(NFE, b)] = 1.0;
    if (flag(F_FIRST_STEP)) {
        arena[cf(H, b)] = c.dir * abs(c.first_step);
    }
    for (var i = 0u; i < c.dim; i = i + 1u) {
        arena[at(c.out, 0u, b, i)] = arena[at(c.y, 0u, b, i)];
    }
}

// Hairer's initial step, first half (after k[0] = f(y0)): d0 = ‖y/sc‖, d1 = ‖f0/sc‖, the
// trial step h0 and the trial state y0 + h0·f0 in the stage input.
@compute @workgroup_size(WG)
fn fwd_init_a(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows) {
        return;
    }
    var s0 = 0.0;
    var s1 = 0.0;
    for (var i = 0u; i < c.dim; i = i + 1u) {
        let y = arena[at(c.y, 0u, b, i)];
        let sc = c.atol + c.rtol * abs(y);
        let f0 = arena[at(c.k, 0u, b, i)];
        s0 = s0 + (y / sc) * (y / sc);
        s1 = s1 + (f0 / sc) * (f0 / sc);
    }
    let d0 = sqrt(s0 / f32(c.dim));
    let d1 = sqrt(s1 / f32(c.dim));
    var h0 = 0.01 * d0 / d1;
    if (d0 < 1e-5 || d1 < 1e-5) {
        h0 = 1e-6;
    }
    arena[cf(H0, b)] = h0;
    arena[cf(RATIO, b)] = d1;
    for (var i = 0u; i < c.dim; i = i + 1u) {
        arena[at(c.ystage, 0u, b, i)] = arena[at(c.y, 0u, b, i)] + c.dir * h0 * arena[at(c.k, 0u, b, i)];
    }
}

// Hairer's initial step, second half (after k[1] = f(y0 + h0·f0)).
@compute @workgroup_size(WG)
fn fwd_init_b(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows) {
        return;
    }
    var s2 = 0.0;
    for (var i = 0u; i < c.dim; i = i + 1u) {
        let y = arena[at(c.y, 0u, b, i)];
        let sc = c.atol + c.rtol * abs(y);
        let d = (arena[at(c.k, 1u, b, i)] - arena[at(c.k, 0u, b, i)]) / sc;
        s2 = s2 + d * d;
    }
    let h0 = arena[cf(H0, b)];
    initial_step(b, h0, arena[cf(RATIO, b)], sqrt(s2 / f32(c.dim)) / h0);
    arena[cf(NFE, b)] = arena[cf(NFE, b)] + 1.0;
}

// Start of an attempt: step budget, finite first stage, the step size (or a failure status).
@compute @workgroup_size(WG)
fn fwd_choose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows || arena[cf(ST, b)] != RUNNING) {
        return;
    }
    if (u32(arena[cf(ACC, b)] + arena[cf(REJ, b)]) >= c.max_steps) {
        fail_forward(b, MAX_STEPS);
        return;
    }
    for (var i = 0u; i < c.dim; i = i + 1u) {
        if (!finite(arena[at(c.k, 0u, b, i)])) {
            fail_forward(b, NON_FINITE);
            return;
        }
    }
    let t = arena[cf(T, b)];
    var goal = arena[c.ts + c.n_out - 1u];
    if (!flag(F_ADAPTIVE) && !flag(F_STEP_SIZE)) {
        goal = arena[c.ts + u32(arena[cf(OI, b)])];
    }
    let s = next_step(t, goal, arena[cf(H, b)]);
    // Written before the check so an underflow reports the step that was too small.
    arena[cf(HS, b)] = s.h;
    if (!s.ok) {
        fail_forward(b, select(UNDERFLOW, NON_FINITE, arena[cf(NF, b)] != 0.0));
    }
}

// Stage input of stage `c.stage` for one element: y + h·Σⱼ a_ij kⱼ.
@compute @workgroup_size(WG)
fn stage_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    if (idx >= c.rows * c.dim) {
        return;
    }
    let b = idx / c.dim;
    let h = arena[cf(HS, b)];
    var v = arena[c.y + idx];
    for (var j = 0u; j < c.stage; j = j + 1u) {
        let aij = tab_a(c.stage, j);
        if (aij != 0.0) {
            v = v + h * aij * arena[c.k + j * c.rows * c.dim + idx];
        }
    }
    arena[c.ystage + idx] = v;
}

// Solution y + h·Σ bⱼkⱼ and, for adaptive methods, the RMS error ratio of the attempt.
@compute @workgroup_size(WG)
fn fwd_solution(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows || arena[cf(ST, b)] != RUNNING) {
        return;
    }
    solution(b);
}

fn solution(b: u32) {
    let h = arena[cf(HS, b)];
    let adaptive = flag(F_ADAPTIVE);
    var sum = 0.0;
    var all_finite = true;
    for (var i = 0u; i < c.dim; i = i + 1u) {
        let y = arena[at(c.y, 0u, b, i)];
        var acc = 0.0;
        var err = 0.0;
        for (var j = 0u; j < c.stages; j = j + 1u) {
            let kj = arena[at(c.k, j, b, i)];
            acc = acc + tab_b(j) * kj;
            err = err + tab_e(j) * kj;
        }
        let yn = y + h * acc;
        arena[at(c.ynew, 0u, b, i)] = yn;
        all_finite = all_finite && finite(yn);
        let q = h * err / (c.atol + c.rtol * max(abs(y), abs(yn)));
        sum = sum + q * q;
    }
    var ratio = sqrt(sum / f32(c.dim));
    if (!all_finite) {
        ratio = bitcast<f32>(0x7fc00000u);
    }
    var ok = all_finite;
    if (adaptive) {
        ok = ratio <= 1.0;
    } else {
        ratio = 0.0;
    }
    arena[cf(RATIO, b)] = ratio;
    arena[cf(OK, b)] = select(0.0, 1.0, ok);
    arena[cf(NFE, b)] = arena[cf(NFE, b)] + f32(c.stages - 1u) + select(1.0, 0.0, flag(F_FSAL));
}

// Fused end of an attempt: controller, accept/reject, dense output at every requested time in
// (t, t + h], commit, FSAL carry (or the evaluated end derivative), completion.
@compute @workgroup_size(WG)
fn fwd_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows || arena[cf(ST, b)] != RUNNING) {
        return;
    }
    finish(b);
}

// Solution and end of the attempt in one pass, where no derivative at the step end is needed
// between them (FSAL methods, dopri5 among them): one pass fewer per attempt.
@compute @workgroup_size(WG)
fn fwd_solution_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows || arena[cf(ST, b)] != RUNNING) {
        return;
    }
    solution(b);
    finish(b);
}

fn finish(b: u32) {
    let adaptive = flag(F_ADAPTIVE);
    let ok = arena[cf(OK, b)] != 0.0;
    if (!adaptive && !ok) {
        fail_forward(b, NON_FINITE);
        return;
    }
    if (adaptive) {
        control(b, ok, arena[cf(RATIO, b)]);
    }
    if (!ok) {
        arena[cf(REJ, b)] = arena[cf(REJ, b)] + 1.0;
        return;
    }
    arena[cf(ACC, b)] = arena[cf(ACC, b)] + 1.0;
    let t = arena[cf(T, b)];
    let h = arena[cf(HS, b)];
    let t_end = arena[c.ts + c.n_out - 1u];
    var oi = u32(arena[cf(OI, b)]);
    var goal = t_end;
    if (!adaptive && !flag(F_STEP_SIZE)) {
        goal = arena[c.ts + oi];
    }
    var tn = t + h;
    if (h == goal - t) {
        tn = goal;
    }
    let fsal = flag(F_FSAL);
    // Derivative at the step end for Hermite output: the last stage (FSAL) or k_end.
    var f1 = c.kend;
    if (fsal) {
        f1 = c.k + (c.stages - 1u) * c.rows * c.dim;
    }
    loop {
        if (oi >= c.n_out) {
            break;
        }
        let tk = arena[c.ts + oi];
        if ((tk - tn) * c.dir > 0.0) {
            break;
        }
        if (tk == tn) {
            for (var i = 0u; i < c.dim; i = i + 1u) {
                arena[at(c.out, oi, b, i)] = arena[at(c.ynew, 0u, b, i)];
            }
        } else {
            let th = (tk - t) / h;
            if (flag(F_DENSE)) {
                for (var i = 0u; i < c.dim; i = i + 1u) {
                    var v = arena[at(c.y, 0u, b, i)];
                    for (var j = 0u; j < c.stages; j = j + 1u) {
                        var bj = 0.0;
                        var p = th;
                        for (var m = 0u; m < c.dense_deg; m = m + 1u) {
                            bj = bj + tab_d(j, m) * p;
                            p = p * th;
                        }
                        v = v + h * bj * arena[at(c.k, j, b, i)];
                    }
                    arena[at(c.out, oi, b, i)] = v;
                }
            } else {
                let th2 = th * th;
                let th3 = th2 * th;
                let h00 = 2.0 * th3 - 3.0 * th2 + 1.0;
                let h10 = (th3 - 2.0 * th2 + th) * h;
                let h01 = 3.0 * th2 - 2.0 * th3;
                let h11 = (th3 - th2) * h;
                for (var i = 0u; i < c.dim; i = i + 1u) {
                    arena[at(c.out, oi, b, i)] = h00 * arena[at(c.y, 0u, b, i)] + h10 * arena[at(c.k, 0u, b, i)]
                        + h01 * arena[at(c.ynew, 0u, b, i)] + h11 * arena[at(f1, 0u, b, i)];
                }
            }
        }
        oi = oi + 1u;
    }
    arena[cf(OI, b)] = f32(oi);
    for (var i = 0u; i < c.dim; i = i + 1u) {
        arena[at(c.y, 0u, b, i)] = arena[at(c.ynew, 0u, b, i)];
        arena[at(c.k, 0u, b, i)] = arena[at(f1, 0u, b, i)];
    }
    arena[cf(T, b)] = tn;
    if (tn == t_end) {
        arena[cf(ST, b)] = DONE;
    }
}

// Number of running samples, into arena[count] (one workgroup).
var<workgroup> partial: array<f32, COUNT_WG>;

@compute @workgroup_size(COUNT_WG)
fn count_active(@builtin(local_invocation_index) lid: u32) {
    var n = 0.0;
    for (var b = lid; b < c.rows; b = b + COUNT_WG) {
        if (arena[cf(ST, b)] == RUNNING) {
            n = n + 1.0;
        }
    }
    partial[lid] = n;
    workgroupBarrier();
    for (var s = COUNT_WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            partial[lid] = partial[lid] + partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        arena[c.count] = partial[0];
    }
}

// ---------------------------------------------------------------------------------------------
// Adjoint: the augmented state (z, a) integrated backwards from the last output time, with
// dz/dt = f(z), da/dt = −aᵀ∂f/∂z; at each output time z restarts from the forward solution and
// the loss gradient there joins a. The parameter adjoint is a quadrature over accepted steps:
// adj_finish leaves the weights −h·bᵢ per stage and sample for the parameter VJPs.

// Control block, z and a at the last output time.
@compute @workgroup_size(WG)
fn adj_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows) {
        return;
    }
    for (var f = 0u; f < FIELDS; f = f + 1u) {
        arena[cf(f, b)] = 0.0;
    }
    let last = c.n_out - 1u;
    arena[cf(T, b)] = arena[c.ts + last];
    arena[cf(OI, b)] = f32(last);
    arena[cf(R1, b)] = 1.0;
    arena[cf(R2, b)] = 1.0;
    if (flag(F_FIRST_STEP)) {
        arena[cf(H, b)] = c.dir * abs(c.first_step);
    }
    for (var i = 0u; i < c.dim; i = i + 1u) {
        arena[at(c.y, 0u, b, i)] = arena[at(c.out, last, b, i)];
        arena[at(c.a, 0u, b, i)] = arena[at(c.gout, last, b, i)];
    }
}

// Scaled RMS of (z-part, a-part) of sample b, the larger of the two, for Hairer's step.
fn adj_rms(b: u32, zs: u32, zsub: u32, as_: u32, asub: u32, sub: bool) -> f32 {
    var qz = 0.0;
    var qa = 0.0;
    for (var i = 0u; i < c.dim; i = i + 1u) {
        let z = arena[at(c.y, 0u, b, i)];
        let a = arena[at(c.a, 0u, b, i)];
        var vz = arena[zs + b * c.dim + i];
        var va = arena[as_ + b * c.dim + i];
        if (sub) {
            vz = vz - arena[zsub + b * c.dim + i];
            va = va - arena[asub + b * c.dim + i];
        }
        let xz = vz / (c.atol + c.rtol * abs(z));
        let xa = va / (c.atol + c.rtol * abs(a));
        qz = qz + xz * xz;
        qa = qa + xa * xa;
    }
    return max(sqrt(qz / f32(c.dim)), sqrt(qa / f32(c.dim)));
}

// Hairer's initial step for (z, a), first half (after stage 0 evaluated at (z, a)).
@compute @workgroup_size(WG)
fn adj_init_a(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows) {
        return;
    }
    let d0 = adj_rms(b, c.y, 0u, c.a, 0u, false);
    let d1 = adj_rms(b, c.k, 0u, c.ka, 0u, false);
    var h0 = 0.01 * d0 / d1;
    if (d0 < 1e-5 || d1 < 1e-5) {
        h0 = 1e-6;
    }
    arena[cf(H0, b)] = h0;
    arena[cf(RATIO, b)] = d1;
    let s1 = c.rows * c.dim;
    for (var i = 0u; i < c.dim; i = i + 1u) {
        let j = b * c.dim + i;
        arena[c.ystage + s1 + j] = arena[c.y + j] + c.dir * h0 * arena[c.k + j];
        arena[c.ain + s1 + j] = arena[c.a + j] + c.dir * h0 * arena[c.ka + j];
    }
    arena[cf(NFE, b)] = 1.0;
}

// Hairer's initial step for (z, a), second half (after stage 1 evaluated at the trial state).
@compute @workgroup_size(WG)
fn adj_init_b(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows) {
        return;
    }
    let s1 = c.rows * c.dim;
    let h0 = arena[cf(H0, b)];
    initial_step(b, h0, arena[cf(RATIO, b)], adj_rms(b, c.k + s1, c.k, c.ka + s1, c.ka, true) / h0);
    arena[cf(NFE, b)] = 2.0;
}

// Start of a backward attempt: step budget and the step towards the current interval's start.
@compute @workgroup_size(WG)
fn adj_choose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows || arena[cf(ST, b)] != RUNNING) {
        return;
    }
    if (u32(arena[cf(ACC, b)] + arena[cf(REJ, b)]) >= c.max_steps) {
        arena[cf(ST, b)] = MAX_STEPS;
        return;
    }
    let t = arena[cf(T, b)];
    let goal = arena[c.ts + u32(arena[cf(OI, b)]) - 1u];
    let s = next_step(t, goal, arena[cf(H, b)]);
    arena[cf(HS, b)] = s.h;
    if (!s.ok) {
        arena[cf(ST, b)] = select(UNDERFLOW, NON_FINITE, arena[cf(NF, b)] != 0.0);
    }
}

// Stage inputs of stage `c.stage` for one element: z + h·Σ a_il kz_l and a + h·Σ a_il ka_l.
@compute @workgroup_size(WG)
fn adj_stage_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    let n = c.rows * c.dim;
    if (idx >= n) {
        return;
    }
    let b = idx / c.dim;
    let h = arena[cf(HS, b)];
    var vz = arena[c.y + idx];
    var va = arena[c.a + idx];
    for (var l = 0u; l < c.stage; l = l + 1u) {
        let al = tab_a(c.stage, l);
        if (al != 0.0) {
            vz = vz + h * al * arena[c.k + l * n + idx];
            va = va + h * al * arena[c.ka + l * n + idx];
        }
    }
    arena[c.ystage + c.stage * n + idx] = vz;
    arena[c.ain + c.stage * n + idx] = va;
}

// Fused end of a backward attempt: solution, seminorm error (state and state adjoint),
// accept/reject, controller, quadrature weights of the parameter adjoint, and at the end of an
// interval the restart of z and the jump of a by the loss gradient.
@compute @workgroup_size(WG)
fn adj_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat(gid, nwg);
    if (b >= c.rows) {
        return;
    }
    for (var j = 0u; j < c.stages; j = j + 1u) {
        arena[c.wts + j * c.rows + b] = 0.0;
    }
    if (arena[cf(ST, b)] != RUNNING) {
        return;
    }
    let n = c.rows * c.dim;
    let h = arena[cf(HS, b)];
    let adaptive = flag(F_ADAPTIVE);
    arena[cf(NFE, b)] = arena[cf(NFE, b)] + f32(c.stages);
    var qz = 0.0;
    var qa = 0.0;
    var all_finite = true;
    for (var i = 0u; i < c.dim; i = i + 1u) {
        let e = b * c.dim + i;
        let z = arena[c.y + e];
        let a = arena[c.a + e];
        var sz = 0.0;
        var sa = 0.0;
        var ez = 0.0;
        var ea = 0.0;
        for (var j = 0u; j < c.stages; j = j + 1u) {
            let kz = arena[c.k + j * n + e];
            let ka = arena[c.ka + j * n + e];
            sz = sz + tab_b(j) * kz;
            sa = sa + tab_b(j) * ka;
            ez = ez + tab_e(j) * kz;
            ea = ea + tab_e(j) * ka;
        }
        let zn = z + h * sz;
        let an = a + h * sa;
        arena[c.ynew + e] = zn;
        arena[c.anew + e] = an;
        all_finite = all_finite && finite(zn) && finite(an);
        let xz = h * ez / (c.atol + c.rtol * max(abs(z), abs(zn)));
        let xa = h * ea / (c.atol + c.rtol * max(abs(a), abs(an)));
        qz = qz + xz * xz;
        qa = qa + xa * xa;
    }
    var ok = all_finite;
    if (adaptive) {
        var ratio = max(sqrt(qz / f32(c.dim)), sqrt(qa / f32(c.dim)));
        if (!all_finite) {
            ratio = bitcast<f32>(0x7fc00000u);
        }
        ok = ratio <= 1.0;
        control(b, ok, ratio);
    } else if (!all_finite) {
        arena[cf(ST, b)] = NON_FINITE;
        return;
    }
    if (!ok) {
        arena[cf(REJ, b)] = arena[cf(REJ, b)] + 1.0;
        return;
    }
    arena[cf(ACC, b)] = arena[cf(ACC, b)] + 1.0;
    for (var j = 0u; j < c.stages; j = j + 1u) {
        arena[c.wts + j * c.rows + b] = -h * tab_b(j);
    }
    let t = arena[cf(T, b)];
    let oi = u32(arena[cf(OI, b)]);
    let goal = arena[c.ts + oi - 1u];
    var tn = t + h;
    if (h == goal - t) {
        tn = goal;
    }
    arena[cf(T, b)] = tn;
    if (tn == goal) {
        for (var i = 0u; i < c.dim; i = i + 1u) {
            let e = b * c.dim + i;
            arena[c.y + e] = arena[at(c.out, oi - 1u, b, i)];
            arena[c.a + e] = arena[c.anew + e] + arena[at(c.gout, oi - 1u, b, i)];
        }
        arena[cf(OI, b)] = f32(oi - 1u);
        if (oi == 1u) {
            arena[cf(ST, b)] = DONE;
        }
    } else {
        for (var i = 0u; i < c.dim; i = i + 1u) {
            let e = b * c.dim + i;
            arena[c.y + e] = arena[c.ynew + e];
            arena[c.a + e] = arena[c.anew + e];
        }
    }
}
